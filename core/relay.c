#include "relay.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <outbox/abi.h>
#include "escape.h"
#include "supervise.h"

static int entry_line(const obx_conf_section *sec, const char *key)
{
    for (size_t i = 0; i < sec->n_entries; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return sec->entries[i].line;
    return sec->line;
}

static void gauge_to_metrics(void *sink, const char *pipeline, const char *name,
                             double v)
{
    (void)pipeline;
    obx_pmetrics_gauge(sink, name, v);
}

/* Load one plugin of a pipeline and fill its config from the keys under
 * `prefix` ("store." / "broker."). */
static int load_plugin(obx_relay *r, const obx_conf_section *sec,
                       const char *role, obx_plugin_kind kind, const char *name,
                       const obx_loaded **pl, void **conf, char *err,
                       size_t errlen)
{
    char e[1024];
    if (obx_loader_get(&r->loader, name, kind, pl, e, sizeof e) != 0) {
        snprintf(err, errlen, "%s:%d: [pipeline %s] %s = %s: %s", r->conf.path,
                 entry_line(sec, role), sec->name, role, name, e);
        return -1;
    }
    const obx_plugin *d = (*pl)->desc;
    *conf = calloc(1, d->config_size ? d->config_size : 1);
    if (!*conf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", role);
    obx_optable t = {d->options, d->option_size};
    return obx_options_fill(t, r->conf.path, sec, prefix, *conf, err, errlen);
}

static void init_host(obx_pipeline *p, obx_host_ctx *ctx, obx_host *h,
                      const obx_loaded *pl)
{
    ctx->lg = p->lg;
    snprintf(ctx->component, sizeof ctx->component, "%s/%s", p->name,
             pl->desc->name);
    ctx->gauge = gauge_to_metrics;
    ctx->gauge_sink = &p->metrics;
    obx_host_init(h, ctx, p->name);
    h->retry_max_delay_ms = p->set.backoff.max_ms;
}

static int build_pipeline(obx_relay *r, const obx_conf_section *sec,
                          obx_pipeline *p, char *err, size_t errlen)
{
    p->name = strdup(sec->name);
    p->lg = r->lg;
    p->stop = &r->stop;
    if (!p->name)
        return -1;
    if (obx_pipeline_settings_fill(r->conf.path, sec, &p->set, err, errlen))
        return -1;
    if (load_plugin(r, sec, "store", OBX_PLUGIN_STORE, p->set.store,
                    &p->store_pl, &p->store_conf, err, errlen) ||
        load_plugin(r, sec, "broker", OBX_PLUGIN_BROKER, p->set.broker,
                    &p->broker_pl, &p->broker_conf, err, errlen))
        return -1;
    p->sops = p->store_pl->desc->ops;
    p->bops = p->broker_pl->desc->ops;
    init_host(p, &p->store_hctx, &p->store_host, p->store_pl);
    init_host(p, &p->broker_hctx, &p->broker_host, p->broker_pl);
    if (obx_pipeline_prepare(p) != 0) {
        snprintf(err, errlen, "out of memory preparing pipeline %s", p->name);
        return -1;
    }
    return 0;
}

static int build_pipelines(obx_relay *r, char *err, size_t errlen)
{
    size_t n = 0;
    for (size_t i = 0; i < r->conf.n_sections; i++)
        n += r->conf.sections[i].kind == OBX_SECTION_PIPELINE;
    if (n == 0) {
        snprintf(err, errlen,
                 "%s: no [pipeline NAME] section: nothing to relay (see "
                 "plugins.conf for an example)",
                 r->conf.path);
        return -1;
    }
    r->pipelines = calloc(n, sizeof *r->pipelines);
    if (!r->pipelines)
        return -1;
    for (size_t i = 0; i < r->conf.n_sections; i++) {
        const obx_conf_section *s = &r->conf.sections[i];
        if (s->kind != OBX_SECTION_PIPELINE)
            continue;
        obx_pipeline *p = calloc(1, sizeof *p);
        if (!p)
            return -1;
        r->pipelines[r->n_pipelines++] = p;
        if (build_pipeline(r, s, p, err, errlen))
            return -1;
    }
    return 0;
}

int obx_relay_load(obx_relay *r, const char *path, const char *exe_dir,
                   obx_logger *lg, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->lg = lg;
    r->exe_dir = exe_dir;
    pthread_mutex_init(&r->mu, NULL);
    if (obx_conf_load(path, &r->conf, err, errlen) != 0) {
        pthread_mutex_destroy(&r->mu);
        return -1;
    }
    if (obx_relay_settings_fill(r->conf.path, obx_conf_relay(&r->conf),
                                &r->settings, err, errlen) != 0)
        goto fail;
    lg->level = (obx_log_level)r->settings.log_level;
    lg->format = (obx_log_format)r->settings.log_format;
    if (obx_loader_init(&r->loader, r->settings.plugin_path, exe_dir) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (build_pipelines(r, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    obx_relay_free(r);
    return -1;
}

/* A plugin's config error names only its line ("line 7: store.column.x:
 * ..."; a plugin never sees the file name): make it "FILE:7: ..." like the
 * core's own config errors. Other text is copied unchanged. */
static void locate_err(const char *path, const char *err, char *out, size_t len)
{
    int line = 0, n = 0;
    if (sscanf(err, "line %d: %n", &line, &n) == 1 && n > 0 && line > 0)
        snprintf(out, len, "%s:%d: %s", path, line, err + n);
    else
        snprintf(out, len, "%s", err);
}

/* Where validate_one reports a problem: a FILE (check) or the log
 * (run, reload). */
typedef struct validate_sink {
    FILE *out;          /* when not NULL */
    obx_logger *lg;     /* otherwise */
    const char *prefix; /* log lines only: "reload: " */
} validate_sink;

/* One problem line; counts it as a config error unless the plugin only
 * could not reach its server. */
static void validate_report(obx_validation *v, const validate_sink *to,
                            const char *path, const char *pipe,
                            const char *role, const char *plugin, obx_status st,
                            const char *err)
{
    char where[OBX_CORE_ERR_LEN + 256];
    locate_err(path, err, where, sizeof where);
    if (to->out)
        obx_eprintf(to->out, "[pipeline %s] %s %s: %s\n", pipe, role, plugin,
                    where);
    else
        obx_log(to->lg, OBX_LOG_ERROR, "core", "%s[pipeline %s] %s %s: %s",
                to->prefix, pipe, role, plugin, where);
    if (st == OBX_UNAVAILABLE)
        v->unreachable++;
    else
        v->config_errors++;
}

static void validate_one(const char *path, obx_pipeline *p, bool connect,
                         const validate_sink *to, obx_validation *v)
{
    char err[OBX_CORE_ERR_LEN];
    if (OBX_HAS_OP(p->sops, obx_store_ops, validate)) {
        err[0] = '\0';
        obx_status st = p->sops->validate(&p->store_host, p->store_conf,
                                          connect, err, sizeof err);
        if (st != OBX_OK)
            validate_report(v, to, path, p->name, "store",
                            p->store_pl->desc->name, st, err);
    }
    if (OBX_HAS_OP(p->bops, obx_broker_ops, validate)) {
        err[0] = '\0';
        obx_status st = p->bops->validate(&p->broker_host, p->broker_conf,
                                          connect, err, sizeof err);
        if (st != OBX_OK)
            validate_report(v, to, path, p->name, "broker",
                            p->broker_pl->desc->name, st, err);
    }
}

obx_validation obx_relay_validate(obx_relay *r, bool connect, FILE *out)
{
    obx_validation v = {0, 0};
    validate_sink to = {out, NULL, ""};
    for (size_t i = 0; i < r->n_pipelines; i++)
        validate_one(r->conf.path, r->pipelines[i], connect, &to, &v);
    return v;
}

obx_pipeline *obx_relay_pipeline(obx_relay *r, const char *name)
{
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (!name || strcmp(r->pipelines[i]->name, name) == 0)
            return r->pipelines[i];
    return NULL;
}

bool obx_relay_ready(obx_relay *r, obx_buf *why)
{
    bool ok = true;
    int64_t now = obx_mono_us();
    for (size_t i = 0; i < r->n_pipelines; i++) {
        obx_pipeline_metrics *m = &r->pipelines[i]->metrics;
        const char *n = r->pipelines[i]->name;
        if (atomic_load(&m->circuit_open)) {
            char reason[512];
            obx_pmetrics_circuit_reason(m, reason, sizeof reason);
            obx_buf_printf(why, "pipeline %s: circuit open: %s\n", n,
                           reason[0] ? reason : "(no reason given)");
            ok = false;
        }
        if (!atomic_load(&m->store_up) || !atomic_load(&m->broker_up)) {
            obx_buf_printf(why, "pipeline %s: %s not connected\n", n,
                           atomic_load(&m->store_up) ? "broker" : "store");
            ok = false;
        }
        int64_t idle = now - atomic_load(&m->last_progress_us);
        if (atomic_load(&m->pending) > 0 &&
            idle > r->settings.ready_stall_ms * 1000) {
            obx_buf_printf(why,
                           "pipeline %s: events pending, no progress for "
                           "%.0fs\n",
                           n, (double)idle / 1e6);
            ok = false;
        }
    }
    return ok;
}

/* ---- running --------------------------------------------------------- */

/* Sent by a pipeline thread to the main thread when its work is done;
 * blocked there (obx_relay_run), so it only ends a sigtimedwait. */
#define OBX_WAKE_SIGNAL SIGUSR2

/* How long a reload waits for the pipelines it started to open before it
 * counts itself: sqlite opens in milliseconds; a server that is down
 * trips the circuit (the pipeline retries: not a failed reload) after its
 * connect timeout. A pipeline still opening then is settled later, by the
 * main loop, without changing the count. */
#define OBX_RELOAD_SETTLE_US (10 * 1000000LL)

static void *pipeline_thread(void *arg)
{
    obx_pipeline *p = arg;
    pthread_t waker = p->waker; /* p may be gone once finished is set */
    atomic_store(&p->rc, obx_pipeline_run(p));
    atomic_store(&p->finished, 1);
    pthread_kill(waker, OBX_WAKE_SIGNAL);
    return NULL;
}

static void render_metrics(void *ctx, obx_buf *out)
{
    obx_relay *r = ctx;
    pthread_mutex_lock(&r->mu);
    obx_pipeline_metrics **ms = calloc(r->n_pipelines + 1, sizeof *ms);
    if (ms) {
        for (size_t i = 0; i < r->n_pipelines; i++)
            ms[i] = &r->pipelines[i]->metrics;
        obx_metrics_render(ms, r->n_pipelines, out);
    } else {
        out->oom = 1;
    }
    pthread_mutex_unlock(&r->mu);
    free(ms);
    obx_metrics_render_reloads(out, atomic_load(&r->reloads_ok),
                               atomic_load(&r->reloads_failed));
}

static bool ready_cb(void *ctx, obx_buf *why)
{
    obx_relay *r = ctx;
    pthread_mutex_lock(&r->mu);
    bool ok = obx_relay_ready(r, why);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static bool listen_off(const char *l)
{
    return !l || !*l || strcmp(l, "off") == 0;
}

/* Serve /metrics, /healthz and /readyz for r on `l` (not off). NULL with
 * err filled when it cannot listen there. */
static obx_http *http_open(obx_relay *r, const char *l, char *err,
                           size_t errlen)
{
    static const obx_http_handlers proto = {NULL, render_metrics, ready_cb};
    obx_http_handlers h = proto;
    h.ctx = r;
    obx_http *s = obx_http_start(l, &h, err, errlen);
    if (!s)
        return NULL;
    /* The port actually bound: with :0 the kernel picked it. */
    const char *colon = strrchr(l, ':');
    obx_log(r->lg, OBX_LOG_INFO, "core",
            "metrics on http://%.*s:%u/metrics, /healthz, /readyz",
            (int)(colon - l), l, obx_http_port(s));
    return s;
}

static int start_http(obx_relay *r)
{
    const char *l = r->settings.metrics_listen;
    if (listen_off(l))
        return 0;
    char err[256];
    r->http = http_open(r, l, err, sizeof err);
    if (!r->http) {
        obx_log(r->lg, OBX_LOG_ERROR, "core", "%s", err);
        return -1;
    }
    return 0;
}

/* How many pipelines still work; joins the ones that are done (one that
 * said so is about to return: the join waits for that, not for a tick). */
static size_t running(obx_relay *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_pipelines; i++) {
        obx_pipeline *p = r->pipelines[i];
        if (!p->started)
            continue;
        if (!atomic_load(&p->finished)) {
            n++;
            continue;
        }
        pthread_join(p->thread, NULL);
        p->started = false;
    }
    return n;
}

static int start_pipeline(obx_relay *r, obx_pipeline *p)
{
    atomic_store(&p->heartbeat_us, obx_mono_us());
    atomic_store(&p->finished, 0);
    p->waker = r->main_thread;
    if (pthread_create(&p->thread, NULL, pipeline_thread, p) != 0) {
        obx_log(r->lg, OBX_LOG_ERROR, "core", "cannot start thread: %s",
                strerror(errno));
        atomic_store(&r->stop, 1);
        return -1;
    }
    p->started = true;
    return 0;
}

/* --once on a terminal: one self-overwriting progress line. */
static void progress(obx_relay *r, bool once, int64_t *next_us)
{
    if (!once || !isatty(STDERR_FILENO) || obx_mono_us() < *next_us)
        return;
    *next_us = obx_mono_us() + 500000;
    uint64_t published = 0;
    int64_t pending = 0;
    for (size_t i = 0; i < r->n_pipelines; i++) {
        published += atomic_load(&r->pipelines[i]->metrics.published);
        int64_t p = atomic_load(&r->pipelines[i]->metrics.pending);
        pending += p > 0 ? p : 0;
    }
    fprintf(stderr, "\r\033[Kdraining: %llu published, %lld pending",
            (unsigned long long)published, (long long)pending);
}

void obx_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGPIPE);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGPIPE: return "SIGPIPE";
    }
    return "signal";
}

static size_t settle_trials(obx_relay *r);

/* A reload left no pipeline that can run (each new one failed to open):
 * not a reason to exit, with status 0 and nothing logged; the relay waits
 * for a reload that works, or a stop signal. */
static bool idle_after_reload(obx_relay *r, bool once)
{
    return !once && r->n_pipelines == 0 && !atomic_load(&r->stop);
}

/* Wait for a signal or for every pipeline to finish, keeping the
 * supervisor informed. */
static void wait_for_stop(obx_relay *r, bool once, obx_supervisor *sv)
{
    int64_t next_progress = obx_mono_us() + 1000000;
    sigset_t set;
    obx_stop_signals(&set);
    sigaddset(&set, OBX_WAKE_SIGNAL);
    struct timespec tick = {0, 100 * 1000 * 1000};
    /* settle_trials first: a reloaded pipeline that could not open is not
     * a reason to stop (nor, as the last one, to think all are done) */
    while (settle_trials(r), running(r) > 0 || idle_after_reload(r, once)) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == OBX_WAKE_SIGNAL)
            sig = 0; /* a pipeline is done: see why, count again */
        if (sig == SIGHUP && !once) {
            obx_supervisor_reloading(sv);
            obx_relay_reload(r);
            obx_supervisor_ready(sv);
            continue;
        }
        if (sig > 0) {
            obx_log(r->lg, OBX_LOG_INFO, "core",
                    "%s: finishing in-flight batches (grace %.0fs)",
                    signal_name(sig),
                    (double)r->settings.shutdown_grace_ms / 1000);
            obx_supervisor_stopping(sv);
            atomic_store(&r->stop, 1);
            return;
        }
        obx_supervisor_tick(sv, r);
        progress(r, once, &next_progress);
        bool failed = false;
        for (size_t i = 0; i < r->n_pipelines; i++) /* trials: above */
            failed |= !r->pipelines[i]->trial &&
                      atomic_load(&r->pipelines[i]->rc) != 0;
        if (failed)
            atomic_store(&r->stop, 1);
    }
}

static int join_all(obx_relay *r)
{
    int64_t deadline = obx_mono_us() + r->settings.shutdown_grace_ms * 1000;
    while (running(r) > 0) {
        if (obx_mono_us() > deadline) {
            obx_log(r->lg, OBX_LOG_ERROR, "core",
                    "shutdown grace expired with batches in flight; their "
                    "events return to the store when the leases expire");
            return 1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int rc = 0;
    for (size_t i = 0; i < r->n_pipelines; i++)
        rc |= atomic_load(&r->pipelines[i]->rc);
    return rc ? 1 : 0;
}

/* Free one pipeline that is not running (never started, or joined). */
static void pipeline_free(obx_pipeline *p)
{
    if (p->previous)
        pipeline_free(p->previous);
    if (p->store_pl && p->store_conf)
        obx_options_free((obx_optable){p->store_pl->desc->options,
                                       p->store_pl->desc->option_size},
                         p->store_conf);
    if (p->broker_pl && p->broker_conf)
        obx_options_free((obx_optable){p->broker_pl->desc->options,
                                       p->broker_pl->desc->option_size},
                         p->broker_conf);
    free(p->store_conf);
    free(p->broker_conf);
    obx_pipeline_settings_free(&p->set);
    obx_pipeline_release(p);
    free(p->name);
    free(p);
}

/* ---- reload (SIGHUP) -------------------------------------------------- */

static const obx_conf_section *section_of(const obx_conf_file *c,
                                          const char *name)
{
    for (size_t i = 0; i < c->n_sections; i++)
        if (c->sections[i].kind == OBX_SECTION_PIPELINE &&
            strcmp(c->sections[i].name, name) == 0)
            return &c->sections[i];
    return NULL;
}

/* The same keys with the same values (env already expanded), in any
 * order, and the same plugin files. */
static bool same_pipeline(const obx_relay *r, const obx_pipeline *op,
                          const obx_relay *nr, const obx_pipeline *np)
{
    const obx_conf_section *a = section_of(&r->conf, op->name);
    const obx_conf_section *b = section_of(&nr->conf, np->name);
    if (!a || !b || a->n_entries != b->n_entries)
        return false;
    for (size_t i = 0; i < b->n_entries; i++) {
        bool found = false;
        for (size_t j = 0; j < a->n_entries && !found; j++)
            found = strcmp(a->entries[j].key, b->entries[i].key) == 0 &&
                    strcmp(a->entries[j].value, b->entries[i].value) == 0;
        if (!found)
            return false;
    }
    /* a reverted one runs settings the file no longer has */
    return !op->reverted &&
           strcmp(op->store_pl->path, np->store_pl->path) == 0 &&
           strcmp(op->broker_pl->path, np->broker_pl->path) == 0;
}

/* Stop the pipelines marked in `halt` and wait for them: each finishes
 * the batch in hand, settles it and closes its plugins. */
static void halt_and_join(obx_relay *r, const bool *halt)
{
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (halt[i])
            atomic_store(&r->pipelines[i]->halt, 1);
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (halt[i] && r->pipelines[i]->started) {
            pthread_join(r->pipelines[i]->thread, NULL);
            r->pipelines[i]->started = false;
        }
}

/* Swap in nr's config, loader and settings; the old loader is retired
 * (carried-over pipelines still point into it). */
/* Make room for one more retired loader, before a reload changes
 * anything: adopt() must not fail half-way. */
static int reserve_retired(obx_relay *r)
{
    obx_loader *ret = realloc(r->retired, (r->n_retired + 1) * sizeof *ret);
    if (!ret)
        return -1;
    r->retired = ret;
    return 0;
}

/* Take nr's config, loader and settings, and next[] as the pipelines;
 * cannot fail (reserve_retired came first). Under r->mu. */
static void adopt(obx_relay *r, obx_relay *nr, obx_pipeline **next, size_t n)
{
    r->retired[r->n_retired++] = r->loader;
    r->loader = nr->loader;
    obx_conf_free(&r->conf);
    r->conf = nr->conf;
    obx_relay_settings_free(&r->settings);
    r->settings = nr->settings;
    free(r->pipelines);
    r->pipelines = next;
    r->n_pipelines = n;
    free(nr->pipelines);
    pthread_mutex_destroy(&nr->mu);
    memset(nr, 0, sizeof *nr);
}

static const char *listen_port(const char *l)
{
    const char *colon = l ? strrchr(l, ':') : NULL;
    return colon ? colon + 1 : "";
}

/* A reload's new metrics_listen, bound before anything else changes so a
 * port that is taken fails the reload with the old endpoint still up.
 * *out is the new server (NULL for off). Returns -1 with err filled when
 * it cannot listen. */
static int bind_new_listener(obx_relay *r, const char *l, obx_http **out,
                             char *err, size_t errlen)
{
    *out = NULL;
    if (listen_off(l))
        return 0;
    *out = http_open(r, l, err, errlen);
    const char *old = r->settings.metrics_listen;
    if (*out || !r->http || strcmp(listen_port(l), listen_port(old)) != 0 ||
        strcmp(listen_port(l), "0") == 0)
        return *out ? 0 : -1;
    /* The same port on another address ("127.0.0.1:9464" to
     * "0.0.0.0:9464"): the old endpoint holds it until it is closed. */
    obx_http_stop(r->http);
    r->http = NULL;
    char e2[256];
    *out = http_open(r, l, e2, sizeof e2);
    if (*out)
        return 0;
    snprintf(err, errlen, "%s", e2);
    r->http = http_open(r, old, e2, sizeof e2);
    if (!r->http)
        obx_log(r->lg, OBX_LOG_ERROR, "core",
                "reload: cannot listen on the previous metrics_listen again "
                "either: %s; /metrics, /healthz and /readyz are down until a "
                "reload that can bind",
                e2);
    return -1;
}

static void reload_failed(obx_relay *r, obx_log_level level,
                          obx_log_format format, const char *why)
{
    r->lg->level = level; /* the new file's [relay] applied at its load */
    r->lg->format = format;
    atomic_fetch_add(&r->reloads_failed, 1);
    obx_log(r->lg, OBX_LOG_ERROR, "core",
            "reload: %s; still running the previous config", why);
}

/* Pipelines on trial (started by a reload, not open yet): one that has
 * opened passes (its previous is freed); one that failed before it opened
 * (a config error only open finds: a column the table does not have, a
 * directory that is not there) is dropped and its previous settings run
 * again, or, added by the reload, it is not run at all. The relay stays
 * up either way. Returns how many failed. Main thread. */
static size_t settle_trials(obx_relay *r)
{
    size_t failed = 0;
    if (atomic_load(&r->stop))
        return 0; /* stopping: nothing to start again */
    for (size_t i = 0; i < r->n_pipelines; i++) {
        obx_pipeline *p = r->pipelines[i];
        if (!p->trial)
            continue;
        if (atomic_load(&p->opened)) {
            p->trial = false;
            if (p->previous)
                pipeline_free(p->previous);
            p->previous = NULL;
            continue;
        }
        /* still opening, or stopped by the relay (rc 0) before it could */
        if ((p->started && !atomic_load(&p->finished)) ||
            atomic_load(&p->rc) == 0)
            continue;
        if (p->started) {
            pthread_join(p->thread, NULL);
            p->started = false;
        }
        obx_pipeline *prev = p->previous;
        p->previous = NULL;
        pthread_mutex_lock(&r->mu);
        if (prev)
            r->pipelines[i] = prev;
        else
            memmove(&r->pipelines[i], &r->pipelines[i + 1],
                    (--r->n_pipelines - i) * sizeof *r->pipelines);
        pthread_mutex_unlock(&r->mu);
        obx_log(r->lg, OBX_LOG_ERROR, "core",
                "reload: pipeline %s cannot open with its new settings (the "
                "error is above): %s; fix the config and reload",
                p->name,
                prev ? "it runs its previous settings again"
                     : "this new pipeline is not running");
        pipeline_free(p);
        failed++;
        if (prev) {
            /* it opened before: proven, not on trial; open again from the
             * start, so readiness waits for it */
            prev->reverted = true;
            prev->trial = false;
            atomic_store(&prev->opened, 0);
            atomic_store(&prev->halt, 0);
            atomic_store(&prev->rc, 0);
            start_pipeline(r, prev);
        } else {
            i--;
        }
    }
    if (failed && r->n_pipelines == 0)
        obx_log(r->lg, OBX_LOG_WARN, "core",
                "no pipeline is running; waiting for a reload that works "
                "(SIGHUP) or a stop signal");
    return failed;
}

/* A stop signal waits, blocked, for wait_for_stop: the reload must not
 * keep it waiting. */
static bool stop_pending(void)
{
    sigset_t stops, pending;
    obx_stop_signals(&stops);
    if (sigpending(&pending) != 0)
        return false;
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&stops, sig) == 1 && sigismember(&pending, sig) == 1)
            return true;
    return false;
}

/* Wait (bounded) until each pipeline on trial has opened, failed, or found
 * a server down (its circuit retries that: not the config's fault), so
 * the reload can say how it went. */
static size_t await_trials(obx_relay *r)
{
    int64_t deadline = obx_mono_us() + OBX_RELOAD_SETTLE_US;
    for (;;) {
        bool waiting = false;
        for (size_t i = 0; i < r->n_pipelines && !waiting; i++) {
            obx_pipeline *p = r->pipelines[i];
            waiting = p->trial && p->started && !atomic_load(&p->finished) &&
                      !atomic_load(&p->opened) &&
                      !atomic_load(&p->metrics.circuit_open);
        }
        if (!waiting || obx_mono_us() > deadline || stop_pending())
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return settle_trials(r);
}

/* Index in r->pipelines of the running pipeline named `name`, or -1. */
static long old_index(const obx_relay *r, const char *name)
{
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (strcmp(r->pipelines[i]->name, name) == 0)
            return (long)i;
    return -1;
}

void obx_relay_reload(obx_relay *r)
{
    obx_relay nr;
    char err[OBX_CORE_ERR_LEN];
    obx_log_level level = r->lg->level;
    obx_log_format format = r->lg->format;
    if (obx_relay_load(&nr, r->conf.path, r->exe_dir, r->lg, err, sizeof err) !=
        0) {
        reload_failed(r, level, format, err);
        return;
    }
    size_t n = nr.n_pipelines, kept = 0, restarted = 0, added = 0;
    obx_pipeline **next = calloc(n, sizeof *next);
    bool *halt = calloc(r->n_pipelines + 1, sizeof *halt);
    long *prev = calloc(n + 1, sizeof *prev);   /* old index, -1: added */
    bool *fresh = calloc(n + 1, sizeof *fresh); /* of next[]: to start */
    if (!next || !halt || !prev || !fresh || reserve_retired(r) != 0) {
        free(next);
        free(halt);
        free(prev);
        free(fresh);
        obx_relay_free(&nr);
        reload_failed(r, level, format, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->n_pipelines; i++)
        halt[i] = true;
    for (size_t j = 0; j < n; j++) {
        obx_pipeline *np = nr.pipelines[j];
        long i = prev[j] = old_index(r, np->name);
        if (i >= 0 && same_pipeline(r, r->pipelines[i], &nr, np) &&
            atomic_load(&r->pipelines[i]->rc) == 0) {
            next[j] = r->pipelines[i];
            halt[i] = false;
            kept++;
        } else if (i >= 0) {
            restarted++;
        }
    }
    added = n - kept - restarted;
    size_t removed = r->n_pipelines - kept - restarted;
    /* Everything `check` (without --connect) would reject fails the reload
     * here, while every pipeline still runs as before. */
    obx_validation v = {0, 0};
    validate_sink to = {NULL, r->lg, "reload: "};
    for (size_t j = 0; j < n; j++)
        if (!next[j])
            validate_one(nr.conf.path, nr.pipelines[j], false, &to, &v);
    const char *nl =
        nr.settings.metrics_listen ? nr.settings.metrics_listen : "";
    const char *ol =
        r->settings.metrics_listen ? r->settings.metrics_listen : "";
    bool moved = strcmp(nl, ol) != 0;
    obx_http *nh = NULL;
    if (v.config_errors || v.unreachable)
        snprintf(err, sizeof err, "%u error%s in plugin settings (above)",
                 v.config_errors + v.unreachable,
                 v.config_errors + v.unreachable == 1 ? "" : "s");
    if ((v.config_errors || v.unreachable) ||
        (moved && bind_new_listener(r, nl, &nh, err, sizeof err) != 0)) {
        free(next);
        free(halt);
        free(prev);
        free(fresh);
        obx_relay_free(&nr);
        reload_failed(r, level, format, err);
        return;
    }
    halt_and_join(r, halt);
    pthread_mutex_lock(&r->mu);
    for (size_t j = 0; j < n; j++) {
        if (next[j]) {
            pipeline_free(nr.pipelines[j]); /* built, never started */
            continue;
        }
        next[j] = nr.pipelines[j];
        next[j]->stop = &r->stop;
        next[j]->trial = fresh[j] = true;
        if (prev[j] >= 0) { /* to run again if the new one cannot open */
            obx_pipeline *old = r->pipelines[prev[j]];
            if (old->trial) {
                /* never opened: the settings to go back to are still the
                 * ones that last did (none for one a reload added); old
                 * is freed with the removed ones */
                next[j]->previous = old->previous;
                old->previous = NULL;
            } else {
                /* one step back only: no chain of ever older settings */
                if (old->previous)
                    pipeline_free(old->previous);
                old->previous = NULL;
                next[j]->previous = old;
                halt[prev[j]] = false;
            }
        }
    }
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (halt[i]) /* removed */
            pipeline_free(r->pipelines[i]);
    adopt(r, &nr, next, n);
    pthread_mutex_unlock(&r->mu);
    if (moved) {
        obx_http *old = r->http;
        r->http = nh;
        obx_http_stop(old);
        if (!nh)
            obx_log(r->lg, OBX_LOG_INFO, "core", "metrics endpoint off");
    }
    for (size_t j = 0; j < n; j++)
        if (fresh[j])
            start_pipeline(r, r->pipelines[j]);
    free(halt);
    free(prev);
    free(fresh);
    /* One last line says how it went, after the pipelines it started
     * opened or failed. */
    size_t failed = await_trials(r);
    if (failed) {
        atomic_fetch_add(&r->reloads_failed, 1);
        obx_log(r->lg, OBX_LOG_ERROR, "core",
                "reload: failed: %zu pipeline%s could not open with the new "
                "settings (%zu unchanged, %zu restarted, %zu added, %zu "
                "removed)",
                failed, failed == 1 ? "" : "s", kept, restarted, added,
                removed);
        return;
    }
    atomic_fetch_add(&r->reloads_ok, 1);
    obx_log(r->lg, OBX_LOG_INFO, "core",
            "reload: %zu pipeline%s unchanged, %zu restarted with new "
            "settings, %zu added, %zu removed",
            kept, kept == 1 ? "" : "s", restarted, added, removed);
}

static int run_pipelines(obx_relay *r, bool once)
{
    /* What `check` finds without connecting, with file:line, before any
     * pipeline opens (open would stop the relay with less to go on). */
    obx_validation v = {0, 0};
    validate_sink to = {NULL, r->lg, ""};
    for (size_t i = 0; i < r->n_pipelines; i++)
        validate_one(r->conf.path, r->pipelines[i], false, &to, &v);
    if (v.config_errors || v.unreachable)
        return 1;
    if (start_http(r) != 0)
        return 1;
    obx_supervisor sv;
    obx_supervisor_init(&sv, r);
    for (size_t i = 0; i < r->n_pipelines; i++) {
        r->pipelines[i]->once = once;
        if (start_pipeline(r, r->pipelines[i]) != 0)
            break;
    }
    wait_for_stop(r, once, &sv);
    int rc = join_all(r);
    obx_supervisor_free(&sv);
    if (once && isatty(STDERR_FILENO))
        fputs("\r\033[K", stderr);
    obx_http_stop(r->http);
    r->http = NULL;
    return rc;
}

int obx_relay_run(obx_relay *r, bool once)
{
    sigset_t wake, before;
    sigemptyset(&wake);
    sigaddset(&wake, OBX_WAKE_SIGNAL);
    /* before any thread starts; given back (no wake left pending) once
     * they are all joined */
    pthread_sigmask(SIG_BLOCK, &wake, &before);
    r->main_thread = pthread_self();
    int rc = run_pipelines(r, once);
    if (running(r) > 0)
        return rc; /* the grace ran out: a late one still wakes us */
    struct timespec none = {0, 0};
    while (sigtimedwait(&wake, NULL, &none) == OBX_WAKE_SIGNAL)
        ;
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    return rc;
}

bool obx_relay_busy(obx_relay *r)
{
    return running(r) > 0;
}

void obx_relay_free(obx_relay *r)
{
    if (obx_relay_busy(r))
        return;
    for (size_t i = 0; i < r->n_pipelines; i++)
        if (r->pipelines[i])
            pipeline_free(r->pipelines[i]);
    free(r->pipelines);
    obx_relay_settings_free(&r->settings);
    obx_loader_free(&r->loader);
    for (size_t i = 0; i < r->n_retired; i++)
        obx_loader_free(&r->retired[i]);
    free(r->retired);
    obx_conf_free(&r->conf);
    pthread_mutex_destroy(&r->mu);
    memset(r, 0, sizeof *r);
}
