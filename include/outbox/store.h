/* Store plugins: where events come from (an outbox table, a WAL stream).
 *
 * Every function returns an obx_status and writes detail into the caller's
 * (errstr, errlen) buffer, always NUL-terminated when errlen > 0.
 * An instance is used by one thread at a time (its pipeline's engine) and
 * lives from open() to close(); the config struct it was opened with is
 * owned by the core and outlives the instance.
 */
#ifndef OUTBOX_STORE_H
#define OUTBOX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "host.h"
#include "status.h"

/* What the engine asks a store to do with one failed event. */
typedef struct obx_release {
    obx_event *event;
    int64_t
        retry_at_us;   /* unix time, microseconds, not before which to retry */
    const char *error; /* why it failed; stored as last_error (may be NULL) */
    bool counts_as_attempt; /* false for circuit-breaker and held-back events */
} obx_release;

/* What the engine asks a store to do with one dead event. */
typedef struct obx_burial {
    obx_event *event; /* event->attempts already counts the final attempt */
    const char *reason;
    const char *destination; /* where it was going, or NULL */
} obx_burial;

/* A dead letter as the store reports it to `dead list/show`. All pointers
 * are valid only during the callback. */
typedef struct obx_dead_letter {
    const obx_event *event;
    const char *reason;
    const char *destination;
    int64_t dead_at_us;
} obx_dead_letter;

/* Return non-zero from the callback to stop the iteration. */
typedef int (*obx_dead_cb)(void *ctx, const obx_dead_letter *dl);

/* Callback receiving DDL text, statement by statement. */
typedef void (*obx_emit_fn)(void *ctx, const char *text);

typedef struct obx_store_stats {
    uint32_t struct_size;
    uint64_t pending;          /* unpublished, not dead (any owner) */
    uint64_t dead;             /* dead letters held by the store */
    int64_t oldest_pending_us; /* created_at of the oldest pending, 0: none */
    int64_t lag_bytes; /* WAL stores: bytes behind; -1: not applicable */
    /* Since ABI 1.1. Non-zero while this instance cannot claim because
     * another process holds what claiming needs exclusively (a WAL slot
     * streamed by another relay): it is a hot standby. `run --once` says
     * so instead of reporting a drained store. */
    uint32_t standby;
} obx_store_stats;

/* Capabilities, in obx_store_ops.flags. */
/* claim() never returns an event while an earlier event of its key is
 * unsettled, across every instance sharing the store. */
#define OBX_STORE_ORDERED_CLAIM 0x1u
/* attempts and retry time survive a restart (kept in the store). */
#define OBX_STORE_DURABLE_RETRY 0x2u

typedef struct obx_store_ops {
    uint32_t struct_size;
    uint32_t flags;

    /* Check the config without side effects beyond connecting when
     * `connect` is true (outbox-relay check [--connect]). Optional. */
    obx_status (*validate)(const obx_host *host, const void *config,
                           bool connect, char *errstr, size_t errlen);

    /* Create an instance. On OBX_OK *inst is set and owned by the caller
     * until close(). `host` outlives the instance. Errors: OBX_CONFIG,
     * OBX_UNAVAILABLE (database unreachable: the engine retries open with
     * backoff), OBX_NOMEM, OBX_FATAL. */
    obx_status (*open)(const obx_host *host, const void *config, void **inst,
                       char *errstr, size_t errlen);

    /* Release everything. Claimed but unsettled events return to the store
     * when their lease runs out (or at once, if the store can). */
    void (*close)(void *inst);

    /* Claim up to `max` events due now, in commit order per key, and put
     * pointers to them in out[0..*n). Waits up to wait_ms for new events
     * when none are due (0: don't wait). The events are store-owned until
     * settled by ack, release or bury; every claimed event is settled exactly
     * once (see ack). OBX_OK with *n == 0 means nothing is due.
     * OBX_UNAVAILABLE: the store is unreachable (the engine backs off and
     * retries). */
    obx_status (*claim)(void *inst, obx_event **out, size_t max, size_t *n,
                        int wait_ms, char *errstr, size_t errlen);

    /* The broker confirmed these events: mark them published (or delete
     * them). OBX_OK settles the events (the store may free them). On an
     * error nothing is settled: the events stay claimed and valid, and the
     * engine calls again once the store is back (OBX_UNAVAILABLE) rather
     * than publish them twice; close() frees events still unsettled and
     * their rows return after the lease. The same holds for release and
     * bury. */
    obx_status (*ack)(void *inst, obx_event *const *events, size_t n,
                      char *errstr, size_t errlen);

    /* Give failed events back for a later attempt. Settles them. */
    obx_status (*release)(void *inst, const obx_release *items, size_t n,
                          char *errstr, size_t errlen);

    /* Dead-letter events inside the store (dlq = store). Settles them. */
    obx_status (*bury)(void *inst, const obx_burial *items, size_t n,
                       char *errstr, size_t errlen);

    /* Fill *st (the caller sets st->struct_size). Optional. */
    obx_status (*stats)(void *inst, obx_store_stats *st, char *errstr,
                        size_t errlen);

    /* Emit the DDL a DBA runs for `config` (table, indexes, triggers).
     * Needs no instance. Optional. */
    obx_status (*schema)(const obx_host *host, const void *config,
                         obx_emit_fn emit, void *ctx);

    /* Dead-letter operations, all optional. event_id NULL means all. */
    obx_status (*dead_list)(void *inst, const char *event_id, obx_dead_cb cb,
                            void *ctx, char *errstr, size_t errlen);
    obx_status (*dead_requeue)(void *inst, const char *event_id,
                               uint64_t *count, char *errstr, size_t errlen);
    obx_status (*dead_purge)(void *inst, const char *event_id, uint64_t *count,
                             char *errstr, size_t errlen);

    /* Write n demo orders, each with its OrderCreated event in the same
     * transaction (outbox-relay demo). Optional. */
    obx_status (*demo)(void *inst, uint64_t n, char *errstr, size_t errlen);
} obx_store_ops;

#endif
