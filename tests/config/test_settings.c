/* The core's [relay] and [pipeline NAME] settings: defaults, every key,
 * dlq forms, several pipelines, plugin keys left to the plugins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf_fixture.h"
#include "log.h"

static void parse_ok(const char *text, obx_conf_file *cf)
{
    char err[512] = "";
    int rc = obx_conf_parse("t.conf", text, cf, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
}

static void pipeline_ok(const obx_conf_section *sec, obx_pipeline_settings *ps)
{
    char err[512] = "";
    int rc = obx_pipeline_settings_fill("t.conf", sec, ps, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
}

static void test_relay_defaults(void **state)
{
    obx_relay_settings rs;
    char err[256];
    assert_int_equal(
        obx_relay_settings_fill("t.conf", NULL, &rs, err, sizeof err), 0);
    assert_string_equal(rs.plugin_path, "");
    assert_int_equal(rs.log_level, OBX_LOG_INFO);
    assert_int_equal(rs.log_format, OBX_LOGFMT_TEXT);
    assert_string_equal(rs.metrics_listen, "127.0.0.1:9464");
    assert_int_equal(rs.shutdown_grace_ms, 30000);
    assert_int_equal(rs.ready_stall_ms, 60000);
    obx_relay_settings_free(&rs);
    assert_null(rs.plugin_path);
}

static void test_relay_values(void **state)
{
    setenv("OBX_T_PLUGINS", "/opt/obx/plugins", 1);
    obx_conf_file cf;
    parse_ok("[relay]\n"
             "plugin_path = ${env:OBX_T_PLUGINS}:plugins  # dirs\n"
             "log_level = trace\n"
             "log_format = json\n"
             "metrics_listen = [::1]:0\n"
             "shutdown_grace = 0\n"
             "ready_stall = 5m\n",
             &cf);
    obx_relay_settings rs;
    char err[256] = "";
    assert_int_equal(obx_relay_settings_fill("t.conf", obx_conf_relay(&cf), &rs,
                                             err, sizeof err),
                     0);
    assert_string_equal(rs.plugin_path, "/opt/obx/plugins:plugins");
    assert_int_equal(rs.log_level, OBX_LOG_TRACE);
    assert_int_equal(rs.log_format, OBX_LOGFMT_JSON);
    assert_string_equal(rs.metrics_listen, "[::1]:0");
    assert_int_equal(rs.shutdown_grace_ms, 0);
    assert_int_equal(rs.ready_stall_ms, 300000);
    obx_relay_settings_free(&rs);
    obx_conf_free(&cf);
}

static void test_metrics_listen_forms(void **state)
{
    static const char *const ok[] = {"off",         "",          "0.0.0.0:9464",
                                     "127.0.0.1:1", "[::]:9464", NULL};
    static const char *const bad[] = {
        "on",         "9464",         ":9464",       "host:9464",
        "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:x", NULL};
    for (int pass = 0; pass < 2; pass++) {
        const char *const *v = pass ? bad : ok;
        for (size_t i = 0; v[i]; i++) {
            char text[128], err[512] = "";
            snprintf(text, sizeof text, "[relay]\nmetrics_listen = %s\n", v[i]);
            obx_conf_file cf;
            parse_ok(text, &cf);
            obx_relay_settings rs;
            int rc = obx_relay_settings_fill("t.conf", obx_conf_relay(&cf), &rs,
                                             err, sizeof err);
            if (rc != -pass)
                print_error("'%s': rc %d %s\n", v[i], rc, err);
            assert_int_equal(rc, -pass);
            if (rc == 0)
                obx_relay_settings_free(&rs);
            else
                assert_non_null(strstr(err, "t.conf:2: [relay] key "
                                            "'metrics_listen'"));
            obx_conf_free(&cf);
        }
    }
}

static void test_pipeline_defaults(void **state)
{
    obx_conf_file cf;
    parse_ok("[pipeline orders]\nstore = sqlite\nbroker = stdout\n"
             "store.path = o.db\nbroker.pretty = yes\nstore.anything = 1\n",
             &cf);
    obx_pipeline_settings ps;
    pipeline_ok(&cf.sections[0], &ps);
    assert_string_equal(ps.store, "sqlite");
    assert_string_equal(ps.broker, "stdout");
    assert_int_equal(ps.batch_size, 256);
    assert_int_equal(ps.ordering, OBX_ORDER_KEY);
    assert_int_equal(ps.max_attempts, 10);
    assert_int_equal(ps.backoff.min_ms, 100);
    assert_int_equal(ps.backoff.max_ms, 60000);
    assert_int_equal(ps.circuit_backoff.min_ms, 1000);
    assert_int_equal(ps.circuit_backoff.max_ms, 30000);
    assert_string_equal(ps.dlq, "store");
    assert_int_equal(ps.dlq_kind, OBX_DLQ_STORE);
    assert_null(ps.dlq_topic);
    assert_string_equal(ps.topic, "outbox.${aggregate_type}");
    assert_int_equal(ps.publish_timeout_ms, 30000);
    assert_int_equal(ps.poll_interval_ms, 1000);
    assert_int_equal(ps.claim_ahead, OBX_AHEAD_AUTO);
    obx_pipeline_settings_free(&ps);
    assert_null(ps.store);
    obx_conf_free(&cf);
}

static void test_pipeline_values(void **state)
{
    obx_conf_file cf;
    parse_ok("[pipeline orders]\n"
             "store = /opt/obx/obx_store_custom.so\n"
             "broker = kafka\n"
             "batch_size = 100000\n"
             "ordering = none\n"
             "retry.max_attempts = 1\n"
             "retry.backoff = 1ms..7d\n"
             "circuit.backoff = 500ms .. 2m\n"
             "dlq = topic:orders.dlq\n"
             "topic = ${event_type}.${aggregate_id}\n"
             "publish_timeout = 1ms\n"
             "poll_interval = 250ms\n",
             &cf);
    obx_pipeline_settings ps;
    pipeline_ok(&cf.sections[0], &ps);
    assert_string_equal(ps.store, "/opt/obx/obx_store_custom.so");
    assert_string_equal(ps.broker, "kafka");
    assert_int_equal(ps.batch_size, 100000);
    assert_int_equal(ps.ordering, OBX_ORDER_NONE);
    assert_int_equal(ps.max_attempts, 1);
    assert_int_equal(ps.backoff.min_ms, 1);
    assert_int_equal(ps.backoff.max_ms, 7 * 86400000LL);
    assert_int_equal(ps.circuit_backoff.min_ms, 500);
    assert_int_equal(ps.circuit_backoff.max_ms, 120000);
    assert_int_equal(ps.dlq_kind, OBX_DLQ_TOPIC);
    assert_string_equal(ps.dlq_topic, "orders.dlq");
    assert_ptr_equal(ps.dlq_topic, ps.dlq + 6);
    assert_string_equal(ps.topic, "${event_type}.${aggregate_id}");
    assert_int_equal(ps.publish_timeout_ms, 1);
    assert_int_equal(ps.poll_interval_ms, 250);
    obx_pipeline_settings_free(&ps);
    obx_conf_free(&cf);
}

/* claim_ahead was a bool before auto: every bool spelling still means
 * what it meant. */
static void test_claim_ahead_spellings(void **state)
{
    static const struct {
        const char *text;
        int mode;
    } cases[] = {{"auto", OBX_AHEAD_AUTO}, {"true", OBX_AHEAD_ON},
                 {"yes", OBX_AHEAD_ON},    {"on", OBX_AHEAD_ON},
                 {"1", OBX_AHEAD_ON},      {"false", OBX_AHEAD_OFF},
                 {"no", OBX_AHEAD_OFF},    {"off", OBX_AHEAD_OFF},
                 {"0", OBX_AHEAD_OFF}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[128];
        snprintf(text, sizeof text,
                 "[pipeline a]\nstore = s\nbroker = b\nclaim_ahead = %s\n",
                 cases[i].text);
        obx_conf_file cf;
        parse_ok(text, &cf);
        obx_pipeline_settings ps;
        pipeline_ok(&cf.sections[0], &ps);
        if (ps.claim_ahead != cases[i].mode)
            fail_msg("claim_ahead = %s read as %d, expected %d", cases[i].text,
                     ps.claim_ahead, cases[i].mode);
        obx_pipeline_settings_free(&ps);
        obx_conf_free(&cf);
    }
}

static void test_dlq_none(void **state)
{
    obx_conf_file cf;
    parse_ok("[pipeline a]\nstore = s\nbroker = b\ndlq = none\n", &cf);
    obx_pipeline_settings ps;
    pipeline_ok(&cf.sections[0], &ps);
    assert_int_equal(ps.dlq_kind, OBX_DLQ_NONE);
    assert_null(ps.dlq_topic);
    obx_pipeline_settings_free(&ps);
    obx_conf_free(&cf);
}

static void test_multiple_pipelines(void **state)
{
    obx_conf_file cf;
    parse_ok("[relay]\n"
             "log_level = warn\n"
             "[pipeline orders]\n"
             "store = sqlite\n"
             "store.path = orders.db\n"
             "broker = stdout\n"
             "batch_size = 10\n"
             "[pipeline audit]\n"
             "store = sqlite\n"
             "store.path = audit.db\n"
             "broker = stdout\n"
             "batch_size = 20\n",
             &cf);
    assert_int_equal(cf.n_sections, 3);
    int64_t want[] = {10, 20};
    const char *names[] = {"orders", "audit"};
    for (size_t i = 0; i < 2; i++) {
        const obx_conf_section *sec = &cf.sections[i + 1];
        assert_string_equal(sec->name, names[i]);
        obx_pipeline_settings ps;
        pipeline_ok(sec, &ps);
        assert_int_equal(ps.batch_size, want[i]);
        obx_pipeline_settings_free(&ps);
    }
    char err[256] = "";
    assert_int_equal(conf_check_all("[relay]\n[pipeline a]\nstore=s\n"
                                    "store.path=p\nbroker=b\n[pipeline b]\n"
                                    "store=s\nstore.path=q\nbroker=b\n",
                                    err, sizeof err),
                     0);
    obx_conf_free(&cf);
}

/* The tables' enums must line up with the core's C enums. */
static void test_enum_order(void **state)
{
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(obx_relay_optable(), i)); i++) {
        if (strcmp(o->name, "log_level") == 0)
            for (int l = OBX_LOG_ERROR; l <= OBX_LOG_TRACE; l++)
                assert_string_equal(o->enum_values[l],
                                    obx_log_level_name((obx_log_level)l));
        if (strcmp(o->name, "log_format") == 0) {
            assert_string_equal(o->enum_values[OBX_LOGFMT_TEXT], "text");
            assert_string_equal(o->enum_values[OBX_LOGFMT_JSON], "json");
        }
    }
    for (size_t i = 0; (o = obx_optable_row(obx_pipeline_optable(), i)); i++)
        if (strcmp(o->name, "ordering") == 0) {
            assert_string_equal(o->enum_values[OBX_ORDER_KEY], "key");
            assert_string_equal(o->enum_values[OBX_ORDER_NONE], "none");
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_defaults),
        cmocka_unit_test(test_relay_values),
        cmocka_unit_test(test_metrics_listen_forms),
        cmocka_unit_test(test_pipeline_defaults),
        cmocka_unit_test(test_pipeline_values),
        cmocka_unit_test(test_dlq_none),
        cmocka_unit_test(test_claim_ahead_spellings),
        cmocka_unit_test(test_multiple_pipelines),
        cmocka_unit_test(test_enum_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
