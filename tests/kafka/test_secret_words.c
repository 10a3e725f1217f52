/* One list of secret words (<outbox/secret.h>) for the three places that
 * hide values: the core's masking of printed text (host->mask), the
 * OBX_OPT_SECRET prefix options and the kafka broker's librdkafka
 * pass-through. Table-driven: each name is secret or not, and all three
 * say the same of it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/options.h>
#include <outbox/secret.h>

#include "host.h"
#include "kafka_conf.h"
#include "options.h"

typedef struct pass_conf {
    obx_kvlist kafka;
} pass_conf;

static const obx_option pass_options[] = {
    OBX_OPT_SECRET_PREFIX(pass_conf, kafka, "kafka", "pass-through"),
    OBX_OPTIONS_END,
};

static const struct {
    const char *name;
    bool secret;
} cases[] = {
    {"password", true},
    {"sslpassword", true},
    {"sasl.password", true},
    {"PassWord", true},
    {"db_passwd", true},
    {"client_secret", true},
    {"sasl.oauthbearer.client.secret", true},
    {"oauth.TOKEN", true},
    {"ssl.key.pem", true},
    {"ssl.key.password", true},
    {"api_key", true},
    {"linger.ms", false},
    {"host", false},
    {"user", false},
    {"bootstrap.servers", false},
    {"pass", false},
    {"tok", false},
};

static void test_every_word_is_listed(void **state)
{
    (void)state;
    static const char *const words[] = {OBX_SECRET_WORDS};
    assert_int_equal(sizeof words / sizeof *words, 5);
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        assert_true(obx_secret_name(words[i], strlen(words[i])));
        /* only the first len bytes count */
        assert_false(obx_secret_name(words[i], strlen(words[i]) - 1));
    }
    assert_false(obx_secret_name("", 0));
}

static void test_three_users_agree(void **state)
{
    (void)state;
    obx_optable t = {pass_options, sizeof *pass_options};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *n = cases[i].name;
        bool want = cases[i].secret;
        print_message("%s: %s\n", n, want ? "secret" : "plain");
        assert_int_equal(obx_secret_name(n, strlen(n)), want);
        /* host->mask: "name=value" keeps or hides the value */
        char in[128], out[160], plain[128];
        snprintf(in, sizeof in, "%s=hunter2 x=1", n);
        snprintf(plain, sizeof plain, "%s=***", n);
        obx_mask_secrets(in, out, sizeof out);
        assert_int_equal(strstr(out, "hunter2") == NULL, want);
        if (want)
            assert_memory_equal(out, plain, strlen(plain));
        /* the option flags: kafka.<name> of a secret prefix */
        char key[160];
        snprintf(key, sizeof key, "kafka.%s", n);
        assert_int_equal(obx_options_is_secret(t, key), want);
        /* the kafka broker's own check of a librdkafka property */
        assert_int_equal(kfk_is_secret(n), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_word_is_listed),
        cmocka_unit_test(test_three_users_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
