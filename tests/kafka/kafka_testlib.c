#include "kafka_testlib.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

int64_t kt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Quiet: librdkafka's own log lines would only clutter test output. */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static rd_kafka_conf_t *quiet_conf(void)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(c, quiet_log);
    return c;
}

void kt_mock_start(kt_mock *m, int brokers)
{
    char err[512];
    memset(m, 0, sizeof *m);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, quiet_conf(), err, sizeof err);
    if (!m->rk)
        fail_msg("mock handle: %s", err);
    m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers);
    if (!m->cluster)
        fail_msg("rd_kafka_mock_cluster_new failed");
    snprintf(m->bootstraps, sizeof m->bootstraps, "%s",
             rd_kafka_mock_cluster_bootstraps(m->cluster));
}

void kt_mock_stop(kt_mock *m)
{
    if (m->cluster)
        rd_kafka_mock_cluster_destroy(m->cluster);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    memset(m, 0, sizeof *m);
}

void kt_mock_topic(kt_mock *m, const char *topic, int partitions)
{
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(m->cluster, topic, partitions, 1);
    if (err)
        fail_msg("create topic %s: %s", topic, rd_kafka_err2str(err));
}

static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void copy_headers(kt_msg *out, const rd_kafka_message_t *rm)
{
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rm, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    size_t n = rd_kafka_header_cnt(h);
    out->headers = calloc(n ? n : 1, sizeof *out->headers);
    assert_non_null(out->headers);
    const char *name;
    const void *val;
    size_t len;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        out->headers[i].name = strdup(name);
        out->headers[i].value = val ? dup_n(val, len) : NULL;
        out->n_headers = i + 1;
    }
}

static void add_msg(kt_msgs *m, const rd_kafka_message_t *rm)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        kt_msg *g = realloc(m->items, cap * sizeof *g);
        assert_non_null(g);
        m->items = g;
        m->cap = cap;
    }
    kt_msg *out = &m->items[m->n++];
    memset(out, 0, sizeof *out);
    out->partition = rm->partition;
    out->offset = rm->offset;
    out->timestamp = rd_kafka_message_timestamp(rm, NULL);
    out->key = rm->key ? dup_n(rm->key, rm->key_len) : NULL;
    out->value = dup_n(rm->payload, rm->len);
    out->value_len = rm->len;
    copy_headers(out, rm);
}

static int partition_count(rd_kafka_t *rk, const char *topic)
{
    for (int64_t end = kt_now_ms() + 10000; kt_now_ms() < end;) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, 2000);
        int n = 0;
        if (!err && md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
        if (n > 0)
            return n;
        kt_sleep_ms(50);
    }
    fail_msg("no metadata for topic %s", topic);
    return 0;
}

/* librdkafka's mock keeps at most 5 MiB (or 100,000 message sets) per
 * partition and drops the oldest beyond that (rdkafka_mock.c, not
 * configurable in 2.0). What it dropped would read as lost events: fail
 * with the cause instead. A long run reads as it goes (kt_reader). */
static void require_whole_log(rd_kafka_t *rk, const char *topic, int p)
{
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 5000);
    if (err)
        fail_msg("watermarks of %s [%d]: %s", topic, p, rd_kafka_err2str(err));
    if (lo > 0)
        fail_msg("%s [%d] begins at offset %lld of %lld: the Kafka mock "
                 "dropped its oldest messages (it keeps 5 MiB per "
                 "partition); read the topic while it grows",
                 topic, p, (long long)lo, (long long)hi);
}

static rd_kafka_t *consumer(const char *bootstraps, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *c = quiet_conf();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstraps, err,
                          sizeof err) ||
        rd_kafka_conf_set(c, "group.id", "obx-test-reader", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err) ||
        /* an offset the broker no longer has is an error, not a silent
         * jump to the end */
        rd_kafka_conf_set(c, "auto.offset.reset", "error", err, sizeof err))
        fail_msg("consumer conf: %s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk)
        fail_msg("consumer: %s", err);
    int parts = partition_count(rk, topic);
    for (int p = 0; p < parts; p++)
        require_whole_log(rk, topic, p);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, l))
        fail_msg("assign %s failed", topic);
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

struct kt_reader {
    rd_kafka_t *rk;
};

kt_reader *kt_reader_new(const char *bootstraps, const char *topic)
{
    kt_reader *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->rk = consumer(bootstraps, topic);
    return r;
}

void kt_reader_read(kt_reader *r, kt_msgs *into, size_t want, int quiet_ms,
                    int timeout_ms)
{
    int64_t end = kt_now_ms() + timeout_ms, last = kt_now_ms();
    while (kt_now_ms() < end) {
        if (into->n >= want && kt_now_ms() - last >= quiet_ms)
            break;
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(r->rk, 50);
        if (!rm)
            continue;
        if (!rm->err) {
            add_msg(into, rm);
            last = kt_now_ms();
        } else if (rm->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                   rm->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            fail_msg("%s [%d]: %s: the Kafka mock dropped messages this "
                     "reader had not read yet (it keeps 5 MiB per "
                     "partition); read more often",
                     rd_kafka_topic_name(rm->rkt), (int)rm->partition,
                     rd_kafka_message_errstr(rm));
        }
        rd_kafka_message_destroy(rm);
    }
}

void kt_reader_free(kt_reader *r)
{
    if (!r)
        return;
    rd_kafka_consumer_close(r->rk);
    rd_kafka_destroy(r->rk);
    free(r);
}

kt_msgs kt_consume(const char *bootstraps, const char *topic, size_t want,
                   int quiet_ms, int timeout_ms)
{
    kt_msgs m = {0};
    kt_reader *r = kt_reader_new(bootstraps, topic);
    kt_reader_read(r, &m, want, quiet_ms, timeout_ms);
    kt_reader_free(r);
    return m;
}

void kt_msgs_free(kt_msgs *m)
{
    for (size_t i = 0; i < m->n; i++) {
        kt_msg *x = &m->items[i];
        for (size_t j = 0; j < x->n_headers; j++) {
            free(x->headers[j].name);
            free(x->headers[j].value);
        }
        free(x->headers);
        free(x->key);
        free(x->value);
    }
    free(m->items);
    memset(m, 0, sizeof *m);
}

const char *kt_header_value(const kt_msg *msg, const char *name)
{
    for (size_t i = 0; i < msg->n_headers; i++)
        if (strcmp(msg->headers[i].name, name) == 0)
            return msg->headers[i].value;
    return NULL;
}

long kt_seq(const kt_msg *msg)
{
    const char *p = strstr(msg->value, "\"seq\":");
    if (!p)
        fail_msg("no seq in value %s", msg->value);
    return strtol(p + 6, NULL, 10);
}

typedef struct key_last {
    const char *key;
    int32_t partition;
    long seq;
} key_last;

size_t kt_assert_key_order(const kt_msgs *m)
{
    key_last *k = calloc(m->n ? m->n : 1, sizeof *k);
    assert_non_null(k);
    size_t nk = 0;
    for (size_t i = 0; i < m->n; i++) {
        const kt_msg *x = &m->items[i];
        const char *key = x->key ? x->key : "";
        size_t j = 0;
        while (j < nk && strcmp(k[j].key, key) != 0)
            j++;
        long seq = kt_seq(x);
        if (j == nk) {
            k[nk++] = (key_last){key, x->partition, seq};
            continue;
        }
        if (k[j].partition != x->partition)
            fail_msg("key %s on partitions %d and %d", key, k[j].partition,
                     x->partition);
        if (seq <= k[j].seq)
            fail_msg("key %s: seq %ld after %ld (partition %d offset %lld)",
                     key, seq, k[j].seq, x->partition, (long long)x->offset);
        k[j].seq = seq;
    }
    free(k);
    return nk;
}
