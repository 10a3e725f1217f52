/* End to end: the real binary, the sqlite store and stdout/chaos brokers.
 * Rows are written with plain SQL, as an application would. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

typedef struct fx {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200];
    pid_t relay; /* a relay a test left running when it failed */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/outbox.db", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out.jsonl", f->dir);
    snprintf(f->err, sizeof f->err, "%s/err.log", f->dir);
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
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A config: sqlite store on f->db, `broker` with output to f->out. */
static void write_conf(fx *f, const char *broker, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fprintf(fp,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "shutdown_grace = 20s\n"
            "[pipeline p]\nstore = sqlite\nbroker = %s\n"
            "store.path = %s\nbroker.output = %s\npoll_interval = 20ms\n"
            "%s%s\n",
            broker, f->db, f->out,
            extra && strstr(extra, "retry.backoff")
                ? ""
                : "retry.backoff = 1ms..5ms\n",
            extra ? extra : "");
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
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The DDL from `outbox-relay schema sqlite`, applied with plain SQLite. */
static void create_schema(fx *f)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->dir);
    char *argv[] = {BIN, "schema", "sqlite", NULL};
    assert_int_equal(proc_run(argv, path, f->err, 10000), 0);
    char *ddl = slurp(path);
    assert_non_null(strstr(ddl, "CREATE TABLE"));
    sql(f, ddl);
    free(ddl);
}

/* n events over `keys` keys, `per_tx` per transaction, plain 4-column
 * INSERTs; payload {"seq":i}. */
static void insert_events(fx *f, int from, int n, int keys, const char *type)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    char q[512];
    for (int i = from; i < from + n; i++) {
        snprintf(q, sizeof q,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload) VALUES ('order', 'o%d', '%s', "
                 "'{\"seq\":%d}')",
                 i % keys, type, i);
        assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    }
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int run_once(fx *f)
{
    char *argv[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    return proc_run(argv, NULL, f->err, 120000);
}

/* Every line of the output: seq per line into seen[], per-key order. */
static size_t check_stream(const char *path, int n, int keys, int *seen)
{
    char *s = slurp(path);
    assert_non_null(s);
    int *last = malloc((size_t)keys * sizeof *last);
    for (int k = 0; k < keys; k++)
        last[k] = -1;
    size_t lines = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o)
            fail_msg("not JSON: %s", line);
        int seq = (int)json_integer_value(
            json_object_get(json_object_get(o, "payload"), "seq"));
        const char *key = json_string_value(json_object_get(o, "key"));
        assert_true(seq >= 0 && seq < n);
        int k = seq % keys;
        char want[32];
        snprintf(want, sizeof want, "o%d", k);
        assert_string_equal(key, want);
        if (seq <= last[k])
            fail_msg("key %s: %d after %d", key, seq, last[k]);
        last[k] = seq;
        seen[seq]++;
        lines++;
        json_decref(o);
    }
    free(last);
    free(s);
    return lines;
}

static void test_thousand_events_exactly_once_in_key_order(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 1000, 37, "OrderCreated");
    write_conf(f, "stdout", "batch_size = 64");
    char *argv[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    assert_int_equal(proc_run(argv, f->out, f->err, 60000), 0);
    int seen[1000] = {0};
    assert_int_equal(check_stream(f->out, 1000, 37, seen), 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NULL"),
                     0);
}

/* Both claim_ahead settings on the real store, through random retries:
 * every event once, in key order, nothing left unpublished. `false`
 * (one batch at a time) is pinned here: the default claims ahead on
 * sqlite, so without this no e2e run would take that path. */
static void test_claim_ahead_settings_keep_order_through_retries(void **state)
{
    fx *f = *state;
    create_schema(f);
    static const char *const settings[] = {"false", "true"};
    for (size_t r = 0; r < 2; r++) {
        sql(f, "DELETE FROM outbox");
        FILE *out = fopen(f->out, "w");
        assert_non_null(out);
        fclose(out);
        insert_events(f, 0, 3000, 37, "OrderCreated");
        char extra[256];
        snprintf(extra, sizeof extra,
                 "batch_size = 64\nclaim_ahead = %s\nretry.max_attempts = 50\n"
                 "broker.fail_percent = 20\nbroker.seed = %zu",
                 settings[r], r + 7);
        write_conf(f, "chaos", extra);
        assert_int_equal(run_once(f), 0);
        int *seen = calloc(3000, sizeof *seen);
        assert_int_equal(check_stream(f->out, 3000, 37, seen), 3000);
        for (int i = 0; i < 3000; i++)
            if (seen[i] != 1)
                fail_msg("claim_ahead = %s: event %d published %d times",
                         settings[r], i, seen[i]);
        free(seen);
        assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                    "published_at IS NULL"),
                         0);
    }
}

static void test_demo_then_once(void **state)
{
    fx *f = *state;
    write_conf(f, "stdout", NULL);
    char *demo[] = {BIN, "demo", "-c", f->conf, "-n", "20", NULL};
    assert_int_equal(proc_run(demo, NULL, f->err, 30000), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM orders"), 20);
    assert_int_equal(run_once(f), 0);
    char *s = slurp(f->out);
    assert_int_equal(count_lines(f->out), 20);
    assert_non_null(strstr(s, "\"event_type\":\"OrderCreated\""));
    assert_non_null(strstr(s, "\"topic\":\"outbox.order\""));
    free(s);
}

static void test_sigterm_under_load_loses_nothing(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 20000, 101, "Tick");
    write_conf(f, "chaos", "batch_size = 100\nbroker.delay = 5ms");
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    pid_t pid = proc_start(argv, NULL, f->err);
    sleep_ms(700);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 20000), 0);
    size_t first = count_lines(f->out);
    long long published =
        sql_int(f, "SELECT count(*) FROM outbox WHERE published_at IS NOT "
                   "NULL");
    assert_true(first > 0 && first < 20000);       /* stopped mid-stream */
    assert_int_equal((long long)first, published); /* acked == delivered */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox_claims"),
                     0); /* nothing left leased */
    assert_int_equal(run_once(f), 0);
    int *seen = calloc(20000, sizeof *seen);
    assert_int_equal(check_stream(f->out, 20000, 101, seen), 20000);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
}

static void test_two_relays_never_publish_the_same_event(void **state)
{
    fx *f = *state;
    create_schema(f);
    /* As after a first relay start: two relays racing to switch a fresh
     * file to WAL would make one wait out busy_timeout (it recovers, but
     * may then find nothing left to do, which this test checks against). */
    sql(f, "PRAGMA journal_mode=WAL");
    insert_events(f, 0, 6000, 211, "Tick");
    char out2[4300], conf2[4300];
    snprintf(out2, sizeof out2, "%s/out2.jsonl", f->dir);
    snprintf(conf2, sizeof conf2, "%s/relay2.conf", f->dir);
    /* A slow broker (2 ms a batch) keeps both relays busy at once. */
    write_conf(f, "chaos", "batch_size = 50\nbroker.delay = 2ms");
    char *c1 = slurp(f->conf);
    char *at = strstr(c1, f->out);
    FILE *fp = fopen(conf2, "w");
    fprintf(fp, "%.*s%s%s", (int)(at - c1), c1, out2, at + strlen(f->out));
    fclose(fp);
    free(c1);
    char *a1[] = {BIN, "run", "-c", f->conf, "--once", NULL};
    char *a2[] = {BIN, "run", "-c", conf2, "--once", NULL};
    pid_t p1 = proc_start(a1, NULL, NULL), p2 = proc_start(a2, NULL, NULL);
    assert_int_equal(proc_wait(p1, 60000), 0);
    assert_int_equal(proc_wait(p2, 60000), 0);
    int *seen = calloc(6000, sizeof *seen);
    size_t n1 = check_stream(f->out, 6000, 211, seen);
    size_t n2 = check_stream(out2, 6000, 211, seen);
    assert_int_equal(n1 + n2, 6000);
    for (int i = 0; i < 6000; i++)
        assert_int_equal(seen[i], 1);
    assert_true(n1 > 0 && n2 > 0); /* both did work */
    free(seen);
}

static void test_attempts_and_next_try_survive_restart(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 1, 1, "Flaky");
    write_conf(f, "chaos",
               "broker.flaky_types = Flaky\nbroker.flaky_times = 100\n"
               "retry.backoff = 1h..1h\nretry.max_attempts = 5");
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    pid_t pid = proc_start(argv, NULL, f->err);
    sleep_ms(800);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 20000), 0);
    assert_int_equal(sql_int(f, "SELECT attempts FROM outbox"), 1);
    assert_true(sql_int(f, "SELECT next_attempt_at - "
                           "CAST((julianday('now') - 2440587.5) * "
                           "86400000000 AS INTEGER) FROM outbox") >
                3000LL * 1000000);
    /* A restarted relay respects the stored retry time... */
    pid = proc_start(argv, NULL, f->err);
    sleep_ms(800);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 20000), 0);
    assert_int_equal(sql_int(f, "SELECT attempts FROM outbox"), 1);
    /* ...and continues counting from the stored attempts once it is due. */
    sql(f, "UPDATE outbox SET next_attempt_at = 0");
    pid = proc_start(argv, NULL, f->err);
    sleep_ms(800);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 20000), 0);
    assert_int_equal(sql_int(f, "SELECT attempts FROM outbox"), 2);
}

static void test_dead_letters_list_show_requeue(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 10, 3, "Tick");
    insert_events(f, 10, 1, 3, "Poison");
    write_conf(f, "chaos", "broker.permanent_types = Poison");
    assert_int_equal(run_once(f), 0);
    assert_int_equal(count_lines(f->out), 10);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE dead_at "
                                "IS NOT NULL"),
                     1);
    char list[4300];
    snprintf(list, sizeof list, "%s/list.txt", f->dir);
    char *ls[] = {BIN, "dead", "list", "-c", f->conf, NULL};
    assert_int_equal(proc_run(ls, list, f->err, 10000), 0);
    char *s = slurp(list);
    assert_non_null(strstr(s, "Poison"));
    assert_non_null(strstr(s, "permanent"));
    free(s);
    /* show by id */
    sqlite3 *db;
    sqlite3_stmt *st;
    sqlite3_open(f->db, &db);
    sqlite3_prepare_v2(db,
                       "SELECT event_id FROM outbox WHERE dead_at IS "
                       "NOT NULL",
                       -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char id[128];
    snprintf(id, sizeof id, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    char *show[] = {BIN, "dead", "show", id, "-c", f->conf, NULL};
    assert_int_equal(proc_run(show, list, f->err, 10000), 0);
    s = slurp(list);
    assert_non_null(strstr(s, id));
    assert_non_null(strstr(s, "{\"seq\":10}"));
    free(s);
    /* an id that is not a dead letter: the store's NOT_FOUND, its reason
     * on stderr, exit 1 */
    char *show_none[] = {BIN,  "dead",  "show", "no-such-id",
                         "-c", f->conf, NULL};
    assert_int_equal(proc_run(show_none, list, f->err, 10000), 1);
    s = slurp(f->err);
    assert_non_null(strstr(s, "no-such-id"));
    free(s);
    /* the same as JSON, for scripts: stable field names */
    char *lsj[] = {BIN, "dead", "list", "--json", "-c", f->conf, NULL};
    assert_int_equal(proc_run(lsj, list, f->err, 10000), 0);
    s = slurp(list);
    json_error_t je;
    json_t *doc = json_loads(s, 0, &je);
    if (!doc)
        fail_msg("dead list --json is not JSON (%s): %s", je.text, s);
    json_t *dl = json_object_get(doc, "dead_letters");
    assert_int_equal(json_array_size(dl), 1);
    json_t *d0 = json_array_get(dl, 0);
    assert_string_equal(json_string_value(json_object_get(d0, "event_id")), id);
    assert_string_equal(json_string_value(json_object_get(d0, "event_type")),
                        "Poison");
    assert_string_equal(json_string_value(json_object_get(d0, "payload")),
                        "{\"seq\":10}");
    assert_int_equal(json_integer_value(json_object_get(d0, "attempts")), 1);
    assert_non_null(
        strstr(json_string_value(json_object_get(d0, "reason")), "permanent"));
    json_decref(doc);
    free(s);
    char *stj[] = {BIN, "stats", "--json", "-c", f->conf, NULL};
    assert_int_equal(proc_run(stj, list, f->err, 10000), 0);
    s = slurp(list);
    doc = json_loads(s, 0, &je);
    if (!doc)
        fail_msg("stats --json is not JSON (%s): %s", je.text, s);
    json_t *p0 = json_array_get(json_object_get(doc, "pipelines"), 0);
    assert_string_equal(json_string_value(json_object_get(p0, "pipeline")),
                        "p");
    assert_int_equal(json_integer_value(json_object_get(p0, "pending")), 0);
    assert_int_equal(json_integer_value(json_object_get(p0, "dead")), 1);
    assert_true(json_is_null(json_object_get(p0, "lag_bytes")));
    json_decref(doc);
    free(s);
    /* the broker is fixed; requeue and the event goes out */
    write_conf(f, "chaos", NULL);
    char *rq[] = {BIN, "dead", "requeue", "--all", "-c", f->conf, NULL};
    assert_int_equal(proc_run(rq, list, f->err, 10000), 0);
    s = slurp(list);
    assert_non_null(strstr(s, "requeued 1 dead letter"));
    free(s);
    assert_int_equal(run_once(f), 0);
    s = slurp(f->out);
    assert_non_null(strstr(s, "\"event_type\":\"Poison\""));
    free(s);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NULL"),
                     0);
}

static void test_cli_errors_and_exit_codes(void **state)
{
    fx *f = *state;
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp, "[relay]\n\n[pipeline p]\nstore = sqlite\nbroker = stdout\n"
                "batch_sise = 10\n");
    fclose(fp);
    char *chk[] = {BIN, "check", "-c", f->conf, NULL};
    assert_int_equal(proc_run(chk, NULL, f->err, 10000), 2);
    char *e = slurp(f->err);
    assert_non_null(strstr(e, ":6:"));
    assert_non_null(strstr(e, "did you mean 'batch_size'"));
    free(e);
    write_conf(f, "stdout", NULL);
    assert_int_equal(proc_run(chk, f->out, f->err, 10000), 0);
    char *bad[] = {BIN, "frobnicate", NULL};
    assert_int_equal(proc_run(bad, NULL, f->err, 10000), 2);
    char *ver[] = {BIN, "--version", NULL};
    assert_int_equal(proc_run(ver, f->out, f->err, 10000), 0);
    e = slurp(f->out);
    assert_non_null(strstr(e, "plugin ABI 1."));
    free(e);
    char *help[] = {BIN, "help", "sqlite", NULL};
    assert_int_equal(proc_run(help, f->out, f->err, 10000), 0);
    e = slurp(f->out);
    assert_non_null(strstr(e, "store.path"));
    free(e);
    char *plugins[] = {BIN, "plugins", NULL};
    assert_int_equal(proc_run(plugins, f->out, f->err, 10000), 0);
    e = slurp(f->out);
    assert_non_null(strstr(e, "sqlite"));
    assert_non_null(strstr(e, "stdout"));
    assert_non_null(strstr(e, "chaos"));
    free(e);
    char *missing[] = {BIN, "run", "-c", "/nonexistent/x.conf", NULL};
    assert_int_equal(proc_run(missing, NULL, f->err, 10000), 2);
}

/* SIGQUIT and SIGPIPE, as a supervisor may send them, stop the relay the
 * clean way SIGTERM does: exit 0 and no lease left behind (the next run
 * would otherwise wait the lease out and publish its batch twice). SIGHUP
 * reloads the config instead (test_reload_under_load). */
static void test_supervisor_signals_stop_cleanly(void **state)
{
    fx *f = *state;
    create_schema(f);
    const int sigs[] = {SIGQUIT, SIGPIPE, SIGINT};
    write_conf(f, "chaos", "batch_size = 100\nbroker.delay = 5ms");
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    for (int i = 0; i < 3; i++) {
        insert_events(f, i * 5000, 5000, 7, "Tick");
        pid_t pid = proc_start(argv, NULL, f->err);
        sleep_ms(500);
        kill(pid, sigs[i]);
        int rc = proc_wait(pid, 20000);
        if (rc != 0)
            fail_msg("signal %d: exit %d", sigs[i], rc);
        /* every claim was handed back or ended by its acks */
        assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox_claims"), 0);
    }
    assert_int_equal(run_once(f), 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NULL"),
                     0);
}

/* `run --once | head -1`: the reader goes away, the relay must end (exit 1,
 * saying why) instead of waiting for a reader that never comes back, and
 * nothing unwritten is marked published. */
static void test_once_into_a_closed_pipe_ends(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 2000, 7, "Tick");
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\nmetrics_listen = off\n[pipeline p]\nstore = sqlite\n"
            "broker = stdout\nstore.path = %s\ncircuit.backoff = 50ms..100ms\n",
            f->db);
    fclose(fp);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        FILE *e = freopen(f->err, "w", stderr);
        (void)e;
        execl(BIN, BIN, "run", "--once", "-c", f->conf, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    assert_int_equal(proc_wait(pid, 20000), 1);
    char *e = slurp(f->err);
    assert_non_null(strstr(e, "Broken pipe"));
    free(e);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL"),
                     0);
}

/* check --connect with a server nobody runs is a runtime failure (1), a
 * bad key a config error (2); config errors never echo control bytes. */
static void test_check_exit_codes_and_escaping(void **state)
{
    fx *f = *state;
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp, "[relay]\nmetrics_listen = off\n[pipeline p]\nstore = pg_poll\n"
                "broker = stdout\nstore.conninfo = host=127.0.0.1 port=1 "
                "connect_timeout=2\n");
    fclose(fp);
    char *chk[] = {BIN, "check", "-c", f->conf, "--connect", NULL};
    assert_int_equal(proc_run(chk, f->out, f->err, 20000), 1);
    fp = fopen(f->conf, "w");
    fprintf(fp, "[pipeline p]\nstore = sqlite\nbroker = stdout\n"
                "bogus\x1b[2J = 1\n");
    fclose(fp);
    assert_int_equal(proc_run(chk, f->out, f->err, 20000), 2);
    char *e = slurp(f->err);
    assert_null(strchr(e, '\x1b'));
    assert_non_null(strstr(e, "bogus\\x1b[2J"));
    free(e);
}

/* metrics_listen = 127.0.0.1:0 logs the port it got; a port in use says
 * how to pick another. */
static void test_metrics_port_messages(void **state)
{
    fx *f = *state;
    create_schema(f);
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\nmetrics_listen = 127.0.0.1:0\n[pipeline p]\n"
            "store = sqlite\nbroker = stdout\nstore.path = %s\n"
            "broker.output = %s\n",
            f->db, f->out);
    fclose(fp);
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    pid_t pid = proc_start(argv, NULL, f->err);
    int port = 0;
    for (int i = 0; i < 100 && port == 0; i++) {
        sleep_ms(50);
        char *e = slurp(f->err);
        const char *at = e ? strstr(e, "http://127.0.0.1:") : NULL;
        if (at)
            port = atoi(at + strlen("http://127.0.0.1:"));
        free(e);
    }
    assert_true(port > 0);
    char *body = NULL;
    assert_int_equal(http_get(port, "/healthz", &body), 200);
    free(body);
    /* a second relay on the same port */
    char conf2[4300], err2[4300];
    snprintf(conf2, sizeof conf2, "%s/second.conf", f->dir);
    snprintf(err2, sizeof err2, "%s/second.err", f->dir);
    fp = fopen(conf2, "w");
    fprintf(fp,
            "[relay]\nmetrics_listen = 127.0.0.1:%d\n[pipeline p]\n"
            "store = sqlite\nbroker = stdout\nstore.path = %s\n"
            "broker.output = %s\n",
            port, f->db, f->out);
    fclose(fp);
    char *argv2[] = {BIN, "run", "-c", conf2, NULL};
    assert_int_equal(proc_run(argv2, NULL, err2, 20000), 1);
    char *e = slurp(err2);
    assert_non_null(strstr(e, "Address already in use"));
    assert_non_null(strstr(e, "metrics_listen = 127.0.0.1:PORT"));
    free(e);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 20000), 0);
}

/* `check` of a config with 10,000 pipelines stays small: the batch
 * buffers come with the first open, which check never does. */
static void test_check_of_many_pipelines_is_cheap(void **state)
{
    fx *f = *state;
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp, "[relay]\nmetrics_listen = off\n");
    for (int i = 0; i < 10000; i++)
        fprintf(fp,
                "[pipeline p%d]\nstore = sqlite\nbroker = stdout\n"
                "store.path = %s/x%d.db\n",
                i, f->dir, i);
    fclose(fp);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)o;
        execl(BIN, BIN, "check", "-c", f->conf, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    assert_int_equal(wait4(pid, &status, 0, &ru), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* about 80 MB; it was 1.4 GB. Sanitizer runtimes add their shadow
     * memory on top (TSan about 4x). */
#ifdef OBX_SANITIZED
    const long bound_kib = 4 * 300 * 1024;
#else
    const long bound_kib = 300 * 1024;
#endif
    if (ru.ru_maxrss > bound_kib)
        fail_msg("check of 10000 pipelines peaked at %ld KiB", ru.ru_maxrss);
}

/* README.md quotes `outbox-relay --help` from "commands:" on. */
static void test_readme_command_line_in_sync(void **state)
{
    fx *f = *state;
    char *readme = slurp(OBX_SOURCE_DIR "/README.md");
    assert_non_null(readme);
    char *argv[] = {BIN, "--help", NULL};
    assert_int_equal(proc_run(argv, f->out, f->err, 10000), 0);
    char *help = slurp(f->out);
    const char *cmds = strstr(help, "commands:\n");
    assert_non_null(cmds);
    if (!strstr(readme, cmds))
        fail_msg("README.md's command line block is not `outbox-relay "
                 "--help` from \"commands:\" on; paste it again");
    free(help);
    free(readme);
}

/* Several pipelines in one process, each on its own thread, sqlite store
 * and stdout file: all drain completely (the ThreadSanitizer build runs
 * this to look at the pipelines' shared logger and metrics). */
static void test_pipelines_run_in_parallel(void **state)
{
    fx *f = *state;
    char db[3][sizeof f->db], out[3][4300], main_db[sizeof f->db];
    memcpy(main_db, f->db, sizeof main_db);
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp, "[relay]\nmetrics_listen = 127.0.0.1:0\nlog_level = warn\n");
    for (int i = 0; i < 3; i++) {
        snprintf(db[i], sizeof db[i], "%s/p%d.db", f->dir, i);
        snprintf(out[i], sizeof out[i], "%s/p%d.jsonl", f->dir, i);
        memcpy(f->db, db[i], sizeof f->db);
        create_schema(f);
        insert_events(f, 0, 3000, 17, "Tick");
        fprintf(fp,
                "[pipeline p%d]\nstore = sqlite\nbroker = stdout\n"
                "store.path = %s\nbroker.output = %s\nbatch_size = 64\n",
                i, db[i], out[i]);
    }
    fclose(fp);
    memcpy(f->db, main_db, sizeof f->db);
    assert_int_equal(run_once(f), 0);
    for (int i = 0; i < 3; i++) {
        int *seen = calloc(3000, sizeof *seen);
        assert_int_equal(check_stream(out[i], 3000, 17, seen), 3000);
        free(seen);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_reload_conf(fx *f, const char *a_extra, bool with_c,
                              const char *db_a, const char *db_b,
                              const char *db_c, const char *out_a,
                              const char *out_b, const char *out_c)
{
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\nmetrics_listen = 127.0.0.1:0\nlog_level = info\n"
            "[pipeline a]\nstore = sqlite\nbroker = chaos\nstore.path = %s\n"
            "broker.output = %s\nbatch_size = 50\nbroker.delay = 10ms\n%s\n"
            "[pipeline b]\nstore = sqlite\nbroker = chaos\nstore.path = %s\n"
            "broker.output = %s\nbatch_size = 50\nbroker.delay = 10ms\n",
            db_a, out_a, a_extra, db_b, out_b);
    if (with_c)
        fprintf(fp,
                "[pipeline c]\nstore = sqlite\nbroker = stdout\n"
                "store.path = %s\nbroker.output = %s\n",
                db_c, out_c);
    fclose(fp);
}

/* SIGHUP under load: an invalid file changes nothing (error logged with
 * file:line); a valid one restarts only the pipeline whose keys changed
 * (a), leaves b running without a pause, starts c; nothing is lost, and
 * nothing is published twice beyond a's in-flight batch. */
static void test_reload_under_load(void **state)
{
    fx *f = *state;
    char db[3][sizeof f->db], out[3][4300];
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        snprintf(db[i], sizeof db[i], "%s/%s.db", f->dir, names[i]);
        snprintf(out[i], sizeof out[i], "%s/%s.jsonl", f->dir, names[i]);
        memcpy(f->db, db[i], sizeof f->db);
        create_schema(f);
        insert_events(f, 0, 8000, 13, "Tick");
    }
    write_reload_conf(f, "", false, db[0], db[1], db[2], out[0], out[1],
                      out[2]);
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    pid_t pid = f->relay = proc_start(argv, NULL, f->err);
    sleep_ms(600);
    /* an invalid file: logged, counted, nothing stops */
    FILE *fp = fopen(f->conf, "a");
    fprintf(fp, "batch_sise = 3\n");
    fclose(fp);
    kill(pid, SIGHUP);
    /* (a sanitizer build answers slowly: wait for the line, not a while) */
    for (int i = 0; i < 100 && count_in_file(f->err, "reload: ") == 0; i++)
        sleep_ms(100);
    assert_int_equal(count_in_file(f->err, "reload: "), 1);
    char *first = slurp(f->err);
    /* the appended line is the file's 19th, in [pipeline b] */
    if (!strstr(first, "relay.conf:19: [pipeline b] unknown key "
                       "'batch_sise'"))
        fail_msg("no file:line error for the bad reload:\n%s", first);
    free(first);
    assert_int_equal(count_in_file(f->err, "] stopped"), 0);
    size_t b_before = count_lines(out[1]);
    /* a valid one: a changes, b does not, c is new */
    write_reload_conf(f, "retry.max_attempts = 7", true, db[0], db[1], db[2],
                      out[0], out[1], out[2]);
    kill(pid, SIGHUP);
    const char *done = "reload: 1 pipeline unchanged, 1 restarted with new "
                       "settings, 1 added, 0 removed";
    for (int i = 0; i < 100 && count_in_file(f->err, done) == 0; i++)
        sleep_ms(100);
    if (count_in_file(f->err, done) != 1) {
        char *log = slurp(f->err);
        fail_msg("no '%s' in:\n%s", done, log);
    }
    sleep_ms(200);
    size_t b_after = count_lines(out[1]);
    assert_true(b_after > b_before); /* b kept publishing */
    /* everything drains; b was never stopped, a exactly once */
    int64_t end = mono_ms() + 60000;
    while (mono_ms() < end &&
           (count_lines(out[0]) < 8000 || count_lines(out[1]) < 8000 ||
            count_lines(out[2]) < 8000))
        sleep_ms(100);
    kill(pid, SIGTERM);
    assert_int_equal(proc_wait(pid, 30000), 0);
    f->relay = 0;
    assert_int_equal(count_in_file(f->err, "[b] stopped"), 1); /* at SIGTERM */
    assert_int_equal(count_in_file(f->err, "[a] stopped"), 2);
    for (int i = 0; i < 3; i++) {
        int *seen = calloc(8000, sizeof *seen);
        size_t lines = check_stream(out[i], 8000, 13, seen);
        for (int k = 0; k < 8000; k++)
            assert_true(seen[k] >= 1);
        /* a restart settles its batch first: no second copy at all */
        assert_int_equal(lines, 8000);
        free(seen);
    }
}

/* The `CREATE TABLE` of `outbox-relay schema STORE`, without quotes. */
static char *table_ddl(fx *f, const char *store)
{
    char *argv[] = {BIN, "schema", (char *)store, NULL};
    assert_int_equal(proc_run(argv, f->out, f->err, 10000), 0);
    char *ddl = slurp(f->out);
    char *start = strstr(ddl, "CREATE TABLE");
    assert_non_null(start);
    char *end = strstr(start, "\n)");
    assert_non_null(end);
    size_t n = 0;
    for (char *p = start; p < end; p++)
        if (*p != '"')
            start[n++] = *p;
    start[n] = '\0';
    char *table = strdup(start);
    free(ddl);
    return table;
}

/* pg_poll and pg_wal each carry the outbox DDL (their templates expand
 * names differently); applications move between them, so the tables must
 * stay the same. */
static void test_pg_stores_create_the_same_table(void **state)
{
    fx *f = *state;
    char *poll = table_ddl(f, "pg_poll");
    char *wal = table_ddl(f, "pg_wal");
    assert_string_equal(poll, wal);
    free(poll);
    free(wal);
}

/* docs/configuration.md carries the help text of the core's tables. */
static void test_configuration_doc_in_sync(void **state)
{
    fx *f = *state;
    char *doc = slurp(OBX_SOURCE_DIR "/docs/configuration.md");
    assert_non_null(doc);
    const char *what[] = {"relay", "pipeline"};
    for (int i = 0; i < 2; i++) {
        char *argv[] = {BIN, "help", (char *)what[i], NULL};
        assert_int_equal(proc_run(argv, f->out, f->err, 10000), 0);
        char *help = slurp(f->out);
        if (!strstr(doc, help))
            fail_msg("docs/configuration.md is out of date for 'help %s'; "
                     "regenerate it from outbox-relay help",
                     what[i]);
        free(help);
    }
    free(doc);
}

/* SIGTERM while a publish outlasts shutdown_grace: the relay says so and
 * exits 1 when the grace ends, not when the publish does (it used to join
 * the publisher thread still in publish, then free the pipelines under
 * the pipeline thread); nothing is acked, and once the leases expire
 * every event goes out once, in key order. */
static void test_shutdown_grace_expiry_exits_at_once(void **state)
{
    fx *f = *state;
    create_schema(f);
    insert_events(f, 0, 40, 4, "Tick");
    write_conf(f, "chaos",
               "batch_size = 10\nbroker.delay = 8s\n"
               "store.lease = 1s\n");
    char *conf = slurp(f->conf);
    const char *grace = "shutdown_grace = 20s";
    char *at = strstr(conf, grace);
    assert_non_null(at);
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp, "%.*sshutdown_grace = 300ms%s", (int)(at - conf), conf,
            at + strlen(grace));
    fclose(fp);
    free(conf);
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    f->relay = proc_start(argv, NULL, f->err);
    sleep_ms(600); /* the first batch of 10 is out, for 8 s */
    int64_t t0 = mono_ms();
    kill(f->relay, SIGTERM);
    int rc = proc_wait(f->relay, 20000);
    int64_t took = mono_ms() - t0;
    f->relay = 0;
    assert_int_equal(rc, 1);
    if (took > 4000)
        fail_msg("exited %lld ms after SIGTERM; the grace is 300 ms",
                 (long long)took);
    assert_int_equal(count_in_file(f->err, "shutdown grace expired"), 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL"),
                     0);
    sleep_ms(1200); /* past the leases */
    write_conf(f, "chaos", "batch_size = 10\n");
    assert_int_equal(run_once(f), 0);
    int seen[40] = {0};
    assert_int_equal(check_stream(f->out, 40, 4, seen), 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(seen[i], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_thousand_events_exactly_once_in_key_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_claim_ahead_settings_keep_order_through_retries, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_demo_then_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_shutdown_grace_expiry_exits_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_under_load_loses_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_two_relays_never_publish_the_same_event, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_attempts_and_next_try_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_list_show_requeue,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_errors_and_exit_codes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_supervisor_signals_stop_cleanly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_once_into_a_closed_pipe_ends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_exit_codes_and_escaping,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_port_messages, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_of_many_pipelines_is_cheap,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_configuration_doc_in_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readme_command_line_in_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pipelines_run_in_parallel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_under_load, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pg_stores_create_the_same_table,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
