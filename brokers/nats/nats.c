/* nats broker: JetStream (or, when asked for, core NATS) through cnats
 * behind obx_broker_ops.
 *
 * This file: the option table, the connection and its callbacks, the
 * ops. The publish calls and their PubAcks are in nats_publish.c; the
 * instance and its locking rules in nats_inst.h. Users' docs:
 * docs/nats.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>
#include <outbox/plugin.h>

#include "nats_config.h"
#include "nats_conn.h"
#include "nats_errors.h"
#include "nats_inst.h"
#include "nats_stream.h"

static const char *const natsb_mode_values[] = {"jetstream", "core", NULL};

static const obx_option nats_options[] = {
    OBX_OPT_LIST(
        natsb_config, servers, "servers", OBX_REQUIRED,
        "Server URLs, nats://host:port or tls://host:port, comma-separated; "
        "tried in this order, reconnected to forever."),
    OBX_OPT_ENUM(
        natsb_config, mode, "mode", "jetstream", natsb_mode_values,
        "jetstream: asynchronous JetStream publish, an event is done once its "
        "PubAck says the stream stored it. core: plain NATS publish plus one "
        "flush per batch, NOT at-least-once (a server crash or a subscriber "
        "that is not there loses events); only when asked for."),
    OBX_OPT_STRING(natsb_config, user, "user", NULL,
                   "User name, with password."),
    OBX_OPT_STRING(natsb_config, password, "password", OBX_SECRET(NULL),
                   "Password of user (masked in logs and check output)."),
    OBX_OPT_STRING(natsb_config, token, "token", OBX_SECRET(NULL),
                   "Authentication token (masked in logs and check output)."),
    OBX_OPT_STRING(natsb_config, nkey, "nkey", NULL,
                   "NKey public key (U...), with nkey_seed_file."),
    OBX_OPT_STRING(
        natsb_config, nkey_seed_file, "nkey_seed_file", NULL,
        "File holding the NKey seed (SU...) that signs the server's nonce."),
    OBX_OPT_STRING(natsb_config, creds_file, "creds_file", NULL,
                   "Credentials file (.creds: user JWT and NKey seed)."),
    OBX_OPT_STRING(natsb_config, tls_ca, "tls_ca", NULL,
                   "CA certificates (PEM file) that the server's certificate "
                   "must chain to; turns TLS on."),
    OBX_OPT_STRING(natsb_config, tls_cert, "tls_cert", NULL,
                   "Client certificate chain (PEM file), with tls_key."),
    OBX_OPT_STRING(natsb_config, tls_key, "tls_key", NULL,
                   "Client private key (PEM file)."),
    OBX_OPT_STRING(natsb_config, tls_hostname, "tls_hostname", NULL,
                   "Host name the server certificate must carry, when it "
                   "differs from the URL's."),
    OBX_OPT_STRING(natsb_config, stream, "stream", NULL,
                   "The stream the events must land in; looked up at start and "
                   "by `check --connect`. While it is missing the pipeline "
                   "waits (circuit open) instead of dead-lettering."),
    OBX_OPT_LIST(natsb_config, subjects, "subjects", NULL,
                 "Subjects (wildcards allowed) the relay publishes to, e.g. "
                 "outbox.>: stream must capture each of them, and "
                 "create_stream creates it with them."),
    OBX_OPT_BOOL(
        natsb_config, create_stream, "create_stream", "false",
        "Create stream when it does not exist: file storage, subjects, "
        "duplicate_window. For quick starts and tests; production streams are "
        "usually managed with the nats CLI or an operator."),
    OBX_OPT_DURATION(natsb_config, duplicate_window_ms, "duplicate_window",
                     "2m", 1000, 604800000,
                     "Duplicate window of a stream made by create_stream: how "
                     "long JetStream remembers a Nats-Msg-Id. Keep it above "
                     "the longest retry wait (retry.backoff); the plugin warns "
                     "at start when the stream's window is shorter."),
    OBX_OPT_STRING(natsb_config, expect_stream, "expect_stream", NULL,
                   "Sets Nats-Expected-Stream on every message: an event whose "
                   "subject another stream captures fails (dead-lettered) "
                   "instead of landing there."),
    OBX_OPT_INT(natsb_config, max_in_flight, "max_in_flight", "4096", 1,
                1000000,
                "At most this many messages of one publish call wait for their "
                "PubAck at a time."),
    OBX_OPT_DURATION(natsb_config, connect_timeout_ms, "connect_timeout", "2s",
                     1, 600000, "Timeout of one connection attempt."),
    OBX_OPT_DURATION(
        natsb_config, reconnect_wait_ms, "reconnect_wait", "500ms", 1, 600000,
        "Pause between two reconnect attempts to the same server."),
    OBX_OPT_DURATION(
        natsb_config, api_timeout_ms, "api_timeout", "5s", 1, 600000,
        "Timeout of JetStream API requests (stream look-up and creation)."),
    OBX_OPTIONS_END,
};

/* ---- state ------------------------------------------------------------ */

/* Under mu. */
void natsb_set_down_locked(natsb *b, const char *why)
{
    if (!b->down && !b->closing)
        b->host->log(b->host, OBX_LOG_WARN, "nats: %s", why);
    b->down = true;
    /* the reason may fill a buffer of this size: cut it, not the prefix */
    snprintf(b->down_reason, sizeof b->down_reason, "nats: %.*s",
             (int)sizeof b->down_reason - 7, why);
    pthread_cond_broadcast(&b->cv);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    natsb *b = closure;
    pthread_mutex_lock(&b->mu);
    natsb_set_down_locked(b, "disconnected from the server; reconnecting");
    pthread_mutex_unlock(&b->mu);
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    natsb *b = closure;
    pthread_mutex_lock(&b->mu);
    if (b->down)
        b->host->log(b->host, OBX_LOG_INFO, "nats: connected");
    b->down = false;
    b->renewed = false;
    b->slow = false;
    pthread_mutex_unlock(&b->mu);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    natsb *b = closure;
    pthread_mutex_lock(&b->mu);
    if (!b->down) /* else keep the reason that brought us down */
        natsb_set_down_locked(b, "connection closed");
    b->closed_seen = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                     void *closure)
{
    (void)nc;
    (void)sub;
    natsb *b = closure;
    pthread_mutex_lock(&b->mu);
    if (natsb_is_server_wide(err)) {
        /* A slow consumer dropped PubAcks; a permissions violation means
         * the server refused what we sent: the events waiting for a
         * PubAck will not get one, and it is not their fault. */
        const char *hint = natsb_hint(err, 0);
        b->slow = true;
        snprintf(b->slow_reason, sizeof b->slow_reason,
                 "nats: %s on our connection%s%s", natsStatus_GetText(err),
                 hint ? ": " : "", hint ? hint : "");
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    b->host->log(b->host, OBX_LOG_WARN, "nats: asynchronous error: %s",
                 natsStatus_GetText(err));
}

/* ---- connection lifecycle --------------------------------------------- */

static obx_status natsb_connect(natsb *b, char *errstr, size_t errlen)
{
    natsb_callbacks cb = {.connected = on_connected,
                          .disconnected = on_disconnected,
                          .reconnected = on_connected,
                          .closed = on_closed,
                          .error = on_error,
                          .closure = b};
    natsOptions *o = NULL;
    obx_status st =
        natsb_opts_build(b->host, b->conf, true, &cb, &o, errstr, errlen);
    if (st != OBX_OK)
        return st;
    natsStatus s = natsConnection_Connect(&b->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        char why[512];
        natsb_last_error(b->host, b->conf, s, why, sizeof why);
        snprintf(errstr, errlen, "nats: cannot create the connection: %s", why);
        return s == NATS_NO_MEMORY ? OBX_NOMEM : OBX_CONFIG;
    }
    if (s == NATS_NOT_YET_CONNECTED) {
        const char *last = NULL;
        char why[OBX_ERRSTR_LEN], raw[OBX_ERRSTR_LEN];
        if (natsConnection_GetLastError(b->nc, &last) == NATS_OK || !last)
            last = "";
        snprintf(raw, sizeof raw,
                 "no server reachable yet%s%s%s; connecting in the "
                 "background",
                 *last ? " (" : "", last, *last ? ")" : "");
        natsb_mask(b->host, b->conf, raw, why, sizeof why);
        pthread_mutex_lock(&b->mu);
        natsb_set_down_locked(b, why);
        pthread_mutex_unlock(&b->mu);
    }
    if (b->conf->mode == NATSB_CORE)
        return OBX_OK;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = b->conf->api_timeout_ms;
    jo.PublishAsync.AckHandler = natsb_on_puback;
    jo.PublishAsync.AckHandlerClosure = b;
    /* The plugin keeps its own window; cnats' is only a backstop. */
    jo.PublishAsync.MaxPending = 2 * b->conf->max_in_flight + 16;
    s = natsConnection_JetStream(&b->js, b->nc, &jo);
    if (s != NATS_OK) {
        char why[512];
        natsb_last_error(b->host, b->conf, s, why, sizeof why);
        snprintf(errstr, errlen,
                 "nats: cannot create the JetStream context: %s", why);
        return OBX_NOMEM;
    }
    return OBX_OK;
}

/* Messages cnats still holds for us: take them back and drop them (their
 * events were reported not delivered; a PubAck for them is ignored). */
void natsb_drop_pending(natsb *b)
{
    /* cnats 3.4.1 crashes in js_PublishAsyncGetPendingList on a context
     * that never published asynchronously. */
    if (!b->js || !b->sent_any)
        return;
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, b->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
}

void natsb_log_late(natsb *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t ok = b->late_ok;
    pthread_mutex_unlock(&b->mu);
    if (ok == b->late_logged)
        return;
    b->host->log(b->host, OBX_LOG_INFO,
                 "nats: %llu PubAck(s) came after their call gave up on them "
                 "(%llu in total); their events are published again with the "
                 "same Nats-Msg-Id, which the stream drops within its "
                 "duplicate window",
                 (unsigned long long)(ok - b->late_logged),
                 (unsigned long long)ok);
    b->late_logged = ok;
    if (b->host->gauge_set)
        b->host->gauge_set(b->host, "nats_late_pubacks", (double)ok);
}

/* Close the connection and wait (up to 5 s) until cnats ran its closed
 * callback and no PubAck handler runs: cnats calls them on its own
 * threads, after natsConnection_Close returned. Then destroy it. */
static void natsb_disconnect(natsb *b)
{
    pthread_mutex_lock(&b->mu);
    b->closing = true;
    b->call.active = false;
    pthread_mutex_unlock(&b->mu);
    natsb_drop_pending(b);
    if (b->nc) {
        natsConnection_Close(b->nc);
        int64_t end = b->host->mono_us() + 5000000;
        pthread_mutex_lock(&b->mu);
        while ((!b->closed_seen || atomic_load(&b->in_puback) > 0) &&
               b->host->mono_us() < end) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 20000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        pthread_mutex_unlock(&b->mu);
    }
    if (b->js)
        jsCtx_Destroy(b->js);
    if (b->nc)
        natsConnection_Destroy(b->nc);
    b->js = NULL;
    b->nc = NULL;
    b->sent_any = false;
}

static void natsb_free(natsb *b)
{
    natsb_disconnect(b);
    pthread_mutex_lock(&b->mu);
    obc_keyset_free(&b->call.ids);
    obc_keyset_free(&b->call.failed);
    pthread_mutex_unlock(&b->mu);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->state);
    free(b);
}

/* cnats closed the connection for good (it does after repeated
 * authorization violations): make a new one, connecting in the
 * background. Pipeline thread. */
static void natsb_renew(natsb *b)
{
    /* Once at WARN until a connection succeeds again, then quieter: the
     * circuit breaker's probes may bring us here often. */
    char reason[OBX_ERRSTR_LEN];
    pthread_mutex_lock(&b->mu);
    bool first = !b->renewed;
    b->renewed = true;
    snprintf(reason, sizeof reason, "%s", b->down_reason);
    pthread_mutex_unlock(&b->mu);
    b->host->log(b->host, first ? OBX_LOG_WARN : OBX_LOG_DEBUG,
                 "nats: cnats closed the connection after failed attempts "
                 "(%s); making a new one",
                 reason);
    natsb_disconnect(b);
    pthread_mutex_lock(&b->mu);
    b->closing = false;
    b->closed_seen = false;
    pthread_mutex_unlock(&b->mu);
    char err[OBX_ERRSTR_LEN];
    if (natsb_connect(b, err, sizeof err) != OBX_OK) {
        b->host->log(b->host, OBX_LOG_ERROR, "%s", err);
        pthread_mutex_lock(&b->mu);
        natsb_set_down_locked(b, "cannot create a new connection");
        pthread_mutex_unlock(&b->mu);
    }
}

/* Whether the connection is usable; fills why when not. */
static bool natsb_up(natsb *b, char *why, size_t len)
{
    if (b->nc && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CLOSED)
        natsb_renew(b);
    if (!b->nc || (b->conf->mode == NATSB_JETSTREAM && !b->js)) {
        snprintf(why, len, "nats: no connection");
        return false;
    }
    bool connected = natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
    pthread_mutex_lock(&b->mu);
    if (connected && b->down) {
        b->down = false; /* a callback may not have run yet */
        b->slow = false;
    }
    bool up = connected && !b->down;
    if (!up)
        snprintf(why, len, "%s",
                 b->down ? b->down_reason : "nats: not connected");
    if (!up)
        b->stream_ok = false; /* look again after the reconnect */
    pthread_mutex_unlock(&b->mu);
    const char *last = NULL;
    if (!up && natsConnection_GetLastError(b->nc, &last) != NATS_OK && last &&
        *last) {
        /* What the last attempt ran into ("Authorization Violation"). */
        char raw[OBX_ERRSTR_LEN], shown[OBX_ERRSTR_LEN];
        snprintf(raw, sizeof raw, "%.*s (last error: %s)", (int)(len / 2), why,
                 last);
        natsb_mask(b->host, b->conf, raw, shown, sizeof shown);
        snprintf(why, len, "%s", shown);
    }
    return up;
}

/* The stream check of the first call after a (re)connect. */
static obx_status natsb_ensure_stream(natsb *b, char *why, size_t len)
{
    if (b->conf->mode == NATSB_CORE || b->stream_ok)
        return OBX_OK;
    obx_status st = natsb_stream_check(
        b->host, b->conf, b->js, !b->window_checked, &b->stream, why, len);
    if (st == OBX_OK) {
        b->stream_ok = true;
        b->window_checked = true; /* warn once, not at every reconnect */
        return OBX_OK;
    }
    b->host->log(b->host, OBX_LOG_ERROR, "%s", why);
    return OBX_UNAVAILABLE;
}

/* ---- ops -------------------------------------------------------------- */

/* Options the table cannot check; with connect, a connection (no retry)
 * within connect_timeout and, in JetStream mode, the stream check
 * (create_stream creates it). Core mode is reported as a warning: it is
 * not at-least-once. */
static obx_status nats_validate(const obx_host *host, const void *config,
                                bool connect, char *errstr, size_t errlen)
{
    const natsb_config *c = config;
    natsOptions *o = NULL;
    obx_status st = natsb_opts_build(host, c, false, NULL, &o, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (c->mode == NATSB_CORE)
        host->log(host, OBX_LOG_WARN,
                  "nats: broker.mode = core is NOT at-least-once: an event "
                  "counts as published once the server received it; a server "
                  "crash, or no subscriber listening, loses it. Use "
                  "broker.mode = jetstream for delivery guarantees");
    if (!connect) {
        natsOptions_Destroy(o);
        return OBX_OK;
    }
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        char why[512], servers[512];
        natsb_last_error(host, c, s, why, sizeof why);
        natsb_servers_str(host, c, servers, sizeof servers);
        snprintf(errstr, errlen, "nats: cannot connect to %s: %s", servers,
                 why);
        natsConnection_Destroy(nc);
        return OBX_UNAVAILABLE;
    }
    if (c->mode == NATSB_JETSTREAM) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = c->api_timeout_ms;
        jsCtx *js = NULL;
        natsb_stream_state ss;
        if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
            snprintf(errstr, errlen, "nats: out of memory");
            st = OBX_NOMEM;
        } else {
            st = natsb_stream_check(host, c, js, true, &ss, errstr, errlen);
        }
        jsCtx_Destroy(js);
    }
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    return st;
}

/* The instance borrows host and config (both outlive it). The connection
 * is made in the background when no server answers: open succeeds and
 * publish() reports OBX_UNAVAILABLE until one does. With a server up, the
 * stream is checked here: OBX_UNAVAILABLE when it is missing (the engine
 * retries), OBX_CONFIG when it does not capture broker.subjects. */
static obx_status nats_open(const obx_host *host, const void *config,
                            void **inst, char *errstr, size_t errlen)
{
    natsb *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    b->host = host;
    b->conf = config;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    obx_status st = natsb_connect(b, errstr, errlen);
    char why[OBX_ERRSTR_LEN];
    if (st == OBX_OK && natsb_up(b, why, sizeof why) &&
        b->conf->mode == NATSB_JETSTREAM) {
        st = natsb_stream_check(host, b->conf, b->js, true, &b->stream, errstr,
                                errlen);
        b->stream_ok = b->window_checked = st == OBX_OK;
    }
    if (st != OBX_OK) {
        natsb_free(b);
        return st;
    }
    char servers[512];
    natsb_servers_str(host, b->conf, servers, sizeof servers);
    host->log(host, OBX_LOG_INFO,
              "nats: %s publisher outbox-relay/%s for %s (stream %s, at most "
              "%lld in flight)",
              b->conf->mode == NATSB_CORE ? "core NATS" : "JetStream",
              host->pipeline ? host->pipeline : "-", servers,
              b->conf->stream ? b->conf->stream : "(any)",
              (long long)b->conf->max_in_flight);
    if (b->conf->mode == NATSB_CORE)
        host->log(host, OBX_LOG_WARN,
                  "nats: broker.mode = core is NOT at-least-once: a server "
                  "crash, or no subscriber listening, loses events");
    *inst = b;
    return OBX_OK;
}

static void nats_close(void *inst)
{
    natsb *b = inst;
    if (!b)
        return;
    natsb_log_late(b);
    natsb_free(b);
}

/* See broker.h. JetStream: OBX_OK once the stream's PubAck says it stored
 * the event (a duplicate PubAck included); failures classified by
 * nats_errors.c; "not attempted" for later events of a key that failed in
 * this call before they were sent; unanswered by the deadline: RETRY, or
 * UNAVAILABLE when the connection went down or nothing was answered.
 * Returns OBX_UNAVAILABLE while disconnected or the stream is missing. */
static obx_status nats_publish(void *inst, obx_event *const *events, size_t n,
                               obx_result *results, int timeout_ms)
{
    natsb *b = inst;
    char why[OBX_ERRSTR_LEN];
    if (!natsb_up(b, why, sizeof why))
        return natsb_fail_all(results, n, why);
    if (natsb_ensure_stream(b, why, sizeof why) != OBX_OK)
        return natsb_fail_all(results, n, why);
    if (natsb_reserve(b, n) != 0)
        return natsb_fail_all(results, n, "nats: out of memory");
    if (b->conf->mode == NATSB_CORE)
        return natsb_publish_core(b, events, n, results, timeout_ms);
    return natsb_publish_js(b, events, n, results, timeout_ms);
}

/* Nothing is left outstanding between calls (finish() takes it back);
 * core mode: one flush. */
static obx_status nats_flush(void *inst, int timeout_ms)
{
    natsb *b = inst;
    if (b->conf->mode == NATSB_CORE &&
        natsConnection_FlushTimeout(b->nc, timeout_ms > 0 ? timeout_ms : 1) !=
            NATS_OK)
        return OBX_UNAVAILABLE;
    return OBX_OK;
}

/* For the circuit breaker and /readyz: connected, and (JetStream) the
 * stream checked since the last connect. */
static obx_status nats_health(void *inst, char *errstr, size_t errlen)
{
    natsb *b = inst;
    char why[OBX_ERRSTR_LEN];
    if (!natsb_up(b, why, sizeof why) ||
        natsb_ensure_stream(b, why, sizeof why) != OBX_OK) {
        snprintf(errstr, errlen, "%s", why);
        return OBX_UNAVAILABLE;
    }
    return OBX_OK;
}

static const obx_broker_ops nats_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .validate = nats_validate,
    .open = nats_open,
    .close = nats_close,
    .publish = nats_publish,
    .flush = nats_flush,
    .health = nats_health,
};

OBX_BROKER_PLUGIN("nats",
                  "NATS JetStream via cnats: asynchronous publish with a "
                  "PubAck per event and Nats-Msg-Id dedup (or core NATS when "
                  "asked for)",
                  "1.0.0", nats_options, natsb_config, nats_ops)
