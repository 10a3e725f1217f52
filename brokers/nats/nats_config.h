/* Config struct of the nats broker, filled by the core from the option
 * table in nats.c (tests fill it directly). Strings and lists are owned by
 * the core and outlive the instance. */
#ifndef NATSB_CONFIG_H
#define NATSB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

/* Values of the `mode` option. */
typedef enum natsb_mode {
    NATSB_JETSTREAM = 0, /* JetStream publish, a PubAck per event */
    NATSB_CORE = 1,      /* core NATS: fire-and-forget plus a flush */
} natsb_mode;

typedef struct natsb_config {
    obx_list servers; /* nats://host:port, tls://host:port */
    int mode;         /* natsb_mode */
    char *user;
    char *password; /* secret */
    char *token;    /* secret */
    char *nkey;     /* NKey public key ("U..."), with nkey_seed_file */
    char *nkey_seed_file;
    char *creds_file; /* .creds: user JWT + NKey seed */
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    char *tls_hostname; /* expected host name in the server certificate */
    char *stream;       /* the stream events must land in, or NULL */
    obx_list subjects;  /* subjects the stream must capture */
    bool create_stream;
    int64_t duplicate_window_ms; /* for create_stream */
    char *expect_stream;         /* Nats-Expected-Stream, or NULL */
    int64_t max_in_flight;       /* unacknowledged publishes per call */
    int64_t connect_timeout_ms;
    int64_t reconnect_wait_ms;
    int64_t api_timeout_ms; /* JetStream API requests (stream info, ...) */
} natsb_config;

#endif
