/* See rmq_relay.h. */
#include "rmq_relay.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "proc.h"
#include "support.h"

rmqr *rmqr_new(const char *url, const char *queue)
{
    rmqr *r = calloc(1, sizeof *r);
    r->dir = obx_test_tmpdir();
    snprintf(r->db, sizeof r->db, "%s/outbox.db", r->dir);
    snprintf(r->conf, sizeof r->conf, "%s/relay.conf", r->dir);
    snprintf(r->out, sizeof r->out, "%s/out.log", r->dir);
    snprintf(r->err, sizeof r->err, "%s/err.log", r->dir);
    snprintf(r->url, sizeof r->url, "%s", url);
    snprintf(r->queue, sizeof r->queue, "%s", queue);
    r->port = free_port();
    rmqt_queue(url, queue);
    return r;
}

void rmqr_free(rmqr *r)
{
    if (r->relay > 0) {
        kill(r->relay, SIGKILL);
        proc_wait(r->relay, 5000);
    }
    obx_test_rmtree(r->dir);
    free(r->dir);
    free(r);
}

void rmqr_write_conf_for(rmqr *r, const char *store, const char *extra)
{
    FILE *fp = fopen(r->conf, "w");
    assert_non_null(fp);
    bool topic = extra && strstr(extra, "topic =");
    /* plugin_path first: the loader would otherwise prefer an installed
     * copy of the plugins over this build's. */
    fprintf(fp,
            "[relay]\nlog_level = %s\nmetrics_listen = 127.0.0.1:%d\n"
            "plugin_path = " OBX_PLUGIN_DIR "\n"
            "[pipeline p]\n%sbroker = rabbitmq\n"
            "poll_interval = 20ms\nbatch_size = 500\n"
            "retry.backoff = 1ms..5ms\ncircuit.backoff = 100ms..1s\n"
            "publish_timeout = 10s\n"
            "broker.url = %s\nbroker.channels = 2\n%s%s%s\n",
            r->log_level ? r->log_level : "info", r->port, store, r->url,
            topic ? "" : "topic = ", topic ? "" : r->queue, topic ? "" : "\n");
    if (extra)
        fprintf(fp, "%s\n", extra);
    fclose(fp);
}

void rmqr_write_conf(rmqr *r, const char *extra)
{
    char store[4400];
    snprintf(store, sizeof store, "store = sqlite\nstore.path = %s\n", r->db);
    rmqr_write_conf_for(r, store, extra);
}

void rmqr_sql(rmqr *r, const char *q)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(r->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s: %s", q, err);
    sqlite3_close(db);
}

long long rmqr_sql_int(rmqr *r, const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(r->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("sql: %s: %s", q, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

char *rmqr_sql_text(rmqr *r, const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(r->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("sql: %s: %s", q, sqlite3_errmsg(db));
    char *v = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

void rmqr_assert_no_attempts(rmqr *r)
{
    char *err = rmqr_sql_text(r, "SELECT attempts || ': ' || "
                                 "coalesce(last_error, '') FROM outbox "
                                 "WHERE attempts > 0 LIMIT 1");
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "an attempt was counted: %s", err);
        free(err);
        rmqr_fail_with_log(r, msg);
    }
}

void rmqr_create_schema(rmqr *r)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", r->dir);
    char *argv[] = {RMQR_BIN, "schema", "sqlite", NULL};
    assert_int_equal(proc_run(argv, path, r->err, 10000), 0);
    char *ddl = slurp(path);
    rmqr_sql(r, ddl);
    free(ddl);
}

void rmqr_insert(rmqr *r, int from, int n, int keys)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(r->db, &db), SQLITE_OK);
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

char **rmqr_event_ids(rmqr *r, int n)
{
    char **ids = calloc((size_t)n + 1, sizeof *ids);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(r->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT json_extract(payload, "
                                        "'$.seq'), event_id FROM outbox",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int seq = sqlite3_column_int(st, 0);
        if (seq >= 0 && seq <= n && !ids[seq])
            ids[seq] = strdup((const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ids;
}

void rmqr_free_ids(char **ids, int n)
{
    for (int i = 0; i <= n; i++)
        free(ids[i]);
    free(ids);
}

void rmqr_check_queue(rmqr *r, const char *queue, char **ids, int n, int keys,
                      int skip_seq)
{
    size_t want = (size_t)n - (skip_seq >= 0 && skip_seq < n ? 1 : 0);
    rmqt_msgs m = rmqt_consume(r->url, queue, want, 500, 60000);
    int *seen = calloc((size_t)n + 1, sizeof *seen);
    for (size_t i = 0; i < m.n; i++) {
        const rmqt_msg *x = &m.items[i];
        long seq = rmqt_seq(x);
        if (seq < 0 || seq >= n || seq == skip_seq)
            fail_msg("unexpected message seq %ld", seq);
        seen[seq]++;
        assert_non_null(x->message_id);
        assert_string_equal(x->message_id, ids[seq]);
        assert_string_equal(rmqt_header_value(x, "outbox-event-id"), ids[seq]);
        assert_string_equal(x->type, "OrderCreated");
        assert_string_equal(x->app_id, "outbox-relay");
        assert_string_equal(x->content_type, "application/json");
        assert_int_equal(x->delivery_mode, 2);
        assert_true(x->timestamp > 1600000000u);
        assert_string_equal(rmqt_header_value(x, "outbox-event-type"),
                            "OrderCreated");
        assert_string_equal(rmqt_header_value(x, "outbox-aggregate-type"),
                            "order");
        char want_s[32];
        snprintf(want_s, sizeof want_s, "o%ld", seq % keys);
        assert_string_equal(rmqt_header_value(x, "outbox-aggregate-id"),
                            want_s);
        snprintf(want_s, sizeof want_s, "t-%ld", seq);
        assert_string_equal(rmqt_header_value(x, "trace-id"), want_s);
    }
    for (int s = 0; s < n; s++)
        if (s != skip_seq && seen[s] != 1)
            fail_msg("seq %d read %d times", s, seen[s]);
    assert_int_equal(m.n, want);
    assert_int_equal(rmqt_assert_key_order(&m), (size_t)keys);
    free(seen);
    rmqt_msgs_free(&m);
}

void rmqr_fail_with_log(rmqr *r, const char *what)
{
    char *log = slurp(r->err);
    if (log) /* cmocka's print_error() cuts long text */
        fprintf(stderr, "--- relay log:\n%s\n", log);
    free(log);
    fail_msg("%s", what);
}

void rmqr_start(rmqr *r)
{
    char *run[] = {RMQR_BIN, "run", "-c", r->conf, NULL};
    r->relay = proc_start(run, NULL, r->err);
    /* Until the pipeline runs: the store opens its database first, and
     * the tests' own polling of it must not race that. */
    int64_t end = rmqt_now_ms() + 20000;
    while (!rmqr_file_has(r->err, "running: store")) {
        rmqr_assert_running(r);
        if (rmqt_now_ms() > end)
            rmqr_fail_with_log(r, "the relay did not start its pipeline");
        sleep_ms(20);
    }
}

void rmqr_stop(rmqr *r)
{
    kill(r->relay, SIGTERM);
    int rc = proc_wait(r->relay, 30000);
    r->relay = 0;
    if (rc != 0)
        rmqr_fail_with_log(r, "the relay did not exit cleanly");
}

int rmqr_exited(pid_t pid)
{
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == 0)
        return -1;
    if (w < 0)
        return 255;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void rmqr_assert_running(rmqr *r)
{
    if (r->relay > 0 && rmqr_exited(r->relay) >= 0) {
        r->relay = 0;
        rmqr_fail_with_log(r, "the relay exited");
    }
}

void rmqr_wait_settled(rmqr *r, int timeout_ms)
{
    int64_t end = rmqt_now_ms() + timeout_ms;
    while (rmqr_assert_running(r),
           rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE published_at "
                           "IS NULL AND dead_at IS NULL") != 0) {
        if (rmqt_now_ms() > end)
            rmqr_fail_with_log(r, "events still pending");
        sleep_ms(50);
    }
}

void rmqr_wait_readyz(rmqr *r, const char *want, int timeout_ms)
{
    int64_t end = rmqt_now_ms() + timeout_ms;
    char *body = NULL;
    int code = 0;
    while (rmqt_now_ms() < end) {
        free(body);
        body = NULL;
        code = http_get(r->port, "/readyz", &body);
        if (code == 503 && body && strstr(body, want)) {
            free(body);
            return;
        }
        sleep_ms(50);
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "/readyz never said '%s' (last: %d %s)", want,
             code, body ? body : "");
    free(body);
    rmqr_fail_with_log(r, msg);
}

bool rmqr_file_has(const char *path, const char *s)
{
    char *t = slurp(path);
    bool has = t && strstr(t, s);
    free(t);
    return has;
}
