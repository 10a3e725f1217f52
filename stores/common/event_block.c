#include "event_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One header while the block is being sized. */
struct obx_event_header_value {
    const char *name;
    const char *value;
    size_t value_len;
    char *owned; /* compact JSON of a non-string value, freed after copy */
};

void obx_event_headers_free(obx_event_headers *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].owned);
    free(h->v);
    json_decref(h->obj);
    memset(h, 0, sizeof *h);
}

static obx_status obx_headers_fill(obx_event_headers *h)
{
    /* + 1: calloc(0) may return NULL, which would read as out of memory
     * for a valid empty object. */
    h->v = calloc(json_object_size(h->obj) + 1, sizeof *h->v);
    if (!h->v)
        return OBX_NOMEM;
    const char *name;
    json_t *val;
    json_object_foreach(h->obj, name, val)
    {
        struct obx_event_header_value *hv = &h->v[h->n++];
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

static obx_status obx_headers_load(obx_col_text t, obx_event_headers *h,
                                   char *err, size_t errlen)
{
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
    return obx_headers_fill(h);
}

obx_status obx_event_headers_parse(obx_col_text t, bool strict,
                                   obx_event_headers *h, char *err,
                                   size_t errlen)
{
    memset(h, 0, sizeof *h);
    obx_status rc = obx_headers_load(t, h, err, errlen);
    if (rc == OBX_OK)
        return OBX_OK;
    /* Nothing half-built is handed on, also when leniently dropped. */
    obx_event_headers_free(h);
    return rc == OBX_PERMANENT && !strict ? OBX_OK : rc;
}

/* Copy len bytes plus a NUL at *cur; advance *cur. */
static const char *obx_put(char **cur, const char *s, size_t len)
{
    char *dst = *cur;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

/* A NULL column becomes "" except where NULL is meaningful (topic). */
static const char *obx_put_text(char **cur, obx_col_text t, bool keep_null)
{
    if (!t.s && keep_null)
        return NULL;
    return obx_put(cur, t.s ? t.s : "", t.len);
}

void *obx_event_block_new(size_t head_size, const obx_event_fields *f,
                          const obx_event_headers *h)
{
    const obx_col_text *tx[] = {&f->event_id,     &f->aggregate_type,
                                &f->aggregate_id, &f->event_type,
                                &f->payload,      &f->topic};
    size_t sz = head_size + h->n * sizeof(obx_header);
    for (size_t i = 0; i < sizeof tx / sizeof tx[0]; i++)
        sz += tx[i]->len + 1;
    for (size_t i = 0; i < h->n; i++)
        sz += strlen(h->v[i].name) + 1 + h->v[i].value_len + 1;
    char *block = calloc(1, sz);
    if (!block)
        return NULL;

    obx_event *ev = (obx_event *)block;
    obx_header *hd = (obx_header *)(block + head_size);
    char *cur = (char *)(hd + h->n);
    for (size_t i = 0; i < h->n; i++) {
        hd[i].name = obx_put(&cur, h->v[i].name, strlen(h->v[i].name));
        hd[i].value = obx_put(&cur, h->v[i].value, h->v[i].value_len);
    }
    ev->headers = h->n ? hd : NULL;
    ev->n_headers = h->n;
    ev->event_id = obx_put_text(&cur, f->event_id, false);
    ev->aggregate_type = obx_put_text(&cur, f->aggregate_type, false);
    ev->aggregate_id = obx_put_text(&cur, f->aggregate_id, false);
    ev->key = ev->aggregate_id;
    ev->event_type = obx_put_text(&cur, f->event_type, false);
    ev->payload = obx_put_text(&cur, f->payload, false);
    ev->payload_len = f->payload.len;
    ev->topic = obx_put_text(&cur, f->topic, true);
    ev->created_at_us = f->created_at_us;
    ev->attempts = f->attempts < 0            ? 0
                   : f->attempts > UINT32_MAX ? UINT32_MAX
                                              : (uint32_t)f->attempts;
    ev->pos.seq = f->seq;
    ev->pos.ptr = block;
    return block;
}
