/* The config file parser: sections, entries, line numbers, ${env:...},
 * comments, and the libinih quirks we work around (long lines, indented
 * keys, long section names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "settings.h"
#include "support.h"

static const obx_conf_entry *find(const obx_conf_section *s, const char *k)
{
    for (size_t i = 0; i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, k) == 0)
            return &s->entries[i];
    return NULL;
}

static void parse_ok(const char *text, obx_conf_file *cf)
{
    char err[512] = "";
    int rc = obx_conf_parse("t.conf", text, cf, err, sizeof err);
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
}

static void assert_entry(const obx_conf_section *s, const char *k,
                         const char *v, int line)
{
    const obx_conf_entry *e = find(s, k);
    if (!e)
        print_error("no key '%s'\n", k);
    assert_non_null(e);
    assert_string_equal(e->value, v);
    assert_int_equal(e->line, line);
}

static void test_sections_and_lines(void **state)
{
    obx_conf_file cf;
    parse_ok("# leading comment\n"
             "; another\n"
             "\n"
             "[relay]\n"
             "log_level = debug\n"
             "\n"
             "[pipeline orders]   # the main one\n"
             "store = sqlite\n"
             "store.path=o.db\n"
             "[ pipeline  audit ]\n"
             "broker : stdout\n",
             &cf);
    assert_string_equal(cf.path, "t.conf");
    assert_int_equal(cf.n_sections, 3);
    assert_int_equal(cf.sections[0].kind, OBX_SECTION_RELAY);
    assert_string_equal(cf.sections[0].name, "relay");
    assert_int_equal(cf.sections[0].line, 4);
    assert_entry(&cf.sections[0], "log_level", "debug", 5);
    assert_int_equal(cf.sections[1].kind, OBX_SECTION_PIPELINE);
    assert_string_equal(cf.sections[1].name, "orders");
    assert_int_equal(cf.sections[1].line, 7);
    assert_int_equal(cf.sections[1].n_entries, 2);
    assert_entry(&cf.sections[1], "store", "sqlite", 8);
    assert_entry(&cf.sections[1], "store.path", "o.db", 9);
    assert_string_equal(cf.sections[2].name, "audit");
    assert_int_equal(cf.sections[2].line, 10);
    assert_entry(&cf.sections[2], "broker", "stdout", 11);
    assert_ptr_equal(obx_conf_relay(&cf), &cf.sections[0]);
    obx_conf_free(&cf);
    assert_null(cf.sections);
}

static void test_empty_and_no_relay(void **state)
{
    obx_conf_file cf;
    parse_ok("", &cf);
    assert_int_equal(cf.n_sections, 0);
    assert_null(obx_conf_relay(&cf));
    obx_conf_free(&cf);
    parse_ok("[pipeline a]\n[pipeline b]\n", &cf);
    assert_int_equal(cf.n_sections, 2);
    assert_int_equal(cf.sections[1].line, 2);
    assert_null(obx_conf_relay(&cf));
    obx_conf_free(&cf);
}

static void test_inline_comments(void **state)
{
    obx_conf_file cf;
    parse_ok("[relay]\n"
             "a = value   # hash comment\n"
             "b = value ; semicolon comment\n"
             "c = a#b;c\n"
             "d = # only a comment\n"
             "e = x\t# after a tab\n"
             "f = http://h/p?q=1#frag\n",
             &cf);
    const obx_conf_section *s = &cf.sections[0];
    assert_entry(s, "a", "value", 2);
    assert_entry(s, "b", "value", 3);
    assert_entry(s, "c", "a#b;c", 4);
    assert_entry(s, "d", "", 5);
    assert_entry(s, "e", "x", 6);
    assert_entry(s, "f", "http://h/p?q=1#frag", 7);
    obx_conf_free(&cf);
}

static void test_env_expansion(void **state)
{
    setenv("OBX_T_HOST", "db.internal", 1);
    setenv("OBX_T_PASS", "p@ss w0rd # not a comment", 1);
    setenv("OBX_T_EMPTY", "", 1);
    setenv("OBX_T_NESTED", "${env:OBX_T_HOST}", 1);
    obx_conf_file cf;
    parse_ok(
        "[pipeline p]\n"
        "store.conninfo = host=${env:OBX_T_HOST} password=${env:OBX_T_PASS}\n"
        "topic = ${env:OBX_T_HOST}.${aggregate_type}.${event_type}\n"
        "x = ${env:OBX_T_EMPTY}\n"
        "y = ${env:OBX_T_NESTED}\n"
        "z = $$ and $ and {env:OBX_T_HOST}\n",
        &cf);
    const obx_conf_section *s = &cf.sections[0];
    assert_entry(s, "store.conninfo",
                 "host=db.internal password=p@ss w0rd # not a comment", 2);
    assert_entry(s, "topic", "db.internal.${aggregate_type}.${event_type}", 3);
    assert_entry(s, "x", "", 4);
    /* Expanded once: a value that looks like a reference stays literal. */
    assert_entry(s, "y", "${env:OBX_T_HOST}", 5);
    assert_entry(s, "z", "$$ and $ and {env:OBX_T_HOST}", 6);
    obx_conf_free(&cf);
}

static char *long_string(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* libinih (Debian) cuts lines at 200 bytes; values must survive whole. */
static void test_long_lines(void **state)
{
    char *v = long_string('v', 5000);
    char *name = long_string('n', 60);
    size_t len = 3 * 5000 + 200;
    char *text = malloc(len);
    assert_non_null(text);
    snprintf(text, len,
             "[pipeline %s]\n"
             "broker.kafka.bootstrap.servers = %s   # long comment\n"
             "after = 1\n"
             "# %s\n"
             "last = 2\n",
             name, v, v);
    obx_conf_file cf;
    parse_ok(text, &cf);
    const obx_conf_section *s = &cf.sections[0];
    assert_string_equal(s->name, name); /* not cut at inih's 49 bytes */
    assert_entry(s, "broker.kafka.bootstrap.servers", v, 2);
    assert_entry(s, "after", "1", 3);
    assert_entry(s, "last", "2", 5);
    obx_conf_free(&cf);
    free(text);
    free(v);
    free(name);
}

/* libinih would read an indented line as the continuation of the previous
 * value; we read it as a key. */
static void test_indented_keys(void **state)
{
    obx_conf_file cf;
    parse_ok("[relay]\n"
             "    log_level = debug\n"
             "\tlog_format = json\n"
             "  [pipeline x]\n"
             "  store = a\n",
             &cf);
    assert_entry(&cf.sections[0], "log_level", "debug", 2);
    assert_entry(&cf.sections[0], "log_format", "json", 3);
    assert_int_equal(cf.sections[0].n_entries, 2);
    assert_entry(&cf.sections[1], "store", "a", 5);
    obx_conf_free(&cf);
}

static void test_bom_and_crlf(void **state)
{
    obx_conf_file cf;
    parse_ok("\xEF\xBB\xBF[relay]\r\nlog_level = warn\r\n\r\nlog_format=json",
             &cf);
    assert_int_equal(cf.sections[0].line, 1);
    assert_entry(&cf.sections[0], "log_level", "warn", 2);
    assert_entry(&cf.sections[0], "log_format", "json", 4);
    obx_conf_free(&cf);
}

static void test_first_error_wins(void **state)
{
    obx_conf_file cf;
    char err[256];
    /* inih keeps going after a bad line; the earliest error is reported. */
    assert_int_equal(obx_conf_parse("t.conf", "[relay]\nnot a pair\n[nope]\n",
                                    &cf, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "t.conf:2: expected 'key = value'"));
    assert_int_equal(cf.n_sections, 0);
    assert_null(cf.sections);
    assert_null(cf.path);
}

static void test_error_truncation(void **state)
{
    obx_conf_file cf;
    char err[12];
    assert_int_equal(obx_conf_parse("t.conf", "[nope]\n", &cf, err, sizeof err),
                     -1);
    assert_string_equal(err, "t.conf:1: u");
    char none[1] = "x";
    assert_int_equal(obx_conf_parse("t.conf", "[nope]\n", &cf, none, 0), -1);
    assert_int_equal(none[0], 'x');
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_load_file(void **state)
{
    char *dir = obx_test_tmpdir();
    char path[512], err[512];
    obx_conf_file cf;
    snprintf(path, sizeof path, "%s/a.conf", dir);
    const char ok[] = "[relay]\nlog_level = trace\n";
    write_file(path, ok, sizeof ok - 1);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), 0);
    assert_string_equal(cf.path, path);
    assert_entry(&cf.sections[0], "log_level", "trace", 2);
    obx_conf_free(&cf);

    const char nul[] = "[relay]\nlog_level = tr\0ace\n";
    write_file(path, nul, sizeof nul - 1);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: NUL byte"));

    write_file(path, "[relay]\n[relay]\n", 16);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s:2: duplicate [relay]", path);
    assert_non_null(strstr(err, want));

    /* Bigger than one read: the buffer grows, lines still count. */
    size_t big = 3000 * 11 + 64;
    char *text = malloc(big);
    assert_non_null(text);
    size_t n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(text + n, big - n, "# line %03d\n", i % 1000);
    n += (size_t)snprintf(text + n, big - n, "[relay]\nlog_level = warn\n");
    write_file(path, text, n);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), 0);
    assert_entry(&cf.sections[0], "log_level", "warn", 3002);
    obx_conf_free(&cf);
    free(text);

    /* Not a config file: refused before parsing. */
    size_t huge = 4u * 1024 * 1024 + 1;
    text = malloc(huge);
    assert_non_null(text);
    memset(text, '#', huge);
    write_file(path, text, huge);
    free(text);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), -1);
    assert_non_null(strstr(err, "is this a config file?"));

    snprintf(path, sizeof path, "%s/missing.conf", dir);
    assert_int_equal(obx_conf_load(path, &cf, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.conf: cannot open: No such file"));
    assert_int_equal(obx_conf_load(dir, &cf, err, sizeof err), -1);
    assert_non_null(strstr(err, dir));
    obx_test_rmtree(dir);
    free(dir);
}

/* The shipped example must always load and validate against the core's
 * tables (plugin keys are checked by the loader tests). */
static void test_shipped_plugins_conf(void **state)
{
    obx_conf_file cf;
    char err[1024] = "";
    int rc =
        obx_conf_load(OBX_SOURCE_DIR "/plugins.conf", &cf, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    obx_relay_settings rs;
    rc = obx_relay_settings_fill(cf.path, obx_conf_relay(&cf), &rs, err,
                                 sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    obx_relay_settings_free(&rs);
    for (size_t i = 0; i < cf.n_sections; i++) {
        if (cf.sections[i].kind != OBX_SECTION_PIPELINE)
            continue;
        obx_pipeline_settings ps;
        rc = obx_pipeline_settings_fill(cf.path, &cf.sections[i], &ps, err,
                                        sizeof err);
        if (rc)
            print_error("%s\n", err);
        assert_int_equal(rc, 0);
        obx_pipeline_settings_free(&ps);
    }
    obx_conf_free(&cf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sections_and_lines),
        cmocka_unit_test(test_empty_and_no_relay),
        cmocka_unit_test(test_inline_comments),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_indented_keys),
        cmocka_unit_test(test_bom_and_crlf),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_error_truncation),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_shipped_plugins_conf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
