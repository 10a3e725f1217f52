#include "log.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

void obx_logger_init(obx_logger *lg)
{
    lg->level = OBX_LOG_INFO;
    lg->format = OBX_LOGFMT_TEXT;
    lg->out = stderr;
    pthread_mutex_init(&lg->mu, NULL);
}

void obx_logger_destroy(obx_logger *lg)
{
    pthread_mutex_destroy(&lg->mu);
}

const char *obx_log_level_name(obx_log_level lvl)
{
    static const char *const names[] = {"error", "warn", "info", "debug",
                                        "trace"};
    if ((unsigned)lvl < sizeof names / sizeof names[0])
        return names[lvl];
    return "?";
}

static void format_time(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* JSON string body escaping for the json log format. */
static void put_json_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void obx_vlog(obx_logger *lg, obx_log_level lvl, const char *component,
              const char *fmt, va_list ap)
{
    if (lvl > lg->level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char ts[40];
    format_time(ts, sizeof ts);

    pthread_mutex_lock(&lg->mu);
    if (lg->format == OBX_LOGFMT_JSON) {
        fprintf(lg->out, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
                obx_log_level_name(lvl));
        put_json_escaped(lg->out, component ? component : "core");
        fputs("\",\"msg\":\"", lg->out);
        put_json_escaped(lg->out, msg);
        fputs("\"}\n", lg->out);
    } else {
        fprintf(lg->out, "%s %-5s [%s] %s\n", ts, obx_log_level_name(lvl),
                component ? component : "core", msg);
    }
    fflush(lg->out);
    pthread_mutex_unlock(&lg->mu);
}

void obx_log(obx_logger *lg, obx_log_level lvl, const char *component,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    obx_vlog(lg, lvl, component, fmt, ap);
    va_end(ap);
}
