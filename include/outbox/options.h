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

/* One row of an option table; a table ends with OBX_OPTIONS_END (a row
 * whose name is NULL). Since 1.0; it can grow, as the descriptor carries
 * its stride (obx_plugin.option_size). Write rows with the OBX_OPT_*()
 * macros below rather than by hand: they check the field's type at
 * compile time.
 * For OBX_OPT_PREFIX, name is the prefix without the dot ("kafka"). For
 * OBX_OPT_SECRET prefix options, keys are masked when their name contains
 * one of OBX_SECRET_WORDS (<outbox/secret.h>: "password", "passwd",
 * "secret", "token", "key"; e.g. sasl.password). */
typedef struct obx_option {
    const char *name;
    obx_opt_type type;
    const char *def; /* default as the user would write it, or NULL */
    unsigned flags;  /* OBX_OPT_REQUIRED | OBX_OPT_SECRET */
    /* INT/DURATION/SIZE: the value's bounds; RANGE: bounds of both ends.
     * OBX_NO_BOUNDS (INT64_MIN, INT64_MAX; since 1.2) means none, and so
     * does min == max == 0, which 1.0/1.1 tables use. */
    int64_t min, max;
    const char *const *enum_values; /* ENUM: NULL-terminated list */
    size_t offset;                  /* offsetof(config struct, field) */
    const char *description;
} obx_option;

#define OBX_OPTIONS_END                                                        \
    {                                                                          \
        NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL                                  \
    }

/* ---- typed rows ------------------------------------------------------
 *
 * One macro per option type, each taking the config struct type and the
 * member the value is written to; a member of the wrong type or width is
 * a compile error ("OBX_OPT_INT: field must be int64_t"), not memory
 * corrupted at run time. C11 only (the check is a _Static_assert inside
 * the row's offset expression).
 *
 *   OBX_OPT_STRING(conf, field, "name", "default", "help")    char *
 *   OBX_OPT_INT(conf, field, "name", "default", min, max, "help") int64_t
 *   OBX_OPT_INT_ANY(conf, field, "name", "default", "help")   int64_t
 *   OBX_OPT_BOOL(conf, field, "name", "default", "help")      bool
 *   OBX_OPT_DURATION(conf, field, "name", "5s", min_ms, max_ms, "help")
 *   OBX_OPT_DURATION_ANY(conf, field, "name", "5s", "help")  int64_t ms
 *   OBX_OPT_SIZE(conf, field, "name", "1MiB", min, max, "help")
 *   OBX_OPT_SIZE_ANY(conf, field, "name", "1MiB", "help")    int64_t bytes
 *   OBX_OPT_ENUM(conf, field, "name", "default", values, "help")  int
 *   OBX_OPT_LIST(conf, field, "name", "a,b", "help")         obx_list
 *   OBX_OPT_RANGE(conf, field, "name", "1s..30s", min, max, "help")
 *   OBX_OPT_RANGE_ANY(conf, field, "name", "1s..30s", "help") obx_range
 *   OBX_OPT_PREFIX(conf, field, "name", "help")              obx_kvlist
 *   OBX_OPT_SECRET_PREFIX(conf, field, "name", "help")       obx_kvlist
 *
 * Bounded forms need min <= max, checked at compile time, and refuse
 * min == max == 0 (which old tables use for "none"): say *_ANY instead.
 * The default is a string as the user would write it, or NULL (no
 * default: the member stays zero/NULL). In place of the default write
 *   OBX_REQUIRED          no default; the user must set the key
 *   OBX_SECRET("def")     default "def"; the value is masked everywhere
 *   OBX_REQUIRED_SECRET   both
 */

/* min and max of an option without bounds (since 1.2). */
#define OBX_NO_BOUNDS INT64_MIN, INT64_MAX

/* Default-position spellings of the flags; see above. Each expands to the
 * default and the flags, which follow it in obx_option. */
#define OBX_REQUIRED NULL, OBX_OPT_REQUIRED
#define OBX_SECRET(def) def, OBX_OPT_SECRET
#define OBX_REQUIRED_SECRET NULL, OBX_OPT_REQUIRED | OBX_OPT_SECRET

/* offsetof(conf, field), plus 0 * the size of a struct whose only job is
 * to hold the _Static_assert (a declaration cannot sit in an initializer
 * otherwise). &field, not field, so arrays do not decay and qualifiers
 * count. */
#define OBX_OPT_OFFSET_(conf, field, ctype, ok, msg)                           \
    (offsetof(conf, field) +                                                   \
     0 * sizeof(struct {                                                       \
         _Static_assert(                                                       \
             sizeof(((conf *)0)->field) == sizeof(ctype) &&                    \
                 _Generic(&((conf *)0)->field, ctype * : 1, default : 0),      \
             msg);                                                             \
         _Static_assert(ok, "option bounds: need min <= max, and not 0..0 "    \
                            "(write the _ANY form for no bounds)");            \
         int obx_unused_;                                                      \
     }))

#define OBX_OPT_BOUNDED_(lo, hi) ((lo) <= (hi) && ((lo) != 0 || (hi) != 0))

/* The macros spell out every row themselves (no inner macro call) because
 * `def` may expand to two initializers (OBX_REQUIRED). */
#define OBX_OPT_STRING(conf, field, name_, def_, help)                         \
    {                                                                          \
        .name = name_, .type = OBX_OPT_STRING, .def = def_,                    \
        .offset = OBX_OPT_OFFSET_(conf, field, char *, 1,                      \
                                  "OBX_OPT_STRING: field must be char *"),     \
        .description = help                                                    \
    }

#define OBX_OPT_INT(conf, field, name_, def_, lo, hi, help)                    \
    {                                                                          \
        .name = name_, .type = OBX_OPT_INT, .def = def_, .min = (lo),          \
        .max = (hi),                                                           \
        .offset =                                                              \
            OBX_OPT_OFFSET_(conf, field, int64_t, OBX_OPT_BOUNDED_(lo, hi),    \
                            "OBX_OPT_INT: field must be int64_t"),             \
        .description = help                                                    \
    }

#define OBX_OPT_INT_ANY(conf, field, name_, def_, help)                        \
    {                                                                          \
        .name = name_, .type = OBX_OPT_INT, .def = def_, .min = INT64_MIN,     \
        .max = INT64_MAX,                                                      \
        .offset = OBX_OPT_OFFSET_(conf, field, int64_t, 1,                     \
                                  "OBX_OPT_INT_ANY: field must be int64_t"),   \
        .description = help                                                    \
    }

#define OBX_OPT_BOOL(conf, field, name_, def_, help)                           \
    {                                                                          \
        .name = name_, .type = OBX_OPT_BOOL, .def = def_,                      \
        .offset = OBX_OPT_OFFSET_(conf, field, bool, 1,                        \
                                  "OBX_OPT_BOOL: field must be bool"),         \
        .description = help                                                    \
    }

#define OBX_OPT_DURATION(conf, field, name_, def_, lo, hi, help)               \
    {                                                                          \
        .name = name_, .type = OBX_OPT_DURATION, .def = def_, .min = (lo),     \
        .max = (hi),                                                           \
        .offset =                                                              \
            OBX_OPT_OFFSET_(conf, field, int64_t, OBX_OPT_BOUNDED_(lo, hi),    \
                            "OBX_OPT_DURATION: field must be int64_t "         \
                            "(ms)"),                                           \
        .description = help                                                    \
    }

#define OBX_OPT_DURATION_ANY(conf, field, name_, def_, help)                   \
    {                                                                          \
        .name = name_, .type = OBX_OPT_DURATION, .def = def_,                  \
        .min = INT64_MIN, .max = INT64_MAX,                                    \
        .offset = OBX_OPT_OFFSET_(conf, field, int64_t, 1,                     \
                                  "OBX_OPT_DURATION_ANY: field must be "       \
                                  "int64_t (ms)"),                             \
        .description = help                                                    \
    }

#define OBX_OPT_SIZE(conf, field, name_, def_, lo, hi, help)                   \
    {                                                                          \
        .name = name_, .type = OBX_OPT_SIZE, .def = def_, .min = (lo),         \
        .max = (hi),                                                           \
        .offset =                                                              \
            OBX_OPT_OFFSET_(conf, field, int64_t, OBX_OPT_BOUNDED_(lo, hi),    \
                            "OBX_OPT_SIZE: field must be int64_t "             \
                            "(bytes)"),                                        \
        .description = help                                                    \
    }

#define OBX_OPT_SIZE_ANY(conf, field, name_, def_, help)                       \
    {                                                                          \
        .name = name_, .type = OBX_OPT_SIZE, .def = def_, .min = INT64_MIN,    \
        .max = INT64_MAX,                                                      \
        .offset = OBX_OPT_OFFSET_(conf, field, int64_t, 1,                     \
                                  "OBX_OPT_SIZE_ANY: field must be int64_t "   \
                                  "(bytes)"),                                  \
        .description = help                                                    \
    }

#define OBX_OPT_ENUM(conf, field, name_, def_, values, help)                   \
    {                                                                          \
        .name = name_, .type = OBX_OPT_ENUM, .def = def_,                      \
        .enum_values = values,                                                 \
        .offset = OBX_OPT_OFFSET_(conf, field, int, 1,                         \
                                  "OBX_OPT_ENUM: field must be int"),          \
        .description = help                                                    \
    }

#define OBX_OPT_LIST(conf, field, name_, def_, help)                           \
    {                                                                          \
        .name = name_, .type = OBX_OPT_LIST, .def = def_,                      \
        .offset = OBX_OPT_OFFSET_(conf, field, obx_list, 1,                    \
                                  "OBX_OPT_LIST: field must be obx_list"),     \
        .description = help                                                    \
    }

#define OBX_OPT_RANGE(conf, field, name_, def_, lo, hi, help)                  \
    {                                                                          \
        .name = name_, .type = OBX_OPT_RANGE, .def = def_, .min = (lo),        \
        .max = (hi),                                                           \
        .offset =                                                              \
            OBX_OPT_OFFSET_(conf, field, obx_range, OBX_OPT_BOUNDED_(lo, hi),  \
                            "OBX_OPT_RANGE: field must be obx_range"),         \
        .description = help                                                    \
    }

#define OBX_OPT_RANGE_ANY(conf, field, name_, def_, help)                      \
    {                                                                          \
        .name = name_, .type = OBX_OPT_RANGE, .def = def_, .min = INT64_MIN,   \
        .max = INT64_MAX,                                                      \
        .offset = OBX_OPT_OFFSET_(conf, field, obx_range, 1,                   \
                                  "OBX_OPT_RANGE_ANY: field must be "          \
                                  "obx_range"),                                \
        .description = help                                                    \
    }

#define OBX_OPT_PREFIX(conf, field, name_, help)                               \
    {                                                                          \
        .name = name_, .type = OBX_OPT_PREFIX,                                 \
        .offset = OBX_OPT_OFFSET_(conf, field, obx_kvlist, 1,                  \
                                  "OBX_OPT_PREFIX: field must be obx_kvlist"), \
        .description = help                                                    \
    }

#define OBX_OPT_SECRET_PREFIX(conf, field, name_, help)                        \
    {                                                                          \
        .name = name_, .type = OBX_OPT_PREFIX, .flags = OBX_OPT_SECRET,        \
        .offset = OBX_OPT_OFFSET_(conf, field, obx_kvlist, 1,                  \
                                  "OBX_OPT_PREFIX: field must be obx_kvlist"), \
        .description = help                                                    \
    }

#endif
