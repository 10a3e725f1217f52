/* Typed options: value parsers, table-driven validation and fill, help. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <outbox/host.h> /* OBX_PRINTF */
#include <outbox/secret.h>

#define MS_PER_S INT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
/* Longest key or word obx_did_you_mean compares; longer is never a typo. */
#define DYM_MAX 64
/* How much of a bad value an error message quotes. */
#define SHOW_MAX 80

const obx_option *obx_optable_row(obx_optable t, size_t i)
{
    if (!t.rows)
        return NULL;
    size_t stride = t.stride ? t.stride : sizeof(obx_option);
    const obx_option *o =
        (const obx_option *)((const char *)t.rows + i * stride);
    return o->name ? o : NULL;
}

static size_t optable_len(obx_optable t)
{
    size_t n = 0;
    while (obx_optable_row(t, n))
        n++;
    return n;
}

/* ---- value parsers ----------------------------------------------------- */

int obx_parse_int(const char *s, int64_t *v)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *v = (int64_t)x;
    return 0;
}

int obx_parse_bool(const char *s, bool *b)
{
    static const char *const yes[] = {"true", "yes", "on", "1", NULL};
    static const char *const no[] = {"false", "no", "off", "0", NULL};
    for (size_t i = 0; yes[i]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *b = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *b = false;
            return 0;
        }
    }
    return -1;
}

/* "<digits>[.<digits>]" at *sp times mult; the result must be a whole
 * number (no "0.5ms") and fit in int64. Advances *sp. 0 or -1. */
static int scaled_number(const char **sp, int64_t mult, int64_t *out)
{
    const char *s = *sp;
    if (!isdigit((unsigned char)*s))
        return -1;
    int64_t whole = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (whole > (INT64_MAX - 9) / 10)
            return -1;
        whole = whole * 10 + (*s - '0');
    }
    int64_t frac = 0, div = 1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return -1;
        /* Six digits keep frac * mult (mult <= 2^40) inside int64. */
        for (; isdigit((unsigned char)*s); s++, div *= 10) {
            if (div >= 1000000)
                return -1;
            frac = frac * 10 + (*s - '0');
        }
    }
    if (whole > INT64_MAX / mult || (frac * mult) % div != 0)
        return -1;
    int64_t v = whole * mult, f = frac * mult / div;
    if (v > INT64_MAX - f)
        return -1;
    *out = v + f;
    *sp = s;
    return 0;
}

static int64_t duration_unit(const char *u, size_t n)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1},
                 {"s", MS_PER_S},
                 {"m", MS_PER_M},
                 {"h", MS_PER_H},
                 {"d", MS_PER_D}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
            return units[i].ms;
    return 0;
}

/* "250ms", "5s", "1.5s", "1h30m"; a bare "0" is fine too. Parts go from
 * the largest unit down, each unit once: "1h1h" or "30m1h" is a typo, not
 * a duration. */
int obx_parse_duration_ms(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -1;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    int64_t total = 0, last_mult = INT64_MAX;
    while (*s) {
        const char *num = s;
        while (isdigit((unsigned char)*s) || *s == '.')
            s++;
        const char *u = s;
        while (isalpha((unsigned char)*s))
            s++;
        int64_t mult = duration_unit(u, (size_t)(s - u)), part;
        const char *p = num;
        if (!mult || mult >= last_mult || scaled_number(&p, mult, &part) < 0 ||
            p != u || total > INT64_MAX - part)
            return -1;
        last_mult = mult;
        total += part;
    }
    *ms = total;
    return 0;
}

int obx_parse_size_bytes(const char *s, int64_t *bytes)
{
    static const struct {
        const char *name;
        int64_t mult;
    } units[] = {{"", 1},
                 {"b", 1},
                 {"kb", INT64_C(1000)},
                 {"kib", INT64_C(1) << 10},
                 {"mb", INT64_C(1000000)},
                 {"mib", INT64_C(1) << 20},
                 {"gb", INT64_C(1000000000)},
                 {"gib", INT64_C(1) << 30},
                 {"tb", INT64_C(1000000000000)},
                 {"tib", INT64_C(1) << 40}};
    if (!s)
        return -1;
    const char *u = s;
    while (isdigit((unsigned char)*u) || *u == '.')
        u++;
    const char *unit = u;
    while (*unit == ' ' || *unit == '\t')
        unit++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(unit, units[i].name) != 0)
            continue;
        const char *p = s;
        int64_t v;
        if (scaled_number(&p, units[i].mult, &v) < 0 || p != u)
            return -1;
        *bytes = v;
        return 0;
    }
    return -1;
}

/* Split "A..B" into trimmed parts copied into a and b. 0 or -1. */
static int split_range(const char *s, char *a, char *b, size_t len)
{
    const char *dots = s ? strstr(s, "..") : NULL;
    if (!dots || strstr(dots + 2, ".."))
        return -1;
    const char *ends[2][2] = {{s, dots}, {dots + 2, s + strlen(s)}};
    char *outs[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const char *p = ends[i][0], *e = ends[i][1];
        while (p < e && isspace((unsigned char)*p))
            p++;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        if ((size_t)(e - p) >= len)
            return -1;
        memcpy(outs[i], p, (size_t)(e - p));
        outs[i][e - p] = '\0';
    }
    return 0;
}

int obx_parse_range_ms(const char *s, int64_t *min_ms, int64_t *max_ms)
{
    char a[64], b[64];
    int64_t lo, hi;
    if (split_range(s, a, b, sizeof a) < 0 ||
        obx_parse_duration_ms(a, &lo) < 0 ||
        obx_parse_duration_ms(b, &hi) < 0 || lo > hi)
        return -1;
    *min_ms = lo;
    *max_ms = hi;
    return 0;
}

/* ---- did you mean ------------------------------------------------------ */

/* Optimal string alignment distance (Damerau-Levenshtein without repeated
 * edits of one substring), case-insensitive. Both lengths <= DYM_MAX. */
static size_t edit_distance(const char *a, size_t n, const char *b, size_t m)
{
    size_t rows[3][DYM_MAX + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[m];
}

const char *obx_did_you_mean(const char *word, const char *const *cands)
{
    size_t n = strlen(word);
    if (n == 0 || n > DYM_MAX)
        return NULL;
    /* About one edit per three characters: "lvl" -> "log_level" is not a
     * typo, "batch_sise" -> "batch_size" is. */
    size_t limit = n <= 4 ? 1 : n <= 8 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; cands[i]; i++) {
        size_t m = strlen(cands[i]);
        if (m > DYM_MAX)
            continue;
        size_t d = edit_distance(word, n, cands[i], m);
        if (d < best_d && d < m) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- formatting -------------------------------------------------------- */

static const char *type_name(obx_opt_type t)
{
    switch (t) {
    case OBX_OPT_STRING: return "string";
    case OBX_OPT_INT: return "int";
    case OBX_OPT_BOOL: return "bool";
    case OBX_OPT_DURATION: return "duration";
    case OBX_OPT_SIZE: return "size";
    case OBX_OPT_ENUM: return "enum";
    case OBX_OPT_LIST: return "list";
    case OBX_OPT_PREFIX: return "prefix";
    case OBX_OPT_RANGE: return "range";
    }
    return "?";
}

static const char *fmt_duration(int64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", MS_PER_D},
                 {"h", MS_PER_H},
                 {"m", MS_PER_M},
                 {"s", MS_PER_S},
                 {"ms", 1}};
    for (size_t i = 0; ms != 0 && i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms,
                     units[i].unit);
            return buf;
        }
    snprintf(buf, len, "%" PRId64, ms);
    return buf;
}

static const char *fmt_size(int64_t b, char *buf, size_t len)
{
    static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (int i = 0; b != 0 && i < 4; i++) {
        int64_t m = INT64_C(1) << (10 * (4 - i));
        if (b % m == 0) {
            snprintf(buf, len, "%" PRId64 "%s", b / m, units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRId64, b);
    return buf;
}

static const char *fmt_bound(const obx_option *o, int64_t v, char *buf,
                             size_t len)
{
    if (o->type == OBX_OPT_DURATION || o->type == OBX_OPT_RANGE)
        return fmt_duration(v, buf, len);
    if (o->type == OBX_OPT_SIZE)
        return fmt_size(v, buf, len);
    snprintf(buf, len, "%" PRId64, v);
    return buf;
}

/* No bounds: OBX_NO_BOUNDS (the full int64 range), or 0..0 as tables of
 * ABI 1.0/1.1 say it. */
static bool has_bounds(const obx_option *o)
{
    return !(o->min == 0 && o->max == 0) &&
           !(o->min == INT64_MIN && o->max == INT64_MAX);
}

/* "min..max" of the row, for messages and help. */
static const char *fmt_bounds(const obx_option *o, char *buf, size_t len)
{
    char a[32], b[32];
    snprintf(buf, len, "%s..%s", fmt_bound(o, o->min, a, sizeof a),
             fmt_bound(o, o->max, b, sizeof b));
    return buf;
}

/* "a, b, c" into buf. */
static const char *join(const char *const *items, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; items && items[i] && n < len; i++) {
        int w = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", items[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    return buf;
}

/* ---- setting one value ------------------------------------------------- */

typedef struct why {
    char msg[512];
} why;

static int bad(why *w, const char *fmt, ...) OBX_PRINTF(2, 3);

static int bad(why *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int check_bounds(const obx_option *o, int64_t v, const char *shown,
                        why *w)
{
    char r[80];
    if (has_bounds(o) && (v < o->min || v > o->max))
        return bad(w, "%s is out of range (valid: %s)", shown,
                   fmt_bounds(o, r, sizeof r));
    return 0;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static int set_string(const obx_option *o, const char *v, char **field, why *w)
{
    if ((o->flags & OBX_OPT_REQUIRED) && !*v)
        return bad(w, "must not be empty");
    free(*field);
    *field = strdup(v);
    return *field ? 0 : bad(w, "out of memory");
}

static int set_duration(const obx_option *o, const char *v, const char *shown,
                        int64_t *field, why *w)
{
    int64_t ms;
    if (obx_parse_duration_ms(v, &ms) < 0) {
        if (all_digits(v))
            return bad(w,
                       "%s needs a unit: ms, s, m, h or d (e.g. 250ms, "
                       "5s, 2m)",
                       shown);
        return bad(w,
                   "%s is not a duration (e.g. 250ms, 5s, 1.5s, 2m, 1h30m, "
                   "1d; whole milliseconds, largest unit first, each unit "
                   "once)",
                   shown);
    }
    if (check_bounds(o, ms, shown, w) < 0)
        return -1;
    *field = ms;
    return 0;
}

static int set_enum(const obx_option *o, const char *v, const char *shown,
                    int *field, why *w)
{
    for (int i = 0; o->enum_values && o->enum_values[i]; i++)
        if (strcasecmp(v, o->enum_values[i]) == 0) {
            *field = i;
            return 0;
        }
    char list[256];
    join(o->enum_values, list, sizeof list);
    const char *dym = o->enum_values && !(o->flags & OBX_OPT_SECRET)
                          ? obx_did_you_mean(v, o->enum_values)
                          : NULL;
    if (dym)
        return bad(w, "%s is not valid; did you mean '%s'? (one of: %s)", shown,
                   dym, list);
    return bad(w, "%s is not one of: %s", shown, list);
}

static void list_free(obx_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int set_list(const char *v, const char *shown, obx_list *field, why *w)
{
    list_free(field);
    if (!*v)
        return 0;
    size_t cap = 1;
    for (const char *c = v; *c; c++)
        cap += *c == ',';
    obx_list l = {calloc(cap, sizeof(char *)), 0};
    if (!l.items)
        return bad(w, "out of memory");
    for (const char *p = v;; p++) {
        const char *e = p + strcspn(p, ",");
        const char *s = p;
        while (s < e && isspace((unsigned char)*s))
            s++;
        const char *t = e;
        while (t > s && isspace((unsigned char)t[-1]))
            t--;
        if (t == s) {
            list_free(&l);
            return bad(w, "%s has an empty item (items are separated by ',')",
                       shown);
        }
        if (!(l.items[l.n++] = strndup(s, (size_t)(t - s)))) {
            list_free(&l);
            return bad(w, "out of memory");
        }
        if (!*e)
            break;
        p = e;
    }
    *field = l;
    return 0;
}

static int set_range(const obx_option *o, const char *v, const char *shown,
                     obx_range *field, why *w)
{
    char a[64], b[64];
    int64_t lo, hi;
    if (split_range(v, a, b, sizeof a) < 0)
        return bad(w, "%s is not a range (write MIN..MAX, e.g. 100ms..60s)",
                   shown);
    if (obx_parse_duration_ms(a, &lo) < 0 || obx_parse_duration_ms(b, &hi) < 0)
        return bad(w,
                   "%s: both ends must be durations with a unit (e.g. "
                   "100ms..60s)",
                   shown);
    if (lo > hi)
        return bad(w, "%s: the minimum is above the maximum", shown);
    if (check_bounds(o, lo, shown, w) < 0 || check_bounds(o, hi, shown, w) < 0)
        return -1;
    *field = (obx_range){lo, hi};
    return 0;
}

/* Parse v into the row's field in conf. `shown` is v quoted, or "<secret>".
 * 0, or -1 with w filled. */
static int set_value(const obx_option *o, const char *v, const char *shown,
                     void *conf, why *w)
{
    void *field = (char *)conf + o->offset;
    int64_t n;
    char r[80];
    switch (o->type) {
    case OBX_OPT_STRING: return set_string(o, v, field, w);
    case OBX_OPT_INT:
        if (obx_parse_int(v, &n) < 0)
            return bad(w, "%s is not an integer", shown);
        if (check_bounds(o, n, shown, w) < 0)
            return -1;
        *(int64_t *)field = n;
        return 0;
    case OBX_OPT_BOOL:
        if (obx_parse_bool(v, field) < 0)
            return bad(w,
                       "%s is not a boolean (true/false, yes/no, on/off, "
                       "1/0)",
                       shown);
        return 0;
    case OBX_OPT_DURATION: return set_duration(o, v, shown, field, w);
    case OBX_OPT_SIZE:
        if (obx_parse_size_bytes(v, &n) < 0)
            return bad(w, "%s is not a size (e.g. 512, 64KiB, 1MiB, 1GiB, 1MB)",
                       shown);
        if (has_bounds(o) && (n < o->min || n > o->max))
            return bad(w, "%s is out of range (valid: %s)", shown,
                       fmt_bounds(o, r, sizeof r));
        *(int64_t *)field = n;
        return 0;
    case OBX_OPT_ENUM: return set_enum(o, v, shown, field, w);
    case OBX_OPT_LIST: return set_list(v, shown, field, w);
    case OBX_OPT_RANGE: return set_range(o, v, shown, field, w);
    case OBX_OPT_PREFIX: break;
    }
    return bad(w, "option table error: unknown type %d", (int)o->type);
}

/* ---- fill -------------------------------------------------------------- */

typedef struct filler {
    obx_optable t;
    const char *file;
    const obx_conf_section *sec;
    const char *kp; /* keyprefix */
    void *conf;
    size_t n_rows;
    int *seen; /* per row: line where it was set, 0 when unset */
    char label[96];
    char *err;
    size_t errlen;
} filler;

static int fail_at(filler *f, int line, const char *fmt, ...) OBX_PRINTF(3, 4);

static int fail_at(filler *f, int line, const char *fmt, ...)
{
    int n =
        line > 0
            ? snprintf(f->err, f->errlen, "%s:%d: %s ", f->file, line, f->label)
            : snprintf(f->err, f->errlen, "%s: %s ", f->file, f->label);
    if (n >= 0 && (size_t)n < f->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->err + n, f->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static long find_row(const filler *f, const char *k, bool prefix)
{
    for (size_t i = 0; i < f->n_rows; i++) {
        const obx_option *o = obx_optable_row(f->t, i);
        if ((o->type == OBX_OPT_PREFIX) != prefix)
            continue;
        size_t n = strlen(o->name);
        if (!prefix && strcmp(o->name, k) == 0)
            return (long)i;
        if (prefix && strncmp(o->name, k, n) == 0 && k[n] == '.')
            return (long)i;
    }
    return -1;
}

/* Names of rows of one kind (plain or prefix), NULL-terminated; caller
 * frees the array. */
static const char **row_names(const filler *f, bool prefix)
{
    const char **v = calloc(f->n_rows + 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; v && i < f->n_rows; i++) {
        const obx_option *o = obx_optable_row(f->t, i);
        if ((o->type == OBX_OPT_PREFIX) == prefix)
            v[n++] = o->name;
    }
    return v;
}

static int unknown_key(filler *f, const obx_conf_entry *e, const char *k)
{
    const char **plain = row_names(f, false), **pre = row_names(f, true);
    const char *dym = plain && pre ? obx_did_you_mean(k, plain) : NULL;
    const char *dot = strchr(k, '.'), *rest = "";
    if (!dym && dot && pre && (size_t)(dot - k) <= DYM_MAX) {
        char head[DYM_MAX + 1];
        snprintf(head, sizeof head, "%.*s", (int)(dot - k), k);
        dym = obx_did_you_mean(head, pre);
        rest = dym ? dot : "";
    }
    if (dym) {
        fail_at(f, e->line, "unknown key '%s'; did you mean '%s%s%s'?", e->key,
                f->kp, dym, rest);
    } else {
        char list[600] = "";
        size_t n = 0;
        for (size_t i = 0; i < f->n_rows && n < sizeof list; i++) {
            const obx_option *o = obx_optable_row(f->t, i);
            int w =
                snprintf(list + n, sizeof list - n, "%s%s%s%s", i ? ", " : "",
                         f->kp, o->name, o->type == OBX_OPT_PREFIX ? ".*" : "");
            n += w > 0 ? (size_t)w : 0;
        }
        fail_at(f, e->line, "unknown key '%s' (valid keys: %s)", e->key,
                n ? list : "none");
    }
    free(plain);
    free(pre);
    return -1;
}

static int add_kv(const obx_option *o, void *conf, const char *name,
                  const obx_conf_entry *e)
{
    obx_kvlist *l = (obx_kvlist *)((char *)conf + o->offset);
    obx_kv *g = realloc(l->items, (l->n + 1) * sizeof *g);
    if (!g)
        return -1;
    l->items = g;
    char *nm = strdup(name), *val = strdup(e->value);
    if (!nm || !val) {
        free(nm);
        free(val);
        return -1;
    }
    g[l->n++] = (obx_kv){nm, val, e->line};
    return 0;
}

static int fill_prefixed(filler *f, const obx_conf_entry *e, const char *k)
{
    long i = find_row(f, k, true);
    const obx_option *o = obx_optable_row(f->t, (size_t)i);
    const char *member = k + strlen(o->name) + 1;
    if (!*member)
        return fail_at(f, e->line, "key '%s': needs a name after '%s%s.'",
                       e->key, f->kp, o->name);
    if (add_kv(o, f->conf, member, e) < 0)
        return fail_at(f, e->line, "key '%s': out of memory", e->key);
    if (!f->seen[i])
        f->seen[i] = e->line;
    return 0;
}

static int fill_entry(filler *f, const obx_conf_entry *e)
{
    const char *k = e->key + strlen(f->kp);
    if (!*k)
        return fail_at(f, e->line, "key '%s': needs a name after '%s'", e->key,
                       f->kp);
    long i = find_row(f, k, false);
    if (i < 0 && find_row(f, k, true) >= 0)
        return fill_prefixed(f, e, k);
    if (i < 0) {
        for (size_t j = 0; j < f->n_rows; j++) {
            const obx_option *o = obx_optable_row(f->t, j);
            if (o->type == OBX_OPT_PREFIX && strcmp(o->name, k) == 0)
                return fail_at(f, e->line,
                               "key '%s' is a prefix: write %s%s.NAME = VALUE",
                               e->key, f->kp, o->name);
        }
        return unknown_key(f, e, k);
    }
    if (f->seen[i])
        return fail_at(f, e->line, "key '%s' is set twice (first at line %d)",
                       e->key, f->seen[i]);
    f->seen[i] = e->line;
    const obx_option *o = obx_optable_row(f->t, (size_t)i);
    char shown[SHOW_MAX + 8];
    if (o->flags & OBX_OPT_SECRET)
        snprintf(shown, sizeof shown, "<secret>");
    else
        snprintf(shown, sizeof shown, "'%.*s'%s", SHOW_MAX, e->value,
                 strlen(e->value) > SHOW_MAX ? "..." : "");
    why w;
    if (set_value(o, e->value, shown, f->conf, &w) < 0)
        return fail_at(f, e->line, "key '%s': %s", e->key, w.msg);
    return 0;
}

/* Required keys and defaults for the rows no entry set. */
static int fill_absent(filler *f)
{
    int line = f->sec ? f->sec->line : 0;
    for (size_t i = 0; i < f->n_rows; i++) {
        const obx_option *o = obx_optable_row(f->t, i);
        if (f->seen[i])
            continue;
        if (o->flags & OBX_OPT_REQUIRED)
            return fail_at(f, line, "missing required key '%s%s%s'", f->kp,
                           o->name, o->type == OBX_OPT_PREFIX ? ".*" : "");
        why w;
        if (o->def && o->type != OBX_OPT_PREFIX &&
            set_value(o, o->def, "default", f->conf, &w) < 0)
            return fail_at(f, line,
                           "option table error: default '%s' of '%s%s' is "
                           "invalid: %s",
                           o->def, f->kp, o->name, w.msg);
    }
    return 0;
}

static int fill_all(filler *f)
{
    for (size_t i = 0; i < f->n_rows; i++) {
        const obx_option *o = obx_optable_row(f->t, i);
        if (o->type < OBX_OPT_STRING || o->type > OBX_OPT_RANGE)
            return fail_at(f, 0, "option table error: '%s' has unknown type %d",
                           o->name, (int)o->type);
    }
    size_t kpl = strlen(f->kp);
    for (size_t i = 0; f->sec && i < f->sec->n_entries; i++) {
        const obx_conf_entry *e = &f->sec->entries[i];
        if (strncmp(e->key, f->kp, kpl) == 0 && fill_entry(f, e) < 0)
            return -1;
    }
    return fill_absent(f);
}

int obx_options_fill(obx_optable t, const char *file,
                     const obx_conf_section *sec, const char *keyprefix,
                     void *conf, char *err, size_t errlen)
{
    filler f = {.t = t,
                .file = file,
                .sec = sec,
                .kp = keyprefix ? keyprefix : "",
                .conf = conf,
                .n_rows = optable_len(t),
                .err = err,
                .errlen = errlen};
    if (!sec || sec->kind == OBX_SECTION_RELAY)
        snprintf(f.label, sizeof f.label, "[relay]");
    else
        snprintf(f.label, sizeof f.label, "[pipeline %.70s]", sec->name);
    f.seen = calloc(f.n_rows + 1, sizeof *f.seen);
    int rc = f.seen ? fill_all(&f) : fail_at(&f, 0, "out of memory");
    free(f.seen);
    if (rc < 0)
        obx_options_free(t, conf);
    return rc;
}

void obx_options_free(obx_optable t, void *conf)
{
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(t, i)); i++) {
        void *field = (char *)conf + o->offset;
        if (o->type == OBX_OPT_STRING) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (o->type == OBX_OPT_LIST) {
            list_free(field);
        } else if (o->type == OBX_OPT_PREFIX) {
            obx_kvlist *l = field;
            for (size_t j = 0; j < l->n; j++) {
                free((char *)l->items[j].name);
                free((char *)l->items[j].value);
            }
            free(l->items);
            l->items = NULL;
            l->n = 0;
        }
    }
}

bool obx_options_is_secret(obx_optable t, const char *key)
{
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(t, i)); i++) {
        if (!(o->flags & OBX_OPT_SECRET))
            continue;
        size_t n = strlen(o->name);
        if (o->type != OBX_OPT_PREFIX && strcmp(o->name, key) == 0)
            return true;
        if (o->type != OBX_OPT_PREFIX || strncmp(o->name, key, n) != 0 ||
            key[n] != '.')
            continue;
        if (obx_secret_name(key + n + 1, strlen(key + n + 1)))
            return true;
    }
    return false;
}

/* ---- help -------------------------------------------------------------- */

/* Word-wrapped text, each line indented by four spaces. */
static void put_wrapped(FILE *out, const char *text)
{
    const size_t width = 74;
    while (*text) {
        size_t n = strlen(text);
        if (n > width) {
            n = width;
            while (n > 0 && text[n] != ' ')
                n--;
            if (n == 0)
                n = strcspn(text, " ");
        }
        fprintf(out, "    %.*s\n", (int)n, text);
        text += n;
        while (*text == ' ')
            text++;
    }
}

static void put_header(FILE *out, const obx_option *o, const char *kp)
{
    char r[80];
    fprintf(out, "%s%s%s (%s", kp, o->name,
            o->type == OBX_OPT_PREFIX ? ".*" : "", type_name(o->type));
    if (o->flags & OBX_OPT_REQUIRED)
        fputs(", required", out);
    else if (o->def && o->type != OBX_OPT_PREFIX)
        fprintf(out, ", default: %s", *o->def ? o->def : "\"\"");
    if (has_bounds(o) &&
        (o->type == OBX_OPT_INT || o->type == OBX_OPT_SIZE ||
         o->type == OBX_OPT_DURATION || o->type == OBX_OPT_RANGE))
        fprintf(out, ", %s: %s", o->type == OBX_OPT_RANGE ? "bounds" : "range",
                fmt_bounds(o, r, sizeof r));
    if (o->flags & OBX_OPT_SECRET)
        fputs(", secret", out);
    fputs(")\n", out);
}

void obx_options_help(FILE *out, obx_optable t, const char *keyprefix)
{
    const char *kp = keyprefix ? keyprefix : "";
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(t, i)); i++) {
        if (i > 0)
            fputc('\n', out);
        put_header(out, o, kp);
        if (o->type == OBX_OPT_ENUM) {
            char list[256];
            fprintf(out, "    values: %s\n",
                    join(o->enum_values, list, sizeof list));
        }
        if (o->type == OBX_OPT_PREFIX && (o->flags & OBX_OPT_SECRET))
            fputs("    values of keys naming a password, secret, token or "
                  "key are masked\n",
                  out);
        if (o->description && *o->description)
            put_wrapped(out, o->description);
    }
}
