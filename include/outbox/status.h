/* Status codes shared by the core and every plugin.
 *
 * The code says what the engine should do next; the human-readable detail
 * goes into a caller-provided (errstr, errlen) buffer. No heap string ever
 * crosses the plugin boundary. The comments below give each code's usual
 * meaning; which codes an op may return and exactly what the engine does
 * with each is written at the op (store.h, broker.h). Since 1.0.
 */
#ifndef OUTBOX_STATUS_H
#define OUTBOX_STATUS_H

typedef enum obx_status {
    OBX_OK = 0,
    /* Transient and specific to this event (rejected, timed out alone,
     * throttled): the event is retried with backoff and the attempt counts. */
    OBX_RETRY = 1,
    /* Transient and system-wide (connection refused, auth failure, broker or
     * database down): the circuit breaker pauses the pipeline; no attempt
     * is counted and nothing is dead-lettered. */
    OBX_UNAVAILABLE = 2,
    /* This event can never succeed (too large, unroutable, invalid topic):
     * it goes to the dead-letter queue at once. */
    OBX_PERMANENT = 3,
    /* The plugin instance is unusable (bug, protocol violation, lost slot):
     * the engine stops the pipeline and reports it loudly. */
    OBX_FATAL = 4,
    /* Invalid configuration, found by open() or validate(). */
    OBX_CONFIG = 5,
    /* Out of memory. */
    OBX_NOMEM = 6,
    /* The optional operation is not implemented by this plugin. */
    OBX_UNSUPPORTED = 7,
    /* No such object (dead-letter id, slot, ...). */
    OBX_NOT_FOUND = 8,
} obx_status;

/* Static, never NULL: "ok", "retry", "unavailable", "permanent", ... */
static inline const char *obx_status_name(obx_status st)
{
    switch (st) {
    case OBX_OK: return "ok";
    case OBX_RETRY: return "retry";
    case OBX_UNAVAILABLE: return "unavailable";
    case OBX_PERMANENT: return "permanent";
    case OBX_FATAL: return "fatal";
    case OBX_CONFIG: return "config";
    case OBX_NOMEM: return "nomem";
    case OBX_UNSUPPORTED: return "unsupported";
    case OBX_NOT_FOUND: return "not_found";
    }
    return "unknown";
}

#endif
