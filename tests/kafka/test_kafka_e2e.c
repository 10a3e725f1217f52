/* End to end: the real outbox-relay binary, the sqlite store and the kafka
 * broker, against librdkafka's mock cluster running as its own process
 * (mock_cluster; not an Apache Kafka broker). Rows are written with plain
 * SQL as an application would; a test consumer reads the topic back.
 *
 * pg_poll -> kafka: to be added here once the pg_poll store lands (same
 * checks, rows written with libpq), see docs/kafka.md. */
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
    if (f->mock > 0) {
        kill(f->mock, SIGTERM);
        assert_int_equal(proc_wait(f->mock, 10000), 0);
    }
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void write_conf(fx *f, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    /* plugin_path first: the loader would otherwise prefer an installed
     * copy of the plugins over this build's. */
    fprintf(fp,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = " OBX_PLUGIN_DIR "\n"
            "[pipeline p]\nstore = sqlite\nbroker = kafka\n"
            "store.path = %s\npoll_interval = 20ms\nbatch_size = 200\n"
            "retry.backoff = 1ms..5ms\n"
            "broker.brokers = %s\n"
            "broker.kafka.message.max.bytes = 20000\n%s\n",
            f->db, f->bootstraps, extra ? extra : "");
    fclose(fp);
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

/* Every event once with its key, headers and id; per-key order. */
static void check_topic(fx *f, int n, int keys, int skip_seq)
{
    kt_msgs m = kt_consume(f->bootstraps, TOPIC, (size_t)n, 500, 60000);
    char **ids = event_ids(f, n);
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
    free_ids(ids, n);
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
    check_topic(f, n, keys, n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL"),
                     n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at "
                                "IS NOT NULL AND json_extract(payload, "
                                "'$.seq') = 3000 AND dead_reason LIKE "
                                "'%MSG_SIZE_TOO_LARGE%'"),
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
            test_check_reports_bad_property_with_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_carry_the_option_help, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
