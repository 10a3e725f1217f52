#include "log.h"

#include <stdlib.h>

#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "escape.h"

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

static void write_line(FILE *f, obx_log_format format, const char *ts,
                       obx_log_level lvl, const char *component,
                       const char *msg)
{
    if (format == OBX_LOGFMT_JSON) {
        fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
                obx_log_level_name(lvl));
        obx_put_json_escaped(f, component ? component : "core");
        fputs("\",\"msg\":\"", f);
        obx_put_json_escaped(f, msg);
        fputs("\"}\n", f);
    } else {
        fprintf(f, "%s %-5s [", ts, obx_log_level_name(lvl));
        obx_put_text_escaped(f, component ? component : "core", false);
        fputs("] ", f);
        obx_put_text_escaped(f, msg, false);
        fputc('\n', f);
    }
}

void obx_vlog(obx_logger *lg, obx_log_level lvl, const char *component,
              const char *fmt, va_list ap)
{
    if (lvl > lg->level)
        return;
    /* Most lines fit the stack buffer; a longer one (a libpq error with
     * its context) is formatted again on the heap rather than cut. */
    char small[2048], *msg = small;
    va_list again;
    va_copy(again, ap);
    int need = vsnprintf(small, sizeof small, fmt, ap);
    if (need >= (int)sizeof small) {
        char *big = malloc((size_t)need + 1);
        if (big) {
            vsnprintf(big, (size_t)need + 1, fmt, again);
            msg = big;
        }
    }
    va_end(again);
    char ts[40];
    format_time(ts, sizeof ts);

    /* The line is put together in memory and written with one call: the
     * output is usually stderr, which is unbuffered, and the escaping
     * writes byte by byte (a write(2) per byte, and lines that another
     * writer of the same pipe could split). Without memory for that, it
     * goes out piecewise. */
    char *line = NULL;
    size_t line_len = 0;
    obx_log_format format = lg->format;
    FILE *mem = open_memstream(&line, &line_len);
    if (mem) {
        write_line(mem, format, ts, lvl, component, msg);
        if (fclose(mem) != 0)
            line_len = 0;
    }
    pthread_mutex_lock(&lg->mu);
    if (mem)
        fwrite(line, 1, line_len, lg->out);
    else
        write_line(lg->out, format, ts, lvl, component, msg);
    fflush(lg->out);
    pthread_mutex_unlock(&lg->mu);
    free(line);
    if (msg != small)
        free(msg);
}

void obx_log(obx_logger *lg, obx_log_level lvl, const char *component,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    obx_vlog(lg, lvl, component, fmt, ap);
    va_end(ap);
}
