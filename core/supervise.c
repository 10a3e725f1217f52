#include "supervise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define STATUS_EVERY_US 2000000

void obx_supervisor_init(obx_supervisor *sv, obx_relay *r)
{
    memset(sv, 0, sizeof *sv);
    const char *why = NULL;
    obx_notify_init(&sv->n, &why);
    if (why)
        obx_log(r->lg, OBX_LOG_WARN, "core", "systemd notify off: %s", why);
    if (!obx_notify_enabled(&sv->n))
        return;
    sv->n_last = r->n_pipelines;
    sv->last_published =
        calloc(sv->n_last ? sv->n_last : 1, sizeof *sv->last_published);
    sv->last_status_us = obx_mono_us();
    if (sv->n.watchdog_us > 0)
        obx_log(r->lg, OBX_LOG_INFO, "core",
                "systemd watchdog: a ping every %.1fs while every pipeline "
                "loop is alive",
                (double)sv->n.watchdog_us / 2e6);
}

static bool all_opened(obx_relay *r)
{
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (!atomic_load(&r->pipelines[i]->opened))
            return false;
    return true;
}

/* "orders: 1203/s, 45 pending, circuit closed; billing: ..." */
static void status_line(obx_supervisor *sv, obx_relay *r, char *buf, size_t len)
{
    int64_t now = obx_mono_us();
    double secs = (double)(now - sv->last_status_us) / 1e6;
    sv->last_status_us = now;
    if (r->n_pipelines > sv->n_last) { /* a reload added pipelines */
        uint64_t *g = realloc(sv->last_published,
                              r->n_pipelines * sizeof *sv->last_published);
        if (g) {
            memset(g + sv->n_last, 0,
                   (r->n_pipelines - sv->n_last) * sizeof *g);
            sv->last_published = g;
            sv->n_last = r->n_pipelines;
        }
    }
    size_t o = (size_t)snprintf(buf, len, "STATUS=");
    for (size_t i = 0; i < r->n_pipelines && o < len; i++) {
        obx_pipeline_metrics *m = &r->pipelines[i]->metrics;
        uint64_t pub = atomic_load(&m->published);
        uint64_t prev = i < sv->n_last ? sv->last_published[i] : pub;
        if (i < sv->n_last)
            sv->last_published[i] = pub;
        int64_t pend = atomic_load(&m->pending);
        int n = snprintf(buf + o, len - o,
                         "%s%s: %.0f/s, %lld pending, "
                         "circuit %s",
                         i ? "; " : "", r->pipelines[i]->name,
                         secs > 0 && pub >= prev ? (double)(pub - prev) / secs
                                                 : 0.0,
                         (long long)(pend < 0 ? 0 : pend),
                         atomic_load(&m->circuit_open) ? "open" : "closed");
        if (n < 0 || (size_t)n >= len - o) {
            snprintf(buf + o, len - o, "; +%zu more", r->n_pipelines - i);
            return;
        }
        o += (size_t)n;
    }
}

/* The oldest heartbeat, in us of age; the one pipeline it belongs to. */
static int64_t stalest(obx_relay *r, const char **who)
{
    int64_t now = obx_mono_us(), worst = 0;
    for (size_t i = 0; i < r->n_pipelines; i++) {
        obx_pipeline *p = r->pipelines[i];
        if (!p->started)
            continue;
        int64_t age = now - atomic_load(&p->heartbeat_us);
        if (age > worst) {
            worst = age;
            *who = p->name;
        }
    }
    return worst;
}

static void watchdog(obx_supervisor *sv, obx_relay *r, int64_t now)
{
    if (sv->n.watchdog_us <= 0 || now < sv->next_ping_us)
        return;
    sv->next_ping_us = now + sv->n.watchdog_us / 2;
    const char *who = "?";
    int64_t age = stalest(r, &who);
    if (age < sv->n.watchdog_us) {
        if (sv->wedged)
            obx_log(r->lg, OBX_LOG_INFO, "core",
                    "every pipeline loop is alive again: watchdog pings "
                    "resume");
        sv->wedged = false;
        obx_notify_send(&sv->n, "WATCHDOG=1");
        return;
    }
    if (!sv->wedged)
        obx_log(r->lg, OBX_LOG_ERROR, "core",
                "pipeline %s: its loop has not moved for %.1fs; withholding "
                "watchdog pings so systemd restarts the relay",
                who, (double)age / 1e6);
    sv->wedged = true;
}

void obx_supervisor_tick(obx_supervisor *sv, obx_relay *r)
{
    if (!obx_notify_enabled(&sv->n))
        return;
    int64_t now = obx_mono_us();
    char msg[1024];
    if (!sv->ready_sent && all_opened(r)) {
        sv->ready_sent = true;
        size_t o = (size_t)snprintf(msg, sizeof msg, "READY=1\n");
        status_line(sv, r, msg + o, sizeof msg - o);
        obx_notify_send(&sv->n, msg);
        sv->next_status_us = now + STATUS_EVERY_US;
    } else if (sv->ready_sent && now >= sv->next_status_us) {
        status_line(sv, r, msg, sizeof msg);
        obx_notify_send(&sv->n, msg);
        sv->next_status_us = now + STATUS_EVERY_US;
    }
    watchdog(sv, r, now);
}

void obx_supervisor_reloading(obx_supervisor *sv)
{
    obx_notify_send(&sv->n, "RELOADING=1\nSTATUS=reloading the config");
}

void obx_supervisor_ready(obx_supervisor *sv)
{
    /* the next tick sends READY=1 again once every pipeline is open */
    sv->ready_sent = false;
}

void obx_supervisor_stopping(obx_supervisor *sv)
{
    obx_notify_send(&sv->n, "STOPPING=1\nSTATUS=stopping: settling in-flight "
                            "batches");
}

void obx_supervisor_free(obx_supervisor *sv)
{
    obx_notify_close(&sv->n);
    free(sv->last_published);
    sv->last_published = NULL;
}
