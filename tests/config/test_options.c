/* Option tables: value parsers, every type filled at its offset, defaults,
 * secrets, did-you-mean, stride walking and the help text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf_fixture.h"

static void test_parse_duration(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } ok[] = {{"0", 0},           {"250ms", 250},
              {"5s", 5000},       {"2m", 120000},
              {"1h", 3600000},    {"1d", 86400000},
              {"1.5s", 1500},     {"0.25s", 250},
              {"1h30m", 5400000}, {"1d2h3m4s5ms", 93784005},
              {"1m0.5s", 60500},  {"0ms", 0},
              {"0s", 0},          {"100d", 8640000000}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        if (obx_parse_duration_ms(ok[i].in, &ms) != 0 || ms != ok[i].ms)
            print_error("duration '%s' -> %lld\n", ok[i].in, (long long)ms);
        assert_int_equal(obx_parse_duration_ms(ok[i].in, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    static const char *const bad[] = {"",
                                      "5",
                                      "30",
                                      "s",
                                      "5x",
                                      "-1s",
                                      "5 s",
                                      "1.s",
                                      ".5s",
                                      "0.5ms",
                                      "1.0001s",
                                      "5S",
                                      "1y",
                                      "5sms",
                                      "1..2s",
                                      "99999999999999999999d",
                                      "106751991168d",
                                      "1e3ms",
                                      " 5s",
                                      "1h1h",
                                      "30m1h",
                                      "1s5ms5ms",
                                      NULL};
    for (size_t i = 0; bad[i]; i++) {
        int64_t ms = 7;
        if (obx_parse_duration_ms(bad[i], &ms) == 0)
            print_error("duration '%s' accepted\n", bad[i]);
        assert_int_equal(obx_parse_duration_ms(bad[i], &ms), -1);
        assert_int_equal(ms, 7);
    }
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *in;
        int64_t b;
    } ok[] = {{"0", 0},
              {"512", 512},
              {"512B", 512},
              {"64KiB", 65536},
              {"1MiB", 1048576},
              {"1GiB", 1073741824},
              {"2TiB", INT64_C(2199023255552)},
              {"1KB", 1000},
              {"1MB", 1000000},
              {"1GB", 1000000000},
              {"1mib", 1048576},
              {"64 KiB", 65536},
              {"1.5KiB", 1536},
              {"0.5MB", 500000}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t b = -1;
        if (obx_parse_size_bytes(ok[i].in, &b) != 0 || b != ok[i].b)
            print_error("size '%s' -> %lld\n", ok[i].in, (long long)b);
        assert_int_equal(obx_parse_size_bytes(ok[i].in, &b), 0);
        assert_int_equal(b, ok[i].b);
    }
    static const char *const bad[] = {
        "",          "KiB",           "1XB", "-1",  "1K", "1.3B",
        "1.0001KiB", "9999999999TiB", "1 2", "1e3", NULL};
    for (size_t i = 0; bad[i]; i++) {
        int64_t b = 7;
        if (obx_parse_size_bytes(bad[i], &b) == 0)
            print_error("size '%s' accepted\n", bad[i]);
        assert_int_equal(obx_parse_size_bytes(bad[i], &b), -1);
    }
}

static void test_parse_bool_int_range(void **state)
{
    static const char *const t[] = {"true", "yes", "on", "1", "TRUE", "On"};
    static const char *const f[] = {"false", "no", "off", "0", "No"};
    bool b;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        b = false;
        assert_int_equal(obx_parse_bool(t[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        b = true;
        assert_int_equal(obx_parse_bool(f[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(obx_parse_bool("maybe", &b), -1);
    assert_int_equal(obx_parse_bool("", &b), -1);

    int64_t v;
    assert_int_equal(obx_parse_int("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(obx_parse_int("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(obx_parse_int("9223372036854775807", &v), 0);
    assert_int_equal(obx_parse_int("9223372036854775808", &v), -1);
    assert_int_equal(obx_parse_int("", &v), -1);
    assert_int_equal(obx_parse_int(" 1", &v), -1);
    assert_int_equal(obx_parse_int("1 ", &v), -1);
    assert_int_equal(obx_parse_int("0x10", &v), -1);
    assert_int_equal(obx_parse_int("1k", &v), -1);

    int64_t lo, hi;
    assert_int_equal(obx_parse_range_ms("100ms..60s", &lo, &hi), 0);
    assert_int_equal(lo, 100);
    assert_int_equal(hi, 60000);
    assert_int_equal(obx_parse_range_ms("1s .. 1s", &lo, &hi), 0);
    assert_int_equal(lo, 1000);
    assert_int_equal(hi, 1000);
    assert_int_equal(obx_parse_range_ms("60s..100ms", &lo, &hi), -1);
    assert_int_equal(obx_parse_range_ms("100ms", &lo, &hi), -1);
    assert_int_equal(obx_parse_range_ms("1s..2s..3s", &lo, &hi), -1);
    assert_int_equal(obx_parse_range_ms("..1s", &lo, &hi), -1);
    assert_int_equal(obx_parse_range_ms("100..200", &lo, &hi), -1);
}

static void test_did_you_mean(void **state)
{
    static const char *const c[] = {"batch_size", "ordering",      "topic",
                                    "dlq",        "retry.backoff", NULL};
    assert_string_equal(obx_did_you_mean("batch_sise", c), "batch_size");
    assert_string_equal(obx_did_you_mean("bacth_size", c), "batch_size");
    assert_string_equal(obx_did_you_mean("Batch_Size", c), "batch_size");
    assert_string_equal(obx_did_you_mean("topik", c), "topic");
    assert_string_equal(obx_did_you_mean("dql", c), "dlq");
    assert_string_equal(obx_did_you_mean("retry.backof", c), "retry.backoff");
    assert_null(obx_did_you_mean("size", c));
    assert_null(obx_did_you_mean("x", c));
    assert_null(obx_did_you_mean("", c));
    assert_null(obx_did_you_mean("completely_unrelated", c));
    char huge[200];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_null(obx_did_you_mean(huge, c));
}

/* Build a section from "key=value" strings (line = index + 2). */
static obx_conf_section make_section(const char *const *kv, size_t n)
{
    obx_conf_section s = {OBX_SECTION_PIPELINE, "orders", 1,
                          calloc(n + 1, sizeof(obx_conf_entry)), n};
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        s.entries[i].key = strndup(kv[i], (size_t)(eq - kv[i]));
        s.entries[i].value = strdup(eq + 1);
        s.entries[i].line = (int)i + 2;
    }
    return s;
}

static void free_section(obx_conf_section *s)
{
    for (size_t i = 0; i < s->n_entries; i++) {
        free(s->entries[i].key);
        free(s->entries[i].value);
    }
    free(s->entries);
}

static void test_every_type(void **state)
{
    static const char *const kv[] = {
        "store.path=/var/lib/o.db",
        "store.password=hunter2",
        "store.retries=10",
        "store.pin=1234",
        "store.verbose=yes",
        "store.timeout=1m30s",
        "store.max_bytes=64KiB",
        "store.mode=PARANOID",
        "store.hosts= a , b.example:5432,c ",
        "store.kafka.linger.ms=5",
        "store.kafka.sasl.password=pw",
        "store.window=250ms..2s",
        "broker.pretty=true",
        "batch_size=12",
    };
    obx_conf_section s = make_section(kv, sizeof kv / sizeof kv[0]);
    tstore_conf c;
    memset(&c, 0, sizeof c);
    char err[512] = "";
    int rc = obx_options_fill(tstore_optable(), "t.conf", &s, "store.", &c, err,
                              sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.path, "/var/lib/o.db");
    assert_string_equal(c.password, "hunter2");
    assert_int_equal(c.retries, 10);
    assert_int_equal(c.pin, 1234);
    assert_true(c.verbose);
    assert_int_equal(c.timeout_ms, 90000);
    assert_int_equal(c.max_bytes, 65536);
    assert_int_equal(c.mode, 2);
    assert_int_equal(c.hosts.n, 3);
    assert_string_equal(c.hosts.items[0], "a");
    assert_string_equal(c.hosts.items[1], "b.example:5432");
    assert_string_equal(c.hosts.items[2], "c");
    assert_int_equal(c.kafka.n, 2);
    assert_string_equal(c.kafka.items[0].name, "linger.ms");
    assert_string_equal(c.kafka.items[0].value, "5");
    assert_int_equal(c.kafka.items[0].line, 11);
    assert_string_equal(c.kafka.items[1].name, "sasl.password");
    assert_int_equal(c.window.min_ms, 250);
    assert_int_equal(c.window.max_ms, 2000);
    assert_null(c.label);
    obx_options_free(tstore_optable(), &c);
    assert_null(c.path);
    assert_null(c.hosts.items);
    assert_int_equal(c.kafka.n, 0);
    obx_options_free(tstore_optable(), &c); /* twice is harmless */
    free_section(&s);
}

static void test_defaults(void **state)
{
    static const char *const kv[] = {"store.path=x"};
    obx_conf_section s = make_section(kv, 1);
    tstore_conf c;
    memset(&c, 0, sizeof c);
    char err[512] = "";
    assert_int_equal(obx_options_fill(tstore_optable(), "t.conf", &s, "store.",
                                      &c, err, sizeof err),
                     0);
    assert_null(c.password);
    assert_int_equal(c.retries, 3);
    assert_false(c.verbose);
    assert_int_equal(c.timeout_ms, 5000);
    assert_int_equal(c.max_bytes, 1048576);
    assert_int_equal(c.mode, 1);
    assert_int_equal(c.hosts.n, 1);
    assert_string_equal(c.hosts.items[0], "localhost");
    assert_int_equal(c.kafka.n, 0);
    assert_int_equal(c.window.min_ms, 1000);
    assert_int_equal(c.window.max_ms, 10000);
    obx_options_free(tstore_optable(), &c);
    free_section(&s);
}

static void test_empty_list(void **state)
{
    static const char *const kv[] = {"store.path=x", "store.hosts="};
    obx_conf_section s = make_section(kv, 2);
    tstore_conf c;
    memset(&c, 0, sizeof c);
    char err[512] = "";
    assert_int_equal(obx_options_fill(tstore_optable(), "t.conf", &s, "store.",
                                      &c, err, sizeof err),
                     0);
    assert_int_equal(c.hosts.n, 0);
    obx_options_free(tstore_optable(), &c);
    free_section(&s);
}

/* On error nothing allocated stays behind (ASan's leak check). */
static void test_error_frees(void **state)
{
    static const char *const kv[] = {"store.path=x", "store.hosts=a,b",
                                     "store.kafka.a=1", "store.mode=nope"};
    obx_conf_section s = make_section(kv, 4);
    tstore_conf c;
    memset(&c, 0, sizeof c);
    char err[512] = "";
    assert_int_equal(obx_options_fill(tstore_optable(), "t.conf", &s, "store.",
                                      &c, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "t.conf:5: [pipeline orders] key "
                                "'store.mode': 'nope' is not one of: fast, "
                                "safe, paranoid"));
    assert_null(c.path);
    assert_null(c.hosts.items);
    assert_null(c.kafka.items);
    free_section(&s);
}

static void test_null_section(void **state)
{
    tbroker_conf b = {true};
    char err[256];
    assert_int_equal(obx_options_fill(tbroker_optable(), "t.conf", NULL, "", &b,
                                      err, sizeof err),
                     0);
    assert_false(b.pretty);
    tstore_conf c;
    memset(&c, 0, sizeof c);
    assert_int_equal(obx_options_fill(tstore_optable(), "t.conf", NULL, "", &c,
                                      err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "t.conf: [relay] missing required key 'path'"));
}

static void test_is_secret(void **state)
{
    obx_optable t = tstore_optable();
    assert_true(obx_options_is_secret(t, "password"));
    assert_true(obx_options_is_secret(t, "pin"));
    assert_false(obx_options_is_secret(t, "path"));
    assert_false(obx_options_is_secret(t, "nope"));
    assert_true(obx_options_is_secret(t, "kafka.sasl.password"));
    assert_true(obx_options_is_secret(t, "kafka.ssl.key.pem"));
    assert_true(obx_options_is_secret(t, "kafka.oauth.TOKEN"));
    assert_true(obx_options_is_secret(t, "kafka.client_secret"));
    assert_false(obx_options_is_secret(t, "kafka.linger.ms"));
    assert_false(obx_options_is_secret(t, "kafkax.password"));
}

/* A plugin built against a later ABI minor has larger rows. */
typedef struct wide_row {
    obx_option o;
    int64_t added_later[3];
} wide_row;

typedef struct wide_conf {
    int64_t a;
    char *b;
} wide_conf;

static void test_stride(void **state)
{
    static const wide_row rows[] = {
        {{"a", OBX_OPT_INT, "5", 0, 0, 0, NULL, offsetof(wide_conf, a), "A"},
         {1, 2, 3}},
        {{"b", OBX_OPT_STRING, "bee", 0, 0, 0, NULL, offsetof(wide_conf, b),
          "B"},
         {4, 5, 6}},
        {OBX_OPTIONS_END, {0, 0, 0}},
    };
    obx_optable t = {&rows[0].o, sizeof(wide_row)};
    assert_string_equal(obx_optable_row(t, 1)->name, "b");
    assert_null(obx_optable_row(t, 2));
    wide_conf c = {0, NULL};
    char err[256];
    assert_int_equal(
        obx_options_fill(t, "t.conf", NULL, "", &c, err, sizeof err), 0);
    assert_int_equal(c.a, 5);
    assert_string_equal(c.b, "bee");
    obx_options_free(t, &c);
    assert_null(c.b);
    obx_optable empty = {NULL, 0};
    assert_null(obx_optable_row(empty, 0));
}

static void test_bad_table(void **state)
{
    static const obx_option rows[] = {
        {"n", OBX_OPT_INT, "many", 0, 0, 0, NULL, 0, "broken default"},
        OBX_OPTIONS_END,
    };
    int64_t v = 0;
    char err[256];
    obx_optable t = {rows, sizeof rows[0]};
    assert_int_equal(
        obx_options_fill(t, "t.conf", NULL, "x.", &v, err, sizeof err), -1);
    assert_non_null(
        strstr(err, "option table error: default 'many' of 'x.n' is invalid"));
}

static char *help_text(obx_optable t, const char *prefix);

typedef struct bounds_conf {
    int64_t any, old, bounded;
    obx_range r;
} bounds_conf;

/* OBX_NO_BOUNDS (the *_ANY macros) and 1.0's min == max == 0 both mean no
 * bounds: any value passes and help shows no range; a bounded row still
 * refuses values outside it. */
static void test_no_bounds_spellings(void **state)
{
    static const obx_option rows[] = {
        OBX_OPT_INT_ANY(bounds_conf, any, "any", "0", "no bounds, 1.2"),
        {"old", OBX_OPT_INT, "0", 0, 0, 0, NULL, offsetof(bounds_conf, old),
         "no bounds, as 1.0 tables say it"},
        OBX_OPT_INT(bounds_conf, bounded, "bounded", "1", -3, 3, "bounded"),
        OBX_OPT_RANGE_ANY(bounds_conf, r, "r", "1ms..1d", "no bounds"),
        OBX_OPTIONS_END,
    };
    assert_int_equal(rows[0].min, INT64_MIN);
    assert_int_equal(rows[0].max, INT64_MAX);
    obx_optable t = {rows, sizeof rows[0]};
    obx_conf_entry e[] = {{"any", "-9223372036854775807", 1},
                          {"old", "9223372036854775807", 2},
                          {"bounded", "-3", 3},
                          {"r", "0ms..100d", 4}};
    obx_conf_section sec = {OBX_SECTION_PIPELINE, "p", 1, e, 4};
    bounds_conf c = {0, 0, 0, {0, 0}};
    char err[512] = "";
    if (obx_options_fill(t, "t.conf", &sec, "", &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.any, -INT64_MAX);
    assert_int_equal(c.old, INT64_MAX);
    assert_int_equal(c.bounded, -3);
    assert_int_equal(c.r.max_ms, 100 * 86400000LL);
    e[2].value = "4";
    assert_int_equal(
        obx_options_fill(t, "t.conf", &sec, "", &c, err, sizeof err), -1);
    if (!strstr(err, "'4' is out of range (valid: -3..3)"))
        fail_msg("%s", err);
    char *h = help_text(t, "");
    assert_non_null(strstr(h, "any (int, default: 0)\n"));
    assert_non_null(strstr(h, "old (int, default: 0)\n"));
    assert_non_null(strstr(h, "bounded (int, default: 1, range: -3..3)\n"));
    assert_non_null(strstr(h, "r (range, default: 1ms..1d)\n"));
    free(h);
}

static char *help_text(obx_optable t, const char *prefix)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    obx_options_help(f, t, prefix);
    fclose(f);
    return buf;
}

static void assert_help_lists_all(obx_optable t, const char *prefix)
{
    char *h = help_text(t, prefix);
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(t, i)); i++) {
        char name[128];
        snprintf(name, sizeof name, "\n%s%s%s (", prefix, o->name,
                 o->type == OBX_OPT_PREFIX ? ".*" : "");
        /* Every block starts on its own line; the first at offset 0. */
        if (!strstr(h, name) && strncmp(h, name + 1, strlen(name + 1)) != 0)
            print_error("help lacks '%s':\n%s\n", name + 1, h);
        assert_true(strstr(h, name) ||
                    strncmp(h, name + 1, strlen(name + 1)) == 0);
        assert_non_null(o->description);
        assert_true(strlen(o->description) > 10);
    }
    free(h);
}

static void test_help(void **state)
{
    assert_help_lists_all(obx_relay_optable(), "");
    assert_help_lists_all(obx_pipeline_optable(), "");
    assert_help_lists_all(tstore_optable(), "store.");
    char *h = help_text(obx_pipeline_optable(), "");
    assert_non_null(strstr(h, "store (string, required)"));
    assert_non_null(
        strstr(h, "batch_size (int, default: 256, range: 1..100000)"));
    assert_non_null(strstr(h, "ordering (enum, default: key)\n    values: "
                              "key, none\n"));
    assert_non_null(strstr(h, "retry.backoff (range, default: 100ms..60s, "
                              "bounds: 1ms..7d)"));
    assert_non_null(strstr(h, "publish_timeout (duration, default: 30s, "
                              "range: 1ms..1d)"));
    free(h);
    h = help_text(tstore_optable(), "store.");
    assert_non_null(strstr(h, "store.password (string, secret)"));
    assert_non_null(strstr(h, "store.kafka.* (prefix, secret)"));
    assert_non_null(
        strstr(h, "store.max_bytes (size, default: 1MiB, range: 1..1GiB)"));
    free(h);
    h = help_text(obx_relay_optable(), "");
    assert_non_null(strstr(h, "plugin_path (string, default: \"\")"));
    assert_non_null(strstr(h, "values: error, warn, info, debug, trace"));
    /* Descriptions wrap inside 80 columns. */
    for (char *line = strtok(h, "\n"); line; line = strtok(NULL, "\n"))
        assert_true(strlen(line) <= 80);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool_int_range),
        cmocka_unit_test(test_did_you_mean),
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_list),
        cmocka_unit_test(test_error_frees),
        cmocka_unit_test(test_null_section),
        cmocka_unit_test(test_is_secret),
        cmocka_unit_test(test_stride),
        cmocka_unit_test(test_bad_table),
        cmocka_unit_test(test_no_bounds_spellings),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
