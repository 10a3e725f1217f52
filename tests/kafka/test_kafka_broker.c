/* The kafka broker plugin, loaded with dlopen as the core loads it, against
 * librdkafka's mock cluster in this process (rdkafka_mock.h: not an Apache
 * Kafka broker). Faults come from the mock's API; the plugin knows nothing
 * about the mock. Every test reads the topic back with a consumer. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kafka_config.h"
#include "kafka_testlib.h"
#include "support.h"

#define PARTITIONS 4

/* One mock cluster for the whole group (destroying one that has topics
 * takes librdkafka a second); each test writes its own topic and puts
 * back what it changed. */
typedef struct cluster {
    kt_mock mock;
    int tests;
} cluster;

typedef struct fixture {
    const obx_plugin *plugin;
    const obx_broker_ops *ops;
    cluster *cl;
    kt_mock mock; /* a copy of cl->mock */
    char topic[64];
    bool rtt_set; /* the test slowed a broker down */
    bool faults;  /* the test took brokers down or pushed errors */
    kfk_config conf;
    obx_kv kv[8];
    void *inst;
} fixture;

/* n events numbered from..from+n over `keys` keys, to the fixture's
 * topic, payload {"seq":i} padded to pad bytes, one user header. All
 * memory is owned here. */
typedef struct batch {
    size_t n;
    obx_event *ev;
    obx_event **ptrs;
    obx_result *res;
    obx_header *hdr;
    char (*id)[32];
    char (*key)[32];
    char (*trace)[32];
    char **payload;
} batch;

static int group_setup(void **state)
{
    cluster *cl = calloc(1, sizeof *cl);
    kt_mock_start(&cl->mock, 3);
    *state = cl;
    return 0;
}

static int group_teardown(void **state)
{
    cluster *cl = *state;
    kt_mock_stop(&cl->mock);
    free(cl);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->cl = *state; /* the group's state */
    f->mock = f->cl->mock;
    snprintf(f->topic, sizeof f->topic, "orders-%d", ++f->cl->tests);
    f->plugin = obx_test_plugin("broker", "kafka");
    f->ops = f->plugin->ops;
    kt_mock_topic(&f->mock, f->topic, PARTITIONS);
    f->conf.brokers = f->mock.bootstraps;
    f->conf.max_in_flight = 10000;
    f->conf.timestamp = KFK_TS_CREATED;
    f->conf.probe_timeout_ms = 1000;
    f->conf.close_timeout_ms = 1000;
    f->conf.kafka.items = f->kv;
    *state = f;
    return 0;
}

static void close_inst(fixture *f)
{
    if (f->inst)
        f->ops->close(f->inst);
    f->inst = NULL;
}

static int teardown(void **state)
{
    fixture *f = *state;
    close_inst(f);
    /* Put back what a failed test may have left; only when needed, as
     * each of these can take the mock a second. */
    if (f->faults) {
        rd_kafka_mock_broker_set_up(f->mock.cluster, -1);
        rd_kafka_mock_clear_request_errors(f->mock.cluster, KT_API_PRODUCE);
    }
    if (f->rtt_set)
        rd_kafka_mock_broker_set_rtt(f->mock.cluster, -1, 0);
    *state = f->cl;
    free(f);
    return 0;
}

/* Delay every answer of broker (-1: all) by ms. */
static void set_rtt(fixture *f, int32_t broker, int ms)
{
    f->rtt_set = true;
    rd_kafka_mock_broker_set_rtt(f->mock.cluster, broker, ms);
}

/* Add a pass-through property broker.kafka.<name> = value. */
static void prop(fixture *f, const char *name, const char *value)
{
    size_t i = f->conf.kafka.n;
    assert_true(i < sizeof f->kv / sizeof *f->kv);
    f->kv[i] = (obx_kv){name, value, 41 + (int)i}; /* a made-up line */
    f->conf.kafka.n = i + 1;
}

static void open_inst(fixture *f)
{
    char err[512] = "";
    obx_status st =
        f->ops->open(obx_test_host(), &f->conf, &f->inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
}

static batch mk_batch(const fixture *f, long from, size_t n, int keys,
                      size_t pad)
{
    batch b = {.n = n};
    b.ev = calloc(n, sizeof *b.ev);
    b.ptrs = calloc(n, sizeof *b.ptrs);
    b.res = calloc(n, sizeof *b.res);
    b.hdr = calloc(n, sizeof *b.hdr);
    b.id = calloc(n, sizeof *b.id);
    b.key = calloc(n, sizeof *b.key);
    b.trace = calloc(n, sizeof *b.trace);
    b.payload = calloc(n, sizeof *b.payload);
    assert_true(b.ev && b.ptrs && b.res && b.hdr && b.id && b.key && b.trace &&
                b.payload);
    for (size_t i = 0; i < n; i++) {
        long seq = from + (long)i;
        obx_event *e = &b.ev[i];
        snprintf(b.id[i], sizeof b.id[i], "e%ld", seq);
        snprintf(b.key[i], sizeof b.key[i], "k%ld", seq % keys);
        snprintf(b.trace[i], sizeof b.trace[i], "t-%ld", seq);
        b.payload[i] = calloc(1, pad + 64);
        int len =
            snprintf(b.payload[i], pad + 64, "{\"seq\":%ld,\"pad\":\"", seq);
        while ((size_t)len + 2 < pad)
            b.payload[i][len++] = 'x';
        len += snprintf(b.payload[i] + len, 3, "\"}");
        b.hdr[i] = (obx_header){"trace-id", b.trace[i]};
        e->event_id = b.id[i];
        e->key = b.key[i];
        e->aggregate_id = b.key[i];
        e->event_type = "OrderCreated";
        e->aggregate_type = "order";
        e->payload = b.payload[i];
        e->payload_len = (size_t)len;
        e->headers = &b.hdr[i];
        e->n_headers = 1;
        e->created_at_us = 1700000000000000 + seq * 1000;
        e->destination = f->topic;
        b.ptrs[i] = e;
    }
    return b;
}

static void free_batch(batch *b)
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
}

static obx_status publish(fixture *f, batch *b, int timeout_ms)
{
    memset(b->res, 0xa5, b->n * sizeof *b->res); /* catch unfilled results */
    return f->ops->publish(f->inst, b->ptrs, b->n, b->res, timeout_ms);
}

static void assert_all_ok(const batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->res[i].status != OBX_OK)
            fail_msg("event %zu: %s: %s", i, obx_status_name(b->res[i].status),
                     b->res[i].errstr);
}

/* Every seq in [0, n) exactly once, keys as written, order per key. */
static void assert_exactly_once(const kt_msgs *m, long n, int keys)
{
    int *seen = calloc((size_t)n, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < m->n; i++) {
        long seq = kt_seq(&m->items[i]);
        assert_true(seq >= 0 && seq < n);
        char want[32];
        snprintf(want, sizeof want, "k%ld", seq % keys);
        assert_string_equal(m->items[i].key, want);
        seen[seq]++;
    }
    for (long s = 0; s < n; s++)
        if (seen[s] != 1)
            fail_msg("seq %ld seen %d times", s, seen[s]);
    free(seen);
    assert_int_equal(m->n, (size_t)n);
    kt_assert_key_order(m);
}

/* ---- tests ------------------------------------------------------------ */

static void test_batch_reads_back_with_keys_headers_and_order(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch b = mk_batch(f, 0, 500, 13, 256);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 500, 300, 15000);
    assert_exactly_once(&m, 500, 13);
    for (size_t i = 0; i < m.n; i++) {
        const kt_msg *x = &m.items[i];
        long seq = kt_seq(x);
        char id[32], trace[32], key[32];
        snprintf(id, sizeof id, "e%ld", seq);
        snprintf(trace, sizeof trace, "t-%ld", seq);
        snprintf(key, sizeof key, "k%ld", seq % 13);
        assert_string_equal(kt_header_value(x, "outbox-event-id"), id);
        assert_string_equal(kt_header_value(x, "outbox-event-type"),
                            "OrderCreated");
        assert_string_equal(kt_header_value(x, "outbox-aggregate-type"),
                            "order");
        assert_string_equal(kt_header_value(x, "outbox-aggregate-id"), key);
        assert_string_equal(kt_header_value(x, "trace-id"), trace);
        /* ours first, then the event's own */
        assert_int_equal(x->n_headers, 5);
        assert_string_equal(x->headers[0].name, "outbox-event-id");
        assert_string_equal(x->headers[4].name, "trace-id");
        assert_int_equal(x->timestamp, 1700000000000 + seq);
        assert_int_equal(b.ev[seq].payload_len, x->value_len);
        assert_memory_equal(b.ev[seq].payload, x->value, x->value_len);
    }
    kt_msgs_free(&m);
    free_batch(&b);
}

static void test_small_in_flight_bound_still_delivers_all(void **state)
{
    fixture *f = *state;
    f->conf.max_in_flight = 7;
    open_inst(f);
    batch b = mk_batch(f, 0, 300, 5, 64);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 300, 300, 15000);
    assert_exactly_once(&m, 300, 5);
    kt_msgs_free(&m);
    free_batch(&b);
}

static void test_transient_produce_errors_retried_without_loss(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch warm = mk_batch(f, 0, 20, 7, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    assert_all_ok(&warm);
    f->faults = true;
    rd_kafka_mock_push_request_errors(
        f->mock.cluster, KT_API_PRODUCE, 6,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR);
    batch b = mk_batch(f, 20, 400, 7, 128);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 420, 300, 15000);
    assert_exactly_once(&m, 420, 7);
    kt_msgs_free(&m);
    free_batch(&warm);
    free_batch(&b);
}

/* Wait for the health op to say OK, at most ms. */
static obx_status await_health(fixture *f, int ms)
{
    char err[OBX_ERRSTR_LEN];
    obx_status st = OBX_UNAVAILABLE;
    for (int64_t end = kt_now_ms() + ms; kt_now_ms() < end;) {
        st = f->ops->health(f->inst, err, sizeof err);
        if (st == OBX_OK)
            break;
        kt_sleep_ms(100);
    }
    return st;
}

static void test_all_brokers_down_unavailable_then_recovers(void **state)
{
    fixture *f = *state;
    /* librdkafka's reconnect backoff grows to 10 s by default. */
    prop(f, "reconnect.backoff.max.ms", "500");
    open_inst(f);
    batch a = mk_batch(f, 0, 50, 5, 64);
    assert_int_equal(publish(f, &a, 10000), OBX_OK);
    assert_all_ok(&a);

    f->faults = true;
    rd_kafka_mock_broker_set_down(f->mock.cluster, -1);
    batch b = mk_batch(f, 50, 50, 5, 64);
    int64_t t0 = kt_now_ms();
    assert_int_equal(publish(f, &b, 20000), OBX_UNAVAILABLE);
    assert_true(kt_now_ms() - t0 < 10000); /* not the whole timeout */
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.res[i].status, OBX_UNAVAILABLE);
    char err[OBX_ERRSTR_LEN] = "";
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_UNAVAILABLE);
    assert_true(err[0] != '\0');
    /* Still down: the next call fails fast, without producing. */
    t0 = kt_now_ms();
    assert_int_equal(publish(f, &b, 20000), OBX_UNAVAILABLE);
    assert_true(kt_now_ms() - t0 < 3000);

    rd_kafka_mock_broker_set_up(f->mock.cluster, -1);
    f->faults = false;
    assert_int_equal(await_health(f, 20000), OBX_OK);
    assert_int_equal(publish(f, &b, 20000), OBX_OK); /* the engine's retry */
    assert_all_ok(&b);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 100, 300, 15000);
    assert_exactly_once(&m, 100, 5);
    kt_msgs_free(&m);
    free_batch(&a);
    free_batch(&b);
}

/* The cluster goes down in the middle of a call (the chaos suite's
 * outage: reports of what was answered just before may still come in
 * after ALL_BROKERS_DOWN and say a broker is up): what was answered is
 * OK, everything else UNAVAILABLE, none RETRY (an outage counts no
 * attempt), and the call stops at the outage, not at its deadline. */
typedef struct downer {
    fixture *f;
    int after_ms;
} downer;

static void *take_down_later(void *arg)
{
    downer *d = arg;
    struct timespec ts = {0, (long)d->after_ms * 1000000L};
    nanosleep(&ts, NULL);
    rd_kafka_mock_broker_set_down(d->f->mock.cluster, -1);
    return NULL;
}

static void test_down_mid_call_is_unavailable(void **state)
{
    fixture *f = *state;
    prop(f, "reconnect.backoff.max.ms", "500");
    f->conf.max_in_flight = 5; /* a long call: five answers at a time */
    open_inst(f);
    batch warm = mk_batch(f, 0, 10, 5, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    assert_all_ok(&warm);
    set_rtt(f, -1, 20);
    f->faults = true;
    downer d = {f, 300};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_down_later, &d), 0);
    batch b = mk_batch(f, 10, 400, 5, 64);
    int64_t t0 = kt_now_ms();
    publish(f, &b, 8000);
    int64_t took = kt_now_ms() - t0;
    pthread_join(th, NULL);
    size_t ok = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.res[i].status == OBX_OK) {
            ok++;
            continue;
        }
        if (b.res[i].status != OBX_UNAVAILABLE)
            fail_msg("event %zu: %s: %s", i, obx_status_name(b.res[i].status),
                     b.res[i].errstr);
    }
    /* it did go down mid-call */
    assert_true(ok > 0 && ok < b.n);
    assert_true(took < 6000);
    rd_kafka_mock_broker_set_up(f->mock.cluster, -1);
    set_rtt(f, -1, 0);
    f->faults = false;
    free_batch(&warm);
    free_batch(&b);
}

static void test_oversize_event_is_permanent_and_holds_its_key(void **state)
{
    fixture *f = *state;
    prop(f, "message.max.bytes", "10000");
    open_inst(f);
    batch b = mk_batch(f, 0, 4, 3, 64);
    /* e1 (key k1) is too big; e3 is k0 again, e2 is k2. Make e2 a later
     * event of k1 to see it held back. */
    char *big = calloc(1, 20001);
    memset(big, 'y', 20000);
    b.ev[1].payload = big;
    b.ev[1].payload_len = 20000;
    b.ev[2].key = b.key[1];
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_int_equal(b.res[0].status, OBX_OK);
    assert_int_equal(b.res[1].status, OBX_PERMANENT);
    assert_non_null(strstr(b.res[1].errstr, "MSG_SIZE_TOO_LARGE"));
    assert_int_equal(b.res[2].status, OBX_RETRY);
    assert_string_equal(b.res[2].errstr, "not attempted");
    assert_int_equal(b.res[3].status, OBX_OK);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 2, 500, 15000);
    assert_int_equal(m.n, 2);
    assert_int_equal(kt_seq(&m.items[0]) + kt_seq(&m.items[1]), 0 + 3);
    kt_msgs_free(&m);
    free(big);
    free_batch(&b);
}

typedef struct flipper {
    rd_kafka_mock_cluster_t *cluster;
    const char *topic;
    atomic_int stop;
    atomic_int flips;
} flipper;

/* Move every partition's leader to the next broker, every few ms. */
static void *flip_leaders(void *arg)
{
    flipper *fl = arg;
    for (int round = 0; !atomic_load(&fl->stop); round++) {
        for (int p = 0; p < PARTITIONS; p++)
            rd_kafka_mock_partition_set_leader(fl->cluster, fl->topic, p,
                                               (p + round) % 3 + 1);
        atomic_fetch_add(&fl->flips, 1);
        kt_sleep_ms(20);
    }
    return NULL;
}

static void test_leader_changes_mid_stream_lose_nothing(void **state)
{
    fixture *f = *state;
    open_inst(f);
    flipper fl = {.cluster = f->mock.cluster, .topic = f->topic};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flip_leaders, &fl), 0);
    long total = 0;
    /* Keep the stream going until the leaders moved ten times under it. */
    for (int round = 0; round < 4 || atomic_load(&fl.flips) < 10; round++) {
        assert_true(round < 400);
        batch b = mk_batch(f, total, 500, 17, 64);
        assert_int_equal(publish(f, &b, 30000), OBX_OK);
        assert_all_ok(&b);
        total += (long)b.n;
        free_batch(&b);
    }
    atomic_store(&fl.stop, 1);
    pthread_join(th, NULL);
    kt_msgs m =
        kt_consume(f->mock.bootstraps, f->topic, (size_t)total, 500, 30000);
    assert_exactly_once(&m, total, 17);
    kt_msgs_free(&m);
}

static void test_unknown_topic_is_permanent(void **state)
{
    fixture *f = *state;
    /* Without this, librdkafka waits 30 s before it believes a topic is
     * missing (it may be propagating). */
    prop(f, "topic.metadata.propagation.max.ms", "100");
    rd_kafka_mock_topic_set_error(f->mock.cluster, "nosuch",
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    open_inst(f);
    batch b = mk_batch(f, 0, 2, 2, 64);
    b.ev[1].destination = "nosuch";
    assert_int_equal(publish(f, &b, 15000), OBX_OK);
    assert_int_equal(b.res[0].status, OBX_OK);
    assert_int_equal(b.res[1].status, OBX_PERMANENT);
    assert_non_null(strstr(b.res[1].errstr, "nosuch"));
    /* Now librdkafka knows: refused at once, still permanent. */
    assert_int_equal(publish(f, &b, 15000), OBX_OK);
    assert_int_equal(b.res[1].status, OBX_PERMANENT);
    free_batch(&b);
}

static void test_fatal_error_asks_for_a_reopen(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch b = mk_batch(f, 0, 10, 3, 64);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    /* Sequence desynchronisation is fatal for an idempotent producer. */
    f->faults = true;
    rd_kafka_mock_push_request_errors(
        f->mock.cluster, KT_API_PRODUCE, 1,
        RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    batch c = mk_batch(f, 10, 10, 3, 64);
    assert_int_equal(publish(f, &c, 10000), OBX_FATAL);
    assert_non_null(strstr(c.res[0].errstr, "fatal"));
    /* What the engine does: close and open again. */
    close_inst(f);
    open_inst(f);
    assert_int_equal(publish(f, &c, 10000), OBX_OK);
    assert_all_ok(&c);
    free_batch(&b);
    free_batch(&c);
}

/* What the engine does with a batch while the circuit is open for a
 * broker reason (core/engine.c: circuit_allows, publish_done): the health
 * op first, the batch only once it says OK; OBX_FATAL from publish closes
 * the instance and opens a new one. Until publish returns OBX_OK or ms
 * pass; the last health error goes to err. */
static obx_status engine_retry(fixture *f, batch *b, int ms, char *err,
                               size_t len)
{
    obx_status st = OBX_UNAVAILABLE;
    snprintf(err, len, "health never said OK");
    for (int64_t end = kt_now_ms() + ms; kt_now_ms() < end;) {
        char why[OBX_ERRSTR_LEN] = "";
        if (f->ops->health(f->inst, why, sizeof why) != OBX_OK) {
            snprintf(err, len, "health: %s", why);
            kt_sleep_ms(200); /* the circuit's backoff */
            continue;
        }
        st = publish(f, b, 10000);
        if (st == OBX_OK)
            return st;
        snprintf(err, len, "publish: %s: %s", obx_status_name(st),
                 b->res[0].errstr);
        if (st == OBX_FATAL) {
            close_inst(f);
            open_inst(f);
        }
    }
    return st;
}

/* A fatal producer error that comes up while the circuit is open: here
 * the late answer to a request of a call that returned unavailable (no
 * broker answered in time). health must not keep the circuit open for
 * ever on it: the engine calls publish only after health said OK, and
 * only publish can ask for the new producer (OBX_FATAL). */
static void test_fatal_error_while_circuit_open_recovers(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch warm = mk_batch(f, 0, 10, 3, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    assert_all_ok(&warm);
    f->faults = true;
    rd_kafka_mock_push_request_errors(
        f->mock.cluster, KT_API_PRODUCE, 1,
        RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    set_rtt(f, -1, 1500);
    batch b = mk_batch(f, 10, 10, 3, 64);
    assert_int_equal(publish(f, &b, 300), OBX_UNAVAILABLE); /* circuit opens */
    set_rtt(f, -1, 0);
    kt_sleep_ms(2500); /* the answers land, one of them fatal */
    char err[2 * OBX_ERRSTR_LEN];
    obx_status st = engine_retry(f, &b, 8000, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("the relay did not recover: %s", err);
    assert_all_ok(&b);
    free_batch(&warm);
    free_batch(&b);
}

/* Partitions 0-1 led by broker 1, 2-3 by broker 2, which answers after
 * 2 s: with a 600 ms timeout, events on broker 1 are confirmed and those
 * on broker 2 time out alone: RETRY, counted as an attempt. */
static void test_timeout_alone_is_retry(void **state)
{
    fixture *f = *state;
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_mock_partition_set_leader(f->mock.cluster, f->topic, p,
                                           p < 2 ? 1 : 2);
    open_inst(f);
    batch warm = mk_batch(f, 0, 40, 16, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    set_rtt(f, 2, 2000);
    batch b = mk_batch(f, 40, 40, 16, 64);
    assert_int_equal(publish(f, &b, 600), OBX_OK);
    size_t ok = 0, timed_out = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.res[i].status == OBX_OK) {
            ok++;
            continue;
        }
        assert_int_equal(b.res[i].status, OBX_RETRY);
        assert_non_null(strstr(b.res[i].errstr, "timed out"));
        timed_out++;
    }
    assert_true(ok > 0);
    assert_true(timed_out > 0);
    set_rtt(f, 2, 0);
    /* The engine retries what failed; late copies may also land. */
    obx_event *again[40];
    obx_result res[40];
    size_t n = 0;
    for (size_t i = 0; i < b.n; i++)
        if (b.res[i].status != OBX_OK)
            again[n++] = &b.ev[i];
    assert_int_equal(f->ops->publish(f->inst, again, n, res, 10000), OBX_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(res[i].status, OBX_OK);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 80, 500, 15000);
    if (m.n < 80 || m.n > 80 + timed_out)
        fail_msg("read %zu messages, want 80..%zu (ok %zu)", m.n,
                 80 + timed_out, ok);
    kt_msgs_free(&m);
    free_batch(&warm);
    free_batch(&b);
}

static void test_no_broker_answer_is_unavailable(void **state)
{
    fixture *f = *state;
    open_inst(f);
    batch warm = mk_batch(f, 0, 10, 4, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    set_rtt(f, -1, 2000);
    batch b = mk_batch(f, 10, 10, 4, 64);
    assert_int_equal(publish(f, &b, 400), OBX_UNAVAILABLE);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.res[i].status, OBX_UNAVAILABLE);
    set_rtt(f, -1, 0);
    f->rtt_set = false;
    free_batch(&warm);
    free_batch(&b);
}

/* A delivery report that fails an event while the batch is still being
 * produced (max_in_flight = 1: each report comes in before the next event
 * goes out) holds back the later events of its key, and only of its key:
 * sent, they would reach the topic ahead of the failed event's retry. */
static void test_failed_report_holds_its_key_mid_batch(void **state)
{
    fixture *f = *state;
    f->conf.max_in_flight = 1;
    open_inst(f);
    batch warm = mk_batch(f, 0, 4, 2, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    assert_all_ok(&warm);
    /* The broker refuses the next record batch: that of seq 4 alone. */
    f->faults = true;
    rd_kafka_mock_push_request_errors(f->mock.cluster, KT_API_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    /* In this order: k0 4, k0 6 (its report comes in while waiting for
     * room for this one), k1 5, k0 8, k1 7, k1 9. */
    batch b = mk_batch(f, 4, 6, 2, 64);
    static const size_t order[6] = {0, 2, 1, 4, 3, 5};
    static const bool held[6] = {false, true, false, true, false, false};
    for (size_t i = 0; i < b.n; i++)
        b.ptrs[i] = &b.ev[order[i]];
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_int_equal(b.res[0].status, OBX_RETRY);
    assert_non_null(strstr(b.res[0].errstr, "MSG_SIZE_TOO_LARGE"));
    for (size_t i = 1; i < b.n; i++) {
        const obx_result *r = &b.res[i];
        bool ok = held[i] ? r->status == OBX_RETRY &&
                                strcmp(r->errstr, "not attempted") == 0
                          : r->status == OBX_OK;
        if (!ok)
            fail_msg("seq %zu (%s): %s: %s", order[i] + 4,
                     held[i] ? "k0, after the failed one" : "k1",
                     obx_status_name(r->status), r->errstr);
    }
    /* The engine's retry: the failed event, then those held behind it. */
    obx_event *again[3] = {&b.ev[0], &b.ev[2], &b.ev[4]};
    obx_result res[3];
    assert_int_equal(f->ops->publish(f->inst, again, 3, res, 10000), OBX_OK);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(res[i].status, OBX_OK);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 10, 500, 15000);
    assert_exactly_once(&m, 10, 2); /* and in order per key */
    kt_msgs_free(&m);
    free_batch(&warm);
    free_batch(&b);
}

/* All brokers go down and come back between two calls, nobody serving
 * the producer meanwhile (an idle pipeline): the next call finds the
 * ALL_BROKERS_DOWN of the bounce still queued. Its probe gets an answer,
 * so the call goes ahead rather than failing unproduced, which would
 * open the circuit for a backoff after every bounce. */
static void test_outage_between_calls_is_settled_by_the_probe(void **state)
{
    fixture *f = *state;
    prop(f, "reconnect.backoff.max.ms", "200");
    open_inst(f);
    batch warm = mk_batch(f, 0, 20, 5, 64);
    assert_int_equal(publish(f, &warm, 10000), OBX_OK);
    assert_all_ok(&warm);
    f->faults = true;
    rd_kafka_mock_broker_set_down(f->mock.cluster, -1);
    kt_sleep_ms(1500); /* librdkafka sees every connection fail */
    rd_kafka_mock_broker_set_up(f->mock.cluster, -1);
    f->faults = false;
    kt_sleep_ms(1500); /* and reconnects */
    batch b = mk_batch(f, 20, 20, 5, 64);
    obx_status st = publish(f, &b, 10000);
    if (st != OBX_OK)
        fail_msg("publish after the bounce: %s: %s", obx_status_name(st),
                 b.res[0].errstr);
    assert_all_ok(&b);
    kt_msgs m = kt_consume(f->mock.bootstraps, f->topic, 40, 300, 15000);
    assert_exactly_once(&m, 40, 5);
    kt_msgs_free(&m);
    free_batch(&warm);
    free_batch(&b);
}

static obx_status validate(fixture *f, bool connect, char *err, size_t len)
{
    err[0] = '\0';
    return f->ops->validate(obx_test_host(), &f->conf, connect, err, len);
}

static void test_validate_names_property_and_line(void **state)
{
    fixture *f = *state;
    char err[512];
    assert_int_equal(validate(f, false, err, sizeof err), OBX_OK);
    prop(f, "linger.ms", "7");
    assert_int_equal(validate(f, false, err, sizeof err), OBX_OK);
    prop(f, "no.such.property", "1");
    assert_int_equal(validate(f, false, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "broker.kafka.no.such.property (line 42)"));

    f->conf.kafka.n = 0;
    prop(f, "acks", "sometimes");
    assert_int_equal(validate(f, false, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "broker.kafka.acks (line 41)"));

    f->conf.kafka.n = 0;
    prop(f, "bootstrap.servers", "elsewhere:9092");
    assert_int_equal(validate(f, false, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "broker.brokers"));

    /* Accepted one by one, refused together, by rd_kafka_new. */
    f->conf.kafka.n = 0;
    prop(f, "acks", "1");
    assert_int_equal(validate(f, false, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "acks"));
}

static void test_validate_connect(void **state)
{
    fixture *f = *state;
    char err[512];
    assert_int_equal(validate(f, true, err, sizeof err), OBX_OK);
    f->conf.brokers = "127.0.0.1:1";
    f->conf.probe_timeout_ms = 300;
    assert_int_equal(validate(f, true, err, sizeof err), OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "127.0.0.1:1"));
}

static void test_option_table(void **state)
{
    fixture *f = *state;
    const obx_option *o = f->plugin->options;
    bool brokers = false, kafka = false;
    for (; o->name; o++) {
        if (strcmp(o->name, "brokers") == 0)
            brokers = (o->flags & OBX_OPT_REQUIRED) != 0;
        if (strcmp(o->name, "kafka") == 0)
            kafka = o->type == OBX_OPT_PREFIX && (o->flags & OBX_OPT_SECRET);
    }
    assert_true(brokers);
    assert_true(kafka);
    assert_string_equal(f->plugin->name, "kafka");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_batch_reads_back_with_keys_headers_and_order),
        T(test_small_in_flight_bound_still_delivers_all),
        T(test_transient_produce_errors_retried_without_loss),
        T(test_all_brokers_down_unavailable_then_recovers),
        T(test_down_mid_call_is_unavailable),
        T(test_oversize_event_is_permanent_and_holds_its_key),
        T(test_leader_changes_mid_stream_lose_nothing),
        T(test_unknown_topic_is_permanent),
        T(test_fatal_error_asks_for_a_reopen),
        T(test_fatal_error_while_circuit_open_recovers),
        T(test_failed_report_holds_its_key_mid_batch),
        T(test_outage_between_calls_is_settled_by_the_probe),
        T(test_timeout_alone_is_retry),
        T(test_no_broker_answer_is_unavailable),
        T(test_validate_names_property_and_line),
        T(test_validate_connect),
        T(test_option_table),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
