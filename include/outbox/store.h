/* Store plugins: where events come from (an outbox table, a WAL stream).
 *
 * Conventions for every op below:
 *  - it returns an obx_status and writes detail into the caller's
 *    (errstr, errlen) buffer, NUL-terminated when errlen > 0; the engine
 *    logs it and may show it on /readyz, so never put a secret in it (use
 *    host->mask). errlen is at least 256;
 *  - "Engine:" says exactly what the core does with each status. A status
 *    an op does not list is a bug in the plugin; the core treats it as the
 *    "any other status" line says;
 *  - "Thread:" says who calls it. `run` gives each pipeline one thread of
 *    its own; that thread opens the pipeline's store instance, makes every
 *    call on it and closes it, so calls on one instance never overlap and
 *    need no lock. Instances of one plugin in different pipelines run in
 *    parallel on different threads: state shared between instances (a
 *    static, a library's global init) needs a lock or a pthread_once. The
 *    operator commands (check, schema, demo, stats, dead) call from the
 *    main thread of their own process, with no engine running in it, but
 *    possibly with a relay running in another process on the same store;
 *  - an instance lives from open() to close(); the config struct it was
 *    opened with is owned by the core and outlives the instance (read it,
 *    never free or change it). `host` outlives the instance too.
 *
 * Members are marked with the ABI minor they appeared in (version.h).
 * obx_store_ops and obx_store_stats grow by appending (abi.h); obx_release,
 * obx_burial and obx_dead_letter are passed as arrays or without a size and
 * cannot grow within ABI 1.
 */
#ifndef OUTBOX_STORE_H
#define OUTBOX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "host.h"
#include "status.h"

/* What the engine asks a store to do with one failed event (since 1.0). */
typedef struct obx_release {
    obx_event *event;
    /* Unix time, microseconds, not before which to offer it again. May be
     * now or in the past (an outage: offer it at once). */
    int64_t retry_at_us;
    /* Why it failed; the store keeps it as the event's last error. May be
     * NULL: the store then keeps the last error it recorded, if any.
     * Valid only during the call. */
    const char *error;
    /* true: the attempt failed because of the event itself; the store
     * records event->attempts + 1 failed attempts. false (an outage, or an
     * event held back behind an earlier failure of its key): the store
     * keeps event->attempts as it is. */
    bool counts_as_attempt;
} obx_release;

/* What the engine asks a store to do with one dead event (since 1.0). */
typedef struct obx_burial {
    obx_event *event;   /* event->attempts already counts the final attempt */
    const char *reason; /* never NULL; valid only during the call */
    /* Where it was going, or NULL/empty when it never got a destination.
     * Valid only during the call. */
    const char *destination;
} obx_burial;

/* A dead letter as the store reports it to `dead list/show` (since 1.0).
 * All pointers are the store's and valid only during the callback. */
typedef struct obx_dead_letter {
    const obx_event *event;
    const char *reason;
    const char *destination; /* may be NULL */
    int64_t dead_at_us;
} obx_dead_letter;

/* Return non-zero from the callback to stop the iteration. */
typedef int (*obx_dead_cb)(void *ctx, const obx_dead_letter *dl);

/* Callback receiving DDL text, statement by statement (the core adds a
 * newline when the text does not end in one). */
typedef void (*obx_emit_fn)(void *ctx, const char *text);

/* Filled by stats(). The core allocates it, zeroes it, sets struct_size to
 * its own sizeof and lag_bytes to -1; a store writes a member only when
 * OBX_HAS_FIELD(st, obx_store_stats, member) says the core has it. */
typedef struct obx_store_stats {
    uint32_t struct_size; /* since 1.0 */
    /* 1.0: unpublished, not dead (any owner). A store that cannot count
     * what it has not read yet (a WAL stream) reports at least 1 while
     * it may be behind, so that `run --once` does not stop early. */
    uint64_t pending;
    uint64_t dead;             /* 1.0: dead letters held by the store */
    int64_t oldest_pending_us; /* 1.0: its created_at_us; 0: none */
    int64_t lag_bytes;         /* 1.0: WAL stores: bytes behind; -1: n/a */
    /* Since 1.1. Non-zero while this instance cannot claim because
     * another process holds what claiming needs exclusively (a WAL slot
     * streamed by another relay): it is a hot standby. `run --once` says
     * so instead of reporting a drained store. */
    uint32_t standby;
} obx_store_stats;

/* Capabilities, in obx_store_ops.flags. The loader refuses a plugin that
 * sets a bit not defined here (since 1.2; bit 0x2, the removed
 * OBX_STORE_DURABLE_RETRY, is still accepted, and ignored, from plugins
 * built for 1.0 or 1.1). */
/* Since 1.0. claim() never returns an event while an earlier event of its
 * key is unsettled or waiting for its retry_at_us, across every instance
 * sharing the store. Without it the engine holds keys itself, but only
 * within this instance: an unordered store shared by two relays does not
 * keep per-key order. */
#define OBX_STORE_ORDERED_CLAIM 0x1u
/* Every flag this ABI defines. */
#define OBX_STORE_FLAGS_KNOWN OBX_STORE_ORDERED_CLAIM

typedef struct obx_store_ops {
    uint32_t struct_size; /* since 1.0: sizeof(obx_store_ops) */
    uint32_t flags;       /* since 1.0: OBX_STORE_* bits, or 0 */

    /* Since 1.0, optional. Check the config without side effects beyond
     * connecting when `connect` is true. No instance exists.
     * Thread: main (outbox-relay check [--connect]); `run` never calls it.
     * Engine: OK passes; UNAVAILABLE is reported as unreachable (exit 1);
     * any other status is a config error (exit 2). */
    obx_status (*validate)(const obx_host *host, const void *config,
                           bool connect, char *errstr, size_t errlen);

    /* Since 1.0, required. Create an instance; on OBX_OK set *inst (any
     * value, NULL included: it is only passed back) and own it until
     * close(). On any other status set nothing and free what you made:
     * close() is not called after a failed open.
     * Thread: the pipeline's (run), or main (demo, stats, dead).
     * Engine: OK goes on; UNAVAILABLE (database unreachable) is retried
     * with the circuit backoff until it opens or the relay stops (run
     * --once: for at most once_timeout); CONFIG, NOMEM, FATAL and any
     * other status stop the pipeline (the relay exits 1). The commands
     * exit 1 on any non-OK status, printing errstr. */
    obx_status (*open)(const obx_host *host, const void *config, void **inst,
                       char *errstr, size_t errlen);

    /* Since 1.0, required. Release everything, including events still
     * claimed: those return to the store when their lease runs out (or at
     * once, if the store can tell). Never fails.
     * Thread: the one that opened the instance. */
    void (*close)(void *inst);

    /* Since 1.0, required. Claim up to `max` (>= 1) events that are due
     * now, in commit order per key, and put pointers to them in
     * out[0..*n). When none is due, wait up to wait_ms for one (0: do not
     * wait), then return OBX_OK with *n == 0. The events are store-owned
     * until settled by ack, release or bury; every claimed event is
     * settled exactly once, by one of those calls or by close().
     * Thread: the pipeline's. With claim_ahead the engine claims the next
     * batch while the last one is still out at the broker (its events
     * claimed, unsettled): an OBX_STORE_ORDERED_CLAIM store keeps holding
     * back the later events of their keys (unless it has the claim_ahead
     * op, which the engine then calls instead); for other stores the
     * engine does (it publishes nothing of a key before the earlier
     * event's result is in, and holds what comes after an event being
     * released).
     * Engine: OK with *n events publishes them (n == 0: nothing due; a
     * store circuit opened by claim closes again); UNAVAILABLE opens the
     * circuit: no claim until the circuit backoff has passed. Any other
     * status (RETRY and NOMEM included: report transient trouble, a
     * deadlock or a serialization failure too, as UNAVAILABLE) stops the
     * pipeline. On any non-OK status *n and out are ignored, so nothing
     * may stay claimed. */
    obx_status (*claim)(void *inst, obx_event **out, size_t max, size_t *n,
                        int wait_ms, char *errstr, size_t errlen);

    /* Since 1.0, required. The broker confirmed these events (n >= 1):
     * mark them published (or delete them). OBX_OK settles all of them
     * (the store may free them). On any other status none is settled:
     * every event stays claimed and valid, because the engine may pass the
     * same array again. An ack that reaches the store twice must be
     * harmless (the first may have committed before the error).
     * Thread: the pipeline's. Per batch the engine calls ack, then
     * release, then bury, each once when it has events for it.
     * Engine: OK settles; UNAVAILABLE opens the store circuit, sleeps its
     * backoff and calls again with the same events until OK or the relay
     * stops (then it gives up: close() frees them, the lease brings them
     * back and they are published again); any other status stops the
     * pipeline (same ending). The engine never republishes an event whose
     * settle failed while it runs: acking late beats publishing twice. */
    obx_status (*ack)(void *inst, obx_event *const *events, size_t n,
                      char *errstr, size_t errlen);

    /* Since 1.0, required. Give failed events back for a later attempt,
     * recording attempts and retry_at_us as each item says (see
     * obx_release), and last error. Settles them. Errors, retries and
     * thread: as ack. */
    obx_status (*release)(void *inst, const obx_release *items, size_t n,
                          char *errstr, size_t errlen);

    /* Since 1.0, required. Dead-letter events inside the store (dlq =
     * store, and dlq = topic:NAME when that publish failed), keeping
     * reason, destination and event->attempts for `dead list`. Settles
     * them. Errors, retries and thread: as ack. */
    obx_status (*bury)(void *inst, const obx_burial *items, size_t n,
                       char *errstr, size_t errlen);

    /* Since 1.0, optional. Fill *st (see obx_store_stats).
     * Thread: the pipeline's (every 5 s, and when a circuit opens or
     * closes), or main (outbox-relay stats).
     * Engine: OK updates the gauges (outbox_pending, oldest age, WAL lag)
     * and tells run --once whether it has drained; any other status keeps
     * the last values, is logged at debug level, and makes run --once give
     * up after once_timeout (it cannot know the store is drained). Without
     * stats, run --once ends at the first empty claim. */
    obx_status (*stats)(void *inst, obx_store_stats *st, char *errstr,
                        size_t errlen);

    /* Since 1.0, optional; superseded by schema_v2, which the core calls
     * instead when both are set. Emit the DDL a DBA runs for `config`
     * (tables, indexes, triggers). Needs no instance.
     * Thread: main (outbox-relay schema). `config` is filled from the
     * pipeline's keys (-c) or the option defaults.
     * Engine: OK exits 0; any other status exits 1 with no reason shown. */
    obx_status (*schema)(const obx_host *host, const void *config,
                         obx_emit_fn emit, void *ctx);

    /* Since 1.0, optional, all three. Dead letters, for `outbox-relay dead`
     * (thread: main, an instance opened for the command). event_id NULL
     * means all.
     * dead_list calls cb once per dead letter; dead_requeue makes them
     * pending (due now) again; dead_purge deletes them, and nothing else
     * (published events stay); both set *count to how many they changed.
     * All three return OBX_NOT_FOUND, with errstr naming the id, for an id
     * that is not a dead letter (dead_list without calling cb). Before
     * 1.2 the header let dead_list return OK without a call; the core
     * still takes that as "not found" too.
     * Engine: OK exits 0; any other status exits 1 with errstr. */
    obx_status (*dead_list)(void *inst, const char *event_id, obx_dead_cb cb,
                            void *ctx, char *errstr, size_t errlen);
    obx_status (*dead_requeue)(void *inst, const char *event_id,
                               uint64_t *count, char *errstr, size_t errlen);
    obx_status (*dead_purge)(void *inst, const char *event_id, uint64_t *count,
                             char *errstr, size_t errlen);

    /* Since 1.0, optional. Write n demo orders, each with its OrderCreated
     * event in the same transaction (outbox-relay demo; thread: main, an
     * instance opened for the command). Engine: OK exits 0; any other
     * status exits 1 with errstr. */
    obx_status (*demo)(void *inst, uint64_t n, char *errstr, size_t errlen);

    /* Since 1.2, optional. As schema, with an error buffer: on a non-OK
     * status `outbox-relay schema` prints errstr and exits 1 (CONFIG: 2).
     * Set schema as well only if relays older than 1.2 must print your
     * DDL; a 1.2 core calls only this one. */
    obx_status (*schema_v2)(const obx_host *host, const void *config,
                            obx_emit_fn emit, void *ctx, char *errstr,
                            size_t errlen);

    /* Since 1.3, optional; for OBX_STORE_ORDERED_CLAIM stores. As claim
     * with wait_ms 0, except that this instance's own unsettled events
     * do not hold back the later events of their keys: out gets, per key,
     * the events that follow them (never one of them again), while keys
     * of other instances' claims and keys behind a retry stay held as in
     * claim. The engine calls it instead of claim while a batch is out at
     * the broker (claim_ahead = auto, the default, turns that on for a
     * store with this op), so that a backlog whose every key is in every
     * batch can still be claimed ahead: with a backlog it may be the only
     * claim for long stretches, so do claim's housekeeping here too
     * (lease expiry, retention, notifications). The engine never claims
     * ahead past a batch that handed events back as it was routed; it
     * publishes nothing this returned before the results of every event
     * claimed earlier are in, and releases, uncounted and no earlier than
     * its retry, each event whose key has an earlier event being released:
     * per-key order is kept as with claim. Without this op the engine
     * claims ahead with claim.
     * Thread: the pipeline's. Engine: as claim. */
    obx_status (*claim_ahead)(void *inst, obx_event **out, size_t max,
                              size_t *n, char *errstr, size_t errlen);
} obx_store_ops;

#endif
