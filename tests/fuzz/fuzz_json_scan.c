/* libFuzzer target: arbitrary bytes through the stores' strict JSON
 * scanner (stores/common/json_scan.c), as a headers column or a pg_wal
 * message envelope would hand them over. Aborts when a span leaves its
 * input, the member walk disagrees with the checker (a member's value,
 * checked on its own, must give back the same span and kind), unescaping
 * writes past str.len - 2 bytes, compacting is not idempotent or yields
 * text the checker refuses, or a refusal comes without a reason. The same
 * bytes then go through the headers column parser (event_block.c) and an
 * event block is built from them: ASan sees any write past the buffer
 * that parser sizes from the input, and every header must come back whole
 * (no NUL inside, the length it claims). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_block.h"
#include "json_scan.h"

static void inside(osc_json_span v, const char *s, size_t n)
{
    if (!v.s || v.len == 0 || v.s < s || v.s + v.len > s + n)
        abort();
}

/* A value re-checked on its own: same bytes, same kind. */
static void same_alone(osc_json_span v)
{
    osc_json_span w;
    char err[128];
    if (osc_json_check(v.s, v.len, &w, err, sizeof err) != 0)
        abort();
    if (w.s != v.s || w.len != v.len || w.kind != v.kind)
        abort();
}

static void compact_ok(osc_json_span v)
{
    char *a = malloc(v.len), *b = malloc(v.len);
    if (!a || !b)
        abort();
    size_t n = osc_json_compact(v, a);
    osc_json_span c;
    if (n > v.len || osc_json_check(a, n, &c, NULL, 0) != 0 || c.len != n ||
        c.kind != v.kind)
        abort();
    if (osc_json_compact(c, b) != n || memcmp(a, b, n) != 0)
        abort();
    free(a);
    free(b);
}

static void unescape_ok(osc_json_span str)
{
    if (str.kind != OSC_JSON_STRING || str.len < 2)
        abort();
    /* exactly the promised room, so ASan sees a byte more */
    char *out = malloc(str.len - 2 ? str.len - 2 : 1);
    if (!out)
        abort();
    if (osc_json_unescape(str, out) > str.len - 2)
        abort();
    free(out);
}

static void walk(osc_json_span obj, const char *s, size_t n, int depth)
{
    osc_json_iter it;
    osc_json_span name, value;
    osc_json_members(&it, obj);
    while (osc_json_next(&it, &name, &value)) {
        inside(name, obj.s, obj.len);
        inside(value, obj.s, obj.len);
        same_alone(name);
        same_alone(value);
        unescape_ok(name);
        if (value.kind == OSC_JSON_STRING)
            unescape_ok(value);
        if (value.kind == OSC_JSON_OBJECT && depth < 8)
            walk(value, s, n, depth + 1);
    }
}

static void headers_ok(const char *buf, size_t size)
{
    osc_event_headers h;
    char err[256] = "";
    obx_status st = osc_event_headers_parse((osc_col_text){buf, size}, true, &h,
                                            err, sizeof err);
    if (st == OBX_PERMANENT && !err[0])
        abort();
    if (st != OBX_OK)
        return;
    const osc_event_fields f = {.event_id = {"e", 1},
                                .aggregate_type = {"t", 1},
                                .aggregate_id = {"k", 1},
                                .event_type = {"T", 1}};
    obx_event *ev =
        osc_event_block_new(sizeof(obx_event) + sizeof(void *), &f, &h);
    if (!ev || ev->n_headers != h.n)
        abort();
    for (size_t i = 0; i < h.n; i++)
        if (strlen(ev->headers[i].name) != h.v[i].name_len ||
            strlen(ev->headers[i].value) != h.v[i].value_len)
            abort();
    free(ev);
    osc_event_headers_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exactly-sized copy, so ASan sees any over-read */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    osc_json_span v;
    char err[128] = "";
    if (osc_json_check(buf, size, &v, err, sizeof err) == 0) {
        inside(v, buf, size);
        same_alone(v);
        compact_ok(v);
        if (v.kind == OSC_JSON_STRING)
            unescape_ok(v);
        if (v.kind == OSC_JSON_OBJECT)
            walk(v, buf, size, 0);
    } else if (!err[0]) {
        abort();
    }
    headers_ok(buf, size);
    free(buf);
    return 0;
}
