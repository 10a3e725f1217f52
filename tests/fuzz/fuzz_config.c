/* libFuzzer target: arbitrary bytes through the config parser, then the
 * core's settings and a plugin-like table covering every option type, the
 * way the relay validates a config. Also feeds the raw input to the value
 * parsers. Aborts when an invariant of the API breaks. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "options.h"
#include "settings.h"
#include "template.h"

typedef struct fuzz_conf {
    char *s;
    int64_t i, d, z;
    bool b;
    int e;
    obx_list l;
    obx_kvlist p;
    obx_range r;
    char *secret;
} fuzz_conf;

static const char *const fuzz_enum[] = {"one", "two", "three", NULL};

static const obx_option fuzz_options[] = {
    OBX_OPT_STRING(fuzz_conf, s, "s", "dflt", "string"),
    OBX_OPT_INT(fuzz_conf, i, "i", "5", -10, 10, "int"),
    OBX_OPT_DURATION_ANY(fuzz_conf, d, "d", "1s", "duration"),
    OBX_OPT_SIZE(fuzz_conf, z, "z", "1KiB", 1, INT64_C(1) << 40, "size"),
    OBX_OPT_BOOL(fuzz_conf, b, "b", "on", "bool"),
    OBX_OPT_ENUM(fuzz_conf, e, "e", "two", fuzz_enum, "enum"),
    OBX_OPT_LIST(fuzz_conf, l, "l", "a,b", "list"),
    OBX_OPT_SECRET_PREFIX(fuzz_conf, p, "p", "prefix"),
    OBX_OPT_RANGE_ANY(fuzz_conf, r, "r", "1ms..1s", "range"),
    OBX_OPT_STRING(fuzz_conf, secret, "secret", OBX_SECRET(NULL), "secret"),
    OBX_OPTIONS_END,
};

static const obx_optable fuzz_table = {fuzz_options, sizeof(obx_option)};

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* An error must be a terminated "fuzz.conf..." line. */
static void check_err(const char *err, size_t len)
{
    check(memchr(err, '\0', len) != NULL);
    check(strncmp(err, "fuzz.conf", 9) == 0);
}

static void fill_plugin(const obx_conf_section *sec, const char *prefix)
{
    fuzz_conf c;
    char err[512];
    memset(&c, 0, sizeof c);
    if (obx_options_fill(fuzz_table, "fuzz.conf", sec, prefix, &c, err,
                         sizeof err) != 0) {
        check_err(err, sizeof err);
        check(c.s == NULL && c.l.items == NULL && c.p.items == NULL);
        return;
    }
    check(c.s != NULL && c.i >= -10 && c.i <= 10 && c.e >= 0 && c.e < 3);
    check(c.r.min_ms <= c.r.max_ms && c.z >= 1 && c.d >= 0);
    for (size_t i = 0; i < c.l.n; i++)
        check(c.l.items[i][0] != '\0');
    for (size_t i = 0; i < c.p.n; i++) {
        check(c.p.items[i].name[0] != '\0');
        (void)obx_options_is_secret(fuzz_table, c.p.items[i].name);
    }
    obx_options_free(fuzz_table, &c);
}

static void fill_pipeline(const obx_conf_section *sec)
{
    obx_pipeline_settings ps;
    char err[512];
    if (obx_pipeline_settings_fill("fuzz.conf", sec, &ps, err, sizeof err)) {
        check_err(err, sizeof err);
    } else {
        check(ps.store && ps.broker && ps.topic && ps.dlq);
        check(ps.batch_size >= 1 && ps.batch_size <= 100000);
        check(ps.dlq_kind != OBX_DLQ_TOPIC || (ps.dlq_topic && *ps.dlq_topic));
        check(obx_template_check(ps.topic, err, sizeof err) == 0);
        obx_pipeline_settings_free(&ps);
    }
    fill_plugin(sec, "store.");
    fill_plugin(sec, "broker.");
    fill_plugin(sec, "");
}

static void fill_all(const obx_conf_file *cf)
{
    obx_relay_settings rs;
    char err[512];
    if (obx_relay_settings_fill("fuzz.conf", obx_conf_relay(cf), &rs, err,
                                sizeof err) == 0)
        obx_relay_settings_free(&rs);
    else
        check_err(err, sizeof err);
    for (size_t i = 0; i < cf->n_sections; i++) {
        const obx_conf_section *s = &cf->sections[i];
        check(s->name != NULL && s->line >= 1);
        for (size_t j = 0; j < s->n_entries; j++)
            check(s->entries[j].line > s->line && s->entries[j].key[0]);
        if (s->kind == OBX_SECTION_PIPELINE)
            fill_pipeline(s);
    }
}

static void parse_values(const char *text)
{
    static const char *const cands[] = {"batch_size", "ordering", "topic",
                                        "retry.backoff", NULL};
    int64_t v, w;
    bool b;
    char err[256];
    if (obx_parse_duration_ms(text, &v) == 0)
        check(v >= 0);
    if (obx_parse_size_bytes(text, &v) == 0)
        check(v >= 0);
    if (obx_parse_range_ms(text, &v, &w) == 0)
        check(0 <= v && v <= w);
    (void)obx_parse_bool(text, &b);
    (void)obx_parse_int(text, &v);
    (void)obx_did_you_mean(text, cands);
    (void)obx_template_check(text, err, sizeof err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("OBX_FUZZ_A", "value", 1);
    setenv("OBX_FUZZ_EMPTY", "", 1);
    setenv("OBX_FUZZ_REF", "${env:OBX_FUZZ_A}", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    obx_conf_file cf;
    char err[512];
    if (obx_conf_parse("fuzz.conf", text, &cf, err, sizeof err) == 0) {
        fill_all(&cf);
        obx_conf_free(&cf);
    } else {
        check_err(err, sizeof err);
        check(cf.sections == NULL && cf.path == NULL);
    }
    parse_values(text);
    free(text);
    return 0;
}
