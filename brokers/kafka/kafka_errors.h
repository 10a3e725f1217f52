/* librdkafka error codes -> what the engine does with the event.
 *
 * Kept apart from the plugin so the table has its own unit test
 * (tests/kafka/test_kafka_errors.c) and the reasoning sits in one place.
 * Compiled into the plugin with hidden visibility: not exported.
 */
#ifndef KFK_ERRORS_H
#define KFK_ERRORS_H

#include <stdbool.h>

#include <librdkafka/rdkafka.h>
#include <outbox/status.h>

/* Where an error was seen: it changes what it says about the event. */
typedef enum kfk_phase {
    /* rd_kafka_producev() refused the message before queueing it: only
     * this message is concerned. */
    KFK_AT_PRODUCE = 0,
    /* A delivery report. The broker answers per record batch, so a
     * record-level refusal also lands on the events that shared the batch
     * with the culprit. */
    KFK_AT_DELIVERY = 1,
} kfk_phase;

/* The status for one event that failed with err:
 *  - OBX_OK for RD_KAFKA_RESP_ERR_NO_ERROR;
 *  - OBX_PERMANENT when it can never succeed: the topic is missing or
 *    invalid, or (at produce time only) the record itself is refused, e.g.
 *    larger than message.max.bytes;
 *  - OBX_UNAVAILABLE when the cluster refuses us rather than the event:
 *    brokers down, authentication or authorization failures, a fatal
 *    producer error, a misconfiguration;
 *  - OBX_RETRY otherwise (timeouts, leader changes, record-level refusals
 *    at delivery time, and any code not listed).
 * Never OBX_FATAL: a fatal producer error is handled by the plugin, which
 * reports the whole call. */
obx_status kfk_classify(rd_kafka_resp_err_t err, kfk_phase phase);

/* Whether err, reported by librdkafka's error callback (not tied to any
 * message), means no broker can be used right now: all brokers down, or
 * authentication failed. */
bool kfk_is_broker_wide(rd_kafka_resp_err_t err);

/* A short advice for the operator to append to the error text of err in
 * phase, or NULL. Static string. */
const char *kfk_hint(rd_kafka_resp_err_t err, kfk_phase phase);

#endif
