/* The rabbitmq broker plugin, loaded with dlopen as the core loads it,
 * against the real RabbitMQ of the ctest fixture `rabbitmq`
 * (rmq_start.sh: max_message_size 1 MiB). Each test uses queues and
 * exchanges of its own and reads them back with a librabbitmq consumer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rabbitmq_config.h"
#include "rmq_testlib.h"
#include "support.h"
#include "tcp_proxy.h"

typedef struct fixture {
    const obx_plugin *plugin;
    const obx_broker_ops *ops;
    char queue[64];
    char url[512];
    rmq_config conf;
    void *inst;
} fixture;

/* n events numbered from..from+n over `keys` keys, to `dest`, payload
 * {"seq":i} padded to pad bytes, one user header. */
typedef struct batch {
    size_t n;
    obx_event *ev;
    obx_event **ptrs;
    obx_result *res;
    obx_header *hdr;
    char (*id)[40];
    char (*key)[32];
    char (*trace)[32];
    char **payload;
} batch;

static int tests_run;

static void default_conf(rmq_config *c, const char *url)
{
    memset(c, 0, sizeof *c);
    c->url = (char *)url;
    c->password = "";
    c->exchange = "";
    c->declare_exchange = RMQ_DECLARE_NONE;
    c->channels = 2;
    c->max_in_flight = 1000;
    c->mandatory = true;
    c->content_type = "";
    c->app_id = "outbox-relay";
    c->heartbeat_ms = 30000;
    c->frame_max = 131072;
    c->max_message_size = 128 * 1024 * 1024;
    c->connect_timeout_ms = 5000;
    c->reconnect_backoff.min_ms = 100;
    c->reconnect_backoff.max_ms = 1000;
    c->tls_ca_file = c->tls_cert_file = c->tls_key_file = "";
    c->tls_verify_peer = c->tls_verify_hostname = true;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->plugin = obx_test_plugin("broker", "rabbitmq");
    f->ops = f->plugin->ops;
    snprintf(f->url, sizeof f->url, "%s", rmqt_url());
    snprintf(f->queue, sizeof f->queue, "obx-broker-q%d", ++tests_run);
    rmqt_queue(f->url, f->queue);
    default_conf(&f->conf, f->url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->inst)
        f->ops->close(f->inst);
    free(f);
    return 0;
}

static void open_inst(fixture *f)
{
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st =
        f->ops->open(obx_test_host(), &f->conf, &f->inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
}

static batch *batch_new(size_t n, int from, int keys, const char *dest,
                        size_t pad)
{
    batch *b = calloc(1, sizeof *b);
    b->n = n;
    b->ev = calloc(n, sizeof *b->ev);
    b->ptrs = calloc(n, sizeof *b->ptrs);
    b->res = calloc(n, sizeof *b->res);
    b->hdr = calloc(n, sizeof *b->hdr);
    b->id = calloc(n, sizeof *b->id);
    b->key = calloc(n, sizeof *b->key);
    b->trace = calloc(n, sizeof *b->trace);
    b->payload = calloc(n, sizeof *b->payload);
    for (size_t i = 0; i < n; i++) {
        int seq = from + (int)i;
        snprintf(b->id[i], sizeof b->id[i], "ev-%d-%d", tests_run, seq);
        snprintf(b->key[i], sizeof b->key[i], "k%d", seq % keys);
        snprintf(b->trace[i], sizeof b->trace[i], "t-%d", seq);
        b->payload[i] = malloc(pad + 32);
        int len =
            snprintf(b->payload[i], pad + 32, "{\"seq\":%d,\"p\":\"", seq);
        while ((size_t)len < pad)
            b->payload[i][len++] = 'x';
        strcpy(b->payload[i] + len, "\"}");
        b->hdr[i].name = "trace-id";
        b->hdr[i].value = b->trace[i];
        obx_event *e = &b->ev[i];
        e->event_id = b->id[i];
        e->key = b->key[i];
        e->event_type = "OrderCreated";
        e->aggregate_type = "order";
        e->aggregate_id = b->key[i];
        e->payload = b->payload[i];
        e->payload_len = strlen(b->payload[i]);
        e->headers = &b->hdr[i];
        e->n_headers = 1;
        e->created_at_us = 1700000000123456LL + seq;
        e->destination = dest;
        b->ptrs[i] = e;
    }
    return b;
}

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->payload[i]);
    free(b->ev);
    free(b->ptrs);
    free(b->res);
    free(b->hdr);
    free(b->id);
    free(b->key);
    free(b->trace);
    free(b->payload);
    free(b);
}

static obx_status publish(fixture *f, batch *b, int timeout_ms)
{
    return f->ops->publish(f->inst, b->ptrs, b->n, b->res, timeout_ms);
}

static void assert_all_ok(const batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->res[i].status != OBX_OK)
            fail_msg("event %zu: %s: %s", i, obx_status_name(b->res[i].status),
                     b->res[i].errstr);
}

/* Every event of b exactly once in queue, with its properties. */
static void assert_delivered(fixture *f, const batch *b, const char *queue)
{
    rmqt_msgs m = rmqt_consume(f->url, queue, b->n, 300, 30000);
    int *seen = calloc(b->n, sizeof *seen);
    for (size_t i = 0; i < m.n; i++) {
        const rmqt_msg *x = &m.items[i];
        size_t j = 0;
        while (j < b->n && strcmp(b->id[j], x->message_id) != 0)
            j++;
        if (j == b->n)
            fail_msg("unexpected message %s", x->message_id);
        seen[j]++;
        const obx_event *e = &b->ev[j];
        assert_string_equal(x->type, "OrderCreated");
        assert_string_equal(x->app_id, "outbox-relay");
        assert_int_equal(x->delivery_mode, 2);
        assert_int_equal(x->timestamp, (uint64_t)(e->created_at_us / 1000000));
        assert_string_equal(x->routing_key, e->destination);
        assert_int_equal(x->body_len, e->payload_len);
        assert_memory_equal(x->body, e->payload, e->payload_len);
        assert_string_equal(rmqt_header_value(x, "outbox-event-id"), b->id[j]);
        assert_string_equal(rmqt_header_value(x, "outbox-event-type"),
                            "OrderCreated");
        assert_string_equal(rmqt_header_value(x, "outbox-aggregate-type"),
                            "order");
        assert_string_equal(rmqt_header_value(x, "outbox-aggregate-id"),
                            b->key[j]);
        assert_string_equal(rmqt_header_value(x, "trace-id"), b->trace[j]);
    }
    for (size_t j = 0; j < b->n; j++)
        if (seen[j] != 1)
            fail_msg("event %zu (%s) read %d times", j, b->id[j], seen[j]);
    assert_int_equal(m.n, b->n);
    rmqt_assert_key_order(&m);
    free(seen);
    rmqt_msgs_free(&m);
}

static void test_publish_every_event_once_with_properties(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch *b = batch_new(3000, 0, 37, f->queue, 100);
    /* one payload that is not JSON */
    strcpy(b->payload[7], "\"seq\":7, not json");
    b->ev[7].payload_len = strlen(b->payload[7]);
    assert_int_equal(publish(f, b, 20000), OBX_OK);
    assert_all_ok(b);
    assert_delivered(f, b, f->queue);
    rmqt_msgs m = rmqt_consume(f->url, f->queue, 0, 100, 1000);
    assert_int_equal(m.n, 0); /* consumed above: nothing twice */
    rmqt_msgs_free(&m);
    batch_free(b);
}

/* The message with message_id id (two channels: no order across keys). */
static const rmqt_msg *by_id(const rmqt_msgs *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].message_id && strcmp(m->items[i].message_id, id) == 0)
            return &m->items[i];
    fail_msg("no message %s", id);
    return NULL;
}

static void test_content_type_by_payload_or_option(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch *b = batch_new(2, 0, 2, f->queue, 0);
    b->ev[1].payload = "\x01\x02";
    b->ev[1].payload_len = 2;
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    rmqt_msgs m = rmqt_consume(f->url, f->queue, 2, 200, 10000);
    assert_int_equal(m.n, 2);
    assert_string_equal(by_id(&m, b->id[0])->content_type, "application/json");
    assert_string_equal(by_id(&m, b->id[1])->content_type,
                        "application/octet-stream");
    rmqt_msgs_free(&m);
    f->ops->close(f->inst);
    f->inst = NULL;
    f->conf.content_type = "application/vnd.order+json";
    open_inst(f);
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    m = rmqt_consume(f->url, f->queue, 2, 200, 10000);
    assert_int_equal(m.n, 2);
    assert_string_equal(by_id(&m, b->id[1])->content_type,
                        "application/vnd.order+json");
    rmqt_msgs_free(&m);
    batch_free(b);
}

/* No queue for the routing key: PERMANENT with the server's reason, the
 * others flow. With a window of 1 each message waits for the previous
 * confirm, so the return is seen before the next event of the key would
 * be sent: that one is held back, "not attempted". */
static void test_unroutable_is_permanent_and_holds_its_key(void **state)
{
    fixture *f = *state;
    f->conf.max_in_flight = 1;
    f->conf.channels = 1;
    open_inst(f);
    batch *b = batch_new(6, 0, 3, f->queue, 0);
    b->ev[1].destination = "obx-no-such-queue"; /* key k1 */
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_int_equal(b->res[1].status, OBX_PERMANENT);
    if (!strstr(b->res[1].errstr, "312 NO_ROUTE") ||
        !strstr(b->res[1].errstr, "obx-no-such-queue"))
        fail_msg("errstr: %s", b->res[1].errstr);
    assert_int_equal(b->res[4].status, OBX_RETRY); /* k1 again */
    assert_string_equal(b->res[4].errstr, "not attempted");
    for (size_t i = 0; i < 6; i++)
        if (i != 1 && i != 4)
            assert_int_equal(b->res[i].status, OBX_OK);
    rmqt_msgs m = rmqt_consume(f->url, f->queue, 4, 300, 10000);
    assert_int_equal(m.n, 4);
    rmqt_msgs_free(&m);
    batch_free(b);
}

/* Many returns in a wide window, matched by message_id among hundreds of
 * messages in flight on several channels. */
static void test_unroutable_matched_in_a_full_window(void **state)
{
    fixture *f = *state;
    f->conf.channels = 3;
    open_inst(f);
    batch *b = batch_new(1000, 0, 1000, f->queue, 0); /* a key each */
    for (size_t i = 0; i < b->n; i += 7)
        b->ev[i].destination = "obx-no-such-queue";
    assert_int_equal(publish(f, b, 20000), OBX_OK);
    size_t ok = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (i % 7 == 0) {
            if (b->res[i].status != OBX_PERMANENT)
                fail_msg("event %zu: %s %s", i,
                         obx_status_name(b->res[i].status), b->res[i].errstr);
        } else {
            assert_int_equal(b->res[i].status, OBX_OK);
            ok++;
        }
    }
    rmqt_msgs m = rmqt_consume(f->url, f->queue, ok, 300, 20000);
    assert_int_equal(m.n, ok);
    for (size_t i = 0; i < m.n; i++)
        assert_true(rmqt_seq(&m.items[i]) % 7 != 0);
    rmqt_msgs_free(&m);
    batch_free(b);
}

/* A missing exchange is configuration: UNAVAILABLE for the call, naming
 * the exchange; once it exists the same events go through. */
static void test_missing_exchange_unavailable_then_ok(void **state)
{
    fixture *f = *state;
    char exch[64];
    snprintf(exch, sizeof exch, "obx-missing-%d", tests_run);
    f->conf.exchange = exch;
    open_inst(f);
    batch *b = batch_new(50, 0, 5, "orders", 0);
    assert_int_equal(publish(f, b, 10000), OBX_UNAVAILABLE);
    if (!strstr(b->res[0].errstr, exch) || !strstr(b->res[0].errstr, "404"))
        fail_msg("errstr: %s", b->res[0].errstr);
    char err[OBX_ERRSTR_LEN] = "";
    /* health (the circuit's probe) keeps saying so until it exists */
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_UNAVAILABLE);
    assert_non_null(strstr(err, exch));
    rmqt_bind(f->url, f->queue, exch, "direct", "orders");
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_OK);
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    assert_delivered(f, b, f->queue);
    rmqt_exchange_delete(f->url, exch);
    batch_free(b);
}

/* broker.exchange as a template, declared by the plugin. */
static void test_declared_templated_exchange(void **state)
{
    fixture *f = *state;
    char want[64];
    snprintf(want, sizeof want, "obx-decl-%d.order", tests_run);
    char tpl[64];
    snprintf(tpl, sizeof tpl, "obx-decl-%d.${aggregate_type}", tests_run);
    f->conf.exchange = tpl;
    f->conf.declare_exchange = RMQ_DECLARE_TOPIC;
    open_inst(f);
    batch *b = batch_new(20, 0, 4, "orders.created", 0);
    /* declared now, but nothing bound: returned (all of them were sent
     * before the first return came back) */
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    for (size_t i = 0; i < b->n; i++)
        assert_int_equal(b->res[i].status, OBX_PERMANENT);
    rmqt_bind(f->url, f->queue, want, "topic", "orders.#");
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    assert_delivered(f, b, f->queue);
    rmqt_exchange_delete(f->url, want);
    batch_free(b);
}

/* Larger than broker.max_message_size: refused before sending. Larger
 * than the server's (1 MiB in the fixture) with the option left high:
 * the server closes the channel, the culprit is PERMANENT, and the limit
 * is learned for the next time. */
static void test_oversize_is_permanent(void **state)
{
    fixture *f = *state;
    f->conf.max_message_size = 5000;
    f->conf.channels = 1;
    open_inst(f);
    batch *b = batch_new(4, 0, 4, f->queue, 0);
    char *big = calloc(1, 1200 * 1024 + 1);
    memset(big, 'x', 1200 * 1024);
    b->ev[2].payload = big;
    b->ev[2].payload_len = 6000;
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_int_equal(b->res[2].status, OBX_PERMANENT);
    assert_non_null(strstr(b->res[2].errstr, "max_message_size"));
    assert_int_equal(b->res[0].status, OBX_OK);
    assert_int_equal(b->res[3].status, OBX_OK);
    f->ops->close(f->inst);
    f->inst = NULL;

    f->conf.max_message_size = 128 * 1024 * 1024;
    open_inst(f);
    b->ev[2].payload_len = 1200 * 1024;
    obx_status st = publish(f, b, 10000);
    assert_int_equal(st, OBX_OK);
    assert_int_equal(b->res[2].status, OBX_PERMANENT);
    if (!strstr(b->res[2].errstr, "1048576"))
        fail_msg("errstr: %s", b->res[2].errstr);
    for (size_t i = 0; i < 4; i++)
        if (i != 2 && b->res[i].status != OBX_OK &&
            b->res[i].status != OBX_UNAVAILABLE)
            fail_msg("event %zu: %s", i, b->res[i].errstr);
    /* learned: refused without sending, the others all go through */
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_int_equal(b->res[2].status, OBX_PERMANENT);
    assert_non_null(strstr(b->res[2].errstr, "larger than max_message_size"));
    for (size_t i = 0; i < 4; i++)
        if (i != 2)
            assert_int_equal(b->res[i].status, OBX_OK);
    free(big);
    batch_free(b);
}

/* The server closes the channel at an oversize message, dropping what
 * was sent after it before the close was read; the call goes on on a new
 * channel. Per key, nothing lands after an event that did not: the later
 * events of a lost one's key are held back. */
static void test_channel_closed_keeps_key_order(void **state)
{
    fixture *f = *state;
    f->conf.channels = 1;
    open_inst(f);
    batch *b = batch_new(400, 0, 4, f->queue, 0);
    char *big = calloc(1, 1200 * 1024 + 1);
    memset(big, 'x', 1200 * 1024);
    b->ev[2].payload = big;
    b->ev[2].payload_len = 1200 * 1024;
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_int_equal(b->res[2].status, OBX_PERMANENT);
    size_t lost = 0;
    bool failed[4] = {false};
    for (size_t i = 0; i < b->n; i++) {
        obx_status st = b->res[i].status;
        lost += st == OBX_UNAVAILABLE;
        if (st == OBX_OK && failed[i % 4])
            fail_msg("event %zu (key k%zu) confirmed after an earlier event "
                     "of its key failed",
                     i, i % 4);
        if (st != OBX_OK)
            failed[i % 4] = true;
    }
    assert_true(lost > 0); /* sent after the culprit, before the close */
    free(big);
    batch_free(b);
}

static void test_headers_larger_than_a_frame_are_permanent(void **state)
{
    fixture *f = *state;
    f->conf.frame_max = 4096;
    open_inst(f);
    batch *b = batch_new(3, 0, 3, f->queue, 0);
    char *big = calloc(1, 5001);
    memset(big, 'h', 5000);
    b->hdr[1].value = big;
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_int_equal(b->res[1].status, OBX_PERMANENT);
    assert_non_null(strstr(b->res[1].errstr, "frame_max"));
    assert_int_equal(b->res[0].status, OBX_OK);
    assert_int_equal(b->res[2].status, OBX_OK);
    free(big);
    batch_free(b);
}

/* Nobody listens: open still succeeds, publish and health report
 * UNAVAILABLE with the reason. */
static void test_refused_is_unavailable(void **state)
{
    fixture *f = *state;
    f->conf.url = "amqp://obx:pw@127.0.0.1:1/";
    open_inst(f);
    batch *b = batch_new(3, 0, 3, f->queue, 0);
    assert_int_equal(publish(f, b, 2000), OBX_UNAVAILABLE);
    assert_non_null(strstr(b->res[0].errstr, "cannot connect"));
    char err[OBX_ERRSTR_LEN] = "";
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    batch_free(b);
}

/* The link dies in the middle of a call (tcp_proxy lets so many bytes
 * through, then forwards nothing and closes nothing): the first messages
 * are confirmed, the rest never reach the server. The rest are
 * UNAVAILABLE, an outage that counts no attempt, not RETRY as if each of
 * them alone were slow: nothing sent after them was answered. */
static void test_link_dead_mid_call_is_unavailable(void **state)
{
    fixture *f = *state;
    const char *at = strrchr(f->url, '@');
    const char *colon = at ? strchr(at, ':') : NULL;
    assert_non_null(colon);
    tp_proxy *p = tp_start("127.0.0.1", atoi(colon + 1));
    char url[600];
    snprintf(url, sizeof url, "%.*s%d/", (int)(colon + 1 - f->url), f->url,
             tp_port(p));
    f->conf.url = url;
    f->conf.channels = 1;
    /* sending waits for confirms to make room: some come back before the
     * link dies (a burst would die with all its confirms) */
    f->conf.max_in_flight = 5;
    open_inst(f);
    /* two of the same size as those below: the second one measures what
     * one message costs on the wire */
    batch *w = batch_new(1, 900, 1, f->queue, 200);
    assert_int_equal(publish(f, w, 5000), OBX_OK);
    assert_all_ok(w);
    batch_free(w);
    w = batch_new(1, 901, 1, f->queue, 200);
    long before = tp_bytes_up(p);
    assert_int_equal(publish(f, w, 5000), OBX_OK);
    assert_all_ok(w);
    long one = tp_bytes_up(p) - before;
    batch_free(w);
    assert_true(one > 200);

    batch *b = batch_new(40, 100, 40, f->queue, 200);
    tp_stall_after(p, one * 20 + one / 2);
    publish(f, b, 2000);
    size_t ok = 0, unavailable = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->res[i].status == OBX_OK)
            ok++;
        else if (b->res[i].status == OBX_UNAVAILABLE)
            unavailable++;
        else
            fail_msg("event %zu: %s: %s", i, obx_status_name(b->res[i].status),
                     b->res[i].errstr);
    }
    /* the death really was mid-call */
    if (ok < 5 || ok > 20)
        fail_msg("%zu of %zu confirmed with %ld bytes a message (last: %s)", ok,
                 b->n, one, b->res[b->n - 1].errstr);
    assert_int_equal(ok + unavailable, b->n);
    batch_free(b);
    f->ops->close(f->inst);
    f->inst = NULL;
    tp_stop(p);
}

static void test_bad_password_and_vhost_are_unavailable(void **state)
{
    fixture *f = *state;
    char url[600];
    const char *pw = rmqt_password(f->url);
    /* the right user, a wrong password given by broker.password */
    snprintf(url, sizeof url, "%s", f->url);
    f->conf.url = url;
    f->conf.password = "Wr0ng-Secret-Pw";
    open_inst(f);
    batch *b = batch_new(2, 0, 2, f->queue, 0);
    assert_int_equal(publish(f, b, 5000), OBX_UNAVAILABLE);
    if (!strstr(b->res[0].errstr, "ACCESS_REFUSED") &&
        !strstr(b->res[0].errstr, "login"))
        fail_msg("errstr: %s", b->res[0].errstr);
    assert_null(strstr(b->res[0].errstr, "Wr0ng-Secret-Pw"));
    assert_null(strstr(b->res[0].errstr, pw));
    f->ops->close(f->inst);
    f->inst = NULL;

    f->conf.password = "";
    char *slash = strrchr(url, '/');
    strcpy(slash, "/no-such-vhost");
    open_inst(f);
    assert_int_equal(publish(f, b, 5000), OBX_UNAVAILABLE);
    if (!strstr(b->res[0].errstr, "no-such-vhost"))
        fail_msg("errstr: %s", b->res[0].errstr);
    assert_null(strstr(b->res[0].errstr, pw));
    batch_free(b);
}

static void test_validate(void **state)
{
    fixture *f = *state;
    char err[OBX_ERRSTR_LEN] = "";
    const obx_host *h = obx_test_host();
    assert_int_equal(f->ops->validate(h, &f->conf, true, err, sizeof err),
                     OBX_OK);
    f->conf.url = "http://localhost/";
    assert_int_equal(f->ops->validate(h, &f->conf, false, err, sizeof err),
                     OBX_CONFIG);
    f->conf.url = f->url;
    f->conf.tls_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    assert_int_equal(f->ops->validate(h, &f->conf, false, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "amqps"));
    f->conf.tls_ca_file = "";
    f->conf.declare_exchange = RMQ_DECLARE_TOPIC;
    assert_int_equal(f->ops->validate(h, &f->conf, false, err, sizeof err),
                     OBX_CONFIG);
    f->conf.declare_exchange = RMQ_DECLARE_NONE;
    f->conf.url = "amqps://obx:pw@127.0.0.1:1/";
    f->conf.tls_ca_file = "/nonexistent/ca.pem";
    assert_int_equal(f->ops->validate(h, &f->conf, true, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "ca_file"));
    assert_null(strstr(err, "pw@"));
}

/* A value of the fixture's rmq_tls file (TLS_URL, CA, ...). Static. */
static const char *tls_value(const char *name)
{
    static char vals[8][1024];
    static int next;
    FILE *fp = fopen(RMQT_STATE_DIR "/rmq_tls", "r");
    if (!fp)
        fail_msg("no %s/rmq_tls: the fixture did not set up TLS",
                 RMQT_STATE_DIR);
    char line[1200];
    char *out = vals[next++ % 8];
    out[0] = '\0';
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        size_t n = strlen(name);
        if (strncmp(line, name, n) == 0 && line[n] == '=')
            snprintf(out, 1024, "%s", line + n + 1);
    }
    fclose(fp);
    if (!out[0])
        fail_msg("rmq_tls has no %s", name);
    return out;
}

/* amqps:// to the fixture's TLS listener: the server certificate checked
 * against the CA and the host name (it names localhost only), a client
 * certificate presented; a wrong CA or host fails as UNAVAILABLE. */
static void test_tls(void **state)
{
    fixture *f = *state;
    f->conf.url = (char *)tls_value("TLS_URL");
    f->conf.tls_ca_file = (char *)tls_value("CA");
    f->conf.tls_cert_file = (char *)tls_value("CLIENT_CERT");
    f->conf.tls_key_file = (char *)tls_value("CLIENT_KEY");
    open_inst(f);
    batch *b = batch_new(200, 0, 10, f->queue, 50);
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    assert_delivered(f, b, f->queue);
    f->ops->close(f->inst);
    f->inst = NULL;

    /* not signed by this CA */
    f->conf.tls_ca_file = (char *)tls_value("OTHER_CA");
    open_inst(f);
    assert_int_equal(publish(f, b, 5000), OBX_UNAVAILABLE);
    if (!strstr(b->res[0].errstr, "SSL"))
        fail_msg("errstr: %s", b->res[0].errstr);
    f->ops->close(f->inst);
    f->inst = NULL;
    /* ... which is accepted when told not to verify */
    f->conf.tls_verify_peer = false;
    f->conf.tls_verify_hostname = false;
    open_inst(f);
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    f->ops->close(f->inst);
    f->inst = NULL;

    /* the right CA, but the certificate does not name 127.0.0.1 */
    f->conf.tls_ca_file = (char *)tls_value("CA");
    f->conf.tls_verify_peer = true;
    f->conf.tls_verify_hostname = true;
    f->conf.url = (char *)tls_value("TLS_URL_IP");
    open_inst(f);
    assert_int_equal(publish(f, b, 5000), OBX_UNAVAILABLE);
    if (!strstr(b->res[0].errstr, "SSL"))
        fail_msg("errstr: %s", b->res[0].errstr);
    f->ops->close(f->inst);
    f->inst = NULL;
    f->conf.tls_verify_hostname = false;
    open_inst(f);
    assert_int_equal(publish(f, b, 10000), OBX_OK);
    assert_all_ok(b);
    rmqt_msgs m = rmqt_consume(f->url, f->queue, 400, 300, 10000);
    assert_int_equal(m.n, 400);
    rmqt_msgs_free(&m);
    batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_publish_every_event_once_with_properties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_type_by_payload_or_option,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_unroutable_is_permanent_and_holds_its_key, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_unroutable_matched_in_a_full_window, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_missing_exchange_unavailable_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declared_templated_exchange, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_channel_closed_keeps_key_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_is_permanent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_headers_larger_than_a_frame_are_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_dead_mid_call_is_unavailable,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_is_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_password_and_vhost_are_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
