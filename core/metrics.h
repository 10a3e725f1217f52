/* The metrics registry: per-pipeline counters, gauges and histograms,
 * updated lock-free by pipeline threads and rendered as Prometheus text by
 * the HTTP thread. */
#ifndef OBX_CORE_METRICS_H
#define OBX_CORE_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <outbox/status.h>

#include "buf.h"

#define OBX_HIST_MAX_BUCKETS 16
#define OBX_PLUGIN_GAUGES_MAX 16

typedef struct obx_histogram {
    const double *bounds; /* upper bounds in seconds, ascending */
    size_t n_bounds;
    atomic_uint_fast64_t counts[OBX_HIST_MAX_BUCKETS + 1]; /* last: +Inf */
    atomic_uint_fast64_t sum_us;
} obx_histogram;

/* Publish error classes, the `class` label of outbox_publish_errors_total. */
typedef enum obx_err_class {
    OBX_ERRC_RETRY = 0,
    OBX_ERRC_UNAVAILABLE,
    OBX_ERRC_PERMANENT,
    OBX_ERRC_FATAL,
    OBX_ERRC_N
} obx_err_class;

typedef struct obx_gauge_kv {
    char name[64];
    double value;
} obx_gauge_kv;

typedef struct obx_pipeline_metrics {
    char name[128];
    atomic_uint_fast64_t published;
    atomic_uint_fast64_t dead_lettered;
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t errors[OBX_ERRC_N];
    atomic_int_fast64_t pending; /* -1: unknown */
    /* created_at of the oldest pending event, unix us (0: none); the age
     * is taken at scrape time, so it keeps growing while the store or the
     * broker is down and no fresh stats arrive */
    atomic_int_fast64_t oldest_pending_us;
    atomic_int circuit_open;
    atomic_int store_up;
    atomic_int broker_up;
    atomic_int_fast64_t last_progress_us; /* monotonic; publish or idle */
    obx_histogram latency;     /* commit (created_at) -> broker confirm */
    obx_histogram batch;       /* claim -> settled */
    pthread_mutex_t gauges_mu; /* guards gauges and circuit_reason */
    /* why the circuit opened ("broker unavailable: the server blocked the
     * connection ..."), for /readyz; empty while closed */
    char circuit_reason[512];
    obx_gauge_kv gauges[OBX_PLUGIN_GAUGES_MAX];
    size_t n_gauges;
} obx_pipeline_metrics;

/* Initialise (zeroes, default buckets). `name` is copied. */
void obx_pmetrics_init(obx_pipeline_metrics *m, const char *name);
void obx_pmetrics_destroy(obx_pipeline_metrics *m);

void obx_hist_observe(obx_histogram *h, int64_t us);
void obx_pmetrics_error(obx_pipeline_metrics *m, obx_status st);
/* Set a plugin gauge (outbox_<name>); silently dropped past the limit. */
void obx_pmetrics_gauge(obx_pipeline_metrics *m, const char *name, double v);

/* The relay's own counter of config reloads (SIGHUP), by result. */
void obx_metrics_render_reloads(obx_buf *out, uint64_t ok, uint64_t failed);

/* Set or clear (NULL) the circuit's reason shown by /readyz. Thread-safe. */
void obx_pmetrics_circuit(obx_pipeline_metrics *m, const char *reason);
/* Copy it out (empty when closed). Thread-safe. */
void obx_pmetrics_circuit_reason(obx_pipeline_metrics *m, char *out,
                                 size_t len);

/* Render every pipeline's metrics as Prometheus text format 0.0.4. */
void obx_metrics_render(obx_pipeline_metrics *const *ms, size_t n,
                        obx_buf *out);

#endif
