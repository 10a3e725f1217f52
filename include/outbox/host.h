/* The host API: what the core lends a plugin instance.
 *
 * Plugins never link against the core; every service they need comes
 * through this struct (as Redis modules and SQLite extensions get theirs).
 * It grows by appending members; check OBX_HAS_FIELD(host, obx_host, m)
 * (abi.h) before using a member marked later than 1.0: the relay may be
 * older than your headers.
 *
 * Ownership: the core's; it outlives the instance (or, for validate and
 * schema, the call) it was passed to. Never write to it.
 * Threads: every function member may be called from any thread, the
 * plugin's own and a client library's included, at the same time.
 */
#ifndef OUTBOX_HOST_H
#define OUTBOX_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef enum obx_log_level {
    OBX_LOG_ERROR = 0,
    OBX_LOG_WARN = 1,
    OBX_LOG_INFO = 2,
    OBX_LOG_DEBUG = 3,
    OBX_LOG_TRACE = 4,
} obx_log_level;

#if defined(__GNUC__)
#define OBX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OBX_PRINTF(a, b)
#endif

typedef struct obx_host obx_host;

struct obx_host {
    /* Since 1.0: the relay's ABI and its sizeof(obx_host). */
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;

    /* Since 1.0. Name of the pipeline this instance serves ("orders"); static
     * for the instance's lifetime. */
    const char *pipeline;

    /* Since 1.0. Log a line tagged with pipeline and plugin. Thread-safe (a
     * client library's own threads may call it). Never log secrets: use mask()
     * for anything that may hold one (conninfo strings). */
    void (*log)(const obx_host *h, obx_log_level level, const char *fmt, ...)
        OBX_PRINTF(3, 4);
    /* Since 1.0. Whether `level` would be written; skip costly formatting when
     * not. */
    int (*log_enabled)(const obx_host *h, obx_log_level level);

    /* Since 1.0. Clocks, microseconds: wall time (unix epoch) and monotonic. */
    int64_t (*now_us)(void);
    int64_t (*mono_us)(void);

    /* Since 1.0. Expand a route template ("outbox.${aggregate_type}") for an
     * event into buf. Returns the length it needed (excluding NUL); when that
     * is >= len the output was truncated. Fields: aggregate_type, aggregate_id,
     * event_type, event_id, key, topic. */
    size_t (*expand)(const obx_host *h, const char *tpl, const obx_event *ev,
                     char *buf, size_t len);

    /* Since 1.0. Copy `in` to out with passwords masked (conninfo key=value
     * pairs and URLs user:pass@). Always NUL-terminates out. */
    void (*mask)(const char *in, char *out, size_t outlen);

    /* Since 1.0. Set a plugin-reported gauge, exported as
     * outbox_<name>{pipeline=...} (e.g. "wal_slot_lag_bytes"). Thread-safe. */
    void (*gauge_set)(const obx_host *h, const char *name, double value);

    /* Since 1.0. Core-private; plugins must not touch it. */
    void *core;

    /* Since ABI 1.1. The longest the engine may hold an event back before
     * it tries again (the upper bound of the pipeline's retry.backoff), in
     * milliseconds; 0 when unknown (schema, tools). A broker that dedups
     * by event id within a window compares it with that window. */
    int64_t retry_max_delay_ms;
};

#endif
