#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,  0.1,    0.25,  0.5,  1,
                                        2.5,   5,      10,    30,   60};
static const double batch_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,  0.1,    0.25,  0.5,
                                      1,      2.5,   5,      10,    30};

static const char *const err_class_names[OBX_ERRC_N] = {"retry", "unavailable",
                                                        "permanent", "fatal"};

void obx_pmetrics_init(obx_pipeline_metrics *m, const char *name)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    atomic_store(&m->pending, -1);
    m->latency.bounds = latency_bounds;
    m->latency.n_bounds = sizeof latency_bounds / sizeof latency_bounds[0];
    m->batch.bounds = batch_bounds;
    m->batch.n_bounds = sizeof batch_bounds / sizeof batch_bounds[0];
    pthread_mutex_init(&m->gauges_mu, NULL);
}

void obx_pmetrics_destroy(obx_pipeline_metrics *m)
{
    pthread_mutex_destroy(&m->gauges_mu);
}

void obx_hist_observe(obx_histogram *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < h->n_bounds && s > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_fetch_add(&h->sum_us, (uint_fast64_t)us);
}

void obx_pmetrics_error(obx_pipeline_metrics *m, obx_status st)
{
    obx_err_class c = OBX_ERRC_FATAL;
    if (st == OBX_RETRY)
        c = OBX_ERRC_RETRY;
    else if (st == OBX_UNAVAILABLE)
        c = OBX_ERRC_UNAVAILABLE;
    else if (st == OBX_PERMANENT)
        c = OBX_ERRC_PERMANENT;
    atomic_fetch_add(&m->errors[c], 1);
}

void obx_pmetrics_gauge(obx_pipeline_metrics *m, const char *name, double v)
{
    pthread_mutex_lock(&m->gauges_mu);
    size_t i = 0;
    while (i < m->n_gauges && strcmp(m->gauges[i].name, name) != 0)
        i++;
    if (i == m->n_gauges && i < OBX_PLUGIN_GAUGES_MAX) {
        snprintf(m->gauges[i].name, sizeof m->gauges[i].name, "%s", name);
        m->n_gauges++;
    }
    if (i < m->n_gauges)
        m->gauges[i].value = v;
    pthread_mutex_unlock(&m->gauges_mu);
}

/* Label values escape backslash, quote and newline (exposition format). */
static void put_label(obx_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            obx_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            obx_buf_printf(b, "\\n");
        else
            obx_buf_printf(b, "%c", *v);
    }
}

static void head(obx_buf *b, const char *name, const char *type,
                 const char *help)
{
    obx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(obx_buf *b, const char *name, const obx_pipeline_metrics *m,
                   const char *extra, double v)
{
    obx_buf_printf(b, "%s{pipeline=\"", name);
    put_label(b, m->name);
    obx_buf_printf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

typedef double (*getter)(const obx_pipeline_metrics *m);

static double g_published(const obx_pipeline_metrics *m)
{
    return (double)atomic_load(&m->published);
}
static double g_dead(const obx_pipeline_metrics *m)
{
    return (double)atomic_load(&m->dead_lettered);
}
static double g_retries(const obx_pipeline_metrics *m)
{
    return (double)atomic_load(&m->retries);
}
static double g_pending(const obx_pipeline_metrics *m)
{
    int64_t p = atomic_load(&m->pending);
    return p < 0 ? 0 : (double)p;
}
static double g_oldest(const obx_pipeline_metrics *m)
{
    int64_t t = atomic_load(&m->oldest_pending_us);
    if (t <= 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double age = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (double)t / 1e6;
    return age < 0 ? 0 : age;
}
static double g_circuit(const obx_pipeline_metrics *m)
{
    return atomic_load(&m->circuit_open);
}
static double g_store_up(const obx_pipeline_metrics *m)
{
    return atomic_load(&m->store_up);
}
static double g_broker_up(const obx_pipeline_metrics *m)
{
    return atomic_load(&m->broker_up);
}

static const struct {
    const char *name, *type, *help;
    getter get;
} simple[] = {
    {"outbox_events_published_total", "counter",
     "Events the broker confirmed and the store acknowledged.", g_published},
    {"outbox_events_dead_lettered_total", "counter",
     "Events moved to the dead-letter queue.", g_dead},
    {"outbox_publish_retries_total", "counter",
     "Event-specific failures scheduled for another attempt.", g_retries},
    {"outbox_pending_events", "gauge",
     "Unpublished, not dead events in the store.", g_pending},
    {"outbox_oldest_pending_age_seconds", "gauge",
     "Age of the oldest pending event.", g_oldest},
    {"outbox_circuit_open", "gauge",
     "1 while the pipeline is paused by its circuit breaker.", g_circuit},
    {"outbox_store_connected", "gauge", "1 while the store is reachable.",
     g_store_up},
    {"outbox_broker_connected", "gauge", "1 while the broker is reachable.",
     g_broker_up},
};

static void render_hist(obx_buf *b, const char *name, const char *help,
                        obx_pipeline_metrics *const *ms, size_t n, size_t off)
{
    head(b, name, "histogram", help);
    char bucket[128], le[64];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    for (size_t p = 0; p < n; p++) {
        const obx_histogram *h =
            (const obx_histogram *)((const char *)ms[p] + off);
        uint64_t cum = 0;
        for (size_t i = 0; i <= h->n_bounds; i++) {
            cum += atomic_load(&h->counts[i]);
            if (i < h->n_bounds)
                snprintf(le, sizeof le, ",le=\"%g\"", h->bounds[i]);
            else
                snprintf(le, sizeof le, ",le=\"+Inf\"");
            sample(b, bucket, ms[p], le, (double)cum);
        }
        char nm[128];
        snprintf(nm, sizeof nm, "%s_sum", name);
        sample(b, nm, ms[p], NULL, (double)atomic_load(&h->sum_us) / 1e6);
        snprintf(nm, sizeof nm, "%s_count", name);
        sample(b, nm, ms[p], NULL, (double)cum);
    }
}

static void render_errors(obx_buf *b, obx_pipeline_metrics *const *ms, size_t n)
{
    head(b, "outbox_publish_errors_total", "counter",
         "Failed publish results by class.");
    char extra[64];
    for (size_t p = 0; p < n; p++)
        for (int c = 0; c < OBX_ERRC_N; c++) {
            snprintf(extra, sizeof extra, ",class=\"%s\"", err_class_names[c]);
            sample(b, "outbox_publish_errors_total", ms[p], extra,
                   (double)atomic_load(&ms[p]->errors[c]));
        }
}

/* Plugin gauges: one family per distinct name, samples grouped under it
 * (the exposition format forbids interleaving families). */
static void render_plugin_gauges(obx_buf *b, obx_pipeline_metrics *const *ms,
                                 size_t n)
{
    for (size_t p = 0; p < n; p++)
        pthread_mutex_lock(&ms[p]->gauges_mu);
    for (size_t p = 0; p < n; p++)
        for (size_t g = 0; g < ms[p]->n_gauges; g++) {
            const char *gname = ms[p]->gauges[g].name;
            int seen = 0;
            for (size_t q = 0; q < p && !seen; q++)
                for (size_t h = 0; h < ms[q]->n_gauges; h++)
                    seen |= !strcmp(ms[q]->gauges[h].name, gname);
            if (seen)
                continue;
            char name[96];
            snprintf(name, sizeof name, "outbox_%s", gname);
            head(b, name, "gauge", "Reported by the store or broker plugin.");
            for (size_t q = p; q < n; q++)
                for (size_t h = 0; h < ms[q]->n_gauges; h++)
                    if (!strcmp(ms[q]->gauges[h].name, gname))
                        sample(b, name, ms[q], NULL, ms[q]->gauges[h].value);
        }
    for (size_t p = 0; p < n; p++)
        pthread_mutex_unlock(&ms[p]->gauges_mu);
}

void obx_metrics_render(obx_pipeline_metrics *const *ms, size_t n, obx_buf *out)
{
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        head(out, simple[i].name, simple[i].type, simple[i].help);
        for (size_t p = 0; p < n; p++)
            sample(out, simple[i].name, ms[p], NULL, simple[i].get(ms[p]));
    }
    render_errors(out, ms, n);
    render_hist(out, "outbox_publish_latency_seconds",
                "Commit (created_at) to broker confirmation.", ms, n,
                offsetof(obx_pipeline_metrics, latency));
    render_hist(out, "outbox_batch_duration_seconds",
                "Claim to settled, per batch.", ms, n,
                offsetof(obx_pipeline_metrics, batch));
    render_plugin_gauges(out, ms, n);
}

void obx_metrics_render_reloads(obx_buf *out, uint64_t ok, uint64_t failed)
{
    head(out, "outbox_config_reloads_total", "counter",
         "Config reloads on SIGHUP, by result (error: the file was invalid "
         "and the relay kept its running config).");
    obx_buf_printf(out, "outbox_config_reloads_total{result=\"ok\"} %llu\n",
                   (unsigned long long)ok);
    obx_buf_printf(out, "outbox_config_reloads_total{result=\"error\"} %llu\n",
                   (unsigned long long)failed);
}

void obx_pmetrics_circuit(obx_pipeline_metrics *m, const char *reason)
{
    pthread_mutex_lock(&m->gauges_mu);
    snprintf(m->circuit_reason, sizeof m->circuit_reason, "%s",
             reason ? reason : "");
    pthread_mutex_unlock(&m->gauges_mu);
}

void obx_pmetrics_circuit_reason(obx_pipeline_metrics *m, char *out, size_t len)
{
    pthread_mutex_lock(&m->gauges_mu);
    snprintf(out, len, "%s", m->circuit_reason);
    pthread_mutex_unlock(&m->gauges_mu);
}
