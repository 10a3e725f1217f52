/* Reload (SIGHUP) under operator mistakes the config parser cannot see,
 * and what the operator commands show: a bad reload must leave the relay
 * running its previous config, with the reason logged (file:line) and
 * counted; dead letters are printed without driving the terminal. */
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

typedef struct fx {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200], cli[4200];
    const char *pipe; /* the pipeline's name; NULL: "p" */
    int port;
    pid_t pid;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/outbox.db", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out.jsonl", f->dir);
    snprintf(f->err, sizeof f->err, "%s/err.log", f->dir);
    snprintf(f->cli, sizeof f->cli, "%s/cli.out", f->dir);
    f->port = free_port();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        proc_wait(f->pid, 5000);
    }
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* The config with `extra` as the pipeline's last lines (line 11 on),
 * metrics on `port`. */
static void write_conf(fx *f, int port, const char *path, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\n"                       /* 1 */
            "log_level = info\n"              /* 2 */
            "metrics_listen = 127.0.0.1:%d\n" /* 3 */
            "[pipeline %s]\n"                 /* 4 */
            "store = sqlite\n"                /* 5 */
            "broker = chaos\n"                /* 6 */
            "store.path = %s\n"               /* 7 */
            "broker.output = %s\n"            /* 8 */
            "poll_interval = 20ms\n"          /* 9 */
            "retry.backoff = 1ms..5ms\n"      /* 10 */
            "%s\n",                           /* 11 */
            port, f->pipe ? f->pipe : "p", path ? path : f->db, f->out, extra);
    fclose(fp);
}

static void insert(fx *f, const char *agg)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char *q = sqlite3_mprintf("INSERT INTO outbox (aggregate_type, "
                              "aggregate_id, event_type, payload) VALUES "
                              "('t', %Q, 'E', 'p')",
                              agg);
    assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(q);
    sqlite3_close(db);
}

/* Wait until the chaos broker has written `n` events. */
static void wait_published(fx *f, size_t n)
{
    for (int t = 0; t < 10000; t += 20) {
        if (count_lines(f->out) >= n)
            return;
        sleep_ms(20);
    }
    char *log = slurp(f->err);
    fail_msg("%zu of %zu events published; log:\n%s", count_lines(f->out), n,
             log ? log : "");
}

static void start(fx *f)
{
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    f->pid = proc_start(argv, NULL, f->err);
    for (int t = 0; t < 10000; t += 20) {
        if (count_in_file(f->err, "running: store sqlite") > 0)
            return;
        sleep_ms(20);
    }
    char *log = slurp(f->err);
    fail_msg("relay did not start:\n%s", log ? log : "");
}

/* SIGHUP, then wait for the reload's last line (`done` occurrences of
 * either outcome in the log). */
static void reload(fx *f, size_t done)
{
    assert_int_equal(kill(f->pid, SIGHUP), 0);
    for (int t = 0; t < 15000; t += 20) {
        if (count_in_file(f->err, "still running the previous config") +
                count_in_file(f->err, "could not open with the new") +
                count_in_file(f->err, "removed\n") >=
            done)
            return;
        sleep_ms(20);
    }
    char *log = slurp(f->err);
    fail_msg("no end of reload %zu in the log:\n%s", done, log ? log : "");
}

/* outbox_config_reloads_total{result=...} from /metrics on port. */
static double reloads(int port, const char *result)
{
    char *body = NULL;
    int code = http_get(port, "/metrics", &body);
    if (code != 200)
        fail_msg("GET /metrics on port %d: %d", port, code);
    char sample[128];
    snprintf(sample, sizeof sample,
             "\noutbox_config_reloads_total{result=\"%s\"} ", result);
    const char *p = strstr(body, sample);
    if (!p)
        fail_msg("no %s in:\n%s", sample + 1, body);
    double v = strtod(p + strlen(sample), NULL);
    free(body);
    return v;
}

static void assert_alive(fx *f)
{
    int st;
    if (waitpid(f->pid, &st, WNOHANG) != 0) {
        char *log = slurp(f->err);
        f->pid = 0;
        fail_msg("the relay exited:\n%s", log ? log : "");
    }
}

static void assert_log_has(fx *f, const char *needle)
{
    if (count_in_file(f->err, needle) == 0) {
        char *log = slurp(f->err);
        fail_msg("log lacks '%s':\n%s", needle, log ? log : "");
    }
}

/* A plugin setting that the parser takes but the plugin's validate
 * rejects (store.column.NAME for no such column): the reload fails before
 * anything stops, with the config file's name and line in the error. */
static void test_reload_plugin_config_error(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    start(f);
    insert(f, "a");
    wait_published(f, 1);

    write_conf(f, f->port, NULL, "store.column.bogus = x");
    reload(f, 1);
    char where[4300];
    snprintf(where, sizeof where, "%s:11: store.column.bogus", f->conf);
    assert_log_has(f, where);
    assert_alive(f);
    assert_int_equal((int)reloads(f->port, "error"), 1);
    assert_int_equal((int)reloads(f->port, "ok"), 0);
    assert_int_equal(count_in_file(f->err, "running: store sqlite"), 1);
    insert(f, "b");
    wait_published(f, 2);
}

/* Settings that only open can find wrong: a mapped column the table does
 * not have, a database in a directory that does not exist. The relay
 * stays up, the pipeline runs its previous settings again, the reload
 * counts as failed; a good reload afterwards applies. */
static void test_reload_open_failure_reverts(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    start(f);
    insert(f, "a");
    wait_published(f, 1);

    write_conf(f, f->port, NULL, "store.column.payload = nosuch");
    reload(f, 1);
    assert_log_has(f, "has no column \"nosuch\"");
    assert_log_has(f, "it runs its previous settings again");
    assert_alive(f);
    insert(f, "b");
    wait_published(f, 2);
    assert_int_equal((int)reloads(f->port, "error"), 1);

    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", f->dir);
    write_conf(f, f->port, missing, "");
    reload(f, 2);
    assert_alive(f);
    insert(f, "c");
    wait_published(f, 3);
    assert_int_equal((int)reloads(f->port, "error"), 2);
    assert_int_equal((int)reloads(f->port, "ok"), 0);

    /* the file unchanged: the reverted pipeline is tried again, not kept
     * as "unchanged" on settings the file does not have */
    reload(f, 3);
    assert_alive(f);
    assert_int_equal((int)reloads(f->port, "error"), 3);

    write_conf(f, f->port, NULL, "batch_size = 7");
    reload(f, 4);
    assert_alive(f);
    assert_int_equal((int)reloads(f->port, "ok"), 1);
    insert(f, "d");
    wait_published(f, 4);
}

/* The reload's only pipeline is new (renamed) and cannot open: nothing
 * runs, but the relay stays up (exiting 0 would look like a clean stop to
 * systemd) and the next good reload runs it. */
static void test_reload_leaving_no_pipeline_stays_up(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    start(f);
    insert(f, "a");
    wait_published(f, 1);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", f->dir);
    f->pipe = "q";
    write_conf(f, f->port, missing, "");
    reload(f, 1);
    assert_log_has(f, "this new pipeline is not running");
    sleep_ms(500);
    assert_alive(f);
    write_conf(f, f->port, NULL, "");
    reload(f, 2);
    assert_alive(f);
    insert(f, "b");
    wait_published(f, 2);
}

/* A reload while the last one's pipeline is still on trial (its open
 * waits on a locked database): when the next reload's settings fail too,
 * the pipeline goes back to the settings that last opened, not to the
 * unproven ones in between. */
static void test_reload_during_trial_keeps_the_proven_settings(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    start(f);
    insert(f, "a");
    wait_published(f, 1);
    sqlite3 *lock;
    assert_int_equal(sqlite3_open(f->db, &lock), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lock, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
                     SQLITE_OK);
    write_conf(f, f->port, NULL, "store.column.payload = nosuch");
    reload(f, 1); /* its open waits on the lock: still on trial */
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", f->dir);
    write_conf(f, f->port, missing, "");
    reload(f, 2);
    assert_log_has(f, "it runs its previous settings again");
    assert_int_equal(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    insert(f, "b");
    wait_published(f, 2);
    assert_alive(f);
    if (count_in_file(f->err, "has no column \"nosuch\"") > 0) {
        char *log = slurp(f->err);
        fail_msg("went back to the settings that never opened:\n%s",
                 log ? log : "");
    }
}

/* A metrics_listen that cannot be bound: the old endpoint stays, the
 * reload is counted failed and nothing else changes; a free one moves. */
static void test_reload_metrics_listen_taken(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    start(f);
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(taken, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(taken, 1), 0);
    getsockname(taken, (struct sockaddr *)&sa, &len);
    int busy = ntohs(sa.sin_port);

    write_conf(f, busy, NULL, "batch_size = 7");
    reload(f, 1);
    assert_log_has(f, "cannot listen");
    assert_alive(f);
    assert_int_equal((int)reloads(f->port, "error"), 1);
    assert_int_equal((int)reloads(f->port, "ok"), 0);
    /* the pipeline change came with it: not applied */
    assert_int_equal(count_in_file(f->err, "running: store sqlite"), 1);
    close(taken);

    int moved = free_port();
    write_conf(f, moved, NULL, "");
    reload(f, 2);
    assert_int_equal((int)reloads(moved, "ok"), 1);
    char *body = NULL;
    assert_int_equal(http_get(f->port, "/metrics", &body), -1);
    free(body);
}

/* dead list / dead show print event data: a control byte there (an
 * escape sequence, a newline faking a row) comes out as \xNN. */
static void test_dead_letters_escaped(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "");
    char *demo[] = {BIN, "demo", "-c", f->conf, "-n", "1", NULL};
    assert_int_equal(proc_run(demo, NULL, f->err, 30000), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "UPDATE outbox SET dead_at = 1700000000000000, "
                     "event_type = 'T' || char(27) || '[2J', "
                     "payload = 'x' || char(27) || ']0;pwned' || char(7), "
                     "dead_reason = 'bad' || char(10) || 'fake row' "
                     "WHERE id = (SELECT min(id) FROM outbox)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    char *id = NULL;
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT event_id FROM outbox WHERE dead_at > 0", -1,
                       &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    id = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);

    char *ls[] = {BIN, "dead", "list", "-c", f->conf, NULL};
    char *show[] = {BIN, "dead", "show", id, "-c", f->conf, NULL};
    char *const *cmds[] = {ls, show};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(proc_run(cmds[i], f->cli, f->err, 30000), 0);
        char *out = slurp(f->cli);
        assert_non_null(out);
        if (strchr(out, 27) || strchr(out, 7) || strstr(out, "\nfake row"))
            fail_msg("%s %s printed raw control bytes:\n%s", cmds[i][1],
                     cmds[i][2], out);
        assert_non_null(strstr(out, "T\\x1b[2J"));
        assert_non_null(strstr(out, "bad\\x0afake row"));
        if (i == 1)
            assert_non_null(strstr(out, "x\\x1b]0;pwned\\x07"));
        free(out);
    }
    free(id);
}

/* check names the file with the line of a plugin's own config error. */
static void test_check_plugin_error_has_file(void **state)
{
    fx *f = *state;
    write_conf(f, f->port, NULL, "store.column.bogus = x");
    char *check[] = {BIN, "check", "-c", f->conf, NULL};
    assert_int_equal(proc_run(check, f->cli, f->err, 30000), 2);
    char where[4300];
    snprintf(where, sizeof where, "%s:11: store.column.bogus", f->conf);
    assert_log_has(f, where);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload_plugin_config_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_open_failure_reverts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_reload_leaving_no_pipeline_stays_up, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_reload_during_trial_keeps_the_proven_settings, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_reload_metrics_listen_taken, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_escaped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_plugin_error_has_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
