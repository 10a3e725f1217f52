#include "broker_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

obx_event obx_tb_event(const char *id, const char *key, const char *type)
{
    static const char payload[] = "{\"n\":1}";
    obx_event ev;
    memset(&ev, 0, sizeof ev);
    ev.event_id = id;
    ev.key = key;
    ev.aggregate_id = key;
    ev.event_type = type;
    ev.aggregate_type = "order";
    ev.payload = payload;
    ev.payload_len = sizeof payload - 1;
    ev.destination = "orders";
    return ev;
}

const obx_broker_ops *obx_tb_ops(const obx_plugin *p)
{
    assert_int_equal(p->kind, OBX_PLUGIN_BROKER);
    assert_true(p->struct_size >= sizeof(obx_plugin));
    const obx_broker_ops *ops = p->ops;
    assert_true(ops->struct_size >= sizeof(obx_broker_ops));
    return ops;
}

void *obx_tb_open(const obx_plugin *p, const void *conf)
{
    char err[256] = "";
    void *inst = NULL;
    obx_status st =
        obx_tb_ops(p)->open(obx_test_host(), conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    assert_non_null(inst);
    return inst;
}

obx_status obx_tb_publish(const obx_plugin *p, void *inst, obx_event *events,
                          size_t n, obx_result *results)
{
    obx_event **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    assert_non_null(ptrs);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &events[i];
    memset(results, 0xa5, n * sizeof *results); /* catch unfilled results */
    obx_status st = obx_tb_ops(p)->publish(inst, ptrs, n, results, 5000);
    free(ptrs);
    return st;
}

char *obx_tb_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

size_t obx_tb_lines(char *buf, char **lines, size_t max)
{
    size_t n = 0;
    char *p = buf;
    while (*p && n < max) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

json_t *obx_tb_parse(const char *line)
{
    json_error_t jerr;
    json_t *v = json_loads(line, JSON_ALLOW_NUL, &jerr);
    if (!v)
        fail_msg("not JSON (%s at %d): %s", jerr.text, jerr.position, line);
    assert_true(json_is_object(v));
    return v;
}

void obx_tb_assert_str(json_t *obj, const char *field, const char *want)
{
    json_t *v = json_object_get(obj, field);
    if (!v)
        fail_msg("field %s missing", field);
    if (!want) {
        assert_true(json_is_null(v));
        return;
    }
    if (!json_is_string(v))
        fail_msg("field %s is not a string", field);
    assert_string_equal(json_string_value(v), want);
}

int obx_tb_fill(const obx_plugin *p, const char *const *kv, size_t n,
                void *conf, char *err, size_t errlen)
{
    obx_conf_entry entries[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++)
        entries[i] = (obx_conf_entry){(char *)kv[2 * i], (char *)kv[2 * i + 1],
                                      (int)i + 2};
    obx_conf_section sec = {OBX_SECTION_PIPELINE, "t", 1, entries, n};
    obx_optable t = {p->options, p->option_size};
    memset(conf, 0, p->config_size);
    return obx_options_fill(t, "test.conf", &sec, "broker.", conf, err, errlen);
}
