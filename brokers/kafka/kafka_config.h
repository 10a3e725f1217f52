/* Config struct of the kafka broker, filled by the core from the option
 * table in kafka.c (tests fill it directly). Strings and the pass-through
 * list are owned by the core and outlive the instance. */
#ifndef OBX_BROKER_KAFKA_CONFIG_H
#define OBX_BROKER_KAFKA_CONFIG_H

#include <stdint.h>

#include <outbox/options.h>

/* Values of the `timestamp` option. */
typedef enum obx_kafka_ts {
    OBX_KAFKA_TS_CREATED = 0, /* the event's created_at */
    OBX_KAFKA_TS_NOW = 1,     /* the time of the produce call */
} obx_kafka_ts;

typedef struct obx_kafka_config {
    char *brokers;            /* bootstrap.servers: "host:port,host:port" */
    obx_kvlist kafka;         /* broker.kafka.<property> = value, verbatim */
    int64_t max_in_flight;    /* messages handed to librdkafka per call */
    int timestamp;            /* obx_kafka_ts */
    int64_t probe_timeout_ms; /* health probe (metadata request) */
    int64_t close_timeout_ms; /* close(): wait this long for stragglers */
} obx_kafka_config;

#endif
