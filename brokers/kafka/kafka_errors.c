/* The classification of librdkafka errors. Why each class is what it is:
 *
 * PERMANENT goes to the dead-letter queue at once, so it is kept for
 * errors that are certain to repeat for this very event and no other:
 * a topic that does not exist (with auto-creation off) or is invalid, and
 * a record librdkafka refuses on its own before sending (larger than
 * message.max.bytes).
 *
 * The broker refuses a whole record batch at a time (MESSAGE_TOO_LARGE,
 * INVALID_RECORD, CORRUPT_MESSAGE ...). In a delivery report such an
 * error therefore also lands on innocent events batched with the culprit;
 * dead-lettering them all would be wrong, so at delivery time these are
 * RETRY: the neighbours go through on their next try, the culprit fails
 * again and again until max_attempts dead-letters it.
 *
 * UNAVAILABLE opens the circuit breaker and counts no attempt: anything
 * that says "the cluster will not talk to us" (down, authentication,
 * authorization, fatal producer state, a setting the broker rejects). An
 * ACL mistake must not dead-letter a backlog.
 *
 * Everything else is RETRY: librdkafka already retried transient broker
 * errors internally (idempotently, in order), so what reaches us is a
 * timeout or a leftover; an unknown code counts as an attempt, which ends
 * in the DLQ if it never goes away. */
#include "kafka_errors.h"

static bool is_topic_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION: return true;
    default: return false;
    }
}

static bool is_record_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__BAD_MSG: return true;
    default: return false;
    }
}

static bool is_cluster_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__DESTROY: return true;
    default: return false;
    }
}

obx_status kfk_classify(rd_kafka_resp_err_t err, kfk_phase phase)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return OBX_OK;
    if (is_topic_error(err))
        return OBX_PERMANENT;
    if (is_record_error(err))
        return phase == KFK_AT_PRODUCE ? OBX_PERMANENT : OBX_RETRY;
    if (is_cluster_error(err))
        return OBX_UNAVAILABLE;
    return OBX_RETRY;
}

bool kfk_is_broker_wide(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED: return true;
    default: return false;
    }
}

const char *kfk_hint(rd_kafka_resp_err_t err, kfk_phase phase)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return phase == KFK_AT_PRODUCE
                   ? "larger than broker.kafka.message.max.bytes"
                   : "the broker refused the record batch; set "
                     "broker.kafka.message.max.bytes to the topic's "
                     "max.message.bytes so oversize events are refused "
                     "one by one";
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
        return "the broker refuses the event's created_at as timestamp; "
               "set broker.timestamp = now";
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return "create the topic, or let the broker auto-create it";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        return "grant this client WRITE on the topic";
    default: return NULL;
    }
}
