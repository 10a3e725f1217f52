/* End to end: the real outbox-relay binary, the sqlite and pg_poll stores
 * and the rabbitmq broker, against the RabbitMQ of the ctest fixture
 * `rabbitmq` (pg_poll also needs the PostgreSQL of the fixture `pg`).
 * Rows are written with plain SQL as an application would; a librabbitmq
 * consumer reads the queue back. Without either server the tests fail,
 * they never skip. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pg_testlib.h"
#include "proc.h"
#include "rmq_relay.h"
#include "support.h"

static int tests_run;

typedef struct fx {
    rmqr *r;
    pgt *t;
    char exch[64];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char q[64];
    snprintf(q, sizeof q, "obx-e2e-%d-%d", (int)getpid(), ++tests_run);
    f->r = rmqr_new(rmqt_url(), q);
    snprintf(f->exch, sizeof f->exch, "obx-e2e-x-%d-%d", (int)getpid(),
             tests_run);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rmqr_free(f->r);
    if (f->t)
        pgt_free(f->t);
    free(f);
    return 0;
}

/* 10,000 events over 100 keys on 2 channels through a topic exchange the
 * plugin declares (the test declared it first, the same way); one row
 * routed nowhere (its topic column matches no binding) and one larger
 * than broker.max_message_size go to the dead-letter table with their
 * reasons, the rest arrive once each, in key order. */
static void
test_sqlite_to_rabbitmq_each_once_unroutable_oversize_dead(void **state)
{
    fx *f = *state;
    rmqr *r = f->r;
    const int n = 10000, keys = 100;
    rmqt_bind(r->url, r->queue, f->exch, "topic", "orders.#");
    rmqr_create_schema(r);
    rmqr_insert(r, 0, n / 2, keys);
    rmqr_sql(r, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload, topic) VALUES ('order', 'o7', "
                "'OrderCreated', '{\"seq\":10000}', 'nowhere.at.all')");
    rmqr_sql(r, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) VALUES ('order', 'o8', "
                "'OrderCreated', '{\"seq\":10001,\"big\":\"' || "
                "hex(zeroblob(40000)) || '\"}')");
    rmqr_insert(r, n / 2, n - n / 2, keys);
    char extra[512];
    snprintf(extra, sizeof extra,
             "topic = orders.created\nbroker.exchange = %s\n"
             "broker.declare_exchange = topic\n"
             "broker.max_message_size = 64KiB\n",
             f->exch);
    rmqr_write_conf(r, extra);
    char *check[] = {RMQR_BIN, "check", "-c", r->conf, "--connect", NULL};
    if (proc_run(check, r->out, r->err, 30000) != 0)
        rmqr_fail_with_log(r, "check --connect failed");
    char *run[] = {RMQR_BIN, "run", "-c", r->conf, "--once", NULL};
    if (proc_run(run, NULL, r->err, 120000) != 0)
        rmqr_fail_with_log(r, "the relay failed");
    char **ids = rmqr_event_ids(r, n);
    rmqr_check_queue(r, r->queue, ids, n, keys, -1);
    rmqr_free_ids(ids, n);
    assert_int_equal(rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE "
                                     "published_at IS NOT NULL"),
                     n);
    assert_int_equal(
        rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE dead_at IS NOT "
                        "NULL AND json_extract(payload, '$.seq') = 10000 "
                        "AND dead_reason LIKE '%312 NO_ROUTE%' AND "
                        "dead_reason LIKE '%nowhere.at.all%'"),
        1);
    assert_int_equal(
        rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE dead_at IS NOT "
                        "NULL AND json_extract(payload, '$.seq') = 10001 "
                        "AND dead_reason LIKE '%max_message_size%'"),
        1);
    assert_int_equal(
        rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE dead_at IS NOT "
                        "NULL"),
        2);
    rmqt_exchange_delete(r->url, f->exch);
}

/* pg_poll on this test's schema; NOTIFY on a channel of its own. */
static void write_pg_conf(fx *f)
{
    char store[4400];
    snprintf(store, sizeof store,
             "store = pg_poll\nstore.conninfo = %s\nstore.schema = %s\n"
             "store.channel = %s\nstore.owner = rabbitmq-e2e\n",
             f->t->conninfo, f->t->schema, f->t->schema);
    rmqr_write_conf_for(f->r, store, NULL);
}

static void pg_insert(fx *f, int from, int n, int keys)
{
    pgt_exec(f->t, "BEGIN");
    for (int i = from; i < from + n; i++)
        pgt_exec(f->t,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload, headers) VALUES ('order', 'o%d', "
                 "'OrderCreated', convert_to('{\"seq\":%d}', 'UTF8'), "
                 "'{\"trace-id\":\"t-%d\"}')",
                 i % keys, i, i);
    pgt_exec(f->t, "COMMIT");
}

static char **pg_event_ids(fx *f, int n)
{
    char **ids = calloc((size_t)n + 1, sizeof *ids);
    PGresult *res =
        PQexec(pgt_db(f->t), "SELECT (convert_from(payload, 'UTF8')::jsonb "
                             "->> 'seq')::int, event_id FROM outbox");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(res); i++) {
        int seq = atoi(PQgetvalue(res, i, 0));
        if (seq >= 0 && seq <= n)
            ids[seq] = strdup(PQgetvalue(res, i, 1));
    }
    PQclear(res);
    return ids;
}

/* A backlog before the relay starts, more written while it runs, to the
 * default exchange (routing key = queue name); SIGTERM once settled. */
static void test_pg_poll_to_rabbitmq_each_once_in_key_order(void **state)
{
    fx *f = *state;
    const int n = 10000, keys = 100;
    f->t = pgt_new(); /* fails, never skips, when the server is not there */
    write_pg_conf(f);
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->r->dir);
    char *schema[] = {RMQR_BIN, "schema", "pg_poll", "-c", f->r->conf, NULL};
    assert_int_equal(proc_run(schema, path, f->r->err, 10000), 0);
    char *ddl = slurp(path);
    assert_non_null(ddl);
    pgt_exec(f->t, "%s", ddl);
    free(ddl);
    pg_insert(f, 0, n / 2, keys);
    rmqr_start(f->r);
    for (int from = n / 2; from < n; from += 500) {
        pg_insert(f, from, 500, keys);
        sleep_ms(10);
    }
    int64_t end = rmqt_now_ms() + 60000;
    while (pgt_int(f->t, -1,
                   "SELECT count(*) FROM outbox WHERE published_at IS NULL "
                   "AND dead_at IS NULL") != 0) {
        if (rmqt_now_ms() > end)
            rmqr_fail_with_log(f->r, "events still pending");
        sleep_ms(50);
    }
    rmqr_stop(f->r);
    char **ids = pg_event_ids(f, n);
    rmqr_check_queue(f->r, f->r->queue, ids, n, keys, -1);
    rmqr_free_ids(ids, n);
    assert_int_equal(pgt_int(f->t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL"),
                     n);
    assert_int_equal(
        pgt_int(f->t, -1, "SELECT count(*) FROM outbox WHERE attempts > 0"), 0);
}

/* A missing exchange is configuration, not poison: the circuit opens with
 * the exchange named, nothing counts as an attempt, nothing is
 * dead-lettered; once the exchange exists everything is delivered. */
static void test_missing_exchange_opens_circuit_then_delivers(void **state)
{
    fx *f = *state;
    rmqr *r = f->r;
    const int n = 300, keys = 10;
    rmqr_create_schema(r);
    rmqr_insert(r, 0, n, keys);
    char extra[256];
    snprintf(extra, sizeof extra, "topic = orders\nbroker.exchange = %s\n",
             f->exch);
    rmqr_write_conf(r, extra);
    rmqr_start(r);
    rmqr_wait_readyz(r, "circuit open", 15000);
    sleep_ms(1500); /* a few probes */
    char want[128];
    snprintf(want, sizeof want, "no exchange '%s'", f->exch);
    if (!rmqr_file_has(r->err, want))
        rmqr_fail_with_log(r, "the log does not name the exchange");
    assert_int_equal(rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE "
                                     "published_at IS NOT NULL"),
                     0);
    assert_int_equal(rmqr_sql_int(r, "SELECT max(attempts) FROM outbox"), 0);
    rmqt_bind(r->url, r->queue, f->exch, "direct", "orders");
    rmqr_wait_settled(r, 30000);
    rmqr_stop(r);
    assert_int_equal(rmqr_sql_int(r, "SELECT max(attempts) FROM outbox"), 0);
    assert_int_equal(
        rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE dead_at IS NOT "
                        "NULL"),
        0);
    char **ids = rmqr_event_ids(r, n);
    rmqr_check_queue(r, r->queue, ids, n, keys, -1);
    rmqr_free_ids(ids, n);
    rmqt_exchange_delete(r->url, f->exch);
}

/* A quiet pipeline: nothing talks to the server between publishes, so it
 * closes the connection after two missed heartbeats. The next publish
 * reconnects and delivers at once, with no attempt counted, and the log
 * says so at info level: no warning for every quiet minute. */
static void test_idle_connection_closed_reconnects_quietly(void **state)
{
    fx *f = *state;
    rmqr *r = f->r;
    rmqr_create_schema(r);
    rmqr_insert(r, 0, 5, 5);
    rmqr_write_conf(r, "broker.heartbeat = 1s\n");
    rmqr_start(r);
    rmqr_wait_settled(r, 30000);
    sleep_ms(4000); /* the server gives up on us after about 2 s */
    rmqr_insert(r, 5, 5, 5);
    rmqr_wait_settled(r, 30000);
    rmqr_stop(r);
    rmqr_assert_no_attempts(r);
    if (!rmqr_file_has(r->err, "closed while idle"))
        rmqr_fail_with_log(r, "the idle close is not logged as such");
    if (rmqr_file_has(r->err, "warn "))
        rmqr_fail_with_log(r, "a warning for an idle close");
    if (rmqr_file_has(r->err, "circuit open"))
        rmqr_fail_with_log(r, "the circuit opened for an idle close");
    char **ids = rmqr_event_ids(r, 10);
    rmqr_check_queue(r, r->queue, ids, 10, 5, -1);
    rmqr_free_ids(ids, 10);
}

/* The password, in the URL or in broker.password, never shows: not in
 * `check` (with and without --connect), not in any log line at trace
 * level, not when the login fails, not when a publish fails. */
static void test_password_never_in_logs_or_check(void **state)
{
    fx *f = *state;
    rmqr *r = f->r;
    const char *pw = rmqt_password(r->url);
    rmqr_create_schema(r);
    rmqr_insert(r, 0, 20, 4);
    r->log_level = "trace";
    rmqr_write_conf(r, NULL);

    char *check[] = {RMQR_BIN, "check", "-c", r->conf, NULL};
    assert_int_equal(proc_run(check, r->out, r->err, 30000), 0);
    assert_false(rmqr_file_has(r->out, pw));
    assert_false(rmqr_file_has(r->err, pw));
    char *checkc[] = {RMQR_BIN, "check", "-c", r->conf, "--connect", NULL};
    assert_int_equal(proc_run(checkc, r->out, r->err, 30000), 0);
    assert_false(rmqr_file_has(r->out, pw));
    assert_false(rmqr_file_has(r->err, pw));
    char *run[] = {RMQR_BIN, "run", "-c", r->conf, "--once", NULL};
    if (proc_run(run, r->out, r->err, 60000) != 0)
        rmqr_fail_with_log(r, "the relay failed");
    assert_true(rmqr_file_has(r->err, "rabbitmq: connected to"));
    assert_false(rmqr_file_has(r->out, pw));
    assert_false(rmqr_file_has(r->err, pw));

    /* a wrong password in broker.password: refused, and not shown */
    FILE *fp = fopen(r->conf, "a");
    fprintf(fp, "broker.password = Wr0ngPassw0rd-XYZ\n");
    fclose(fp);
    assert_int_not_equal(proc_run(checkc, r->out, r->err, 30000), 0);
    assert_true(rmqr_file_has(r->err, "ACCESS_REFUSED") ||
                rmqr_file_has(r->out, "ACCESS_REFUSED"));
    assert_false(rmqr_file_has(r->err, "Wr0ngPassw0rd-XYZ"));
    assert_false(rmqr_file_has(r->out, "Wr0ngPassw0rd-XYZ"));
    rmqr_insert(r, 20, 5, 4);
    rmqr_start(r);
    rmqr_wait_readyz(r, "circuit open", 15000);
    rmqr_stop(r);
    assert_false(rmqr_file_has(r->err, "Wr0ngPassw0rd-XYZ"));
    assert_false(rmqr_file_has(r->err, pw));
}

/* docs/rabbitmq.md carries `outbox-relay help rabbitmq` (from its "keys"
 * line: the lines above name the plugin's path). */
static void test_docs_carry_the_option_help(void **state)
{
    fx *f = *state;
    rmqr_write_conf(f->r, NULL);
    char *help[] = {RMQR_BIN, "help", "-c", f->r->conf, "rabbitmq", NULL};
    assert_int_equal(proc_run(help, f->r->out, f->r->err, 30000), 0);
    char *text = slurp(f->r->out);
    char *doc = slurp(OBX_SOURCE_DIR "/docs/rabbitmq.md");
    assert_non_null(text);
    assert_non_null(doc);
    char *keys = strstr(text, "keys, set as");
    assert_non_null(keys);
    if (!strstr(doc, keys))
        fail_msg("docs/rabbitmq.md is out of date: paste the output of "
                 "`outbox-relay help rabbitmq` from its \"keys\" line");
    free(text);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sqlite_to_rabbitmq_each_once_unroutable_oversize_dead, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_pg_poll_to_rabbitmq_each_once_in_key_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_idle_connection_closed_reconnects_quietly, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_missing_exchange_opens_circuit_then_delivers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_never_in_logs_or_check,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_carry_the_option_help, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
