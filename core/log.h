/* Process logger: levels, text or JSON lines, one mutex-guarded stream. */
#ifndef OBX_CORE_LOG_H
#define OBX_CORE_LOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <outbox/host.h>

typedef enum obx_log_format {
    OBX_LOGFMT_TEXT = 0,
    OBX_LOGFMT_JSON = 1,
} obx_log_format;

typedef struct obx_logger {
    /* atomic: a reload sets them while pipeline threads log */
    _Atomic obx_log_level level;
    _Atomic obx_log_format format;
    FILE *out; /* borrowed; stderr by default */
    pthread_mutex_t mu;
} obx_logger;

/* Initialise with stderr, info, text. Never fails. */
void obx_logger_init(obx_logger *lg);
void obx_logger_destroy(obx_logger *lg);

/* Write one line: `component` names its source ("core", "orders/sqlite").
 * Thread-safe. Callers mask secrets before formatting them in. */
void obx_log(obx_logger *lg, obx_log_level lvl, const char *component,
             const char *fmt, ...) OBX_PRINTF(4, 5);
void obx_vlog(obx_logger *lg, obx_log_level lvl, const char *component,
              const char *fmt, va_list ap);

/* Whether a line at lvl would be written: skip costly formatting if not. */
static inline int obx_log_enabled(const obx_logger *lg, obx_log_level lvl)
{
    return lvl <= lg->level;
}

/* Level names: "error", "warn", "info", "debug", "trace". */
const char *obx_log_level_name(obx_log_level lvl);

#endif
