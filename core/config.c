/* Config file parsing on top of libinih.
 *
 * Debian 12 ships libinih 55 built with INI_HANDLER_LINENO=0, a 200-byte
 * line buffer, a 50-byte section buffer (longer names are cut silently),
 * multiline continuation on, only ';' as inline comment and no handler call
 * for section headers. None of that can be changed from here, so we feed
 * libinih through our own line reader, which:
 *   - counts lines, so the handler knows the line it is called for (inih
 *     calls the handler before it asks for the next line);
 *   - left-trims every line, so an indented key is never taken for the
 *     continuation of the previous value;
 *   - handles [section] headers itself (kinds, names, duplicates, line);
 *   - hands lines longer than inih's buffer over as "key=" and keeps the
 *     value aside, so long values (broker lists, conninfo) are not cut.
 * libinih still splits and trims "key = value" lines and reports lines that
 * are neither. Inline comments ('#' or ';' after whitespace, or at the start
 * of a value) are stripped here, whatever inih was built with.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <outbox/host.h> /* OBX_PRINTF */

#include "options.h"

/* Config files are small; this only stops a wrong path (a log, a device)
 * from being slurped. */
#define OBX_CONF_MAX_BYTES (4u * 1024u * 1024u)
#define OBX_PIPELINE_NAME_MAX 64

typedef struct conf_parser {
    const char *name; /* file name for messages */
    const char *text;
    size_t pos, len;
    int lineno;
    obx_conf_file *cf;
    long cur;         /* index of the open section, -1 before the first */
    char *long_value; /* raw value of a line too long for inih */
    int long_line;
    int err_line; /* nonzero once an error is recorded */
    char *err;
    size_t errlen;
} conf_parser;

static void fail(conf_parser *p, const char *fmt, ...) OBX_PRINTF(2, 3);

static void fail(conf_parser *p, const char *fmt, ...)
{
    if (p->err_line)
        return;
    p->err_line = p->lineno > 0 ? p->lineno : 1;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->err_line);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* [s, s+*n) without surrounding blanks. */
static const char *trim_span(const char *s, size_t *n)
{
    while (*n > 0 && is_blank(*s)) {
        s++;
        (*n)--;
    }
    while (*n > 0 && is_blank(s[*n - 1]))
        (*n)--;
    return s;
}

static obx_conf_section *cur_section(conf_parser *p)
{
    return p->cur < 0 ? NULL : &p->cf->sections[p->cur];
}

static const char *section_label(const obx_conf_section *s, char *buf,
                                 size_t len)
{
    if (s->kind == OBX_SECTION_RELAY)
        snprintf(buf, len, "[relay]");
    else
        snprintf(buf, len, "[pipeline %s]", s->name);
    return buf;
}

/* ---- sections ---------------------------------------------------------- */

static bool valid_pipeline_name(const char *s, size_t n)
{
    if (n == 0 || n > OBX_PIPELINE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return false;
    }
    return true;
}

static int add_section(conf_parser *p, obx_section_kind kind, const char *name,
                       size_t n)
{
    obx_conf_file *cf = p->cf;
    obx_conf_section *grown =
        realloc(cf->sections, (cf->n_sections + 1) * sizeof *grown);
    if (!grown) {
        fail(p, "out of memory");
        return -1;
    }
    cf->sections = grown;
    obx_conf_section *s = &grown[cf->n_sections];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->line = p->lineno;
    s->name = strndup(name, n);
    if (!s->name) {
        fail(p, "out of memory");
        return -1;
    }
    p->cur = (long)cf->n_sections++;
    return 0;
}

static int open_relay(conf_parser *p)
{
    for (size_t i = 0; i < p->cf->n_sections; i++)
        if (p->cf->sections[i].kind == OBX_SECTION_RELAY) {
            fail(p, "duplicate [relay] section (first at line %d); merge them",
                 p->cf->sections[i].line);
            return -1;
        }
    return add_section(p, OBX_SECTION_RELAY, "relay", 5);
}

static int open_pipeline(conf_parser *p, const char *name, size_t n)
{
    if (n == 0) {
        fail(p, "[pipeline] needs a name: write [pipeline NAME], e.g. "
                "[pipeline orders]");
        return -1;
    }
    if (!valid_pipeline_name(name, n)) {
        fail(p,
             "invalid pipeline name '%.*s': use 1 to %d letters, digits, "
             "'_', '-' or '.'",
             (int)(n > 80 ? 80 : n), name, OBX_PIPELINE_NAME_MAX);
        return -1;
    }
    for (size_t i = 0; i < p->cf->n_sections; i++) {
        const obx_conf_section *s = &p->cf->sections[i];
        if (s->kind == OBX_SECTION_PIPELINE && strlen(s->name) == n &&
            memcmp(s->name, name, n) == 0) {
            fail(p, "duplicate pipeline '%s' (first defined at line %d)",
                 s->name, s->line);
            return -1;
        }
    }
    return add_section(p, OBX_SECTION_PIPELINE, name, n);
}

static void unknown_section(conf_parser *p, const char *kind, size_t n)
{
    static const char *const kinds[] = {"relay", "pipeline", NULL};
    char word[64];
    snprintf(word, sizeof word, "%.*s", (int)(n < 63 ? n : 63), kind);
    const char *dym = n < 63 ? obx_did_you_mean(word, kinds) : NULL;
    if (dym)
        fail(p,
             "unknown section [%.*s]; did you mean '%s'? (valid sections: "
             "[relay], [pipeline NAME])",
             (int)(n > 80 ? 80 : n), kind, dym);
    else
        fail(p,
             "unknown section [%.*s] (valid sections: [relay], "
             "[pipeline NAME])",
             (int)(n > 80 ? 80 : n), kind);
}

/* A "[...]" line (already left-trimmed, `n` bytes). 0 or -1. */
static int open_section(conf_parser *p, const char *line, size_t n)
{
    const char *close = memchr(line, ']', n);
    if (!close) {
        fail(p, "section header is missing its closing ']'");
        return -1;
    }
    size_t rest_n = n - (size_t)(close + 1 - line);
    const char *rest = trim_span(close + 1, &rest_n);
    if (rest_n > 0 && rest[0] != '#' && rest[0] != ';') {
        fail(p, "unexpected text after ']' in section header");
        return -1;
    }
    size_t in_n = (size_t)(close - line - 1);
    const char *in = trim_span(line + 1, &in_n);
    size_t kind_n = 0;
    while (kind_n < in_n && !is_blank(in[kind_n]))
        kind_n++;
    size_t name_n = in_n - kind_n;
    const char *name = trim_span(in + kind_n, &name_n);

    if (kind_n == 5 && memcmp(in, "relay", 5) == 0 && name_n == 0)
        return open_relay(p);
    if (kind_n == 5 && memcmp(in, "relay", 5) == 0) {
        fail(p, "[relay] takes no name (valid sections: [relay], "
                "[pipeline NAME])");
        return -1;
    }
    if (kind_n == 8 && memcmp(in, "pipeline", 8) == 0)
        return open_pipeline(p, name, name_n);
    unknown_section(p, in, kind_n ? kind_n : in_n);
    return -1;
}

/* ---- values ------------------------------------------------------------ */

/* Cut an inline comment: '#' or ';' at the start or after whitespace. */
static void strip_comment(char *v)
{
    for (char *c = v; *c; c++)
        if ((*c == '#' || *c == ';') && (c == v || is_blank(c[-1]))) {
            *c = '\0';
            break;
        }
    size_t n = strlen(v);
    while (n > 0 && is_blank(v[n - 1]))
        v[--n] = '\0';
}

typedef struct strbuf {
    char *s;
    size_t n, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *g = realloc(b->s, cap);
        if (!g)
            return -1;
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

static bool valid_env_name(const char *s, size_t n)
{
    if (n == 0 || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* Expand one "${env:NAME}" (ref points past "${env:", n bytes of name) into
 * b. 0 or -1 with the error recorded. */
static int expand_env(conf_parser *p, strbuf *b, const char *what,
                      const char *ref, size_t n)
{
    if (!valid_env_name(ref, n)) {
        fail(p,
             "%s: invalid environment variable name '%.*s' in "
             "${env:...} (letters, digits and '_', not starting with a digit)",
             what, (int)(n > 80 ? 80 : n), ref);
        return -1;
    }
    char *name = strndup(ref, n);
    if (!name) {
        fail(p, "out of memory");
        return -1;
    }
    const char *val = getenv(name);
    if (!val) {
        fail(p,
             "%s: environment variable '%s' is not set (used as "
             "${env:%s})",
             what, name, name);
        free(name);
        return -1;
    }
    free(name);
    if (sb_add(b, val, strlen(val)) < 0) {
        fail(p, "out of memory");
        return -1;
    }
    return 0;
}

/* Expand ${env:NAME} anywhere in v; other ${...} are kept for route
 * templates. The value itself never appears in messages: it may hold a
 * secret. Returns a heap string or NULL with the error recorded. */
static char *expand_value(conf_parser *p, const char *what, const char *v)
{
    strbuf b = {0};
    if (sb_add(&b, "", 0) < 0)
        goto nomem;
    const char *s = v;
    for (const char *d = strstr(s, "${"); d; d = strstr(s, "${")) {
        const char *end = strchr(d + 2, '}');
        if (!end) {
            fail(p, "%s: unterminated '${' in value (close it with '}')", what);
            goto fail;
        }
        if (strncmp(d + 2, "env:", 4) == 0) {
            if (sb_add(&b, s, (size_t)(d - s)) < 0)
                goto nomem;
            if (expand_env(p, &b, what, d + 6, (size_t)(end - d - 6)) < 0)
                goto fail;
        } else if (sb_add(&b, s, (size_t)(end + 1 - s)) < 0) {
            goto nomem;
        }
        s = end + 1;
    }
    if (sb_add(&b, s, strlen(s)) < 0)
        goto nomem;
    return b.s;
nomem:
    fail(p, "out of memory");
fail:
    free(b.s);
    return NULL;
}

/* ---- entries ----------------------------------------------------------- */

static int check_key(conf_parser *p, const obx_conf_section *s, const char *key)
{
    char label[OBX_PIPELINE_NAME_MAX + 16];
    if (!s) {
        fail(p,
             "key '%s' is outside any section; put it under [relay] or "
             "[pipeline NAME]",
             key);
        return -1;
    }
    if (!*key) {
        fail(p, "missing key name before '='");
        return -1;
    }
    if (strstr(key, "${")) {
        fail(p, "'${' in a key name: ${env:NAME} and ${field} expand in values "
                "only (write 'key = ${env:NAME}')");
        return -1;
    }
    for (size_t i = 0; i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, key) == 0) {
            fail(p, "key '%s' is set twice in %s (first at line %d)", key,
                 section_label(s, label, sizeof label), s->entries[i].line);
            return -1;
        }
    return 0;
}

static int add_entry(conf_parser *p, const char *key, const char *raw)
{
    obx_conf_section *s = cur_section(p);
    if (check_key(p, s, key) < 0)
        return -1;
    char *v = strdup(raw);
    if (!v) {
        fail(p, "out of memory");
        return -1;
    }
    strip_comment(v);
    /* "[pipeline orders] key 'topic'", as option errors name it */
    char what[OBX_PIPELINE_NAME_MAX + 128], label[OBX_PIPELINE_NAME_MAX + 16];
    snprintf(what, sizeof what, "%s key '%.80s'",
             section_label(s, label, sizeof label), key);
    char *value = expand_value(p, what, v);
    free(v);
    if (!value)
        return -1;
    obx_conf_entry *grown =
        realloc(s->entries, (s->n_entries + 1) * sizeof *grown);
    char *k = strdup(key);
    if (!grown || !k) {
        if (grown)
            s->entries = grown;
        free(k);
        free(value);
        fail(p, "out of memory");
        return -1;
    }
    s->entries = grown;
    grown[s->n_entries++] = (obx_conf_entry){k, value, p->lineno};
    return 0;
}

/* libinih handler: one "key = value" line, which is always the line the
 * reader handed out last. Returns nonzero to go on. */
static int on_entry(void *user, const char *section, const char *name,
                    const char *value)
{
    (void)section; /* ours is exact; inih's is cut at 49 bytes */
    conf_parser *p = user;
    if (p->err_line)
        return 1;
    if (!value) { /* only with INI_ALLOW_NO_VALUE builds */
        fail(p, "expected 'key = value'");
        return 0;
    }
    const char *raw = value;
    if (p->long_line == p->lineno && p->long_value) {
        raw = p->long_value;
        while (is_blank(*raw))
            raw++;
    }
    return add_entry(p, name, raw) == 0;
}

/* ---- the line reader --------------------------------------------------- */

/* A line longer than inih's buffer: hand over "key=" and keep the value. */
static char *hand_over_long(conf_parser *p, char *str, int num,
                            const char *line, size_t n)
{
    size_t k = 0;
    while (k < n && line[k] != '=' && line[k] != ':')
        k++;
    if (k == n) {
        fail(p, "expected 'key = value', '[section]' or a comment");
        return NULL;
    }
    if (k + 3 > (size_t)num) {
        fail(p, "key is too long (at most %d bytes)", num - 3);
        return NULL;
    }
    free(p->long_value);
    p->long_value = strndup(line + k + 1, n - k - 1);
    if (!p->long_value) {
        fail(p, "out of memory");
        return NULL;
    }
    p->long_line = p->lineno;
    memcpy(str, line, k);
    memcpy(str + k, "=\n", 3);
    return str;
}

/* ini_reader: returns the next line, pre-processed as described at the
 * top, or NULL at the end or once an error is recorded. */
static char *next_line(char *str, int num, void *stream)
{
    conf_parser *p = stream;
    if (p->err_line || p->pos >= p->len)
        return NULL;
    if (num < 4) {
        fail(p, "libinih line buffer too small (%d bytes)", num);
        return NULL;
    }
    const char *line = p->text + p->pos;
    const char *nl = memchr(line, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - line) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->lineno++;
    if (p->lineno == 1 && n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        n -= 3;
    }
    line = trim_span(line, &n);
    if (n == 0 || line[0] == '#' || line[0] == ';')
        return memcpy(str, "\n", 2);
    if (line[0] == '[')
        return open_section(p, line, n) == 0 ? memcpy(str, "\n", 2) : NULL;
    if (n + 2 > (size_t)num)
        return hand_over_long(p, str, num, line, n);
    memcpy(str, line, n);
    memcpy(str + n, "\n", 2);
    return str;
}

/* ---- public ------------------------------------------------------------ */

void obx_conf_free(obx_conf_file *cf)
{
    if (!cf)
        return;
    for (size_t i = 0; i < cf->n_sections; i++) {
        obx_conf_section *s = &cf->sections[i];
        for (size_t j = 0; j < s->n_entries; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
        }
        free(s->entries);
        free(s->name);
    }
    free(cf->sections);
    free(cf->path);
    memset(cf, 0, sizeof *cf);
}

int obx_conf_parse(const char *name, const char *text, obx_conf_file *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errlen > 0)
        err[0] = '\0';
    conf_parser p = {.name = name,
                     .text = text,
                     .len = strlen(text),
                     .cf = out,
                     .cur = -1,
                     .err = err,
                     .errlen = errlen};
    out->path = strdup(name);
    int rc = out->path ? ini_parse_stream(next_line, &p, on_entry, &p) : -2;
    free(p.long_value);
    /* inih goes on after a line it cannot parse, so an error of ours may
     * come from a later line: the earliest one is reported. */
    if (rc == -2 && !p.err_line)
        snprintf(err, errlen, "%s: out of memory", name);
    else if (rc > 0 && (!p.err_line || rc < p.err_line))
        snprintf(err, errlen,
                 "%s:%d: expected 'key = value', '[section]' or a comment",
                 name, rc);
    if (p.err_line || rc != 0) {
        obx_conf_free(out);
        return -1;
    }
    return 0;
}

static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (; text < at; text++)
        line += *text == '\n';
    return line;
}

/* Read up to OBX_CONF_MAX_BYTES + 1 bytes of f into a growing buffer; the
 * size is not known up front for pipes and /dev/stdin. NULL on no memory. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 0, n = 0;
    char *buf = NULL;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char *g = realloc(buf, cap + 1);
            if (!g) {
                free(buf);
                return NULL;
            }
            buf = g;
        }
        n += fread(buf + n, 1, cap - n, f);
    } while (n == cap && n <= OBX_CONF_MAX_BYTES);
    *len = n;
    buf[n] = '\0';
    return buf;
}

/* Read the whole file; NULL with err filled. */
static char *slurp(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = 0;
    char *buf = read_all(f, &n);
    int rd_err = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf)
        snprintf(err, errlen, "%s: out of memory", path);
    else if (rd_err)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(rd_err));
    else if (n > OBX_CONF_MAX_BYTES)
        snprintf(err, errlen,
                 "%s: larger than %u bytes; is this a config file?", path,
                 OBX_CONF_MAX_BYTES);
    else if (memchr(buf, '\0', n))
        snprintf(err, errlen, "%s:%d: NUL byte in config file", path,
                 line_of(buf, (const char *)memchr(buf, '\0', n)));
    else
        return buf;
    free(buf);
    return NULL;
}

int obx_conf_load(const char *path, obx_conf_file *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *text = slurp(path, err, errlen);
    if (!text)
        return -1;
    int rc = obx_conf_parse(path, text, out, err, errlen);
    free(text);
    return rc;
}

const obx_conf_section *obx_conf_relay(const obx_conf_file *cf)
{
    for (size_t i = 0; i < cf->n_sections; i++)
        if (cf->sections[i].kind == OBX_SECTION_RELAY)
            return &cf->sections[i];
    return NULL;
}
