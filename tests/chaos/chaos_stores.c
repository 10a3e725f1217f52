/* Store adapters for the chaos suite: sqlite on a file of the run's own,
 * pg_poll and pg_wal on a schema of the run's own on the private
 * PostgreSQL the `pg` ctest fixture starts. Writers use the plain
 * four-column INSERT an application would. */
#include "chaos.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

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
} pg_state;

static const char *fixture_conninfo(void)
{
    static char buf[1024];
    const char *path = OBX_BUILD_DIR "/tests/pg/pg_conninfo";
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s is missing: the test PostgreSQL did not start (the "
                 "pg_server_start ctest fixture starts it)",
                 path);
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

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

static void pg_setup(chaos_ctx *c)
{
    pg_state *s = calloc(1, sizeof *s);
    snprintf(s->server, sizeof s->server, "%s", fixture_conninfo());
    snprintf(s->schema, sizeof s->schema, "chaos%u", c->id);
    snprintf(s->conninfo, sizeof s->conninfo, "%s options=-csearch_path=%s",
             s->server, s->schema);
    PGconn *db = pg_connect(s->server);
    char sql[256];
    snprintf(sql, sizeof sql,
             "DROP SCHEMA IF EXISTS %s CASCADE; CREATE "
             "SCHEMA %s",
             s->schema, s->schema);
    pg_exec(db, sql);
    PQfinish(db);
    c->store->state = s;
}

static void pg_poll_config(chaos_ctx *c, FILE *fp)
{
    pg_state *s = c->store->state;
    fprintf(fp,
            "store = pg_poll\nstore.conninfo = %s\nstore.schema = %s\n"
            "store.channel = %s\nstore.lease = 2s\n",
            s->server, s->schema, s->schema);
}

static void pg_wal_config(chaos_ctx *c, FILE *fp)
{
    pg_state *s = c->store->state;
    /* status updates every 100 ms bound what a kill re-streams */
    fprintf(fp,
            "store = pg_wal\nstore.conninfo = %s\nstore.schema = %s\n"
            "store.slot = %s\nstore.publication = %s\n"
            "store.status_interval = 100ms\n",
            s->server, s->schema, s->schema, s->schema);
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

static void *pg_writer_open(chaos_ctx *c)
{
    pg_state *s = c->store->state;
    return pg_connect(s->conninfo);
}

static int pg_write_tx(void *w, const chaos_ev *evs, int n, bool commit)
{
    PGconn *db = w;
    PGresult *r = PQexec(db, "BEGIN");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    for (int i = 0; i < n && ok; i++) {
        char agg[32], pl[96];
        event_text(&evs[i], agg, sizeof agg, pl, sizeof pl);
        const char *p[2] = {agg, pl};
        r = PQexecParams(db,
                         "INSERT INTO outbox (aggregate_type, aggregate_id, "
                         "event_type, payload) VALUES ('chaos', $1, 'Chaos', "
                         "convert_to($2, 'UTF8'))",
                         2, NULL, p, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "chaos writer: %s", PQerrorMessage(db));
        PQclear(r);
    }
    r = PQexec(db, ok && commit ? "COMMIT" : "ROLLBACK");
    ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static void pg_writer_close(void *w)
{
    PQfinish(w);
}

static void pg_teardown(chaos_ctx *c)
{
    pg_state *s = c->store->state;
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
                                        .teardown = pg_teardown};
    /* a hot standby beside the active streamer; a kill re-streams what the
     * slot had not confirmed: up to status_interval's worth and a batch */
    static const chaos_store pg_wal = {.name = "pg_wal",
                                       .relays = 2,
                                       .dups_per_kill = 400,
                                       .setup = pg_setup,
                                       .config = pg_wal_config,
                                       .ready = pg_wal_ready,
                                       .writer_open = pg_writer_open,
                                       .write_tx = pg_write_tx,
                                       .writer_close = pg_writer_close,
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
