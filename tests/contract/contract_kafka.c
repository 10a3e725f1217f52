/* The kafka broker's contract harness, against librdkafka's mock cluster
 * in this process (tests/kafka/kafka_testlib; rdkafka_mock.h, not an
 * Apache Kafka broker): a topic per check, read back with a consumer; the
 * failing event is larger than message.max.bytes; `unavailable` takes the
 * mock's broker down. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "kafka_testlib.h"

#define MAX_BYTES 10000

static kt_mock mock;
static bool started;
static char topic[64];

static int h_setup(void *ctx, char *err, size_t errlen)
{
    static unsigned serial;
    if (!started) {
        kt_mock_start(&mock, 1);
        started = true;
    }
    /* a failed check may have left it down */
    rd_kafka_mock_broker_set_up(mock.cluster, -1);
    snprintf(topic, sizeof topic, "contract-%u", ++serial);
    kt_mock_topic(&mock, topic, 2);
    return 0;
}

static int h_config(void *ctx, char *text, size_t len, char *err, size_t errlen)
{
    /* librdkafka's reconnect backoff grows to 10 s by default: the kit
     * gives the broker 30 s to come back */
    snprintf(text, len,
             "brokers = %s\nprobe_timeout = 1s\nclose_timeout = 1s\n"
             "kafka.message.max.bytes = %d\n"
             "kafka.reconnect.backoff.max.ms = 500\n",
             mock.bootstraps, MAX_BYTES);
    return 0;
}

static const char *h_destination(void *ctx)
{
    return topic;
}

static int h_read_back(void *ctx, size_t want, int wait_ms,
                       obx_contract_msg *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    /* quiet 300 ms: a duplicate still on its way is seen */
    kt_msgs m = kt_consume(mock.bootstraps, topic, want, 300, wait_ms);
    *n = 0;
    for (size_t i = 0; i < m.n && *n < max; i++) {
        const kt_msg *x = &m.items[i];
        const char *id = kt_header_value(x, "outbox-event-id");
        obx_contract_msg *o = &out[(*n)++];
        snprintf(o->event_id, sizeof o->event_id, "%s", id ? id : "");
        snprintf(o->key, sizeof o->key, "%s", x->key ? x->key : "");
        snprintf(o->payload, sizeof o->payload, "%.*s", (int)x->value_len,
                 x->value ? x->value : "");
    }
    kt_msgs_free(&m);
    return 0;
}

static int h_poison(void *ctx, obx_event *ev, char *err, size_t errlen)
{
    static char big[3 * MAX_BYTES];
    memset(big, 'y', sizeof big);
    ev->payload = big;
    ev->payload_len = sizeof big;
    return 0;
}

static int h_stop(void *ctx, char *err, size_t errlen)
{
    rd_kafka_mock_broker_set_down(mock.cluster, -1);
    return 0;
}

static int h_start(void *ctx, char *err, size_t errlen)
{
    rd_kafka_mock_broker_set_up(mock.cluster, -1);
    return 0;
}

int main(void)
{
    obx_contract_broker_harness h = {
        .struct_size = sizeof h,
        .name = "kafka",
        .plugin = "kafka",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .config = h_config,
        .destination = h_destination,
        .read_back = h_read_back,
        .poison = h_poison,
        .backend_stop = h_stop,
        .backend_start = h_start,
    };
    int failed = obx_contract_broker_run(&h);
    if (started)
        kt_mock_stop(&mock);
    return failed ? 1 : 0;
}
