/* Config struct of the kafka broker, filled by the core from the option
 * table in kafka.c (tests fill it directly). Strings and the pass-through
 * list are owned by the core and outlive the instance. */
#ifndef KFK_CONFIG_H
#define KFK_CONFIG_H

#include <stdint.h>

#include <outbox/options.h>

/* Values of the `timestamp` option. */
typedef enum kfk_ts {
    KFK_TS_CREATED = 0, /* the event's created_at */
    KFK_TS_NOW = 1,     /* the time of the produce call */
} kfk_ts;

typedef struct kfk_config {
    char *brokers;            /* bootstrap.servers: "host:port,host:port" */
    obx_kvlist kafka;         /* broker.kafka.<property> = value, verbatim */
    int64_t max_in_flight;    /* messages handed to librdkafka per call */
    int timestamp;            /* kfk_ts */
    int64_t probe_timeout_ms; /* health probe (metadata request) */
    int64_t close_timeout_ms; /* close(): wait this long for stragglers */
} kfk_config;

#endif
