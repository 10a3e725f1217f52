/* Store ceilings: the minimal correct claim + mark on a minimal outbox
 * table (primary key plus one partial "pending" index), with the library
 * and batch size the store plugins use. This is the physical limit a
 * polling store can reach on this machine; the relay's own statements
 * are measured against it, so a slow statement cannot look "at its
 * ceiling".
 *
 *   sqlite: WAL mode, synchronous=NORMAL (as stores/sqlite opens it);
 *           BEGIN IMMEDIATE; UPDATE ... RETURNING the batch with a lease;
 *           COMMIT; then mark each row published in one transaction.
 *   pg:     a lease taken with FOR UPDATE SKIP LOCKED (several relays can
 *           share the table), then one UPDATE ... = ANY($1) marking the
 *           batch published, each its own autocommit statement. */
#include "bench.h"

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

/* ---- sqlite ----------------------------------------------------------- */

static void sq_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        bench_die(sql, err ? err : sqlite3_errmsg(db));
}

static sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        bench_die(sql, sqlite3_errmsg(db));
    return st;
}

void bench_store_sqlite(const bench_args *a)
{
    if (!a->target)
        bench_die("store-sqlite", "-t DB_PATH is required");
    unlink(a->target);
    sqlite3 *db;
    if (sqlite3_open(a->target, &db) != SQLITE_OK)
        bench_die(a->target, sqlite3_errmsg(db));
    sq_exec(db, "PRAGMA journal_mode=WAL");
    sq_exec(db, "PRAGMA synchronous=NORMAL");
    sq_exec(db, "CREATE TABLE outbox_min (id INTEGER PRIMARY KEY, key TEXT "
                "NOT NULL, payload BLOB NOT NULL, locked_until INTEGER, "
                "published_at INTEGER);"
                "CREATE INDEX outbox_min_pending ON outbox_min (id) WHERE "
                "published_at IS NULL");
    /* The same events the relay drains, written in one transaction. */
    char fill[512];
    snprintf(fill, sizeof fill,
             "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g "
             "WHERE x < %ld) INSERT INTO outbox_min (key, payload) SELECT "
             "'o' || (x %% %ld), substr('{\"seq\":' || x || ',\"k\":' || "
             "(x %% %ld) || ',\"t\":0,\"pad\":\"' || "
             "replace(hex(zeroblob(128)), '0', 'x'), "
             "1, %d) || '\"}' FROM g",
             a->n - 1, a->keys, a->keys, BENCH_PAYLOAD - 2);
    sq_exec(db, "BEGIN");
    sq_exec(db, fill);
    sq_exec(db, "COMMIT");

    sqlite3_stmt *claim = sq_prepare(
        db, "UPDATE outbox_min SET locked_until = ?1 WHERE id IN (SELECT id "
            "FROM outbox_min WHERE published_at IS NULL AND (locked_until "
            "IS NULL OR locked_until < ?2) ORDER BY id LIMIT ?3) RETURNING "
            "id, key, payload");
    sqlite3_stmt *mark =
        sq_prepare(db, "UPDATE outbox_min SET published_at = ?2, "
                       "locked_until = NULL WHERE id = ?1");
    int64_t *ids = malloc(sizeof *ids * (size_t)a->batch);
    long done = 0;
    bench_clock clk = bench_clock_start();
    for (;;) {
        long k = 0;
        int64_t now = bench_wall_us();
        sq_exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(claim, 1, now + 60000000);
        sqlite3_bind_int64(claim, 2, now);
        sqlite3_bind_int64(claim, 3, a->batch);
        int rc;
        while ((rc = sqlite3_step(claim)) == SQLITE_ROW) {
            /* read what a relay reads, so the copy is paid */
            ids[k++] = sqlite3_column_int64(claim, 0);
            (void)sqlite3_column_text(claim, 1);
            (void)sqlite3_column_blob(claim, 2);
        }
        if (rc != SQLITE_DONE)
            bench_die("claim", sqlite3_errmsg(db));
        sqlite3_reset(claim);
        sq_exec(db, "COMMIT");
        if (k == 0)
            break;
        sq_exec(db, "BEGIN IMMEDIATE");
        now = bench_wall_us();
        for (long i = 0; i < k; i++) {
            sqlite3_bind_int64(mark, 1, ids[i]);
            sqlite3_bind_int64(mark, 2, now);
            if (sqlite3_step(mark) != SQLITE_DONE)
                bench_die("mark", sqlite3_errmsg(db));
            sqlite3_reset(mark);
        }
        sq_exec(db, "COMMIT");
        done += k;
    }
    bench_clock_stop(&clk);
    if (done != a->n)
        bench_die("store-sqlite", "not every row was claimed");
    bench_clock_print(&clk, done);
    free(ids);
    sqlite3_finalize(claim);
    sqlite3_finalize(mark);
    sqlite3_close(db);
}

/* ---- PostgreSQL ------------------------------------------------------- */

static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        bench_die(sql, PQerrorMessage(c));
    PQclear(r);
}

static void pg_prepare(PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        bench_die(sql, PQerrorMessage(c));
    PQclear(r);
}

void bench_store_pg(const bench_args *a)
{
    if (!a->target)
        bench_die("store-pg", "-t CONNINFO is required");
    PGconn *c = PQconnectdb(a->target);
    if (PQstatus(c) != CONNECTION_OK)
        bench_die("connect", PQerrorMessage(c));
    pg_exec(c, "SET client_min_messages = warning");
    pg_exec(c, "DROP TABLE IF EXISTS bench_outbox_min");
    pg_exec(c, "CREATE TABLE bench_outbox_min (id bigserial PRIMARY KEY, "
               "key text NOT NULL, payload bytea NOT NULL, locked_until "
               "timestamptz, published_at timestamptz)");
    pg_exec(c, "CREATE INDEX bench_outbox_min_pending ON bench_outbox_min "
               "(id) WHERE published_at IS NULL");
    char fill[512];
    snprintf(fill, sizeof fill,
             "INSERT INTO bench_outbox_min (key, payload) SELECT 'o' || (g "
             "%% %ld), convert_to(rpad('{\"seq\":' || g || ',\"k\":' || (g "
             "%% %ld) || ',\"t\":0,\"pad\":\"', %d, 'x') || '\"}', 'UTF8') "
             "FROM generate_series(0, %ld) g",
             a->keys, a->keys, BENCH_PAYLOAD - 2, a->n - 1);
    pg_exec(c, fill);
    /* As autovacuum would have by the time a relay catches up. */
    pg_exec(c, "VACUUM ANALYZE bench_outbox_min");
    pg_prepare(c, "claim",
               "UPDATE bench_outbox_min SET locked_until = now() + interval "
               "'60 s' WHERE id IN (SELECT id FROM bench_outbox_min WHERE "
               "published_at IS NULL AND (locked_until IS NULL OR "
               "locked_until < now()) ORDER BY id LIMIT $1 FOR UPDATE SKIP "
               "LOCKED) RETURNING id, key, payload");
    pg_prepare(c, "mark",
               "UPDATE bench_outbox_min SET published_at = now(), "
               "locked_until = NULL WHERE id = ANY($1::int8[])");
    char batch[32];
    snprintf(batch, sizeof batch, "%ld", a->batch);
    size_t cap = (size_t)a->batch * 21 + 3;
    char *ids = malloc(cap);
    long done = 0;
    bench_clock clk = bench_clock_start();
    for (;;) {
        const char *cp[1] = {batch};
        /* binary results, as the pg_poll store reads them */
        PGresult *r = PQexecPrepared(c, "claim", 1, cp, NULL, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            bench_die("claim", PQerrorMessage(c));
        int rows = PQntuples(r);
        size_t len = 0;
        ids[len++] = '{';
        for (int i = 0; i < rows; i++) {
            uint64_t be;
            memcpy(&be, PQgetvalue(r, i, 0), 8);
            len += (size_t)snprintf(ids + len, cap - len, "%s%" PRId64,
                                    i ? "," : "", (int64_t)be64toh(be));
        }
        ids[len++] = '}';
        ids[len] = '\0';
        PQclear(r);
        if (rows == 0)
            break;
        const char *mp[1] = {ids};
        r = PQexecPrepared(c, "mark", 1, mp, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            bench_die("mark", PQerrorMessage(c));
        PQclear(r);
        done += rows;
    }
    bench_clock_stop(&clk);
    if (done != a->n)
        bench_die("store-pg", "not every row was claimed");
    bench_clock_print(&clk, done);
    pg_exec(c, "DROP TABLE bench_outbox_min");
    free(ids);
    PQfinish(c);
}
