/* Reaching a RabbitMQ server with librabbitmq-c 0.11: the URL, the TCP or
 * TLS socket, the AMQP handshake and login (client properties with the
 * connection name and the capabilities we rely on), channels in confirm
 * mode, exchange declaration. No state of its own beyond rmq_target:
 * the plugin (rabbitmq.c) owns the connection and decides when to call.
 * One thread per connection, as librabbitmq requires.
 */
#ifndef RMQ_CONN_H
#define RMQ_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <amqp.h>
#include <outbox/status.h>

#include "rabbitmq_config.h"

/* broker.url, parsed; the password from broker.password when set. */
typedef struct rmq_target {
    char buf[2048]; /* amqp_parse_url works in place: the strings below */
    char *user, *password, *host, *vhost;
    int port;
    bool tls;
} rmq_target;

/* Parse c->url into t. OBX_CONFIG with errstr (which never shows the
 * password) when the URL is malformed or too long; OBX_OK. An empty vhost
 * (amqp://host/) means the default vhost "/". */
obx_status rmq_target_parse(const rmq_config *c, rmq_target *t, char *errstr,
                            size_t errlen);

/* The target without its password, "amqp://user@host:port/vhost" (the
 * default vhost "/" shown as nothing), for
 * logs and errors. Always NUL-terminates. */
void rmq_target_show(const rmq_target *t, char *buf, size_t len);

/* Open a connection and log in: TCP (or TLS with the tls.* options) within
 * connect_timeout, heartbeat and frame_max as configured (the server may
 * lower them), client properties connection_name = conn_name and the
 * capabilities publisher_confirms, connection.blocked, basic.nack.
 * *out owns the connection (rmq_disconnect). OBX_UNAVAILABLE when the
 * server cannot be reached or refuses us (refused, reset, timeout, TLS,
 * authentication, vhost), OBX_CONFIG for unusable TLS files, OBX_NOMEM. */
obx_status rmq_conn_connect(const rmq_config *c, const rmq_target *t,
                            const char *conn_name, amqp_connection_state_t *out,
                            char *errstr, size_t errlen);

/* channel.open and confirm.select on ch. OBX_OK, else OBX_UNAVAILABLE
 * with the reason (the connection is then best dropped). */
obx_status rmq_channel_open(amqp_connection_state_t conn, amqp_channel_t ch,
                            char *errstr, size_t errlen);

/* exchange.declare (durable, not auto-delete) of name with type on ch,
 * an open channel; passive: only check that it exists (type ignored).
 * OBX_OK; OBX_UNAVAILABLE with the server's reason (the channel is closed
 * by the server then: reopen it). */
obx_status rmq_declare_exchange(amqp_connection_state_t conn, amqp_channel_t ch,
                                const char *name, const char *type,
                                bool passive, char *errstr, size_t errlen);

/* What an RPC reply says, as "what: reason"; the status the reply
 * deserves (rmq_classify_*). OBX_OK for a normal reply. */
obx_status rmq_reply(amqp_rpc_reply_t r, const char *what, char *errstr,
                     size_t errlen);

/* Close (graceful: connection.close and wait for close-ok up to the RPC
 * timeout) and free the connection. conn may be NULL. */
void rmq_disconnect(amqp_connection_state_t conn, bool graceful);

#endif
