/* Helpers for the kafka tests: librdkafka's mock cluster in-process, and
 * a test consumer that reads a topic back. Every failure fails the running
 * cmocka test. This is librdkafka's mock (rdkafka_mock.h), not an Apache
 * Kafka broker. */
#ifndef OBX_TEST_KAFKA_H
#define OBX_TEST_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Kafka protocol ApiKey of Produce requests, for
 * rd_kafka_mock_push_request_errors (librdkafka keeps its own names in a
 * private header). */
#define KT_API_PRODUCE 0

/* A mock cluster living in this process (its own threads). */
typedef struct kt_mock {
    rd_kafka_t *rk; /* the handle the mock needs for its bookkeeping */
    rd_kafka_mock_cluster_t *cluster;
    char bootstraps[512];
} kt_mock;

/* Start a mock cluster of n brokers (ids 1..n). */
void kt_mock_start(kt_mock *m, int brokers);
void kt_mock_stop(kt_mock *m);

/* Create topic with the given partitions, replication factor 1..n. */
void kt_mock_topic(kt_mock *m, const char *topic, int partitions);

typedef struct kt_header {
    char *name;
    char *value; /* NULL for a null header value */
} kt_header;

/* One message read back. */
typedef struct kt_msg {
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    char *key; /* NUL-terminated copy, NULL when the message has none */
    char *value;
    size_t value_len;
    kt_header *headers;
    size_t n_headers;
} kt_msg;

typedef struct kt_msgs {
    kt_msg *items;
    size_t n, cap;
} kt_msgs;

/* A consumer that stays open between reads, for callers that read a
 * growing topic again and again (the soak): each read adds only what
 * arrived since the last one. */
typedef struct kt_reader kt_reader;
/* From the beginning of topic; fails the test when it cannot. */
kt_reader *kt_reader_new(const char *bootstraps, const char *topic);
/* Append to *into what arrives until *into holds at least `want` and
 * nothing more came for quiet_ms, or timeout_ms passed. */
void kt_reader_read(kt_reader *r, kt_msgs *into, size_t want, int quiet_ms,
                    int timeout_ms);
void kt_reader_free(kt_reader *r);

/* Read every message of topic from the beginning, from bootstraps, until
 * at least `want` arrived and nothing more came for `quiet_ms` (so
 * duplicates would be seen), or `timeout_ms` passed. Messages are in
 * consumption order, which within a partition is offset order. */
kt_msgs kt_consume(const char *bootstraps, const char *topic, size_t want,
                   int quiet_ms, int timeout_ms);
void kt_msgs_free(kt_msgs *m);

/* The value of header `name` in msg, or NULL when absent. */
const char *kt_header_value(const kt_msg *msg, const char *name);

/* Assert per-partition order by a number in the value: for messages of one
 * key, the integer after "seq": increases in offset order, and every key
 * stays on one partition. Returns the number of distinct keys. */
size_t kt_assert_key_order(const kt_msgs *m);

/* The integer after "seq": in a message value (fails the test if none). */
long kt_seq(const kt_msg *msg);

int64_t kt_now_ms(void);
void kt_sleep_ms(int ms);

#endif
