/* Helpers for the rabbitmq tests: the private RabbitMQ of the ctest
 * fixture `rabbitmq` (rmq_start.sh; or one of a test's own), rabbitmqctl
 * on it, and a librabbitmq consumer that reads a queue back. Every failure
 * fails the running cmocka test; nothing skips. */
#ifndef OBX_TEST_RMQ_H
#define OBX_TEST_RMQ_H

#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

/* Where the fixture writes rmq_url and rmq_state. */
#define RMQT_STATE_DIR OBX_BUILD_DIR "/tests/rabbitmq"

/* The fixture's AMQP URL (amqp://obx:PASSWORD@127.0.0.1:PORT/); fails the
 * test when the server is not there. Static buffer. */
const char *rmqt_url(void);
/* The same for a server of the test's own, in state_dir. */
const char *rmqt_url_of(const char *state_dir);
/* Its password (the secret part of the URL). Static buffer. */
const char *rmqt_password(const char *url);

/* Start a server of the test's own in state_dir (rmq_start.sh); returns
 * its URL. Stop it with rmqt_server_stop. */
const char *rmqt_server_start(const char *state_dir);
void rmqt_server_stop(const char *state_dir);

/* rabbitmqctl (or rmq_ctl.sh's own `restart N`) on the server of
 * state_dir; returns the exit code. Output goes to stderr. */
int rmqt_ctl(const char *state_dir, const char *fmt, ...);

/* The same, returning its standard output (heap; fails the test on a
 * non-zero exit). */
char *rmqt_ctl_output(const char *state_dir, const char *fmt, ...);

/* A connection with channel 1 open; fails the test on error. */
amqp_connection_state_t rmqt_connect(const char *url);
void rmqt_close(amqp_connection_state_t c);

/* Declare a durable queue and empty it. */
void rmqt_queue(const char *url, const char *queue);
/* Declare a durable exchange of type, and bind queue to it with key. */
void rmqt_bind(const char *url, const char *queue, const char *exchange,
               const char *type, const char *key);
/* Delete an exchange (it may be missing). */
void rmqt_exchange_delete(const char *url, const char *exchange);
/* Messages ready in queue (passive declare). */
uint32_t rmqt_queue_depth(const char *url, const char *queue);

typedef struct rmqt_header {
    char *name;
    char *value; /* NULL for a void value */
} rmqt_header;

typedef struct rmqt_msg {
    char *exchange, *routing_key;
    char *message_id, *type, *app_id, *content_type; /* NULL when absent */
    uint64_t timestamp;
    int delivery_mode;
    rmqt_header *headers;
    size_t n_headers;
    char *body; /* NUL-terminated copy */
    size_t body_len;
} rmqt_msg;

typedef struct rmqt_msgs {
    rmqt_msg *items;
    size_t n;
} rmqt_msgs;

/* Consume queue until at least `want` messages arrived and nothing more
 * came for quiet_ms (so duplicates are seen), or timeout_ms passed. In
 * queue order. */
rmqt_msgs rmqt_consume(const char *url, const char *queue, size_t want,
                       int quiet_ms, int timeout_ms);
void rmqt_msgs_free(rmqt_msgs *m);

/* The value of header name, or NULL. */
const char *rmqt_header_value(const rmqt_msg *m, const char *name);

/* The integer after "seq": in the body (fails the test when none). */
long rmqt_seq(const rmqt_msg *m);

/* Per-key order: for messages of one outbox-aggregate-id, seq increases
 * in queue order. Returns the number of distinct keys. */
size_t rmqt_assert_key_order(const rmqt_msgs *m);

int64_t rmqt_now_ms(void);
void rmqt_sleep_ms(int ms);

#endif
