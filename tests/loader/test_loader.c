/* Plugin loader: lookup, search order, every refusal and its message, scan.
 * Fixtures come from tests/fixtures (OBX_FIXTURE_DIR). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loader.h"

#define FIX OBX_FIXTURE_DIR

/* Fail unless every NULL-terminated needle occurs in err. */
static void assert_has(const char *err, ...)
{
    va_list ap;
    va_start(ap, err);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err, s))
            fail_msg("expected \"%s\" in error: %s", s, err);
    va_end(ap);
}

static void init(obx_loader *ld, const char *plugin_path, const char *exe)
{
    assert_int_equal(obx_loader_init(ld, plugin_path, exe), 0);
}

static const obx_loaded *get_ok(obx_loader *ld, const char *name,
                                obx_plugin_kind kind)
{
    const obx_loaded *p = NULL;
    char err[1024] = "";
    if (obx_loader_get(ld, name, kind, &p, err, sizeof err) != 0)
        fail_msg("loading %s: %s", name, err);
    assert_non_null(p);
    return p;
}

/* Load a fixture that must be refused; return the message. */
static const char *get_err(obx_loader *ld, const char *name,
                           obx_plugin_kind kind)
{
    static char err[2048];
    const obx_loaded *p = NULL;
    err[0] = '\0';
    if (obx_loader_get(ld, name, kind, &p, err, sizeof err) == 0)
        fail_msg("%s loaded but should have been refused", name);
    assert_true(err[0] != '\0');
    return err;
}

/* Load FIX/obx_store_fixture_<name>.so by path and expect a refusal. */
static void refused(const char *fixture, ...)
{
    obx_loader ld;
    char path[1024];
    snprintf(path, sizeof path, "%s/obx_store_fixture_%s.so", FIX, fixture);
    init(&ld, NULL, NULL);
    const char *err = get_err(&ld, path, OBX_PLUGIN_STORE);
    if (!strstr(err, path))
        fail_msg("error does not name %s: %s", path, err);
    va_list ap;
    va_start(ap, fixture);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err, s))
            fail_msg("expected \"%s\" in error: %s", s, err);
    va_end(ap);
    assert_int_equal(ld.n_loaded, 0);
    obx_loader_free(&ld);
}

static void test_by_name_via_plugin_path(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_loaded *s = get_ok(&ld, "fixture_good", OBX_PLUGIN_STORE);
    const obx_loaded *b = get_ok(&ld, "fixture_good", OBX_PLUGIN_BROKER);
    assert_ptr_not_equal(s, b);
    assert_string_equal(s->desc->name, "fixture_good");
    assert_int_equal(s->desc->kind, OBX_PLUGIN_STORE);
    assert_int_equal(b->desc->kind, OBX_PLUGIN_BROKER);
    assert_non_null(strstr(s->path, "/obx_store_fixture_good.so"));
    assert_non_null(strstr(b->path, "/obx_broker_fixture_good.so"));
    const obx_store_ops *ops = s->desc->ops;
    assert_non_null(ops->claim);
    assert_null(ops->demo); /* optional, not set by the fixture */
    assert_string_equal(s->desc->options[0].name, "path");
    assert_string_equal(s->desc->options[1].name, "count");
    assert_null(s->desc->options[2].name);
    obx_loader_free(&ld);
}

static void test_by_path(void **state)
{
    obx_loader ld;
    init(&ld, NULL, NULL);
    const obx_loaded *p =
        get_ok(&ld, FIX "/obx_broker_fixture_good.so", OBX_PLUGIN_BROKER);
    assert_string_equal(p->desc->name, "fixture_good");
    const obx_broker_ops *ops = p->desc->ops;
    assert_non_null(ops->publish);
    assert_null(ops->flush);
    obx_loader_free(&ld);
}

/* Tests run in build/tests/loader: "../fixtures" is the fixture dir. Empty
 * entries are ignored and relative ones made absolute. */
static void test_relative_plugin_path(void **state)
{
    obx_loader ld;
    init(&ld, "::../fixtures:", NULL);
    assert_true(ld.n_dirs >= 1);
    assert_true(ld.dirs[0][0] == '/');
    assert_non_null(strstr(ld.dirs[0], "/../fixtures"));
    get_ok(&ld, "fixture_good", OBX_PLUGIN_STORE);
    obx_loader_free(&ld);
}

static void test_same_file_twice(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_loaded *a = get_ok(&ld, "fixture_good", OBX_PLUGIN_STORE);
    const obx_loaded *b =
        get_ok(&ld, FIX "/obx_store_fixture_good.so", OBX_PLUGIN_STORE);
    const obx_loaded *c = get_ok(
        &ld, FIX "/../fixtures/obx_store_fixture_good.so", OBX_PLUGIN_STORE);
    const obx_loaded *d = get_ok(&ld, "fixture_good", OBX_PLUGIN_STORE);
    assert_ptr_equal(a, b);
    assert_ptr_equal(a, c);
    assert_ptr_equal(a, d);
    assert_int_equal(ld.n_loaded, 1);
    obx_loader_free(&ld);
}

static void test_search_order(void **state)
{
    obx_loader ld;
    init(&ld, FIX "/dup_b/plugins:" FIX "/dup_a", NULL);
    const obx_loaded *p = get_ok(&ld, "fixture_dup", OBX_PLUGIN_STORE);
    assert_string_equal(p->desc->description, "copy b");
    obx_loader_free(&ld);

    /* plugin_path comes before the directories beside the binary. */
    init(&ld, FIX "/dup_a", FIX "/dup_b");
    p = get_ok(&ld, "fixture_dup", OBX_PLUGIN_STORE);
    assert_string_equal(p->desc->description, "copy a");
    obx_loader_free(&ld);
}

/* The build tree layout: binary in build/, plugins in build/plugins. */
static void test_exe_dir_plugins(void **state)
{
    obx_loader ld;
    init(&ld, NULL, FIX "/dup_b");
    const obx_loaded *p = get_ok(&ld, "fixture_dup", OBX_PLUGIN_STORE);
    assert_string_equal(p->desc->description, "copy b");
    assert_non_null(strstr(p->path, "/dup_b/plugins/obx_store_fixture_dup.so"));
    obx_loader_free(&ld);
}

static void test_not_found_lists_dirs(void **state)
{
    obx_loader ld;
    init(&ld, FIX "/dup_a:/nonexistent-obx-dir", "/nonexistent-exe-dir");
    const char *err = get_err(&ld, "no_such_plugin", OBX_PLUGIN_BROKER);
    assert_has(err, "obx_broker_no_such_plugin.so", "not found", FIX "/dup_a",
               "/nonexistent-obx-dir", "/nonexistent-exe-dir",
               "/nonexistent-exe-dir/plugins", (char *)NULL);
    obx_loader_free(&ld);
}

static void test_path_not_found(void **state)
{
    obx_loader ld;
    init(&ld, NULL, NULL);
    const char *err =
        get_err(&ld, "/nonexistent-obx-dir/obx_store_x.so", OBX_PLUGIN_STORE);
    assert_has(err, "/nonexistent-obx-dir/obx_store_x.so",
               "No such file or directory", (char *)NULL);
    obx_loader_free(&ld);
}

static void test_not_elf(void **state)
{
    refused("notelf", "invalid ELF header", (char *)NULL);
}

static void test_no_entry(void **state)
{
    refused("noentry", "no obx_plugin_entry symbol", (char *)NULL);
}

static void test_entry_null(void **state)
{
    refused("entrynull", "obx_plugin_entry() returned NULL", (char *)NULL);
}

static void test_abi_major(void **state)
{
    char ours[64];
    snprintf(ours, sizeof ours, "this relay speaks ABI %d.%d", OBX_ABI_MAJOR,
             OBX_ABI_MINOR);
    refused("abi2", "was built for plugin ABI 2.", ours, (char *)NULL);
}

static void test_wrong_kind(void **state)
{
    refused("wrongkind", "is a broker plugin, but it is used as a store",
            (char *)NULL);

    obx_loader ld;
    init(&ld, FIX, NULL);
    const char *err = get_err(&ld, "fixture_wrongkind", OBX_PLUGIN_STORE);
    assert_has(err, "obx_store_fixture_wrongkind.so is a broker plugin",
               (char *)NULL);
    /* A file already loaded as a store, asked for as a broker. */
    get_ok(&ld, "fixture_good", OBX_PLUGIN_STORE);
    err = get_err(&ld, FIX "/obx_store_fixture_good.so", OBX_PLUGIN_BROKER);
    assert_has(err,
               "obx_store_fixture_good.so is a store plugin, but it is "
               "used as a broker",
               (char *)NULL);
    obx_loader_free(&ld);
}

static void test_misnamed(void **state)
{
    refused("misnamed", "'something_else'", "obx_store_something_else.so",
            (char *)NULL);
}

static void test_null_op(void **state)
{
    refused("nullop", "mandatory store op 'claim' is NULL", (char *)NULL);
}

static void test_small_struct(void **state)
{
    refused("small", "struct_size 40 is too small", (char *)NULL);
}

static void test_ops_null(void **state)
{
    refused("opsnull", "no store ops table", (char *)NULL);
}

static void test_ops_small(void **state)
{
    refused("opssmall", "store ops struct_size 16 is too small", (char *)NULL);
}

static void test_option_size(void **state)
{
    refused("optsize", "option_size 16", (char *)NULL);
}

static void test_bad_option(void **state)
{
    refused("badoption", "option 'count'", "config struct", (char *)NULL);
}

/* Built for ABI 1.99 with bigger structs everywhere: loads, and the core
 * sees this build's layout (rows at our stride, ops at our size). */
static void test_future_minor(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_loaded *p = get_ok(&ld, "fixture_future", OBX_PLUGIN_STORE);
    const obx_plugin *d = p->desc;
    assert_int_equal(d->abi_minor, 99);
    assert_int_equal(d->struct_size, sizeof(obx_plugin));
    assert_int_equal(d->option_size, sizeof(obx_option));
    assert_string_equal(d->options[0].name, "path");
    assert_string_equal(d->options[1].name, "count");
    assert_int_equal(d->options[1].max, 10);
    assert_null(d->options[2].name);
    const obx_store_ops *ops = d->ops;
    assert_int_equal(ops->struct_size, sizeof(obx_store_ops));
    assert_non_null(ops->bury);
    obx_loader_free(&ld);
}

/* Known flag bits load and reach the engine as declared. */
static void test_known_flags(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_loaded *p = get_ok(&ld, "fixture_ordered", OBX_PLUGIN_STORE);
    const obx_store_ops *ops = p->desc->ops;
    assert_int_equal(ops->flags, OBX_STORE_ORDERED_CLAIM);
    obx_loader_free(&ld);
}

/* A flag this relay does not know would change what the plugin expects of
 * the engine: refused, naming the file and the bits. */
static void test_unknown_store_flag(void **state)
{
    refused("flag80", "store ops flags 0x81", "(0x80;", (char *)NULL);
}

static void test_broker_flags_must_be_zero(void **state)
{
    obx_loader ld;
    init(&ld, NULL, NULL);
    const char *err =
        get_err(&ld, FIX "/obx_broker_fixture_flagged.so", OBX_PLUGIN_BROKER);
    assert_has(err, FIX "/obx_broker_fixture_flagged.so",
               "broker ops flags 0x1", "defines 0x0", (char *)NULL);
    assert_int_equal(ld.n_loaded, 0);
    obx_loader_free(&ld);
}

/* 0x2 was OBX_STORE_DURABLE_RETRY: plugins built for 1.0/1.1 still load,
 * and from 1.2 on the bit is as unknown as any other. */
static void test_retired_durable_retry_flag(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_loaded *p = get_ok(&ld, "fixture_durable11", OBX_PLUGIN_STORE);
    assert_int_equal(p->desc->abi_minor, 1);
    assert_true(((const obx_store_ops *)p->desc->ops)->flags &
                OBX_STORE_ORDERED_CLAIM);
    obx_loader_free(&ld);
    refused("durable12", "store ops flags 0x3", "(0x2;", (char *)NULL);
}

/* A 1.1 store ends its ops before schema_v2: the loader must read it as
 * absent, even though the bytes after the plugin's struct_size hold a
 * pointer; a 1.2 store has both. */
static void test_schema_v2_by_struct_size(void **state)
{
    obx_loader ld;
    init(&ld, FIX, NULL);
    const obx_store_ops *old =
        get_ok(&ld, "fixture_schema11", OBX_PLUGIN_STORE)->desc->ops;
    assert_non_null(old->schema);
    assert_null(old->schema_v2);
    assert_false(OBX_HAS_OP(old, obx_store_ops, schema_v2));
    const obx_store_ops *cur =
        get_ok(&ld, "fixture_schema12", OBX_PLUGIN_STORE)->desc->ops;
    assert_non_null(cur->schema);
    assert_true(OBX_HAS_OP(cur, obx_store_ops, schema_v2));
    obx_loader_free(&ld);
}

static void test_duplicate_name(void **state)
{
    obx_loader ld;
    init(&ld, NULL, NULL);
    get_ok(&ld, FIX "/dup_a/obx_store_fixture_dup.so", OBX_PLUGIN_STORE);
    const char *err = get_err(
        &ld, FIX "/dup_b/plugins/obx_store_fixture_dup.so", OBX_PLUGIN_STORE);
    assert_has(err, "two plugins named 'fixture_dup'",
               "/dup_a/obx_store_fixture_dup.so",
               "/dup_b/plugins/obx_store_fixture_dup.so", (char *)NULL);
    assert_int_equal(ld.n_loaded, 1);
    obx_loader_free(&ld);
}

/* ---- scan ----------------------------------------------------------- */

#define MAX_SEEN 64

typedef struct seen {
    char good[MAX_SEEN][128]; /* "store/name" */
    size_t n_good;
    char bad_path[MAX_SEEN][1024];
    char bad_err[MAX_SEEN][1024];
    size_t n_bad;
} seen;

static void on_good(void *ctx, const obx_loaded *p)
{
    seen *s = ctx;
    assert_true(s->n_good < MAX_SEEN);
    snprintf(s->good[s->n_good++], sizeof s->good[0], "%s/%s",
             obx_plugin_kind_name(p->desc->kind), p->desc->name);
}

static void on_bad(void *ctx, const char *path, const char *err)
{
    seen *s = ctx;
    assert_true(s->n_bad < MAX_SEEN);
    snprintf(s->bad_path[s->n_bad], sizeof s->bad_path[0], "%s", path);
    snprintf(s->bad_err[s->n_bad++], sizeof s->bad_err[0], "%s", err);
}

static void assert_good(const seen *s, const char *what)
{
    for (size_t i = 0; i < s->n_good; i++)
        if (strcmp(s->good[i], what) == 0)
            return;
    fail_msg("scan did not list %s", what);
}

/* The bad() report for the file whose name ends in `file`, checked for
 * `problem`. */
static void assert_bad(const seen *s, const char *file, const char *problem)
{
    for (size_t i = 0; i < s->n_bad; i++) {
        size_t n = strlen(s->bad_path[i]), m = strlen(file);
        if (n >= m && strcmp(s->bad_path[i] + n - m, file) == 0) {
            assert_has(s->bad_err[i], file, problem, (char *)NULL);
            return;
        }
    }
    fail_msg("scan did not report %s", file);
}

static void test_scan(void **state)
{
    obx_loader ld;
    seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    init(&ld, FIX, NULL);
    obx_loader_scan(&ld, on_good, on_bad, s);
    assert_good(s, "store/fixture_good");
    assert_good(s, "broker/fixture_good");
    assert_good(s, "store/fixture_future");
    assert_bad(s, "/obx_store_fixture_notelf.so", "invalid ELF header");
    assert_bad(s, "/obx_store_fixture_noentry.so", "obx_plugin_entry");
    assert_bad(s, "/obx_store_fixture_abi2.so", "ABI 2.");
    assert_bad(s, "/obx_store_fixture_wrongkind.so", "is a broker plugin");
    assert_bad(s, "/obx_store_fixture_misnamed.so", "something_else");
    assert_bad(s, "/obx_store_fixture_nullop.so", "'claim' is NULL");
    assert_bad(s, "/obx_store_fixture_small.so", "struct_size");
    /* Only the fixtures in FIX: nothing good was reported bad. */
    for (size_t i = 0; i < s->n_bad; i++)
        assert_null(strstr(s->bad_path[i], "fixture_good"));
    /* What scan loaded is what get returns afterwards. */
    size_t n = ld.n_loaded;
    get_ok(&ld, "fixture_good", OBX_PLUGIN_BROKER);
    assert_int_equal(ld.n_loaded, n);
    obx_loader_free(&ld);
    free(s);
}

static void test_scan_shadowed(void **state)
{
    obx_loader ld;
    seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    /* dup_a listed twice (once through "/../"): not a shadow of itself. */
    init(&ld, FIX "/dup_a:" FIX "/dup_b/plugins:" FIX "/../fixtures/dup_a",
         NULL);
    obx_loader_scan(&ld, on_good, on_bad, s);
    size_t dups = 0;
    for (size_t i = 0; i < s->n_good; i++)
        dups += strcmp(s->good[i], "store/fixture_dup") == 0;
    assert_int_equal(dups, 1);
    assert_int_equal(s->n_bad, 1);
    assert_bad(s, "/dup_b/plugins/obx_store_fixture_dup.so", "shadowed by");
    assert_non_null(strstr(s->bad_err[0], "/dup_a/obx_store_fixture_dup.so"));
    obx_loader_free(&ld);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_name_via_plugin_path),
        cmocka_unit_test(test_by_path),
        cmocka_unit_test(test_relative_plugin_path),
        cmocka_unit_test(test_same_file_twice),
        cmocka_unit_test(test_search_order),
        cmocka_unit_test(test_exe_dir_plugins),
        cmocka_unit_test(test_not_found_lists_dirs),
        cmocka_unit_test(test_path_not_found),
        cmocka_unit_test(test_not_elf),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_entry_null),
        cmocka_unit_test(test_abi_major),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_misnamed),
        cmocka_unit_test(test_null_op),
        cmocka_unit_test(test_small_struct),
        cmocka_unit_test(test_ops_null),
        cmocka_unit_test(test_ops_small),
        cmocka_unit_test(test_option_size),
        cmocka_unit_test(test_bad_option),
        cmocka_unit_test(test_future_minor),
        cmocka_unit_test(test_known_flags),
        cmocka_unit_test(test_unknown_store_flag),
        cmocka_unit_test(test_broker_flags_must_be_zero),
        cmocka_unit_test(test_retired_durable_retry_flag),
        cmocka_unit_test(test_schema_v2_by_struct_size),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_scan_shadowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
