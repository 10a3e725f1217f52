/* nats broker: JetStream (or, when asked for, core NATS) through cnats
 * behind obx_broker_ops.
 *
 * JetStream: publish() hands every event of the batch to
 * js_PublishMsgAsync (at most max_in_flight without a PubAck), then waits
 * until each event has its PubAck or error, or the publish timeout runs
 * out; what is still unanswered then is taken back from cnats
 * (js_PublishAsyncGetPendingList) so no late PubAck can touch the
 * results. Every message carries Nats-Msg-Id = event id: the stream drops
 * a republished copy within its duplicate window.
 *
 * Threads: cnats calls the PubAck handler and the connection callbacks on
 * its own threads. Everything they touch (the current call, the down
 * state) is guarded by natsb.mu; the pipeline thread waits on natsb.cv.
 * cnats is never called with mu held. Users' docs: docs/nats.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>
#include <outbox/plugin.h>

#include "kafka_keyset.h"
#include "nats_config.h"
#include "nats_conn.h"
#include "nats_errors.h"
#include "nats_stream.h"

/* Header names set on every message, before the event's own headers. The
 * names match the kafka broker's; the id goes in JetStream's own
 * Nats-Msg-Id (which is what dedups) and in outbox-event-id. */
#define NATSB_H_MSG_ID "Nats-Msg-Id"
#define NATSB_H_EXPECT "Nats-Expected-Stream"
#define NATSB_H_EVENT_ID "outbox-event-id"
#define NATSB_H_EVENT_TYPE "outbox-event-type"
#define NATSB_H_AGG_TYPE "outbox-aggregate-type"
#define NATSB_H_AGG_ID "outbox-aggregate-id"

/* Where one event of the current call stands. */
typedef enum natsb_state {
    NATSB_UNSENT = 0,   /* not handed to cnats */
    NATSB_INFLIGHT = 1, /* handed over, no PubAck yet */
    NATSB_DONE = 2,     /* result filled */
    NATSB_HELD = 3,     /* not attempted: an earlier event of its key failed */
    NATSB_NORESP = 4,   /* "no responders": resolved in finish() */
} natsb_state;

/* The publish call in progress. Guarded by natsb.mu while active. */
typedef struct natsb_call {
    bool active; /* PubAcks may fill results */
    obx_event *const *events;
    obx_result *results;
    unsigned char *state; /* natsb_state per event */
    size_t n;
    size_t inflight;
    size_t answered;
    obx_kafka_keyset ids;    /* event id -> index + 1 */
    obx_kafka_keyset failed; /* keys with a failed event in this call */
} natsb_call;

typedef struct natsb {
    const obx_host *host;
    const obx_nats_config *conf; /* borrowed from the core */
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    /* Guarded by mu. */
    natsb_call call;
    bool down; /* not connected */
    char down_reason[OBX_ERRSTR_LEN];
    bool slow; /* an asynchronous error on our connection (PubAcks dropped
                  as a slow consumer, a permissions violation): the
                  events still waiting are not at fault */
    char slow_reason[OBX_ERRSTR_LEN];
    bool closing;     /* close() began: callbacks stay quiet */
    bool closed_seen; /* cnats ran the closed callback: no more will come */
    int in_puback;    /* PubAck handlers running */
    bool renewed;     /* natsb_renew ran since the last connect */
    uint64_t late_ok, late_failed;
    /* Pipeline thread only. */
    unsigned char *state;
    size_t state_cap;
    bool stream_ok;      /* the stream was checked since the last connect */
    bool sent_any;       /* js_PublishMsgAsync was called on js */
    bool window_checked; /* the duplicate window was compared once */
    natsb_stream_state stream;
    uint64_t late_logged;
} natsb;

static const char *const natsb_mode_values[] = {"jetstream", "core", NULL};

static const obx_option nats_options[] = {
    {"servers", OBX_OPT_LIST, NULL, OBX_OPT_REQUIRED, 0, 0, NULL,
     offsetof(obx_nats_config, servers),
     "Server URLs, nats://host:port or tls://host:port, comma-separated; "
     "tried in this order, reconnected to forever."},
    {"mode", OBX_OPT_ENUM, "jetstream", 0, 0, 0, natsb_mode_values,
     offsetof(obx_nats_config, mode),
     "jetstream: asynchronous JetStream publish, an event is done once its "
     "PubAck says the stream stored it. core: plain NATS publish plus one "
     "flush per batch, NOT at-least-once (a server crash or a subscriber "
     "that is not there loses events); only when asked for."},
    {"user", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, user), "User name, with password."},
    {"password", OBX_OPT_STRING, NULL, OBX_OPT_SECRET, 0, 0, NULL,
     offsetof(obx_nats_config, password),
     "Password of user (masked in logs and check output)."},
    {"token", OBX_OPT_STRING, NULL, OBX_OPT_SECRET, 0, 0, NULL,
     offsetof(obx_nats_config, token),
     "Authentication token (masked in logs and check output)."},
    {"nkey", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, nkey),
     "NKey public key (U...), with nkey_seed_file."},
    {"nkey_seed_file", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, nkey_seed_file),
     "File holding the NKey seed (SU...) that signs the server's nonce."},
    {"creds_file", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, creds_file),
     "Credentials file (.creds: user JWT and NKey seed)."},
    {"tls_ca", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, tls_ca),
     "CA certificates (PEM file) that the server's certificate must chain "
     "to; turns TLS on."},
    {"tls_cert", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, tls_cert),
     "Client certificate chain (PEM file), with tls_key."},
    {"tls_key", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, tls_key), "Client private key (PEM file)."},
    {"tls_hostname", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, tls_hostname),
     "Host name the server certificate must carry, when it differs from "
     "the URL's."},
    {"stream", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, stream),
     "The stream the events must land in; looked up at start and by "
     "`check --connect`. While it is missing the pipeline waits (circuit "
     "open) instead of dead-lettering."},
    {"subjects", OBX_OPT_LIST, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, subjects),
     "Subjects (wildcards allowed) the relay publishes to, e.g. "
     "outbox.>: stream must capture each of them, and create_stream "
     "creates it with them."},
    {"create_stream", OBX_OPT_BOOL, "false", 0, 0, 0, NULL,
     offsetof(obx_nats_config, create_stream),
     "Create stream when it does not exist: file storage, subjects, "
     "duplicate_window. For quick starts and tests; production streams are "
     "usually managed with the nats CLI or an operator."},
    {"duplicate_window", OBX_OPT_DURATION, "2m", 0, 1000, 604800000, NULL,
     offsetof(obx_nats_config, duplicate_window_ms),
     "Duplicate window of a stream made by create_stream: how long "
     "JetStream remembers a Nats-Msg-Id. Keep it above the longest retry "
     "wait (retry.backoff); the plugin warns at start when the stream's "
     "window is shorter."},
    {"expect_stream", OBX_OPT_STRING, NULL, 0, 0, 0, NULL,
     offsetof(obx_nats_config, expect_stream),
     "Sets Nats-Expected-Stream on every message: an event whose subject "
     "another stream captures fails (dead-lettered) instead of landing "
     "there."},
    {"max_in_flight", OBX_OPT_INT, "4096", 0, 1, 1000000, NULL,
     offsetof(obx_nats_config, max_in_flight),
     "At most this many messages of one publish call wait for their "
     "PubAck at a time."},
    {"connect_timeout", OBX_OPT_DURATION, "2s", 0, 1, 600000, NULL,
     offsetof(obx_nats_config, connect_timeout_ms),
     "Timeout of one connection attempt."},
    {"reconnect_wait", OBX_OPT_DURATION, "500ms", 0, 1, 600000, NULL,
     offsetof(obx_nats_config, reconnect_wait_ms),
     "Pause between two reconnect attempts to the same server."},
    {"api_timeout", OBX_OPT_DURATION, "5s", 0, 1, 600000, NULL,
     offsetof(obx_nats_config, api_timeout_ms),
     "Timeout of JetStream API requests (stream look-up and creation)."},
    OBX_OPTIONS_END,
};

/* ---- state ------------------------------------------------------------ */

static void natsb_fill(obx_result *r, obx_status st, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static void natsb_fill(obx_result *r, obx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = st;
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

/* Under mu. */
static void set_down_locked(natsb *b, const char *why)
{
    if (!b->down && !b->closing)
        b->host->log(b->host, OBX_LOG_WARN, "nats: %s", why);
    b->down = true;
    snprintf(b->down_reason, sizeof b->down_reason, "nats: %s", why);
    pthread_cond_broadcast(&b->cv);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    natsb *b = closure;
    pthread_mutex_lock(&b->mu);
    set_down_locked(b, "disconnected from the server; reconnecting");
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
        set_down_locked(b, "connection closed");
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

/* The PubAck (or its error) of one message, on a cnats thread. The event
 * is found by its Nats-Msg-Id among the current call's; anything else is
 * late (its call gave up on it and the event is being retried). The
 * message is handed back to us: destroyed here. */
static void on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                      void *closure)
{
    (void)js;
    natsb *b = closure;
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, NATSB_H_MSG_ID, &id) != NATS_OK)
        id = NULL;
    pthread_mutex_lock(&b->mu);
    b->in_puback++;
    natsb_call *c = &b->call;
    uintptr_t at =
        c->active && id ? (uintptr_t)obx_kafka_keyset_get(&c->ids, id) : 0;
    if (at == 0 || c->state[at - 1] != NATSB_INFLIGHT) {
        if (pae)
            b->late_failed++;
        else
            b->late_ok++;
        goto out;
    }
    size_t i = at - 1;
    obx_result *r = &c->results[i];
    const obx_event *ev = c->events[i];
    c->inflight--;
    c->answered++;
    c->state[i] = NATSB_DONE;
    if (!pae && pa) {
        natsb_fill(r, OBX_OK, "%s", pa->Duplicate ? "duplicate" : "");
    } else if (pae && pae->Err == NATS_NO_RESPONDERS) {
        c->state[i] = NATSB_NORESP;
    } else {
        natsStatus s = pae ? pae->Err : NATS_ERR;
        jsErrCode code = pae ? pae->ErrCode : 0;
        const char *hint = natsb_hint(s, code);
        natsb_fill(
            r, natsb_classify(s, code), "nats: %s (code %d) for subject %s%s%s",
            pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(s),
            (int)code, ev->destination, hint ? ": " : "", hint ? hint : "");
        if (ev->key)
            obx_kafka_keyset_add(&c->failed, ev->key);
    }
out:
    b->in_puback--;
    if (c->inflight == 0 || c->inflight + 1 == (size_t)b->conf->max_in_flight ||
        b->closing)
        pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(msg); /* ours again once its PubAck is handled */
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
        set_down_locked(b, why);
        pthread_mutex_unlock(&b->mu);
    }
    if (b->conf->mode == OBX_NATS_CORE)
        return OBX_OK;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = b->conf->api_timeout_ms;
    jo.PublishAsync.AckHandler = on_puback;
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
static void natsb_drop_pending(natsb *b)
{
    /* cnats 3.4.1 crashes in js_PublishAsyncGetPendingList on a context
     * that never published asynchronously. */
    if (!b->js || !b->sent_any)
        return;
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, b->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
}

static void natsb_log_late(natsb *b)
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
        while ((!b->closed_seen || b->in_puback > 0) &&
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
    obx_kafka_keyset_free(&b->call.ids);
    obx_kafka_keyset_free(&b->call.failed);
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
        set_down_locked(b, "cannot create a new connection");
        pthread_mutex_unlock(&b->mu);
    }
}

/* Whether the connection is usable; fills why when not. */
static bool natsb_up(natsb *b, char *why, size_t len)
{
    if (b->nc && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CLOSED)
        natsb_renew(b);
    if (!b->nc || (b->conf->mode == OBX_NATS_JETSTREAM && !b->js)) {
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
    if (b->conf->mode == OBX_NATS_CORE || b->stream_ok)
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
    const obx_nats_config *c = config;
    natsOptions *o = NULL;
    obx_status st = natsb_opts_build(host, c, false, NULL, &o, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (c->mode == OBX_NATS_CORE)
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
    if (c->mode == OBX_NATS_JETSTREAM) {
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
        b->conf->mode == OBX_NATS_JETSTREAM) {
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
              b->conf->mode == OBX_NATS_CORE ? "core NATS" : "JetStream",
              host->pipeline ? host->pipeline : "-", servers,
              b->conf->stream ? b->conf->stream : "(any)",
              (long long)b->conf->max_in_flight);
    if (b->conf->mode == OBX_NATS_CORE)
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

/* ---- publish ---------------------------------------------------------- */

static void abs_deadline(int64_t deadline_us, struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left =
        deadline_us - (int64_t)now.tv_sec * 1000000 - now.tv_nsec / 1000;
    if (left > 100000)
        left = 100000; /* look at the stop conditions at least every 100 ms */
    if (left < 0)
        left = 0;
    int64_t ns = now.tv_nsec + (left % 1000000) * 1000;
    ts->tv_sec =
        now.tv_sec + (time_t)(left / 1000000) + (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static bool past(const natsb *b, int64_t deadline_us)
{
    return b->host->mono_us() >= deadline_us;
}

/* The name of the first header of ev that a NATS header block cannot
 * carry (a line break anywhere, or ':' or white space in the name: they
 * would end or split the header), or NULL. */
static const char *natsb_bad_header(const obx_event *ev)
{
    for (size_t i = 0; i < ev->n_headers; i++) {
        const obx_header *h = &ev->headers[i];
        if (!h->name)
            continue;
        if (strpbrk(h->name, ": \t\r\n") ||
            (h->value && strpbrk(h->value, "\r\n")))
            return h->name;
    }
    return NULL;
}

static void natsb_fill_bad_header(obx_result *r, const char *name)
{
    natsb_fill(r, OBX_PERMANENT,
               "nats: header '%.64s' cannot be sent: NATS headers take no "
               "line break, and no ':' or white space in a name",
               name);
}

/* Build the message of ev: subject, payload, headers. NULL on failure,
 * with the status in *s. */
static natsMsg *natsb_msg(const natsb *b, const obx_event *ev, natsStatus *s)
{
    natsMsg *m = NULL;
    *s = natsMsg_Create(&m, ev->destination, NULL, (const char *)ev->payload,
                        (int)ev->payload_len);
    if (*s != NATS_OK)
        return NULL;
    const char *fixed[][2] = {{NATSB_H_MSG_ID, ev->event_id},
                              {NATSB_H_EVENT_ID, ev->event_id},
                              {NATSB_H_EVENT_TYPE, ev->event_type},
                              {NATSB_H_AGG_TYPE, ev->aggregate_type},
                              {NATSB_H_AGG_ID, ev->aggregate_id}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed && *s == NATS_OK; i++)
        if (fixed[i][1])
            *s = natsMsgHeader_Set(m, fixed[i][0], fixed[i][1]);
    if (*s == NATS_OK && b->conf->mode == OBX_NATS_JETSTREAM &&
        b->conf->expect_stream && *b->conf->expect_stream)
        *s = natsMsgHeader_Set(m, NATSB_H_EXPECT, b->conf->expect_stream);
    for (size_t i = 0; i < ev->n_headers && *s == NATS_OK; i++)
        if (ev->headers[i].name && *ev->headers[i].name)
            *s = natsMsgHeader_Add(m, ev->headers[i].name,
                                   ev->headers[i].value ? ev->headers[i].value
                                                        : "");
    if (*s != NATS_OK) {
        natsMsg_Destroy(m);
        return NULL;
    }
    return m;
}

/* Start a call: state array, id map, window. -1 when out of memory. */
static int natsb_begin(natsb *b, obx_event *const *events, size_t n,
                       obx_result *results)
{
    if (n > b->state_cap) {
        unsigned char *s = realloc(b->state, n);
        if (!s)
            return -1;
        b->state = s;
        b->state_cap = n;
    }
    memset(b->state, NATSB_UNSENT, n);
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    natsb_call *c = &b->call;
    obx_kafka_keyset_clear(&c->ids);
    obx_kafka_keyset_clear(&c->failed);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (events[i]->event_id)
            rc = obx_kafka_keyset_put(&c->ids, events[i]->event_id,
                                      (void *)(uintptr_t)(i + 1));
    c->events = events;
    c->results = results;
    c->state = b->state;
    c->n = n;
    c->inflight = 0;
    c->answered = 0;
    c->active = rc == 0;
    b->slow = false;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* Under mu: whether the call must stop sending and waiting. */
static bool stopped_locked(const natsb *b)
{
    return b->down || b->slow;
}

/* Wait (mu held) until fewer than max_in_flight are unanswered. False on
 * deadline or when stopped. */
static bool wait_room_locked(natsb *b, int64_t deadline)
{
    natsb_call *c = &b->call;
    while (c->inflight >= (size_t)b->conf->max_in_flight &&
           !stopped_locked(b) && !past(b, deadline)) {
        struct timespec ts;
        abs_deadline(deadline, &ts);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    return c->inflight < (size_t)b->conf->max_in_flight && !stopped_locked(b);
}

/* Send event i (or settle it at once: held back, no subject, a header
 * NATS cannot carry). False when the call must stop sending (deadline,
 * down). State and results are written under mu: PubAck handlers read
 * them. */
static bool natsb_send_one(natsb *b, size_t i, int64_t deadline)
{
    natsb_call *c = &b->call;
    const obx_event *ev = c->events[i];
    pthread_mutex_lock(&b->mu);
    if (ev->key && obx_kafka_keyset_has(&c->failed, ev->key)) {
        c->state[i] = NATSB_HELD;
        natsb_fill(&c->results[i], OBX_RETRY, "not attempted");
        pthread_mutex_unlock(&b->mu);
        return true;
    }
    if (!ev->destination || !*ev->destination) {
        c->state[i] = NATSB_DONE; /* the engine refuses these first */
        natsb_fill(&c->results[i], OBX_PERMANENT, "nats: no subject");
        pthread_mutex_unlock(&b->mu);
        return true;
    }
    const char *bad = natsb_bad_header(ev);
    if (bad) {
        c->state[i] = NATSB_DONE;
        natsb_fill_bad_header(&c->results[i], bad);
        if (ev->key)
            obx_kafka_keyset_add(&c->failed, ev->key);
        pthread_mutex_unlock(&b->mu);
        return true;
    }
    if (!wait_room_locked(b, deadline)) {
        pthread_mutex_unlock(&b->mu);
        return false;
    }
    c->state[i] = NATSB_INFLIGHT; /* before: the PubAck may come at once */
    c->inflight++;
    pthread_mutex_unlock(&b->mu);

    natsStatus s;
    natsMsg *m = natsb_msg(b, ev, &s);
    if (m) {
        b->sent_any = true;
        s = js_PublishMsgAsync(b->js, &m, NULL);
    }
    natsMsg_Destroy(m); /* NULL when cnats took it */
    if (s == NATS_OK)
        return true;
    /* Refused before it was sent: this event only, unless the connection
     * is the reason. cnats removed it from its pending map. */
    char why[256];
    natsb_last_error(b->host, b->conf, s, why, sizeof why);
    obx_status st = natsb_classify(s, 0);
    pthread_mutex_lock(&b->mu);
    bool go_on = true;
    if (c->state[i] == NATSB_INFLIGHT) {
        c->inflight--;
        if (st == OBX_UNAVAILABLE) {
            c->state[i] = NATSB_UNSENT;
            set_down_locked(b, why);
            go_on = false;
        } else {
            const char *hint = natsb_hint(s, 0);
            c->state[i] = NATSB_DONE;
            natsb_fill(&c->results[i], st, "nats: %s for subject %s%s%s", why,
                       ev->destination, hint ? ": " : "", hint ? hint : "");
            if (ev->key)
                obx_kafka_keyset_add(&c->failed, ev->key);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return go_on;
}

/* Wait for every PubAck, the deadline, or a stop. */
static void natsb_wait_all(natsb *b, int64_t deadline)
{
    pthread_mutex_lock(&b->mu);
    while (b->call.inflight > 0 && !stopped_locked(b) && !past(b, deadline)) {
        struct timespec ts;
        abs_deadline(deadline, &ts);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
}

/* "No responders" for some events: no stream captures their subject, or
 * JetStream (or the configured stream) is not there. One account-info
 * request tells which. */
static void natsb_resolve_noresp(natsb *b)
{
    natsb_call *c = &b->call;
    size_t nr = 0;
    for (size_t i = 0; i < c->n; i++)
        nr += c->state[i] == NATSB_NORESP;
    if (nr == 0)
        return;
    bool answers = natsb_js_answers(b->js);
    bool missing = false;
    if (answers && b->conf->stream && *b->conf->stream) {
        char why[OBX_ERRSTR_LEN];
        natsb_stream_state ss;
        obx_status st = natsb_stream_check(b->host, b->conf, b->js, false, &ss,
                                           why, sizeof why);
        missing = st == OBX_UNAVAILABLE;
        if (missing)
            b->stream_ok = false;
    }
    obx_status st = natsb_no_responders(answers, missing);
    for (size_t i = 0; i < c->n; i++) {
        if (c->state[i] != NATSB_NORESP)
            continue;
        c->state[i] = NATSB_DONE;
        const char *subj = c->events[i]->destination;
        if (st == OBX_PERMANENT)
            natsb_fill(
                &c->results[i], st,
                "nats: no stream captures subject %s (no responders)%s%s", subj,
                b->conf->stream ? "; expected stream " : "",
                b->conf->stream ? b->conf->stream : "");
        else
            natsb_fill(&c->results[i], st,
                       "nats: no responders for subject %s: %s", subj,
                       missing ? "the stream is missing"
                               : "JetStream does not answer");
    }
}

/* Results for events without one: never sent, or sent and unanswered (it
 * may still have been stored; the republish carries the same
 * Nats-Msg-Id). */
static void natsb_label(natsb *b, int timeout_ms, bool wide, const char *why)
{
    natsb_call *c = &b->call;
    for (size_t i = 0; i < c->n; i++) {
        obx_result *r = &c->results[i];
        if (c->state[i] == NATSB_UNSENT && wide)
            natsb_fill(r, OBX_UNAVAILABLE, "%s (not sent)", why);
        else if (c->state[i] == NATSB_UNSENT)
            natsb_fill(r, OBX_RETRY,
                       "nats: timed out after %d ms before it "
                       "was sent",
                       timeout_ms);
        else if (c->state[i] == NATSB_INFLIGHT && wide)
            natsb_fill(r, OBX_UNAVAILABLE,
                       "%s (sent, no PubAck: it may have been stored)", why);
        else if (c->state[i] == NATSB_INFLIGHT)
            natsb_fill(r, OBX_RETRY,
                       "nats: no PubAck within %d ms (timeout; republished "
                       "with the same Nats-Msg-Id)",
                       timeout_ms);
    }
}

/* OBX_UNAVAILABLE when no event has a result of its own (every one is
 * unavailable or held back), so the engine releases the batch as a whole;
 * else OBX_OK and the engine settles each event by its result. */
static obx_status natsb_verdict(const natsb *b)
{
    const natsb_call *c = &b->call;
    size_t unavailable = 0, own = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->state[i] == NATSB_HELD)
            continue;
        if (c->results[i].status == OBX_UNAVAILABLE)
            unavailable++;
        else
            own++;
    }
    return unavailable > 0 && own == 0 ? OBX_UNAVAILABLE : OBX_OK;
}

static obx_status natsb_fail_all(obx_result *results, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++)
        natsb_fill(&results[i], OBX_UNAVAILABLE, "%s", why);
    return OBX_UNAVAILABLE;
}

/* End the call: no PubAck may touch the results from here on; take back
 * what cnats still holds, resolve and label the rest. */
static obx_status natsb_finish(natsb *b, int timeout_ms)
{
    pthread_mutex_lock(&b->mu);
    natsb_call *c = &b->call;
    c->active = false;
    bool down = b->down, slow = b->slow;
    size_t inflight = c->inflight, answered = c->answered;
    char why[OBX_ERRSTR_LEN];
    snprintf(why, sizeof why, "%s",
             down   ? b->down_reason
             : slow ? b->slow_reason
                    : "nats: the server answered nothing");
    pthread_mutex_unlock(&b->mu);
    if (inflight > 0)
        natsb_drop_pending(b);
    natsb_resolve_noresp(b);
    natsb_label(b, timeout_ms, down || slow || answered == 0, why);
    obx_status st = natsb_verdict(b);
    c->n = 0;
    return st;
}

static obx_status natsb_publish_js(natsb *b, obx_event *const *events, size_t n,
                                   obx_result *results, int timeout_ms)
{
    int64_t deadline = b->host->mono_us() + (int64_t)timeout_ms * 1000;
    if (natsb_begin(b, events, n, results) != 0)
        return natsb_fail_all(results, n, "nats: out of memory");
    for (size_t i = 0; i < n; i++)
        if (past(b, deadline) || !natsb_send_one(b, i, deadline))
            break;
    natsb_wait_all(b, deadline);
    obx_status st = natsb_finish(b, timeout_ms);
    natsb_log_late(b);
    return st;
}

/* Core NATS: publish each, then one flush (a PING/PONG round trip) that
 * proves the server read everything before it. */
static obx_status natsb_publish_core(natsb *b, obx_event *const *events,
                                     size_t n, obx_result *results,
                                     int timeout_ms)
{
    size_t sent = 0;
    char why[OBX_ERRSTR_LEN] = "";
    memset(b->state, NATSB_UNSENT, n);
    for (size_t i = 0; i < n; i++) {
        const char *bad = natsb_bad_header(events[i]);
        if (bad) {
            b->state[i] = NATSB_DONE;
            natsb_fill_bad_header(&results[i], bad);
            continue;
        }
        natsStatus s;
        natsMsg *m = natsb_msg(b, events[i], &s);
        if (m)
            s = natsConnection_PublishMsg(b->nc, m);
        natsMsg_Destroy(m);
        if (s == NATS_OK) {
            b->state[i] = NATSB_INFLIGHT;
            sent++;
            continue;
        }
        natsb_last_error(b->host, b->conf, s, why, sizeof why);
        obx_status st = natsb_classify(s, 0);
        if (st == OBX_UNAVAILABLE)
            break;
        const char *hint = natsb_hint(s, 0);
        b->state[i] = NATSB_DONE;
        natsb_fill(&results[i], st, "nats: %s for subject %s%s%s", why,
                   events[i]->destination, hint ? ": " : "", hint ? hint : "");
        why[0] = '\0';
    }
    natsStatus fs = NATS_OK;
    if (sent > 0 && !why[0]) {
        fs =
            natsConnection_FlushTimeout(b->nc, timeout_ms > 0 ? timeout_ms : 1);
        if (fs != NATS_OK)
            natsb_last_error(b->host, b->conf, fs, why, sizeof why);
    }
    size_t own = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->state[i] == NATSB_DONE) {
            own++;
        } else if (b->state[i] == NATSB_INFLIGHT && !why[0]) {
            natsb_fill(&results[i], OBX_OK, "%s", "");
            own++;
        } else {
            natsb_fill(&results[i], OBX_UNAVAILABLE, "nats: %s", why);
        }
    }
    return own == 0 && n > 0 ? OBX_UNAVAILABLE : OBX_OK;
}

static int natsb_reserve(natsb *b, size_t n)
{
    if (n <= b->state_cap)
        return 0;
    unsigned char *s = realloc(b->state, n);
    if (!s)
        return -1;
    b->state = s;
    b->state_cap = n;
    return 0;
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
    if (b->conf->mode == OBX_NATS_CORE)
        return natsb_publish_core(b, events, n, results, timeout_ms);
    return natsb_publish_js(b, events, n, results, timeout_ms);
}

/* Nothing is left outstanding between calls (finish() takes it back);
 * core mode: one flush. */
static obx_status nats_flush(void *inst, int timeout_ms)
{
    natsb *b = inst;
    if (b->conf->mode == OBX_NATS_CORE &&
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
                  "1.0.0", nats_options, obx_nats_config, nats_ops)
