/* End to end on PostgreSQL's WAL: real outbox-relay processes (run mode)
 * with the pg_wal store, the application writing on its own connection,
 * the stdout and chaos brokers writing JSON lines to files.
 *
 * Every payload is {"n": <unique number>, "seq": <per-key sequence in
 * commit order>, "rb": <1 when written by a transaction that rolled
 * back>}; what the table holds is the truth about what committed. */
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
#include <jansson.h>

#include "pgoutput.h"
#include "pgw_testlib.h"
#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"
#define MAX_N 200000

typedef struct fx {
    wt *t;
    char *dir;
    char conf[2][4200], out[2][4200], err[2][4200];
    pid_t pid[2];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->t = wt_new();
    f->dir = obx_test_tmpdir();
    for (int i = 0; i < 2; i++) {
        snprintf(f->conf[i], sizeof f->conf[i], "%s/relay%d.conf", f->dir, i);
        snprintf(f->out[i], sizeof f->out[i], "%s/out%d.jsonl", f->dir, i);
        snprintf(f->err[i], sizeof f->err[i], "%s/err%d.log", f->dir, i);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 2; i++)
        if (f->pid[i] > 0) {
            kill(f->pid[i], SIGKILL);
            proc_wait(f->pid[i], 5000);
        }
    wt_free(f->t);
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Relay i: pg_wal on this test's schema, slot and publication; `broker`
 * writing to out[i]. The circuit keeps its default backoff: a standby
 * takes over at its next claim, not at the circuit's next probe. */
static void write_conf(fx *f, int i, const char *broker, const char *extra)
{
    FILE *fp = fopen(f->conf[i], "w");
    assert_non_null(fp);
    fprintf(fp,
            "[relay]\nlog_level = info\nmetrics_listen = off\n"
            "shutdown_grace = 20s\n"
            "[pipeline p]\nstore = pg_wal\nbroker = %s\n"
            "store.conninfo = %s\nstore.schema = %s\nstore.slot = %s\n"
            "store.publication = %s\nbroker.output = %s\n"
            "poll_interval = 200ms\n%s"
            "retry.backoff = 10ms..50ms\n%s\n",
            broker, f->t->conninfo, f->t->name, f->t->name, f->t->name,
            f->out[i],
            extra && strstr(extra, "batch_size") ? "" : "batch_size = 256\n",
            extra ? extra : "");
    fclose(fp);
}

static bool file_has(const char *path, const char *needle)
{
    char *s = slurp(path);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

static void wait_file_has(const char *path, const char *needle, int ms)
{
    int64_t end = wt_mono_ms() + ms;
    while (!file_has(path, needle)) {
        if (wt_mono_ms() > end) {
            char *s = slurp(path);
            fail_msg("%s: no '%s' after %d ms:\n%s", path, needle, ms,
                     s ? s : "(missing)");
        }
        wt_sleep_ms(20);
    }
}

/* Start relay i and wait until it streams (events committed before the
 * slot exists are not its business). */
static void start_relay(fx *f, int i, bool wait_streaming)
{
    char *argv[] = {BIN, "run", "-c", f->conf[i], NULL};
    f->pid[i] = proc_start(argv, NULL, f->err[i]);
    if (wait_streaming)
        wait_file_has(f->err[i], "streaming slot", 10000);
}

static void stop_relay(fx *f, int i, int sig)
{
    kill(f->pid[i], sig);
    int rc = proc_wait(f->pid[i], 30000);
    f->pid[i] = 0;
    if (sig == SIGTERM && rc != 0) {
        char *log = slurp(f->err[i]);
        fail_msg("relay %d exited with %d:\n%s", i, rc, log ? log : "");
    }
}

/* ---- writing ---- */

static void insert_event(wt *t, const char *key, const char *type, int n,
                         int seq, int rb)
{
    wt_exec(t,
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
            "payload) VALUES ('order', '%s', '%s', convert_to('{\"n\": %d, "
            "\"seq\": %d, \"rb\": %d}', 'UTF8'))",
            key, type, n, seq, rb);
}

/* ---- reading the outputs ---- */

typedef struct line {
    int n, seq, rb;
    char key[32];
} line;

static size_t read_lines(const char *path, line **out)
{
    char *s = slurp(path);
    size_t cap = 1024, n = 0;
    line *v = malloc(cap * sizeof *v);
    char *save = NULL;
    for (char *p = s ? strtok_r(s, "\n", &save) : NULL; p;
         p = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *o = json_loads(p, 0, &je);
        if (!o)
            fail_msg("%s: not JSON: %s", path, p);
        json_t *pl = json_object_get(o, "payload");
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        line *l = &v[n++];
        l->n = (int)json_integer_value(json_object_get(pl, "n"));
        l->seq = (int)json_integer_value(json_object_get(pl, "seq"));
        l->rb = (int)json_integer_value(json_object_get(pl, "rb"));
        snprintf(l->key, sizeof l->key, "%s",
                 json_string_value(json_object_get(o, "key")));
        json_decref(o);
    }
    free(s);
    *out = v;
    return n;
}

/* Per key, seq grows along one output (strictly unless dups_allowed). */
static void check_order(const char *path, const line *v, size_t n,
                        bool dups_allowed)
{
    json_t *last = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_object_get(last, v[i].key);
        if (p) {
            int prev = (int)json_integer_value(p);
            if (dups_allowed ? v[i].seq < prev : v[i].seq <= prev)
                fail_msg("%s: key %s: seq %d (line %zu) after seq %d", path,
                         v[i].key, v[i].seq, i + 1, prev);
        }
        json_object_set_new(last, v[i].key, json_integer(v[i].seq));
    }
    json_decref(last);
}

static void wait_lines(const char *path, size_t want, int ms)
{
    int64_t end = wt_mono_ms() + ms;
    size_t have;
    while ((have = count_lines(path)) < want) {
        if (wt_mono_ms() > end)
            fail_msg("%s: %zu lines after %d ms, want %zu", path, have, ms,
                     want);
        wt_sleep_ms(50);
    }
}

/* ---- tests ---- */

/* Committed events delivered once each, in per-key commit order; rolled
 * back ones never. */
static void test_committed_ordered_no_phantoms(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "stdout", NULL);
    start_relay(f, 0, true);
    int seq[20] = {0}, n = 0, committed = 0;
    srand(7);
    for (int tx = 0; tx < 400; tx++) {
        bool rb = rand() % 5 == 0;
        int size = 1 + rand() % 5;
        wt_exec(f->t, "BEGIN");
        for (int i = 0; i < size; i++) {
            int k = rand() % 20;
            char key[16];
            snprintf(key, sizeof key, "key%d", k);
            insert_event(f->t, key, "E", n++, rb ? -1 : seq[k]++, rb);
        }
        wt_exec(f->t, rb ? "ROLLBACK" : "COMMIT");
        committed += rb ? 0 : size;
    }
    wait_lines(f->out[0], (size_t)committed, 20000);
    wt_sleep_ms(300); /* nothing more may come */
    stop_relay(f, 0, SIGTERM);
    line *v;
    size_t got = read_lines(f->out[0], &v);
    assert_int_equal(got, committed);
    char *seen = calloc((size_t)n, 1);
    for (size_t i = 0; i < got; i++) {
        assert_int_equal(v[i].rb, 0);
        assert_int_equal(seen[v[i].n], 0);
        seen[v[i].n] = 1;
    }
    check_order(f->out[0], v, got, false);
    free(seen);
    free(v);
}

/* One transaction of 100k events: streamed through a bounded buffer. */
static void test_big_transaction(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "stdout", "batch_size = 1000");
    start_relay(f, 0, true);
    wt_exec(f->t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                  "event_type, payload) SELECT 'order', 'k' || (i %% 50), "
                  "'Bulk', convert_to(format('{\"n\": %%s, \"seq\": %%s, "
                  "\"rb\": 0}', i, i), 'UTF8') FROM generate_series(0, "
                  "99999) i");
    wait_lines(f->out[0], 100000, 60000);
    stop_relay(f, 0, SIGTERM);
    line *v;
    size_t got = read_lines(f->out[0], &v);
    assert_int_equal(got, 100000);
    char *seen = calloc(100000, 1);
    for (size_t i = 0; i < got; i++) {
        assert_true(v[i].n >= 0 && v[i].n < 100000);
        assert_int_equal(seen[v[i].n], 0);
        seen[v[i].n] = 1;
    }
    check_order(f->out[0], v, got, false);
    free(seen);
    free(v);
}

/* The broker keeps failing event k: events after it are published, but
 * the slot never confirms past k. SIGKILL, restart with a healthy broker:
 * k and everything committed after it are delivered. */
static void test_kill_with_failing_event(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "chaos",
               "broker.flaky_types = Poison\nbroker.flaky_times = 1000000\n"
               "retry.max_attempts = 1000000");
    start_relay(f, 0, true);
    int n = 0;
    for (int i = 0; i < 10; i++, n++)
        insert_event(f->t, "before", "E", n, i, 0);
    insert_event(f->t, "kkey", "Poison", n++, 0, 0);
    uint64_t after_k = wt_current_lsn(f->t);
    for (int i = 0; i < 40; i++, n++) {
        char key[16];
        snprintf(key, sizeof key, "a%d", i % 4);
        insert_event(f->t, key, "E", n, i / 4, 0);
    }
    wait_lines(f->out[0], 50, 20000); /* all but k published */
    wt_sleep_ms(1500);                /* status updates went out */
    uint64_t c = wt_confirmed(f->t);
    if (c >= after_k) {
        char *log = slurp(f->err[0]);
        fail_msg("slot confirmed %llX, past the failing event (committed "
                 "before %llX):\n%s",
                 (unsigned long long)c, (unsigned long long)after_k, log);
    }
    stop_relay(f, 0, SIGKILL);
    write_conf(f, 1, "stdout", NULL);
    start_relay(f, 1, false);
    wait_lines(f->out[1], 41, 20000);
    stop_relay(f, 1, SIGTERM);
    line *v;
    size_t got = read_lines(f->out[1], &v);
    char *seen = calloc((size_t)n, 1);
    for (size_t i = 0; i < got; i++)
        seen[v[i].n] = 1;
    for (int i = 10; i < n; i++)
        if (!seen[i])
            fail_msg("event %d (k = 10 and after) was not delivered after "
                     "the restart",
                     i);
    free(seen);
    free(v);
}

/* SIGKILL in the middle of a drain: after a restart everything is
 * delivered, and what came twice is only what was in flight (a slot
 * confirms whole transactions: the window reaches back to the start of
 * the oldest unsettled event's transaction). */
static void test_restart_duplicates_bounded(void **state)
{
    fx *f = *state;
    const int total = 20000, batch = 50;
    char extra[256];
    snprintf(extra, sizeof extra, "batch_size = %d\nbroker.delay = 2ms", batch);
    write_conf(f, 0, "chaos", extra);
    start_relay(f, 0, true);
    /* transactions of 10: the slot confirms whole transactions */
    wt_exec(f->t,
            "DO $$ BEGIN FOR t IN 0..%d LOOP INSERT INTO outbox "
            "(aggregate_type, aggregate_id, event_type, payload) SELECT "
            "'order', 'k' || (i %% 20), 'E', convert_to(format('{\"n\": %%s, "
            "\"seq\": %%s, \"rb\": 0}', i, i), 'UTF8') FROM "
            "generate_series(t * 10, t * 10 + 9) i; COMMIT; END LOOP; END $$",
            total / 10 - 1);
    wait_lines(f->out[0], 6000, 30000);
    /* Freeze the relay first and let the walsender read the status
     * updates already in its socket (until the slot stops moving), then
     * kill it: what the relay had sent is then on the server, whatever
     * the machine's load, and what comes twice is what the relay had not
     * confirmed yet. Killed while running, the walsender may still have
     * had several updates unread: how many depends on scheduling, not on
     * the relay. */
    kill(f->pid[0], SIGSTOP);
    uint64_t conf = wt_confirmed(f->t);
    for (int quiet = 0, i = 0; quiet < 5 && i < 100; i++) {
        wt_sleep_ms(100);
        uint64_t now = wt_confirmed(f->t);
        quiet = now == conf ? quiet + 1 : 0;
        conf = now;
    }
    stop_relay(f, 0, SIGKILL);
    write_conf(f, 1, "stdout", NULL);
    start_relay(f, 1, false);
    line *a, *b;
    size_t na = read_lines(f->out[0], &a);
    wait_lines(f->out[1], (size_t)total - na, 30000);
    wt_sleep_ms(300);
    stop_relay(f, 1, SIGTERM);
    size_t nb = read_lines(f->out[1], &b);
    char *seen = calloc((size_t)total, 1);
    for (size_t i = 0; i < na; i++)
        seen[a[i].n] |= 1;
    size_t dups = 0;
    for (size_t i = 0; i < nb; i++) {
        dups += (seen[b[i].n] & 1) != 0;
        seen[b[i].n] |= 2;
    }
    for (int i = 0; i < total; i++)
        if (!seen[i])
            fail_msg("event %d lost across the SIGKILL", i);
    check_order(f->out[0], a, na, false);
    check_order(f->out[1], b, nb, false);
    /* What comes twice is what the server had not seen confirmed: the
     * batch in flight (the broker may have written it before the freeze,
     * or its ack's status update had not gone out yet), the rest of its
     * oldest event's transaction, and at most the batch before it (its
     * update was being written when the freeze came). */
    print_message("killed after %zu events; %zu duplicates\n", na, dups);
    if (dups > 2 * (size_t)batch + 10)
        fail_msg("%zu duplicates after a SIGKILL with batch_size %d", dups,
                 batch);
    free(seen);
    free(a);
    free(b);
}

/* Two relays on one slot: the second stands by and takes over within a
 * few seconds of the first one's death. */
static void test_standby_takeover(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "stdout", NULL);
    write_conf(f, 1, "stdout", NULL);
    start_relay(f, 0, true);
    start_relay(f, 1, false);
    wait_file_has(f->err[1], "standing by", 10000);
    for (int i = 0; i < 10; i++)
        insert_event(f->t, "k", "E", i, i, 0);
    wait_lines(f->out[0], 10, 10000);
    /* Kill only once the slot confirmed those ten: what this test checks is
     * the take-over, not the unconfirmed window (test_restart_... does). */
    uint64_t lsn = wt_current_lsn(f->t);
    int64_t end = wt_mono_ms() + 10000;
    while (wt_confirmed(f->t) < lsn && wt_mono_ms() < end)
        wt_sleep_ms(50);
    assert_true(wt_confirmed(f->t) >= lsn);
    stop_relay(f, 0, SIGKILL);
    int64_t t0 = wt_mono_ms();
    for (int i = 10; i < 20; i++)
        insert_event(f->t, "k", "E", i, i, 0);
    wait_lines(f->out[1], 10, 10000);
    int64_t took = wt_mono_ms() - t0;
    if (took > 5000)
        fail_msg("standby took %lld ms to take over", (long long)took);
    stop_relay(f, 1, SIGTERM);
    line *v;
    size_t got = read_lines(f->out[1], &v);
    for (size_t i = 0; i < got; i++)
        assert_true(v[i].n >= 10);
    check_order(f->out[1], v, got, false);
    free(v);
}

/* `schema pg_wal` prints tables, publication and slot; applied by hand it
 * lets the relay start with create_schema and create_slot off. */
static void test_schema_command(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "stdout",
               "store.create_schema = false\nstore.create_slot = false");
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->dir);
    char *argv[] = {BIN, "schema", "pg_wal", "-c", f->conf[0], NULL};
    assert_int_equal(proc_run(argv, path, f->err[0], 10000), 0);
    char *ddl = slurp(path);
    assert_non_null(strstr(ddl, "CREATE PUBLICATION"));
    assert_non_null(strstr(ddl, "pg_create_logical_replication_slot"));
    /* statement by statement, as psql runs a script: a slot cannot be
     * created in a transaction that has written */
    char *save = NULL;
    for (char *q = strtok_r(ddl, ";", &save); q; q = strtok_r(NULL, ";", &save))
        if (strstr(q, "CREATE") || strstr(q, "SELECT"))
            wt_exec(f->t, "%s", q);
    free(ddl);
    start_relay(f, 0, true);
    insert_event(f->t, "k", "E", 0, 0, 0);
    wait_lines(f->out[0], 1, 10000);
    stop_relay(f, 0, SIGTERM);
}

/* `outbox-relay demo`: orders and their events written together, as a
 * table row or (source = messages) as a logical message, then relayed. */
static void demo_then_relay(fx *f, const char *extra)
{
    write_conf(f, 0, "stdout", extra);
    char *demo[] = {BIN, "demo", "-c", f->conf[0], "-n", "15", NULL};
    assert_int_equal(proc_run(demo, NULL, f->err[0], 30000), 0);
    assert_int_equal(
        wt_int(f->t, -1, "SELECT count(*) FROM %s.orders", f->t->name), 15);
    start_relay(f, 0, true);
    wait_lines(f->out[0], 15, 10000);
    stop_relay(f, 0, SIGTERM);
    char *out = slurp(f->out[0]);
    size_t n = 0;
    for (char *p = out; (p = strstr(p, "\"event_type\":\"OrderCreated\"")); p++)
        n++;
    assert_int_equal(n, 15);
    assert_non_null(strstr(out, "\"amount_cents\""));
    free(out);
}

static void test_demo_rows(void **state)
{
    demo_then_relay(*state, NULL);
}

/* Logical messages are database-wide: every slot sees every message of
 * its prefix, so this test's prefix is its own (the store tests emit the
 * default prefix's, from the docs' example, on the same server). */
static void test_demo_messages(void **state)
{
    fx *f = *state;
    char extra[256];
    snprintf(extra, sizeof extra,
             "store.source = messages\nstore.message_prefix = %s", f->t->name);
    demo_then_relay(f, extra);
}

/* ---- switching between pg_poll and pg_wal on one table ---- */

/* Relay i as a pg_poll pipeline on this test's table (the same table the
 * pg_wal pipelines use). */
static void write_poll_conf(fx *f, int i, const char *broker, const char *extra)
{
    FILE *fp = fopen(f->conf[i], "w");
    assert_non_null(fp);
    fprintf(fp,
            "[relay]\nlog_level = info\nmetrics_listen = off\n"
            "[pipeline p]\nstore = pg_poll\nbroker = %s\n"
            "store.conninfo = %s\nstore.schema = %s\nstore.channel = %s\n"
            "broker.output = %s\npoll_interval = 200ms\n"
            "retry.backoff = 10ms..50ms\n%s\n",
            broker, f->t->conninfo, f->t->name, f->t->name, f->out[i],
            extra ? extra : "");
    fclose(fp);
}

/* Run an outbox-relay command; its stdout, asserting the exit code. */
static char *cli(fx *f, char **argv, int want_rc)
{
    char out[4300], err[4300];
    snprintf(out, sizeof out, "%s/cli.out", f->dir);
    snprintf(err, sizeof err, "%s/cli.err", f->dir);
    int rc = proc_run(argv, out, err, 30000);
    char *o = slurp(out);
    if (rc != want_rc) {
        char *e = slurp(err);
        fail_msg("%s %s: exit %d, expected %d\n%s%s", argv[1], argv[2], rc,
                 want_rc, o ? o : "", e ? e : "");
    }
    return o;
}

/* The DDL of `schema STORE -c conf`, run as psql runs a script: one
 * statement at a time (a slot cannot be created in a transaction that has
 * written). Statements end with ";" at the end of a line outside a
 * dollar-quoted body. */
static void apply_schema(fx *f, const char *store, const char *conf)
{
    char *argv[] = {BIN, "schema", (char *)store, "-c", (char *)conf, NULL};
    char *ddl = cli(f, argv, 0);
    char *stmt = ddl;
    bool in_body = false;
    for (char *p = ddl; *p; p++) {
        if (strncmp(p, "$obx$", 5) == 0) {
            in_body = !in_body;
            p += 4;
        } else if (!in_body && p[0] == ';' && (p[1] == '\n' || !p[1])) {
            *p = '\0';
            if (strstr(stmt, "CREATE") || strstr(stmt, "SELECT"))
                wt_exec(f->t, "%s", stmt);
            stmt = p + 1;
        }
    }
    free(ddl);
}

/* Insert an event of `type` and return its event_id (static buffer). */
static const char *insert_typed(fx *f, const char *type, int n)
{
    static char id[64];
    insert_event(f->t, "sw", type, n, n, 0);
    PGresult *r = PQexec(wt_db(f->t), "SELECT event_id FROM outbox ORDER BY "
                                      "id DESC LIMIT 1");
    assert_int_equal(PQntuples(r), 1);
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return id;
}

/* `dead list` of config i lists event `id`. */
static void dead_list_has(fx *f, int i, const char *id)
{
    char *argv[] = {BIN, "dead", "list", "-c", f->conf[i], NULL};
    char *out = cli(f, argv, 0);
    if (!strstr(out, id))
        fail_msg("dead list (%s) does not list %s:\n%s", f->conf[i], id, out);
    free(out);
}

/* A pg_wal relay streams and dead-letters a poison event without stopping
 * its pipeline: a good event after it is still published. */
static void wal_phase(fx *f, int i, int n)
{
    start_relay(f, i, true);
    char poison[64];
    snprintf(poison, sizeof poison, "%s", insert_typed(f, "Poison", n));
    insert_typed(f, "E", n + 1);
    wait_lines(f->out[i], 1, 10000);
    int64_t end = wt_mono_ms() + 10000;
    while (wt_int(f->t, 0,
                  "SELECT count(*) FROM outbox WHERE event_id = '%s' AND "
                  "dead_at IS NOT NULL",
                  poison) == 0) {
        if (wt_mono_ms() > end) {
            char *log = slurp(f->err[i]);
            fail_msg("pg_wal did not dead-letter %s:\n%s", poison, log);
        }
        wt_sleep_ms(50);
    }
    insert_typed(f, "E", n + 2);
    wait_lines(f->out[i], 2, 10000);
    stop_relay(f, i, SIGTERM);
    dead_list_has(f, i, poison);
    /* stats says what a WAL store knows: events held (none: all settled)
     * and how far the slot is behind, in bytes */
    char *stats[] = {BIN, "stats", "-c", f->conf[i], NULL};
    char *out = cli(f, stats, 0);
    if (!strstr(out, "held 0, ") || !strstr(out, " bytes") ||
        !strstr(out, ", behind ") || strstr(out, "pending"))
        fail_msg("stats: %s", out);
    free(out);
}

/* A pg_poll relay (run --once) publishes the good event and dead-letters
 * the poison one. */
static void poll_phase(fx *f, int i, int n)
{
    char poison[64];
    snprintf(poison, sizeof poison, "%s", insert_typed(f, "Poison", n));
    insert_typed(f, "E", n + 1);
    char *once[] = {BIN, "run", "-c", f->conf[i], "--once", NULL};
    free(cli(f, once, 0));
    assert_int_equal(count_lines(f->out[i]), 1);
    assert_int_equal(wt_int(f->t, 0,
                            "SELECT count(*) FROM outbox WHERE event_id = "
                            "'%s' AND dead_at IS NOT NULL",
                            poison),
                     1);
    dead_list_has(f, i, poison);
}

/* The schema of pg_poll, then pg_wal on it (and back): each store's DDL
 * and dead letters work on the other's table. pg_wal marks rows
 * (ack_mode = mark) so that pg_poll does not publish them again. */
static void test_switch_poll_then_wal(void **state)
{
    fx *f = *state;
    const char *extra = "broker.permanent_types = Poison\n"
                        "store.ack_mode = mark";
    write_poll_conf(f, 0, "chaos",
                    "broker.permanent_types = Poison\n"
                    "store.create_schema = false");
    apply_schema(f, "pg_poll", f->conf[0]);
    poll_phase(f, 0, 0);
    write_conf(f, 1, "chaos", extra);
    wal_phase(f, 1, 10);
    /* and back to pg_poll, which publishes nothing twice */
    remove(f->out[0]);
    poll_phase(f, 0, 20);
}

static void test_switch_wal_then_poll(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "chaos",
               "broker.permanent_types = Poison\nstore.ack_mode = mark\n"
               "store.create_schema = false\nstore.create_slot = false");
    apply_schema(f, "pg_wal", f->conf[0]);
    wal_phase(f, 0, 0);
    write_poll_conf(f, 1, "chaos",
                    "broker.permanent_types = Poison\n"
                    "store.create_schema = false");
    /* what pg_poll has of its own (claims table, NOTIFY trigger), as the
     * switch in docs/pg-wal.md says */
    apply_schema(f, "pg_poll", f->conf[1]);
    poll_phase(f, 1, 10);
    /* the pg_wal era's dead letter is marked in the table: pg_poll's
     * `dead list` shows it as well */
    char *argv[] = {BIN, "dead", "list", "-c", f->conf[1], NULL};
    char *out = cli(f, argv, 0);
    size_t n = 0;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n"))
        n += strstr(l, "Poison") != NULL;
    assert_int_equal(n, 2);
    free(out);
    /* and back to pg_wal: on a new slot and publication (the old slot
     * would replay what pg_poll published meanwhile) */
    wt_exec(f->t, "SELECT pg_drop_replication_slot('%s')", f->t->name);
    wt_exec(f->t, "DROP PUBLICATION %s", f->t->name);
    write_conf(f, 0, "chaos",
               "broker.permanent_types = Poison\nstore.ack_mode = mark");
    remove(f->out[0]);
    wal_phase(f, 0, 20);
}

/* Both stores' DDL make the same table with the same indexes, and neither
 * takes a name the other needs: applied in either order, the result has
 * every object of both. */
static void test_schema_objects_both_orders(void **state)
{
    fx *f = *state;
    write_poll_conf(f, 0, "stdout", NULL);
    write_conf(f, 1, "stdout", "store.create_slot = false");
    const char *objects =
        "SELECT string_agg(c.relname::text || ':' || c.relkind::text, ' ' "
        "ORDER BY "
        "c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE n.nspname = '%s' AND c.relkind IN ('r', 'i')";
    const char *triggers =
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgrelid "
        "= '%s.outbox'::regclass";
    char objs[2][4096];
    for (int order = 0; order < 2; order++) {
        wt_exec(f->t, "DROP SCHEMA %s CASCADE", f->t->name);
        wt_exec(f->t, "CREATE SCHEMA %s", f->t->name);
        wt_exec(f->t, "DROP PUBLICATION IF EXISTS %s", f->t->name);
        wt_exec(f->t,
                "SELECT pg_drop_replication_slot(slot_name) FROM "
                "pg_replication_slots WHERE slot_name = '%s'",
                f->t->name);
        apply_schema(f, order ? "pg_wal" : "pg_poll", f->conf[order]);
        apply_schema(f, order ? "pg_poll" : "pg_wal", f->conf[!order]);
        char sql[1024];
        snprintf(sql, sizeof sql, objects, f->t->name);
        PGresult *r = PQexec(wt_db(f->t), sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        snprintf(objs[order], sizeof objs[order], "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        assert_int_equal(wt_int(f->t, -1, triggers, f->t->name), 1);
        print_message("%s then %s: %s\n", order ? "pg_wal" : "pg_poll",
                      order ? "pg_poll" : "pg_wal", objs[order]);
        assert_non_null(strstr(objs[order], "outbox_dead_letters:r"));
        assert_non_null(strstr(objs[order], "outbox_dead:i"));
        assert_non_null(strstr(objs[order], "outbox_key_rank:i"));
    }
    assert_string_equal(objs[0], objs[1]);
}

/* A config without store.slot gets the per-database default (slot names
 * are cluster-wide), in `schema` and at open alike. */
static void test_default_slot_from_config(void **state)
{
    fx *f = *state;
    FILE *fp = fopen(f->conf[0], "w");
    assert_non_null(fp);
    fprintf(fp,
            "[relay]\nmetrics_listen = off\n[pipeline p]\nstore = pg_wal\n"
            "broker = stdout\nstore.conninfo = %s\nstore.schema = %s\n"
            "store.publication = %s\n",
            f->t->conninfo, f->t->name, f->t->name);
    fclose(fp);
    char slot[128];
    snprintf(slot, sizeof slot, "outbox_relay_obx_%s_outbox", f->t->name);
    char *schema[] = {BIN, "schema", "pg_wal", "-c", f->conf[0], NULL};
    char *ddl = cli(f, schema, 0);
    char want[256];
    snprintf(want, sizeof want, "pg_create_logical_replication_slot('%s'",
             slot);
    if (!strstr(ddl, want))
        fail_msg("schema has no %s:\n%s", want, ddl);
    free(ddl);
    char *stats[] = {BIN, "stats", "-c", f->conf[0], NULL};
    free(cli(f, stats, 0));
    int64_t n = wt_int(f->t, 0,
                       "SELECT count(*) FROM pg_replication_slots WHERE "
                       "slot_name = '%s'",
                       slot);
    wt_exec(f->t,
            "SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE slot_name = '%s' AND NOT active",
            slot);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_committed_ordered_no_phantoms,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_with_failing_event, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restart_duplicates_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_standby_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demo_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demo_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_poll_then_wal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_switch_wal_then_poll, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_schema_objects_both_orders, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_default_slot_from_config, setup,
                                        teardown),
    };
    /* WT_FILTER=test_switch_* runs just those tests */
    if (getenv("WT_FILTER"))
        cmocka_set_test_filter(getenv("WT_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
