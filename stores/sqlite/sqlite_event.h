/* Events as the sqlite store hands them out: one malloc block per event
 * holding the obx_event, its header array and every string. */
#ifndef SQ_EVENT_H
#define SQ_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <outbox/event.h>
#include <outbox/status.h>

#include "claimed.h"

/* The block: a claimed event of the shared list (claimed.h), whose
 * lease_token is the claim_id of the <table>_claims row that took it. */
typedef osc_claimed sq_event;

/* The columns sq_event_read expects, in this order, from `first` on:
 * id, event_id, aggregate_type, aggregate_id, event_type, payload, topic,
 * headers, created_at, attempts. */
#define SQ_EVENT_COLUMNS 10

/* Build an event from the current row of `st`. `strict` (a claim): what
 * a broker cannot carry fails with OBX_PERMANENT and the reason in err: a
 * NULL id/key/type, a NUL byte in a text field (osc_event_fields_check),
 * headers that are not a JSON object. Not strict (listing dead letters):
 * the row is shown as it can be, bad headers dropped. Header values travel as
 * written (osc_event_headers_parse). On OBX_OK *out is a new block the caller
 * frees with free(). */
obx_status sq_event_read(sqlite3_stmt *st, int first, bool strict,
                         sq_event **out, char *err, size_t errlen);

#endif
