/* Operations surface: /metrics (checked by promtool, counters equal what
 * happened), /healthz, /readyz flipping during an outage, JSON logs. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

typedef struct fx {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200], flag[4200];
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
    snprintf(f->flag, sizeof f->flag, "%s/down", f->dir);
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

static void write_conf(fx *f, const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\nlog_level = info\nlog_format = json\n"
            "metrics_listen = 127.0.0.1:%d\nready_stall = 60s\n"
            "[pipeline p]\nstore = sqlite\nbroker = chaos\n"
            "store.path = %s\nbroker.output = %s\npoll_interval = 20ms\n"
            "retry.backoff = 1ms..5ms\ncircuit.backoff = 50ms..200ms\n%s\n",
            f->port, f->db, f->out, extra);
    fclose(fp);
}

static long long sql_int(fx *f, const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    sqlite3_open(f->db, &db);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        sqlite3_close(db);
        return -1;
    }
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Demo rows through the relay's own demo command, then typed extras. */
static void seed(fx *f, int ticks, int flaky, int poison)
{
    char n[16];
    snprintf(n, sizeof n, "%d", ticks);
    char *demo[] = {BIN, "demo", "-c", f->conf, "-n", n, NULL};
    assert_int_equal(proc_run(demo, NULL, f->err, 30000), 0);
    sqlite3 *db;
    sqlite3_open(f->db, &db);
    char q[256];
    for (int i = 0; i < flaky + poison; i++) {
        snprintf(q, sizeof q,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload) VALUES ('x', 'x%d', '%s', 'p')",
                 i, i < flaky ? "Flaky" : "Poison");
        assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);
}

static void wait_settled(fx *f, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        if (sql_int(f, "SELECT count(*) FROM outbox WHERE published_at IS "
                       "NULL AND dead_at IS NULL") == 0)
            return;
        sleep_ms(50);
    }
    fail_msg("events not settled in %d ms", timeout_ms);
}

/* The value of one sample line "name{labels} value". */
static double metric(const char *page, const char *sample)
{
    const char *p = page;
    size_t n = strlen(sample);
    while ((p = strstr(p, sample)) != NULL) {
        if ((p == page || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    fail_msg("no sample %s in:\n%s", sample, page);
    return -1;
}

static int promtool_check(const char *file)
{
    const char *bin = "/usr/bin/promtool";
    if (access(bin, X_OK) != 0)
        fail_msg("promtool not installed (scripts/deps.sh installs it)");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, file, O_RDONLY, 0);
    char *argv[] = {(char *)bin, "check", "metrics", NULL};
    pid_t pid;
    extern char **environ;
    assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return proc_wait(pid, 30000);
}

static void start(fx *f)
{
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    f->pid = proc_start(argv, NULL, f->err);
    char *body = NULL;
    for (int t = 0; t < 5000; t += 20) {
        if (http_get(f->port, "/healthz", &body) == 200) {
            free(body);
            return;
        }
        free(body);
        body = NULL;
        sleep_ms(20);
    }
    fail_msg("metrics endpoint did not come up");
}

static void stop(fx *f)
{
    kill(f->pid, SIGTERM);
    int rc = proc_wait(f->pid, 20000);
    f->pid = 0;
    if (rc != 0) {
        char *log = slurp(f->err);
        fail_msg("relay exited %d:\n%s", rc, log ? log : "");
    }
}

static void test_metrics_count_what_happened_and_pass_promtool(void **state)
{
    fx *f = *state;
    write_conf(f, "broker.flaky_types = Flaky\nbroker.flaky_times = 2\n"
                  "broker.permanent_types = Poison\n");
    seed(f, 200, 3, 1);
    start(f);
    wait_settled(f, 30000);
    sleep_ms(200);
    char *page = NULL;
    assert_int_equal(http_get(f->port, "/metrics", &page), 200);
    char file[4300];
    snprintf(file, sizeof file, "%s/metrics.txt", f->dir);
    FILE *fp = fopen(file, "w");
    fputs(page, fp);
    fclose(fp);
    assert_int_equal(promtool_check(file), 0);
    const char *lbl = "{pipeline=\"p\"}";
    char s[128];
    snprintf(s, sizeof s, "outbox_events_published_total%s", lbl);
    assert_true(metric(page, s) == 203);
    snprintf(s, sizeof s, "outbox_events_dead_lettered_total%s", lbl);
    assert_true(metric(page, s) == 1);
    snprintf(s, sizeof s, "outbox_publish_retries_total%s", lbl);
    assert_true(metric(page, s) == 6);
    assert_true(metric(page, "outbox_publish_errors_total{pipeline=\"p\","
                             "class=\"retry\"}") == 6);
    assert_true(metric(page, "outbox_publish_errors_total{pipeline=\"p\","
                             "class=\"permanent\"}") == 1);
    assert_true(metric(page, "outbox_publish_latency_seconds_count{pipeline="
                             "\"p\"}") == 203);
    snprintf(s, sizeof s, "outbox_circuit_open%s", lbl);
    assert_true(metric(page, s) == 0);
    free(page);
    char *body = NULL;
    assert_int_equal(http_get(f->port, "/readyz", &body), 200);
    free(body);
    assert_int_equal(http_get(f->port, "/nope", &body), 404);
    free(body);
    stop(f);
    /* JSON log lines, none per event at info. */
    char *log = slurp(f->err);
    size_t lines = 0;
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n"), lines++) {
        json_t *o = json_loads(l, 0, NULL);
        if (!o)
            fail_msg("log line is not JSON: %s", l);
        assert_non_null(json_object_get(o, "level"));
        assert_non_null(json_object_get(o, "msg"));
        json_decref(o);
    }
    assert_true(lines > 0 && lines < 20);
    free(log);
}

static void test_readyz_flips_during_outage(void **state)
{
    fx *f = *state;
    char extra[4400];
    snprintf(extra, sizeof extra, "broker.down_while_file = %s\n", f->flag);
    write_conf(f, extra);
    seed(f, 10, 0, 0);
    FILE *fp = fopen(f->flag, "w");
    fclose(fp);
    start(f);
    /* Not ready at start-up (not connected yet), then for the outage. */
    char *body = NULL;
    int code = 0;
    for (int t = 0; t < 5000 && !(body && strstr(body, "circuit open"));
         t += 50) {
        free(body);
        code = http_get(f->port, "/readyz", &body);
        sleep_ms(50);
    }
    assert_int_equal(code, 503);
    /* and says why, in the broker's words */
    if (!strstr(body, "circuit open: broker unavailable: chaos: broker down "
                      "while"))
        fail_msg("/readyz does not say why: %s", body);
    free(body);
    char *page = NULL;
    http_get(f->port, "/metrics", &page);
    assert_true(metric(page, "outbox_circuit_open{pipeline=\"p\"}") == 1);
    free(page);
    unlink(f->flag);
    wait_settled(f, 10000);
    body = NULL;
    for (int t = 0; t < 5000 && code != 200; t += 50) {
        free(body);
        code = http_get(f->port, "/readyz", &body);
        sleep_ms(50);
    }
    assert_int_equal(code, 200);
    free(body);
    assert_int_equal(sql_int(f, "SELECT max(attempts) FROM outbox"), 0);
    stop(f);
}

/* docs/metrics.md names every metric /metrics serves, and each metric it
 * names is served, or is a plugin gauge some plugin really sets. */
static void test_metrics_doc_in_sync(void **state)
{
    fx *f = *state;
    write_conf(f, "");
    seed(f, 10, 2, 0);
    start(f);
    wait_settled(f, 30000);
    char *page = NULL;
    assert_int_equal(http_get(f->port, "/metrics", &page), 200);
    stop(f);
    char *doc = slurp(OBX_SOURCE_DIR "/docs/metrics.md");
    assert_non_null(doc);
    const char *plugin_part = strstr(doc, "## Plugin gauges");
    assert_non_null(plugin_part);
    char *alerts = strstr(doc, "## What to alert on");
    assert_non_null(alerts);
    /* the alert table quotes expressions, not metric definitions; its
     * names must still be metrics the page or a plugin serves */
    for (const char *a = strstr(alerts, "outbox_"); a;
         a = strstr(a + 1, "outbox_")) {
        char name[128], want[140];
        assert_int_equal(sscanf(a, "%127[a-z_]", name), 1);
        snprintf(want, sizeof want, "| `%s` |", name);
        if (!strstr(doc, want))
            fail_msg("docs/metrics.md alerts on %s, which it does not "
                     "document",
                     name);
        a += strlen(name) - 1;
    }
    *alerts = '\0';
    for (char *t = strstr(page, "# TYPE "); t; t = strstr(t + 1, "# TYPE ")) {
        char name[128], want[140];
        assert_int_equal(sscanf(t + 7, "%127s", name), 1);
        snprintf(want, sizeof want, "| `%s` |", name);
        if (!strstr(doc, want))
            fail_msg("docs/metrics.md does not document %s", name);
    }
    for (const char *d = strstr(doc, "| `outbox_"); d;
         d = strstr(d + 1, "| `outbox_")) {
        char name[128], served[140];
        assert_int_equal(sscanf(d + 3, "%127[a-z_]", name), 1);
        snprintf(served, sizeof served, "# TYPE %s ", name);
        if (d < plugin_part) {
            if (!strstr(page, served))
                fail_msg("docs/metrics.md names %s; /metrics has no such "
                         "metric",
                         name);
            continue;
        }
        /* a plugin gauge: some source sets it by its name without outbox_ */
        char cmd[600];
        snprintf(cmd, sizeof cmd,
                 "grep -rqF '\"%s\"' " OBX_SOURCE_DIR "/stores " OBX_SOURCE_DIR
                 "/brokers " OBX_SOURCE_DIR "/core",
                 name + strlen("outbox_"));
        if (system(cmd) != 0)
            fail_msg("docs/metrics.md names plugin gauge %s; no plugin sets "
                     "it",
                     name);
    }
    free(doc);
    free(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_metrics_count_what_happened_and_pass_promtool, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_metrics_doc_in_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readyz_flips_during_outage, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
