/* rabbitmq broker: librabbitmq-c 0.11 with pipelined publisher confirms.
 *
 * One connection, broker.channels channels in confirm mode. publish()
 * sends each event on the channel its key hashes to (one key, one
 * channel: per-key order), keeping at most max_in_flight unconfirmed
 * messages per channel, and reads the server's frames in between:
 * basic.ack / basic.nack (by delivery tag, `multiple` included; see
 * rabbitmq_window.c), basic.return (an unroutable mandatory message,
 * matched to its event by message_id), channel.close, connection.close,
 * connection.blocked / unblocked. librabbitmq 0.11 has no confirm API, so
 * the frames are read here with amqp_simple_wait_frame_noblock.
 *
 * Nothing is ever left in flight between calls: a call that ends with
 * unconfirmed messages (timeout) drops the connection, so a late ack can
 * never be mistaken for one of the next call; the events were handed back
 * for a retry and are published again (same message_id).
 *
 * Single-threaded: every op runs on the pipeline's thread, librabbitmq has
 * no threads of its own. Users' docs: docs/rabbitmq.md.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <outbox/plugin.h>

#include "keyset.h"
#include "rabbitmq_config.h"
#include "rabbitmq_conn.h"
#include "rabbitmq_errors.h"
#include "rabbitmq_message.h"
#include "rabbitmq_window.h"

/* The longest single wait for a frame before the clock and the stop
 * conditions are looked at again. */
#define RMQ_SLICE_MS 100
/* Look for frames (blocked, returns, acks) after this many sends even
 * when the window has room. */
#define RMQ_POLL_EVERY 64
/* While the server blocks the connection, wait this long for confirms of
 * what it had already read before giving up on the call. */
#define RMQ_BLOCKED_GRACE_MS 1000
#define RMQ_NAME_MAX 255 /* exchange names and routing keys: shortstr */

typedef enum rmq_state {
    RMQ_UNSENT = 0,   /* not sent in this call */
    RMQ_INFLIGHT = 1, /* sent, no answer yet */
    RMQ_DONE = 2,     /* result filled */
    RMQ_HELD = 3,     /* not attempted: an earlier event of its key failed */
} rmq_state;

typedef struct rmq_chan {
    amqp_channel_t id;
    bool open;
    rmq_window win;
} rmq_chan;

static const char *const rmq_declare_values[] = {"none",   "topic",   "direct",
                                                 "fanout", "headers", NULL};

typedef struct rmq_broker {
    const obx_host *host;
    const rmq_config *conf; /* borrowed from the core */
    rmq_target target;
    char shown[1024];             /* the target without its password */
    char conn_name[256];          /* outbox-relay/<pipeline> */
    amqp_connection_state_t conn; /* NULL while down */
    int frame_max;                /* negotiated */
    rmq_chan *ch;
    size_t n_ch;
    amqp_channel_t ctl; /* declarations run here */
    bool ctl_open;
    obc_keyset declared; /* exchange names (owned) declared on conn */
    bool blocked;
    /* reading what came between calls: nothing is sent to the server then
     * (no heartbeats either), so it closes a quiet connection after two
     * missed heartbeats; a drop found now is routine, not a warning */
    bool between_calls;
    char blocked_reason[200];
    char down_reason[OBX_ERRSTR_LEN];
    bool was_up;      /* for logging state changes once */
    unsigned retries; /* failed connects in a row */
    int64_t next_connect_us;
    int64_t max_message_size; /* configured, lowered by what the server says */
    uint64_t reconnects;
    /* the call in progress */
    obx_event *const *events;
    obx_result *results;
    unsigned char *state;
    size_t n, cap;
    size_t inflight, confirmed, sent;
    /* 1 + the highest index answered (ack or nack) in the call, 0: none.
     * Events are sent in index order: an unanswered event below it was
     * passed by a later one (see rmq_classify_timeout). */
    size_t answered_upto;
    /* An exchange the server said is missing (404), probed by health()
     * until it exists; "" when none. */
    char missing_exchange[RMQ_NAME_MAX + 1];
    char missing_reason[OBX_ERRSTR_LEN];
    bool call_blocked; /* the server blocked us during this call */
    bool wide; /* a channel error about the configuration: stop the call */
    char wide_reason[OBX_ERRSTR_LEN];
    obx_status drain_status; /* for events drained from a closed window */
    char drain_reason[OBX_ERRSTR_LEN];
    obc_keyset failed_keys;
    rmq_message msg;
    char exch[RMQ_NAME_MAX + 2];
} rmq_broker;

static const obx_option rabbitmq_options[] = {
    OBX_OPT_STRING(
        rmq_config, url, "url", OBX_REQUIRED_SECRET,
        "amqp://user:password@host:port/vhost, or amqps:// for TLS (port "
        "default 5672, amqps 5671; vhost default /, written %2f when given). "
        "Secret: masked in logs and `check` output."),
    OBX_OPT_STRING(rmq_config, password, "password", OBX_SECRET(""),
                   "The password, instead of the one in the URL (e.g. "
                   "${env:RABBITMQ_PASSWORD})."),
    OBX_OPT_STRING(rmq_config, exchange, "exchange", "",
                   "The exchange, a route template like the pipeline's route "
                   "(\"outbox.${aggregate_type}\"). Default \"\": the default "
                   "exchange, which routes to the queue named by the routing "
                   "key. The routing key is the event's destination (its topic "
                   "column, else the pipeline's route)."),
    OBX_OPT_ENUM(
        rmq_config, declare_exchange, "declare_exchange", "none",
        rmq_declare_values,
        "Declare the exchange (durable) with this type before the first "
        "message goes to it, on every connection; none: it must exist."),
    OBX_OPT_INT(rmq_config, channels, "channels", "1", 1, 64,
                "Publishing channels. Each key always uses the same channel "
                "(by a hash of the key), which keeps per-key order."),
    OBX_OPT_INT(rmq_config, max_in_flight, "max_in_flight", "1000", 1, 1000000,
                "Unconfirmed messages per channel: publishing goes on while "
                "fewer are waiting for their basic.ack."),
    OBX_OPT_BOOL(rmq_config, mandatory, "mandatory", "true",
                 "Publish with the mandatory flag: a message no queue is bound "
                 "for comes back (basic.return) and its event goes to the "
                 "dead-letter queue with the server's reason. false: such "
                 "messages are dropped by the server and count as published."),
    OBX_OPT_STRING(rmq_config, content_type, "content_type", "",
                   "The content_type property; \"\": application/json when the "
                   "payload is valid JSON, else application/octet-stream."),
    OBX_OPT_STRING(rmq_config, app_id, "app_id", "outbox-relay",
                   "The app_id property (\"\": none)."),
    OBX_OPT_DURATION(rmq_config, heartbeat_ms, "heartbeat", "30s", 0, 3600000,
                     "AMQP heartbeat asked for (whole seconds; the server may "
                     "lower it); 0 turns heartbeats off. A missed heartbeat "
                     "counts as a lost connection."),
    OBX_OPT_SIZE(rmq_config, frame_max, "frame_max", "128KiB", 4096, 16777216,
                 "Largest frame asked for (the server may lower it). Bodies "
                 "are split into frames; properties and headers must fit into "
                 "one, or the event goes to the dead-letter queue."),
    OBX_OPT_SIZE(
        rmq_config, max_message_size, "max_message_size", "128MiB", 1,
        536870912,
        "Larger payloads go to the dead-letter queue without being sent. Set "
        "it to the server's max_message_size (RabbitMQ's default: 128MiB); a "
        "server that refuses a message as too large lowers it too."),
    OBX_OPT_DURATION(
        rmq_config, connect_timeout_ms, "connect_timeout", "5s", 100, 600000,
        "TCP connect, TLS and AMQP handshake and login, and each request made "
        "while connecting (channel open, exchange declaration)."),
    OBX_OPT_RANGE_ANY(
        rmq_config, reconnect_backoff, "reconnect_backoff", "100ms..10s",
        "Wait between reconnection attempts after the connection failed, "
        "doubling from the first value up to the second."),
    OBX_OPT_STRING(rmq_config, tls_ca_file, "tls.ca_file", "",
                   "amqps: PEM file of the certificate authorities to trust."),
    OBX_OPT_STRING(rmq_config, tls_cert_file, "tls.cert_file", "",
                   "amqps: PEM client certificate (with tls.key_file), for "
                   "servers that ask for one."),
    OBX_OPT_STRING(rmq_config, tls_key_file, "tls.key_file", "",
                   "amqps: PEM private key of tls.cert_file."),
    OBX_OPT_BOOL(rmq_config, tls_verify_peer, "tls.verify_peer", "true",
                 "amqps: check the server's certificate against tls.ca_file."),
    OBX_OPT_BOOL(rmq_config, tls_verify_hostname, "tls.verify_hostname", "true",
                 "amqps: check that the certificate names the URL's host."),
    OBX_OPTIONS_END,
};

/* ---- small things ----------------------------------------------------- */

static void rmq_fill(obx_result *r, obx_status st, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static void rmq_fill(obx_result *r, obx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->status = st;
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

static int64_t rmq_now(const rmq_broker *r)
{
    return r->host->mono_us();
}

static int rmq_ms_left(const rmq_broker *r, int64_t deadline)
{
    int64_t left = (deadline - rmq_now(r)) / 1000;
    return left <= 0 ? 0 : left > RMQ_SLICE_MS ? RMQ_SLICE_MS : (int)left;
}

static uint64_t rmq_hash(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void rmq_gauges(rmq_broker *r)
{
    if (!r->host->gauge_set)
        return;
    r->host->gauge_set(r->host, "rabbitmq_connected", r->conn ? 1 : 0);
    r->host->gauge_set(r->host, "rabbitmq_blocked", r->blocked ? 1 : 0);
    r->host->gauge_set(r->host, "rabbitmq_reconnects", (double)r->reconnects);
}

/* ---- the events of the call ------------------------------------------- */

static void rmq_key_failed(rmq_broker *r, size_t i)
{
    const char *key = r->events[i]->key;
    if (key)
        obc_keyset_add(&r->failed_keys, key); /* best effort: a key not
                                                      remembered only means
                                                      an extra attempt */
}

/* Window callback: basic.ack or basic.nack for event i. */
static void rmq_on_answer(void *ctx, uint32_t i, bool ack)
{
    rmq_broker *r = ctx;
    if (i >= r->n || r->state[i] != RMQ_INFLIGHT)
        return;
    r->state[i] = RMQ_DONE;
    r->inflight--;
    if (i + 1 > r->answered_upto)
        r->answered_upto = i + 1;
    if (ack) {
        r->confirmed++;
        rmq_fill(&r->results[i], OBX_OK, "%s", "");
    } else {
        rmq_fill(&r->results[i], OBX_RETRY,
                 "rabbitmq: the server refused the message (basic.nack)");
        rmq_key_failed(r, i);
    }
}

/* Window callback: event i will get no answer (its channel or the
 * connection closed). It goes again, so the later events of its key
 * wait for it: after a channel closed, the call goes on on a new one. */
static void rmq_on_lost(void *ctx, uint32_t i, bool ack)
{
    (void)ack;
    rmq_broker *r = ctx;
    if (i >= r->n || r->state[i] != RMQ_INFLIGHT)
        return;
    r->state[i] = RMQ_DONE;
    r->inflight--;
    rmq_fill(&r->results[i], r->drain_status,
             "%s (sent, unconfirmed: it may still be delivered)",
             r->drain_reason);
    rmq_key_failed(r, i);
}

/* ---- connection ------------------------------------------------------- */

static void rmq_free_name(void *name)
{
    free(name);
}

static void rmq_forget_declared(rmq_broker *r)
{
    obc_keyset_each(&r->declared, rmq_free_name);
    obc_keyset_free(&r->declared);
}

/* The connection is gone (why: the reason, for results and health). Every
 * unconfirmed message of the call is UNAVAILABLE: no attempt counted. */
static void rmq_drop(rmq_broker *r, const char *why)
{
    if (!r->conn)
        return;
    snprintf(r->down_reason, sizeof r->down_reason, "%s", why);
    if (r->between_calls)
        r->host->log(r->host, OBX_LOG_INFO,
                     "rabbitmq: connection to %s closed while idle (%s; the "
                     "server closes a connection that sent no heartbeat "
                     "for two intervals); reconnecting",
                     r->shown, why);
    else
        r->host->log(r->host, OBX_LOG_WARN,
                     "rabbitmq: connection to %s lost: %s", r->shown, why);
    rmq_disconnect(r->conn, false);
    r->conn = NULL;
    r->blocked = false;
    r->drain_status = OBX_UNAVAILABLE;
    snprintf(r->drain_reason, sizeof r->drain_reason, "%s", why);
    for (size_t i = 0; i < r->n_ch; i++) {
        rmq_window_drain(&r->ch[i].win, rmq_on_lost, r);
        r->ch[i].open = false;
    }
    r->ctl_open = false;
    rmq_forget_declared(r);
    r->next_connect_us = rmq_now(r); /* the first retry at once */
    r->retries = 0;
    rmq_gauges(r);
}

/* Wait before the next attempt: reconnect_backoff.min doubling. */
static void rmq_backoff(rmq_broker *r)
{
    int64_t lo = r->conf->reconnect_backoff.min_ms;
    int64_t hi = r->conf->reconnect_backoff.max_ms;
    int64_t d = lo > 0 ? lo : 1;
    for (unsigned i = 1; i < r->retries && d < hi; i++)
        d *= 2;
    if (d > hi && hi > 0)
        d = hi;
    r->next_connect_us = rmq_now(r) + d * 1000;
}

static obx_status rmq_open_channels(rmq_broker *r, char *err, size_t len)
{
    for (size_t i = 0; i < r->n_ch; i++) {
        obx_status st = rmq_channel_open(r->conn, r->ch[i].id, err, len);
        if (st != OBX_OK)
            return st;
        r->ch[i].open = true;
        rmq_window_reset(&r->ch[i].win);
    }
    return OBX_OK;
}

/* Connect, log in, open the channels. OBX_OK; OBX_UNAVAILABLE (reason in
 * down_reason, next attempt scheduled); OBX_CONFIG / OBX_NOMEM. */
static obx_status rmq_connect(rmq_broker *r)
{
    char err[OBX_ERRSTR_LEN] = "";
    amqp_connection_state_t conn = NULL;
    obx_status st = rmq_conn_connect(r->conf, &r->target, r->conn_name, &conn,
                                     err, sizeof err);
    if (st == OBX_OK) {
        r->conn = conn;
        r->frame_max = amqp_get_frame_max(conn);
        st = rmq_open_channels(r, err, sizeof err);
        if (st != OBX_OK) {
            rmq_disconnect(conn, false);
            r->conn = NULL;
        }
    }
    if (st == OBX_OK) {
        r->host->log(r->host, r->was_up ? OBX_LOG_INFO : OBX_LOG_INFO,
                     "rabbitmq: connected to %s as \"%s\" (%zu channel(s), "
                     "frame_max %d, heartbeat %d s)",
                     r->shown, r->conn_name, r->n_ch, r->frame_max,
                     amqp_get_heartbeat(r->conn));
        if (r->was_up)
            r->reconnects++;
        r->was_up = true;
        r->retries = 0;
        r->blocked = false;
        r->down_reason[0] = '\0';
        rmq_gauges(r);
        return OBX_OK;
    }
    if (st == OBX_UNAVAILABLE) {
        if (r->retries == 0 || strcmp(err, r->down_reason) != 0)
            r->host->log(r->host, OBX_LOG_WARN, "%s", err);
        snprintf(r->down_reason, sizeof r->down_reason, "%s", err);
        r->retries++;
        rmq_backoff(r);
    } else {
        snprintf(r->down_reason, sizeof r->down_reason, "%s", err);
    }
    return st;
}

/* Connected (now or already), when the backoff allows an attempt, or
 * force. */
static bool rmq_ensure(rmq_broker *r, bool force)
{
    if (r->conn)
        return true;
    if (!force && rmq_now(r) < r->next_connect_us)
        return false;
    return rmq_connect(r) == OBX_OK;
}

/* ---- frames from the server ------------------------------------------ */

static void rmq_send_close_ok(rmq_broker *r, amqp_channel_t ch)
{
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(r->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

static rmq_chan *rmq_chan_by_id(rmq_broker *r, amqp_channel_t id)
{
    return id >= 1 && id <= r->n_ch ? &r->ch[id - 1] : NULL;
}

/* basic.return: the message that follows (header and body frames) is one
 * of ours that no queue took. Matched by message_id = event id. */
static int rmq_on_return(rmq_broker *r, amqp_channel_t id,
                         const amqp_basic_return_t *m)
{
    char why[OBX_ERRSTR_LEN];
    snprintf(why, sizeof why,
             "rabbitmq: unroutable: the server returned it with %u %.*s "
             "(exchange '%.*s', routing key '%.*s'; no queue is bound for it)",
             m->reply_code, (int)m->reply_text.len,
             (const char *)m->reply_text.bytes, (int)m->exchange.len,
             (const char *)m->exchange.bytes, (int)m->routing_key.len,
             (const char *)m->routing_key.bytes);
    amqp_message_t msg;
    amqp_rpc_reply_t rr = amqp_read_message(r->conn, id, &msg, 0);
    if (rr.reply_type != AMQP_RESPONSE_NORMAL) {
        char err[OBX_ERRSTR_LEN];
        rmq_reply(rr, "rabbitmq: reading a returned message", err, sizeof err);
        rmq_drop(r, err);
        return -1;
    }
    rmq_chan *c = rmq_chan_by_id(r, id);
    amqp_bytes_t mid = msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG
                           ? msg.properties.message_id
                           : (amqp_bytes_t){0, NULL};
    uint64_t pos = 0;
    uint32_t ev, first = RMQ_NO_EVENT, found = RMQ_NO_EVENT;
    while (c && rmq_window_next(&c->win, &pos, &ev)) {
        if (first == RMQ_NO_EVENT)
            first = ev;
        const char *eid = ev < r->n ? r->events[ev]->event_id : NULL;
        if (eid && mid.len == strlen(eid) &&
            memcmp(mid.bytes, eid, mid.len) == 0) {
            found = ev;
            break;
        }
    }
    /* No message_id match (cannot happen with our messages): returns come
     * in publish order, so the oldest unanswered one is it. */
    if (found == RMQ_NO_EVENT && mid.len == 0)
        found = first;
    amqp_destroy_message(&msg);
    if (found == RMQ_NO_EVENT || r->state[found] != RMQ_INFLIGHT)
        return 1; /* a message of a call given up on */
    rmq_window_forget(&c->win, found);
    r->state[found] = RMQ_DONE;
    r->inflight--;
    rmq_fill(&r->results[found], OBX_PERMANENT, "%s", why);
    rmq_key_failed(r, found);
    return 1;
}

/* Remember the exchange of a 404 "no exchange 'NAME' in vhost ..." so
 * health() can tell when it exists. */
static void rmq_note_missing(rmq_broker *r, uint16_t code, const char *text,
                             size_t len, const char *why)
{
    static const char tag[] = "no exchange '";
    if (code != AMQP_NOT_FOUND)
        return;
    for (size_t i = 0; i + sizeof tag - 1 <= len; i++) {
        if (memcmp(text + i, tag, sizeof tag - 1) != 0)
            continue;
        const char *b = text + i + sizeof tag - 1;
        const char *e = memchr(b, '\'', len - (size_t)(b - text));
        if (!e || e - b > RMQ_NAME_MAX)
            return;
        snprintf(r->missing_exchange, sizeof r->missing_exchange, "%.*s",
                 (int)(e - b), b);
        snprintf(r->missing_reason, sizeof r->missing_reason, "%s", why);
        return;
    }
}

/* channel.close from the server: the channel's unconfirmed messages will
 * never be answered. An oversize message is PERMANENT (and the limit is
 * learned); anything else is about the configuration (missing exchange,
 * permissions): UNAVAILABLE and the call stops. */
static void rmq_on_channel_close(rmq_broker *r, amqp_channel_t id,
                                 const amqp_channel_close_t *m)
{
    const char *text = m->reply_text.bytes;
    size_t len = m->reply_text.len;
    const char *hint = rmq_hint(true, m->reply_code, text, len);
    char why[OBX_ERRSTR_LEN];
    snprintf(why, sizeof why,
             "rabbitmq: the server closed channel %u: %u %.*s%s%s", id,
             m->reply_code, (int)len, text, hint ? "; " : "", hint ? hint : "");
    rmq_send_close_ok(r, id);
    if (id == r->ctl) {
        r->ctl_open = false;
        return;
    }
    rmq_chan *c = rmq_chan_by_id(r, id);
    if (!c)
        return;
    c->open = false;
    r->host->log(r->host, OBX_LOG_WARN, "%s", why);
    if (rmq_classify_close(true, m->reply_code, text, len) == OBX_PERMANENT) {
        int64_t max = rmq_parse_max_size(text, len);
        if (max >= 0 && max < r->max_message_size)
            r->max_message_size = max;
        uint64_t pos = 0;
        uint32_t ev;
        while (rmq_window_next(&c->win, &pos, &ev)) {
            if (ev < r->n && r->state[ev] == RMQ_INFLIGHT &&
                (int64_t)r->events[ev]->payload_len > max) {
                rmq_window_forget(&c->win, ev);
                r->state[ev] = RMQ_DONE;
                r->inflight--;
                rmq_fill(&r->results[ev], OBX_PERMANENT,
                         "rabbitmq: %zu bytes, larger than the server's "
                         "max_message_size (%lld)",
                         r->events[ev]->payload_len, (long long)max);
                rmq_key_failed(r, ev);
                break;
            }
        }
        r->drain_status = OBX_UNAVAILABLE;
        snprintf(r->drain_reason, sizeof r->drain_reason,
                 "rabbitmq: channel %u closed by the server after an oversize "
                 "message",
                 id);
    } else {
        rmq_note_missing(r, m->reply_code, text, len, why);
        r->drain_status = OBX_UNAVAILABLE;
        snprintf(r->drain_reason, sizeof r->drain_reason, "%s", why);
        r->wide = true;
        snprintf(r->wide_reason, sizeof r->wide_reason, "%s", why);
    }
    rmq_window_drain(&c->win, rmq_on_lost, r);
}

static void rmq_on_connection_close(rmq_broker *r,
                                    const amqp_connection_close_t *m)
{
    const char *hint =
        rmq_hint(false, m->reply_code, m->reply_text.bytes, m->reply_text.len);
    char why[OBX_ERRSTR_LEN];
    snprintf(why, sizeof why,
             "rabbitmq: the server closed the connection: %u %.*s%s%s",
             m->reply_code, (int)m->reply_text.len,
             (const char *)m->reply_text.bytes, hint ? "; " : "",
             hint ? hint : "");
    amqp_connection_close_ok_t ok = {0};
    amqp_send_method(r->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    rmq_drop(r, why);
}

static void rmq_on_blocked(rmq_broker *r, const amqp_connection_blocked_t *m)
{
    snprintf(r->blocked_reason, sizeof r->blocked_reason,
             "rabbitmq: the server blocked the connection (%.*s): publishing "
             "paused until the alarm clears",
             (int)m->reason.len, (const char *)m->reason.bytes);
    if (!r->blocked)
        r->host->log(r->host, OBX_LOG_WARN, "%s", r->blocked_reason);
    r->blocked = true;
    if (r->n)
        r->call_blocked = true;
    rmq_gauges(r);
}

/* Wait up to ms for one frame and act on it. 1: a frame was handled; 0:
 * none came; -1: the connection is gone. */
static int rmq_serve(rmq_broker *r, int ms)
{
    if (!r->conn)
        return -1;
    amqp_frame_t f;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int rc = amqp_simple_wait_frame_noblock(r->conn, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return 0;
    if (rc != AMQP_STATUS_OK) {
        char why[OBX_ERRSTR_LEN];
        snprintf(why, sizeof why, "rabbitmq: %s", amqp_error_string2(rc));
        rmq_drop(r, why);
        return -1;
    }
    int ret = 1;
    if (f.frame_type == AMQP_FRAME_METHOD) {
        void *d = f.payload.method.decoded;
        rmq_chan *c = rmq_chan_by_id(r, f.channel);
        switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const amqp_basic_ack_t *a = d;
            if (c)
                rmq_window_answer(&c->win, a->delivery_tag, a->multiple, true,
                                  rmq_on_answer, r);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            const amqp_basic_nack_t *a = d;
            if (c)
                rmq_window_answer(&c->win, a->delivery_tag, a->multiple, false,
                                  rmq_on_answer, r);
            break;
        }
        case AMQP_BASIC_RETURN_METHOD:
            ret = rmq_on_return(r, f.channel, d);
            break;
        case AMQP_CHANNEL_CLOSE_METHOD:
            rmq_on_channel_close(r, f.channel, d);
            break;
        case AMQP_CONNECTION_CLOSE_METHOD:
            rmq_on_connection_close(r, d);
            ret = -1;
            break;
        case AMQP_CONNECTION_BLOCKED_METHOD: rmq_on_blocked(r, d); break;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            if (r->blocked)
                r->host->log(r->host, OBX_LOG_INFO,
                             "rabbitmq: the server unblocked the connection");
            r->blocked = false;
            rmq_gauges(r);
            break;
        default: break;
        }
    }
    if (r->conn)
        amqp_maybe_release_buffers(r->conn);
    return ret;
}

/* Handle every frame already waiting, without blocking. */
static void rmq_serve_ready(rmq_broker *r)
{
    while (r->conn && rmq_serve(r, 0) > 0)
        ;
}

/* ---- ops -------------------------------------------------------------- */

static obx_status rmq_check_config(const rmq_config *c, rmq_target *t,
                                   char *errstr, size_t errlen)
{
    obx_status st = rmq_target_parse(c, t, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (c->declare_exchange != RMQ_DECLARE_NONE &&
        (!c->exchange || !*c->exchange)) {
        snprintf(errstr, errlen,
                 "rabbitmq: broker.declare_exchange needs broker.exchange: "
                 "the default exchange cannot be declared");
        return OBX_CONFIG;
    }
    bool tls_opts = (c->tls_ca_file && *c->tls_ca_file) ||
                    (c->tls_cert_file && *c->tls_cert_file) ||
                    (c->tls_key_file && *c->tls_key_file);
    if (tls_opts && !t->tls) {
        snprintf(errstr, errlen,
                 "rabbitmq: broker.tls.* options need an amqps:// URL");
        return OBX_CONFIG;
    }
    return OBX_OK;
}

/* Parse and check the options; with connect, log in and log out again
 * (OBX_UNAVAILABLE with the reason when that fails). */
static obx_status rabbitmq_validate(const obx_host *host, const void *config,
                                    bool connect, char *errstr, size_t errlen)
{
    const rmq_config *c = config;
    rmq_target t;
    obx_status st = rmq_check_config(c, &t, errstr, errlen);
    if (st != OBX_OK || !connect)
        return st;
    char name[256];
    snprintf(name, sizeof name, "outbox-relay/%s check",
             host->pipeline ? host->pipeline : "");
    amqp_connection_state_t conn = NULL;
    st = rmq_conn_connect(c, &t, name, &conn, errstr, errlen);
    if (st == OBX_OK)
        rmq_disconnect(conn, true);
    return st;
}

static void rabbitmq_close(void *inst)
{
    rmq_broker *r = inst;
    if (!r)
        return;
    if (r->conn)
        rmq_disconnect(r->conn, true);
    for (size_t i = 0; i < r->n_ch; i++)
        rmq_window_free(&r->ch[i].win);
    free(r->ch);
    rmq_forget_declared(r);
    obc_keyset_free(&r->failed_keys);
    rmq_message_free(&r->msg);
    free(r->state);
    free(r);
}

/* The instance borrows host and config (both outlive it). A server that
 * cannot be reached at open does not fail it: publish() reports
 * OBX_UNAVAILABLE and the plugin reconnects. OBX_CONFIG for a bad URL or
 * unusable TLS files; OBX_NOMEM. */
static obx_status rabbitmq_open(const obx_host *host, const void *config,
                                void **inst, char *errstr, size_t errlen)
{
    rmq_broker *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    r->host = host;
    r->conf = config;
    obx_status st = rmq_check_config(r->conf, &r->target, errstr, errlen);
    if (st != OBX_OK) {
        free(r);
        return st;
    }
    rmq_target_show(&r->target, r->shown, sizeof r->shown);
    snprintf(r->conn_name, sizeof r->conn_name, "outbox-relay/%s",
             host->pipeline ? host->pipeline : "");
    r->max_message_size = r->conf->max_message_size;
    r->n_ch = (size_t)r->conf->channels;
    r->ch = calloc(r->n_ch, sizeof *r->ch);
    if (!r->ch) {
        free(r);
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    for (size_t i = 0; i < r->n_ch; i++) {
        r->ch[i].id = (amqp_channel_t)(i + 1);
        if (rmq_window_init(&r->ch[i].win, (size_t)r->conf->max_in_flight) !=
            0) {
            rabbitmq_close(r);
            snprintf(errstr, errlen, "out of memory");
            return OBX_NOMEM;
        }
    }
    r->ctl = (amqp_channel_t)(r->n_ch + 1);
    st = rmq_connect(r);
    if (st == OBX_CONFIG || st == OBX_NOMEM) {
        snprintf(errstr, errlen, "%s", r->down_reason);
        rabbitmq_close(r);
        return st;
    }
    *inst = r;
    return OBX_OK;
}

/* ---- publish ---------------------------------------------------------- */

static int rmq_begin(rmq_broker *r, obx_event *const *events, size_t n,
                     obx_result *results)
{
    if (n > r->cap) {
        unsigned char *s = realloc(r->state, n);
        if (!s)
            return -1;
        r->state = s;
        r->cap = n;
    }
    memset(r->state, RMQ_UNSENT, n);
    obc_keyset_clear(&r->failed_keys);
    r->events = events;
    r->results = results;
    r->n = n;
    r->inflight = r->confirmed = r->sent = r->answered_upto = 0;
    r->wide = false;
    r->wide_reason[0] = '\0';
    r->call_blocked = r->blocked;
    return 0;
}

static void rmq_end(rmq_broker *r)
{
    r->n = 0;
    r->events = NULL;
    r->results = NULL;
}

static obx_status rmq_fail_all(rmq_broker *r, obx_result *results, size_t n,
                               const char *why)
{
    for (size_t i = 0; i < n; i++)
        rmq_fill(&results[i], OBX_UNAVAILABLE, "%s", why);
    rmq_end(r);
    return OBX_UNAVAILABLE;
}

static bool rmq_stopped(const rmq_broker *r)
{
    return !r->conn || r->blocked || r->wide;
}

/* exchange.declare of name on the control channel (passive: does it
 * exist?). OBX_OK; OBX_UNAVAILABLE with err: the server refused (the
 * control channel is closed again, the connection stays) or the
 * connection failed (then dropped: r->conn is NULL). */
static obx_status rmq_declare(rmq_broker *r, const char *name, bool passive,
                              char *err, size_t len)
{
    if (!r->ctl_open) {
        if (rmq_channel_open(r->conn, r->ctl, err, len) != OBX_OK) {
            rmq_drop(r, err);
            return OBX_UNAVAILABLE;
        }
        r->ctl_open = true;
    }
    obx_status st = rmq_declare_exchange(
        r->conn, r->ctl, name, rmq_declare_values[r->conf->declare_exchange],
        passive, err, len);
    if (st == OBX_OK)
        return OBX_OK;
    amqp_rpc_reply_t rr = amqp_get_rpc_reply(r->conn);
    if (rr.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        rr.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        rmq_send_close_ok(r, r->ctl);
        r->ctl_open = false;
    } else {
        rmq_drop(r, err);
    }
    return OBX_UNAVAILABLE;
}

/* The exchange of ev: declared first when asked to and not yet done on
 * this connection. NULL with the event failed (too long) or the call
 * stopped (declaration refused). */
static const char *rmq_exchange(rmq_broker *r, size_t i)
{
    const obx_event *ev = r->events[i];
    const char *tpl = r->conf->exchange ? r->conf->exchange : "";
    const char *name = tpl;
    if (strchr(tpl, '$')) {
        size_t need =
            r->host->expand(r->host, tpl, ev, r->exch, sizeof r->exch);
        if (need > RMQ_NAME_MAX) {
            r->state[i] = RMQ_DONE;
            rmq_fill(&r->results[i], OBX_PERMANENT,
                     "rabbitmq: the exchange name from broker.exchange is "
                     "%zu bytes, AMQP allows 255",
                     need);
            rmq_key_failed(r, i);
            return NULL;
        }
        name = r->exch;
    }
    if (r->conf->declare_exchange == RMQ_DECLARE_NONE || !*name ||
        obc_keyset_has(&r->declared, name))
        return name;
    char err[OBX_ERRSTR_LEN];
    if (rmq_declare(r, name, false, err, sizeof err) != OBX_OK) {
        if (r->conn) {
            r->wide = true;
            snprintf(r->wide_reason, sizeof r->wide_reason, "%s", err);
            r->host->log(r->host, OBX_LOG_WARN, "%s", err);
        }
        return NULL;
    }
    char *dup = strdup(name);
    if (dup && obc_keyset_put(&r->declared, dup, dup) != 0)
        free(dup);
    return name;
}

/* Refuse ev before sending when the server would: PERMANENT. */
static bool rmq_refuse(rmq_broker *r, size_t i)
{
    const obx_event *ev = r->events[i];
    obx_result *res = &r->results[i];
    char err[OBX_ERRSTR_LEN];
    int rc = rmq_message_build(&r->msg, ev, r->conf->content_type,
                               r->conf->app_id, err, sizeof err);
    if (rc == 0 && strlen(ev->destination) > RMQ_NAME_MAX) {
        rc = -1;
        snprintf(err, sizeof err,
                 "rabbitmq: the routing key is %zu bytes, AMQP allows 255",
                 strlen(ev->destination));
    }
    if (rc == 0) {
        size_t hdr = rmq_message_header_size(&r->msg);
        if (rmq_classify_size(ev->payload_len, r->max_message_size, 0, 0) !=
            OBX_OK) {
            rc = -1;
            snprintf(err, sizeof err,
                     "rabbitmq: message of %zu bytes is larger than "
                     "max_message_size (%lld)",
                     ev->payload_len, (long long)r->max_message_size);
        } else if (rmq_classify_size(0, 0, hdr, r->frame_max) != OBX_OK) {
            rc = -1;
            snprintf(err, sizeof err,
                     "rabbitmq: properties and headers take %zu bytes, more "
                     "than one frame (frame_max %d)",
                     hdr, r->frame_max);
        }
    }
    if (rc == 0)
        return false;
    r->state[i] = RMQ_DONE;
    rmq_fill(res, rc == -2 ? OBX_RETRY : OBX_PERMANENT, "%s", err);
    rmq_key_failed(r, i);
    return true;
}

/* Serve frames until ch has room. False when the call must stop. */
static bool rmq_wait_room(rmq_broker *r, rmq_chan *c, int64_t deadline)
{
    while (!rmq_window_has_room(&c->win)) {
        if (rmq_stopped(r))
            return false;
        int ms = rmq_ms_left(r, deadline);
        if (ms == 0 || rmq_serve(r, ms) < 0)
            return false;
    }
    return true;
}

/* Send event i on its channel. False when the call must stop. */
static bool rmq_send(rmq_broker *r, size_t i, int64_t deadline)
{
    const obx_event *ev = r->events[i];
    const char *key = ev->key ? ev->key : ev->event_id;
    rmq_chan *c = &r->ch[rmq_hash(key) % r->n_ch];
    if (!rmq_wait_room(r, c, deadline) || rmq_stopped(r))
        return false;
    if (++r->sent % RMQ_POLL_EVERY == 0) {
        rmq_serve_ready(r);
        if (rmq_stopped(r))
            return false;
    }
    /* What was read while waiting may have failed an earlier event of
     * this key (a return, a nack): then this one waits for it. */
    if (ev->key && obc_keyset_has(&r->failed_keys, ev->key)) {
        r->state[i] = RMQ_HELD;
        rmq_fill(&r->results[i], OBX_RETRY, "not attempted");
        return true;
    }
    /* ... or closed this channel (an oversize message): reopen it. */
    if (!c->open) {
        char err[OBX_ERRSTR_LEN];
        if (rmq_channel_open(r->conn, c->id, err, sizeof err) != OBX_OK) {
            rmq_drop(r, err);
            return false;
        }
        c->open = true;
        rmq_window_reset(&c->win);
    }
    const char *exch = rmq_exchange(r, i);
    if (!exch)
        return !rmq_stopped(r);
    if (rmq_refuse(r, i))
        return true;
    amqp_bytes_t body = {ev->payload_len, (void *)ev->payload};
    /* rmq_refuse built r->msg for this event. */
    int rc =
        amqp_basic_publish(r->conn, c->id, amqp_cstring_bytes(exch),
                           amqp_cstring_bytes(ev->destination),
                           r->conf->mandatory ? 1 : 0, 0, &r->msg.props, body);
    if (rc != AMQP_STATUS_OK) {
        char why[OBX_ERRSTR_LEN];
        snprintf(why, sizeof why, "rabbitmq: publishing failed: %s",
                 amqp_error_string2(rc));
        /* Perhaps partly on the wire: the connection cannot be trusted. */
        r->state[i] = RMQ_INFLIGHT;
        r->inflight++;
        rmq_window_push(&c->win, (uint32_t)i);
        rmq_drop(r, why);
        return false;
    }
    r->state[i] = RMQ_INFLIGHT;
    r->inflight++;
    rmq_window_push(&c->win, (uint32_t)i);
    return true;
}

static void rmq_send_all(rmq_broker *r, int64_t deadline)
{
    for (size_t i = 0; i < r->n && !rmq_stopped(r); i++) {
        const obx_event *ev = r->events[i];
        if (ev->key && obc_keyset_has(&r->failed_keys, ev->key)) {
            r->state[i] = RMQ_HELD;
            rmq_fill(&r->results[i], OBX_RETRY, "not attempted");
            continue;
        }
        if (!ev->destination || !*ev->destination) {
            /* The engine refuses these first; never trust it blindly. */
            r->state[i] = RMQ_DONE;
            rmq_fill(&r->results[i], OBX_PERMANENT,
                     "rabbitmq: no routing key (empty destination)");
            rmq_key_failed(r, i);
            continue;
        }
        if (rmq_ms_left(r, deadline) == 0 || !rmq_send(r, i, deadline))
            return;
    }
}

/* Serve frames until every sent message is answered, the deadline, or
 * the connection is lost; while blocked, only for a short grace. */
static void rmq_wait_all(rmq_broker *r, int64_t deadline)
{
    int64_t blocked_until = 0;
    while (r->inflight > 0 && r->conn) {
        if (r->blocked) {
            if (!blocked_until)
                blocked_until = rmq_now(r) + RMQ_BLOCKED_GRACE_MS * 1000;
            if (rmq_now(r) > blocked_until)
                return;
        }
        int ms = rmq_ms_left(r, deadline);
        if (ms == 0 || rmq_serve(r, ms) < 0)
            return;
    }
}

/* Results for the events without one, then the verdict. */
static obx_status rmq_finish(rmq_broker *r, int timeout_ms)
{
    /* Whatever stopped the call, even if it is over by now (unblocked
     * while we waited): the broker's fault, not the events'. */
    const char *why = !r->conn          ? r->down_reason
                      : r->call_blocked ? r->blocked_reason
                      : r->wide         ? r->wide_reason
                                        : NULL;
    bool unconfirmed = false;
    /* An unsent event waited for room in a window the server no longer
     * emptied: its own fault only when a message stuck alone (passed by
     * later ones) held the window, as the classification says. */
    bool stuck_alone = false;
    for (size_t i = 0; i < r->n; i++)
        if (r->state[i] == RMQ_INFLIGHT && r->answered_upto > i + 1)
            stuck_alone = true;
    for (size_t i = 0; i < r->n; i++) {
        obx_result *res = &r->results[i];
        if (r->state[i] == RMQ_UNSENT && why) {
            rmq_fill(res, OBX_UNAVAILABLE, "%s (not sent)", why);
        } else if (r->state[i] == RMQ_UNSENT) {
            rmq_fill(res, rmq_classify_timeout(stuck_alone),
                     "rabbitmq: timed out after %d ms before it was sent "
                     "(%s)",
                     timeout_ms,
                     stuck_alone ? "behind a message the server did not "
                                   "confirm"
                                 : "the server stopped confirming");
        } else if (r->state[i] == RMQ_INFLIGHT) {
            unconfirmed = true;
            bool passed = r->answered_upto > i + 1;
            obx_status st =
                why ? OBX_UNAVAILABLE : rmq_classify_timeout(passed);
            if (why)
                rmq_fill(res, st,
                         "%s (sent, unconfirmed: it may still be delivered)",
                         why);
            else
                rmq_fill(res, st,
                         "rabbitmq: no confirm within %d ms (%zu of the call "
                         "confirmed, %s; it may still be delivered)",
                         timeout_ms, r->confirmed,
                         passed ? "some sent after it"
                                : "none sent after it: the server stopped "
                                  "answering");
        }
    }
    if (unconfirmed && r->conn) {
        /* Their acks would arrive during the next call: start afresh. */
        char msg[OBX_ERRSTR_LEN];
        snprintf(msg, sizeof msg,
                 "rabbitmq: %zu message(s) unconfirmed when the publish call "
                 "ended; reconnecting so no late confirm is taken for a new "
                 "message",
                 r->inflight);
        r->inflight = 0; /* their results are filled already */
        for (size_t i = 0; i < r->n; i++)
            if (r->state[i] == RMQ_INFLIGHT)
                r->state[i] = RMQ_DONE;
        rmq_drop(r, msg);
    }
    size_t unavailable = 0, own = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->state[i] == RMQ_HELD)
            continue;
        if (r->results[i].status == OBX_UNAVAILABLE)
            unavailable++;
        else
            own++;
    }
    rmq_end(r);
    return unavailable > 0 && own == 0 ? OBX_UNAVAILABLE : OBX_OK;
}

/* See broker.h. OBX_OK once the server confirmed (basic.ack); PERMANENT
 * for a returned (unroutable) or oversize message; RETRY for a nack, a
 * confirm timeout while messages sent after it were answered, and "not
 * attempted" for
 * later events of a key that failed here; UNAVAILABLE for everything the
 * connection or configuration is to blame for (see rabbitmq_errors.c).
 * Returns OBX_UNAVAILABLE when no event has a result of its own. */
static obx_status rabbitmq_publish(void *inst, obx_event *const *events,
                                   size_t n, obx_result *results,
                                   int timeout_ms)
{
    rmq_broker *r = inst;
    int64_t deadline = rmq_now(r) + (int64_t)timeout_ms * 1000;
    if (rmq_begin(r, events, n, results) != 0)
        return rmq_fail_all(r, results, n, "rabbitmq: out of memory");
    r->between_calls = true;
    rmq_serve_ready(r); /* blocked, closes: what happened since last time */
    r->between_calls = false;
    if (!rmq_ensure(r, false))
        return rmq_fail_all(r, results, n,
                            r->down_reason[0] ? r->down_reason
                                              : "rabbitmq: not connected");
    if (r->blocked)
        return rmq_fail_all(r, results, n, r->blocked_reason);
    rmq_send_all(r, deadline);
    rmq_wait_all(r, deadline);
    return rmq_finish(r, timeout_ms);
}

/* Nothing is ever outstanding between calls (see the top): OBX_OK when
 * connected, else OBX_UNAVAILABLE. */
static obx_status rabbitmq_flush(void *inst, int timeout_ms)
{
    (void)timeout_ms;
    rmq_broker *r = inst;
    rmq_serve_ready(r);
    return r->conn ? OBX_OK : OBX_UNAVAILABLE;
}

/* For the circuit breaker: connect when down (this is the reconnect the
 * engine paces), read what the server sent; OBX_UNAVAILABLE while down,
 * while the server blocks the connection (memory or disk alarm), and
 * while an exchange the server reported missing is still missing (a
 * passive exchange.declare). */
static obx_status rabbitmq_health(void *inst, char *errstr, size_t errlen)
{
    rmq_broker *r = inst;
    rmq_serve_ready(r);
    if (!rmq_ensure(r, true)) {
        snprintf(errstr, errlen, "%s", r->down_reason);
        return OBX_UNAVAILABLE;
    }
    rmq_serve_ready(r);
    if (r->blocked) {
        snprintf(errstr, errlen, "%s", r->blocked_reason);
        return OBX_UNAVAILABLE;
    }
    if (r->missing_exchange[0]) {
        char err[OBX_ERRSTR_LEN];
        if (rmq_declare(r, r->missing_exchange, true, err, sizeof err) !=
            OBX_OK) {
            snprintf(errstr, errlen, "%s",
                     r->conn ? r->missing_reason : r->down_reason);
            return OBX_UNAVAILABLE;
        }
        r->host->log(r->host, OBX_LOG_INFO,
                     "rabbitmq: exchange '%s' exists now", r->missing_exchange);
        r->missing_exchange[0] = '\0';
    }
    return OBX_OK;
}

static const obx_broker_ops rabbitmq_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .validate = rabbitmq_validate,
    .open = rabbitmq_open,
    .close = rabbitmq_close,
    .publish = rabbitmq_publish,
    .flush = rabbitmq_flush,
    .health = rabbitmq_health,
};

OBX_BROKER_PLUGIN("rabbitmq",
                  "RabbitMQ (AMQP 0-9-1) via librabbitmq-c, with pipelined "
                  "publisher confirms and mandatory returns",
                  "1.0.0", rabbitmq_options, rmq_config, rabbitmq_ops)
