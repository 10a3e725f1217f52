/* Declarative plugin options (in the spirit of Fluent Bit's config map).
 *
 * A plugin declares one table; the core validates the user's config against
 * it (unknown key with did-you-mean, duplicates, types, ranges, required),
 * fills the plugin's config struct at the declared offsets, masks secrets in
 * every log line and prints `outbox-relay help PLUGIN` from the same table.
 * The plugin never parses a string it did not declare.
 */
#ifndef OUTBOX_OPTIONS_H
#define OUTBOX_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum obx_opt_type {
    OBX_OPT_STRING = 1,   /* char *                                   */
    OBX_OPT_INT = 2,      /* int64_t, within [min, max]               */
    OBX_OPT_BOOL = 3,     /* bool: true/false/yes/no/on/off/1/0       */
    OBX_OPT_DURATION = 4, /* int64_t ms: "250ms", "5s", "2m", "1h", "1d" */
    OBX_OPT_SIZE = 5,     /* int64_t bytes: "512", "64KiB", "1MiB", "1GB" */
    OBX_OPT_ENUM = 6,     /* int: index into enum_values              */
    OBX_OPT_LIST = 7,     /* obx_list: comma-separated, trimmed       */
    OBX_OPT_PREFIX = 8,   /* obx_kvlist: every "name.*" key, passed through */
    OBX_OPT_RANGE = 9,    /* obx_range: "100ms..60s", two durations   */
} obx_opt_type;

#define OBX_OPT_REQUIRED 0x1u /* no default; the user must set it */
#define OBX_OPT_SECRET 0x2u   /* value masked in logs, check and errors */

typedef struct obx_list {
    char **items; /* owned by the core, valid until the plugin is closed */
    size_t n;
} obx_list;

typedef struct obx_kv {
    /* without the prefix: "linger.ms" for "kafka.linger.ms" */
    const char *name;
    const char *value;
    int line; /* config line, for the plugin's own error messages */
} obx_kv;

typedef struct obx_kvlist {
    obx_kv *items; /* owned by the core, valid until the plugin is closed */
    size_t n;
} obx_kvlist;

typedef struct obx_range {
    int64_t min_ms;
    int64_t max_ms;
} obx_range;

/* One row of an option table; a table ends with a row whose name is NULL.
 * For OBX_OPT_PREFIX, name is the prefix without the dot ("kafka"). For
 * OBX_OPT_SECRET prefix options, keys are masked when their name contains
 * "password", "secret", "token" or "key" (e.g. sasl.password). */
typedef struct obx_option {
    const char *name;
    obx_opt_type type;
    const char *def;  /* default as the user would write it, or NULL */
    unsigned flags;   /* OBX_OPT_REQUIRED | OBX_OPT_SECRET */
    int64_t min, max; /* INT/DURATION/SIZE bounds; min == max == 0: none */
    const char *const *enum_values; /* ENUM: NULL-terminated list */
    size_t offset;                  /* offsetof(config struct, field) */
    const char *description;
} obx_option;

#define OBX_OPTIONS_END                                                        \
    {                                                                          \
        NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL                                  \
    }

#endif
