/* Broker plugins: where events go.
 *
 * publish() takes a batch and returns one result per event. Inside, a
 * plugin pipelines (produce + delivery reports, publisher confirms, async
 * PubAcks) and waits for every result or the timeout; the engine never
 * sees a message library's threads or callbacks.
 *
 * Conventions (errstr, threads, instance lifetime) are store.h's: each
 * pipeline's thread opens its broker instance and closes it, and calls on
 * one instance never overlap. publish() of a full batch runs on the
 * pipeline's publisher thread (claim_ahead: the pipeline thread settles
 * and claims meanwhile), the other calls on the pipeline thread, never
 * while a publish() is running; so an instance is used by two threads in
 * turn, each call ordered after the last (a mutex hand-off), and needs no
 * lock of its own. Instances of one plugin in different pipelines run in
 * parallel on different threads. A
 * client library's own threads may call host->log and host->gauge_set,
 * nothing else of the host.
 *
 * Members are marked with the ABI minor they appeared in (version.h).
 * obx_broker_ops grows by appending (abi.h); obx_result is passed as an
 * array and cannot grow within ABI 1.
 */
#ifndef OUTBOX_BROKER_H
#define OUTBOX_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "host.h"
#include "status.h"

#define OBX_ERRSTR_LEN 256

/* Result of publishing one event (since 1.0). Before publish() the engine
 * sets every result to OBX_FATAL "no result from broker", so a result the
 * plugin forgets is never read as a confirmation. */
typedef struct obx_result {
    /* OBX_OK only once the broker confirmed the event durably (ack,
     * PubAck, delivery report without error): the engine then marks it
     * published in the store, and nothing sends it again. */
    obx_status status;
    char errstr[OBX_ERRSTR_LEN]; /* why it failed; NUL-terminated */
} obx_result;

/* What each result means to the engine, when publish() returns OBX_OK:
 *   OBX_OK           acked in the store (even when an earlier event of
 *                    its key failed: the broker has it).
 *   OBX_RETRY        a failed attempt of this event: released with backoff
 *                    (retry.backoff) and counted; at retry.max_attempts it
 *                    is dead-lettered (dlq = none: retried for ever).
 *   OBX_NOMEM        as OBX_RETRY (since 1.2; 1.0/1.1 cores dead-letter it).
 *   OBX_UNAVAILABLE  the broker, not the event: released uncounted, due at
 *                    once, and the circuit opens after this batch.
 *   OBX_PERMANENT    dead-lettered at once (dlq = none: retried, counted).
 *   anything else    (FATAL, CONFIG, UNSUPPORTED, NOT_FOUND, or a result
 *                    left unfilled) as OBX_PERMANENT, with the status
 *                    name in the reason: per-event results have no
 *                    "instance broken"; return OBX_FATAL from publish().
 * With ordering = key, a non-OK result of an event whose key already
 * failed earlier in the batch is overridden: the event is released uncounted,
 * due no earlier than the failed one ("not attempted" is the conventional
 * errstr). */

/* Reserved; must be 0. The loader refuses a broker that sets any bit
 * (since 1.2), naming the file. */
#define OBX_BROKER_FLAGS_KNOWN 0x0u

typedef struct obx_broker_ops {
    uint32_t struct_size; /* since 1.0: sizeof(obx_broker_ops) */
    uint32_t flags;       /* since 1.0: 0 (OBX_BROKER_FLAGS_KNOWN) */

    /* Since 1.0, optional. As obx_store_ops.validate: check pass-through
     * options (e.g. every kafka.* property) and, when connect is true,
     * reach the broker. Thread: main (check); same statuses. */
    obx_status (*validate)(const obx_host *host, const void *config,
                           bool connect, char *errstr, size_t errlen);

    /* Since 1.0, required. Create an instance; as obx_store_ops.open (set
     * *inst only on OK; close() is not called after a failed open). A
     * broker that is down at open should still open (OBX_OK) when it can
     * reconnect later, and report OBX_UNAVAILABLE from publish().
     * Thread: the pipeline's.
     * Engine: UNAVAILABLE opens the circuit and open is tried again after
     * its backoff (no claim meanwhile); any other non-OK status stops the
     * pipeline. */
    obx_status (*open)(const obx_host *host, const void *config, void **inst,
                       char *errstr, size_t errlen);

    /* Since 1.0, required. Release everything. When the pipeline stops,
     * the engine calls flush() first; after publish() returned OBX_FATAL
     * it calls close() alone and opens a new instance. Never fails. */
    void (*close)(void *inst);

    /* Since 1.0, required. Publish events[0..n) (n >= 1) to
     * event->destination (never NULL or empty here), using event->key for
     * partitioning and event->event_id for broker-side dedup, and fill
     * results[0..n). The events and their strings are borrowed until
     * publish returns; copy what must outlive the call. Wait at most
     * timeout_ms (publish_timeout) for confirmations; an event without one
     * by then is OBX_RETRY ("timed out"): it may have arrived, and the
     * retry carries the same event_id.
     * Thread: the pipeline's publisher thread (a full batch, with
     * claim_ahead) or the pipeline's; either way the pipeline waits for
     * the result before it calls the instance again.
     *
     * Order: events of one key appear in array order and must reach the
     * broker in that order. Once one of them fails, later events of that
     * key in this call must not be delivered if the plugin can still hold
     * them back: report them OBX_RETRY with errstr "not attempted".
     *
     * The call is also made with dead letters (dlq = topic:NAME): copies
     * of the dead events with destination NAME and three more headers
     * (outbox-original-topic, outbox-error, outbox-attempts). An OK result
     * there acks the event as dead-lettered; anything else buries it in
     * the store instead, and opens no circuit.
     *
     * Returns:
     *   OBX_OK           every result is filled (each may be a failure;
     *                    see the table above).
     *   OBX_UNAVAILABLE  the broker as a whole is unreachable: results are
     *                    ignored, the batch is released uncounted and the
     *                    circuit opens. Write the reason into
     *                    results[0].errstr: it is the circuit's reason in
     *                    the log, on /readyz and in the outbox_circuit
     *                    metric (filling every result is fine; left as
     *                    the engine prefilled it, the reason reads "no
     *                    result from broker").
     *   OBX_FATAL        the instance is broken: as UNAVAILABLE, then the
     *                    engine closes it and opens a new one. If the new
     *                    instance returns OBX_FATAL too before any publish
     *                    returned OBX_OK, the pipeline stops.
     *   anything else    as OBX_UNAVAILABLE. */
    obx_status (*publish)(void *inst, obx_event *const *events, size_t n,
                          obx_result *results, int timeout_ms);

    /* Since 1.0, optional. Wait up to timeout_ms for everything
     * outstanding, before close() when the pipeline stops. The status is
     * ignored. */
    obx_status (*flush)(void *inst, int timeout_ms);

    /* Since 1.0, optional. Cheap connectivity probe, called while the
     * circuit is open for a broker reason, before the probe batch: OBX_OK
     * lets a batch be tried; any other status keeps the circuit open, with
     * errstr as the reason. Without it, the probe is a real batch. */
    obx_status (*health)(void *inst, char *errstr, size_t errlen);
} obx_broker_ops;

#endif
