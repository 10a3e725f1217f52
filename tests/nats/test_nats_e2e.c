/* End to end: the real outbox-relay binary, the sqlite and pg_wal stores
 * and the nats broker, against real nats-servers: the fixture's (tests/nats
 * nats_start.sh) or, for tests that kill, restart or lock one, a server of
 * the test's own. Rows are written with plain SQL as an application would;
 * a cnats JetStream consumer reads the stream back.
 *
 * pg_wal runs against the private PostgreSQL of the ctest fixture `pg`
 * (tests/pg), in a schema, slot and publication of its own; without that
 * server the test fails, it never skips. */
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

#include "nats_testlib.h"
#include "pgw_testlib.h"
#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

typedef struct fx {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200], own[4200];
    char url[512];
    char stream[32], prefix[32];
    bool own_server;
    wt *t;       /* pg_wal tests */
    pid_t relay; /* a relay in run mode, 0 when none */
    int port;    /* metrics_listen, 0: off */
} fx;

static int counter;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/outbox.db", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out.log", f->dir);
    snprintf(f->err, sizeof f->err, "%s/err.log", f->dir);
    snprintf(f->own, sizeof f->own, "%s/nats", f->dir);
    int n = ++counter;
    snprintf(f->stream, sizeof f->stream, "E2E%d_%d", n, (int)getpid());
    snprintf(f->prefix, sizeof f->prefix, "e2e%d_%d", n, (int)getpid());
    snprintf(f->url, sizeof f->url, "%s", nt_fixture_url());
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
        wt_free(f->t);
    if (f->own_server)
        nt_server_stop(f->own);
    else
        nt_stream_delete(f->url, f->stream);
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void own_server(fx *f, const char *extra)
{
    f->own_server = true;
    snprintf(f->url, sizeof f->url, "%s", nt_server_start(f->own, extra));
}

/* `store` is the pipeline's store lines; `broker` extra broker lines. */
static void write_conf_for(fx *f, const char *store, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    char metrics[64] = "off";
    if (f->port)
        snprintf(metrics, sizeof metrics, "127.0.0.1:%d", f->port);
    /* plugin_path first: the loader would otherwise prefer an installed
     * copy of the plugins over this build's. */
    fprintf(fp,
            "[relay]\nlog_level = info\nmetrics_listen = %s\n"
            "plugin_path = " OBX_PLUGIN_DIR "\n"
            "[pipeline p]\n%sbroker = nats\n"
            "topic = %s.${aggregate_type}\n"
            "poll_interval = 20ms\n%s"
            "broker.servers = %s\n"
            "broker.stream = %s\nbroker.subjects = %s.>\n%s%s\n",
            metrics, store, f->prefix,
            extra && strstr(extra, "batch_size") ? "" : "batch_size = 500\n",
            f->url, f->stream, f->prefix,
            extra && strstr(extra, "create_stream")
                ? ""
                : "broker.create_stream = true\n",
            extra ? extra : "retry.backoff = 10ms..200ms");
    fclose(fp);
}

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
    sqlite3_busy_timeout(db, 10000);
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
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
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
                           "FROM outbox WHERE length(payload) < 1000",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int seq = sqlite3_column_int(st, 0);
        if (seq >= 0 && seq < n)
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

static void fail_with_relay_log(fx *f, const char *what)
{
    char *log = slurp(f->err);
    if (log) /* cmocka's print_error() cuts long text */
        fprintf(stderr, "--- relay log:\n%s\n", log);
    free(log);
    fail_msg("%s", what);
}

/* Every seq in [0, n) once in the stream, on subject <prefix>.order, with
 * the headers (ids: seq -> event id, or NULL to check only that
 * Nats-Msg-Id and outbox-event-id agree and are unique); per-key order. */
static void check_stream(fx *f, char **ids, int n, int keys)
{
    nt_msgs m = nt_read_stream(f->url, f->stream, 5000);
    int *seen = calloc((size_t)n, sizeof *seen);
    char subject[64];
    snprintf(subject, sizeof subject, "%s.order", f->prefix);
    for (size_t i = 0; i < m.n; i++) {
        const nt_msg *x = &m.items[i];
        long seq = nt_seq(x);
        if (seq < 0 || seq >= n)
            fail_msg("unexpected message: %s", x->data);
        seen[seq]++;
        assert_string_equal(x->subject, subject);
        char want[32];
        snprintf(want, sizeof want, "o%ld", seq % keys);
        assert_string_equal(x->agg_id, want);
        assert_non_null(x->msg_id);
        assert_string_equal(x->event_id, x->msg_id);
        if (ids)
            assert_string_equal(x->msg_id, ids[seq]);
        assert_string_equal(x->event_type, "OrderCreated");
        assert_string_equal(x->agg_type, "order");
        snprintf(want, sizeof want, "t-%ld", seq);
        assert_string_equal(x->trace, want);
    }
    for (int s = 0; s < n; s++)
        if (seen[s] != 1)
            fail_msg("seq %d in the stream %d times", s, seen[s]);
    assert_int_equal(m.n, (size_t)n);
    assert_int_equal(nt_assert_key_order(&m), (size_t)keys);
    free(seen);
    nt_msgs_free(&m);
}

static void wait_published(fx *f, int n, int timeout_ms)
{
    int64_t end = nt_now_ms() + timeout_ms;
    while (sql_int(f, "SELECT count(*) FROM outbox WHERE published_at IS "
                      "NOT NULL") < n) {
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "events still pending");
        sleep_ms(50);
    }
}

static void start_relay(fx *f)
{
    char *run[] = {BIN, "run", "-c", f->conf, NULL};
    f->relay = proc_start(run, NULL, f->err);
}

static void stop_relay(fx *f)
{
    kill(f->relay, SIGTERM);
    int rc = proc_wait(f->relay, 30000);
    f->relay = 0;
    if (rc != 0)
        fail_with_relay_log(f, "the relay did not exit cleanly");
}

/* ---- tests -------------------------------------------------------------- */

/* 10,000 events over 100 keys, an oversize one and one to a subject no
 * stream captures among them: the good ones in the stream once each with
 * their headers, in per-key order; the two others dead with a reason. */
static void test_sqlite_to_nats_once_in_order_bad_ones_dead(void **state)
{
    fx *f = *state;
    const int n = 10000, keys = 100;
    create_schema(f);
    insert_events(f, 0, n / 2, keys);
    /* Over nats-server's default max_payload (1 MiB), key o5. */
    sql(f, "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
           "payload) VALUES ('order', 'o5', 'OrderCreated', "
           "'{\"seq\":-1,\"big\":\"' || hex(zeroblob(600000)) || '\"}')");
    sql(f, "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
           "payload, topic) VALUES ('order', 'o6', 'OrderCreated', "
           "'{\"seq\":-2}', 'nowhere.captured')");
    insert_events(f, n / 2, n - n / 2, keys);
    write_conf(f, NULL);
    char *check[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    if (proc_run(check, f->out, f->err, 30000) != 0)
        fail_with_relay_log(f, "check --connect failed");
    char *run[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    if (proc_run(run, NULL, f->err, 120000) != 0)
        fail_with_relay_log(f, "relay --once failed");
    char **ids = event_ids(f, n);
    check_stream(f, ids, n, keys);
    free_ids(ids, n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL"),
                     n);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at "
                                "IS NOT NULL AND length(payload) > 100000 AND "
                                "dead_reason LIKE '%max_payload%'"),
                     1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at "
                                "IS NOT NULL AND topic = 'nowhere.captured' "
                                "AND dead_reason LIKE "
                                "'%no stream captures subject "
                                "nowhere.captured%'"),
                     1);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL"), 2);
}

/* pg_wal: 10,000 events over 100 keys in 20 transactions while the relay
 * streams the slot. */
static void test_pg_wal_to_nats_once_in_order(void **state)
{
    fx *f = *state;
    const int n = 10000, keys = 100;
    f->t = wt_new(); /* fails, never skips, without the pg fixture */
    char store[4400];
    snprintf(store, sizeof store,
             "store = pg_wal\nstore.conninfo = %s\nstore.schema = %s\n"
             "store.slot = %s\nstore.publication = %s\n",
             f->t->conninfo, f->t->name, f->t->name, f->t->name);
    write_conf_for(f, store, NULL);
    start_relay(f);
    int64_t end = nt_now_ms() + 20000;
    for (;;) {
        char *log = slurp(f->err);
        bool up = log && strstr(log, "streaming slot");
        free(log);
        if (up)
            break;
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "the relay does not stream");
        sleep_ms(20);
    }
    for (int tx = 0; tx < 20; tx++)
        wt_exec(f->t,
                "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload, headers) SELECT 'order', 'o' || (i %% "
                "%d), 'OrderCreated', convert_to('{\"seq\":' || i || '}', "
                "'UTF8'), jsonb_build_object('trace-id', 't-' || i) FROM "
                "generate_series(%d, %d) AS i ORDER BY i",
                keys, tx * (n / 20), (tx + 1) * (n / 20) - 1);
    end = nt_now_ms() + 60000;
    while (nt_stream_count(f->url, f->stream) < n) {
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "not every event reached the stream");
        sleep_ms(100);
    }
    stop_relay(f);
    check_stream(f, NULL, n, keys);
    assert_int_equal(wt_int(f->t, -1,
                            "SELECT count(*) FROM outbox WHERE dead_at IS "
                            "NOT NULL"),
                     0);
}

/* nats-server SIGKILLed mid-run and restarted on its store directory and
 * port: every event in the stream once (Nats-Msg-Id drops the republished
 * ones), none dead, and the relay recovers by itself. */
static void test_server_killed_mid_run_nothing_lost(void **state)
{
    fx *f = *state;
    const int n = 8000, keys = 50;
    own_server(f, NULL);
    create_schema(f);
    for (int i = 0; i < n; i += 1000)
        insert_events(f, i, 1000, keys);
    /* Backoff up to 1s: the circuit probes often enough for the test;
     * batches small enough that the kill lands mid-run. */
    write_conf(f, "retry.backoff = 10ms..1s\nbatch_size = 100\n"
                  "broker.max_in_flight = 50");
    start_relay(f);
    int64_t end = nt_now_ms() + 30000;
    while (sql_int(f, "SELECT count(*) FROM outbox WHERE published_at IS NOT "
                      "NULL") < 1000) {
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "nothing published");
        sleep_ms(5);
    }
    nt_server_kill(f->own);
    long long at_kill = sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                   "published_at IS NOT NULL");
    sleep_ms(1500);
    assert_true(at_kill < n); /* the kill did land mid-run */
    nt_server_restart(f->own);
    wait_published(f, n, 60000);
    stop_relay(f);
    char **ids = event_ids(f, n);
    check_stream(f, ids, n, keys);
    free_ids(ids, n);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL"), 0);
    char *log = slurp(f->err);
    assert_non_null(strstr(log, "nats: disconnected"));
    free(log);
}

/* The relay SIGKILLed mid-run (events published but not yet acked in the
 * store are published again by the next relay): the stream still holds
 * each event once, Nats-Msg-Id dropped the second copies. */
static void test_relay_killed_mid_run_stream_has_one_copy(void **state)
{
    fx *f = *state;
    const int n = 8000, keys = 50;
    create_schema(f);
    for (int i = 0; i < n; i += 1000)
        insert_events(f, i, 1000, keys);
    /* A short lease: what the killed relay had claimed is free again
     * within a second. */
    write_conf(f, "batch_size = 200\nretry.backoff = 10ms..200ms\n"
                  "store.lease = 1s");
    for (int round = 0; round < 3; round++) {
        start_relay(f);
        int64_t end = nt_now_ms() + 30000;
        long long want = 1000LL * (round + 1);
        while (sql_int(f, "SELECT count(*) FROM outbox WHERE published_at "
                          "IS NOT NULL") < want) {
            if (nt_now_ms() > end)
                fail_with_relay_log(f, "nothing published");
            sleep_ms(2);
        }
        kill(f->relay, SIGKILL);
        proc_wait(f->relay, 5000);
        f->relay = 0;
    }
    assert_true(sql_int(f, "SELECT count(*) FROM outbox WHERE published_at "
                           "IS NOT NULL") < n);
    start_relay(f);
    wait_published(f, n, 60000);
    stop_relay(f);
    char **ids = event_ids(f, n);
    check_stream(f, ids, n, keys);
    free_ids(ids, n);
}

/* No server when the relay starts: it runs, /readyz says not ready, and
 * everything is delivered once the server is up, on a connection named
 * outbox-relay/<pipeline>. */
static void test_server_down_at_start_then_delivers(void **state)
{
    fx *f = *state;
    int monitor = free_port();
    char extra[64];
    snprintf(extra, sizeof extra, "-m %d", monitor);
    own_server(f, extra);
    nt_server_kill(f->own);
    f->port = free_port();
    create_schema(f);
    insert_events(f, 0, 500, 10);
    write_conf(f, "retry.backoff = 10ms..500ms");
    start_relay(f);
    char *body = NULL;
    int64_t end = nt_now_ms() + 10000;
    int code;
    while ((code = http_get(f->port, "/readyz", &body)) != 503) {
        free(body);
        body = NULL;
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "/readyz never said 503");
        sleep_ms(50);
    }
    free(body);
    sleep_ms(500);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL OR dead_at IS NOT "
                                "NULL OR attempts > 0"),
                     0);
    nt_server_restart(f->own);
    wait_published(f, 500, 30000);
    end = nt_now_ms() + 10000;
    while ((code = http_get(f->port, "/readyz", &body)) != 200) {
        free(body);
        body = NULL;
        if (nt_now_ms() > end)
            fail_with_relay_log(f, "/readyz never said 200");
        sleep_ms(50);
    }
    free(body);
    /* The server knows the connection by the pipeline's name. */
    assert_int_equal(http_get(monitor, "/connz", &body), 200);
    if (!strstr(body, "\"outbox-relay/p\""))
        fail_msg("no connection named outbox-relay/p: %s", body);
    free(body);
    stop_relay(f);
    char **ids = event_ids(f, 500);
    check_stream(f, ids, 500, 10);
    free_ids(ids, 500);
}

static bool file_has(const char *path, const char *needle)
{
    char *s = slurp(path);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

/* The password: in no log line (debug level, wrong and right password,
 * in broker.password and in a URL) and in no `check` output. */
static void test_secrets_never_logged_or_shown(void **state)
{
    fx *f = *state;
    own_server(f, "--user relay --pass Pw0rdS3cr3t");
    char url[512];
    snprintf(url, sizeof url, "%s", f->url);
    create_schema(f);
    insert_events(f, 0, 50, 5);
    /* A wrong password: check fails, the relay waits. */
    write_conf(f, "broker.user = relay\nbroker.password = xPw0rdS3cr3tx\n"
                  "retry.backoff = 10ms..200ms");
    char *check[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    assert_int_not_equal(proc_run(check, f->out, f->err, 30000), 0);
    if (file_has(f->out, "Pw0rdS3cr3t"))
        fail_msg("check printed the secret: %s", slurp(f->out));
    assert_false(file_has(f->err, "Pw0rdS3cr3t"));
    assert_true(file_has(f->err, "nats:"));
    char *log_lvl = "sed -i 's/log_level = info/log_level = debug/' ";
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "%s'%s'", log_lvl, f->conf);
    assert_int_equal(system(cmd), 0);
    start_relay(f);
    sleep_ms(1500);
    stop_relay(f);
    assert_false(file_has(f->err, "Pw0rdS3cr3t"));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL OR dead_at IS NOT "
                                "NULL OR attempts > 0"),
                     0);
    /* The right one, given in the URL: delivered; still never shown. */
    snprintf(f->url, sizeof f->url, "nats://relay:Pw0rdS3cr3t@%.400s",
             url + strlen("nats://"));
    write_conf(f, NULL);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(proc_run(check, f->out, f->err, 30000), 0);
    assert_false(file_has(f->out, "Pw0rdS3cr3t"));
    assert_false(file_has(f->err, "Pw0rdS3cr3t"));
    char *run[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    if (proc_run(run, NULL, f->err, 60000) != 0)
        fail_with_relay_log(f, "relay --once failed");
    assert_false(file_has(f->err, "Pw0rdS3cr3t"));
    assert_true(file_has(f->err, "relay:***@"));
    char **ids = event_ids(f, 50); /* read back with the credentials */
    check_stream(f, ids, 50, 5);
    free_ids(ids, 50);
}

/* `check`: core mode is not at-least-once and says so; a missing stream
 * is named; a duplicate window shorter than retry.backoff is warned
 * about. */
static void test_check_warns_and_names_problems(void **state)
{
    fx *f = *state;
    create_schema(f);
    char *check[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    write_conf(f, "broker.mode = core\nretry.backoff = 10ms..200ms");
    assert_int_equal(proc_run(check, f->out, f->err, 30000), 0);
    assert_true(file_has(f->err, "NOT at-least-once"));
    write_conf(f, "broker.create_stream = false\n"
                  "retry.backoff = 10ms..200ms");
    assert_int_not_equal(proc_run(check, f->out, f->err, 30000), 0);
    if (!file_has(f->err, "does not exist") &&
        !file_has(f->out, "does not exist"))
        fail_with_relay_log(f, "check did not name the missing stream");
    write_conf(f, "broker.duplicate_window = 1m\nretry.backoff = 1s..10m");
    assert_int_equal(proc_run(check, f->out, f->err, 30000), 0);
    if (!file_has(f->err, "keeps message ids for 1m") ||
        !file_has(f->err, "wait up to 10m"))
        fail_with_relay_log(f, "no duplicate-window warning");
    /* The relay warns at start too. */
    char *run[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    assert_int_equal(proc_run(run, NULL, f->err, 30000), 0);
    assert_true(file_has(f->err, "keeps message ids for 1m"));
}

/* docs/nats.md carries `outbox-relay help nats` (from its "keys" line). */
static void test_docs_carry_the_option_help(void **state)
{
    fx *f = *state;
    write_conf(f, NULL);
    char *help[] = {BIN, "help", "-c", f->conf, "nats", NULL};
    assert_int_equal(proc_run(help, f->out, f->err, 30000), 0);
    char *text = slurp(f->out);
    char *doc = slurp(OBX_SOURCE_DIR "/docs/nats.md");
    assert_non_null(text);
    assert_non_null(doc);
    char *keys = strstr(text, "keys, set as");
    assert_non_null(keys);
    if (!strstr(doc, keys))
        fail_msg("docs/nats.md is out of date: paste the output of "
                 "`outbox-relay help nats` from its \"keys\" line");
    free(text);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sqlite_to_nats_once_in_order_bad_ones_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_wal_to_nats_once_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_killed_mid_run_nothing_lost,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_relay_killed_mid_run_stream_has_one_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_down_at_start_then_delivers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_never_logged_or_shown,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_warns_and_names_problems,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_carry_the_option_help, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
