/* Broker plugins: where events go.
 *
 * publish() takes a batch and returns one result per event. Inside, a
 * plugin pipelines (produce + delivery reports, publisher confirms, async
 * PubAcks) and waits for every result or the timeout; the engine never
 * sees a message library's threads or callbacks.
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

/* Result of publishing one event. OBX_OK only once the broker confirmed it
 * durably (ack, PubAck, delivery report without error). */
typedef struct obx_result {
    obx_status status;
    char errstr[OBX_ERRSTR_LEN];
} obx_result;

typedef struct obx_broker_ops {
    uint32_t struct_size;
    uint32_t flags;

    /* As obx_store_ops.validate: check pass-through options (e.g. every
     * kafka.* property) and, when connect is true, reach the broker. */
    obx_status (*validate)(const obx_host *host, const void *config,
                           bool connect, char *errstr, size_t errlen);

    /* Create an instance; as obx_store_ops.open. A broker that is down at
     * open should still open (OBX_OK) when it can reconnect later, and
     * report OBX_UNAVAILABLE from publish(). */
    obx_status (*open)(const obx_host *host, const void *config, void **inst,
                       char *errstr, size_t errlen);

    /* Flush what can be flushed quickly and release everything. */
    void (*close)(void *inst);

    /* Publish events[0..n) to event->destination, using event->key for
     * partitioning and event->event_id for broker-side dedup. The events
     * are borrowed until publish returns. Fill results[0..n).
     *
     * Order: events of one key appear in array order and must reach the
     * broker in that order. Once one of them fails, later events of that
     * key in this call must not be delivered if the plugin can still hold
     * them back: report them OBX_RETRY with errstr "not attempted".
     *
     * Returns OBX_OK when every result is filled (each may be a failure);
     * OBX_UNAVAILABLE when the broker as a whole is unreachable (results are
     * ignored, the batch is released without counting attempts and the
     * circuit opens); OBX_FATAL when the instance must be reopened. */
    obx_status (*publish)(void *inst, obx_event *const *events, size_t n,
                          obx_result *results, int timeout_ms);

    /* Wait up to timeout_ms for everything outstanding. Optional. */
    obx_status (*flush)(void *inst, int timeout_ms);

    /* Cheap connectivity probe used while the circuit is open: OBX_OK or
     * OBX_UNAVAILABLE with a reason. Optional (then publish probes). */
    obx_status (*health)(void *inst, char *errstr, size_t errlen);
} obx_broker_ops;

#endif
