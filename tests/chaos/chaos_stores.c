/* Store adapters for the chaos suite: sqlite on a file of the run's own,
 * pg_poll and pg_wal on a schema of the run's own on the private
 * PostgreSQL the `pg` ctest fixture starts, or on a server of the run's
 * own when the run restarts it (tests/pg/pg_start.sh, pg_restart.sh).
 * Writers use the plain four-column INSERT an application would. */
#include "chaos.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "pg_testlib.h"
#include "proc.h"

/* The writer-facing INSERT; one row per event. */
static void event_text(const chaos_ev *e, char *agg, size_t alen, char *pl,
                       size_t plen)
{
    snprintf(agg, alen, "w%dk%d", e->w, e->key);
    snprintf(pl, plen, "{\"w\":%d,\"seq\":%ld,\"k\":%d}", e->w, e->seq, e->key);
}

/* ---- sqlite ------------------------------------------------------------ */

typedef struct sq_state {
    char path[4300];
} sq_state;

static void sq_setup(chaos_ctx *c)
{
    sq_state *s = calloc(1, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s/outbox.db", c->dir);
    c->store->state = s;
}

static void sq_config(chaos_ctx *c, FILE *fp)
{
    sq_state *s = c->store->state;
    /* A short lease: a killed relay's claims come back within the run. */
    fprintf(fp, "store = sqlite\nstore.path = %s\nstore.lease = 2s\n", s->path);
}

static void sq_ready(chaos_ctx *c)
{
    sq_state *s = c->store->state;
    int64_t end = chaos_mono_ms() + 20000;
    while (chaos_mono_ms() < end) {
        sqlite3 *db;
        if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READONLY, NULL) ==
            SQLITE_OK) {
            sqlite3_stmt *st;
            bool yes = sqlite3_prepare_v2(db, "SELECT 1 FROM outbox", -1, &st,
                                          NULL) == SQLITE_OK;
            sqlite3_finalize(st);
            sqlite3_close(db);
            if (yes)
                return;
        } else {
            sqlite3_close(db);
        }
        chaos_sleep_ms(50);
    }
    fail_msg("the relay did not create %s's outbox table", s->path);
}

static void *sq_writer_open(chaos_ctx *c)
{
    sq_state *s = c->store->state;
    sqlite3 *db;
    if (sqlite3_open(s->path, &db) != SQLITE_OK)
        fail_msg("open %s: %s", s->path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static int sq_write_tx(void *w, const chaos_ev *evs, int n, bool commit)
{
    sqlite3 *db = w;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO outbox (aggregate_type, aggregate_id, "
            "event_type, payload) VALUES ('chaos', ?, 'Chaos', ?)",
            -1, &st, NULL) != SQLITE_OK)
        fail_msg("prepare: %s", sqlite3_errmsg(db));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char agg[32], pl[96];
        event_text(&evs[i], agg, sizeof agg, pl, sizeof pl);
        sqlite3_bind_text(st, 1, agg, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, pl, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    const char *end = rc == 0 && commit ? "COMMIT" : "ROLLBACK";
    if (sqlite3_exec(db, end, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return rc;
}

static void sq_writer_close(void *w)
{
    sqlite3_close(w);
}

static void sq_teardown(chaos_ctx *c)
{
    free(c->store->state);
    c->store->state = NULL;
}

/* ---- PostgreSQL (pg_poll, pg_wal) -------------------------------------- */

typedef struct pg_state {
    char server[1024];
    char schema[64];
    char conninfo[1300]; /* server + search_path */
    char own[4300];      /* the state dir of the run's own server, or "" */
} pg_state;

static PGconn *pg_connect(const char *conninfo)
{
    PGconn *db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(db));
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}

static void pg_exec(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(r);
}

static bool pg_true(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    bool yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
               strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return yes;
}

/* The schema of the run's own, and in it chaos_tx: a row per transaction
 * a writer commits, written in the transaction itself, so a writer whose
 * COMMIT went unanswered (the server restarted) can ask what happened. */
static void pg_setup(chaos_ctx *c)
{
    pg_state *s = calloc(1, sizeof *s);
    c->store->state = s;
    if (c->own_store_server) {
        snprintf(s->own, sizeof s->own, "%s/pg", c->dir);
        snprintf(s->server, sizeof s->server, "%s", pgt_server_start(s->own));
    } else {
        snprintf(s->server, sizeof s->server, "%s", pgt_server_conninfo());
    }
    snprintf(s->schema, sizeof s->schema, "chaos%u", c->id);
    snprintf(s->conninfo, sizeof s->conninfo, "%s options=-csearch_path=%s",
             s->server, s->schema);
    PGconn *db = pg_connect(s->server);
    char sql[512];
    snprintf(sql, sizeof sql,
             "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; "
             "CREATE TABLE %s.chaos_tx (w int, seq bigint, PRIMARY KEY (w, "
             "seq))",
             s->schema, s->schema, s->schema);
    pg_exec(db, sql);
    PQfinish(db);
}

/* What the relays connect with: the server, or the fault proxy in front
 * of it (the server listens on 127.0.0.1 as well as on its socket; the
 * later host and port win). */
static void pg_relay_conninfo(chaos_ctx *c, char *buf, size_t len)
{
    pg_state *s = c->store->state;
    if (c->store_port)
        snprintf(buf, len, "%s host=127.0.0.1 port=%d", s->server,
                 c->store_port);
    else
        snprintf(buf, len, "%s", s->server);
}

static void pg_poll_config(chaos_ctx *c, FILE *fp)
{
    pg_state *s = c->store->state;
    char ci[1300];
    pg_relay_conninfo(c, ci, sizeof ci);
    /* a server silent for 10 s (not 15) is given up, within a 20 s stall */
    fprintf(fp,
            "store = pg_poll\nstore.conninfo = %s\nstore.schema = %s\n"
            "store.channel = %s\nstore.lease = 2s\n"
            "store.query_timeout = 10s\n",
            ci, s->schema, s->schema);
}

static void pg_wal_config(chaos_ctx *c, FILE *fp)
{
    pg_state *s = c->store->state;
    char ci[1300];
    pg_relay_conninfo(c, ci, sizeof ci);
    /* status updates every 100 ms bound what a kill re-streams; a server
     * silent for 10 s (not 30) is given up, within a 20 s stall */
    fprintf(fp,
            "store = pg_wal\nstore.conninfo = %s\nstore.schema = %s\n"
            "store.slot = %s\nstore.publication = %s\n"
            "store.status_interval = 100ms\nstore.query_timeout = 10s\n",
            ci, s->schema, s->schema, s->schema);
}

static void pg_wait(PGconn *db, const char *sql, const char *what)
{
    int64_t end = chaos_mono_ms() + 30000;
    while (!pg_true(db, sql)) {
        if (chaos_mono_ms() > end)
            fail_msg("waited 30 s for %s", what);
        chaos_sleep_ms(50);
    }
}

static void pg_poll_ready(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    PGconn *db = pg_connect(s->server);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT to_regclass('%s.outbox') IS NOT NULL",
             s->schema);
    pg_wait(db, sql, "the relay to create the outbox table");
    PQfinish(db);
}

/* Events committed before the slot exists are not streamed (by design):
 * the writers start once it does. A slot shows in pg_replication_slots as
 * soon as its creation begins, but it streams only what commits after its
 * consistent point, which creation waits for (every transaction running
 * then, of any session, must end first); until then confirmed_flush_lsn is
 * NULL. Writing before that loses the first transactions, by design. */
static void pg_wal_ready(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    pg_poll_ready(c);
    PGconn *db = pg_connect(s->server);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) = 1 FROM pg_replication_slots WHERE "
             "slot_name = '%s' AND confirmed_flush_lsn IS NOT NULL",
             s->schema);
    pg_wait(db, sql, "the relay to create its slot");
    PQfinish(db);
}

typedef struct pg_writer {
    PGconn *db;
} pg_writer;

static void *pg_writer_open(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    pg_writer *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->db = pg_connect(s->conninfo);
    return w;
}

/* A connection again after the server went away (PQreset: the same
 * conninfo); false while it is still down. */
static bool pg_writer_up(pg_writer *w)
{
    if (PQstatus(w->db) == CONNECTION_OK)
        return true;
    PQreset(w->db);
    return PQstatus(w->db) == CONNECTION_OK;
}

/* Whether the transaction of (w, seq) committed, asked on a new
 * connection; the server may take a while to come back. */
static int pg_outcome(pg_writer *w, const chaos_ev *first)
{
    int64_t end = chaos_mono_ms() + 120000;
    while (!pg_writer_up(w)) {
        if (chaos_mono_ms() > end) {
            fprintf(stderr, "chaos writer: the server stayed away; the "
                            "transaction's outcome is unknown\n");
            return -1;
        }
        chaos_sleep_ms(100);
    }
    char wv[16], sv[32];
    snprintf(wv, sizeof wv, "%d", first->w);
    snprintf(sv, sizeof sv, "%ld", first->seq);
    const char *p[2] = {wv, sv};
    PGresult *r = PQexecParams(w->db,
                               "SELECT count(*) FROM chaos_tx WHERE w = $1 "
                               "AND seq = $2",
                               2, NULL, p, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        rc = strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? 0 : -1;
    else
        fprintf(stderr, "chaos writer: %s", PQerrorMessage(w->db));
    PQclear(r);
    return rc;
}

static bool pg_cmd(PGconn *db, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static int pg_write_tx(void *wp, const chaos_ev *evs, int n, bool commit)
{
    pg_writer *w = wp;
    if (!pg_writer_up(w))
        return -1;
    PGconn *db = w->db;
    bool ok = pg_cmd(db, "BEGIN", 0, NULL);
    char wv[16], sv[32];
    snprintf(wv, sizeof wv, "%d", evs[0].w);
    snprintf(sv, sizeof sv, "%ld", evs[0].seq);
    const char *mark[2] = {wv, sv};
    ok = ok &&
         pg_cmd(db, "INSERT INTO chaos_tx (w, seq) VALUES ($1, $2)", 2, mark);
    for (int i = 0; i < n && ok; i++) {
        char agg[32], pl[96];
        event_text(&evs[i], agg, sizeof agg, pl, sizeof pl);
        const char *p[2] = {agg, pl};
        ok = pg_cmd(db,
                    "INSERT INTO outbox (aggregate_type, aggregate_id, "
                    "event_type, payload) VALUES ('chaos', $1, 'Chaos', "
                    "convert_to($2, 'UTF8'))",
                    2, p);
    }
    if (!ok || !commit) {
        /* never committed, whatever this answers */
        pg_cmd(db, "ROLLBACK", 0, NULL);
        return ok ? 0 : -1;
    }
    PGresult *r = PQexec(db, "COMMIT");
    bool done = PQresultStatus(r) == PGRES_COMMAND_OK &&
                strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (done)
        return 0;
    /* The server answered no: not committed. No answer at all: it may
     * have committed before it went away. */
    if (PQstatus(db) == CONNECTION_OK)
        return -1;
    return pg_outcome(w, &evs[0]);
}

static void pg_writer_close(void *wp)
{
    pg_writer *w = wp;
    PQfinish(w->db);
    free(w);
}

/* pg_restart.sh on the run's own server, in a child process: the caller
 * watches the relays meanwhile. */
static pid_t pg_restart(chaos_ctx *c, int down_ms)
{
    pg_state *s = c->store->state;
    char secs[16];
    snprintf(secs, sizeof secs, "%d", (down_ms + 999) / 1000);
    char *argv[] = {"/bin/bash", OBX_SOURCE_DIR "/tests/pg/pg_restart.sh",
                    s->own, secs, NULL};
    return proc_start(argv, NULL, NULL);
}

static int pg_server_port(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    const char *p = strstr(s->server, "port=");
    if (!p)
        fail_msg("no port in the conninfo %s", s->server);
    return atoi(p + 5);
}

static void pg_teardown(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    if (!s)
        return;
    PGconn *db = pg_connect(s->server);
    char sql[512];
    /* the slot goes first (a lingering walsender may hold it a moment) */
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(active_pid) FROM "
             "pg_replication_slots WHERE slot_name = '%s' AND active",
             s->schema);
    PQclear(PQexec(db, sql));
    snprintf(sql, sizeof sql,
             "SELECT pg_drop_replication_slot(slot_name) FROM "
             "pg_replication_slots WHERE slot_name = '%s'",
             s->schema);
    for (int i = 0; i < 50; i++) {
        PGresult *r = PQexec(db, sql);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            break;
        chaos_sleep_ms(100);
    }
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", s->schema);
    PQclear(PQexec(db, sql));
    snprintf(sql, sizeof sql, "DROP PUBLICATION IF EXISTS %s", s->schema);
    PQclear(PQexec(db, sql));
    PQfinish(db);
    if (s->own[0])
        pgt_server_stop(s->own);
    free(s);
    c->store->state = NULL;
}

chaos_store *chaos_store_named(const char *name, int relays)
{
    static const chaos_store sqlite = {.name = "sqlite",
                                       .relays = 1,
                                       .setup = sq_setup,
                                       .config = sq_config,
                                       .ready = sq_ready,
                                       .writer_open = sq_writer_open,
                                       .write_tx = sq_write_tx,
                                       .writer_close = sq_writer_close,
                                       .teardown = sq_teardown};
    static const chaos_store pg_poll = {.name = "pg_poll",
                                        .relays = 1,
                                        .setup = pg_setup,
                                        .config = pg_poll_config,
                                        .ready = pg_poll_ready,
                                        .writer_open = pg_writer_open,
                                        .write_tx = pg_write_tx,
                                        .writer_close = pg_writer_close,
                                        .restart = pg_restart,
                                        .server_port = pg_server_port,
                                        .teardown = pg_teardown};
    /* a hot standby beside the active streamer; a kill re-streams what the
     * slot had not confirmed: up to status_interval's worth and a batch */
    static const chaos_store pg_wal = {.name = "pg_wal",
                                       .relays = 2,
                                       .dups_per_kill = 400,
                                       .restart_replays = true,
                                       .setup = pg_setup,
                                       .config = pg_wal_config,
                                       .ready = pg_wal_ready,
                                       .writer_open = pg_writer_open,
                                       .write_tx = pg_write_tx,
                                       .writer_close = pg_writer_close,
                                       .restart = pg_restart,
                                       .server_port = pg_server_port,
                                       .teardown = pg_teardown};
    const chaos_store *proto = !strcmp(name, "sqlite")    ? &sqlite
                               : !strcmp(name, "pg_poll") ? &pg_poll
                               : !strcmp(name, "pg_wal")  ? &pg_wal
                                                          : NULL;
    if (!proto)
        fail_msg("no chaos store adapter named '%s'", name);
    chaos_store *s = malloc(sizeof *s);
    *s = *proto;
    if (relays > 0)
        s->relays = relays;
    return s;
}
