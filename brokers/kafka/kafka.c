/* kafka broker: librdkafka's idempotent producer behind obx_broker_ops.
 *
 * publish() hands every event of the batch to librdkafka (pipelined, at
 * most max_in_flight at a time), then serves delivery reports until each
 * event has its result or the publish timeout runs out. Each message
 * carries its number (a 64-bit counter per producer) as opaque; the
 * numbers of the current call map to an index into results[], any other
 * report belongs to a call we gave up on and is counted as late.
 *
 * Everything librdkafka calls back (delivery reports, errors, logs) runs
 * inside rd_kafka_poll()/rd_kafka_flush() on the pipeline's thread: no
 * locks. Users' docs: docs/kafka.md.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <outbox/plugin.h>

#include "kafka_conf.h"
#include "kafka_config.h"
#include "kafka_errors.h"
#include "keyset.h"

/* Header names set on every message, before the event's own headers. */
#define KFK_H_EVENT_ID "outbox-event-id"
#define KFK_H_EVENT_TYPE "outbox-event-type"
#define KFK_H_AGG_TYPE "outbox-aggregate-type"
#define KFK_H_AGG_ID "outbox-aggregate-id"

/* Topic handles kept per producer; past this many distinct destinations,
 * messages go by name (librdkafka looks the topic up per message). */
#define KFK_TOPICS_MAX 4096

/* How long one wait on librdkafka may last before we look at the clock
 * and the stop conditions again. */
#define KFK_SLICE_MS 100

/* Where one event of the current call stands. */
typedef enum kfk_state {
    KFK_UNSENT = 0,   /* not handed to librdkafka, or purged unsent */
    KFK_INFLIGHT = 1, /* handed over, no report yet */
    KFK_DONE = 2,     /* result filled from a report or a refusal */
    KFK_HELD = 3,     /* not attempted: an earlier event of its key failed */
} kfk_state;

/* The publish call in progress; n == 0 between calls. */
typedef struct kfk_call {
    obx_event *const *events; /* borrowed for the call */
    obx_result *results;
    unsigned char *state; /* kfk_state per event */
    size_t n;
    uint64_t base;   /* message number of events[0] */
    size_t inflight; /* KFK_INFLIGHT count */
    size_t wake_at;  /* return from the current wait at this inflight */
    size_t answered; /* reports carrying a broker's answer */
    /* ALL_BROKERS_DOWN (or an authentication failure) was reported during
     * the call. It stays so even when a report that was already on its
     * way comes after it and says a broker is up: what had no report by
     * then is an outage's, and counts no attempt. */
    bool went_down;
    /* A failed event's key could not be remembered (out of memory): hold
     * every later keyed event of the call, as any of them may be its. */
    bool keys_lost;
    int timeout_ms;
} kfk_call;

typedef struct kfk_broker {
    const obx_host *host;
    const kfk_config *conf; /* borrowed from the core */
    rd_kafka_t *rk;
    uint64_t next_seq;
    kfk_call call;
    unsigned char *state; /* capacity for call.state */
    size_t state_cap;
    obc_keyset failed_keys; /* keys of events failed in this call */
    obc_keyset topics;      /* name -> rd_kafka_topic_t, for rk */
    bool down;              /* no broker usable, until proven again */
    char down_reason[OBX_ERRSTR_LEN];
    bool fatal; /* librdkafka raised a fatal error: reopen */
    char fatal_reason[OBX_ERRSTR_LEN];
    uint64_t late_ok, late_failed, late_logged;
} kfk_broker;

static const char *const kfk_ts_values[] = {"created", "now", NULL};

static const obx_option kafka_options[] = {
    OBX_OPT_STRING(kfk_config, brokers, "brokers", OBX_REQUIRED,
                   "Bootstrap servers, host:port[,host:port...] (librdkafka's "
                   "bootstrap.servers)."),
    OBX_OPT_SECRET_PREFIX(
        kfk_config, kafka, "kafka",
        "Any librdkafka property, passed through verbatim: "
        "broker.kafka.linger.ms = 10, broker.kafka.security.protocol = "
        "sasl_ssl, broker.kafka.sasl.password = ${env:KAFKA_PASSWORD}. Checked "
        "by librdkafka at `check` time. The defaults the plugin sets "
        "(enable.idempotence = true, acks = all, partitioner = murmur2_random, "
        "client.id = outbox-relay) can be overridden."),
    OBX_OPT_INT(kfk_config, max_in_flight, "max_in_flight", "10000", 1, 1000000,
                "At most this many messages of one publish call are handed to "
                "librdkafka without a delivery report yet; bounds the memory a "
                "large batch can take."),
    OBX_OPT_ENUM(kfk_config, timestamp, "timestamp", "created", kfk_ts_values,
                 "The Kafka message timestamp: the event's created_at, or the "
                 "time of the send (for brokers that refuse old timestamps)."),
    OBX_OPT_DURATION(
        kfk_config, probe_timeout_ms, "probe_timeout", "2s", 1, 60000,
        "How long a metadata request may take: the health probe while the "
        "circuit breaker is open or after all brokers were seen down, and the "
        "look-up of a topic the first time an event goes there."),
    OBX_OPT_DURATION(kfk_config, close_timeout_ms, "close_timeout", "5s", 0,
                     600000,
                     "On shutdown, how long to wait for requests still in "
                     "flight to complete before the producer is destroyed."),
    OBX_OPTIONS_END,
};

/* ---- state and logging ----------------------------------------------- */

static void kfk_set_down(kfk_broker *k, const char *what, const char *why)
{
    if (!k->down)
        k->host->log(k->host, OBX_LOG_WARN,
                     "kafka: brokers unavailable: %s: %s", what, why);
    k->down = true;
    k->call.went_down = true;
    snprintf(k->down_reason, sizeof k->down_reason, "kafka: %s: %s", what, why);
}

static void kfk_set_up(kfk_broker *k)
{
    if (k->down)
        k->host->log(k->host, OBX_LOG_INFO, "kafka: brokers reachable again");
    k->down = false;
}

/* librdkafka's syslog levels: its errors are warnings to us (the relay
 * handles them), its info and debug are our debug. */
static obx_log_level kfk_level(int level)
{
    if (level <= 2)
        return OBX_LOG_ERROR;
    if (level <= 4)
        return OBX_LOG_WARN;
    return level == 5 ? OBX_LOG_INFO : OBX_LOG_DEBUG;
}

static void kfk_on_log(const rd_kafka_t *rk, int level, const char *fac,
                       const char *buf)
{
    kfk_broker *k = rd_kafka_opaque(rk);
    if (k && k->host->log_enabled(k->host, kfk_level(level)))
        k->host->log(k->host, kfk_level(level), "kafka: librdkafka %s: %s", fac,
                     buf);
}

/* librdkafka raised a fatal error (idempotence state lost): the
 * producer is unusable and must be recreated. */
static void kfk_set_fatal(kfk_broker *k)
{
    char why[OBX_ERRSTR_LEN - 96];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(k->rk, why, sizeof why);
    snprintf(k->fatal_reason, sizeof k->fatal_reason,
             "kafka: fatal producer error %s: %s; reopening the producer",
             rd_kafka_err2name(orig), why);
    if (!k->fatal)
        k->host->log(k->host, OBX_LOG_ERROR, "%s", k->fatal_reason);
    k->fatal = true;
}

/* Errors not tied to a message. The two that matter stop the current
 * wait at once (rd_kafka_yield): fatal, and no broker usable. */
static void kfk_on_error(rd_kafka_t *rk, int err, const char *reason,
                         void *opaque)
{
    kfk_broker *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        kfk_set_fatal(k);
        rd_kafka_yield(rk);
    } else if (kfk_is_broker_wide(err)) {
        kfk_set_down(k, rd_kafka_err2name(err), reason);
        rd_kafka_yield(rk);
    } else {
        k->host->log(k->host, OBX_LOG_DEBUG, "kafka: %s: %s",
                     rd_kafka_err2name(err), reason);
    }
}

static void kfk_fill(obx_result *r, obx_status st, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static void kfk_fill(obx_result *r, obx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = st;
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

/* The result of a failed message: status from the error table, text with
 * librdkafka's name and description, plus a hint where we have one. */
static void kfk_fail(obx_result *r, rd_kafka_resp_err_t err, kfk_phase phase,
                     const char *topic)
{
    const char *hint = kfk_hint(err, phase);
    kfk_fill(r, kfk_classify(err, phase), "kafka: %s (%s) for topic %s%s%s",
             rd_kafka_err2str(err), rd_kafka_err2name(err), topic,
             hint ? ": " : "", hint ? hint : "");
}

/* A report for a message of a call we already returned from: its event
 * was handed back for a retry, so a success here means a duplicate. */
static void kfk_late(kfk_broker *k, rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        k->late_ok++;
    else
        k->late_failed++;
}

static void kfk_log_late(kfk_broker *k)
{
    if (k->late_ok == k->late_logged)
        return;
    k->host->log(k->host, OBX_LOG_INFO,
                 "kafka: %llu message(s) given up on were delivered after "
                 "all (%llu in total); their events are published again, so "
                 "consumers see them twice with the same " KFK_H_EVENT_ID,
                 (unsigned long long)(k->late_ok - k->late_logged),
                 (unsigned long long)k->late_ok);
    k->late_logged = k->late_ok;
    if (k->host->gauge_set)
        k->host->gauge_set(k->host, "kafka_late_deliveries",
                           (double)k->late_ok);
}

static void kfk_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                            void *opaque)
{
    kfk_broker *k = opaque;
    kfk_call *c = &k->call;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        kfk_set_up(k); /* proof that a broker is usable */
    if (seq < c->base || seq - c->base >= c->n ||
        c->state[seq - c->base] != KFK_INFLIGHT) {
        kfk_late(k, m->err);
        return;
    }
    size_t i = (size_t)(seq - c->base);
    c->inflight--;
    if (m->err >= 0)
        c->answered++; /* negative codes are librdkafka's own */
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE) {
        c->state[i] = KFK_UNSENT; /* we purged it: finish() labels it */
    } else {
        c->state[i] = KFK_DONE;
        if (m->err) {
            kfk_fail(&c->results[i], m->err, KFK_AT_DELIVERY,
                     rd_kafka_topic_name(m->rkt));
            /* Reports are served while the batch is still being produced
             * (past max_in_flight, or with librdkafka's queue full): the
             * later events of this key not yet produced must wait for
             * this one's retry, not go out ahead of it. */
            const char *key = c->events[i]->key;
            if (key && obc_keyset_add(&k->failed_keys, key) != 0)
                c->keys_lost = true;
        } else {
            kfk_fill(&c->results[i], OBX_OK, "%s", "");
        }
    }
    if (c->inflight == c->wake_at)
        rd_kafka_yield(rk); /* what we wait for: return from flush now */
}

/* ---- producer lifecycle ---------------------------------------------- */

static void kfk_topic_destroy(void *rkt)
{
    rd_kafka_topic_destroy(rkt);
}

static void kfk_destroy(kfk_broker *k)
{
    if (!k->rk)
        return;
    /* Whatever is still queued belongs to calls that already returned:
     * their events were handed back for a retry, so sending them now
     * could only add duplicates. Requests already on the wire get
     * close_timeout to complete. */
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE);
    if (!k->fatal && k->conf->close_timeout_ms > 0)
        rd_kafka_flush(k->rk, (int)k->conf->close_timeout_ms);
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(k->rk, 0);
    kfk_log_late(k);
    obc_keyset_each(&k->topics, kfk_topic_destroy);
    obc_keyset_free(&k->topics);
    rd_kafka_destroy(k->rk);
    k->rk = NULL;
}

static obx_status kfk_create(kfk_broker *k, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = NULL;
    obx_status st = kfk_conf_build(k->conf, true, &conf, errstr, errlen);
    if (st != OBX_OK)
        return st;
    kfk_conf_warn(k->host, conf);
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, kfk_on_delivery);
    rd_kafka_conf_set_error_cb(conf, kfk_on_error);
    rd_kafka_conf_set_log_cb(conf, kfk_on_log);
    char why[512] = "";
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka: cannot create the producer: %s", why);
        return OBX_CONFIG;
    }
    rd_kafka_set_log_queue(k->rk, NULL); /* logs via rd_kafka_poll() */
    return OBX_OK;
}

/* A metadata request: true when a broker answered. Clears or sets the
 * down state accordingly. */
static bool kfk_probe(kfk_broker *k, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(k->rk, 0, NULL, &md, timeout_ms > 0 ? timeout_ms : 1);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        kfk_set_up(k);
        return true;
    }
    kfk_set_down(k, "no broker answered a metadata request",
                 rd_kafka_err2str(err));
    return false;
}

/* ---- ops ------------------------------------------------------------- */

/* Each pass-through property through rd_kafka_conf_set; a producer built
 * without bootstrap servers (so it never connects) catches combinations
 * librdkafka refuses; with connect, a real producer must reach a broker
 * within probe_timeout. */
static obx_status kafka_validate(const obx_host *host, const void *config,
                                 bool connect, char *errstr, size_t errlen)
{
    const kfk_config *c = config;
    rd_kafka_conf_t *conf = NULL;
    obx_status st = kfk_conf_build(c, connect, &conf, errstr, errlen);
    if (st != OBX_OK)
        return st;
    rd_kafka_conf_set_opaque(conf, NULL); /* NULL: logs are dropped */
    rd_kafka_conf_set_log_cb(conf, kfk_on_log);
    char why[512] = "";
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka: librdkafka refuses the settings: %s",
                 why);
        return OBX_CONFIG;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (connect)
        err = rd_kafka_metadata(rk, 0, NULL, &md, (int)c->probe_timeout_ms);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return OBX_OK;
    snprintf(errstr, errlen,
             "kafka: no broker of %s answered within %lld ms: %s", c->brokers,
             (long long)c->probe_timeout_ms, rd_kafka_err2str(err));
    return OBX_UNAVAILABLE;
}

/* The instance borrows host and config (both outlive it). The producer
 * connects in the background: brokers that are down at open make
 * publish() report OBX_UNAVAILABLE later, not open() fail. OBX_CONFIG
 * when librdkafka refuses the settings, OBX_NOMEM. */
static obx_status kafka_open(const obx_host *host, const void *config,
                             void **inst, char *errstr, size_t errlen)
{
    kfk_broker *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    k->host = host;
    k->conf = config;
    k->next_seq = 1;
    obx_status st = kfk_create(k, errstr, errlen);
    if (st != OBX_OK) {
        free(k);
        return st;
    }
    host->log(host, OBX_LOG_INFO,
              "kafka: producer %s for %s (%zu pass-through properties, at "
              "most %lld messages in flight)",
              rd_kafka_name(k->rk), k->conf->brokers, k->conf->kafka.n,
              (long long)k->conf->max_in_flight);
    *inst = k;
    return OBX_OK;
}

static void kafka_close(void *inst)
{
    kfk_broker *k = inst;
    if (!k)
        return;
    kfk_destroy(k);
    obc_keyset_free(&k->failed_keys);
    free(k->state);
    free(k);
}

/* ---- publish --------------------------------------------------------- */

static int kfk_ms_left(const kfk_broker *k, int64_t deadline_us)
{
    int64_t left = (deadline_us - k->host->mono_us()) / 1000;
    return left <= 0 ? 0 : left > KFK_SLICE_MS ? KFK_SLICE_MS : (int)left;
}

/* Start a call: size the state array, open the window of message numbers.
 * -1 when out of memory. */
static int kfk_begin(kfk_broker *k, obx_event *const *events,
                     obx_result *results, size_t n, int timeout_ms)
{
    if (n > k->state_cap) {
        unsigned char *s = realloc(k->state, n);
        if (!s)
            return -1;
        k->state = s;
        k->state_cap = n;
    }
    memset(k->state, KFK_UNSENT, n);
    obc_keyset_clear(&k->failed_keys);
    k->call = (kfk_call){.events = events,
                         .results = results,
                         .state = k->state,
                         .n = n,
                         .base = k->next_seq,
                         .timeout_ms = timeout_ms};
    k->next_seq += n;
    return 0;
}

static rd_kafka_headers_t *kfk_headers(const obx_event *ev)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(ev->n_headers + 4);
    const char *fixed[][2] = {{KFK_H_EVENT_ID, ev->event_id},
                              {KFK_H_EVENT_TYPE, ev->event_type},
                              {KFK_H_AGG_TYPE, ev->aggregate_type},
                              {KFK_H_AGG_ID, ev->aggregate_id}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (fixed[i][1])
            rd_kafka_header_add(h, fixed[i][0], -1, fixed[i][1], -1);
    for (size_t i = 0; i < ev->n_headers; i++)
        if (ev->headers[i].name)
            rd_kafka_header_add(h, ev->headers[i].name, -1,
                                ev->headers[i].value,
                                ev->headers[i].value ? -1 : 0);
    return h;
}

/* The handle of topic `name`, created on first use. Its metadata is
 * fetched right away: librdkafka 2.0 otherwise learns about a topic first
 * produced to after the connection is up only at its next one-second
 * metadata tick, a second of latency for each new destination. NULL when
 * the cache is full or out of memory: then produce by name. */
static rd_kafka_topic_t *kfk_topic(kfk_broker *k, const char *name,
                                   int64_t deadline)
{
    rd_kafka_topic_t *t = obc_keyset_get(&k->topics, name);
    if (t || k->topics.n >= KFK_TOPICS_MAX)
        return t;
    t = rd_kafka_topic_new(k->rk, name, NULL);
    if (!t)
        return NULL;
    if (obc_keyset_put(&k->topics, rd_kafka_topic_name(t), t) != 0) {
        rd_kafka_topic_destroy(t);
        return NULL;
    }
    int ms = (int)((deadline - k->host->mono_us()) / 1000);
    if (ms > k->conf->probe_timeout_ms)
        ms = (int)k->conf->probe_timeout_ms;
    const struct rd_kafka_metadata *md = NULL;
    if (ms > 0 &&
        rd_kafka_metadata(k->rk, 0, t, &md, ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    return t; /* on failure librdkafka keeps trying by itself */
}

/* One message: by topic handle when we have one, else by name. */
static rd_kafka_resp_err_t kfk_send(kfk_broker *k, const obx_event *ev,
                                    rd_kafka_topic_t *rkt, uint64_t seq)
{
    int64_t ts = 0; /* 0: librdkafka uses the current time */
    if (k->conf->timestamp == KFK_TS_CREATED && ev->created_at_us > 0)
        ts = ev->created_at_us / 1000;
    rd_kafka_headers_t *h = kfk_headers(ev);
    rd_kafka_vu_t vu[7] = {{.vtype = RD_KAFKA_VTYPE_VALUE},
                           {.vtype = RD_KAFKA_VTYPE_MSGFLAGS},
                           {.vtype = RD_KAFKA_VTYPE_TIMESTAMP},
                           {.vtype = RD_KAFKA_VTYPE_HEADERS},
                           {.vtype = RD_KAFKA_VTYPE_OPAQUE}};
    vu[0].u.mem.ptr = (void *)ev->payload;
    vu[0].u.mem.size = ev->payload_len;
    vu[1].u.i = RD_KAFKA_MSG_F_COPY;
    vu[2].u.i64 = ts;
    vu[3].u.headers = h;
    vu[4].u.ptr = (void *)(uintptr_t)seq;
    size_t n = 5;
    if (rkt) {
        vu[n].vtype = RD_KAFKA_VTYPE_RKT;
        vu[n++].u.rkt = rkt;
    } else {
        vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vu[n++].u.cstr = ev->destination;
    }
    if (ev->key) {
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *)ev->key;
        vu[n++].u.mem.size = strlen(ev->key);
    }
    rd_kafka_error_t *e = rd_kafka_produceva(k->rk, vu, n);
    rd_kafka_resp_err_t err = e ? rd_kafka_error_code(e) : 0;
    if (e) {
        rd_kafka_error_destroy(e);
        rd_kafka_headers_destroy(h); /* librdkafka owns them on success */
    }
    return err;
}

static bool kfk_stopped(const kfk_broker *k)
{
    return k->fatal || k->down || k->call.went_down;
}

/* Hold event i back when an earlier event of its key failed in this call
 * (refused at once, or by a delivery report served meanwhile): true when
 * it was held. */
static bool kfk_hold(kfk_broker *k, const obx_event *ev, size_t i)
{
    kfk_call *c = &k->call;
    if (!ev->key ||
        (!c->keys_lost && !obc_keyset_has(&k->failed_keys, ev->key)))
        return false;
    c->state[i] = KFK_HELD;
    kfk_fill(&c->results[i], OBX_RETRY, "not attempted");
    return true;
}

/* Hand one event over, waiting (serving reports) while librdkafka's queue
 * is full; held back instead when a report served in that wait failed an
 * earlier event of its key. Returns false when the call must stop
 * producing: deadline, fatal error, brokers down. */
static bool kfk_produce_one(kfk_broker *k, const obx_event *ev, size_t i,
                            int64_t deadline)
{
    kfk_call *c = &k->call;
    rd_kafka_topic_t *rkt = kfk_topic(k, ev->destination, deadline);
    rd_kafka_resp_err_t err;
    while ((err = kfk_send(k, ev, rkt, c->base + i)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        int ms = kfk_ms_left(k, deadline);
        if (ms == 0 || kfk_stopped(k))
            return false;
        rd_kafka_poll(k->rk, ms > 10 ? 10 : ms);
        if (kfk_hold(k, ev, i))
            return true;
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->state[i] = KFK_INFLIGHT;
        c->inflight++;
        return true;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        kfk_set_fatal(k);
        return false;
    }
    c->state[i] = KFK_DONE;
    kfk_fail(&c->results[i], err, KFK_AT_PRODUCE, ev->destination);
    if (ev->key && obc_keyset_add(&k->failed_keys, ev->key) != 0) {
        /* Cannot remember the key: stop rather than risk sending a later
         * event of it ahead of this one. */
        return false;
    }
    return true;
}

/* Wait until fewer than max_in_flight messages of this call are without
 * a report. rd_kafka_flush() rather than poll: nothing more is produced
 * meanwhile, so waiting out linger.ms would be time lost. False on
 * deadline, fatal error or brokers down. */
static bool kfk_wait_room(kfk_broker *k, int64_t deadline)
{
    kfk_call *c = &k->call;
    size_t cap = (size_t)k->conf->max_in_flight;
    c->wake_at = cap - 1;
    while (c->inflight >= cap && !kfk_stopped(k)) {
        int ms = kfk_ms_left(k, deadline);
        if (ms == 0)
            break;
        rd_kafka_flush(k->rk, ms);
    }
    c->wake_at = 0;
    return c->inflight < cap;
}

/* Hand the events over in array order (librdkafka keeps that order per
 * partition); later events of a key that failed here (refused, or failed
 * in a report served meanwhile) are held back. */
static void kfk_produce_all(kfk_broker *k, obx_event *const *events, size_t n,
                            int64_t deadline)
{
    kfk_call *c = &k->call;
    for (size_t i = 0; i < n && !kfk_stopped(k); i++) {
        const obx_event *ev = events[i];
        if (kfk_hold(k, ev, i))
            continue;
        if (!ev->destination || !*ev->destination) {
            /* The engine refuses these first; never trust it blindly. */
            c->state[i] = KFK_DONE;
            kfk_fail(&c->results[i], RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
                     KFK_AT_PRODUCE, "(none)");
            if (ev->key && obc_keyset_add(&k->failed_keys, ev->key))
                return;
            continue;
        }
        if (!kfk_wait_room(k, deadline))
            return;
        /* The wait served reports: one may have failed this key. */
        if (kfk_hold(k, ev, i))
            continue;
        if (kfk_ms_left(k, deadline) == 0 ||
            !kfk_produce_one(k, ev, i, deadline))
            return;
    }
}

/* Serve reports until every event has one, or the deadline, or a
 * broker-wide or fatal error. rd_kafka_flush() also makes librdkafka send
 * at once instead of waiting out linger.ms: nothing more is coming. */
static void kfk_wait(kfk_broker *k, int64_t deadline)
{
    while (k->call.inflight > 0 && !kfk_stopped(k)) {
        int ms = kfk_ms_left(k, deadline);
        if (ms == 0)
            return;
        rd_kafka_flush(k->rk, ms);
    }
}

/* Results for events without a report: not sent (never handed over, or
 * purged by us) or in flight (sent, unanswered: may still land). */
static void kfk_label(kfk_broker *k, bool wide)
{
    kfk_call *c = &k->call;
    const char *why = k->down || c->went_down
                          ? k->down_reason
                          : "kafka: no broker answered anything";
    for (size_t i = 0; i < c->n; i++) {
        obx_result *r = &c->results[i];
        if (c->state[i] == KFK_UNSENT && wide)
            kfk_fill(r, OBX_UNAVAILABLE, "%s (not sent)", why);
        else if (c->state[i] == KFK_UNSENT)
            kfk_fill(r, OBX_RETRY,
                     "kafka: timed out after %d ms before it was sent",
                     c->timeout_ms);
        else if (c->state[i] == KFK_INFLIGHT && wide)
            kfk_fill(r, OBX_UNAVAILABLE,
                     "%s (sent, unacknowledged: it may still be delivered)",
                     why);
        else if (c->state[i] == KFK_INFLIGHT)
            kfk_fill(r, OBX_RETRY,
                     "kafka: timed out after %d ms waiting for "
                     "the acknowledgement (it may still be delivered)",
                     c->timeout_ms);
    }
}

/* OBX_UNAVAILABLE when no event has a result of its own (every one is
 * unavailable or held back), so the engine releases the batch as a whole;
 * else OBX_OK and the engine settles each event by its result. */
static obx_status kfk_verdict(const kfk_broker *k)
{
    const kfk_call *c = &k->call;
    size_t unavailable = 0, own = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->state[i] == KFK_HELD)
            continue;
        if (c->results[i].status == OBX_UNAVAILABLE)
            unavailable++;
        else
            own++;
    }
    return unavailable > 0 && own == 0 ? OBX_UNAVAILABLE : OBX_OK;
}

/* Every result UNAVAILABLE with why (the engine ignores them when ret is
 * not OBX_OK, but a reader of the results sees the reason); close the
 * window of the current call. */
static obx_status kfk_fail_all(kfk_broker *k, obx_result *results, size_t n,
                               obx_status ret, const char *why)
{
    for (size_t i = 0; i < n; i++)
        kfk_fill(&results[i], OBX_UNAVAILABLE, "%s", why);
    k->call.n = 0;
    return ret;
}

/* After the wait: purge what never left (so it cannot turn into a late
 * duplicate), label what has no report, close the window. A call in which
 * no broker answered anything is treated as an outage, not as a timeout
 * of each event: outages must not burn attempts. */
static obx_status kfk_finish(kfk_broker *k)
{
    kfk_call *c = &k->call;
    char tmp[8];
    /* The fatal state is set before its error event is served: look. */
    if (!k->fatal && rd_kafka_fatal_error(k->rk, tmp, sizeof tmp))
        kfk_set_fatal(k);
    if (k->fatal)
        return kfk_fail_all(k, c->results, c->n, OBX_FATAL, k->fatal_reason);
    bool complete = c->inflight == 0;
    for (size_t i = 0; complete && i < c->n; i++)
        complete = c->state[i] != KFK_UNSENT;
    if (c->inflight > 0) {
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE);
        rd_kafka_poll(k->rk, 0);
    }
    if (!complete)
        kfk_label(k, k->down || c->went_down || c->answered == 0);
    obx_status st = kfk_verdict(k);
    c->n = 0;
    return st;
}

/* See broker.h. Results: OBX_OK once the broker acknowledged (acks=all by
 * default); failures classified by kafka_errors.c; "not attempted" for
 * later events of a key that librdkafka refused here; what has no report
 * by the deadline is RETRY (timed out) or, when no broker answered at all
 * or all brokers are down, UNAVAILABLE. Returns OBX_UNAVAILABLE when every
 * result is UNAVAILABLE, OBX_FATAL after a fatal producer error (the
 * engine closes and reopens the instance, which recreates the producer). */
static obx_status kafka_publish(void *inst, obx_event *const *events, size_t n,
                                obx_result *results, int timeout_ms)
{
    kfk_broker *k = inst;
    int64_t deadline = k->host->mono_us() + (int64_t)timeout_ms * 1000;
    if (kfk_begin(k, events, results, n, timeout_ms) != 0)
        return kfk_fail_all(k, results, n, OBX_UNAVAILABLE,
                            "kafka: out of memory");
    rd_kafka_poll(k->rk, 0); /* pending errors and late reports first */
    /* An outage reported before this call produced anything (served just
     * now: it may be a bounce long over) is settled by a metadata request.
     * When a broker answers, went_down is cleared: it stands for messages
     * of this call left without a report by an outage, and there are none
     * yet; kept, it would fail the call unproduced and cost the engine a
     * circuit backoff for each bounce. */
    if ((k->down || k->call.went_down) && !k->fatal) {
        int64_t probe = k->conf->probe_timeout_ms;
        if (kfk_probe(k, (int)(probe < timeout_ms ? probe : timeout_ms)))
            k->call.went_down = false;
    }
    if (k->fatal)
        return kfk_fail_all(k, results, n, OBX_FATAL, k->fatal_reason);
    if (k->down)
        return kfk_fail_all(k, results, n, OBX_UNAVAILABLE, k->down_reason);
    kfk_produce_all(k, events, n, deadline);
    kfk_wait(k, deadline);
    obx_status st = kfk_finish(k);
    kfk_log_late(k);
    return st;
}

/* Wait up to timeout_ms for requests still in flight (they belong to calls
 * that already returned). OBX_OK when none is left, else OBX_UNAVAILABLE. */
static obx_status kafka_flush(void *inst, int timeout_ms)
{
    kfk_broker *k = inst;
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE); /* see kfk_destroy */
    rd_kafka_resp_err_t err = rd_kafka_flush(k->rk, timeout_ms);
    kfk_log_late(k);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? OBX_OK : OBX_UNAVAILABLE;
}

/* For the circuit breaker (see broker.h; pipeline thread): a metadata
 * request with probe_timeout. OBX_OK when a broker answered;
 * OBX_UNAVAILABLE with the reason in errstr otherwise. Also OBX_OK after
 * a fatal producer error, without a probe: waiting cannot mend the
 * producer, and only publish() can have it replaced (it returns OBX_FATAL
 * at once, without producing, and the engine closes and reopens the
 * instance, as for a fatal error seen in publish); UNAVAILABLE here would
 * keep the engine from ever calling publish, the pipeline paused for
 * good. */
static obx_status kafka_health(void *inst, char *errstr, size_t errlen)
{
    kfk_broker *k = inst;
    char tmp[8];
    rd_kafka_poll(k->rk, 0);
    /* The fatal state is set before its error event is served: look. */
    if (!k->fatal && rd_kafka_fatal_error(k->rk, tmp, sizeof tmp))
        kfk_set_fatal(k);
    if (k->fatal)
        return OBX_OK;
    if (kfk_probe(k, (int)k->conf->probe_timeout_ms))
        return OBX_OK;
    snprintf(errstr, errlen, "%s", k->down_reason);
    return OBX_UNAVAILABLE;
}

static const obx_broker_ops kafka_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .validate = kafka_validate,
    .open = kafka_open,
    .close = kafka_close,
    .publish = kafka_publish,
    .flush = kafka_flush,
    .health = kafka_health,
};

OBX_BROKER_PLUGIN("kafka",
                  "Apache Kafka via librdkafka's idempotent producer, with "
                  "per-event delivery reports",
                  "1.0.0", kafka_options, kfk_config, kafka_ops)
