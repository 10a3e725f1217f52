/* The error table (nats_errors.c), the subject matching of the stream
 * check (nats_stream.c) and the masking of secrets (nats_conn.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nats_conn.h"
#include "nats_errors.h"
#include "nats_stream.h"
#include "support.h"

static void test_connection_level_failures_are_unavailable(void **state)
{
    (void)state;
    const natsStatus wide[] = {
        NATS_NO_RESPONDERS,
        NATS_CONNECTION_CLOSED,
        NATS_CONNECTION_DISCONNECTED,
        NATS_NO_SERVER,
        NATS_IO_ERROR,
        NATS_STALE_CONNECTION,
        NATS_CONNECTION_AUTH_FAILED,
        NATS_NOT_PERMITTED,
        NATS_SLOW_CONSUMER,
        NATS_SSL_ERROR,
        NATS_SECURE_CONNECTION_REQUIRED,
        NATS_NOT_YET_CONNECTED,
        NATS_INSUFFICIENT_BUFFER,
        NATS_DRAINING,
    };
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++) {
        if (natsb_classify(wide[i], 0) != OBX_UNAVAILABLE)
            fail_msg("%s is not unavailable", natsStatus_GetText(wide[i]));
        assert_true(natsb_is_server_wide(wide[i]));
    }
}

static void test_jetstream_not_enabled_is_unavailable(void **state)
{
    (void)state;
    assert_int_equal(natsb_classify(NATS_ERR, JSNotEnabledErr),
                     OBX_UNAVAILABLE);
    assert_int_equal(natsb_classify(NATS_ERR, JSNotEnabledForAccountErr),
                     OBX_UNAVAILABLE);
    /* The stream cannot store anything: not this event's fault. */
    assert_int_equal(natsb_classify(NATS_ERR, JSStreamStoreFailedErr),
                     OBX_UNAVAILABLE);
    assert_int_equal(natsb_classify(NATS_ERR, JSInsufficientResourcesErr),
                     OBX_UNAVAILABLE);
    assert_int_equal(natsb_classify(NATS_ERR, JSStreamOfflineErr),
                     OBX_UNAVAILABLE);
    assert_non_null(natsb_hint(NATS_ERR, JSNotEnabledErr));
}

static void test_event_specific_refusals_are_permanent(void **state)
{
    (void)state;
    assert_int_equal(natsb_classify(NATS_MAX_PAYLOAD, 0), OBX_PERMANENT);
    assert_int_equal(natsb_classify(NATS_INVALID_SUBJECT, 0), OBX_PERMANENT);
    assert_int_equal(natsb_classify(NATS_ERR, JSStreamMessageExceedsMaximumErr),
                     OBX_PERMANENT);
    assert_int_equal(natsb_classify(NATS_ERR, JSStreamNotMatchErr),
                     OBX_PERMANENT);
    assert_non_null(strstr(natsb_hint(NATS_MAX_PAYLOAD, 0), "max_payload"));
    assert_non_null(
        strstr(natsb_hint(NATS_ERR, JSStreamNotMatchErr), "expect_stream"));
}

static void test_puback_timeout_and_unknown_are_retry(void **state)
{
    (void)state;
    assert_int_equal(natsb_classify(NATS_TIMEOUT, 0), OBX_RETRY);
    assert_int_equal(natsb_classify(NATS_ERR, 0), OBX_RETRY);
    assert_int_equal(natsb_classify(NATS_ERR, (jsErrCode)19999), OBX_RETRY);
    assert_int_equal(natsb_classify(NATS_OK, 0), OBX_OK);
    assert_false(natsb_is_server_wide(NATS_TIMEOUT));
}

/* No responders: the subject's own problem only when JetStream answers
 * and the configured stream exists. */
static void test_no_responders_depends_on_jetstream(void **state)
{
    (void)state;
    assert_int_equal(natsb_no_responders(true, false), OBX_PERMANENT);
    assert_int_equal(natsb_no_responders(false, false), OBX_UNAVAILABLE);
    assert_int_equal(natsb_no_responders(true, true), OBX_UNAVAILABLE);
    assert_int_equal(natsb_no_responders(false, true), OBX_UNAVAILABLE);
}

static void test_subject_covering(void **state)
{
    (void)state;
    assert_true(natsb_subject_covers(">", "a.b.c"));
    assert_true(natsb_subject_covers("outbox.>", "outbox.order"));
    assert_true(natsb_subject_covers("outbox.>", "outbox.>"));
    assert_true(natsb_subject_covers("outbox.>", "outbox.*.x"));
    assert_false(natsb_subject_covers("outbox.>", "outbox"));
    assert_false(natsb_subject_covers("outbox.>", "other.order"));
    assert_true(natsb_subject_covers("outbox.*", "outbox.order"));
    assert_true(natsb_subject_covers("outbox.*", "outbox.*"));
    assert_false(natsb_subject_covers("outbox.*", "outbox.>"));
    assert_false(natsb_subject_covers("outbox.*", "outbox.a.b"));
    assert_true(natsb_subject_covers("outbox.order", "outbox.order"));
    assert_false(natsb_subject_covers("outbox.order", "outbox.*"));
    assert_false(natsb_subject_covers("outbox.order", "outbox.orders"));
    assert_false(natsb_subject_covers("a.*.c", "a.b"));
}

static void test_secrets_masked(void **state)
{
    (void)state;
    char *servers[] = {"nats://relay:hunter2@127.0.0.1:4222"};
    natsb_config c = {.servers = {servers, 1},
                      .user = "relay",
                      .password = "hunter2",
                      .token = "t0ken-xyz"};
    char out[512];
    natsb_mask(obx_test_host(), &c,
               "auth failed for hunter2 and t0ken-xyz at "
               "nats://relay:hunter2@127.0.0.1:4222",
               out, sizeof out);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "t0ken-xyz"));
    assert_non_null(strstr(out, "127.0.0.1:4222"));
    natsb_servers_str(obx_test_host(), &c, out, sizeof out);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "relay"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_level_failures_are_unavailable),
        cmocka_unit_test(test_jetstream_not_enabled_is_unavailable),
        cmocka_unit_test(test_event_specific_refusals_are_permanent),
        cmocka_unit_test(test_puback_timeout_and_unknown_are_retry),
        cmocka_unit_test(test_no_responders_depends_on_jetstream),
        cmocka_unit_test(test_subject_covering),
        cmocka_unit_test(test_secrets_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
