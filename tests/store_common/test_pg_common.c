/* What pg_poll and pg_wal share about PostgreSQL errors and secrets
 * (stores/common/pg_status.c, pg_secret.c), no server: which SQLSTATEs
 * the engine waits out, and that the conninfo's password never reaches a
 * message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/plugin.h>

#include "host.h"
#include "pg_secret.h"
#include "pg_status.h"

/* One row per SQLSTATE class the mapping names, and a few it does not. */
static const struct {
    const char *state;
    obx_status want;
    const char *what;
} status_cases[] = {
    {NULL, OBX_UNAVAILABLE, "no server error: the connection failed"},
    {"", OBX_UNAVAILABLE, "no SQLSTATE"},
    {"0800", OBX_UNAVAILABLE, "not five characters"},
    {"08006", OBX_UNAVAILABLE, "connection failure"},
    {"08P01", OBX_UNAVAILABLE, "protocol violation"},
    {"28P01", OBX_UNAVAILABLE, "invalid password"},
    {"40001", OBX_UNAVAILABLE, "serialization failure"},
    {"40P01", OBX_UNAVAILABLE, "deadlock detected"},
    {"53300", OBX_UNAVAILABLE, "too many connections"},
    {"57P01", OBX_UNAVAILABLE, "admin shutdown"},
    {"57014", OBX_UNAVAILABLE, "query canceled"},
    {"58030", OBX_UNAVAILABLE, "io error"},
    {"55P03", OBX_UNAVAILABLE, "lock not available"},
    {"55006", OBX_UNAVAILABLE, "object in use (a slot active elsewhere)"},
    {"25006", OBX_UNAVAILABLE, "read-only transaction (a replica)"},
    {"3D000", OBX_UNAVAILABLE, "invalid catalog name"},
    {"55000", OBX_FATAL, "object not in prerequisite state"},
    {"42P01", OBX_FATAL, "undefined table"},
    {"42703", OBX_FATAL, "undefined column"},
    {"23505", OBX_FATAL, "unique violation"},
    {"22P02", OBX_FATAL, "invalid text representation"},
    {"42501", OBX_FATAL, "insufficient privilege"},
    {"25P02", OBX_FATAL, "in failed transaction"},
    {"3D001", OBX_FATAL, "not 3D000"},
};

static void test_sqlstate_classes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof status_cases / sizeof *status_cases; i++) {
        obx_status got = osc_pg_status_of(status_cases[i].state);
        if (got != status_cases[i].want)
            fail_msg("%s (%s): %s, want %s",
                     status_cases[i].state ? status_cases[i].state : "NULL",
                     status_cases[i].what, obx_status_name(got),
                     obx_status_name(status_cases[i].want));
    }
}

static obx_host test_host(void)
{
    obx_host h = {0};
    h.mask = obx_mask_secrets;
    return h;
}

static void test_conninfo_secret_and_target(void **state)
{
    (void)state;
    obx_host h = test_host();
    char *secret = NULL, target[256], err[256] = "";
    assert_int_equal(osc_pg_conninfo(&h, "host=db password=hunter2 user=u",
                                     &secret, target, sizeof target, err,
                                     sizeof err),
                     OBX_OK);
    assert_string_equal(secret, "hunter2");
    assert_string_equal(target, "host=db password=*** user=u");
    osc_pg_secret_free(secret);

    assert_int_equal(osc_pg_conninfo(&h, "postgresql://u:hunter2@db/app",
                                     &secret, target, sizeof target, err,
                                     sizeof err),
                     OBX_OK);
    assert_string_equal(secret, "hunter2");
    assert_null(strstr(target, "hunter2"));
    osc_pg_secret_free(secret);

    assert_int_equal(osc_pg_conninfo(&h, NULL, &secret, target, sizeof target,
                                     err, sizeof err),
                     OBX_OK);
    assert_null(secret);
    assert_string_equal(target, "(libpq defaults)");
}

/* A parse error names the user's typo but no piece of the password. */
static void test_conninfo_parse_error_masked(void **state)
{
    (void)state;
    obx_host h = test_host();
    char *secret = NULL, target[256], err[512] = "";
    assert_int_equal(osc_pg_conninfo(&h, "host=db pasword=x", &secret, target,
                                     sizeof target, err, sizeof err),
                     OBX_CONFIG);
    assert_null(secret);
    assert_non_null(strstr(err, "store.conninfo: "));
    assert_non_null(strstr(err, "\"pasword\""));
    /* an unquoted password with a space: libpq quotes its second half */
    assert_int_equal(osc_pg_conninfo(&h, "host=db password=ab hunter2", &secret,
                                     target, sizeof target, err, sizeof err),
                     OBX_CONFIG);
    print_message("%s\n", err);
    assert_null(strstr(err, "hunter2"));
}

static void test_scrub(void **state)
{
    (void)state;
    obx_host h = test_host();
    char out[256];
    osc_pg_scrub(&h, "hunter2",
                 "FATAL:  password authentication failed\n\tfor hunter2\n", out,
                 sizeof out);
    assert_string_equal(out, "FATAL: password authentication failed for ***");
    /* secrets shorter than 3 bytes are left to the conninfo masking */
    osc_pg_scrub(&h, "ab", "table ab: password=ab", out, sizeof out);
    assert_string_equal(out, "table ab: password=***");
    osc_pg_scrub(&h, NULL, NULL, out, sizeof out);
    assert_string_equal(out, "");
    char small[8];
    osc_pg_scrub(&h, "hunter2", "x hunter2 y", small, sizeof small);
    assert_null(strstr(small, "hunt"));
}

static char logged[512];
static int debug_on;

static void capture_log(const obx_host *h, obx_log_level level, const char *fmt,
                        ...)
{
    (void)h;
    assert_int_equal(level, OBX_LOG_DEBUG);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(logged, sizeof logged, fmt, ap);
    va_end(ap);
}

static int capture_enabled(const obx_host *h, obx_log_level level)
{
    (void)h;
    return level < OBX_LOG_DEBUG || debug_on;
}

/* Notices go to the debug log, one line, password scrubbed; nothing is
 * formatted while debug logging is off. */
static void test_notice(void **state)
{
    (void)state;
    obx_host h = test_host();
    h.log = capture_log;
    h.log_enabled = capture_enabled;
    logged[0] = '\0';
    debug_on = 0;
    osc_pg_notice(&h, "hunter2", "pg_wal", "NOTICE: x");
    assert_string_equal(logged, "");
    debug_on = 1;
    osc_pg_notice(
        &h, "hunter2", "pg_wal",
        "NOTICE:  relation \"t\" already exists,\n\tskipping hunter2\n");
    assert_string_equal(logged, "pg_wal: server says: NOTICE: relation \"t\" "
                                "already exists, skipping ***");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlstate_classes),
        cmocka_unit_test(test_conninfo_secret_and_target),
        cmocka_unit_test(test_conninfo_parse_error_masked),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_notice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
