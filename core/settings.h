/* The core's own keys: [relay] and [pipeline NAME], declared as option
 * tables like any plugin's, so validation and help come from one place. */
#ifndef OBX_CORE_SETTINGS_H
#define OBX_CORE_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

#include "config.h"
#include "options.h"

typedef struct obx_relay_settings {
    char *plugin_path;    /* colon-separated directories, may be "" */
    int log_level;        /* obx_log_level */
    int log_format;       /* obx_log_format */
    char *metrics_listen; /* "127.0.0.1:9464"; "" or "off" disables */
    int64_t shutdown_grace_ms;
    int64_t ready_stall_ms; /* /readyz fails after this long without progress */
} obx_relay_settings;

typedef enum obx_ordering {
    OBX_ORDER_KEY = 0,
    OBX_ORDER_NONE = 1,
} obx_ordering;

/* claim_ahead: auto claims ahead where the store can claim past its own
 * unsettled events (obx_store_ops.claim_ahead), where it was measured
 * to pay; true and false always and never. */
typedef enum obx_claim_ahead {
    OBX_AHEAD_AUTO = 0,
    OBX_AHEAD_ON = 1,
    OBX_AHEAD_OFF = 2,
} obx_claim_ahead;

typedef enum obx_dlq_kind {
    OBX_DLQ_STORE = 0,
    OBX_DLQ_TOPIC = 1,
    OBX_DLQ_NONE = 2,
} obx_dlq_kind;

typedef struct obx_pipeline_settings {
    char *store;  /* plugin name or path */
    char *broker; /* plugin name or path */
    int64_t batch_size;
    int ordering; /* obx_ordering */
    int64_t max_attempts;
    obx_range backoff;
    obx_range circuit_backoff;
    char *dlq;   /* "store" | "topic:NAME" | "none", checked by settings */
    char *topic; /* route template */
    int64_t publish_timeout_ms;
    int64_t poll_interval_ms;
    int64_t once_timeout_ms; /* run --once: give up without progress */
    int claim_ahead;         /* obx_claim_ahead: overlap claim and publish */
    /* derived from dlq by obx_pipeline_settings_fill */
    obx_dlq_kind dlq_kind;
    const char *dlq_topic; /* points into dlq after "topic:" */
} obx_pipeline_settings;

/* Tables, for validation and `outbox-relay help relay|pipeline`. */
obx_optable obx_relay_optable(void);
obx_optable obx_pipeline_optable(void);

/* Fill from the [relay] section (NULL: all defaults). 0 / -1 with err. */
int obx_relay_settings_fill(const char *file, const obx_conf_section *sec,
                            obx_relay_settings *s, char *err, size_t errlen);
void obx_relay_settings_free(obx_relay_settings *s);

/* Fill from a [pipeline] section, ignoring store.* and broker.* keys
 * (they belong to the plugins). Also checks dlq syntax and that the topic
 * template only uses known ${fields}, naming file:line. 0 / -1. */
int obx_pipeline_settings_fill(const char *file, const obx_conf_section *sec,
                               obx_pipeline_settings *s, char *err,
                               size_t errlen);
void obx_pipeline_settings_free(obx_pipeline_settings *s);

#endif
