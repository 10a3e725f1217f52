/* End to end on PostgreSQL: real outbox-relay processes (run mode) on one
 * outbox table, application writers on their own connections, the stdout
 * and chaos brokers writing JSON lines to files.
 *
 * What the database holds at the end is the truth about what committed
 * (ack_mode=mark keeps every row): every row must be in the outputs, and
 * nothing else may be (rolled-back events carry "rb":1 and must never
 * show up). Per key, the payload's seq follows commit order. */
#include <pthread.h>
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
#include <jansson.h>

#include "pg_testlib.h"
#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"
#define N_RELAYS 3
#define N_WRITERS 2
#define KEYS_PER_WRITER 16
#define MAX_EVENTS 20000

typedef struct fx {
    pgt *t;
    char *dir;
    char srv[4200]; /* state dir of a private server, "" when none */
    char conf[N_RELAYS][4200], out[N_RELAYS][4200], err[N_RELAYS][4200];
    pid_t pid[N_RELAYS];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->t = pgt_new();
    f->dir = obx_test_tmpdir();
    for (int i = 0; i < N_RELAYS; i++) {
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
    for (int i = 0; i < N_RELAYS; i++)
        if (f->pid[i] > 0) {
            kill(f->pid[i], SIGKILL);
            proc_wait(f->pid[i], 5000);
        }
    pgt_free(f->t);
    if (f->srv[0])
        pgt_server_stop(f->srv);
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Relay i's config: pg_poll on this test's schema, `broker` writing to
 * out[i], short lease and poll interval, quick circuit probes. */
static void write_conf(fx *f, int i, const char *broker, const char *extra)
{
    FILE *fp = fopen(f->conf[i], "w");
    assert_non_null(fp);
    fprintf(fp,
            "[relay]\nlog_level = info\nmetrics_listen = off\n"
            "shutdown_grace = 20s\n"
            "[pipeline p]\nstore = pg_poll\nbroker = %s\n"
            "store.conninfo = %s\nstore.owner = relay-%d\n"
            "store.lease = 2s\nbroker.output = %s\npoll_interval = 200ms\n"
            "batch_size = 25\ncircuit.backoff = 100ms..1s\n"
            "retry.backoff = 10ms..50ms\n%s\n",
            broker, f->t->conninfo, i, f->out[i], extra ? extra : "");
    fclose(fp);
}

static pid_t start_relay(fx *f, int i)
{
    char *argv[] = {BIN, "run", "-c", f->conf[i], NULL};
    f->pid[i] = proc_start(argv, NULL, f->err[i]);
    return f->pid[i];
}

static void stop_relay(fx *f, int i)
{
    kill(f->pid[i], SIGTERM);
    int rc = proc_wait(f->pid[i], 30000);
    f->pid[i] = 0;
    if (rc != 0) {
        char *log = slurp(f->err[i]);
        fail_msg("relay %d exited with %d:\n%s", i, rc, log ? log : "");
    }
}

/* The DDL from `outbox-relay schema pg_poll`, applied with psql's
 * protocol (one multi-statement string) on the test schema. */
static void create_schema(fx *f)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/schema.sql", f->dir);
    char *argv[] = {BIN, "schema", "pg_poll", NULL};
    assert_int_equal(proc_run(argv, path, f->err[0], 10000), 0);
    char *ddl = slurp(path);
    assert_non_null(strstr(ddl, "CREATE TABLE"));
    pgt_exec(f->t, "%s", ddl);
    free(ddl);
}

/* ---- reading the outputs ---- */

/* One published line. */
typedef struct line {
    int n;   /* the event's number (unique per test) */
    int seq; /* per-key sequence, in commit order */
    int rb;  /* written by a transaction that rolled back */
    char key[32];
} line;

static size_t read_lines(const char *path, line **out)
{
    char *s = slurp(path);
    size_t cap = 1024, n = 0;
    line *v = malloc(cap * sizeof *v);
    for (char *p = s ? strtok(s, "\n") : NULL; p; p = strtok(NULL, "\n")) {
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

/* Per key, seq must grow along one output: strictly, or (dups allowed)
 * never go back. */
static void check_order(const char *path, const line *v, size_t n,
                        bool dups_allowed)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (strcmp(v[i].key, v[j].key) != 0)
                continue;
            bool bad =
                dups_allowed ? v[j].seq < v[i].seq : v[j].seq <= v[i].seq;
            if (bad)
                fail_msg("%s: key %s: seq %d (line %zu) after seq %d (line "
                         "%zu)",
                         path, v[i].key, v[j].seq, j + 1, v[i].seq, i + 1);
            break; /* the next line of this key is enough */
        }
}

/* The event numbers the database holds (= what committed). */
static int committed_events(fx *f, int *committed, int max)
{
    PGresult *r =
        PQexec(pgt_db(f->t), "SELECT (convert_from(payload, 'UTF8')::jsonb ->> "
                             "'n')::int FROM outbox");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        int n = atoi(PQgetvalue(r, i, 0));
        assert_true(n >= 0 && n < max);
        committed[n] = 1;
    }
    PQclear(r);
    return rows;
}

/* Wait until nothing is pending (everything published and acked); on a
 * timeout the relays' logs go with the failure. */
static void wait_drained(fx *f, int timeout_ms)
{
    int64_t end = pgt_mono_ms() + timeout_ms;
    int64_t left;
    while ((left = pgt_int(f->t, -1,
                           "SELECT count(*) FROM outbox WHERE "
                           "published_at IS NULL")) > 0) {
        if (pgt_mono_ms() > end) {
            for (int i = 0; i < N_RELAYS; i++) {
                int st = 0;
                if (f->pid[i] > 0 && waitpid(f->pid[i], &st, WNOHANG) > 0) {
                    fprintf(stderr, "--- relay %d is gone: %s %d\n", i,
                            WIFSIGNALED(st) ? "signal" : "exit",
                            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                    f->pid[i] = 0;
                }
                char *log = slurp(f->err[i]);
                if (log) /* cmocka's print_error() cuts long text */
                    fprintf(stderr, "--- relay %d log:\n%s\n", i, log);
                free(log);
            }
            fail_msg("still %lld events pending after %d ms", (long long)left,
                     timeout_ms);
        }
        pgt_sleep_ms(100);
    }
}

/* ---- writers ---- */

typedef struct writer {
    pgt *t;
    int id;
    int txns;
    int pause_us;
    int seq[KEYS_PER_WRITER]; /* next committed seq per key */
    int next_n;               /* event numbers: id * 100000 + counter */
    int rolled_back;
    bool tolerate_outage; /* reconnect and go on when the server goes */
    int failed;           /* transactions lost to an outage */
    char error[512];      /* set by the thread when it gave up */
} writer;

static bool writer_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* One transaction of 1-4 events on random keys; every 5th rolls back. */
static bool writer_txn(writer *w, PGconn *c, unsigned *rng)
{
    int tmp[KEYS_PER_WRITER];
    memcpy(tmp, w->seq, sizeof tmp);
    bool rollback = rand_r(rng) % 5 == 0;
    bool ok = writer_sql(c, "BEGIN");
    int events = 1 + rand_r(rng) % 4;
    for (int e = 0; ok && e < events; e++) {
        int k = rand_r(rng) % KEYS_PER_WRITER;
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload) VALUES ('order', 'w%d-%d', 'Tick', "
                 "convert_to('{\"n\":%d,\"seq\":%d,\"rb\":%d}', 'UTF8'))",
                 w->id, k, w->id * 100000 + w->next_n++, tmp[k]++,
                 rollback ? 1 : 0);
        ok = writer_sql(c, sql);
    }
    if (!ok || rollback) {
        writer_sql(c, "ROLLBACK");
        w->rolled_back += ok;
        return ok;
    }
    if (!writer_sql(c, "COMMIT"))
        return false;
    memcpy(w->seq, tmp, sizeof tmp);
    return true;
}

/* The server went away: reconnect until it answers again. */
static void writer_reconnect(PGconn *c)
{
    for (int i = 0; i < 400; i++) {
        PGresult *r =
            PQstatus(c) == CONNECTION_OK ? PQexec(c, "SELECT 1") : NULL;
        bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            return;
        PQreset(c);
        usleep(50000);
    }
}

/* Runs on its own thread: failures are recorded in w->error for the main
 * thread to report (cmocka's assertions are not for other threads). */
static void *writer_main(void *arg)
{
    writer *w = arg;
    unsigned rng = (unsigned)(w->id * 7919 + 17);
    PGconn *c = PQconnectdb(w->t->conninfo);
    for (int i = 0; i < w->txns && !w->error[0]; i++) {
        if (!writer_txn(w, c, &rng)) {
            if (!w->tolerate_outage) {
                snprintf(w->error, sizeof w->error, "writer %d: %s", w->id,
                         PQerrorMessage(c));
                break;
            }
            /* Unknown whether a failed COMMIT landed; the seqs of this
             * transaction are skipped either way, so per-key order
             * still holds among what the database has. */
            for (int k = 0; k < KEYS_PER_WRITER; k++)
                w->seq[k] += 4;
            w->failed++;
            writer_reconnect(c);
        }
        if (w->pause_us)
            usleep((useconds_t)w->pause_us);
    }
    PQfinish(c);
    return NULL;
}

static void join_writer(pthread_t th, const writer *w)
{
    pthread_join(th, NULL);
    if (w->error[0])
        fail_msg("%s", w->error);
}

/* ---- claim log: cross-instance order, checked in the database ---- */

/* Every insert, claim and ack of the outbox is logged by triggers inside
 * the transaction that made it, with its transaction id; a claim also
 * logs the snapshot its statement saw. The claim of an event is correct
 * only if every earlier event of its key that this snapshot could see was
 * acked in a transaction the snapshot saw, claimed in the same
 * transaction, or in a live claim of the same relay as it claimed (not
 * released from it): a claim ahead goes past that relay's own batch out
 * at the broker, whose results its engine waits for. */
static void install_claim_log(fx *f)
{
    pgt_exec(f->t,
             "CREATE TABLE claim_log (xid xid8 NOT NULL, snap pg_snapshot, "
             "id bigint NOT NULL, k text NOT NULL, kind text NOT NULL, "
             "owner text, past bigint[]);"
             "CREATE INDEX ON claim_log (k, id);"
             "CREATE INDEX ON claim_log (id, kind);"
             "CREATE FUNCTION log_outbox() RETURNS trigger LANGUAGE plpgsql "
             "AS $$ BEGIN "
             "IF TG_OP = 'INSERT' THEN "
             "  INSERT INTO claim_log VALUES (pg_current_xact_id(), NULL, "
             "    NEW.id, NEW.aggregate_id, 'insert', NULL, NULL); "
             "ELSE "
             "  IF OLD.published_at IS NULL AND NEW.published_at IS NOT "
             "    NULL THEN "
             "    INSERT INTO claim_log VALUES (pg_current_xact_id(), NULL, "
             "      NEW.id, NEW.aggregate_id, 'ack', NULL, NULL); "
             "  END IF; "
             "END IF; RETURN NULL; END $$;"
             "CREATE TRIGGER log_outbox AFTER INSERT OR UPDATE ON outbox "
             "FOR EACH ROW EXECUTE FUNCTION log_outbox();"
             /* a claim is its claims row (pg_poll's claim statement);
              * past: the events of the same relay's other claims, live
              * as it claims (the claim expired the lapsed ones first) */
             "CREATE FUNCTION log_claim() RETURNS trigger LANGUAGE plpgsql "
             "AS $$ BEGIN "
             "INSERT INTO claim_log SELECT pg_current_xact_id(), "
             "  pg_current_snapshot(), o.id, o.aggregate_id, 'claim', "
             "  NEW.owner, (SELECT array_agg(u) FROM outbox_claims AS p, "
             "  unnest(p.ids) AS u WHERE p.owner = NEW.owner AND "
             "  p.claim_id <> NEW.claim_id) FROM outbox o "
             "  WHERE o.id = ANY(NEW.ids); "
             "RETURN NULL; END $$;"
             "CREATE TRIGGER log_claim AFTER INSERT ON outbox_claims "
             "FOR EACH ROW EXECUTE FUNCTION log_claim()");
}

static void check_claim_log(fx *f)
{
    int64_t claims = pgt_int(f->t, 0,
                             "SELECT count(*) FROM claim_log "
                             "WHERE kind = 'claim'");
    int64_t bad = pgt_int(
        f->t, -1,
        "SELECT count(*) FROM claim_log c JOIN claim_log y ON y.kind = "
        "'insert' AND y.k = c.k AND y.id < c.id AND "
        "pg_visible_in_snapshot(y.xid, c.snap) "
        "WHERE c.kind = 'claim' AND NOT EXISTS (SELECT 1 FROM claim_log a "
        "WHERE a.id = y.id AND a.kind = 'ack' AND "
        "pg_visible_in_snapshot(a.xid, c.snap)) AND NOT EXISTS (SELECT 1 "
        "FROM claim_log c2 WHERE c2.id = y.id AND c2.kind = 'claim' AND "
        "c2.xid = c.xid) AND NOT coalesce(y.id = ANY (c.past), false)");
    if (bad != 0)
        fail_msg("%lld of %lld claims took an event while an earlier one "
                 "of its key was unpublished, and neither in the same "
                 "claim nor in a live claim of the same relay",
                 (long long)bad, (long long)claims);
    /* and ack order per key follows seq, across all relays */
    int64_t swapped = pgt_int(
        f->t, -1,
        "WITH e AS (SELECT aggregate_id AS k, published_at AS p, "
        "(convert_from(payload, 'UTF8')::jsonb ->> 'seq')::int AS seq "
        "FROM outbox) SELECT count(*) FROM e a JOIN e b ON a.k = b.k AND "
        "a.seq < b.seq AND a.p > b.p");
    assert_int_equal(swapped, 0);
}

/* ---- the tests ---- */

/* Three relays, two writers (a fifth of their transactions roll back),
 * two transactions that take low ids and commit late, and one relay
 * killed with SIGKILL mid-run; one of the survivors claims ahead, the
 * other one batch at a time. */
static void test_three_relays_two_writers(void **state)
{
    fx *f = *state;
    create_schema(f);
    install_claim_log(f);
    /* relay 1 is slow (a broker that takes 150 ms a batch): when it is
     * killed it almost surely holds leases on events it never published */
    /* relay 2 claims one batch at a time (claim_ahead = false), relay 0
     * ahead (the default): both ways share the table and its keys */
    static const char *const extra[N_RELAYS] = {NULL, "broker.delay = 150ms",
                                                "claim_ahead = false"};
    for (int i = 0; i < N_RELAYS; i++) {
        write_conf(f, i, i == 1 ? "chaos" : "stdout", extra[i]);
        start_relay(f, i);
    }
    /* low ids, committed late: key late-A gets seq 1 here because the
     * other late-A event below commits first (commit order) */
    PGconn *late = pgt_connect(f->t);
    pgt_exec_on(late, "BEGIN");
    pgt_exec_on(late, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                      "event_type, payload) VALUES "
                      "('o', 'late-A', 'Late', convert_to('{\"n\":90000,"
                      "\"seq\":1,\"rb\":0}', 'UTF8')), "
                      "('o', 'late-B', 'Late', convert_to('{\"n\":90001,"
                      "\"seq\":0,\"rb\":0}', 'UTF8'))");
    writer w[N_WRITERS];
    pthread_t th[N_WRITERS];
    for (int i = 0; i < N_WRITERS; i++) {
        w[i] = (writer){.t = f->t, .id = i, .txns = 700, .pause_us = 2000};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    pgt_sleep_ms(600);
    pgt_exec(f->t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                   "event_type, payload) VALUES ('o', 'late-A', 'Late', "
                   "convert_to('{\"n\":90002,\"seq\":0,\"rb\":0}', 'UTF8'))");
    /* Claims of one table take turns (pg_poll's claim lock), and the
     * relay that comes first takes what is pending, so the slow relay
     * does not win every round: wait (while the writers run) until it
     * holds leases that outlive the kill below. */
    int64_t orphans = 0;
    for (int tries = 0; tries < 150 && orphans == 0; tries++) {
        orphans = pgt_int(f->t, 0,
                          "SELECT count(*) FROM outbox o JOIN outbox_claims "
                          "c ON o.id = ANY(c.ids) WHERE c.owner = 'relay-1' "
                          "AND published_at IS NULL AND c.expires_at > "
                          "now() + interval '500 ms'");
        if (orphans == 0)
            pgt_sleep_ms(20);
    }
    kill(f->pid[1], SIGKILL); /* mid-run, holding leases */
    assert_int_equal(proc_wait(f->pid[1], 5000), 128 + SIGKILL);
    f->pid[1] = 0;
    orphans = pgt_int(f->t, 0,
                      "SELECT count(*) FROM outbox o JOIN outbox_claims c "
                      "ON o.id = ANY(c.ids) WHERE c.owner = 'relay-1' AND "
                      "published_at IS NULL");
    assert_true(orphans > 0);
    pgt_sleep_ms(600);
    pgt_exec_on(late, "COMMIT");
    PQfinish(late);
    for (int i = 0; i < N_WRITERS; i++)
        join_writer(th[i], &w[i]);
    wait_drained(f, 60000);
    stop_relay(f, 0);
    stop_relay(f, 2);

    int *committed = calloc(MAX_EVENTS * 10, sizeof *committed);
    int rows = committed_events(f, committed, MAX_EVENTS * 10);
    assert_true(rows > 1500);
    assert_true(w[0].rolled_back > 0 && w[1].rolled_back > 0);
    int *seen = calloc(MAX_EVENTS * 10, sizeof *seen);
    int *seen_survivors = calloc(MAX_EVENTS * 10, sizeof *seen_survivors);
    size_t total = 0;
    for (int i = 0; i < N_RELAYS; i++) {
        line *v;
        size_t n = read_lines(f->out[i], &v);
        total += n;
        check_order(f->out[i], v, n, false);
        for (size_t j = 0; j < n; j++) {
            if (v[j].rb || !committed[v[j].n])
                fail_msg("%s: event %d was never committed", f->out[i], v[j].n);
            seen[v[j].n]++;
            seen_survivors[v[j].n] += i != 1;
        }
        if (i != 1)
            assert_true(n > 0); /* everyone took a share */
        free(v);
    }
    int dups = 0;
    for (int n = 0; n < MAX_EVENTS * 10; n++) {
        if (committed[n] && !seen[n])
            fail_msg("event %d committed but never published", n);
        /* a second copy only for what the killed relay had in flight */
        if (seen_survivors[n] > 1)
            fail_msg("event %d published %d times by the survivors", n,
                     seen_survivors[n]);
        dups += seen[n] > 1;
    }
    print_message("%d committed events, %zu lines, %lld leased by the "
                  "killed relay, %d duplicates, %d + %d rolled-back "
                  "transactions\n",
                  rows, total, (long long)orphans, dups, w[0].rolled_back,
                  w[1].rolled_back);
    check_claim_log(f);
    free(committed);
    free(seen);
    free(seen_survivors);
}

/* PostgreSQL restarts while the relay runs and writers write: the relay
 * reconnects by itself (circuit breaker, no restart) and nothing that
 * committed is lost. Duplicates are allowed: acks lost with the
 * connection are published again after the lease. The test restarts a
 * server of its own, not the one tests running in parallel share. */
static void test_database_restart(void **state)
{
    fx *f = *state;
    snprintf(f->srv, sizeof f->srv, "%s/server", f->dir);
    const char *server = pgt_server_start(f->srv);
    pgt_free(f->t);
    f->t = pgt_new_on(server);
    write_conf(f, 0, "stdout", NULL);
    /* the relay creates the schema itself (create_schema = true) */
    start_relay(f, 0);
    int64_t end = pgt_mono_ms() + 10000;
    while (pgt_int(f->t, 0,
                   "SELECT count(*) FROM pg_tables WHERE "
                   "tablename = 'outbox' AND schemaname = '%s'",
                   f->t->schema) == 0) {
        assert_true(pgt_mono_ms() < end);
        pgt_sleep_ms(50);
    }
    writer w = {.t = f->t,
                .id = 0,
                .txns = 900,
                .pause_us = 3000,
                .tolerate_outage = true};
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &w);
    pgt_sleep_ms(1000);
    PQfinish(f->t->db);
    f->t->db = NULL;
    pgt_server_restart(f->srv, 1);
    join_writer(th, &w);
    wait_drained(f, 60000);
    stop_relay(f, 0);

    int *committed = calloc(MAX_EVENTS, sizeof *committed);
    int rows = committed_events(f, committed, MAX_EVENTS);
    int *seen = calloc(MAX_EVENTS, sizeof *seen);
    line *v;
    size_t n = read_lines(f->out[0], &v);
    check_order(f->out[0], v, n, true);
    for (size_t j = 0; j < n; j++) {
        if (v[j].rb || !committed[v[j].n])
            fail_msg("event %d was never committed", v[j].n);
        seen[v[j].n]++;
    }
    for (int i = 0; i < MAX_EVENTS; i++)
        if (committed[i] && !seen[i])
            fail_msg("event %d committed but never published", i);
    char *log = slurp(f->err[0]);
    assert_non_null(strstr(log, "connection lost"));
    assert_non_null(strstr(log, "reconnected"));
    print_message("%d committed events, %zu lines, %d writer transactions "
                  "lost to the restart\n",
                  rows, n, w.failed);
    free(log);
    free(v);
    free(committed);
    free(seen);
}

static char *run_capture(fx *f, char **argv, int want_rc)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/cli.out", f->dir);
    int rc = proc_run(argv, path, f->err[2], 30000);
    char *out = slurp(path);
    if (rc != want_rc) {
        char *e = slurp(f->err[2]);
        fail_msg("%s %s: exit %d, expected %d\n%s%s", argv[1], argv[2], rc,
                 want_rc, out ? out : "", e ? e : "");
    }
    return out;
}

/* The operator's commands against PostgreSQL: check --connect, demo,
 * run --once, stats, dead list/show/requeue/purge; secrets never shown. */
static void test_cli(void **state)
{
    fx *f = *state;
    write_conf(f, 0, "chaos", "broker.permanent_types = Poison");
    char *check[] = {BIN, "check", "--connect", "-c", f->conf[0], NULL};
    free(run_capture(f, check, 0));
    char *demo[] = {BIN, "demo", "-c", f->conf[0], "-n", "20", NULL};
    free(run_capture(f, demo, 0));
    assert_int_equal(pgt_int(f->t, -1, "SELECT count(*) FROM orders"), 20);
    pgt_exec(f->t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                   "event_type, payload, headers) VALUES ('order', '1', "
                   "'Poison', 'bad', '{\"trace\": \"t-1\"}')");
    char *once[] = {BIN, "run", "-c", f->conf[0], "--once", NULL};
    free(run_capture(f, once, 0));
    assert_int_equal(count_lines(f->out[0]), 20);
    char *s = slurp(f->out[0]);
    assert_non_null(strstr(s, "\"event_type\":\"OrderCreated\""));
    assert_non_null(strstr(s, "\"topic\":\"outbox.order\""));
    free(s);

    char *stats[] = {BIN, "stats", "-c", f->conf[0], NULL};
    s = run_capture(f, stats, 0);
    assert_non_null(strstr(s, "pending 0"));
    assert_non_null(strstr(s, "dead 1"));
    free(s);
    char *list[] = {BIN, "dead", "list", "-c", f->conf[0], NULL};
    s = run_capture(f, list, 0);
    assert_non_null(strstr(s, "Poison"));
    assert_non_null(strstr(s, "permanent"));
    free(s);
    char id[64];
    PGresult *r = PQexec(pgt_db(f->t), "SELECT event_id FROM outbox WHERE "
                                       "dead_at IS NOT NULL");
    assert_int_equal(PQntuples(r), 1);
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char *show[] = {BIN, "dead", "show", id, "-c", f->conf[0], NULL};
    s = run_capture(f, show, 0);
    assert_non_null(strstr(s, id));
    assert_non_null(strstr(s, "payload:        bad"));
    assert_non_null(strstr(s, "trace: t-1"));
    free(s);
    /* the broker is fixed; requeue and the event goes out */
    write_conf(f, 0, "chaos", NULL);
    char *rq[] = {BIN, "dead", "requeue", "--all", "-c", f->conf[0], NULL};
    s = run_capture(f, rq, 0);
    assert_non_null(strstr(s, "requeued 1 dead letter"));
    free(s);
    free(run_capture(f, once, 0));
    s = slurp(f->out[0]);
    assert_non_null(strstr(s, "\"event_type\":\"Poison\""));
    free(s);
    char *purge[] = {BIN, "dead", "purge", "--all", "-c", f->conf[0], NULL};
    s = run_capture(f, purge, 0);
    assert_non_null(strstr(s, "purged 0 dead letters"));
    free(s);

    /* an unreachable server: check --connect fails as a runtime failure
     * (exit 1; 2 is for config errors), naming the target but never the
     * password, in its output and its log */
    FILE *fp = fopen(f->conf[1], "w");
    fprintf(fp, "[relay]\nmetrics_listen = off\n[pipeline p]\nstore = "
                "pg_poll\nbroker = stdout\nstore.conninfo = host=127.0.0.1 "
                "port=1 user=relay password=Sw0rdfish connect_timeout=2\n");
    fclose(fp);
    char *bad[] = {BIN, "check", "--connect", "-c", f->conf[1], NULL};
    s = run_capture(f, bad, 1);
    char *e = slurp(f->err[2]);
    assert_null(strstr(s, "Sw0rdfish"));
    assert_null(strstr(e, "Sw0rdfish"));
    assert_non_null(strstr(e, "127.0.0.1"));
    free(s);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_three_relays_two_writers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_database_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    /* PGT_FILTER=test_database_restart runs just that test */
    if (getenv("PGT_FILTER"))
        cmocka_set_test_filter(getenv("PGT_FILTER"));
    return cmocka_run_group_tests_name("pg_e2e", tests, NULL, NULL);
}
