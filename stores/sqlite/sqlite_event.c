#include "sqlite_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* One text column: pointer and length as SQLite returned them. */
typedef struct sq_text {
    const char *s; /* NULL for SQL NULL */
    size_t len;
} sq_text;

/* One header while the block is being sized. */
typedef struct sq_hv {
    const char *name;
    const char *value;
    size_t value_len;
    char *owned; /* compact JSON of a non-string value, freed after copy */
} sq_hv;

/* Parsed headers of one row. */
typedef struct sq_hdrs {
    json_t *obj;
    sq_hv *v;
    size_t n;
} sq_hdrs;

enum {
    SQ_R_ID,
    SQ_R_EVENT_ID,
    SQ_R_AGGREGATE_TYPE,
    SQ_R_AGGREGATE_ID,
    SQ_R_EVENT_TYPE,
    SQ_R_PAYLOAD,
    SQ_R_TOPIC,
    SQ_R_HEADERS,
    SQ_R_CREATED_AT,
    SQ_R_ATTEMPTS,
};

static sq_text sq_col_text(sqlite3_stmt *st, int col)
{
    sq_text t = {NULL, 0};
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return t;
    /* text first, then bytes: the documented safe order */
    t.s = (const char *)sqlite3_column_text(st, col);
    t.len = (size_t)sqlite3_column_bytes(st, col);
    return t;
}

static void sq_hdrs_free(sq_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].owned);
    free(h->v);
    json_decref(h->obj);
}

static obx_status sq_hdrs_fill(sq_hdrs *h)
{
    h->v = calloc(json_object_size(h->obj), sizeof *h->v);
    if (!h->v)
        return OBX_NOMEM;
    const char *name;
    json_t *val;
    json_object_foreach(h->obj, name, val)
    {
        sq_hv *hv = &h->v[h->n++];
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
static obx_status sq_hdrs_parse(sq_text t, sq_hdrs *h, char *err, size_t errlen)
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
    return sq_hdrs_fill(h);
}

/* Copy len bytes plus a NUL at *cur; advance *cur. */
static const char *sq_put(char **cur, const char *s, size_t len)
{
    char *dst = *cur;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

/* A NULL text column becomes "" except where NULL is meaningful (topic). */
static const char *sq_put_text(char **cur, sq_text t, int keep_null)
{
    if (!t.s && keep_null)
        return NULL;
    return sq_put(cur, t.s ? t.s : "", t.len);
}

static size_t sq_block_size(const sq_text *tx, const sq_hdrs *h,
                            size_t payload_len)
{
    size_t sz = sizeof(sq_event) + h->n * sizeof(obx_header);
    for (int c = SQ_R_EVENT_ID; c <= SQ_R_TOPIC; c++)
        if (c != SQ_R_PAYLOAD)
            sz += tx[c].len + 1;
    for (size_t i = 0; i < h->n; i++)
        sz += strlen(h->v[i].name) + 1 + h->v[i].value_len + 1;
    return sz + payload_len + 1;
}

static void sq_fill_headers(sq_event *e, const sq_hdrs *h, char **cur)
{
    obx_header *hd = (obx_header *)(e + 1);
    for (size_t i = 0; i < h->n; i++) {
        hd[i].name = sq_put(cur, h->v[i].name, strlen(h->v[i].name));
        hd[i].value = sq_put(cur, h->v[i].value, h->v[i].value_len);
    }
    e->ev.headers = h->n ? hd : NULL;
    e->ev.n_headers = h->n;
}

static void sq_fill(sq_event *e, sqlite3_stmt *st, int first, const sq_text *tx,
                    const sq_hdrs *h)
{
    char *cur = (char *)((obx_header *)(e + 1) + h->n);
    sq_fill_headers(e, h, &cur);
    obx_event *ev = &e->ev;
    ev->event_id = sq_put_text(&cur, tx[SQ_R_EVENT_ID], 0);
    ev->aggregate_type = sq_put_text(&cur, tx[SQ_R_AGGREGATE_TYPE], 0);
    ev->aggregate_id = sq_put_text(&cur, tx[SQ_R_AGGREGATE_ID], 0);
    ev->key = ev->aggregate_id;
    ev->event_type = sq_put_text(&cur, tx[SQ_R_EVENT_TYPE], 0);
    ev->topic = sq_put_text(&cur, tx[SQ_R_TOPIC], 1);
    ev->payload = sq_put(&cur, tx[SQ_R_PAYLOAD].s, tx[SQ_R_PAYLOAD].len);
    ev->payload_len = tx[SQ_R_PAYLOAD].len;
    ev->created_at_us = sqlite3_column_int64(st, first + SQ_R_CREATED_AT);
    int64_t att = sqlite3_column_int64(st, first + SQ_R_ATTEMPTS);
    ev->attempts =
        att < 0 ? 0 : (att > UINT32_MAX ? UINT32_MAX : (uint32_t)att);
    ev->pos.seq = (uint64_t)sqlite3_column_int64(st, first + SQ_R_ID);
    ev->pos.ptr = e;
}

obx_status sq_event_read(sqlite3_stmt *st, int first, bool strict,
                         sq_event **out, char *err, size_t errlen)
{
    sq_text tx[SQ_EVENT_COLUMNS];
    for (int c = SQ_R_EVENT_ID; c <= SQ_R_HEADERS; c++)
        if (c != SQ_R_PAYLOAD)
            tx[c] = sq_col_text(st, first + c);
    /* the payload may be a BLOB or TEXT: read it as bytes either way */
    tx[SQ_R_PAYLOAD].s =
        (const char *)sqlite3_column_blob(st, first + SQ_R_PAYLOAD);
    tx[SQ_R_PAYLOAD].len =
        (size_t)sqlite3_column_bytes(st, first + SQ_R_PAYLOAD);

    sq_hdrs h;
    obx_status rc = sq_hdrs_parse(tx[SQ_R_HEADERS], &h, err, errlen);
    if (rc == OBX_PERMANENT && !strict) {
        sq_hdrs_free(&h);
        memset(&h, 0, sizeof h);
        rc = OBX_OK;
    }
    if (rc != OBX_OK) {
        sq_hdrs_free(&h);
        return rc;
    }
    sq_event *e = calloc(1, sq_block_size(tx, &h, tx[SQ_R_PAYLOAD].len));
    if (e)
        sq_fill(e, st, first, tx, &h);
    sq_hdrs_free(&h);
    *out = e;
    return e ? OBX_OK : OBX_NOMEM;
}
