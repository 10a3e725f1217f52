/* The kafka broker's librdkafka configuration (kafka_conf.c) on its own:
 * defaults, pass-through in file order, errors naming property and line,
 * properties the plugin owns, secrets masked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kafka_conf.h"

static kfk_config base(obx_kv *kv, size_t n)
{
    kfk_config c = {.brokers = "127.0.0.1:9",
                    .max_in_flight = 100,
                    .probe_timeout_ms = 100};
    c.kafka.items = kv;
    c.kafka.n = n;
    return c;
}

static void get(rd_kafka_conf_t *conf, const char *name, char *buf, size_t len)
{
    size_t n = len;
    if (rd_kafka_conf_get(conf, name, buf, &n) == RD_KAFKA_CONF_OK)
        return;
    n = len;
    rd_kafka_topic_conf_t *tc = rd_kafka_conf_get_default_topic_conf(conf);
    assert_non_null(tc);
    assert_int_equal(rd_kafka_topic_conf_get(tc, name, buf, &n),
                     RD_KAFKA_CONF_OK);
}

static void test_defaults_and_override(void **state)
{
    (void)state;
    obx_kv kv[] = {{"linger.ms", "12", 3}, {"partitioner", "consistent", 4}};
    kfk_config c = base(kv, 2);
    rd_kafka_conf_t *conf = NULL;
    char err[256] = "", v[128];
    assert_int_equal(kfk_conf_build(&c, true, &conf, err, sizeof err), OBX_OK);
    get(conf, "enable.idempotence", v, sizeof v);
    assert_string_equal(v, "true");
    get(conf, "acks", v, sizeof v);
    assert_string_equal(v, "-1");
    get(conf, "bootstrap.servers", v, sizeof v);
    assert_string_equal(v, "127.0.0.1:9");
    get(conf, "linger.ms", v, sizeof v);
    assert_string_equal(v, "12");
    get(conf, "partitioner", v, sizeof v);
    assert_string_equal(v, "consistent");
    rd_kafka_conf_destroy(conf);

    /* Without bootstrap: for validation that must not connect. */
    assert_int_equal(kfk_conf_build(&c, false, &conf, err, sizeof err), OBX_OK);
    size_t n = sizeof v;
    v[0] = '\0';
    rd_kafka_conf_get(conf, "bootstrap.servers", v, &n); /* unset: fails */
    assert_string_equal(v, "");
    rd_kafka_conf_destroy(conf);
}

static void test_errors_name_property_and_line(void **state)
{
    (void)state;
    obx_kv kv[] = {{"linger.ms", "12", 3}, {"lingr.ms", "5", 9}};
    kfk_config c = base(kv, 2);
    rd_kafka_conf_t *conf = NULL;
    char err[256] = "";
    assert_int_equal(kfk_conf_build(&c, true, &conf, err, sizeof err),
                     OBX_CONFIG);
    assert_null(conf);
    assert_non_null(strstr(err, "broker.kafka.lingr.ms (line 9)"));
    assert_non_null(strstr(err, "No such configuration property"));
}

static void test_owned_properties_refused(void **state)
{
    (void)state;
    const char *owned[] = {"bootstrap.servers", "transactional.id", "log.queue",
                           "delivery.report.only.error"};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) {
        obx_kv kv[] = {{owned[i], "x", 5}};
        kfk_config c = base(kv, 1);
        char err[256] = "";
        assert_int_equal(kfk_conf_check(&c, err, sizeof err), OBX_CONFIG);
        assert_non_null(strstr(err, owned[i]));
        assert_non_null(strstr(err, "(line 5)"));
    }
    kfk_config c = base(NULL, 0);
    c.brokers = "";
    char err[256] = "";
    assert_int_equal(kfk_conf_check(&c, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "broker.brokers"));
}

static void test_secrets(void **state)
{
    (void)state;
    assert_true(kfk_is_secret("sasl.password"));
    assert_true(kfk_is_secret("ssl.key.password"));
    assert_true(kfk_is_secret("sasl.oauthbearer.client.secret"));
    assert_true(kfk_is_secret("ssl.key.pem"));
    assert_false(kfk_is_secret("linger.ms"));
    char out[128];
    kfk_mask("Invalid value \"hunter2\" for \"x\" (hunter2)", "hunter2", out,
             sizeof out);
    assert_string_equal(out, "Invalid value \"<secret>\" for \"x\" (<secret>)");
    kfk_mask("abc", "", out, sizeof out);
    assert_string_equal(out, "abc");
    kfk_mask("a hunter2 b", "hunter2", out, 6);
    assert_int_equal(strlen(out), 5);
    assert_null(strstr(out, "hunt"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_override),
        cmocka_unit_test(test_errors_name_property_and_line),
        cmocka_unit_test(test_owned_properties_refused),
        cmocka_unit_test(test_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
