/* End to end: the real outbox-relay binary, the sqlite and pg_poll stores
 * and the kafka broker, against librdkafka's mock cluster running as its
 * own process (mock_cluster; not an Apache Kafka broker). Rows are written
 * with plain SQL as an application would; a test consumer reads the topic
 * back.
 *
 * pg_poll runs against the private PostgreSQL of the ctest fixture `pg`
 * (tests/pg), in a schema of its own; without that server the test fails,
 * it never skips. */
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
#include <sqlite3.h>

#include "kafka_testlib.h"
#include "pg_testlib.h"
#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"
#define MOCK OBX_BUILD_DIR "/tests/kafka/mock_cluster"
#define TOPIC "outbox.order"

typedef struct fx {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200], mock_out[4200];
    pid_t mock;
    char bootstraps[512];
    pgt *t;      /* pg_poll tests: this test's schema on the fixture server */
    pid_t relay; /* a relay in run mode, 0 when none */
} fx;

/* Start mock_cluster and read the bootstrap line it prints. */
static void start_mock(fx *f)
{
    char *argv[] = {MOCK, "-b", "3", "-t", TOPIC ":6", NULL};
    f->mock = proc_start(argv, f->mock_out, NULL);
    for (int i = 0; i < 500; i++) {
        char *s = slurp(f->mock_out);
        char *nl = s ? strchr(s, '\n') : NULL;
        if (nl) {
            *nl = '\0';
            snprintf(f->bootstraps, sizeof f->bootstraps, "%s", s);
            free(s);
            return;
        }
        free(s);
        sleep_ms(10);
    }
    fail_msg("mock_cluster printed no bootstrap address");
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/outbox.db", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out.log", f->dir);
    snprintf(f->err, sizeof f->err, "%s/err.log", f->dir);
    snprintf(f->mock_out, sizeof f->mock_out, "%s/mock.out", f->dir);
    start_mock(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->relay > 0) {
        kill(f->relay, SIGKILL);
        proc_wait(f->relay, 5000);
    }
    if (f->t)
        pgt_free(f->t);
    if (f->mock > 0) {
        kill(f->mock, SIGTERM);
        assert_int_equal(proc_wait(f->mock, 10000), 0);
    }
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* `store` is the pipeline's store lines (store = ... and its keys). */
static void write_conf_for(fx *f, const char *store, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    /* plugin_path first: the loader would otherwise prefer an installed
     * copy of the plugins over this build's. */
    fprintf(fp,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = " OBX_PLUGIN_DIR "\n"
            "[pipeline p]\n%sbroker = kafka\n"
            "poll_interval = 20ms\nbatch_size = 200\n"
            "retry.backoff = 1ms..5ms\n"
            "broker.brokers = %s\n"
            "broker.kafka.message.max.bytes = 20000\n%s\n",
            store, f->bootstraps, extra ? extra : "");
    fclose(fp);
}

/* sqlite; test_check_reports_bad_property_with_line counts on `extra`
 * being line 14. */
static void write_conf(fx *f, const char *extra)
{
    char store[4400];
    snprintf(store, sizeof store, "store = sqlite\nstore.path = %s\n", f->db);
    write_conf_for(f, store, extra);
}

static void sql(fx *f, const char *q)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s: %s", q, err);
    sqlite3_close(db);
}

static long long sql_int(fx *f, const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void create_schema(fx *f)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->dir);
    char *argv[] = {BIN, "schema", "sqlite", NULL};
    assert_int_equal(proc_run(argv, path, f->err, 10000), 0);
    char *ddl = slurp(path);
    sql(f, ddl);
    free(ddl);
}

/* Events from..from+n over `keys` keys (aggregate ids o0..), one user
 * header each, plain INSERTs in one transaction; payload {"seq":i}. */
static void insert_events(fx *f, int from, int n, int keys)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    char q[512];
    for (int i = from; i < from + n; i++) {
        snprintf(q, sizeof q,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload, headers) VALUES ('order', 'o%d', "
                 "'OrderCreated', '{\"seq\":%d}', '{\"trace-id\":\"t-%d\"}')",
                 i % keys, i, i);
        assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    }
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* seq -> event_id, as the store generated them. */
static char **event_ids(fx *f, int n)
{
    char **ids = calloc((size_t)n + 1, sizeof *ids);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT json_extract(payload, '$.seq'), event_id "
                           "FROM outbox",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int seq = sqlite3_column_int(st, 0);
        if (seq >= 0 && seq <= n)
            ids[seq] = strdup((const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ids;
}

static void free_ids(char **ids, int n)
{
    for (int i = 0; i <= n; i++)
        free(ids[i]);
    free(ids);
}

/* Every event once with its key, headers and id (ids: seq -> the id the
 * store generated); per-key order. */
static void check_topic(fx *f, char **ids, int n, int keys, int skip_seq)
{
    kt_msgs m = kt_consume(f->bootstraps, TOPIC, (size_t)n, 500, 60000);
    int *seen = calloc((size_t)n + 1, sizeof *seen);
    for (size_t i = 0; i < m.n; i++) {
        const kt_msg *x = &m.items[i];
        long seq = kt_seq(x);
        assert_true(seq >= 0 && seq <= n && seq != skip_seq);
        seen[seq]++;
        char want[32];
        snprintf(want, sizeof want, "o%ld", seq % keys);
        assert_string_equal(x->key, want);
        assert_string_equal(kt_header_value(x, "outbox-event-id"), ids[seq]);
        assert_string_equal(kt_header_value(x, "outbox-event-type"),
                            "OrderCreated");
        assert_string_equal(kt_header_value(x, "outbox-aggregate-type"),
                            "order");
        snprintf(want, sizeof want, "t-%ld", seq);
        assert_string_equal(kt_header_value(x, "trace-id"), want);
    }
    for (int s = 0; s <= n; s++)
        if (s != skip_seq && s < n && seen[s] != 1)
            fail_msg("seq %d read %d times", s, seen[s]);
    assert_int_equal(m.n, (size_t)n);
    kt_assert_key_order(&m);
    free(seen);
    kt_msgs_free(&m);
}

static void test_sqlite_to_kafka_every_event_once_oversize_dead(void **state)
{
    fx *f = *state;
    const int n = 3000, keys = 31;
    create_schema(f);
    insert_events(f, 0, n / 2, keys);
    /* seq n, key o5: three times broker.kafka.message.max.bytes. */
    sql(f, "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
           "payload) VALUES ('order', 'o5', 'OrderCreated', "
           "'{\"seq\":3000,\"big\":\"' || hex(zeroblob(30000)) || '\"}')");
    insert_events(f, n / 2, n - n / 2, keys);
    write_conf(f, NULL);
    char *check[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    assert_int_equal(proc_run(check, f->out, f->err, 30000), 0);
    char *run[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    int rc = proc_run(run, NULL, f->err, 120000);
    if (rc != 0) {
        char *log = slurp(f->err);
        fail_msg("relay exited %d: %s", rc, log ? log : "");
    }
    char **ids = event_ids(f, n);
    check_topic(f, ids, n, keys, n);
    free_ids(ids, n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL"),
                     n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at "
                                "IS NOT NULL AND json_extract(payload, "
                                "'$.seq') = 3000 AND dead_reason LIKE "
                                "'%MSG_SIZE_TOO_LARGE%'"),
                     1);
}

/* ---- pg_poll -> kafka ---- */

/* pg_poll on this test's schema, named in the config and first in the
 * conninfo's search_path; NOTIFY on a channel of its own, so relays of
 * other tests sharing the server are not woken by these inserts. */
static void write_pg_conf(fx *f)
{
    char store[4400];
    snprintf(store, sizeof store,
             "store = pg_poll\nstore.conninfo = %s\nstore.schema = %s\n"
             "store.channel = %s\nstore.owner = kafka-e2e\n",
             f->t->conninfo, f->t->schema, f->t->schema);
    write_conf_for(f, store, NULL);
}

/* The DDL `outbox-relay schema pg_poll` prints for this config. */
static void pg_create_schema(fx *f)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->dir);
    char *argv[] = {BIN, "schema", "pg_poll", "-c", f->conf, NULL};
    assert_int_equal(proc_run(argv, path, f->err, 10000), 0);
    char *ddl = slurp(path);
    assert_non_null(ddl);
    pgt_exec(f->t, "%s", ddl);
    free(ddl);
}

/* Like insert_events: plain INSERTs, one transaction, on the
 * application's connection. */
static void pg_insert_events(fx *f, int from, int n, int keys)
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
    PGresult *r =
        PQexec(pgt_db(f->t), "SELECT (convert_from(payload, 'UTF8')::jsonb ->> "
                             "'seq')::int, event_id FROM outbox");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        int seq = atoi(PQgetvalue(r, i, 0));
        if (seq >= 0 && seq <= n)
            ids[seq] = strdup(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return ids;
}

static void fail_with_relay_log(fx *f, const char *what)
{
    char *log = slurp(f->err);
    if (log) /* cmocka's print_error() cuts long text */
        fprintf(stderr, "--- relay log:\n%s\n", log);
    free(log);
    fail_msg("%s", what);
}

/* Until no row is left that is neither published nor dead. */
static void pg_wait_settled(fx *f, int timeout_ms)
{
    int64_t end = kt_now_ms() + timeout_ms;
    while (pgt_int(f->t, -1,
                   "SELECT count(*) FROM outbox WHERE published_at IS NULL "
                   "AND dead_at IS NULL") != 0) {
        if (kt_now_ms() > end)
            fail_with_relay_log(f, "events still pending");
        sleep_ms(50);
    }
}

static void stop_relay(fx *f)
{
    kill(f->relay, SIGTERM);
    int rc = proc_wait(f->relay, 30000);
    f->relay = 0;
    if (rc != 0)
        fail_with_relay_log(f, "the relay did not exit cleanly");
}

/* A backlog written before the relay starts, more written while it runs,
 * an oversize row among them; SIGTERM once everything is settled. `run`
 * rather than `--once`, so rows committed while the relay claims and
 * publishes are part of it (the sqlite test covers the backlog alone). */
static void test_pg_poll_to_kafka_every_event_once_oversize_dead(void **state)
{
    fx *f = *state;
    const int n = 3000, keys = 31;
    f->t = pgt_new(); /* fails, never skips, when the server is not there */
    write_pg_conf(f);
    pg_create_schema(f);
    pg_insert_events(f, 0, n / 2, keys);
    /* seq n, key o5: three times broker.kafka.message.max.bytes. */
    pgt_exec(f->t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                   "event_type, payload) VALUES ('order', 'o5', "
                   "'OrderCreated', convert_to('{\"seq\":3000,\"big\":\"' || "
                   "repeat('x', 60000) || '\"}', 'UTF8'))");
    char *check[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    assert_int_equal(proc_run(check, f->out, f->err, 30000), 0);
    char *run[] = {BIN, "run", "-c", f->conf, NULL};
    f->relay = proc_start(run, NULL, f->err);
    for (int from = n / 2; from < n; from += 100) {
        pg_insert_events(f, from, 100, keys);
        sleep_ms(10);
    }
    pg_wait_settled(f, 30000);
    stop_relay(f);
    char **ids = pg_event_ids(f, n);
    check_topic(f, ids, n, keys, n);
    free_ids(ids, n);
    assert_int_equal(pgt_int(f->t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL"),
                     n);
    assert_int_equal(pgt_int(f->t, -1,
                             "SELECT count(*) FROM outbox WHERE dead_at IS "
                             "NOT NULL AND length(payload) > 60000 AND "
                             "dead_reason LIKE '%%MSG_SIZE_TOO_LARGE%%'"),
                     1);
}

static void test_check_reports_bad_property_with_line(void **state)
{
    fx *f = *state;
    write_conf(f, "broker.kafka.linger.ms = soon");
    char *check[] = {BIN, "check", "-c", f->conf, NULL};
    assert_int_not_equal(proc_run(check, f->out, f->err, 30000), 0);
    char *log = slurp(f->err);
    assert_non_null(log);
    if (!strstr(log, "broker.kafka.linger.ms (line 14)"))
        fail_msg("check said: %s", log);
    free(log);
}

/* docs/kafka.md carries `outbox-relay help kafka` (from its "keys" line:
 * the lines above name the plugin's path). */
static void test_docs_carry_the_option_help(void **state)
{
    fx *f = *state;
    write_conf(f, NULL);
    char *help[] = {BIN, "help", "-c", f->conf, "kafka", NULL};
    assert_int_equal(proc_run(help, f->out, f->err, 30000), 0);
    char *text = slurp(f->out);
    char *doc = slurp(OBX_SOURCE_DIR "/docs/kafka.md");
    assert_non_null(text);
    assert_non_null(doc);
    char *keys = strstr(text, "keys, set as");
    assert_non_null(keys);
    if (!strstr(doc, keys))
        fail_msg("docs/kafka.md is out of date: paste the output of "
                 "`outbox-relay help kafka` from its \"keys\" line");
    free(text);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sqlite_to_kafka_every_event_once_oversize_dead, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_pg_poll_to_kafka_every_event_once_oversize_dead, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_check_reports_bad_property_with_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_carry_the_option_help, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
