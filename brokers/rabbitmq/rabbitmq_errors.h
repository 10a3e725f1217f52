/* RabbitMQ failures -> what the engine does with the events.
 *
 * Kept apart from the plugin so the table has its own unit test
 * (in tests/rabbitmq/test_rabbitmq_units.c) and the reasoning sits in one
 * place. Compiled into the plugin with hidden visibility: not exported.
 * Pure functions: no state, any thread.
 */
#ifndef RMQ_ERRORS_H
#define RMQ_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>
#include <outbox/status.h>

/* A librabbitmq status code (AMQP_STATUS_*, negative) returned while
 * connecting, publishing or reading frames:
 *  - OBX_OK for AMQP_STATUS_OK;
 *  - OBX_PERMANENT for the codes that are about the message being encoded
 *    (AMQP_STATUS_TABLE_TOO_BIG: its properties do not fit a frame);
 *  - OBX_UNAVAILABLE for everything else: refused, reset, closed,
 *    heartbeat timeout, TLS, name resolution, protocol errors. The
 *    connection is unusable; nothing says the event is at fault. */
obx_status rmq_classify_library(int amqp_status);

/* A connection.close (channel == false) or channel.close sent by the
 * server with reply_code and reply_text (len bytes, not terminated):
 *  - connection.close: always OBX_UNAVAILABLE (320 CONNECTION_FORCED by an
 *    operator or a node stopping, 403 ACCESS_REFUSED at login, 530
 *    NOT_ALLOWED for a missing vhost, 5xx hard errors);
 *  - channel.close 406 PRECONDITION_FAILED about a message size: the
 *    message is larger than the server's max_message_size: OBX_PERMANENT
 *    (for that message only; see rmq_parse_max_size);
 *  - any other channel.close (404 NOT_FOUND for a missing exchange, 403
 *    ACCESS_REFUSED for a missing permission, 406 for a declaration that
 *    does not match the existing exchange): OBX_UNAVAILABLE. These are
 *    configuration: no event is poison, none may burn its attempts. */
obx_status rmq_classify_close(bool channel, uint16_t reply_code,
                              const char *reply_text, size_t len);

/* Whether a channel.close reply text says a message exceeded the server's
 * max_message_size ("message size 2000000 is larger than configured max
 * size 1048576"). Returns that max (>= 0), or -1 when the text is not
 * about it. */
int64_t rmq_parse_max_size(const char *reply_text, size_t len);

/* A body of body_len bytes against the configured max_message_size:
 * OBX_OK or OBX_PERMANENT. A content-header frame of header_len bytes
 * (properties and headers) against the negotiated frame_max: the same.
 * The body is split into frames by the library; the header is not. */
obx_status rmq_classify_size(size_t body_len, int64_t max_message_size,
                             size_t header_len, int frame_max);

/* A message whose confirm did not arrive within the publish timeout:
 * OBX_RETRY (it alone is stuck: counts an attempt) when a message sent
 * after it in the call was answered (ack or nack), else OBX_UNAVAILABLE
 * (the server, or the link, stopped answering: the circuit opens, no
 * attempt is counted). Not "others were confirmed": when the link dies in
 * the middle of a call, the messages before it are confirmed and those
 * after it are not, and that is an outage, not their fault. */
obx_status rmq_classify_timeout(bool later_answered);

/* The symbolic name of an AMQP reply code (404 -> "NOT_FOUND"), or "?".
 * Static string. */
const char *rmq_reply_name(uint16_t reply_code);

/* A short advice for the operator about a server close, or NULL. Static
 * string. */
const char *rmq_hint(bool channel, uint16_t reply_code, const char *reply_text,
                     size_t len);

#endif
