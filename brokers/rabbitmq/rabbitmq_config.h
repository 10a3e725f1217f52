/* Config struct of the rabbitmq broker, filled by the core from the option
 * table in rabbitmq.c (tests fill it directly). Strings are owned by the
 * core and outlive the instance. */
#ifndef RMQ_CONFIG_H
#define RMQ_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

/* Values of the `declare_exchange` option, in enum-table order. */
typedef enum rmq_conn_declare {
    RMQ_DECLARE_NONE = 0,
    RMQ_DECLARE_TOPIC = 1,
    RMQ_DECLARE_DIRECT = 2,
    RMQ_DECLARE_FANOUT = 3,
    RMQ_DECLARE_HEADERS = 4,
} rmq_conn_declare;

typedef struct rmq_config {
    char *url;                /* amqp[s]://user:pass@host:port/vhost */
    char *password;           /* overrides the URL's password when non-empty */
    char *exchange;           /* route template; "" = the default exchange */
    int declare_exchange;     /* rmq_conn_declare */
    int64_t channels;         /* publishing channels */
    int64_t max_in_flight;    /* unconfirmed messages per channel */
    bool mandatory;           /* basic.return for unroutable messages */
    char *content_type;       /* "" = by payload: JSON or octet-stream */
    char *app_id;             /* the app_id property */
    int64_t heartbeat_ms;     /* requested heartbeat; 0 = off */
    int64_t frame_max;        /* requested frame_max, bytes */
    int64_t max_message_size; /* larger bodies are refused: PERMANENT */
    int64_t connect_timeout_ms;  /* TCP connect + AMQP handshake + login */
    obx_range reconnect_backoff; /* between reconnect attempts */
    char *tls_ca_file;           /* amqps: CA bundle; "" = none */
    char *tls_cert_file;         /* amqps: client certificate */
    char *tls_key_file;          /* amqps: its private key */
    bool tls_verify_peer;        /* amqps: check the server's certificate */
    bool tls_verify_hostname;    /* amqps: and that it names the host */
} rmq_config;

#endif
