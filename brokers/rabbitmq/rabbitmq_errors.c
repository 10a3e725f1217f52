/* The classification of RabbitMQ failures. Why each class is what it is:
 *
 * UNAVAILABLE opens the circuit breaker and counts no attempt, so it is
 * what every failure of the connection gets (refused, reset, TLS, auth,
 * a missing vhost, heartbeat timeout, an operator closing connections, a
 * node shutting down) and also the channel errors that come from the
 * configuration rather than from one event: a missing exchange (404), a
 * missing permission (403), a declaration at odds with the existing
 * exchange (406). A typo in broker.exchange must not dead-letter a backlog.
 *
 * PERMANENT goes to the dead-letter queue at once: a message the server
 * will refuse every time (larger than its max_message_size; properties
 * that do not fit in one frame) and, in the plugin, a mandatory message
 * the server returned as unroutable (basic.return, no queue bound).
 *
 * RETRY counts an attempt: a basic.nack (the server could not take the
 * message this time) and a confirm that timed out while others of the
 * call were confirmed (this message alone is slow). When none was
 * confirmed the broker as a whole is silent: UNAVAILABLE. */
#include "rabbitmq_errors.h"

#include <stdlib.h>
#include <string.h>

obx_status rmq_classify_library(int amqp_status)
{
    switch (amqp_status) {
    case AMQP_STATUS_OK: return OBX_OK;
    case AMQP_STATUS_TABLE_TOO_BIG: return OBX_PERMANENT;
    default: return OBX_UNAVAILABLE;
    }
}

/* memmem for the reply text, which is not NUL-terminated. */
static const char *find(const char *s, size_t len, const char *what)
{
    size_t n = strlen(what);
    for (size_t i = 0; s && n <= len && i <= len - n; i++)
        if (memcmp(s + i, what, n) == 0)
            return s + i;
    return NULL;
}

int64_t rmq_parse_max_size(const char *text, size_t len)
{
    const char *at = find(text, len, "larger than configured max size ");
    if (!at || !find(text, len, "message size"))
        return -1;
    at += strlen("larger than configured max size ");
    int64_t v = 0;
    size_t digits = 0;
    while (at < text + len && *at >= '0' && *at <= '9' && digits < 18) {
        v = v * 10 + (*at++ - '0');
        digits++;
    }
    return digits ? v : -1;
}

obx_status rmq_classify_close(bool channel, uint16_t code, const char *text,
                              size_t len)
{
    if (!channel)
        return OBX_UNAVAILABLE;
    if (code == AMQP_PRECONDITION_FAILED && rmq_parse_max_size(text, len) >= 0)
        return OBX_PERMANENT;
    return OBX_UNAVAILABLE;
}

obx_status rmq_classify_size(size_t body_len, int64_t max_message_size,
                             size_t header_len, int frame_max)
{
    if (max_message_size > 0 && (uint64_t)body_len > (uint64_t)max_message_size)
        return OBX_PERMANENT;
    /* A frame: 7 bytes of header, the payload, 1 end byte. */
    if (frame_max > 0 && header_len + 8 > (size_t)frame_max)
        return OBX_PERMANENT;
    return OBX_OK;
}

obx_status rmq_classify_timeout(bool later_answered)
{
    return later_answered ? OBX_RETRY : OBX_UNAVAILABLE;
}

const char *rmq_reply_name(uint16_t code)
{
    switch (code) {
    case AMQP_REPLY_SUCCESS: return "REPLY_SUCCESS";
    case AMQP_CONTENT_TOO_LARGE: return "CONTENT_TOO_LARGE";
    case AMQP_NO_ROUTE: return "NO_ROUTE";
    case AMQP_NO_CONSUMERS: return "NO_CONSUMERS";
    case AMQP_ACCESS_REFUSED: return "ACCESS_REFUSED";
    case AMQP_NOT_FOUND: return "NOT_FOUND";
    case AMQP_RESOURCE_LOCKED: return "RESOURCE_LOCKED";
    case AMQP_PRECONDITION_FAILED: return "PRECONDITION_FAILED";
    case AMQP_CONNECTION_FORCED: return "CONNECTION_FORCED";
    case AMQP_INVALID_PATH: return "INVALID_PATH";
    case AMQP_FRAME_ERROR: return "FRAME_ERROR";
    case AMQP_SYNTAX_ERROR: return "SYNTAX_ERROR";
    case AMQP_COMMAND_INVALID: return "COMMAND_INVALID";
    case AMQP_CHANNEL_ERROR: return "CHANNEL_ERROR";
    case AMQP_UNEXPECTED_FRAME: return "UNEXPECTED_FRAME";
    case AMQP_RESOURCE_ERROR: return "RESOURCE_ERROR";
    case AMQP_NOT_ALLOWED: return "NOT_ALLOWED";
    case AMQP_NOT_IMPLEMENTED: return "NOT_IMPLEMENTED";
    case AMQP_INTERNAL_ERROR: return "INTERNAL_ERROR";
    default: return "?";
    }
}

const char *rmq_hint(bool channel, uint16_t code, const char *text, size_t len)
{
    switch (code) {
    case AMQP_NOT_FOUND:
        return channel ? "declare the exchange (or set "
                         "broker.declare_exchange)"
                       : NULL;
    case AMQP_ACCESS_REFUSED:
        return channel ? "grant the user write permission on the exchange "
                         "(configure too, with broker.declare_exchange)"
                       : "check the user name and password";
    case AMQP_NOT_ALLOWED:
        return "check that the vhost exists and the user may use it";
    case AMQP_PRECONDITION_FAILED:
        if (rmq_parse_max_size(text, len) >= 0)
            return "set broker.max_message_size to the server's "
                   "max_message_size so such events are refused before "
                   "they are sent";
        return channel ? "the exchange exists with other settings than "
                         "broker.declare_exchange asks for"
                       : NULL;
    case AMQP_CONNECTION_FORCED:
        return "closed by an operator or a node shutting down; reconnecting";
    default: return NULL;
    }
}
