#include "event_block.h"

#include "json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void osc_event_headers_free(osc_event_headers *h)
{
    free(h->v);
    free(h->buf);
    memset(h, 0, sizeof *h);
}

/* Copy a member's name or value into h->buf at *used as a C string:
 * strings unescaped, objects and arrays compacted, the rest as written.
 * Returns the copy, or NULL when it holds a NUL. */
static const char *osc_header_text(osc_event_headers *h, size_t *used,
                                   osc_json_span v, size_t *len)
{
    char *dst = h->buf + *used;
    if (v.kind == OSC_JSON_STRING)
        *len = osc_json_unescape(v, dst);
    else if (v.kind == OSC_JSON_OBJECT || v.kind == OSC_JSON_ARRAY)
        *len = osc_json_compact(v, dst);
    else
        memcpy(dst, v.s, *len = v.len);
    dst[*len] = '\0';
    *used += *len + 1;
    return memchr(dst, '\0', *len) ? NULL : dst;
}

/* For the sort that finds repeated names: the name, then the place. */
typedef struct osc_header_ref {
    const char *name;
    size_t at;
} osc_header_ref;

static int osc_header_ref_cmp(const void *a, const void *b)
{
    const osc_header_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->at < y->at ? -1 : x->at > y->at;
}

/* A name given twice keeps its last value at its first place, as jansson
 * did before and jsonb does on write. A sort, not a quadratic search: the
 * column is written by whoever can insert a row. */
static obx_status osc_headers_dedup(osc_event_headers *h)
{
    if (h->n < 2)
        return OBX_OK;
    osc_header_ref *r = malloc(h->n * sizeof *r);
    if (!r)
        return OBX_NOMEM;
    for (size_t i = 0; i < h->n; i++)
        r[i] = (osc_header_ref){h->v[i].name, i};
    qsort(r, h->n, sizeof *r, osc_header_ref_cmp);
    for (size_t i = 0; i < h->n;) {
        size_t j = i + 1;
        while (j < h->n && strcmp(r[j].name, r[i].name) == 0)
            j++;
        osc_event_header_value *first = &h->v[r[i].at];
        const osc_event_header_value last = h->v[r[j - 1].at];
        first->value = last.value;
        first->value_len = last.value_len;
        for (size_t k = i + 1; k < j; k++)
            h->v[r[k].at].name = NULL;
        i = j;
    }
    free(r);
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].name)
            h->v[n++] = h->v[i];
    h->n = n;
    return OBX_OK;
}

/* Every name and value fits in t.len bytes with their NULs: a name loses
 * its two quotes to gain one NUL, escapes and compacting only shrink, and
 * the ':' of each member pays for the NUL after its value. */
static obx_status osc_headers_fill(osc_event_headers *h, osc_json_span obj,
                                   size_t room, char *err, size_t errlen)
{
    osc_json_iter it;
    osc_json_span name, value;
    size_t n = 0, used = 0;
    osc_json_members(&it, obj);
    while (osc_json_next(&it, &name, &value))
        n++;
    /* + 1: malloc(0) may return NULL, which would read as out of memory */
    h->v = calloc(n + 1, sizeof *h->v);
    h->buf = malloc(room + 1);
    if (!h->v || !h->buf)
        return OBX_NOMEM;
    osc_json_members(&it, obj);
    while (osc_json_next(&it, &name, &value)) {
        osc_event_header_value *hv = &h->v[h->n++];
        hv->name = osc_header_text(h, &used, name, &hv->name_len);
        if (!hv->name) {
            snprintf(err, errlen,
                     "headers: a header name holds a NUL (\\u0000), which a "
                     "message header cannot carry");
            return OBX_PERMANENT;
        }
        hv->value = osc_header_text(h, &used, value, &hv->value_len);
        if (!hv->value) {
            snprintf(err, errlen,
                     "headers: header \"%.100s\" holds a NUL (\\u0000), "
                     "which a message header cannot carry",
                     hv->name);
            return OBX_PERMANENT;
        }
    }
    return osc_headers_dedup(h);
}

static obx_status osc_headers_load(osc_col_text t, osc_event_headers *h,
                                   char *err, size_t errlen)
{
    if (!t.s || t.len == 0)
        return OBX_OK;
    char why[160];
    osc_json_span obj;
    if (osc_json_check(t.s, t.len, &obj, why, sizeof why) != 0) {
        snprintf(err, errlen, "headers are not valid JSON: %s", why);
        return OBX_PERMANENT;
    }
    if (obj.kind != OSC_JSON_OBJECT) {
        snprintf(err, errlen, "headers must be a JSON object");
        return OBX_PERMANENT;
    }
    return osc_headers_fill(h, obj, t.len, err, errlen);
}

obx_status osc_event_headers_parse(osc_col_text t, bool strict,
                                   osc_event_headers *h, char *err,
                                   size_t errlen)
{
    memset(h, 0, sizeof *h);
    obx_status rc = osc_headers_load(t, h, err, errlen);
    if (rc == OBX_OK)
        return OBX_OK;
    /* Nothing half-built is handed on, also when leniently dropped. */
    osc_event_headers_free(h);
    return rc == OBX_PERMANENT && !strict ? OBX_OK : rc;
}

obx_status osc_event_fields_check(const osc_event_fields *f,
                                  const char *const *names, char *err,
                                  size_t errlen)
{
    const osc_col_text *tx[OSC_EVENT_TEXT_FIELDS] = {
        &f->event_id, &f->aggregate_type, &f->aggregate_id, &f->event_type,
        &f->topic};
    for (int i = 0; i < OSC_EVENT_TEXT_FIELDS; i++) {
        const char *s = tx[i]->s;
        if (!s && tx[i] == &f->topic)
            continue; /* no topic: the pipeline's template decides */
        if (!s) {
            snprintf(err, errlen, "column \"%s\" is NULL", names[i]);
            return OBX_PERMANENT;
        }
        const char *nul = memchr(s, '\0', tx[i]->len);
        if (nul) {
            snprintf(err, errlen,
                     "column \"%s\" holds a NUL byte at offset %zu, which a "
                     "broker cannot carry in that field",
                     names[i], (size_t)(nul - s));
            return OBX_PERMANENT;
        }
    }
    return OBX_OK;
}

/* Copy len bytes plus a NUL at *cur; advance *cur. */
static const char *osc_put(char **cur, const char *s, size_t len)
{
    char *dst = *cur;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

/* A NULL column becomes "" except where NULL is meaningful (topic). */
static const char *osc_put_text(char **cur, osc_col_text t, bool keep_null)
{
    if (!t.s && keep_null)
        return NULL;
    return osc_put(cur, t.s ? t.s : "", t.len);
}

void *osc_event_block_new(size_t head_size, const osc_event_fields *f,
                          const osc_event_headers *h)
{
    const osc_col_text *tx[] = {&f->event_id,     &f->aggregate_type,
                                &f->aggregate_id, &f->event_type,
                                &f->payload,      &f->topic};
    size_t sz = head_size + h->n * sizeof(obx_header);
    for (size_t i = 0; i < sizeof tx / sizeof tx[0]; i++)
        sz += tx[i]->len + 1;
    for (size_t i = 0; i < h->n; i++)
        sz += h->v[i].name_len + 1 + h->v[i].value_len + 1;
    char *block = calloc(1, sz);
    if (!block)
        return NULL;

    obx_event *ev = (obx_event *)block;
    obx_header *hd = (obx_header *)(block + head_size);
    char *cur = (char *)(hd + h->n);
    for (size_t i = 0; i < h->n; i++) {
        hd[i].name = osc_put(&cur, h->v[i].name, h->v[i].name_len);
        hd[i].value = osc_put(&cur, h->v[i].value, h->v[i].value_len);
    }
    ev->headers = h->n ? hd : NULL;
    ev->n_headers = h->n;
    ev->event_id = osc_put_text(&cur, f->event_id, false);
    ev->aggregate_type = osc_put_text(&cur, f->aggregate_type, false);
    ev->aggregate_id = osc_put_text(&cur, f->aggregate_id, false);
    ev->key = ev->aggregate_id;
    ev->event_type = osc_put_text(&cur, f->event_type, false);
    ev->payload = osc_put_text(&cur, f->payload, false);
    ev->payload_len = f->payload.len;
    ev->topic = osc_put_text(&cur, f->topic, true);
    ev->created_at_us = f->created_at_us;
    ev->attempts = f->attempts < 0            ? 0
                   : f->attempts > UINT32_MAX ? UINT32_MAX
                                              : (uint32_t)f->attempts;
    ev->pos.seq = f->seq;
    ev->pos.ptr = block;
    return block;
}
