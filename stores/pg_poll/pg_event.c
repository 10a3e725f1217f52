#include "pg_event.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Type oids of the payload column we treat specially (pg_type.h). */
#define PGP_JSONBOID 3802

enum {
    PGP_R_ID,
    PGP_R_EVENT_ID,
    PGP_R_AGGREGATE_TYPE,
    PGP_R_AGGREGATE_ID,
    PGP_R_EVENT_TYPE,
    PGP_R_PAYLOAD,
    PGP_R_TOPIC,
    PGP_R_HEADERS,
    PGP_R_CREATED_AT,
    PGP_R_ATTEMPTS,
    PGP_R_COUNT
};

/* One column's bytes as libpq returned them. */
typedef struct pgp_text {
    const char *s; /* NULL for SQL NULL */
    size_t len;
} pgp_text;

/* One header while the block is being sized. */
typedef struct pgp_hv {
    const char *name;
    const char *value;
    size_t value_len;
    char *owned; /* compact JSON of a non-string value, freed after copy */
} pgp_hv;

typedef struct pgp_hdrs {
    json_t *obj;
    pgp_hv *v;
    size_t n;
} pgp_hdrs;

int64_t pgp_get_i64(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
        return 0;
    uint64_t be;
    memcpy(&be, PQgetvalue(res, row, col), 8);
    return (int64_t)be64toh(be);
}

static pgp_text pgp_col(const PGresult *res, int row, int col)
{
    pgp_text t = {NULL, 0};
    if (PQgetisnull(res, row, col))
        return t;
    t.s = PQgetvalue(res, row, col);
    t.len = (size_t)PQgetlength(res, row, col);
    return t;
}

/* bytea, text, varchar and json send their bytes as they are in binary
 * format; jsonb prefixes a version byte (1). */
static pgp_text pgp_payload(const PGresult *res, int row)
{
    pgp_text t = pgp_col(res, row, PGP_R_PAYLOAD);
    if (t.s && PQftype(res, PGP_R_PAYLOAD) == PGP_JSONBOID && t.len > 0 &&
        t.s[0] == 1) {
        t.s++;
        t.len--;
    }
    if (!t.s)
        t.s = "";
    return t;
}

static void pgp_hdrs_free(pgp_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].owned);
    free(h->v);
    json_decref(h->obj);
    memset(h, 0, sizeof *h);
}

static obx_status pgp_hdrs_fill(pgp_hdrs *h)
{
    h->v = calloc(json_object_size(h->obj) + 1, sizeof *h->v);
    if (!h->v)
        return OBX_NOMEM;
    const char *name;
    json_t *val;
    json_object_foreach(h->obj, name, val)
    {
        pgp_hv *hv = &h->v[h->n++];
        hv->name = name;
        if (json_is_string(val)) {
            hv->value = json_string_value(val);
            hv->value_len = strlen(hv->value);
            continue;
        }
        hv->owned = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!hv->owned)
            return OBX_NOMEM;
        hv->value = hv->owned;
        hv->value_len = strlen(hv->owned);
    }
    return OBX_OK;
}

/* Parse the headers column. NULL or empty: no headers. */
static obx_status pgp_hdrs_parse(pgp_text t, pgp_hdrs *h, char *err,
                                 size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (!t.s || t.len == 0)
        return OBX_OK;
    json_error_t je;
    h->obj = json_loadb(t.s, t.len, 0, &je);
    if (!h->obj) {
        snprintf(err, errlen, "headers are not valid JSON: %s (column %d)",
                 je.text, je.column);
        return OBX_PERMANENT;
    }
    if (!json_is_object(h->obj)) {
        snprintf(err, errlen, "headers must be a JSON object");
        return OBX_PERMANENT;
    }
    return pgp_hdrs_fill(h);
}

/* Copy len bytes plus a NUL at *cur; advance *cur. */
static const char *pgp_put(char **cur, const char *s, size_t len)
{
    char *dst = *cur;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

/* A NULL column becomes "" except where NULL is meaningful (topic). */
static const char *pgp_put_text(char **cur, pgp_text t, int keep_null)
{
    if (!t.s && keep_null)
        return NULL;
    return pgp_put(cur, t.s ? t.s : "", t.len);
}

static size_t pgp_block_size(const pgp_text *tx, const pgp_hdrs *h)
{
    size_t sz = sizeof(pgp_event) + h->n * sizeof(obx_header);
    for (int c = PGP_R_EVENT_ID; c <= PGP_R_TOPIC; c++)
        sz += tx[c].len + 1;
    for (size_t i = 0; i < h->n; i++)
        sz += strlen(h->v[i].name) + 1 + h->v[i].value_len + 1;
    return sz;
}

static void pgp_fill_headers(pgp_event *e, const pgp_hdrs *h, char **cur)
{
    obx_header *hd = (obx_header *)(e + 1);
    for (size_t i = 0; i < h->n; i++) {
        hd[i].name = pgp_put(cur, h->v[i].name, strlen(h->v[i].name));
        hd[i].value = pgp_put(cur, h->v[i].value, h->v[i].value_len);
    }
    e->ev.headers = h->n ? hd : NULL;
    e->ev.n_headers = h->n;
}

static void pgp_fill(pgp_event *e, const PGresult *res, int row,
                     const pgp_text *tx, const pgp_hdrs *h)
{
    char *cur = (char *)((obx_header *)(e + 1) + h->n);
    pgp_fill_headers(e, h, &cur);
    obx_event *ev = &e->ev;
    ev->event_id = pgp_put_text(&cur, tx[PGP_R_EVENT_ID], 0);
    ev->aggregate_type = pgp_put_text(&cur, tx[PGP_R_AGGREGATE_TYPE], 0);
    ev->aggregate_id = pgp_put_text(&cur, tx[PGP_R_AGGREGATE_ID], 0);
    ev->key = ev->aggregate_id;
    ev->event_type = pgp_put_text(&cur, tx[PGP_R_EVENT_TYPE], 0);
    ev->payload = pgp_put(&cur, tx[PGP_R_PAYLOAD].s, tx[PGP_R_PAYLOAD].len);
    ev->payload_len = tx[PGP_R_PAYLOAD].len;
    ev->topic = pgp_put_text(&cur, tx[PGP_R_TOPIC], 1);
    ev->created_at_us = pgp_get_i64(res, row, PGP_R_CREATED_AT);
    int64_t att = pgp_get_i64(res, row, PGP_R_ATTEMPTS);
    ev->attempts =
        att < 0 ? 0 : (att > UINT32_MAX ? UINT32_MAX : (uint32_t)att);
    ev->pos.seq = (uint64_t)pgp_get_i64(res, row, PGP_R_ID);
    ev->pos.ptr = e;
}

obx_status pgp_event_read(const PGresult *res, int row, bool strict,
                          pgp_event **out, char *err, size_t errlen)
{
    *out = NULL;
    if (PQnfields(res) < PGP_R_COUNT) {
        snprintf(err, errlen, "result has %d columns, expected %d",
                 PQnfields(res), PGP_R_COUNT);
        return OBX_FATAL;
    }
    pgp_text tx[PGP_R_COUNT];
    for (int c = PGP_R_EVENT_ID; c <= PGP_R_HEADERS; c++)
        tx[c] = pgp_col(res, row, c);
    tx[PGP_R_PAYLOAD] = pgp_payload(res, row);

    pgp_hdrs h;
    obx_status rc = pgp_hdrs_parse(tx[PGP_R_HEADERS], &h, err, errlen);
    if (rc == OBX_PERMANENT && !strict) {
        pgp_hdrs_free(&h);
        rc = OBX_OK;
    }
    if (rc != OBX_OK) {
        pgp_hdrs_free(&h);
        return rc;
    }
    pgp_event *e = calloc(1, pgp_block_size(tx, &h));
    if (e)
        pgp_fill(e, res, row, tx, &h);
    pgp_hdrs_free(&h);
    *out = e;
    if (!e)
        snprintf(err, errlen, "out of memory");
    return e ? OBX_OK : OBX_NOMEM;
}
