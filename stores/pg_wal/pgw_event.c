/* Events as the pg_wal store hands them out: one malloc block per event
 * holding the obx_event, its header array and every string, built from an
 * outbox row of the stream (text values of pgoutput protocol 1), from a
 * logical message's JSON envelope, or from a row of the recovery query. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_block.h"
#include "json_scan.h"
#include "pgw_store.h"

#define PGW_BYTEAOID 17

/* One field while the block is being sized; s == NULL is SQL NULL. */
typedef struct pgw_field {
    const char *s;
    size_t len;
} pgw_field;

typedef struct pgw_parts {
    pgw_field f[PGW_C_N_MAPPABLE];
    osc_event_headers h;
    char *owned_payload; /* decoded bytea, freed after copy */
    char *strs;          /* the envelope's strings, unescaped */
    size_t strs_used;
    char id[64]; /* generated event id */
    char poison[OBX_ERRSTR_LEN];
    int64_t created_us;
    int64_t row_id;
} pgw_parts;

static void parts_free(pgw_parts *p)
{
    free(p->owned_payload);
    free(p->strs);
    osc_event_headers_free(&p->h);
}

static void set_poison(pgw_parts *p, const char *fmt, const char *arg)
{
    if (!p->poison[0])
        snprintf(p->poison, sizeof p->poison, fmt, arg);
}

/* ---- value decoding ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long bytea_hex(const char *in, size_t len, char *out)
{
    if (len % 2)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int a = hexval(in[i]), b = hexval(in[i + 1]);
        if (a < 0 || b < 0)
            return -1;
        out[i / 2] = (char)(a << 4 | b);
    }
    return (long)(len / 2);
}

/* bytea_output = escape: printable bytes as they are, \\ and \ooo. */
static long bytea_escape(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] != '\\') {
            out[o++] = in[i++];
        } else if (i + 1 < len && in[i + 1] == '\\') {
            out[o++] = '\\';
            i += 2;
        } else if (i + 3 < len && in[i + 1] >= '0' && in[i + 1] <= '3' &&
                   in[i + 2] >= '0' && in[i + 2] <= '7' && in[i + 3] >= '0' &&
                   in[i + 3] <= '7') {
            out[o++] = (char)((in[i + 1] - '0') << 6 | (in[i + 2] - '0') << 3 |
                              (in[i + 3] - '0'));
            i += 4;
        } else {
            return -1;
        }
    }
    return (long)o;
}

long pgw_bytea_decode(const char *in, size_t len, char *out)
{
    if (len >= 2 && in[0] == '\\' && in[1] == 'x')
        return bytea_hex(in + 2, len - 2, out);
    return bytea_escape(in, len, out);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Read exactly n digits at *p. */
static bool digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= end || **p < '0' || **p > '9')
            return false;
        v = v * 10 + (*(*p)++ - '0');
    }
    *out = v;
    return true;
}

static bool expect(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

/* "+HH", "+HH:MM", "+HH:MM:SS" (or '-'): seconds east of UTC. */
static bool parse_offset(const char **p, const char *end, int64_t *sec)
{
    *sec = 0;
    if (*p == end)
        return true; /* timestamp without time zone: UTC */
    int sign = **p == '+' ? 1 : **p == '-' ? -1 : 0;
    int h, m = 0, s = 0;
    if (!sign)
        return false;
    (*p)++;
    if (!digits(p, end, 2, &h))
        return false;
    if (*p < end && **p == ':' && !((*p)++, digits(p, end, 2, &m)))
        return false;
    if (*p < end && **p == ':' && !((*p)++, digits(p, end, 2, &s)))
        return false;
    *sec = sign * ((int64_t)h * 3600 + m * 60 + s);
    return *p == end;
}

bool pgw_parse_timestamp(const char *s, size_t len, int64_t *us)
{
    const char *p = s, *end = s + len;
    int y, mo, d, h, mi, se;
    if (!digits(&p, end, 4, &y) || !expect(&p, end, '-') ||
        !digits(&p, end, 2, &mo) || !expect(&p, end, '-') ||
        !digits(&p, end, 2, &d) || !expect(&p, end, ' ') ||
        !digits(&p, end, 2, &h) || !expect(&p, end, ':') ||
        !digits(&p, end, 2, &mi) || !expect(&p, end, ':') ||
        !digits(&p, end, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    int64_t frac = 0;
    if (p < end && *p == '.') {
        p++;
        int n = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++, n++)
            if (n < 6)
                frac = frac * 10 + (*p - '0');
        if (n == 0)
            return false;
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t off;
    if (!parse_offset(&p, end, &off))
        return false;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - off;
    *us = secs * 1000000 + frac;
    return true;
}

/* ---- headers ---- */

/* The rules of osc_event_headers_parse (values as written); what cannot
 * be read makes the event a dead letter, with the reason. */
static obx_status parse_headers(pgw_parts *p, const char *s, size_t len,
                                const char *where)
{
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st = osc_event_headers_parse((osc_col_text){s, len}, true, &p->h,
                                            err, sizeof err);
    if (st == OBX_PERMANENT && !p->poison[0])
        snprintf(p->poison, sizeof p->poison, "%s%s", where, err);
    return st == OBX_PERMANENT ? OBX_OK : st;
}

/* ---- the block ---- */

static const char *put(char **cur, const char *s, size_t len)
{
    char *dst = *cur;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

static size_t block_size(const pgw_parts *p)
{
    size_t sz = sizeof(pgw_event) + p->h.n * sizeof(obx_header);
    for (int c = PGW_C_EVENT_ID; c <= PGW_C_TOPIC; c++)
        sz += p->f[c].len + 1;
    for (size_t i = 0; i < p->h.n; i++)
        sz += p->h.v[i].name_len + 1 + p->h.v[i].value_len + 1;
    return sz + strlen(p->poison) + 1;
}

static void fill_headers(pgw_event *e, const pgw_parts *p, char **cur)
{
    obx_header *hd = (obx_header *)(e + 1);
    for (size_t i = 0; i < p->h.n; i++) {
        hd[i].name = put(cur, p->h.v[i].name, p->h.v[i].name_len);
        hd[i].value = put(cur, p->h.v[i].value, p->h.v[i].value_len);
    }
    e->ev.headers = p->h.n ? hd : NULL;
    e->ev.n_headers = p->h.n;
}

static const char *put_field(char **cur, pgw_field f, bool keep_null)
{
    if (!f.s && keep_null)
        return NULL;
    return put(cur, f.s ? f.s : "", f.len);
}

static obx_status build(pgw_parts *p, uint64_t seq, uint64_t sub,
                        pgw_event **out)
{
    *out = NULL;
    if (!p->f[PGW_C_EVENT_ID].s || p->f[PGW_C_EVENT_ID].len == 0) {
        /* stable across replays: the same position gives the same id */
        snprintf(p->id, sizeof p->id, "wal-%016" PRIx64 "-%" PRIu64, seq, sub);
        p->f[PGW_C_EVENT_ID] = (pgw_field){p->id, strlen(p->id)};
    }
    pgw_event *e = calloc(1, block_size(p));
    if (!e)
        return OBX_NOMEM;
    char *cur = (char *)((obx_header *)(e + 1) + p->h.n);
    fill_headers(e, p, &cur);
    obx_event *ev = &e->ev;
    ev->event_id = put_field(&cur, p->f[PGW_C_EVENT_ID], false);
    ev->aggregate_type = put_field(&cur, p->f[PGW_C_AGGREGATE_TYPE], false);
    ev->aggregate_id = put_field(&cur, p->f[PGW_C_AGGREGATE_ID], false);
    ev->key = ev->aggregate_id;
    ev->event_type = put_field(&cur, p->f[PGW_C_EVENT_TYPE], false);
    ev->payload = put_field(&cur, p->f[PGW_C_PAYLOAD], false);
    ev->payload_len = p->f[PGW_C_PAYLOAD].len;
    ev->topic = put_field(&cur, p->f[PGW_C_TOPIC], true);
    ev->created_at_us = p->created_us;
    ev->pos.seq = seq;
    ev->pos.sub = sub;
    ev->pos.ptr = e;
    e->row_id = p->row_id;
    const char *why = put(&cur, p->poison, strlen(p->poison));
    e->poison = p->poison[0] ? why : NULL;
    *out = e;
    return OBX_OK;
}

/* ---- from a stream row ---- */

static pgw_field tuple_field(const pgo_msg *m, const pgw_rel *rel, int c)
{
    pgw_field f = {NULL, 0};
    int i = rel->idx[c];
    if (i < 0 || i >= m->nvals)
        return f;
    const pgo_value *v = &m->vals[i];
    if (v->kind == 't' || v->kind == 'b') {
        f.s = v->data ? (const char *)v->data : "";
        f.len = v->len;
    }
    return f;
}

static obx_status row_payload(pgw_parts *p, const pgw_rel *rel)
{
    pgw_field *f = &p->f[PGW_C_PAYLOAD];
    if (!f->s) {
        set_poison(p, "payload is NULL%s", "");
        return OBX_OK;
    }
    if (rel->type[PGW_C_PAYLOAD] != PGW_BYTEAOID)
        return OBX_OK; /* text, json, jsonb: the text is the payload */
    p->owned_payload = malloc(f->len + 1);
    if (!p->owned_payload)
        return OBX_NOMEM;
    long n = pgw_bytea_decode(f->s, f->len, p->owned_payload);
    if (n < 0) {
        set_poison(p, "payload: malformed bytea text%s", "");
        return OBX_OK;
    }
    f->s = p->owned_payload;
    f->len = (size_t)n;
    return OBX_OK;
}

static void row_required(pgw_parts *p, const pgw_store *s)
{
    static const int req[] = {PGW_C_AGGREGATE_TYPE, PGW_C_AGGREGATE_ID,
                              PGW_C_EVENT_TYPE};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!p->f[req[i]].s)
            set_poison(p, "column \"%s\" is NULL or missing",
                       s->names.col[req[i]]);
}

obx_status pgw_event_from_row(pgw_store *s, const pgw_rel *rel,
                              const pgo_msg *m, uint64_t seq, uint64_t sub,
                              int64_t commit_us, pgw_event **out)
{
    pgw_parts p;
    memset(&p, 0, sizeof p);
    p.row_id = -1;
    for (int c = PGW_C_EVENT_ID; c < PGW_C_N_MAPPABLE; c++)
        p.f[c] = tuple_field(m, rel, c);
    pgw_field id = tuple_field(m, rel, PGW_C_ID);
    if (id.s && id.len < 24) {
        char tmp[24];
        memcpy(tmp, id.s, id.len);
        tmp[id.len] = '\0';
        p.row_id = strtoll(tmp, NULL, 10);
    }
    pgw_field ca = p.f[PGW_C_CREATED_AT];
    if (!ca.s || !pgw_parse_timestamp(ca.s, ca.len, &p.created_us))
        p.created_us = commit_us;
    row_required(&p, s);
    obx_status st = row_payload(&p, rel);
    if (st == OBX_OK)
        st =
            parse_headers(&p, p.f[PGW_C_HEADERS].s, p.f[PGW_C_HEADERS].len, "");
    if (st == OBX_OK)
        st = build(&p, seq, sub, out);
    parts_free(&p);
    return st;
}

/* ---- from a logical message ---- */

/* The envelope's members that mean something, as written. */
enum {
    ENV_EVENT_ID,
    ENV_AGGREGATE_TYPE,
    ENV_AGGREGATE_ID,
    ENV_EVENT_TYPE,
    ENV_TOPIC,
    ENV_CREATED_AT,
    ENV_PAYLOAD,
    ENV_HEADERS,
    ENV_COUNT
};

static const char *const env_names[ENV_COUNT] = {
    "event_id", "aggregate_type", "aggregate_id", "event_type",
    "topic",    "created_at",     "payload",      "headers"};

/* The member named by the checked string span `name`, or -1. Names are
 * compared unescaped, so "event_typ\u0065" is event_type. */
static int env_member(osc_json_span name)
{
    char buf[32];
    if (name.len - 2 > sizeof buf)
        return -1; /* longer than any of ours, escaped or not */
    size_t n = osc_json_unescape(name, buf);
    for (int i = 0; i < ENV_COUNT; i++)
        if (strlen(env_names[i]) == n && memcmp(env_names[i], buf, n) == 0)
            return i;
    return -1;
}

/* A string member's content, unescaped into p->strs (which has room for
 * all of them: unescaping only shrinks). NULL when it is not a string. */
static const char *env_string(pgw_parts *p, osc_json_span v, size_t *len)
{
    if (v.kind != OSC_JSON_STRING)
        return NULL;
    char *dst = p->strs + p->strs_used;
    *len = osc_json_unescape(v, dst);
    dst[*len] = '\0';
    p->strs_used += *len + 1;
    return dst;
}

/* event_id, aggregate_*, event_type and topic become C strings: one
 * holding a NUL (\u0000) would reach the broker cut short, so the event
 * is dead-lettered with the reason instead. */
static void env_field(pgw_parts *p, int col, const char *name, osc_json_span v,
                      bool required)
{
    size_t len = 0;
    const char *s = env_string(p, v, &len);
    if (!s) {
        if (required)
            set_poison(p, "envelope: \"%s\" missing or not a string", name);
        return;
    }
    if (memchr(s, '\0', len)) {
        set_poison(p,
                   "envelope: \"%s\" holds a NUL (\\u0000), which a broker "
                   "cannot carry",
                   name);
        /* keep the text as written, for `dead show` */
        s = v.s + 1;
        len = v.len - 2;
    }
    p->f[col] = (pgw_field){s, len};
}

/* A JSON string payload is its decoded text (its bytes, NULs included);
 * any other value is its JSON text byte for byte, as the writer wrote it:
 * never parsed and printed again. */
static void env_payload(pgw_parts *p, osc_json_span v)
{
    if (!v.s) {
        set_poison(p, "envelope: no \"payload\"%s", "");
        return;
    }
    size_t len = 0;
    const char *s = env_string(p, v, &len);
    p->f[PGW_C_PAYLOAD] = s ? (pgw_field){s, len} : (pgw_field){v.s, v.len};
}

static obx_status envelope_fields(pgw_parts *p, osc_json_span obj)
{
    static const int cols[] = {PGW_C_EVENT_ID, PGW_C_AGGREGATE_TYPE,
                               PGW_C_AGGREGATE_ID, PGW_C_EVENT_TYPE,
                               PGW_C_TOPIC};
    osc_json_span m[ENV_COUNT] = {{NULL, 0, OSC_JSON_NULL}};
    osc_json_iter it;
    osc_json_span name, value;
    osc_json_members(&it, obj);
    /* a member given twice: the last one counts, as jsonb and jansson */
    while (osc_json_next(&it, &name, &value)) {
        int i = env_member(name);
        if (i >= 0)
            m[i] = value;
    }
    for (int i = ENV_EVENT_ID; i <= ENV_TOPIC; i++)
        env_field(p, cols[i], env_names[i], m[i],
                  i != ENV_EVENT_ID && i != ENV_TOPIC);
    size_t len = 0;
    const char *ca = env_string(p, m[ENV_CREATED_AT], &len);
    if (ca)
        pgw_parse_timestamp(ca, len, &p->created_us);
    env_payload(p, m[ENV_PAYLOAD]);
    osc_json_span h = m[ENV_HEADERS];
    if (!h.s || h.kind == OSC_JSON_NULL)
        return OBX_OK;
    if (h.kind != OSC_JSON_OBJECT) {
        set_poison(p, "envelope: headers must be a JSON object%s", "");
        return OBX_OK;
    }
    return parse_headers(p, h.s, h.len, "envelope: ");
}

obx_status pgw_event_from_message(pgw_store *s, const pgo_msg *m, uint64_t seq,
                                  uint64_t sub, int64_t commit_us,
                                  pgw_event **out)
{
    (void)s;
    pgw_parts p;
    memset(&p, 0, sizeof p);
    p.row_id = -1;
    p.created_us = commit_us;
    const char *text = (const char *)m->content;
    char why[160];
    osc_json_span obj;
    obx_status st = OBX_OK;
    int bad = osc_json_check(text, m->content_len, &obj, why, sizeof why);
    if (bad || obj.kind != OSC_JSON_OBJECT) {
        set_poison(&p, "envelope is not a JSON object: %s",
                   bad ? why : "another JSON value");
        /* keep the bytes, so `dead show` lets an operator see them */
        p.f[PGW_C_PAYLOAD] = (pgw_field){text, m->content_len};
    } else if (!(p.strs = malloc(m->content_len + 1))) {
        st = OBX_NOMEM;
    } else {
        st = envelope_fields(&p, obj);
    }
    if (st == OBX_OK)
        st = build(&p, seq, sub, out);
    parts_free(&p);
    return st;
}

/* ---- from the recovery query ---- */

static pgw_field result_field(const PGresult *r, int row, int col)
{
    pgw_field f = {NULL, 0};
    if (col < PQnfields(r) && !PQgetisnull(r, row, col)) {
        f.s = PQgetvalue(r, row, col);
        f.len = (size_t)PQgetlength(r, row, col);
    }
    return f;
}

/* Columns: id, event_id, aggregate_type, aggregate_id, event_type,
 * payload (bytea text), topic, headers (text), created_at (unix us). */
obx_status pgw_event_from_result(pgw_store *s, const PGresult *r, int row,
                                 pgw_event **out)
{
    pgw_parts p;
    memset(&p, 0, sizeof p);
    for (int c = PGW_C_EVENT_ID; c <= PGW_C_HEADERS; c++)
        p.f[c] = result_field(r, row, c);
    p.row_id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    p.created_us = strtoll(PQgetvalue(r, row, PGW_C_CREATED_AT), NULL, 10);
    row_required(&p, s);
    pgw_rel rel = {.type = {[PGW_C_PAYLOAD] = PQftype(r, PGW_C_PAYLOAD)}};
    obx_status st = row_payload(&p, &rel);
    if (st == OBX_OK)
        st =
            parse_headers(&p, p.f[PGW_C_HEADERS].s, p.f[PGW_C_HEADERS].len, "");
    if (st == OBX_OK)
        st = build(&p, 0, (uint64_t)p.row_id, out);
    parts_free(&p);
    return st;
}
