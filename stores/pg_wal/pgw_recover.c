/* The pg_wal store's recovery after a lost slot (store.recover): a new
 * slot plus the list of unpublished rows it will not stream, read from
 * the table before streaming starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pgw_store.h"

/* clang-format off */

/* Before the slot exists: a list marked as being built. The mark is what
 * tells the next open that a slot it finds healthy came from a recovery
 * that never wrote its list. Always a new list: one left by an earlier
 * recovery lacks the rows committed between that slot and this one. */
static const char *const pgw_recover_begin_sql[] = {
    "BEGIN",
    "DROP TABLE IF EXISTS {R}",
    "CREATE TABLE {R} (id int8 PRIMARY KEY)",
    "COMMENT ON TABLE {R} IS 'building'",
    "COMMIT",
    NULL};

/* Inside the new slot's snapshot: the rows it will never stream, and the
 * mark that the list is whole, in one transaction. */
static const char *const pgw_recover_list_sql[] = {
    "INSERT INTO {R}\n"
    "SELECT {id} FROM {T}\n"
    " WHERE {published_at} IS NULL AND {dead_at} IS NULL",
    "COMMENT ON TABLE {R} IS 'ready'",
    "COMMIT",
    NULL};

/* $1 the list's name: whether it exists, and its mark. */
static const char pgw_recover_state_sql[] =
    "SELECT to_regclass($1) IS NOT NULL,\n"
    "       coalesce(obj_description(to_regclass($1), 'pg_class'), '')";

/* $1 the last row id read, $2 how many: the next rows of the list still
 * pending, in PGW_C order (created_at in unix microseconds). */
static const char pgw_recover_claim_sql[] =
    "SELECT o.{id}, o.{event_id}, o.{aggregate_type}, o.{aggregate_id},\n"
    "       o.{event_type}, o.{payload}, o.{topic}, o.{headers}::text,\n"
    "       (extract(epoch FROM o.{created_at}) * 1000000)::int8\n"
    "  FROM {T} o JOIN {R} r ON r.id = o.{id}\n"
    " WHERE o.{id} > $1::int8\n"
    "   AND o.{published_at} IS NULL AND o.{dead_at} IS NULL\n"
    " ORDER BY o.{id}\n"
    " LIMIT $2::int8";

/* clang-format on */

/* ---- recovery: a new slot plus the list of rows it will not stream ---- */

static obx_status recover_create(pgw_store *s, bool drop_first, char *errstr,
                                 size_t errlen);

/* Create the slot with an exported snapshot and, inside that snapshot,
 * record every unpublished row id: exactly the rows committed before the
 * slot's start, which the new slot will never stream. Without a time
 * limit: the slot's creation waits for the transactions running now, and
 * the list may be long. */
obx_status pgw_recover_create(pgw_store *s, bool drop_first, char *errstr,
                              size_t errlen)
{
    int64_t limit = s->query_timeout_ms;
    s->query_timeout_ms = 0;
    obx_status st = recover_create(s, drop_first, errstr, errlen);
    s->query_timeout_ms = limit;
    return st;
}

/* Run stmts in order on the SQL session; on a failure inside a
 * transaction, roll it back. */
static obx_status run_all(pgw_store *s, const char *const *stmts,
                          const char *what, char *errstr, size_t errlen)
{
    obx_status st = OBX_OK;
    for (size_t i = 0; st == OBX_OK && stmts[i]; i++)
        st = pgw_run(s, stmts[i], 0, NULL, what, errstr, errlen);
    if (st != OBX_OK && s->sql)
        PQclear(pgw_query(s, &s->sql, "ROLLBACK", 0, NULL, NULL, NULL, true));
    return st;
}

static obx_status recover_create(pgw_store *s, bool drop_first, char *errstr,
                                 size_t errlen)
{
    obx_status bad = pgw_check_recover(s->conf, errstr, errlen);
    if (bad != OBX_OK)
        return bad;
    bad = run_all(s, pgw_recover_begin_sql, "recover: start the list", errstr,
                  errlen);
    if (bad != OBX_OK)
        return bad;
    if (drop_first) {
        obx_status st = pgw_run(s, "SELECT pg_drop_replication_slot({SLOT})", 0,
                                NULL, "drop the lost slot", errstr, errlen);
        if (st != OBX_OK)
            return st;
    }
    PGconn *rc = pgw_connect(s, true, errstr, errlen);
    if (!rc)
        return OBX_UNAVAILABLE;
    pgw_buf b = {0};
    pgw_buf_add(&b, "CREATE_REPLICATION_SLOT ");
    pgw_buf_ident(&b, s->names.slot);
    pgw_buf_add(&b, " LOGICAL pgoutput EXPORT_SNAPSHOT");
    char *cmd = pgw_buf_take(&b);
    PGresult *r =
        cmd ? pgw_query(s, &rc, cmd, 0, NULL, NULL, NULL, true) : NULL;
    free(cmd);
    obx_status st = OBX_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) < 3) {
        st = pgw_fail(s, rc, r, "create the slot for recovery", errstr, errlen);
        PQclear(r);
        PQfinish(rc);
        return st;
    }
    char snap[128];
    snprintf(snap, sizeof snap, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    st = pgw_run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL,
                 "recover: begin", errstr, errlen);
    if (st == OBX_OK) {
        /* SET TRANSACTION SNAPSHOT takes no parameters: quote it */
        pgw_buf q = {0};
        pgw_buf_add(&q, "SET TRANSACTION SNAPSHOT ");
        pgw_buf_literal(&q, snap);
        char *sql = pgw_buf_take(&q);
        st = sql ? pgw_run(s, sql, 0, NULL, "recover: import snapshot", errstr,
                           errlen)
                 : OBX_NOMEM;
        free(sql);
    }
    if (st == OBX_OK)
        st = run_all(s, pgw_recover_list_sql, "recover: list unpublished rows",
                     errstr, errlen);
    else if (s->sql)
        PQclear(pgw_query(s, &s->sql, "ROLLBACK", 0, NULL, NULL, NULL, true));
    PQfinish(rc);
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_wal %s: recovery: created slot \"%s\"; re-reading "
                     "the table's unpublished rows before streaming",
                     s->target, s->names.slot);
    return st;
}

obx_status pgw_recover_state(pgw_store *s, pgw_recover_list *out, char *errstr,
                             size_t errlen)
{
    *out = PGW_RECOVER_NONE;
    char *name = pgw_sql_expand(&s->names, "{R}");
    if (!name)
        return OBX_NOMEM;
    const char *p[1] = {name};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, pgw_recover_state_sql, 1, p, &r,
                             "look for recovery", errstr, errlen);
    free(name);
    if (st != OBX_OK)
        return st;
    if (PQgetvalue(r, 0, 0)[0] == 't')
        *out = strcmp(PQgetvalue(r, 0, 1), "ready") == 0 ? PGW_RECOVER_READY
                                                         : PGW_RECOVER_BUILDING;
    PQclear(r);
    return OBX_OK;
}

obx_status pgw_recover_pending(pgw_store *s, char *errstr, size_t errlen)
{
    pgw_recover_list list;
    obx_status st = pgw_recover_state(s, &list, errstr, errlen);
    s->recovering = st == OBX_OK && list == PGW_RECOVER_READY;
    s->recover_after = 0;
    return st;
}

/* ---- recovery reads ---- */

obx_status pgw_recover_claim(pgw_store *s, size_t max, char *errstr,
                             size_t errlen)
{
    char after[32], lim[32];
    snprintf(after, sizeof after, "%lld", (long long)s->recover_after);
    snprintf(lim, sizeof lim, "%zu", max);
    const char *p[2] = {after, lim};
    char *sql = pgw_sql_expand(&s->names, pgw_recover_claim_sql);
    if (!sql)
        return OBX_NOMEM;
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, 2, p, &r, "recover", errstr, errlen);
    free(sql);
    for (int i = 0; st == OBX_OK && i < PQntuples(r); i++) {
        pgw_event *e = NULL;
        st = pgw_event_from_result(s, r, i, &e);
        if (st == OBX_OK) {
            s->recover_after = e->row_id;
            pgw_live_append(s, e);
        }
    }
    if (st == OBX_OK && PQntuples(r) == 0 && s->n_live == 0)
        st = pgw_recover_finish(s, errstr, errlen);
    PQclear(r);
    return st;
}

obx_status pgw_recover_finish(pgw_store *s, char *errstr, size_t errlen)
{
    obx_status st = pgw_run(s, "DROP TABLE IF EXISTS {R}", 0, NULL,
                            "finish recovery", errstr, errlen);
    if (st != OBX_OK)
        return st;
    s->recovering = false;
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_wal %s: recovery done (up to row id %lld); streaming "
                 "slot \"%s\"",
                 s->target, (long long)s->recover_after, s->names.slot);
    return OBX_OK;
}
