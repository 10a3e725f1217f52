/* Shared by the config tests: plugin-like option tables covering every
 * option type, and a driver that validates a config text the way the relay
 * does (parse, [relay], then each pipeline with its store.* and broker.*
 * keys). */
#ifndef OBX_TEST_CONF_FIXTURE_H
#define OBX_TEST_CONF_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "options.h"
#include "settings.h"

/* A store-like plugin config: one field per option type. */
typedef struct tstore_conf {
    char *path;         /* string, required */
    char *password;     /* string, secret */
    int64_t retries;    /* int 0..10, default 3 */
    int64_t pin;        /* int, secret */
    bool verbose;       /* bool, default false */
    int64_t timeout_ms; /* duration 1ms..1h, default 5s */
    int64_t max_bytes;  /* size 1..1GiB, default 1MiB */
    int mode;           /* enum fast|safe|paranoid, default safe */
    obx_list hosts;     /* list, default "localhost" */
    obx_kvlist kafka;   /* prefix "kafka", secret */
    obx_range window;   /* range 1ms..1d, default 1s..10s */
    char *label;        /* string, no default: NULL when unset */
} tstore_conf;

/* A broker-like plugin config. */
typedef struct tbroker_conf {
    bool pretty; /* bool, default false */
} tbroker_conf;

obx_optable tstore_optable(void);
obx_optable tbroker_optable(void);

/* Validate `text` as file "t.conf" through every stage. Returns 0, or -1
 * with err filled by the first failing stage. Frees everything. */
int conf_check_all(const char *text, char *err, size_t errlen);

#endif
