/* The host API pieces plugins rely on: secret masking, route templates,
 * and the log line formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "escape.h"
#include "host.h"
#include "log.h"
#include "template.h"

static void mask(const char *in, const char *want)
{
    char out[512];
    obx_mask_secrets(in, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_mask_conninfo_and_urls(void **state)
{
    mask("host=db port=5432 user=relay password=s3cret dbname=app",
         "host=db port=5432 user=relay password=*** dbname=app");
    mask("password='with space' host=x", "password=*** host=x");
    mask("postgresql://relay:s3cret@db:5432/app",
         "postgresql://relay:***@db:5432/app");
    mask("amqp://guest:guest@localhost:5672/",
         "amqp://guest:***@localhost:5672/");
    mask("sasl.password=hunter2", "sasl.password=***");
    mask("https://host/path?token=abc&x=1", "https://host/path?token=***&x=1");
    mask("no secrets here", "no secrets here");
    /* a user info without ':' is a token in cnats' nats://TOKEN@host */
    mask("nats://s3cr3t@n1:4222,nats://u:p@n2:4222",
         "nats://***@n1:4222,nats://u:***@n2:4222");
    mask("nats://n1:4222/x@y", "nats://n1:4222/x@y");
    /* values end where libpq ends them: escaped quotes, spaces around '=',
     * backslash escapes in unquoted values */
    mask("host=x password='a\\'hunter2' dbname=y",
         "host=x password=*** dbname=y");
    mask("password = 'a b\\\\' user=u", "password = *** user=u");
    mask("password=a\\ hunter2 user=u", "password=*** user=u");
    mask("PassWord=x\tuser=u", "PassWord=***\tuser=u");
    mask("password='unterminated hunter2", "password=***");
    mask("sslpassword=k1 host=h", "sslpassword=*** host=h");
    /* a password inside a query string ends at '&', a conninfo one does not */
    mask("postgres://h/db?password=p&x=1", "postgres://h/db?password=***&x=1");
    mask("password=p&q host=h", "password=*** host=h");
    char small[8];
    obx_mask_secrets("password=abcdefgh", small, sizeof small);
    assert_int_equal(strlen(small), 7);
    assert_null(strstr(small, "abc"));
}

static void test_template_expansion(void **state)
{
    obx_event ev = {.event_id = "e1",
                    .key = "k",
                    .aggregate_type = "order",
                    .aggregate_id = "42",
                    .event_type = "OrderCreated"};
    char buf[64];
    assert_int_equal(
        obx_template_expand("outbox.${aggregate_type}.${event_type}", &ev, buf,
                            sizeof buf),
        25);
    assert_string_equal(buf, "outbox.order.OrderCreated");
    obx_template_expand("${topic}x${nope}", &ev, buf, sizeof buf);
    assert_string_equal(buf, "x${nope}"); /* NULL field -> "", unknown kept */
    char tiny[6];
    size_t need =
        obx_template_expand("a.${aggregate_id}.b", &ev, tiny, sizeof tiny);
    assert_int_equal(need, 6);
    assert_string_equal(tiny, "a.42.");
    char err[256];
    assert_int_equal(obx_template_check("x.${aggregate_type}", err, sizeof err),
                     0);
    assert_int_equal(obx_template_check("x.${agregate_type}", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "agregate_type"));
    assert_int_equal(obx_template_check("x.${key", err, sizeof err), -1);
    assert_non_null(strstr(err, "unterminated"));
}

static void test_log_formats_and_levels(void **state)
{
    obx_logger lg;
    obx_logger_init(&lg);
    char *buf = NULL;
    size_t len = 0;
    lg.out = open_memstream(&buf, &len);
    lg.format = OBX_LOGFMT_JSON;
    lg.level = OBX_LOG_INFO;
    obx_log(&lg, OBX_LOG_DEBUG, "x", "hidden");
    obx_log(&lg, OBX_LOG_WARN, "orders/sqlite", "quote \" and\nnewline");
    fflush(lg.out);
    json_t *o = json_loads(buf, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "component")),
                        "orders/sqlite");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "quote \" and\nnewline");
    assert_null(strstr(buf, "hidden"));
    json_decref(o);
    fclose(lg.out);
    free(buf);
    /* bytes that are not UTF-8 (a path) and terminal escapes: the line is
     * still valid JSON, the odd byte readable as \xNN */
    buf = NULL;
    lg.out = open_memstream(&buf, &len);
    obx_log(&lg, OBX_LOG_WARN, "p/\xc3\x28",
            "path /tmp/\xff\x1b[2Jx \xe2\x82\xac");
    fflush(lg.out);
    json_error_t je;
    o = json_loads(buf, 0, &je);
    if (!o)
        fail_msg("not JSON (%s): %s", je.text, buf);
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "path /tmp/\\xff\x1b[2Jx \xe2\x82\xac");
    assert_string_equal(json_string_value(json_object_get(o, "component")),
                        "p/\\xc3(");
    json_decref(o);
    fclose(lg.out);
    free(buf);
    buf = NULL;
    lg.out = open_memstream(&buf, &len);
    lg.format = OBX_LOGFMT_TEXT;
    obx_log(&lg, OBX_LOG_ERROR, "core", "boom %d", 7);
    fflush(lg.out);
    assert_non_null(strstr(buf, "error [core] boom 7\n"));
    obx_log(&lg, OBX_LOG_ERROR, "core", "esc \x1b[31m nl\nx \xff");
    fflush(lg.out);
    assert_non_null(strstr(buf, "esc \\x1b[31m nl\\x0ax \\xff\n"));
    fclose(lg.out);
    free(buf);
    obx_logger_destroy(&lg);
}

/* An unbuffered stream (stderr, where the log goes) that records each
 * write(2) it would make. */
typedef struct write_log {
    int calls;
    char text[512];
    size_t len;
} write_log;

static ssize_t record_write(void *cookie, const char *buf, size_t n)
{
    write_log *w = cookie;
    w->calls++;
    size_t room = sizeof w->text - 1 - w->len;
    size_t take = n < room ? n : room;
    memcpy(w->text + w->len, buf, take);
    w->len += take;
    w->text[w->len] = '\0';
    return (ssize_t)n;
}

static FILE *write_log_open(write_log *w)
{
    cookie_io_functions_t io = {.write = record_write};
    FILE *f = fopencookie(w, "w", io);
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    return f;
}

/* Each line reaches an unbuffered output in one write, so lines of two
 * processes sharing a pipe (a supervisor's, journald's) never mix and a
 * line does not cost a system call per byte. */
static void test_log_line_is_one_write(void **state)
{
    (void)state;
    write_log w = {0};
    FILE *f = write_log_open(&w);
    obx_logger lg;
    obx_logger_init(&lg);
    lg.out = f;
    obx_log(&lg, OBX_LOG_INFO, "orders/pg_poll", "claimed %d (\x1b)", 3);
    assert_int_equal(w.calls, 1);
    assert_non_null(
        strstr(w.text, "info  [orders/pg_poll] claimed 3 (\\x1b)\n"));
    lg.format = OBX_LOGFMT_JSON;
    obx_log(&lg, OBX_LOG_WARN, "core", "second \"line\"");
    assert_int_equal(w.calls, 2);
    assert_non_null(strstr(w.text, "\"msg\":\"second \\\"line\\\"\"}\n"));
    fclose(f);
    obx_logger_destroy(&lg);
}

/* A message to a person (obx_eprintf) is one write too, escaped. */
static void test_eprintf_is_one_write(void **state)
{
    (void)state;
    write_log w = {0};
    FILE *f = write_log_open(&w);
    obx_eprintf(f, "config %s:%d: bad \x1b value\n", "relay.conf", 12);
    assert_int_equal(w.calls, 1);
    assert_string_equal(w.text, "config relay.conf:12: bad \\x1b value\n");
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_conninfo_and_urls),
        cmocka_unit_test(test_template_expansion),
        cmocka_unit_test(test_log_formats_and_levels),
        cmocka_unit_test(test_log_line_is_one_write),
        cmocka_unit_test(test_eprintf_is_one_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
