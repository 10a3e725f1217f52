/* The pg_wal store's set-up at open: the server, the tables (created
 * with create_schema), the dead-letter table, the publication, then the
 * slot (pgw_slot.c) and a pending recovery (pgw_recover.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pg_schema.h"
#include "pgw_store.h"

#define PGW_MIN_SERVER 140000
/* Transaction-level advisory lock serialising schema creation by relays
 * that start together ("obx_wal"). */
#define PGW_SCHEMA_LOCK "7021781148607337"

/* ---- set-up ---- */

/* clang-format off */

/* $1 the table as {T} expands it: the schema it is in, no row when there is
 * no such table. */
static const char pgw_table_schema_sql[] =
    "SELECT n.nspname\n"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
    " WHERE c.oid = to_regclass($1)";

/* Whether the table $1 has both bookkeeping columns a full bury marks. */
static const char pgw_mark_full_sql[] =
    "SELECT count(*) = 2 FROM pg_attribute\n"
    " WHERE attrelid = to_regclass($1)\n"
    "   AND attname IN ('attempts', 'dead_destination')\n"
    "   AND NOT attisdropped";

/* The columns of table $1, as {T} expands it, and their types. */
static const char pgw_columns_sql[] =
    "SELECT attname, atttypid::regtype::text FROM pg_attribute\n"
    " WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped";

static const char pgw_publication_sql[] =
    "SELECT 1 FROM pg_publication WHERE pubname = $1";

/* Whether publication $1 carries the inserts of table $2.$3. */
static const char pgw_publishes_sql[] =
    "SELECT p.pubinsert\n"
    "  FROM pg_publication p\n"
    "  JOIN pg_publication_tables t ON t.pubname = p.pubname\n"
    " WHERE p.pubname = $1 AND t.schemaname = $2 AND t.tablename = $3";

/* Whether the outbox table $1 exists, and whether $2 is a table. */
static const char pgw_tables_exist_sql[] =
    "SELECT to_regclass($1) IS NOT NULL,\n"
    "       coalesce((SELECT relkind IN ('r', 'p') FROM pg_class\n"
    "                  WHERE oid = to_regclass($2)), false)";

/* Whether $1 is a table made as pg_wal's dead-letter table (it has
 * from_message). */
static const char pgw_legacy_dead_sql[] =
    "SELECT 1 FROM pg_attribute\n"
    " WHERE attrelid = to_regclass($1) AND attname = 'from_message'\n"
    "   AND (SELECT relkind FROM pg_class WHERE oid = to_regclass($1)) = 'r'";

/* clang-format on */

static obx_status check_server(pgw_store *s, char *errstr, size_t errlen)
{
    int v = PQserverVersion(s->sql);
    if (v < PGW_MIN_SERVER) {
        osc_errf_words(
            errstr, errlen,
            "pg_wal %s: server version %d.%d is too old; PostgreSQL 14 "
            "or later is required",
            s->target, v / 10000, v % 10000);
        return OBX_CONFIG;
    }
    char level[32];
    bool found;
    obx_status st =
        pgw_query_text(s, "SELECT current_setting('wal_level')", 0, NULL, level,
                       sizeof level, &found, "read wal_level", errstr, errlen);
    if (st == OBX_OK && strcmp(level, "logical") != 0) {
        osc_errf_words(
            errstr, errlen,
            "pg_wal %s: wal_level is '%s'; logical replication needs "
            "wal_level = logical in postgresql.conf (and a restart)",
            s->target, level);
        return OBX_CONFIG;
    }
    return st;
}

static int ddl_exec(void *ctx, const char *sql)
{
    pgw_store *s = ctx;
    PGresult *r = pgw_query(s, &s->sql, sql, 0, NULL, NULL, NULL, true);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
             PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        char clean[OBX_ERRSTR_LEN];
        pgw_scrub(s, PQresultErrorMessage(r), clean, sizeof clean);
        s->host->log(s->host, OBX_LOG_ERROR, "pg_wal: %s failed: %s", sql,
                     clean);
    }
    PQclear(r);
    return ok ? 0 : 1;
}

/* Tables (create_schema) in one transaction under an advisory lock. The
 * publication comes separately: it has no IF NOT EXISTS. */
static obx_status create_tables(pgw_store *s, unsigned parts, char *errstr,
                                size_t errlen)
{
    PGresult *r = pgw_query(s, &s->sql, "BEGIN", 0, NULL, NULL, NULL, true);
    PQclear(r);
    r = pgw_query(s, &s->sql,
                  "SELECT pg_advisory_xact_lock(" PGW_SCHEMA_LOCK ")", 0, NULL,
                  NULL, NULL, true);
    PQclear(r);
    int rc = pgw_ddl_each(&s->names, s->conf, parts, ddl_exec, s);
    r = pgw_query(s, &s->sql, rc ? "ROLLBACK" : "COMMIT", 0, NULL, NULL, NULL,
                  true);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (rc == 0 && ok)
        return OBX_OK;
    osc_errf_words(errstr, errlen,
                   "pg_wal %s: could not create the tables (see the log); run "
                   "`outbox-relay schema pg_wal` as the DBA",
                   s->target);
    return rc < 0 ? OBX_NOMEM : OBX_CONFIG;
}

/* Whether this configuration reads or writes logical column c of the
 * table. Every event needs its type, aggregate and payload; the rest
 * depends on ack_mode and recover (a table made for another tool, say
 * Debezium's, streams with ack_mode = none and has none of ours). A
 * renamed column is needed: a name mapped to nothing is a typo. */
static bool column_needed(const pgw_store *s, int c)
{
    if (pgw_names_mapped(&s->names, c))
        return true;
    bool mark = s->conf->ack_mode == PGW_ACK_MARK;
    switch (c) {
    case PGW_C_AGGREGATE_TYPE:
    case PGW_C_AGGREGATE_ID:
    case PGW_C_EVENT_TYPE:
    case PGW_C_PAYLOAD: return true;
    case PGW_C_ID: return s->conf->ack_mode != PGW_ACK_NONE;
    case PGW_C_PUBLISHED_AT:
    case PGW_C_DEAD_AT:
    case PGW_C_DEAD_REASON: return mark;
    default: /* event_id, topic, headers, created_at: recovery reads them */
        return s->conf->recover;
    }
}

/* The type of column name in r (pgw_columns_sql), or NULL without it. */
static const char *column_type(const PGresult *r, const char *name)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), name) == 0)
            return PQgetvalue(r, i, 1);
    return NULL;
}

/* ack_mode mark and delete, and burying, find the row by an int8 id (a
 * uuid id, as in Debezium's table, would fail every ack). */
static obx_status check_id_type(pgw_store *s, const char *type, char *errstr,
                                size_t errlen)
{
    if (s->conf->ack_mode == PGW_ACK_NONE || !type ||
        strcmp(type, "bigint") == 0 || strcmp(type, "integer") == 0 ||
        strcmp(type, "smallint") == 0)
        return OBX_OK;
    osc_errf_words(errstr, errlen,
                   "pg_wal %s: column \"%s\" of table \"%s\" is %s, but "
                   "ack_mode = %s finds rows by an integer id; map "
                   "store.column.id to an integer column, or use ack_mode = "
                   "none",
                   s->target, s->names.col[PGW_C_ID], s->names.table, type,
                   s->conf->ack_mode == PGW_ACK_MARK ? "mark" : "delete");
    return OBX_CONFIG;
}

/* Refuse at open a table that lacks a column the configuration needs,
 * naming every one: otherwise each event would be dead-lettered at claim
 * ("column ... is NULL or missing"), or the first ack or bury would fail
 * on the SQL. Without event_id an event's id is derived from its WAL
 * position (stable across replays), so that one may be missing. */
static obx_status check_columns(pgw_store *s, const char *table, char *errstr,
                                size_t errlen)
{
    PGresult *r = NULL;
    const char *p[1] = {table};
    obx_status st = pgw_exec(s, pgw_columns_sql, 1, p, &r,
                             "look at the table's columns", errstr, errlen);
    if (st != OBX_OK)
        return st;
    pgw_buf missing = {0};
    for (int c = 0; c < PGW_C_COUNT; c++) {
        if (!column_needed(s, c) || column_type(r, s->names.col[c]))
            continue;
        pgw_buf_add(&missing, missing.len ? ", " : "");
        pgw_buf_add(&missing, s->names.col[c]);
    }
    char *names = pgw_buf_take(&missing);
    if (!names) {
        PQclear(r);
        return OBX_NOMEM;
    }
    if (names[0]) {
        osc_errf_words(
            errstr, errlen,
            "pg_wal %s: table \"%s\" lacks column(s) %s, which the relay "
            "needs with this configuration (ack_mode, recover). The relay's "
            "own columns can be added with ALTER TABLE ... ADD COLUMN IF NOT "
            "EXISTS, typed as in `outbox-relay schema pg_wal`; writer "
            "columns named differently are mapped with store.column.<name>",
            s->target, s->names.table, names);
        st = OBX_CONFIG;
    }
    free(names);
    if (st == OBX_OK)
        st = check_id_type(s, column_type(r, s->names.col[PGW_C_ID]), errstr,
                           errlen);
    PQclear(r);
    return st;
}

static obx_status check_table(pgw_store *s, char *errstr, size_t errlen)
{
    char *name = pgw_sql_expand(&s->names, "{T}");
    if (!name)
        return OBX_NOMEM;
    const char *p[1] = {name};
    bool found;
    obx_status st =
        pgw_query_text(s, pgw_table_schema_sql, 1, p, s->nsp, sizeof s->nsp,
                       &found, "look for the table", errstr, errlen);
    if (st == OBX_OK && !found) {
        free(name);
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: no table \"%s\" and create_schema is false; "
                       "create it with `outbox-relay schema pg_wal`",
                       s->target, s->names.table);
        return OBX_CONFIG;
    }
    if (st == OBX_OK)
        st = check_columns(s, name, errstr, errlen);
    /* A hand-made table may lack the bookkeeping columns pg_wal does not
     * need; burying then marks only dead_at and dead_reason. */
    char v[8] = "";
    if (st == OBX_OK)
        st = pgw_query_text(s, pgw_mark_full_sql, 1, p, v, sizeof v, &found,
                            "look at the table", errstr, errlen);
    s->mark_full = v[0] == 't';
    free(name);
    return st;
}

/* Create the publication when missing; *existed says whether it was
 * there (a slot missing next to an existing publication was lost). */
static obx_status ensure_publication(pgw_store *s, bool *existed, char *errstr,
                                     size_t errlen)
{
    const char *p[1] = {s->names.publication};
    char v[8];
    obx_status st =
        pgw_query_text(s, pgw_publication_sql, 1, p, v, sizeof v, existed,
                       "look for the publication", errstr, errlen);
    if (st != OBX_OK || *existed)
        return st;
    if (!s->conf->create_schema) {
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: no publication \"%s\" and create_schema is "
                       "false; create it with `outbox-relay schema pg_wal`",
                       s->target, s->names.publication);
        return OBX_CONFIG;
    }
    bool table = s->conf->source != PGW_SOURCE_MESSAGES;
    st = pgw_run(s, table ? pgw_ddl_pub_table : pgw_ddl_pub_empty, 0, NULL,
                 "create publication", errstr, errlen);
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_wal %s: created publication \"%s\"", s->target,
                     s->names.publication);
    return st == OBX_FATAL ? OBX_CONFIG : st;
}

/* A publication that does not carry our table's inserts streams nothing:
 * say so instead of idling forever. */
static obx_status check_publication(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->conf->source == PGW_SOURCE_MESSAGES)
        return OBX_OK;
    const char *p[3] = {s->names.publication, s->nsp, s->names.table};
    char v[8];
    bool found;
    obx_status st =
        pgw_query_text(s, pgw_publishes_sql, 3, p, v, sizeof v, &found,
                       "check the publication", errstr, errlen);
    if (st == OBX_OK && (!found || v[0] != 't')) {
        osc_errf_words(
            errstr, errlen,
            "pg_wal %s: publication \"%s\" does not publish INSERTs of "
            "\"%s\".\"%s\"; ALTER PUBLICATION \"%s\" ADD TABLE ... (and "
            "publish = 'insert')",
            s->target, s->names.publication, s->nsp, s->names.table,
            s->names.publication);
        return OBX_CONFIG;
    }
    return st;
}

/* Which of the tables we would create are missing (PGW_DDL_OUTBOX,
 * PGW_DDL_DEAD): the DDL runs only for those. An existing outbox table is
 * left as it is, indexes included: CREATE INDEX on a live table would
 * lock out the application's writers (pg_poll says which indexes it
 * misses). Only a table counts as the dead-letter table: another kind of
 * relation holding the name is reported by check_dead_table. */
static obx_status tables_missing(pgw_store *s, unsigned *parts, char *errstr,
                                 size_t errlen)
{
    char *t = pgw_sql_expand(&s->names, "{T}");
    char *d = pgw_sql_expand(&s->names, "{D}");
    const char *p[2] = {t, d};
    PGresult *r = NULL;
    obx_status st = t && d ? pgw_exec(s, pgw_tables_exist_sql, 2, p, &r,
                                      "look for the tables", errstr, errlen)
                           : OBX_NOMEM;
    free(t);
    free(d);
    *parts = 0;
    if (st == OBX_OK && PQgetvalue(r, 0, 0)[0] != 't' &&
        s->conf->source != PGW_SOURCE_MESSAGES)
        *parts |= PGW_DDL_OUTBOX;
    if (st == OBX_OK && PQgetvalue(r, 0, 1)[0] != 't')
        *parts |= PGW_DDL_DEAD;
    PQclear(r);
    return st;
}

/* The relkind of {D} ("" when there is no such relation). */
static obx_status dead_kind(pgw_store *s, char *kind, size_t len, char *errstr,
                            size_t errlen)
{
    char *d = pgw_sql_expand(&s->names, "{D}");
    if (!d)
        return OBX_NOMEM;
    const char *p[1] = {d};
    bool found;
    obx_status st = pgw_query_text(
        s, "SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", 1, p,
        kind, len, &found, "look for the dead-letter table", errstr, errlen);
    free(d);
    return st;
}

/* Dead letters go to {D}: without it the first poison event would stop
 * the pipeline (bury fails), so a missing or foreign {D} is refused at
 * open, naming the way out. */
static obx_status check_dead_table(pgw_store *s, char *errstr, size_t errlen)
{
    char kind[8] = "";
    obx_status st = dead_kind(s, kind, sizeof kind, errstr, errlen);
    if (st != OBX_OK || strcmp(kind, "r") == 0 || strcmp(kind, "p") == 0)
        return st;
    if (kind[0])
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: \"%s\" is not a table (relkind '%s'), so "
                       "it cannot hold dead letters; set store.dead_table "
                       "to another name",
                       s->target, s->names.dead_table, kind);
    else
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: no dead-letter table \"%s\" and "
                       "create_schema is false; create it with `outbox-relay "
                       "schema pg_wal`",
                       s->target, s->names.dead_table);
    return OBX_CONFIG;
}

/* Before the shared schema pg_wal's default dead-letter table was
 * "<table>_dead", the name of pg_poll's index on dead rows. A relay
 * upgraded over such a table keeps using it (its dead letters stay
 * visible), with a warning saying how to move to the new name. */
static obx_status legacy_dead_table(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->conf->dead_table && s->conf->dead_table[0])
        return OBX_OK;
    char kind[8] = "";
    obx_status st = dead_kind(s, kind, sizeof kind, errstr, errlen);
    if (st != OBX_OK || kind[0])
        return st;
    pgw_names old = s->names;
    char name[OSC_PG_NAME_MAX + 1];
    osc_pg_object_name(s->names.table, OSC_PG_SFX_DEAD, name);
    old.dead_table = name;
    char *d = pgw_sql_expand(&old, "{D}");
    if (!d)
        return OBX_NOMEM;
    const char *p[1] = {d};
    char v[8];
    bool found;
    st = pgw_query_text(s, pgw_legacy_dead_sql, 1, p, v, sizeof v, &found,
                        "look for the dead-letter table", errstr, errlen);
    free(d);
    if (st != OBX_OK || !found)
        return st;
    char fresh[OSC_PG_NAME_MAX + 1];
    snprintf(fresh, sizeof fresh, "%s", s->names.dead_buf);
    snprintf(s->names.dead_buf, sizeof s->names.dead_buf, "%s", name);
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_wal %s: dead letters stay in \"%s\", the dead-letter "
                 "table's old default name; it is also the name of pg_poll's "
                 "index on dead rows, so the table cannot be shared with "
                 "pg_poll until it is renamed: ALTER TABLE \"%s\" RENAME TO "
                 "\"%s\" (or set store.dead_table = %s to keep it)",
                 s->target, name, name, fresh, name);
    s->names.dead_table = s->names.dead_buf;
    return OBX_OK;
}

/* The default slot needs the database's name (slot names are
 * cluster-wide): derived once connected. */
static obx_status derive_slot(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->names.slot)
        return OBX_OK;
    char db[256];
    bool found;
    obx_status st =
        pgw_query_text(s, "SELECT current_database()", 0, NULL, db, sizeof db,
                       &found, "read the database name", errstr, errlen);
    if (st == OBX_OK)
        pgw_names_slot(&s->names, s->conf, db);
    return st;
}

/* Publication and slot under a session advisory lock of the slot's own:
 * relays that start together on a new database would otherwise both
 * create the publication (one fails on the duplicate), or one would find
 * the publication the other just made without its slot yet and take the
 * slot for lost. The lock goes with the session if the connection does. */
static obx_status setup_pub_and_slot(pgw_store *s, char *errstr, size_t errlen)
{
    const char *p[1] = {s->names.slot};
    obx_status st =
        pgw_run(s,
                "SELECT pg_advisory_lock(hashtext('obx_wal_setup'), "
                "hashtext($1))",
                1, p, "lock the slot's set-up", errstr, errlen);
    if (st != OBX_OK)
        return st;
    bool pub_existed = true;
    st = ensure_publication(s, &pub_existed, errstr, errlen);
    if (st == OBX_OK)
        st = check_publication(s, errstr, errlen);
    if (st == OBX_OK)
        st = pgw_slot_ensure(s, pub_existed, errstr, errlen);
    char e2[OBX_ERRSTR_LEN];
    if (s->sql)
        pgw_run(s,
                "SELECT pg_advisory_unlock(hashtext('obx_wal_setup'), "
                "hashtext($1))",
                1, p, "unlock the slot's set-up", e2, sizeof e2);
    return st;
}

obx_status pgw_setup(pgw_store *s, char *errstr, size_t errlen)
{
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st == OBX_OK)
        st = check_server(s, errstr, errlen);
    if (st == OBX_OK)
        st = derive_slot(s, errstr, errlen);
    if (st == OBX_OK)
        st = legacy_dead_table(s, errstr, errlen);
    unsigned missing = 0;
    if (st == OBX_OK && s->conf->create_schema)
        st = tables_missing(s, &missing, errstr, errlen);
    if (st == OBX_OK && missing)
        st = create_tables(s, missing, errstr, errlen);
    if (st == OBX_OK && s->conf->source != PGW_SOURCE_MESSAGES)
        st = check_table(s, errstr, errlen);
    if (st == OBX_OK)
        st = check_dead_table(s, errstr, errlen);
    if (st == OBX_OK)
        st = setup_pub_and_slot(s, errstr, errlen);
    if (st == OBX_OK && s->conf->source != PGW_SOURCE_MESSAGES)
        st = pgw_recover_pending(s, errstr, errlen);
    return st;
}
