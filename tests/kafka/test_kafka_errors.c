/* The librdkafka error table of the kafka broker (kafka_errors.c), on its
 * own: which errors dead-letter an event, which pause the pipeline, which
 * count as an attempt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "kafka_errors.h"

typedef struct row {
    rd_kafka_resp_err_t err;
    obx_status at_produce;
    obx_status at_delivery;
} row;

static const row table[] = {
    {RD_KAFKA_RESP_ERR_NO_ERROR, OBX_OK, OBX_OK},
    /* the topic: certain to fail again, only for events sent there */
    {RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, OBX_PERMANENT, OBX_PERMANENT},
    {RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, OBX_PERMANENT, OBX_PERMANENT},
    {RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, OBX_PERMANENT, OBX_PERMANENT},
    {RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, OBX_PERMANENT, OBX_PERMANENT},
    {RD_KAFKA_RESP_ERR__INVALID_ARG, OBX_PERMANENT, OBX_PERMANENT},
    /* the record: permanent when librdkafka refuses this one message,
     * retry when the broker refuses the batch it was in */
    {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, OBX_PERMANENT, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_INVALID_RECORD, OBX_PERMANENT, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_INVALID_MSG, OBX_PERMANENT, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, OBX_PERMANENT, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP, OBX_PERMANENT, OBX_RETRY},
    /* the cluster refuses us: circuit breaker, no attempt counted */
    {RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR__TRANSPORT, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR__AUTHENTICATION, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED, OBX_UNAVAILABLE,
     OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, OBX_UNAVAILABLE,
     OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, OBX_UNAVAILABLE,
     OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR__SSL, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR__FATAL, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    {RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS, OBX_UNAVAILABLE, OBX_UNAVAILABLE},
    /* transient, this event: counts as an attempt */
    {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR__TIMED_OUT, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR__QUEUE_FULL, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR__PURGE_QUEUE, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED, OBX_RETRY, OBX_RETRY},
    {RD_KAFKA_RESP_ERR_UNKNOWN, OBX_RETRY, OBX_RETRY},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        const row *r = &table[i];
        obx_status p = kfk_classify(r->err, KFK_AT_PRODUCE);
        obx_status d = kfk_classify(r->err, KFK_AT_DELIVERY);
        if (p != r->at_produce || d != r->at_delivery)
            fail_msg("%s: produce %s (want %s), delivery %s (want %s)",
                     rd_kafka_err2name(r->err), obx_status_name(p),
                     obx_status_name(r->at_produce), obx_status_name(d),
                     obx_status_name(r->at_delivery));
    }
}

/* Whatever librdkafka reports, never FATAL or a code publish must not
 * put in a result. */
static void test_every_code_maps_to_a_result_status(void **state)
{
    (void)state;
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (!descs[i].name)
            continue;
        for (int ph = 0; ph < 2; ph++) {
            obx_status st = kfk_classify(descs[i].code, (kfk_phase)ph);
            assert_true(st == OBX_OK || st == OBX_RETRY ||
                        st == OBX_PERMANENT || st == OBX_UNAVAILABLE);
            assert_true(st != OBX_OK || descs[i].code == 0);
        }
    }
}

static void test_broker_wide_errors(void **state)
{
    (void)state;
    assert_true(kfk_is_broker_wide(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN));
    assert_true(kfk_is_broker_wide(RD_KAFKA_RESP_ERR__AUTHENTICATION));
    assert_true(
        kfk_is_broker_wide(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED));
    /* One broker's connection failing is not an outage. */
    assert_false(kfk_is_broker_wide(RD_KAFKA_RESP_ERR__TRANSPORT));
    assert_false(kfk_is_broker_wide(RD_KAFKA_RESP_ERR__TIMED_OUT));
    assert_false(kfk_is_broker_wide(RD_KAFKA_RESP_ERR__FATAL));
}

static void test_hints(void **state)
{
    (void)state;
    assert_non_null(
        kfk_hint(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, KFK_AT_PRODUCE));
    assert_non_null(
        kfk_hint(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, KFK_AT_DELIVERY));
    assert_null(kfk_hint(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, KFK_AT_DELIVERY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_every_code_maps_to_a_result_status),
        cmocka_unit_test(test_broker_wide_errors),
        cmocka_unit_test(test_hints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
