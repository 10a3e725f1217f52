/* The rabbitmq broker's pure parts, compiled in directly: the error table
 * (rabbitmq_errors.c), the confirm window (rabbitmq_window.c) and the
 * event -> AMQP properties mapping (rabbitmq_message.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rabbitmq_errors.h"
#include "rabbitmq_message.h"
#include "rabbitmq_window.h"

#define TXT(s) s, strlen(s)

/* ---- errors ---- */

static void test_library_codes(void **state)
{
    (void)state;
    assert_int_equal(rmq_classify_library(AMQP_STATUS_OK), OBX_OK);
    assert_int_equal(rmq_classify_library(AMQP_STATUS_TABLE_TOO_BIG),
                     OBX_PERMANENT);
    const int wide[] = {AMQP_STATUS_SOCKET_ERROR,
                        AMQP_STATUS_CONNECTION_CLOSED,
                        AMQP_STATUS_HEARTBEAT_TIMEOUT,
                        AMQP_STATUS_TIMEOUT,
                        AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED,
                        AMQP_STATUS_TCP_ERROR,
                        AMQP_STATUS_SSL_ERROR,
                        AMQP_STATUS_SSL_CONNECTION_FAILED,
                        AMQP_STATUS_SSL_PEER_VERIFY_FAILED,
                        AMQP_STATUS_BAD_AMQP_DATA,
                        AMQP_STATUS_UNEXPECTED_STATE,
                        -0x7777};
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
        assert_int_equal(rmq_classify_library(wide[i]), OBX_UNAVAILABLE);
}

static void test_server_closes(void **state)
{
    (void)state;
    /* connection.close: never the event's fault */
    assert_int_equal(rmq_classify_close(false, 320,
                                        TXT("CONNECTION_FORCED - "
                                            "Closed via management "
                                            "plugin")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(false, 403,
                                        TXT("ACCESS_REFUSED - Login was "
                                            "refused")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(false, 530,
                                        TXT("NOT_ALLOWED - vhost x not "
                                            "found")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(false, 406,
                                        TXT("PRECONDITION_FAILED - "
                                            "message size 9 is larger "
                                            "than configured max size "
                                            "1")),
                     OBX_UNAVAILABLE);
    /* channel.close: configuration, except an oversize message */
    assert_int_equal(rmq_classify_close(true, 404,
                                        TXT("NOT_FOUND - no exchange "
                                            "'x' in vhost '/'")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(true, 403,
                                        TXT("ACCESS_REFUSED - write "
                                            "access")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(true, 406,
                                        TXT("PRECONDITION_FAILED - "
                                            "inequivalent arg 'type'")),
                     OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_close(true, 406,
                                        TXT("PRECONDITION_FAILED - "
                                            "message size 2000000 is "
                                            "larger than configured max "
                                            "size 1048576")),
                     OBX_PERMANENT);
}

static void test_parse_max_size(void **state)
{
    (void)state;
    assert_int_equal(
        rmq_parse_max_size(TXT("PRECONDITION_FAILED - message size 2000000 is "
                               "larger than configured max size 1048576")),
        1048576);
    assert_int_equal(rmq_parse_max_size(TXT("PRECONDITION_FAILED - "
                                            "inequivalent arg")),
                     -1);
    /* not NUL-terminated: the length is the end */
    const char *s = "message size 5 is larger than configured max size 12345";
    assert_int_equal(rmq_parse_max_size(s, strlen(s) - 2), 123);
    assert_int_equal(rmq_parse_max_size(NULL, 0), -1);
}

static void test_sizes_and_timeouts(void **state)
{
    (void)state;
    assert_int_equal(rmq_classify_size(100, 100, 0, 0), OBX_OK);
    assert_int_equal(rmq_classify_size(101, 100, 0, 0), OBX_PERMANENT);
    assert_int_equal(rmq_classify_size(0, 0, 4088, 4096), OBX_OK);
    assert_int_equal(rmq_classify_size(0, 0, 4089, 4096), OBX_PERMANENT);
    assert_int_equal(rmq_classify_timeout(false), OBX_UNAVAILABLE);
    assert_int_equal(rmq_classify_timeout(true), OBX_RETRY);
}

static void test_names_and_hints(void **state)
{
    (void)state;
    assert_string_equal(rmq_reply_name(312), "NO_ROUTE");
    assert_string_equal(rmq_reply_name(404), "NOT_FOUND");
    assert_string_equal(rmq_reply_name(1), "?");
    assert_non_null(strstr(rmq_hint(true, 404, TXT("")), "declare"));
    assert_non_null(strstr(rmq_hint(false, 530, TXT("")), "vhost"));
    assert_non_null(strstr(rmq_hint(true, 406,
                                    TXT("message size 3 is larger than "
                                        "configured max size 2")),
                           "max_message_size"));
    assert_null(rmq_hint(true, 200, TXT("")));
}

/* ---- window ---- */

typedef struct answers {
    uint32_t ev[64];
    bool ack[64];
    size_t n;
} answers;

static void record(void *ctx, uint32_t ev, bool ack)
{
    answers *a = ctx;
    a->ev[a->n] = ev;
    a->ack[a->n++] = ack;
}

static void test_window_single_multiple_and_stale(void **state)
{
    (void)state;
    rmq_window w;
    assert_int_equal(rmq_window_init(&w, 4), 0);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(rmq_window_push(&w, 10 + i), i + 1);
    assert_false(rmq_window_has_room(&w));
    answers a = {0};
    /* tag 2 alone, out of order: the window does not move yet */
    assert_int_equal(rmq_window_answer(&w, 2, false, true, record, &a), 1);
    assert_int_equal(a.ev[0], 11);
    assert_false(rmq_window_has_room(&w));
    /* a duplicate and a tag from the future answer nothing */
    assert_int_equal(rmq_window_answer(&w, 2, false, true, record, &a), 0);
    assert_int_equal(rmq_window_answer(&w, 9, true, true, record, &a), 0);
    /* multiple up to 3: tags 1 and 3 (2 was answered) */
    assert_int_equal(rmq_window_answer(&w, 3, true, false, record, &a), 2);
    assert_int_equal(a.ev[1], 10);
    assert_int_equal(a.ev[2], 12);
    assert_false(a.ack[1]);
    assert_true(rmq_window_has_room(&w));
    assert_int_equal(w.pending, 1);
    /* the ring wraps: tags 5..7 reuse slots */
    assert_int_equal(rmq_window_push(&w, 20), 5);
    assert_int_equal(rmq_window_push(&w, 21), 6);
    assert_int_equal(rmq_window_push(&w, 22), 7);
    assert_false(rmq_window_has_room(&w));
    assert_int_equal(rmq_window_answer(&w, 7, true, true, record, &a), 4);
    assert_int_equal(a.ev[3], 13);
    assert_int_equal(a.ev[6], 22);
    assert_int_equal(w.pending, 0);
    assert_true(rmq_window_has_room(&w));
    /* stale: tag 1 again */
    assert_int_equal(rmq_window_answer(&w, 1, true, true, record, &a), 0);
    rmq_window_free(&w);
}

static void test_window_forget_drain_iterate(void **state)
{
    (void)state;
    rmq_window w;
    assert_int_equal(rmq_window_init(&w, 8), 0);
    for (uint32_t i = 0; i < 5; i++)
        rmq_window_push(&w, i);
    assert_int_equal(rmq_window_forget(&w, 2), 3);
    assert_int_equal(rmq_window_forget(&w, 2), 0);
    assert_int_equal(rmq_window_forget(&w, 0), 1);
    uint64_t pos = 0;
    uint32_t ev;
    uint32_t seen[8];
    size_t n = 0;
    while (rmq_window_next(&w, &pos, &ev))
        seen[n++] = ev;
    assert_int_equal(n, 3);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 4);
    answers a = {0};
    /* the ack of a forgotten (returned) message answers nothing more */
    assert_int_equal(rmq_window_answer(&w, 3, false, true, record, &a), 0);
    assert_int_equal(rmq_window_drain(&w, record, &a), 3);
    assert_int_equal(w.pending, 0);
    assert_true(rmq_window_has_room(&w));
    rmq_window_reset(&w);
    assert_int_equal(rmq_window_push(&w, 7), 1);
    rmq_window_free(&w);
}

/* ---- message ---- */

static const amqp_table_entry_t *entry(const rmq_message *m, const char *name)
{
    for (int i = 0; i < m->props.headers.num_entries; i++) {
        const amqp_table_entry_t *e = &m->props.headers.entries[i];
        if (e->key.len == strlen(name) &&
            memcmp(e->key.bytes, name, e->key.len) == 0)
            return e;
    }
    return NULL;
}

static void assert_bytes(amqp_bytes_t b, const char *s)
{
    assert_int_equal(b.len, strlen(s));
    assert_memory_equal(b.bytes, s, b.len);
}

static void test_message_mapping(void **state)
{
    (void)state;
    obx_header h[2] = {{"trace-id", "t-1"}, {"empty", NULL}};
    obx_event ev = {.event_id = "e-1",
                    .key = "o1",
                    .event_type = "OrderCreated",
                    .aggregate_type = "order",
                    .aggregate_id = "o1",
                    .payload = "{\"a\":1}",
                    .payload_len = 7,
                    .headers = h,
                    .n_headers = 2,
                    .created_at_us = 1700000001999999LL};
    rmq_message m = {0};
    char err[256];
    assert_int_equal(rmq_message_build(&m, &ev, "", "relay", err, sizeof err),
                     0);
    const amqp_basic_properties_t *p = &m.props;
    assert_int_equal(p->delivery_mode, 2);
    assert_bytes(p->message_id, "e-1");
    assert_bytes(p->type, "OrderCreated");
    assert_bytes(p->app_id, "relay");
    assert_bytes(p->content_type, "application/json");
    assert_int_equal(p->timestamp, 1700000001);
    assert_int_equal(p->headers.num_entries, 6);
    assert_bytes(entry(&m, "outbox-event-id")->value.value.bytes, "e-1");
    assert_bytes(entry(&m, "outbox-event-type")->value.value.bytes,
                 "OrderCreated");
    assert_bytes(entry(&m, "outbox-aggregate-type")->value.value.bytes,
                 "order");
    assert_bytes(entry(&m, "outbox-aggregate-id")->value.value.bytes, "o1");
    assert_bytes(entry(&m, "trace-id")->value.value.bytes, "t-1");
    assert_int_equal(entry(&m, "empty")->value.kind, AMQP_FIELD_KIND_VOID);
    size_t base = rmq_message_header_size(&m);
    /* every header byte counts */
    h[0].value = "t-1234";
    assert_int_equal(rmq_message_build(&m, &ev, "", "relay", err, sizeof err),
                     0);
    assert_int_equal(rmq_message_header_size(&m), base + 3);

    ev.payload = "\xff";
    ev.payload_len = 1;
    assert_int_equal(rmq_message_build(&m, &ev, "", "", err, sizeof err), 0);
    assert_bytes(m.props.content_type, "application/octet-stream");
    assert_false(m.props._flags & AMQP_BASIC_APP_ID_FLAG);
    assert_int_equal(
        rmq_message_build(&m, &ev, "text/plain", "", err, sizeof err), 0);
    assert_bytes(m.props.content_type, "text/plain");

    char longtype[300];
    memset(longtype, 't', 299);
    longtype[299] = '\0';
    ev.event_type = longtype;
    assert_int_equal(rmq_message_build(&m, &ev, "", "", err, sizeof err), -1);
    assert_non_null(strstr(err, "255"));
    rmq_message_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_codes),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_parse_max_size),
        cmocka_unit_test(test_sizes_and_timeouts),
        cmocka_unit_test(test_names_and_hints),
        cmocka_unit_test(test_window_single_multiple_and_stale),
        cmocka_unit_test(test_window_forget_drain_iterate),
        cmocka_unit_test(test_message_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
