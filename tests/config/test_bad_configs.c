/* Malformed configs: each must fail with the exact file:line and a message
 * that says what is wrong (and, where it can, what would be valid). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf_fixture.h"

/* A valid pipeline head on lines 1-4; cases append from line 5. */
#define P                                                                      \
    "[pipeline orders]\n"                                                      \
    "store = sqlite\n"                                                         \
    "store.path = o.db\n"                                                      \
    "broker = stdout\n"

typedef struct bad_case {
    const char *name;
    const char *text;
    const char *where; /* "t.conf:N:" */
    const char *want;  /* must appear in the error */
    const char *never; /* must not appear (secrets), or NULL */
} bad_case;

static const bad_case cases[] = {
    {"unknown_section", "[relay]\nlog_level = info\n[frobs]\nx = 1\n",
     "t.conf:3:",
     "unknown section [frobs] (valid sections: [relay], "
     "[pipeline NAME])",
     NULL},
    {"unknown_section_did_you_mean", "[pipline orders]\n",
     "t.conf:1:", "did you mean 'pipeline'?", NULL},
    {"empty_section", "\n[]\n", "t.conf:2:", "unknown section []", NULL},
    {"relay_with_name", "[relay main]\n", "t.conf:1:", "[relay] takes no name",
     NULL},
    {"missing_pipeline_name", "[relay]\n\n[pipeline]\nstore = x\n",
     "t.conf:3:", "[pipeline] needs a name", NULL},
    {"missing_pipeline_name_blank", "[pipeline   ]\n",
     "t.conf:1:", "needs a name", NULL},
    {"bad_pipeline_name", "[pipeline or/ders]\n",
     "t.conf:1:", "invalid pipeline name 'or/ders'", NULL},
    {"duplicate_pipeline", P "\n[pipeline orders]\nstore = x\n", "t.conf:6:",
     "duplicate pipeline 'orders' (first defined at line 1)", NULL},
    {"duplicate_relay", "[relay]\n" P "[relay]\n",
     "t.conf:6:", "duplicate [relay] section (first at line 1)", NULL},
    {"duplicate_key", P "batch_size = 10\n# c\nbatch_size = 20\n", "t.conf:7:",
     "key 'batch_size' is set twice in [pipeline orders] "
     "(first at line 5)",
     NULL},
    {"duplicate_plugin_key", P "store.path = other.db\n", "t.conf:5:",
     "key 'store.path' is set twice in [pipeline orders] (first at line 3)",
     NULL},
    {"key_outside_section", "# top\nlog_level = debug\n[relay]\n",
     "t.conf:2:", "key 'log_level' is outside any section", NULL},
    {"missing_key_name", "[relay]\n = info\n",
     "t.conf:2:", "missing key name before '='", NULL},
    {"syntax_no_equals", "[relay]\nlog_level info\n",
     "t.conf:2:", "expected 'key = value', '[section]' or a comment", NULL},
    {"section_missing_bracket", "[relay]\n[pipeline orders\n",
     "t.conf:2:", "missing its closing ']'", NULL},
    {"text_after_section", "[pipeline orders] extra\n",
     "t.conf:1:", "unexpected text after ']'", NULL},
    {"unset_env_var", P "store.password = ${env:OBX_TEST_SURELY_UNSET}\n",
     "t.conf:5:", "environment variable 'OBX_TEST_SURELY_UNSET' is not set",
     NULL},
    {"bad_env_name", P "store.label = ${env:1ABC}\n",
     "t.conf:5:", "invalid environment variable name '1ABC'", NULL},
    {"empty_env_name", P "store.label = x${env:}\n",
     "t.conf:5:", "invalid environment variable name ''", NULL},
    {"env_in_key", P "${env:HOME} = 1\n", "t.conf:5:",
     "'${' in a key name: ${env:NAME} and ${field} expand in values only",
     "unknown key"},
    {"duration_unit_twice", P "publish_timeout = 1h1h\n",
     "t.conf:5:", "'1h1h' is not a duration", NULL},
    {"unterminated_dollar_brace", P "topic = outbox.${aggregate_type\n",
     "t.conf:5:", "key 'topic': unterminated '${'", NULL},
    {"bad_int", P "batch_size = lots\n", "t.conf:5:",
     "[pipeline orders] key 'batch_size': 'lots' is not an integer", NULL},
    {"int_overflow", P "batch_size = 99999999999999999999999\n",
     "t.conf:5:", "is not an integer", NULL},
    {"int_below_range", P "batch_size = 0\n",
     "t.conf:5:", "'0' is out of range (valid: 1..100000)", NULL},
    {"int_above_range", P "retry.max_attempts = 1000001\n",
     "t.conf:5:", "out of range (valid: 1..1000000)", NULL},
    {"bad_bool", P "broker.pretty = maybe\n", "t.conf:5:",
     "key 'broker.pretty': 'maybe' is not a boolean (true/false, yes/no, "
     "on/off, 1/0)",
     NULL},
    {"bad_duration", P "publish_timeout = 5x\n",
     "t.conf:5:", "'5x' is not a duration", NULL},
    {"negative_duration", P "poll_interval = -1s\n",
     "t.conf:5:", "is not a duration", NULL},
    {"duration_without_unit", P "publish_timeout = 30\n",
     "t.conf:5:", "'30' needs a unit: ms, s, m, h or d", NULL},
    {"duration_below_min", P "publish_timeout = 0\n",
     "t.conf:5:", "'0' is out of range (valid: 1ms..1d)", NULL},
    {"duration_sub_ms", P "poll_interval = 0.5ms\n",
     "t.conf:5:", "whole milliseconds", NULL},
    {"relay_duration_without_unit", "[relay]\nshutdown_grace = 10\n",
     "t.conf:2:", "key 'shutdown_grace': '10' needs a unit", NULL},
    {"bad_size", P "store.max_bytes = 1XB\n", "t.conf:5:",
     "'1XB' is not a size (e.g. 512, 64KiB, 1MiB, 1GiB, 1MB)", NULL},
    {"size_out_of_range", P "store.max_bytes = 2GiB\n",
     "t.conf:5:", "'2GiB' is out of range (valid: 1..1GiB)", NULL},
    {"bad_enum", P "ordering = random\n",
     "t.conf:5:", "'random' is not one of: key, none", NULL},
    {"bad_enum_did_you_mean", "[relay]\nlog_level = debgu\n", "t.conf:2:",
     "did you mean 'debug'? (one of: error, warn, info, debug, trace)", NULL},
    {"bad_range", P "retry.backoff = 100ms-60s\n",
     "t.conf:5:", "is not a range (write MIN..MAX, e.g. 100ms..60s)", NULL},
    {"range_min_above_max", P "retry.backoff = 60s..100ms\n",
     "t.conf:5:", "the minimum is above the maximum", NULL},
    {"range_without_unit", P "circuit.backoff = 100..60s\n",
     "t.conf:5:", "both ends must be durations", NULL},
    {"range_out_of_bounds", P "circuit.backoff = 1s..2d\n",
     "t.conf:5:", "out of range (valid: 1ms..1d)", NULL},
    {"bad_dlq", P "dlq = kafka\n", "t.conf:5:",
     "key 'dlq': 'kafka': expected store, none or topic:NAME", NULL},
    {"dlq_topic_without_name", P "dlq = topic:\n",
     "t.conf:5:", "needs a topic name after 'topic:'", NULL},
    {"dlq_topic_unknown_field", P "dlq = topic:dlq.${nope}\n",
     "t.conf:5:", "unknown field '${nope}'", NULL},
    {"unknown_template_field", P "topic = outbox.${aggregate}\n",
     "t.conf:5:", "key 'topic': unknown field '${aggregate}'", NULL},
    {"empty_topic", P "topic =\n",
     "t.conf:5:", "key 'topic': must not be empty", NULL},
    {"missing_store", "\n[pipeline orders]\nbroker = stdout\n",
     "t.conf:2:", "[pipeline orders] missing required key 'store'", NULL},
    {"missing_broker", "[pipeline orders]\nstore = sqlite\n",
     "t.conf:1:", "[pipeline orders] missing required key 'broker'", NULL},
    {"empty_required", "[pipeline orders]\nstore =\nbroker = x\n",
     "t.conf:2:", "key 'store': must not be empty", NULL},
    {"missing_plugin_required",
     "[relay]\n[pipeline orders]\nstore = sqlite\nbroker = stdout\n",
     "t.conf:2:", "[pipeline orders] missing required key 'store.path'", NULL},
    {"unknown_key_did_you_mean", P "batch_sise = 10\n",
     "t.conf:5:", "unknown key 'batch_sise'; did you mean 'batch_size'?", NULL},
    {"unknown_key_transposed", P "ordreing = key\n",
     "t.conf:5:", "did you mean 'ordering'?", NULL},
    {"unknown_key_lists_valid", "[relay]\nfrobnicate = 1\n", "t.conf:2:",
     "unknown key 'frobnicate' (valid keys: plugin_path, log_level", NULL},
    {"unknown_plugin_key", P "store.pth = x\n",
     "t.conf:5:", "unknown key 'store.pth'; did you mean 'store.path'?", NULL},
    {"unknown_prefix_member", P "store.kafak.linger.ms = 5\n",
     "t.conf:5:", "did you mean 'store.kafka.linger.ms'?", NULL},
    {"plugin_role_typo", P "stor.timeout = 5s\n", "t.conf:5:",
     "unknown key 'stor.timeout'; did you mean 'store.timeout'?", NULL},
    {"secret_not_echoed", P "store.pin = hunter2\n",
     "t.conf:5:", "key 'store.pin': <secret> is not an integer", "hunter2"},
    {"secret_unknown_key_not_echoed", P "store.pasword = hunter2\n",
     "t.conf:5:", "did you mean 'store.password'?", "hunter2"},
    {"secret_from_env_not_echoed", P "store.pin = ${env:OBX_TEST_SECRET}\n",
     "t.conf:5:", "<secret>", "s3cr3t"},
    {"list_empty_item", P "store.hosts = a,,b\n",
     "t.conf:5:", "'a,,b' has an empty item", NULL},
    {"list_trailing_comma", P "store.hosts = a, b,\n",
     "t.conf:5:", "has an empty item", NULL},
    {"prefix_empty_suffix", P "store.kafka. = 1\n", "t.conf:5:",
     "key 'store.kafka.': needs a name after 'store.kafka.'", NULL},
    {"prefix_bare", P "store.kafka = 1\n", "t.conf:5:",
     "key 'store.kafka' is a prefix: write store.kafka.NAME = VALUE", NULL},
    {"plugin_key_empty_suffix", P "store. = 1\n",
     "t.conf:5:", "key 'store.': needs a name after 'store.'", NULL},
    {"bad_metrics_listen", "[relay]\nmetrics_listen = localhost\n",
     "t.conf:2:", "is not HOST:PORT with an IP address", NULL},
    {"bad_metrics_port", "[relay]\nmetrics_listen = 127.0.0.1:99999\n",
     "t.conf:2:", "key 'metrics_listen'", NULL},
    {"value_comment_not_echoed", P "batch_size = abc   # the batch\n",
     "t.conf:5:", "'abc' is not an integer", "the batch"},
    {"env_expanded_then_validated", P "batch_size = ${env:OBX_TEST_WORD}\n",
     "t.conf:5:", "'many' is not an integer", NULL},
    {"line_after_long_line",
     P "store.label = "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
       "batch_sise = 1\n",
     "t.conf:6:", "did you mean 'batch_size'?", NULL},
    {"long_line_without_equals",
     "[relay]\n"
     "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
     "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
     "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
     "\n",
     "t.conf:2:", "expected 'key = value'", NULL},
    {"indented_key_is_a_key", P "  batch_size = 5\n  bogus = 1\n",
     "t.conf:6:", "unknown key 'bogus'", NULL},
    {"crlf_line_numbers", "[relay]\r\nlog_level = info\r\n\r\nlog_lvl = x\r\n",
     "t.conf:4:", "unknown key 'log_lvl'; did you mean 'log_level'?", NULL},
    {"second_pipeline_error_line",
     P "\n[pipeline audit]\nstore = sqlite\nstore.path = a.db\nbroker = x\n"
       "batch_size = -3\n",
     "t.conf:10:", "[pipeline audit] key 'batch_size': '-3' is out of range",
     NULL},
};

static void run_case(void **state)
{
    const bad_case *c = *state;
    char err[1024] = "";
    int rc = conf_check_all(c->text, err, sizeof err);
    if (getenv("OBX_TEST_SHOW")) /* to review the wording */
        print_message("%s\n", err);
    if (rc == 0 || !strstr(err, c->where) || !strstr(err, c->want) ||
        (c->never && strstr(err, c->never)))
        print_error("case %s: rc=%d err=\"%s\"\n  want \"%s\" and \"%s\"%s%s\n",
                    c->name, rc, err, c->where, c->want,
                    c->never ? " without " : "", c->never ? c->never : "");
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, c->where));
    /* The location leads the message. */
    assert_ptr_equal(strstr(err, c->where), err);
    assert_non_null(strstr(err, c->want));
    if (c->never)
        assert_null(strstr(err, c->never));
}

int main(void)
{
    setenv("OBX_TEST_SECRET", "s3cr3t", 1);
    setenv("OBX_TEST_WORD", "many", 1);
    unsetenv("OBX_TEST_SURELY_UNSET");
    size_t n = sizeof cases / sizeof cases[0];
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    for (size_t i = 0; i < n; i++) {
        tests[i].name = cases[i].name;
        tests[i].test_func = run_case;
        tests[i].initial_state = (void *)&cases[i];
    }
    int rc = _cmocka_run_group_tests("bad_configs", tests, n, NULL, NULL);
    free(tests);
    return rc;
}
