#include "jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The batch is handed to stdio in chunks of this size, so a large batch
 * never holds all its lines in memory at once. */
#define CHUNK_BYTES (64 * 1024)
/* A buffer grown past this by one huge event is released after the batch,
 * so a single outlier does not pin memory for the instance's lifetime. */
#define KEEP_BYTES (1024 * 1024)

/* ---- buffer ---------------------------------------------------------- */

int obc_jbuf_reserve(obc_jbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 4 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void obc_jbuf_free(obc_jbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int put_raw(obc_jbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (obc_jbuf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_lit(obc_jbuf *b, const char *s)
{
    return put_raw(b, s, strlen(s));
}

/* ---- string escaping ------------------------------------------------- */

/* 0: copy as is; 1: needs a backslash escape; 2: a byte >= 0x80, the
 * start of a UTF-8 sequence to validate. A table keeps the common case
 * (long runs of plain ASCII) to one load and compare per byte. */
#define C1 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define C0 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define C2 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2
static const unsigned char char_class[256] = {
    C1, C1,                                                 /* 0x00-0x1f */
    0,  0,  1,  0,  0,  0,  0,  0,  0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
    C0, C0,                                                 /* 0x30-0x4f */
    0,  0,  0,  0,  0,  0,  0,  0,  0, 0, 0, 0, 1, 0, 0, 0, /* 0x50 '\\' */
    C0, C0,                                                 /* 0x60-0x7f */
    C2, C2, C2, C2, C2, C2, C2, C2,                         /* 0x80-0xff */
};
#undef C0
#undef C1
#undef C2

static char *put_escape(char *o, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
        memcpy(o, "u00", 3);
        o[3] = hex[c >> 4];
        o[4] = hex[c & 15];
        o += 5;
    }
    return o;
}

static int in_range(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

size_t obc_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (in_range(c, 0xc2, 0xdf))
        len = 2;
    else if (in_range(c, 0xe0, 0xef))
        len = 3;
    else if (in_range(c, 0xf0, 0xf4))
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || !in_range(s[1], lo, hi))
        return 0;
    for (size_t i = 2; i < len; i++)
        if (!in_range(s[i], 0x80, 0xbf))
            return 0;
    return len;
}

/* Append s[0..n) as a JSON string. Invalid UTF-8 bytes become U+FFFD, one
 * per byte, so the output is always valid JSON (binary data is lossy: a
 * JSON string cannot carry it). */
static int put_string(obc_jbuf *b, const unsigned char *s, size_t n)
{
    /* Worst case: every byte becomes \u00XX. */
    if (n > (SIZE_MAX / 4 - 2) / 6 || obc_jbuf_reserve(b, 6 * n + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && char_class[s[run]] == 0)
            run++;
        memcpy(o, s + i, run - i);
        o += run - i;
        i = run;
        if (i == n)
            break;
        if (char_class[s[i]] == 1) {
            o = put_escape(o, s[i++]);
            continue;
        }
        size_t k = obc_utf8_len(s + i, n - i);
        if (k == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* A NUL-terminated field, or JSON null when absent. */
static int put_cstr(obc_jbuf *b, const char *s)
{
    if (!s)
        return put_lit(b, "null");
    return put_string(b, (const unsigned char *)s, strlen(s));
}

/* ---- JSON layout ----------------------------------------------------- */

/* Index just past the string literal opening at s[i] (s is valid JSON). */
static size_t string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int put_newline(obc_jbuf *b, int depth)
{
    size_t n = 1 + 2 * (size_t)(depth > 0 ? depth : 0);
    if (obc_jbuf_reserve(b, n) != 0)
        return -1;
    b->data[b->len] = '\n';
    memset(b->data + b->len + 1, ' ', n - 1);
    b->len += n;
    return 0;
}

/* Copy valid JSON text without the whitespace between tokens. Tokens are
 * copied byte for byte, so numbers keep their exact spelling (a parse and
 * dump round trip would print 19.99 as 19.989999999999998). */
static int minify(obc_jbuf *b, const char *s, size_t n)
{
    if (obc_jbuf_reserve(b, n) != 0)
        return -1;
    char *o = b->data + b->len;
    for (size_t i = 0; i < n;) {
        if (s[i] == '"') {
            size_t end = string_end(s, n, i);
            memcpy(o, s + i, end - i);
            o += end - i;
            i = end;
        } else {
            if (!is_json_ws(s[i]))
                *o++ = s[i];
            i++;
        }
    }
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Copy valid JSON text with a line per member or element, indented. */
static int indent(obc_jbuf *b, const char *s, size_t n)
{
    int depth = 0, rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char c = s[i];
        if (c == '"') {
            size_t end = string_end(s, n, i);
            rc = put_raw(b, s + i, end - i);
            i = end - 1;
        } else if (is_json_ws(c)) {
            continue;
        } else if (c == '{' || c == '[') {
            size_t j = i + 1;
            while (j < n && is_json_ws(s[j]))
                j++;
            if (j < n && (s[j] == '}' || s[j] == ']')) {
                rc = put_raw(b, c == '{' ? "{}" : "[]", 2);
                i = j;
            } else {
                rc = put_raw(b, &c, 1) || put_newline(b, ++depth);
            }
        } else if (c == '}' || c == ']') {
            rc = put_newline(b, --depth) || put_raw(b, &c, 1);
        } else if (c == ',') {
            rc = put_raw(b, ",", 1) || put_newline(b, depth);
        } else if (c == ':') {
            rc = put_raw(b, ": ", 2);
        } else {
            rc = put_raw(b, &c, 1);
        }
    }
    return rc;
}

int obc_jsonl_reindent(obc_jbuf *out, const char *json, size_t len)
{
    size_t start = out->len;
    if (indent(out, json, len) != 0 || put_raw(out, "\n", 1) != 0) {
        out->len = start;
        return -1;
    }
    return 0;
}

/* ---- event ----------------------------------------------------------- */

static int put_payload(obc_jbuf *b, const void *payload, size_t n)
{
    const unsigned char *p = payload;
    if (!obc_json_valid(p, n))
        return put_string(b, p, n);
    /* A raw line break would end the JSON line early. Valid JSON has line
     * breaks only as whitespace between tokens, so dropping whitespace is
     * enough and keeps every token as written. */
    if (memchr(p, '\n', n) || memchr(p, '\r', n))
        return minify(b, payload, n);
    return put_raw(b, payload, n);
}

static int put_headers(obc_jbuf *b, const obx_event *ev)
{
    if (put_raw(b, "{", 1) != 0)
        return -1;
    size_t written = 0;
    for (size_t i = 0; ev->headers && i < ev->n_headers; i++) {
        const obx_header *h = &ev->headers[i];
        if (!h->name)
            continue;
        if ((written++ && put_raw(b, ",", 1) != 0) ||
            put_cstr(b, h->name) != 0 || put_raw(b, ":", 1) != 0 ||
            put_cstr(b, h->value) != 0)
            return -1;
    }
    return put_raw(b, "}", 1);
}

int obc_jsonl_format(obc_jbuf *out, const obx_event *ev)
{
    size_t start = out->len;
    const char *topic = ev->destination ? ev->destination : ev->topic;
    if (put_lit(out, "{\"event_id\":") || put_cstr(out, ev->event_id) ||
        put_lit(out, ",\"topic\":") || put_cstr(out, topic) ||
        put_lit(out, ",\"key\":") || put_cstr(out, ev->key) ||
        put_lit(out, ",\"event_type\":") || put_cstr(out, ev->event_type) ||
        put_lit(out, ",\"aggregate_type\":") ||
        put_cstr(out, ev->aggregate_type) || put_lit(out, ",\"headers\":") ||
        put_headers(out, ev) || put_lit(out, ",\"payload\":") ||
        put_payload(out, ev->payload, ev->payload_len) || put_lit(out, "}\n")) {
        out->len = start;
        return -1;
    }
    return 0;
}

/* ---- sink ------------------------------------------------------------ */

static void sink_log(const obc_jsonl_sink *s, obx_log_level lv, const char *fmt,
                     ...) OBX_PRINTF(3, 4);

static void sink_log(const obc_jsonl_sink *s, obx_log_level lv, const char *fmt,
                     ...)
{
    if (!s->host || !s->host->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->host->log(s->host, lv, "%s", line);
}

static int is_stdout(const char *output)
{
    return !output || strcmp(output, "-") == 0;
}

static const char *errtext(int err, char *buf, size_t len)
{
    return strerror_r(err, buf, len); /* the GNU variant (_GNU_SOURCE) */
}

obx_status obc_jsonl_validate(const obc_jsonl_config *conf, bool connect,
                              char *errstr, size_t errlen)
{
    char eb[128];
    const char *path = conf->output;
    if (path && path[0] == '\0') {
        snprintf(errstr, errlen, "output: use '-' or a file path");
        return OBX_CONFIG;
    }
    if (!connect || is_stdout(path))
        return OBX_OK;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(errstr, errlen, "output '%s' is a directory", path);
            return OBX_CONFIG;
        }
        if (access(path, W_OK) != 0) {
            snprintf(errstr, errlen, "output '%s' is not writable: %s", path,
                     errtext(errno, eb, sizeof eb));
            return OBX_CONFIG;
        }
        return OBX_OK;
    }
    char *copy = strdup(path);
    if (!copy)
        return OBX_NOMEM;
    int ok = access(dirname(copy), W_OK) == 0;
    int err = errno;
    free(copy);
    if (!ok) {
        snprintf(errstr, errlen, "cannot create output '%s': %s", path,
                 errtext(err, eb, sizeof eb));
        return OBX_CONFIG;
    }
    return OBX_OK;
}

obx_status obc_jsonl_sink_open(obc_jsonl_sink *s, const obx_host *host,
                               const obc_jsonl_config *conf, char *errstr,
                               size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->host = host;
    s->pretty = conf->pretty;
    obx_status st = obc_jsonl_validate(conf, false, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (is_stdout(conf->output)) {
        s->fp = stdout;
        snprintf(s->name, sizeof s->name, "stdout");
    } else {
        char eb[128];
        int fd =
            open(conf->output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || !(s->fp = fdopen(fd, "a"))) {
            snprintf(errstr, errlen, "cannot open output '%s': %s",
                     conf->output, errtext(errno, eb, sizeof eb));
            if (fd >= 0)
                close(fd);
            return OBX_CONFIG;
        }
        s->own_fp = true;
        /* Lines are batched here already; unbuffered, each drain is one
         * write(2) of whole lines, which O_APPEND makes atomic: several
         * relays appending to one file never tear each other's lines. */
        setvbuf(s->fp, NULL, _IONBF, 0);
        snprintf(s->name, sizeof s->name, "%s", conf->output);
    }
    struct stat sb;
    bool regular = false;
    if (fstat(fileno(s->fp), &sb) == 0) {
        regular = S_ISREG(sb.st_mode);
        s->is_pipe = S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode);
    }
    s->fsync = conf->fsync && regular;
    if (conf->fsync && !regular)
        sink_log(s, OBX_LOG_INFO, "fsync ignored: %s is not a regular file",
                 s->name);
    return OBX_OK;
}

/* Writing to a pipe whose reader left raises SIGPIPE, which kills the
 * process by default. A plugin must not change process-wide signal
 * dispositions, so block it in this thread around the write and consume
 * the one the write raised, leaving any earlier pending one alone. */
typedef struct sigpipe_guard {
    bool active;
    bool was_pending;
    sigset_t old;
} sigpipe_guard;

static void guard_enter(sigpipe_guard *g, bool active)
{
    g->active = active;
    if (!active)
        return;
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void guard_leave(sigpipe_guard *g, int err)
{
    if (!g->active)
        return;
    if (err == EPIPE && !g->was_pending) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* fwrite then optionally fflush; 0 or the errno of the failure. */
static int write_out(obc_jsonl_sink *s, const char *p, size_t n, bool flush)
{
    sigpipe_guard g;
    guard_enter(&g, s->is_pipe);
    int err = 0;
    errno = 0;
    if (n > 0 && fwrite(p, 1, n, s->fp) != n)
        err = errno ? errno : EIO;
    if (!err && flush && fflush(s->fp) != 0)
        err = errno ? errno : EIO;
    guard_leave(&g, err);
    return err;
}

/* The last byte of the regular file behind fd: '\n' when empty, NOT_FILE
 * when fd is no regular file, UNKNOWN when it cannot be read. */
enum { NOT_FILE = -2, UNKNOWN = -1 };
static int last_byte(int fd)
{
    struct stat sb;
    unsigned char c;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return NOT_FILE;
    if (sb.st_size == 0)
        return '\n';
    if (pread(fd, &c, 1, sb.st_size - 1) == 1)
        return c;
    /* A write-only descriptor (our own file, or stdout redirected to a
     * file) cannot be read: read the same file through /proc. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = rfd >= 0 ? pread(rfd, &c, 1, sb.st_size - 1) : -1;
    if (rfd >= 0)
        close(rfd);
    return got == 1 ? c : UNKNOWN;
}

/* After a failed write a regular file may end in half a line; terminate it
 * before writing more, so every later line is whole, valid JSON. When the
 * end cannot be read, a possibly blank line beats a corrupt one. */
static int repair_torn_line(obc_jsonl_sink *s)
{
    int c = last_byte(fileno(s->fp));
    int err = c == '\n' || c == NOT_FILE ? 0 : write_out(s, "\n", 1, false);
    if (!err)
        s->maybe_torn = false;
    return err;
}

static obx_status io_failed(obc_jsonl_sink *s, int err, char *errstr,
                            size_t errlen)
{
    char eb[128];
    /* Drop what stdio still holds: it would resurface later, mid-line. */
    __fpurge(s->fp);
    clearerr(s->fp);
    s->batch.len = 0;
    s->maybe_torn = true;
    snprintf(errstr, errlen, "write to %s: %s", s->name,
             errtext(err, eb, sizeof eb));
    /* A pipe whose reader left never gets one back: no retry can help. */
    if (err == EPIPE) {
        sink_log(s, OBX_LOG_ERROR, "%s: the reader of the pipe has gone",
                 errstr);
        return OBX_FATAL;
    }
    if (!s->failing)
        sink_log(s, OBX_LOG_ERROR,
                 "%s; publishing reports 'unavailable' until writes work",
                 errstr);
    else
        sink_log(s, OBX_LOG_DEBUG, "%s", errstr);
    s->failing = true;
    return OBX_UNAVAILABLE;
}

static obx_status drain(obc_jsonl_sink *s, bool flush, char *errstr,
                        size_t errlen)
{
    int err = s->maybe_torn ? repair_torn_line(s) : 0;
    if (!err)
        err = write_out(s, s->batch.data, s->batch.len, flush);
    s->batch.len = 0;
    return err ? io_failed(s, err, errstr, errlen) : OBX_OK;
}

void obc_jsonl_sink_begin(obc_jsonl_sink *s)
{
    s->batch.len = 0;
}

obx_status obc_jsonl_sink_add(obc_jsonl_sink *s, const obx_event *ev,
                              char *errstr, size_t errlen)
{
    int rc;
    if (s->pretty) {
        s->pretty_buf.len = 0;
        rc = obc_jsonl_format(&s->pretty_buf, ev) ||
             obc_jsonl_reindent(&s->batch, s->pretty_buf.data,
                                s->pretty_buf.len);
    } else {
        rc = obc_jsonl_format(&s->batch, ev);
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory formatting event %s",
                 ev->event_id ? ev->event_id : "(null)");
        sink_log(s, OBX_LOG_ERROR, "%s", errstr);
        s->batch.len = 0;
        return OBX_UNAVAILABLE;
    }
    if (s->batch.len >= CHUNK_BYTES)
        return drain(s, false, errstr, errlen);
    return OBX_OK;
}

static void trim(obc_jbuf *b)
{
    if (b->cap > KEEP_BYTES)
        obc_jbuf_free(b);
}

obx_status obc_jsonl_sink_commit(obc_jsonl_sink *s, char *errstr, size_t errlen)
{
    obx_status st = drain(s, true, errstr, errlen);
    if (st == OBX_OK && s->fsync && fsync(fileno(s->fp)) != 0)
        st = io_failed(s, errno, errstr, errlen);
    trim(&s->batch);
    trim(&s->pretty_buf);
    if (st != OBX_OK)
        return st;
    if (s->failing)
        sink_log(s, OBX_LOG_INFO, "write to %s works again", s->name);
    s->failing = false;
    return OBX_OK;
}

obx_status obc_jsonl_sink_flush(obc_jsonl_sink *s)
{
    return s->fp && write_out(s, NULL, 0, true) != 0 ? OBX_UNAVAILABLE : OBX_OK;
}

void obc_jsonl_sink_close(obc_jsonl_sink *s)
{
    if (s->fp) {
        write_out(s, NULL, 0, true);
        if (s->own_fp)
            fclose(s->fp);
    }
    s->fp = NULL;
    obc_jbuf_free(&s->batch);
    obc_jbuf_free(&s->pretty_buf);
}
