/* Events as the SQL stores hand them out: one malloc block per event
 * holding the store's own event struct (which begins with the obx_event),
 * the header array and every string, so settling an event is one free().
 * The headers come from a column (or a pg_wal envelope member) holding a
 * JSON object, read with the strict scanner of json_scan.h so that every
 * value travels as written. */
#ifndef OSC_STORE_EVENT_BLOCK_H
#define OSC_STORE_EVENT_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <outbox/event.h>
#include <outbox/status.h>

/* One column's bytes as the database returned them, borrowed. */
typedef struct osc_col_text {
    const char *s; /* NULL for SQL NULL */
    size_t len;
} osc_col_text;

/* One header, NUL-terminated (a name or value holding a NUL is refused
 * when parsed, so strlen is the length). */
typedef struct osc_event_header_value {
    const char *name;
    const char *value;
    size_t name_len, value_len;
} osc_event_header_value;

/* The parsed headers of one row, until the block is built: v[0..n) in the
 * order written, their strings in buf. */
typedef struct osc_event_headers {
    char *buf;
    osc_event_header_value *v;
    size_t n;
} osc_event_headers;

/* One row's columns, borrowed until osc_event_block_new returns. */
typedef struct osc_event_fields {
    osc_col_text event_id, aggregate_type, aggregate_id, event_type;
    osc_col_text payload; /* NULL s allowed: an empty payload */
    osc_col_text topic;   /* NULL s stays NULL: no explicit destination */
    int64_t created_at_us;
    int64_t attempts; /* clamped into the obx_event's uint32_t */
    uint64_t seq;     /* the row id, the event's position */
} osc_event_fields;

/* Parse the headers column `t` into *h (always initialised; release it
 * with osc_event_headers_free). NULL or empty: no headers. Values travel
 * as written: a string as its unescaped text, a number, true, false and
 * null as their exact JSON text (19.99 stays 19.99, a 30-digit integer
 * stays whole), an object or array as its JSON text without whitespace
 * between tokens. A name given twice keeps its last value, at its first
 * place (as jsonb does). Text that is not a JSON object (strict RFC 8259,
 * UTF-8), or a name or value holding a NUL, which no header can carry,
 * fails with OBX_PERMANENT and the reason in err when `strict`; otherwise
 * the headers are dropped and the result is OBX_OK. OBX_NOMEM when memory
 * runs out (err untouched). Pure: no shared state. */
obx_status osc_event_headers_parse(osc_col_text t, bool strict,
                                   osc_event_headers *h, char *err,
                                   size_t errlen);

/* Release what osc_event_headers_parse holds and zero *h. The strings of a
 * block built from it are copies, so the block outlives this. */
void osc_event_headers_free(osc_event_headers *h);

/* The text columns osc_event_fields_check looks at, in this order:
 * event_id, aggregate_type, aggregate_id, event_type, topic. */
#define OSC_EVENT_TEXT_FIELDS 5

/* Refuse what a broker cannot carry, before the block is built: a NULL
 * event_id, aggregate_type, aggregate_id or event_type (a hand-made table
 * may allow it; as "" every such event would share one id or one key),
 * and a NUL byte in any of them or in the topic (they become C strings:
 * the value would be cut there, and a cut topic is another destination).
 * `names` are the real column names, in OSC_EVENT_TEXT_FIELDS order, for
 * the reason. Returns OBX_OK, or OBX_PERMANENT with the reason in err (the
 * store dead-letters the row, which keeps its bytes). Pure. */
obx_status osc_event_fields_check(const osc_event_fields *f,
                                  const char *const *names, char *err,
                                  size_t errlen);

/* Allocate one zeroed block of `head_size` bytes (the store's event struct,
 * which must begin with an obx_event and be a multiple of a pointer's
 * alignment) followed by the header array and copies of every string, and
 * fill that obx_event from f and h: NULL text columns become "" except the
 * topic, the key is the aggregate id, pos.ptr is the block. Returns the
 * block for the caller to free() with free(), or NULL when out of memory. */
void *osc_event_block_new(size_t head_size, const osc_event_fields *f,
                          const osc_event_headers *h);

#endif
