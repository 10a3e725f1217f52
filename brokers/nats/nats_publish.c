/* The publish calls of the nats broker (see nats_inst.h): JetStream's
 * asynchronous publish with a PubAck per event, and core NATS.
 *
 * JetStream: every event of the batch goes to js_PublishMsgAsync (at most
 * max_in_flight without a PubAck); then the call waits until each event
 * has its PubAck or error, or the publish timeout runs out; what is still
 * unanswered then is taken back from cnats (js_PublishAsyncGetPendingList)
 * so no late PubAck can touch the results. Every message carries
 * Nats-Msg-Id = event id: the stream drops a republished copy within its
 * duplicate window.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nats_conn.h"
#include "nats_errors.h"
#include "nats_inst.h"

/* Header names set on every message, before the event's own headers. The
 * names match the kafka broker's; the id goes in JetStream's own
 * Nats-Msg-Id (which is what dedups) and in outbox-event-id. */
#define NATSB_H_MSG_ID "Nats-Msg-Id"
#define NATSB_H_EXPECT "Nats-Expected-Stream"
#define NATSB_H_EVENT_ID "outbox-event-id"
#define NATSB_H_EVENT_TYPE "outbox-event-type"
#define NATSB_H_AGG_TYPE "outbox-aggregate-type"
#define NATSB_H_AGG_ID "outbox-aggregate-id"

void natsb_fill(obx_result *r, obx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = st;
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

/* The PubAck (or its error) of one message, on a cnats thread. The event
 * is found by its Nats-Msg-Id among the current call's; anything else is
 * late (its call gave up on it and the event is being retried). The
 * message is handed back to us: destroyed here. */
void natsb_on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                     void *closure)
{
    (void)js;
    natsb *b = closure;
    atomic_fetch_add(&b->in_puback, 1);
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, NATSB_H_MSG_ID, &id) != NATS_OK)
        id = NULL;
    pthread_mutex_lock(&b->mu);
    natsb_call *c = &b->call;
    uintptr_t at = c->active && id ? (uintptr_t)obc_keyset_get(&c->ids, id) : 0;
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
        c->state[i] = NATSB_NORESP; /* resolved at the end of the call */
        if (ev->key)
            obc_keyset_add(&c->failed, ev->key);
    } else {
        natsStatus s = pae ? pae->Err : NATS_ERR;
        jsErrCode code = pae ? pae->ErrCode : 0;
        const char *hint = natsb_hint(s, code);
        natsb_fill(
            r, natsb_classify(s, code), "nats: %s (code %d) for subject %s%s%s",
            pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(s),
            (int)code, ev->destination, hint ? ": " : "", hint ? hint : "");
        if (ev->key)
            obc_keyset_add(&c->failed, ev->key);
    }
out:
    if (c->inflight == 0 || c->inflight + 1 == (size_t)b->conf->max_in_flight ||
        b->closing)
        pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(msg); /* ours again once its PubAck is handled */
    atomic_fetch_sub(&b->in_puback, 1); /* last: close() may free b now */
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

/* Whether s holds a byte that ends or splits a protocol line: white
 * space or a control character. */
static bool natsb_splits_line(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return true;
    return false;
}

/* Why ev cannot be sent, into r as PERMANENT, or false when it can. cnats
 * checks neither subjects nor header values: a subject with white space
 * or a control character makes the server close the connection (every
 * later try the same: the pipeline would stop on one event), and a line
 * break in a header, the relay's own outbox-* included, would end the
 * header block or forge one. */
static bool natsb_unsendable(const obx_event *ev, obx_result *r)
{
    if (!ev->destination || !*ev->destination) {
        natsb_fill(r, OBX_PERMANENT, "nats: no subject");
        return true;
    }
    if (natsb_splits_line(ev->destination)) {
        natsb_fill(r, OBX_PERMANENT,
                   "nats: subject '%.200s' cannot be sent: NATS subjects "
                   "take no white space or control character",
                   ev->destination);
        return true;
    }
    const char *fixed[][2] = {{NATSB_H_EVENT_ID, ev->event_id},
                              {NATSB_H_EVENT_TYPE, ev->event_type},
                              {NATSB_H_AGG_TYPE, ev->aggregate_type},
                              {NATSB_H_AGG_ID, ev->aggregate_id}};
    const char *bad = NULL;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed && !bad; i++)
        if (fixed[i][1] && strpbrk(fixed[i][1], "\r\n"))
            bad = fixed[i][0];
    for (size_t i = 0; i < ev->n_headers && !bad; i++) {
        const obx_header *h = &ev->headers[i];
        if (h->name && (strpbrk(h->name, ": \t\r\n") ||
                        (h->value && strpbrk(h->value, "\r\n"))))
            bad = h->name;
    }
    if (!bad)
        return false;
    natsb_fill(r, OBX_PERMANENT,
               "nats: header '%.64s' cannot be sent: NATS headers take no "
               "line break, and no ':' or white space in a name",
               bad);
    return true;
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
    if (*s == NATS_OK && b->conf->mode == NATSB_JETSTREAM &&
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
    obc_keyset_clear(&c->ids);
    obc_keyset_clear(&c->failed);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (events[i]->event_id)
            rc = obc_keyset_put(&c->ids, events[i]->event_id,
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
    if (ev->key && obc_keyset_has(&c->failed, ev->key)) {
        c->state[i] = NATSB_HELD;
        natsb_fill(&c->results[i], OBX_RETRY, "not attempted");
        pthread_mutex_unlock(&b->mu);
        return true;
    }
    if (natsb_unsendable(ev, &c->results[i])) {
        c->state[i] = NATSB_DONE;
        if (ev->key)
            obc_keyset_add(&c->failed, ev->key);
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
            natsb_set_down_locked(b, why);
            go_on = false;
        } else {
            const char *hint = natsb_hint(s, 0);
            c->state[i] = NATSB_DONE;
            natsb_fill(&c->results[i], st, "nats: %s for subject %s%s%s", why,
                       ev->destination, hint ? ": " : "", hint ? hint : "");
            if (ev->key)
                obc_keyset_add(&c->failed, ev->key);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return go_on;
}

/* Put what the call sent on the wire now. cnats leaves asynchronous
 * publishes to its flusher thread, which waits 1 ms for more before it
 * writes; nothing more is coming, and the call waits for the PubAcks, so
 * every publish(batch) paid that millisecond (a one-event call took 1.1
 * ms instead of 0.35 at 1k events/s). A flush writes in place, then
 * waits one PING/PONG round trip (the server reads the PING after the
 * publishes and answers it at once, while the PubAcks come as the stream
 * stores); what became of the events is the PubAcks' to tell, so the
 * flush's own result is not. */
static void natsb_kick(natsb *b, int64_t deadline)
{
    pthread_mutex_lock(&b->mu);
    bool sent = b->call.inflight > 0 && !stopped_locked(b);
    pthread_mutex_unlock(&b->mu);
    int64_t ms = (deadline - b->host->mono_us()) / 1000;
    if (sent && ms > 0)
        natsConnection_FlushTimeout(b->nc, ms);
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
        /* Created just now (create_stream): these events were sent
         * while it was missing, and go again, not to the DLQ. */
        missing = st == OBX_UNAVAILABLE || ss.created;
        if (st == OBX_UNAVAILABLE)
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
                       missing ? "the stream was missing"
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

obx_status natsb_fail_all(obx_result *results, size_t n, const char *why)
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

obx_status natsb_publish_js(natsb *b, obx_event *const *events, size_t n,
                            obx_result *results, int timeout_ms)
{
    int64_t deadline = b->host->mono_us() + (int64_t)timeout_ms * 1000;
    if (natsb_begin(b, events, n, results) != 0)
        return natsb_fail_all(results, n, "nats: out of memory");
    for (size_t i = 0; i < n; i++)
        if (past(b, deadline) || !natsb_send_one(b, i, deadline))
            break;
    natsb_kick(b, deadline);
    natsb_wait_all(b, deadline);
    obx_status st = natsb_finish(b, timeout_ms);
    natsb_log_late(b);
    return st;
}

/* Core NATS: publish each, then one flush (a PING/PONG round trip) that
 * proves the server read everything before it. */
obx_status natsb_publish_core(natsb *b, obx_event *const *events, size_t n,
                              obx_result *results, int timeout_ms)
{
    size_t sent = 0;
    char why[OBX_ERRSTR_LEN] = "";
    memset(b->state, NATSB_UNSENT, n);
    for (size_t i = 0; i < n; i++) {
        if (natsb_unsendable(events[i], &results[i])) {
            b->state[i] = NATSB_DONE;
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

int natsb_reserve(natsb *b, size_t n)
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
