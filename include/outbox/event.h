/* The event record: everything a broker needs, nothing about SQL. */
#ifndef OUTBOX_EVENT_H
#define OUTBOX_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* A user header (since 1.0; cannot grow: passed as an array). */
typedef struct obx_header {
    const char *name;
    const char *value;
} obx_header;

/* Where an event sits in its store (since 1.0; cannot grow: embedded in
 * obx_event). Opaque to the core and to brokers; the
 * store that produced it reads it back in ack/release/bury. A polling store
 * keeps its row id in seq; a WAL store keeps the commit LSN in seq and the
 * index inside the transaction in sub, so the same record carries both. */
typedef struct obx_position {
    uint64_t seq;
    uint64_t sub;
    void *ptr;
} obx_position;

/* One outbox event (since 1.0; cannot grow within ABI 1: stores hand the
 * engine arrays of pointers to their own records, and the engine copies
 * records by value for the DLQ topic).
 *
 * Ownership: a store fills the record in claim() and owns every pointer in
 * it until the engine settles the event with ack(), release() or bury();
 * nobody else frees or modifies them, except `destination`, which the engine
 * sets (engine-owned memory) before handing the event to a broker, and
 * `attempts` (see below). A broker borrows the record during publish().
 * Strings are NUL-terminated UTF-8; payload is raw bytes (not terminated).
 *
 * What a store must fill, and what a broker may therefore meet:
 *   event_id        never NULL or empty, unique in the store
 *   key             NULL or "": no ordering and no partition key for it
 *   topic           NULL or "": use the pipeline's route template
 *   event_type, aggregate_type, aggregate_id
 *                   may be NULL (a template expands them to "")
 *   payload         NULL only when payload_len is 0
 *   headers         NULL only when n_headers is 0; names and values
 *                   never NULL
 *   created_at_us   0 when the store cannot tell
 *   destination     NULL in the store's hands; set, never NULL or empty,
 *                   during publish() */
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
    /* Failed attempts before this one, as the store recorded them. The
     * engine counts the final failed attempt into it before bury(), so the
     * store records the total. */
    uint32_t attempts;
    obx_position pos;
    /* Set by the engine: topic if present, else the route template expanded
     * for this event. Valid only during publish(). */
    const char *destination;
} obx_event;

#endif
