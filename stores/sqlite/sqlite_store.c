/* The sqlite store plugin: an outbox table polled through SQLite.
 *
 * A claim (BEGIN IMMEDIATE, so several relay processes can share one
 * file) reads due rows in id order and records the batch as one row of
 * <table>_claims, its lease: the event rows are not written until they
 * are settled. PRAGMA data_version tells cheaply whether another
 * connection committed while we wait for new events. */
#include "sqlite_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often an idle claim looks at PRAGMA data_version: cheap (it reads
 * the WAL index header), and it bounds the pick-up latency of new rows. */
#define SQ_POLL_US 5000

static const char *const sq_ack_modes[] = {"mark", "delete", NULL};

static const obx_option sq_options[] = {
    OBX_OPT_STRING(sq_config, path, "path", "outbox.db",
                   "SQLite database file (created when missing)"),
    OBX_OPT_STRING(sq_config, table, "table", "outbox",
                   "outbox table name (quoted as an identifier)"),
    OBX_OPT_ENUM(sq_config, ack_mode, "ack_mode", "mark", sq_ack_modes,
                 "mark: set published_at and delete after `retention`; delete: "
                 "delete the row once the broker confirmed it"),
    OBX_OPT_DURATION(
        sq_config, lease_ms, "lease", "60s", 10, 86400000,
        "how long a claim is owned before another relay may take the event"),
    OBX_OPT_DURATION(
        sq_config, busy_timeout_ms, "busy_timeout", "5s", 0, 3600000,
        "wait this long for a lock before reporting the store unavailable"),
    OBX_OPT_DURATION(
        sq_config, retention_ms, "retention", "7d", 0, 315360000000,
        "ack_mode=mark: delete published rows older than this (0: keep)"),
    OBX_OPT_BOOL(sq_config, create_schema, "create_schema", "true",
                 "create the table and its indexes at start-up when missing"),
    OBX_OPT_STRING(
        sq_config, owner, "owner", NULL,
        "lease owner id written to each claim (default <hostname>:<pid>)"),
    OBX_OPT_PREFIX(sq_config, column, "column",
                   "column.<name> = <real column>: rename a writer-facing "
                   "column (id, event_id, aggregate_type, aggregate_id, "
                   "event_type, payload, topic, headers, created_at)"),
    OBX_OPTIONS_END,
};

/* clang-format off */

#define SQ_PENDING "{published_at} IS NULL AND {dead_at} IS NULL"
#define SQ_EVENT_COLS \
    "{id}, {event_id}, {aggregate_type}, {aggregate_id}, {event_type},\n" \
    "       {payload}, {topic}, {headers}, {created_at}, {attempts}"
/* Release and bury touch a row only while our claim still holds it: once
 * the lease ran out and another relay's claim ended it, the event is
 * theirs. ?1 id, ?2 owner, ?3 our claim_id. */
#define SQ_OURS \
    "{id} = ?1 AND EXISTS (SELECT 1 FROM {I:claims}\n" \
    "                       WHERE \"claim_id\" = ?3 AND \"owner\" = ?2)"

/* Eligible: pending, due, its key in no live claim but those named in ?3
 * (a JSON array of claim ids: '[]' for claim, our unsettled claims for
 * claim_ahead), not a row of those either, and no earlier pending row of
 * the key waiting for its retry (or leased in the row by an earlier
 * relay). SQLite has one writer at a time, so id order is commit order
 * and per-key order is id order: a claim takes every pending row of a key
 * up to the last it takes (earlier eligible rows have lower ids and ORDER
 * BY id LIMIT takes them first), so a row whose key is in a live claim
 * comes after all of that claim's rows of the key, and a claim that
 * expired (its row deleted first, SQ_S_EXPIRE) leaves its rows the lowest
 * pending rows of their keys: no claim order to keep beside the ids; and
 * claim_ahead, going past our claims, takes each key's rows after them. The
 * keys of live claims are read once per statement (an uncorrelated IN is
 * built once); CAST lets a key a writer stored as a BLOB match its bytes
 * in the claims row's JSON text (the retry check below compares keys as
 * stored, so there a BLOB and a TEXT key of the same bytes are two keys).
 * The "locked_until IS NOT NULL OR next_attempt_at > 0" term is implied by
 * the blocked test; it is spelled out so SQLite can use the <table>_key
 * partial index, which holds only such rows. ?1 now, ?2 at most this
 * many, ?3 our claims to go past, ?4 our owner name. */
/* A claims row this claim goes past: one of ours named in ?3 (the owner
 * as well: a claims table made by hand may reuse ids). */
#define SQ_PAST(c) \
    "(" c ".\"claim_id\" IN (SELECT value FROM json_each(?3)) AND " c \
    ".\"owner\" = ?4)"
static const char sq_claim_sql[] =
    "SELECT " SQ_EVENT_COLS "\n"
    "  FROM {T} AS o\n"
    " WHERE o.{published_at} IS NULL AND o.{dead_at} IS NULL\n"
    "   AND o.{next_attempt_at} <= ?1\n"
    "   AND (o.{locked_until} IS NULL OR o.{locked_until} <= ?1)\n"
    "   AND (o.{aggregate_id} IS NULL\n"
    "        OR CAST(o.{aggregate_id} AS TEXT) NOT IN (\n"
    "          SELECT k.value FROM {I:claims} AS c, json_each(c.\"keys\") AS k\n"
    "           WHERE NOT " SQ_PAST("c") "))\n"
    "   AND o.{id} NOT IN (\n"
    "     SELECT i.value FROM {I:claims} AS c, json_each(c.\"ids\") AS i\n"
    "      WHERE " SQ_PAST("c") ")\n"
    "   AND NOT EXISTS (\n"
    "     SELECT 1 FROM {T} AS p\n"
    "      WHERE p.{aggregate_id} = o.{aggregate_id} AND p.{id} < o.{id}\n"
    "        AND p.{published_at} IS NULL AND p.{dead_at} IS NULL\n"
    "        AND (p.{locked_until} IS NOT NULL OR p.{next_attempt_at} > 0)\n"
    "        AND (p.{next_attempt_at} > ?1 OR p.{locked_until} > ?1))\n"
    " ORDER BY o.{id} LIMIT ?2";

static const char *const sq_stmt_sql[SQ_S_COUNT] = {
    [SQ_S_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_S_COMMIT] = "COMMIT",
    [SQ_S_ROLLBACK] = "ROLLBACK",
    [SQ_S_DATA_VERSION] = "PRAGMA data_version",
    /* ?1 now: a lease that ran out ends, and its events are claimed
     * again (by whichever relay claims next, this one included) */
    [SQ_S_EXPIRE] = "DELETE FROM {I:claims} WHERE \"expires_at\" <= ?1",
    [SQ_S_CLAIM] = sq_claim_sql,
    /* ?1 owner, ?2 lease end, ?3 the ids, ?4 their keys (JSON arrays) */
    [SQ_S_CLAIM_ADD] =
        "INSERT INTO {I:claims} (\"owner\", \"expires_at\", \"ids\", \"keys\")\n"
        "VALUES (?1, ?2, ?3, ?4)",
    /* ?1 claim_id, ?2 owner: its events are all settled, or handed back at
     * close (the owner too: a claims table made by hand may reuse ids) */
    [SQ_S_CLAIM_END] =
        "DELETE FROM {I:claims} WHERE \"claim_id\" = ?1 AND \"owner\" = ?2",
    [SQ_S_ACK] = NULL, /* by ack_mode, see sq_ack_sql() */
    /* ?4 retry time, ?5 1 when it counts as an attempt, ?6 the error */
    [SQ_S_RELEASE] =
        "UPDATE {T}\n"
        "   SET {next_attempt_at} = ?4,\n"
        "       {attempts} = {attempts} + ?5,\n"
        "       {last_error} = coalesce(?6, {last_error}),\n"
        "       {locked_by} = NULL, {locked_until} = NULL\n"
        " WHERE " SQ_OURS,
    /* ?4 now, ?5 reason, ?6 destination, ?7 attempts */
    [SQ_S_BURY] =
        "UPDATE {T}\n"
        "   SET {dead_at} = ?4, {dead_reason} = ?5,\n"
        "       {dead_destination} = ?6, {attempts} = ?7,\n"
        "       {locked_by} = NULL, {locked_until} = NULL\n"
        " WHERE " SQ_OURS,
    /* ?1 id, ?2 now, ?3 reason */
    [SQ_S_POISON] =
        "UPDATE {T}\n"
        "   SET {dead_at} = ?2, {dead_reason} = ?3,\n"
        "       {locked_by} = NULL, {locked_until} = NULL\n"
        " WHERE {id} = ?1",
    /* ?1 published before, ?2 at most this many rows */
    [SQ_S_RETENTION] =
        "DELETE FROM {T}\n"
        " WHERE {id} IN (SELECT {id} FROM {T}\n"
        "                 WHERE {published_at} IS NOT NULL\n"
        "                   AND {published_at} < ?1\n"
        "                 LIMIT ?2)",
    [SQ_S_PENDING] = "SELECT count(*) FROM {T} WHERE " SQ_PENDING,
    /* ids grow with insert time, so the lowest pending id is the oldest
     * pending event; MIN(created_at) would read every pending row */
    [SQ_S_OLDEST] =
        "SELECT {created_at} FROM {T}\n"
        " WHERE " SQ_PENDING "\n"
        " ORDER BY {id} LIMIT 1",
    [SQ_S_DEAD_COUNT] = "SELECT count(*) FROM {T} WHERE {dead_at} IS NOT NULL",
    /* ?1 an event_id or NULL (all) here and below */
    [SQ_S_DEAD_LIST] =
        "SELECT " SQ_EVENT_COLS ",\n"
        "       {dead_reason}, {dead_destination}, {dead_at}\n"
        "  FROM {T}\n"
        " WHERE {dead_at} IS NOT NULL AND (?1 IS NULL OR {event_id} = ?1)\n"
        " ORDER BY {id}",
    [SQ_S_REQUEUE] =
        "UPDATE {T}\n"
        "   SET {dead_at} = NULL, {dead_reason} = NULL,\n"
        "       {dead_destination} = NULL, {attempts} = 0,\n"
        "       {next_attempt_at} = 0,\n"
        "       {locked_by} = NULL, {locked_until} = NULL\n"
        " WHERE {dead_at} IS NOT NULL AND (?1 IS NULL OR {event_id} = ?1)",
    [SQ_S_PURGE] =
        "DELETE FROM {T}\n"
        " WHERE {dead_at} IS NOT NULL AND (?1 IS NULL OR {event_id} = ?1)",
};

/* A whole batch in one statement: ?1 the ids as a JSON array, ?2 now.
 * One statement instead of one per event nearly halves the ack's time:
 * the statements' start and end, not the row writes, were most of it (a
 * loop of the claim and ack statements: 200,000 acks took 1.6 s one by
 * one, 0.95 s in batches of 1,000; the relay draining to stdout went
 * from 71k to 80k events/s). json_each yields the ids as integers, so
 * the IN list is searched by rowid. */
#define SQ_ACK_IDS "{id} IN (SELECT value FROM json_each(?1))"
static const char sq_ack_delete_sql[] = "DELETE FROM {T} WHERE " SQ_ACK_IDS;
/* The lease columns are left alone: this relay never sets them, and an
 * earlier relay's stale lease on a published row means nothing. */
static const char sq_ack_mark_sql[] =
    "UPDATE {T}\n"
    "   SET {published_at} = ?2\n"
    " WHERE " SQ_ACK_IDS " AND {published_at} IS NULL";

/* clang-format on */

static const char *sq_ack_sql(const sq_config *conf)
{
    return conf->ack_mode == SQ_ACK_DELETE ? sq_ack_delete_sql
                                           : sq_ack_mark_sql;
}

/* ---- small helpers shared with sqlite_admin.c ---- */

static obx_status sq_status_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY: return OBX_UNAVAILABLE;
    case SQLITE_NOMEM: return OBX_NOMEM;
    default: return OBX_FATAL;
    }
}

static void sq_rollback(sq_store *s)
{
    if (s->db && !sqlite3_get_autocommit(s->db))
        sq_run(s, SQ_S_ROLLBACK);
}

obx_status sq_fail(sq_store *s, int rc, const char *what, char *errstr,
                   size_t errlen)
{
    int base = rc & 0xff;
    if (base == SQLITE_BUSY || base == SQLITE_LOCKED)
        snprintf(errstr, errlen,
                 "sqlite %s: %s: database locked for more than "
                 "busy_timeout=%lld ms",
                 s->path, what, (long long)s->conf->busy_timeout_ms);
    else if (base == SQLITE_FULL)
        /* "database or disk is full" is nearly always the filesystem
         * (the other cause, PRAGMA max_page_count, is set on purpose):
         * say what to do about it and that no event is given up */
        snprintf(errstr, errlen,
                 "sqlite %s: %s: %s: free space on its filesystem; the "
                 "relay pauses and resumes by itself when writes fit",
                 s->path, what, sqlite3_errmsg(s->db));
    else
        snprintf(errstr, errlen, "sqlite %s: %s: %s", s->path, what,
                 sqlite3_errmsg(s->db));
    sq_rollback(s);
    return sq_status_of(rc);
}

int sq_run(sq_store *s, sq_stmt which)
{
    sqlite3_stmt *st = s->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

void sq_bind_str(sqlite3_stmt *st, int idx, const char *v)
{
    if (v)
        sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

static void sq_bind_ours(sq_store *s, sqlite3_stmt *st, const sq_event *e)
{
    sqlite3_bind_int64(st, 1, (int64_t)e->ev.pos.seq);
    sqlite3_bind_text(st, 2, s->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, e->lease_token);
}

/* ---- open / close ---- */

/* Errors while opening: a path that cannot be opened or is not a database
 * is the operator's to fix (OBX_CONFIG); a lock held too long is not. */
static obx_status sq_open_fail(sq_store *s, int rc, const char *what,
                               char *errstr, size_t errlen)
{
    int base = rc & 0xff;
    if (base == SQLITE_CANTOPEN || base == SQLITE_NOTADB ||
        base == SQLITE_ERROR || base == SQLITE_AUTH) {
        const char *sys = base == SQLITE_CANTOPEN && sqlite3_system_errno(s->db)
                              ? strerror(sqlite3_system_errno(s->db))
                              : NULL;
        snprintf(errstr, errlen, "sqlite %s: %s: %s%s%s", s->path, what,
                 sqlite3_errmsg(s->db), sys ? ": " : "", sys ? sys : "");
        sq_rollback(s);
        return OBX_CONFIG;
    }
    return sq_fail(s, rc, what, errstr, errlen);
}

static int sq_exec(sq_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

static obx_status sq_pragmas(sq_store *s, char *errstr, size_t errlen)
{
    sqlite3_busy_timeout(s->db, (int)s->conf->busy_timeout_ms);
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || strcmp(mode, "wal") != 0)
            s->host->log(s->host, OBX_LOG_WARN,
                         "sqlite %s: journal_mode is %s, not wal; readers "
                         "and the relay will block each other",
                         s->path, mode ? mode : "?");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "set journal_mode=WAL", errstr, errlen);
    /* In WAL mode NORMAL syncs at checkpoints, not at every commit: after
     * a power loss the database is intact but our last commits may be
     * gone. Those are only claims, acks and retries (an event published
     * again, a lease or attempt forgotten): at-least-once survives. The
     * events themselves are committed by the writer's own connection under
     * its own synchronous setting. */
    rc = sq_exec(s, "PRAGMA synchronous=NORMAL");
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "set synchronous", errstr, errlen);
    return OBX_OK;
}

/* The DDL, every statement IF NOT EXISTS, in the caller's transaction. */
static int sq_ddl(sq_store *s)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && sq_ddl_templates[i]; i++) {
        char *sql = sq_sql_expand(&s->names, sq_ddl_templates[i]);
        rc = sql ? sq_exec(s, sql) : SQLITE_NOMEM;
        sqlite3_free(sql);
    }
    return rc;
}

static obx_status sq_create_schema(sq_store *s, char *errstr, size_t errlen)
{
    int rc = sq_exec(s, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = sq_ddl(s);
    if (rc == SQLITE_OK)
        rc = sq_exec(s, "COMMIT");
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "create schema", errstr, errlen);
    return OBX_OK;
}

static int sq_prepare(sq_store *s, const char *tpl, sqlite3_stmt **out)
{
    char *sql = sq_sql_expand(&s->names, tpl);
    if (!sql)
        return SQLITE_NOMEM;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
                                NULL);
    sqlite3_free(sql);
    return rc;
}

int sq_columns_found(sqlite3 *db, const char *table, const char *const *want,
                     int n_want, bool *found, int *n_cols)
{
    sqlite3_stmt *st = NULL;
    *n_cols = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_xinfo(?1)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            (*n_cols)++;
            for (int c = 0; name && c < n_want; c++)
                found[c] |= sqlite3_stricmp(name, want[c]) == 0;
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Whether table `name` is in the main schema. SQLite matches names
 * without regard to (ASCII) case, as NOCASE does: "Outbox" in the config
 * is the table "outbox" our statements will use. */
static int sq_table_exists(sq_store *s, const char *name, bool *exists)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT 1 FROM sqlite_schema WHERE type = "
                                "'table' AND name = ?1 COLLATE NOCASE",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        *exists = rc == SQLITE_ROW;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Whether <table>_claims is there, in any schema: check --connect's TEMP
 * stand-in counts. Out of memory reads as "not there". */
static bool sq_has_claims(sq_store *s)
{
    char *name = sqlite3_mprintf("%s_claims", s->names.table);
    bool found = name && sqlite3_table_column_metadata(
                             s->db, NULL, name, "claim_id", NULL, NULL, NULL,
                             NULL, NULL) == SQLITE_OK;
    sqlite3_free(name);
    return found;
}

/* A table made by an earlier relay (which leased in the rows) has no
 * claims table; with create_schema = false nobody makes it for us, so
 * name the DDL. */
static obx_status sq_check_claims(sq_store *s, char *errstr, size_t errlen)
{
    if (sq_has_claims(s))
        return OBX_OK;
    snprintf(errstr, errlen,
             "sqlite %s: no table \"%s_claims\" (the claims' leases, new in "
             "this version) and create_schema is false: run its CREATE TABLE "
             "from `outbox-relay schema sqlite`",
             s->path, s->names.table);
    return OBX_CONFIG;
}

/* Every column our statements name must be in the table. Preparing them
 * is no test: where a double-quoted name matches no column, SQLite has
 * (by default) read it as a string literal, and the relay published the
 * column's name as every event's payload. We also turn that off (see
 * sq_connect); this check says which column is missing and why. */
static obx_status sq_check_columns(sq_store *s, char *errstr, size_t errlen)
{
    bool found[SQ_C_COUNT] = {false};
    int n_cols = 0;
    int rc = sq_columns_found(s->db, s->names.table, s->names.col, SQ_C_COUNT,
                              found, &n_cols);
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "read the table's columns", errstr, errlen);
    if (n_cols == 0) {
        snprintf(errstr, errlen,
                 "sqlite %s: no table \"%s\" and create_schema is false",
                 s->path, s->names.table);
        return OBX_CONFIG;
    }
    sqlite3_str *msg = sqlite3_str_new(NULL);
    int missing = 0;
    for (int c = 0; c < SQ_C_COUNT; c++) {
        if (found[c])
            continue;
        const char *logical = sq_col_logical((sq_col)c);
        sqlite3_str_appendf(msg, "%s\"%s\"", missing++ ? ", " : "",
                            s->names.col[c]);
        if (strcmp(logical, s->names.col[c]) != 0)
            sqlite3_str_appendf(msg, " (store.column.%s)", logical);
    }
    char *list = sqlite3_str_finish(msg);
    if (missing)
        snprintf(errstr, errlen,
                 "sqlite %s: table \"%s\" has no column %s; the columns it "
                 "needs are in `outbox-relay schema sqlite` (with the same "
                 "store.column.* settings)",
                 s->path, s->names.table, list ? list : "(out of memory)");
    sqlite3_free(list);
    return missing ? OBX_CONFIG : sq_check_claims(s, errstr, errlen);
}

static obx_status sq_prepare_all(sq_store *s, char *errstr, size_t errlen)
{
    obx_status st = sq_check_columns(s, errstr, errlen);
    for (int i = 0; st == OBX_OK && i < SQ_S_COUNT; i++) {
        const char *tpl = i == SQ_S_ACK ? sq_ack_sql(s->conf) : sq_stmt_sql[i];
        int rc = sq_prepare(s, tpl, &s->st[i]);
        if (rc == SQLITE_OK)
            continue;
        /* Our columns are all there, so the unknown name is in a trigger
         * or view that our statements pull in. */
        bool dqs = strncmp(sqlite3_errmsg(s->db), "no such column", 14) == 0;
        char what[160];
        snprintf(what, sizeof what, "table \"%s\" does not fit",
                 s->names.table);
        st = sq_open_fail(s, rc, what, errstr, errlen);
        if (dqs) {
            size_t len = strlen(errstr);
            snprintf(errstr + len, errlen - len,
                     " (from a trigger on the table? the relay turns "
                     "SQLite's double-quoted string literals off: write "
                     "strings in single quotes)");
        }
    }
    return st;
}

static void sq_close_db(sq_store *s)
{
    for (int i = 0; i < SQ_S_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    memset(s->st, 0, sizeof s->st);
    sqlite3_close_v2(s->db);
    s->db = NULL;
}

static obx_status sq_connect(sq_store *s, int flags, char *errstr,
                             size_t errlen)
{
    int rc =
        sqlite3_open_v2(s->path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(s->db, 1);
        /* "name" is an identifier, never a string: with the legacy
         * fallback an unknown column became its own name as a value. */
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
    }
    if (rc != SQLITE_OK && !s->db)
        return OBX_NOMEM;
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "cannot open database", errstr, errlen);
    return OBX_OK;
}

static obx_status sq_init(sq_store *s, const obx_host *host,
                          const sq_config *conf, char *errstr, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->host = host;
    s->conf = conf;
    s->path = conf->path && conf->path[0] ? conf->path : "outbox.db";
    if (sq_names_init(&s->names, conf, errstr, errlen) != 0)
        return OBX_CONFIG;
    osc_lease_owner(s->conf->owner, s->owner, sizeof s->owner);
    return OBX_OK;
}

/* Open the database, switch it to WAL, create the schema when asked and
 * prepare every statement. The config must outlive the instance. */
static obx_status sq_open(const obx_host *host, const void *config, void **inst,
                          char *errstr, size_t errlen)
{
    sq_store *s = malloc(sizeof *s);
    if (!s)
        return OBX_NOMEM;
    obx_status st = sq_init(s, host, config, errstr, errlen);
    if (st == OBX_OK)
        st = sq_connect(s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, errstr,
                        errlen);
    if (st == OBX_OK)
        st = sq_pragmas(s, errstr, errlen);
    if (st == OBX_OK && s->conf->create_schema)
        st = sq_create_schema(s, errstr, errlen);
    if (st == OBX_OK)
        st = sq_prepare_all(s, errstr, errlen);
    if (st != OBX_OK) {
        sq_close_db(s);
        free(s);
        return st;
    }
    host->log(host, OBX_LOG_INFO,
              "sqlite %s: table \"%s\", owner %s, ack_mode %s, lease %lld ms",
              s->path, s->names.table, s->owner,
              s->conf->ack_mode == SQ_ACK_DELETE ? "delete" : "mark",
              (long long)s->conf->lease_ms);
    *inst = s;
    return OBX_OK;
}

/* Delete our claims row `token` (gone already: nothing happens). */
static int sq_claim_end(sq_store *s, int64_t token)
{
    sqlite3_stmt *st = s->st[SQ_S_CLAIM_END];
    sqlite3_bind_int64(st, 1, token);
    sqlite3_bind_text(st, 2, s->owner, -1, SQLITE_STATIC);
    return sq_run(s, SQ_S_CLAIM_END);
}

/* Hand the claims of unsettled events back at once, so their events can
 * be claimed again now rather than when the lease runs out (best effort:
 * if this fails the leases simply run out), then free them. A claim's
 * events sit together on the list (added together, taken off one by
 * one), so one DELETE per claim. */
static void sq_unlease_live(sq_store *s)
{
    if (!s->live)
        return;
    int rc = sq_run(s, SQ_S_BEGIN);
    for (sq_event *e = s->live; rc == SQLITE_OK && e; e = e->next) {
        if (e->prev && e->prev->lease_token == e->lease_token)
            continue;
        rc = sq_claim_end(s, e->lease_token);
    }
    if (rc == SQLITE_OK)
        rc = sq_run(s, SQ_S_COMMIT);
    if (rc != SQLITE_OK) {
        s->host->log(s->host, OBX_LOG_WARN,
                     "sqlite %s: could not return leases at close: %s; they "
                     "expire after the lease",
                     s->path, sqlite3_errmsg(s->db));
        sq_rollback(s);
    }
    osc_claimed_settle_all(&s->live);
}

static void sq_close(void *inst)
{
    sq_store *s = inst;
    if (!s)
        return;
    sq_unlease_live(s);
    sq_close_db(s);
    free(s->ids_json);
    free(s);
}

/* ---- claim ---- */

/* A row that cannot be published (headers that cannot be parsed, a NULL
 * id or key, a NUL in a text field), dead-lettered before COMMIT. */
typedef struct sq_poison {
    int64_t id;
    char reason[OBX_ERRSTR_LEN];
} sq_poison;

typedef struct sq_batch {
    obx_event **out;
    size_t n;
    sq_poison *bad;
    size_t n_bad;
} sq_batch;

static obx_status sq_add_poison(sq_batch *b, int64_t id, const char *reason)
{
    sq_poison *p = realloc(b->bad, (b->n_bad + 1) * sizeof *p);
    if (!p)
        return OBX_NOMEM;
    b->bad = p;
    p[b->n_bad].id = id;
    snprintf(p[b->n_bad].reason, sizeof p[b->n_bad].reason, "%s", reason);
    b->n_bad++;
    return OBX_OK;
}

static obx_status sq_claim_row(sqlite3_stmt *st, sq_batch *b)
{
    char err[OBX_ERRSTR_LEN];
    sq_event *e = NULL;
    obx_status rc = sq_event_read(st, 0, true, &e, err, sizeof err);
    if (rc == OBX_PERMANENT)
        return sq_add_poison(b, sqlite3_column_int64(st, 0), err);
    if (rc != OBX_OK)
        return rc;
    b->out[b->n++] = &e->ev;
    return OBX_OK;
}

static void sq_batch_drop(sq_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->out[i]);
    b->n = 0;
}

static int sq_bury_poison(sq_store *s, sq_batch *b, int64_t now)
{
    sqlite3_stmt *st = s->st[SQ_S_POISON];
    for (size_t i = 0; i < b->n_bad; i++) {
        sqlite3_bind_int64(st, 1, b->bad[i].id);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, b->bad[i].reason, -1, SQLITE_STATIC);
        int rc = sq_run(s, SQ_S_POISON);
        if (rc != SQLITE_OK)
            return rc;
        s->host->log(s->host, OBX_LOG_WARN,
                     "sqlite %s: row id %lld dead-lettered at claim: %s",
                     s->path, (long long)b->bad[i].id, b->bad[i].reason);
    }
    return SQLITE_OK;
}

/* Run the claim's SELECT and collect its rows into b. */
static int sq_claim_step(sq_store *s, size_t max, int64_t now, const char *past,
                         sq_batch *b, obx_status *ost)
{
    sqlite3_stmt *st = s->st[SQ_S_CLAIM];
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, max > INT32_MAX ? INT32_MAX : (sqlite3_int64)max);
    sqlite3_bind_text(st, 3, past, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, s->owner, -1, SQLITE_STATIC);
    int rc = SQLITE_DONE;
    *ost = OBX_OK;
    /* never more than LIMIT rows; the check guards out[] */
    while (*ost == OBX_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        *ost = b->n < max ? sq_claim_row(st, b) : OBX_FATAL;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* ?3 is the caller's */
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Append v as a JSON string. Keys carry no NUL (sq_event_read refuses
 * it); other bytes go as they are, which is how SQLite's json_each gives
 * them back to the claim's NOT IN. */
static void sq_json_string(sqlite3_str *j, const char *v)
{
    sqlite3_str_appendchar(j, 1, '"');
    const char *run = v;
    for (const char *p = v;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != 0 && c != '"' && c != '\\' && c >= 0x20)
            continue;
        sqlite3_str_append(j, run, (int)(p - run));
        if (c == 0)
            break;
        if (c == '"' || c == '\\')
            sqlite3_str_appendf(j, "\\%c", c);
        else
            sqlite3_str_appendf(j, "\\u%04x", c);
        run = p + 1;
    }
    sqlite3_str_appendchar(j, 1, '"');
}

/* The batch's keys as a JSON array, to sqlite3_free(); NULL: no memory. */
static char *sq_keys_json(obx_event *const *events, size_t n)
{
    sqlite3_str *j = sqlite3_str_new(NULL);
    sqlite3_str_appendchar(j, 1, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            sqlite3_str_appendchar(j, 1, ',');
        sq_json_string(j, events[i]->key ? events[i]->key : "");
    }
    sqlite3_str_appendchar(j, 1, ']');
    return sqlite3_str_finish(j);
}

/* The ids of events[0..n) as a JSON array in s->ids_json (grown to fit:
 * at most 20 digits and a comma each), or NULL when out of memory. */
static const char *sq_ids_json(sq_store *s, obx_event *const *events, size_t n)
{
    size_t need = n * 21 + 3;
    if (need > s->ids_json_cap) {
        char *p = realloc(s->ids_json, need);
        if (!p)
            return NULL;
        s->ids_json = p;
        s->ids_json_cap = need;
    }
    size_t len = 0;
    s->ids_json[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s->ids_json + len, need - len, "%s%" PRIu64,
                                i ? "," : "", events[i]->pos.seq);
    s->ids_json[len++] = ']';
    s->ids_json[len] = '\0';
    return s->ids_json;
}

/* Record the batch b as one claims row (its lease) and give each event
 * the claim's id as its lease token. */
static int sq_claim_add(sq_store *s, const sq_batch *b, int64_t until)
{
    const char *ids = sq_ids_json(s, b->out, b->n);
    char *keys = ids ? sq_keys_json(b->out, b->n) : NULL;
    if (!keys)
        return SQLITE_NOMEM;
    sqlite3_stmt *st = s->st[SQ_S_CLAIM_ADD];
    sqlite3_bind_text(st, 1, s->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, until);
    sqlite3_bind_text(st, 3, ids, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, keys, -1, sqlite3_free);
    int rc = sq_run(s, SQ_S_CLAIM_ADD);
    sqlite3_clear_bindings(st); /* ?3 points into ids_json */
    int64_t token = sqlite3_last_insert_rowid(s->db);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n; i++)
        ((sq_event *)b->out[i])->lease_token = token;
    return rc;
}

/* End the claims whose leases ran out, saying so when there were any:
 * their relay stopped or stalled for longer than the lease. */
static int sq_expire(sq_store *s, int64_t now)
{
    sqlite3_bind_int64(s->st[SQ_S_EXPIRE], 1, now);
    int rc = sq_run(s, SQ_S_EXPIRE);
    int ended = rc == SQLITE_OK ? sqlite3_changes(s->db) : 0;
    if (ended > 0)
        s->host->log(s->host, OBX_LOG_INFO,
                     "sqlite %s: %d claims outlived their lease; their "
                     "unsettled events are claimed again",
                     s->path, ended);
    return rc;
}

/* One claim transaction; past: the claims to go past (sq_claim_sql). */
static obx_status sq_claim_once(sq_store *s, obx_event **out, size_t max,
                                const char *past, size_t *n, char *errstr,
                                size_t errlen)
{
    int64_t now = s->host->now_us();
    int64_t until = now + s->conf->lease_ms * 1000;
    sq_batch b = {out, 0, NULL, 0};
    obx_status ost = OBX_OK;
    int rc = sq_run(s, SQ_S_BEGIN);
    if (rc == SQLITE_OK)
        rc = sq_expire(s, now);
    if (rc == SQLITE_OK)
        rc = sq_claim_step(s, max, now, past, &b, &ost);
    if (rc == SQLITE_OK && ost == OBX_OK && b.n_bad)
        rc = sq_bury_poison(s, &b, now);
    if (rc == SQLITE_OK && ost == OBX_OK && b.n)
        rc = sq_claim_add(s, &b, until);
    if (rc == SQLITE_OK && ost == OBX_OK)
        rc = sq_run(s, SQ_S_COMMIT);
    free(b.bad);
    if (rc != SQLITE_OK || ost != OBX_OK) {
        sq_batch_drop(&b);
        if (rc != SQLITE_OK)
            return sq_fail(s, rc, "claim", errstr, errlen);
        sq_rollback(s);
        snprintf(errstr, errlen, "sqlite %s: claim: %s", s->path,
                 ost == OBX_NOMEM ? "out of memory"
                                  : "more rows than asked for");
        return ost;
    }
    for (size_t i = 0; i < b.n; i++)
        osc_claimed_add(&s->live, (sq_event *)out[i]);
    *n = b.n;
    return OBX_OK;
}

static int sq_data_version(sq_store *s, int64_t *v)
{
    sqlite3_stmt *st = s->st[SQ_S_DATA_VERSION];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void sq_sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Wait until another connection commits or wait_ms passes. data_version
 * changes only for commits by other connections, which is what we want. */
static int sq_wait_change(sq_store *s, int64_t seen, int wait_ms)
{
    int64_t deadline = s->host->mono_us() + (int64_t)wait_ms * 1000;
    for (;;) {
        int64_t left = deadline - s->host->mono_us();
        if (left <= 0)
            return SQLITE_OK;
        sq_sleep_us(left < SQ_POLL_US ? left : SQ_POLL_US);
        int64_t v = seen;
        int rc = sq_data_version(s, &v);
        if (rc != SQLITE_OK || v != seen)
            return rc;
    }
}

/* Claim up to max due events (see obx_store_ops.claim). The events are
 * ours until ack/release/bury settles them, or close(). */
static obx_status sq_claim(void *inst, obx_event **out, size_t max, size_t *n,
                           int wait_ms, char *errstr, size_t errlen)
{
    sq_store *s = inst;
    *n = 0;
    if (max == 0)
        return OBX_OK;
    sq_retention(s);
    int64_t seen = 0;
    int rc = wait_ms > 0 ? sq_data_version(s, &seen) : SQLITE_OK;
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, "data_version", errstr, errlen);
    obx_status st = sq_claim_once(s, out, max, "[]", n, errstr, errlen);
    if (st != OBX_OK || *n > 0 || wait_ms <= 0)
        return st;
    rc = sq_wait_change(s, seen, wait_ms);
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, "data_version", errstr, errlen);
    return sq_claim_once(s, out, max, "[]", n, errstr, errlen);
}

/* Claim the events behind our own unsettled ones as well (see
 * obx_store_ops.claim_ahead). */
static obx_status sq_claim_ahead(void *inst, obx_event **out, size_t max,
                                 size_t *n, char *errstr, size_t errlen)
{
    sq_store *s = inst;
    *n = 0;
    if (max == 0)
        return OBX_OK;
    sq_retention(s); /* with a backlog every claim is one of these */
    int64_t tok[OSC_AHEAD_MAX_CLAIMS];
    size_t nt = osc_claimed_tokens(s->live, tok, OSC_AHEAD_MAX_CLAIMS);
    char past[OSC_AHEAD_MAX_CLAIMS * 21 + 3] = "[";
    size_t len = 1;
    for (size_t i = 0; i < nt; i++)
        len += (size_t)snprintf(past + len, sizeof past - len, "%s%" PRId64,
                                i ? "," : "", tok[i]);
    snprintf(past + len, sizeof past - len, "]");
    return sq_claim_once(s, out, max, past, n, errstr, errlen);
}

/* ---- settle: ack, release, bury ---- */

/* Delete the claims rows whose last events items[0..n) are, in the
 * settle's transaction: their keys are free for the next claim. */
static int sq_claims_end(sq_store *s, const void *items, size_t n,
                         osc_claimed_item_fn item)
{
    int64_t *done = malloc((n ? n : 1) * sizeof *done);
    long ended = done ? osc_claimed_ended(s->live, items, n, item, done) : -1;
    int rc = ended < 0 ? SQLITE_NOMEM : SQLITE_OK;
    for (long j = 0; rc == SQLITE_OK && j < ended; j++) {
        rc = sq_claim_end(s, done[j]);
    }
    free(done);
    return rc;
}

/* Run one statement per event inside one transaction; `bind` binds the
 * statement for event i. Frees the events after COMMIT; on error they stay
 * claimed (and valid) and the leases return them later. */
typedef void (*sq_bind_fn)(sq_store *s, sqlite3_stmt *st, const void *items,
                           size_t i, int64_t now);

static obx_status sq_settle(sq_store *s, sq_stmt which, const void *items,
                            size_t n, sq_bind_fn bind, osc_claimed_item_fn item,
                            const char *what, char *errstr, size_t errlen)
{
    if (n == 0)
        return OBX_OK;
    int64_t now = s->host->now_us();
    size_t lost = 0;
    int rc = sq_run(s, SQ_S_BEGIN);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        bind(s, s->st[which], items, i, now);
        rc = sq_run(s, which);
        lost += rc == SQLITE_OK && sqlite3_changes(s->db) == 0;
    }
    if (rc == SQLITE_OK)
        rc = sq_claims_end(s, items, n, item);
    if (rc == SQLITE_OK)
        rc = sq_run(s, SQ_S_COMMIT);
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, what, errstr, errlen);
    if (lost)
        s->host->log(s->host, OBX_LOG_INFO,
                     "sqlite %s: %s: %zu of %zu events were no longer ours "
                     "(lease expired and taken over); left to their owner",
                     s->path, what, lost, n);
    for (size_t i = 0; i < n; i++)
        osc_claimed_settle(&s->live, item(items, i));
    return OBX_OK;
}

static osc_claimed *sq_item_event(const void *items, size_t i)
{
    return (sq_event *)((obx_event *const *)items)[i];
}

static osc_claimed *sq_item_release(const void *items, size_t i)
{
    return (sq_event *)((const obx_release *)items)[i].event;
}

static osc_claimed *sq_item_burial(const void *items, size_t i)
{
    return (sq_event *)((const obx_burial *)items)[i].event;
}

static void sq_bind_release(sq_store *s, sqlite3_stmt *st, const void *items,
                            size_t i, int64_t now)
{
    const obx_release *r = &((const obx_release *)items)[i];
    sq_bind_ours(s, st, (const sq_event *)r->event);
    sqlite3_bind_int64(st, 4, r->retry_at_us);
    sqlite3_bind_int(st, 5, r->counts_as_attempt ? 1 : 0);
    sq_bind_str(st, 6, r->error);
}

static void sq_bind_bury(sq_store *s, sqlite3_stmt *st, const void *items,
                         size_t i, int64_t now)
{
    const obx_burial *b = &((const obx_burial *)items)[i];
    sq_bind_ours(s, st, (const sq_event *)b->event);
    sqlite3_bind_int64(st, 4, now);
    sq_bind_str(st, 5, b->reason ? b->reason : "unknown");
    sq_bind_str(st, 6, b->destination);
    sqlite3_bind_int64(st, 7, (int64_t)b->event->attempts);
}

/* Mark published (ack_mode=mark) or delete (delete): one statement, one
 * transaction. Acks whatever the lease says: the broker has the event
 * either way. On error the events stay claimed (and valid). */
static obx_status sq_ack(void *inst, obx_event *const *events, size_t n,
                         char *errstr, size_t errlen)
{
    sq_store *s = inst;
    if (n == 0)
        return OBX_OK;
    const char *ids = sq_ids_json(s, events, n);
    if (!ids) {
        snprintf(errstr, errlen, "sqlite %s: ack: out of memory", s->path);
        return OBX_NOMEM;
    }
    sqlite3_stmt *st = s->st[SQ_S_ACK];
    sqlite3_bind_text(st, 1, ids, -1, SQLITE_STATIC);
    if (s->conf->ack_mode != SQ_ACK_DELETE)
        sqlite3_bind_int64(st, 2, s->host->now_us());
    int rc = sq_run(s, SQ_S_BEGIN);
    if (rc == SQLITE_OK)
        rc = sq_run(s, SQ_S_ACK);
    if (rc == SQLITE_OK)
        rc = sq_claims_end(s, events, n, sq_item_event);
    if (rc == SQLITE_OK)
        rc = sq_run(s, SQ_S_COMMIT);
    sqlite3_clear_bindings(st); /* ?1 points into ids_json */
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, "ack", errstr, errlen);
    for (size_t i = 0; i < n; i++)
        osc_claimed_settle(&s->live, sq_item_event(events, i));
    return OBX_OK;
}

/* Schedule a retry: next_attempt_at, attempts (when it counts), last_error
 * (kept when error is NULL); the lease is cleared. One transaction. */
static obx_status sq_release(void *inst, const obx_release *items, size_t n,
                             char *errstr, size_t errlen)
{
    return sq_settle(inst, SQ_S_RELEASE, items, n, sq_bind_release,
                     sq_item_release, "release", errstr, errlen);
}

/* Dead-letter in the table: dead_at, reason, destination, attempts. */
static obx_status sq_bury(void *inst, const obx_burial *items, size_t n,
                          char *errstr, size_t errlen)
{
    return sq_settle(inst, SQ_S_BURY, items, n, sq_bind_bury, sq_item_burial,
                     "bury", errstr, errlen);
}

/* ---- validate / schema ---- */

/* A missing file is fine when open() may create it: its directory must
 * exist and be writable. */
static obx_status sq_check_creatable(sq_store *s, char *errstr, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", s->path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0'; /* "/x.db": the root directory */
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) == 0)
        return OBX_OK;
    snprintf(errstr, errlen, "sqlite %s: cannot create the database: %s: %s",
             s->path, dir, strerror(errno));
    return OBX_CONFIG;
}

/* Prepare every statement against the table. A claims table that open()
 * would add (create_schema, a table of an earlier relay) stands in as a
 * TEMP table, gone with the connection: --connect writes nothing and
 * takes no lock on the file. */
static obx_status sq_validate_statements(sq_store *s, char *errstr,
                                         size_t errlen)
{
    int rc = SQLITE_OK;
    if (s->conf->create_schema && !sq_has_claims(s)) {
        char *sql = sq_sql_expand(&s->names, sq_claims_temp_template);
        rc = sql ? sq_exec(s, sql) : SQLITE_NOMEM;
        sqlite3_free(sql);
    }
    if (rc != SQLITE_OK)
        return sq_open_fail(s, rc, "create a temp claims table", errstr,
                            errlen);
    return sq_prepare_all(s, errstr, errlen);
}

/* --connect: open the existing file read/write without creating anything
 * (no WAL switch, no schema) and check that the table fits our SQL. */
static obx_status sq_validate_connect(sq_store *s, char *errstr, size_t errlen)
{
    if (access(s->path, F_OK) != 0 && s->conf->create_schema)
        return sq_check_creatable(s, errstr, errlen);
    obx_status st = sq_connect(s, SQLITE_OPEN_READWRITE, errstr, errlen);
    bool exists = false;
    int rc =
        st == OBX_OK ? sq_table_exists(s, s->names.table, &exists) : SQLITE_OK;
    if (st == OBX_OK && rc != SQLITE_OK)
        st = sq_open_fail(s, rc, "read schema", errstr, errlen);
    if (st == OBX_OK && !exists && !s->conf->create_schema) {
        snprintf(errstr, errlen,
                 "sqlite %s: no table \"%s\" and create_schema is false",
                 s->path, s->names.table);
        st = OBX_CONFIG;
    }
    if (st == OBX_OK && exists)
        st = sq_validate_statements(s, errstr, errlen);
    sq_close_db(s);
    return st;
}

/* Check the config; with `connect`, also the database file and table. */
static obx_status sq_validate(const obx_host *host, const void *config,
                              bool connect, char *errstr, size_t errlen)
{
    sq_store s;
    obx_status st = sq_init(&s, host, config, errstr, errlen);
    if (st != OBX_OK || !connect)
        return st;
    return sq_validate_connect(&s, errstr, errlen);
}

/* Emit the DDL for `config`, one statement per call, each ending in ";".
 * Errors: OBX_CONFIG for bad names, OBX_NOMEM (errstr says which). */
static obx_status sq_schema(const obx_host *host, const void *config,
                            obx_emit_fn emit, void *ctx, char *errstr,
                            size_t errlen)
{
    sq_names names;
    if (sq_names_init(&names, config, errstr, errlen) != 0)
        return OBX_CONFIG;
    for (size_t i = 0; sq_ddl_templates[i]; i++) {
        char *sql = sq_sql_expand(&names, sq_ddl_templates[i]);
        char *text = sql ? sqlite3_mprintf("%s;\n", sql) : NULL;
        if (text)
            emit(ctx, text);
        sqlite3_free(sql);
        sqlite3_free(text);
        if (!text) {
            snprintf(errstr, errlen, "out of memory");
            return OBX_NOMEM;
        }
    }
    return OBX_OK;
}

static const obx_store_ops sq_ops = {
    .struct_size = sizeof(obx_store_ops),
    .flags = OBX_STORE_ORDERED_CLAIM,
    .validate = sq_validate,
    .open = sq_open,
    .close = sq_close,
    .claim = sq_claim,
    .ack = sq_ack,
    .release = sq_release,
    .bury = sq_bury,
    .stats = sq_stats,
    .schema_v2 = sq_schema,
    .dead_list = sq_dead_list,
    .dead_requeue = sq_dead_requeue,
    .dead_purge = sq_dead_purge,
    .demo = sq_demo,
    .claim_ahead = sq_claim_ahead,
};

OBX_STORE_PLUGIN("sqlite", "SQLite outbox table (polling, WAL mode)", "1.0.0",
                 sq_options, sq_config, sq_ops)
