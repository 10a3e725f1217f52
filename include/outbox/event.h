/* The event record: everything a broker needs, nothing about SQL. */
#ifndef OUTBOX_EVENT_H
#define OUTBOX_EVENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct obx_header {
    const char *name;
    const char *value;
} obx_header;

/* Where an event sits in its store. Opaque to the core and to brokers; the
 * store that produced it reads it back in ack/release/bury. A polling store
 * keeps its row id in seq; a WAL store keeps the commit LSN in seq and the
 * index inside the transaction in sub, so the same record carries both. */
typedef struct obx_position {
    uint64_t seq;
    uint64_t sub;
    void *ptr;
} obx_position;

/* One outbox event.
 *
 * Ownership: a store fills the record in claim() and owns every pointer in
 * it until the engine settles the event with ack(), release() or bury();
 * nobody else frees or modifies them, except `destination`, which the engine
 * sets (engine-owned memory) before handing the event to a broker, and
 * `attempts` (see below).
 * Strings are NUL-terminated UTF-8; payload is raw bytes (not terminated). */
typedef struct obx_event {
    const char *event_id; /* stable, unique: brokers use it for dedup */
    const char *key;      /* ordering / partition key (aggregate id) */
    const char *topic;    /* explicit per-row destination, or NULL */
    const char *event_type;
    const char *aggregate_type;
    const char *aggregate_id;
    const void *payload;
    size_t payload_len;
    const obx_header *headers; /* user headers, n_headers entries */
    size_t n_headers;
    int64_t created_at_us; /* unix time of insert/commit, microseconds */
    /* Failed attempts before this one. The engine counts the final failed
     * attempt into it before bury(), so the store records the total. */
    uint32_t attempts;
    obx_position pos;
    /* Set by the engine: topic if present, else the route template expanded
     * for this event. Valid only during publish(). */
    const char *destination;
} obx_event;

#endif
