/* The pg_wal store's normal SQL session: names and DDL, connecting and
 * error mapping, set-up of tables, publication and slot, slot health,
 * ack_mode mark/delete, dead letters and recovery. Identifiers are always
 * quoted ("..." with quotes doubled, as PQescapeIdentifier does). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err_words.h"
#include "pg_schema.h"
#include "pg_secret.h"
#include "pg_status.h"
#include "pgw_store.h"

#define PGW_MIN_SERVER 140000
/* Transaction-level advisory lock serialising schema creation by relays
 * that start together ("obx_wal"). */
#define PGW_SCHEMA_LOCK "7021781148607337"

static const char *const pgw_col_default[PGW_C_COUNT] = {
    "id",         "event_id",     "aggregate_type", "aggregate_id",
    "event_type", "payload",      "topic",          "headers",
    "created_at", "published_at", "dead_at",        "dead_reason"};

/* ---- a small string buffer (sticky out-of-memory) ---- */

typedef struct pgw_buf {
    char *p;
    size_t len, cap;
    bool oom;
} pgw_buf;

static void buf_addn(pgw_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_add(pgw_buf *b, const char *s)
{
    buf_addn(b, s, strlen(s));
}

static void buf_ident(pgw_buf *b, const char *name)
{
    buf_add(b, "\"");
    for (const char *p = name; *p; p++)
        buf_add(b, *p == '"' ? "\"\"" : (char[]){*p, '\0'});
    buf_add(b, "\"");
}

static void buf_literal(pgw_buf *b, const char *text)
{
    buf_add(b, "'");
    for (const char *p = text; *p; p++)
        buf_add(b, *p == '\'' ? "''" : (char[]){*p, '\0'});
    buf_add(b, "'");
}

static char *buf_take(pgw_buf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p ? b->p : calloc(1, 1);
}

/* ---- names ---- */

static int name_err(char *err, size_t errlen, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static int name_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int apply_mapping(pgw_names *n, const obx_kv *kv, char *err,
                         size_t errlen)
{
    int c = -1;
    for (int i = 0; i < PGW_C_N_MAPPABLE && c < 0; i++)
        if (strcmp(pgw_col_default[i], kv->name) == 0)
            c = i;
    if (c < 0)
        return name_err(err, errlen,
                        "line %d: store.column.%s: unknown column; valid: "
                        "id, event_id, aggregate_type, aggregate_id, "
                        "event_type, payload, topic, headers, created_at",
                        kv->line, kv->name);
    if (!kv->value || !kv->value[0] || strlen(kv->value) > PGW_NAME_MAX)
        return name_err(err, errlen,
                        "line %d: store.column.%s: empty or longer than %d "
                        "bytes",
                        kv->line, kv->name, PGW_NAME_MAX);
    if (n->col[c] != pgw_col_default[c])
        return name_err(err, errlen, "line %d: store.column.%s: set twice",
                        kv->line, kv->name);
    n->col[c] = kv->value;
    return 0;
}

/* Slot names: lower-case letters, digits and underscores (PostgreSQL's
 * rule), at most 63 bytes. */
static int check_slot(const char *slot, char *err, size_t errlen)
{
    size_t len = strlen(slot);
    bool ok = len > 0 && len <= PGW_NAME_MAX;
    for (const char *p = slot; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (ok)
        return 0;
    return name_err(err, errlen,
                    "store.slot: '%s' is not a valid replication slot name "
                    "(lower-case letters, digits and '_', at most 63 bytes)",
                    slot);
}

static const char *or_default(const char *v, const char *def)
{
    return v && v[0] ? v : def;
}

int pgw_names_init(pgw_names *n, const obx_pg_wal_config *conf, char *err,
                   size_t errlen)
{
    memset(n, 0, sizeof *n);
    n->table = or_default(conf->table, "outbox");
    n->schema = conf->schema && conf->schema[0] ? conf->schema : NULL;
    n->publication = or_default(conf->publication, "outbox_relay");
    n->prefix = or_default(conf->message_prefix, "outbox");
    const char *names[] = {n->table, n->schema, conf->dead_table,
                           n->publication};
    for (size_t i = 0; i < 4; i++)
        if (names[i] && strlen(names[i]) > PGW_NAME_MAX)
            return name_err(err, errlen,
                            "store: name '%s' is longer than %d bytes "
                            "(PostgreSQL would cut it)",
                            names[i], PGW_NAME_MAX);
    /* the name pg_poll's DDL does not use for anything (its dead-letter
     * index is <table>_dead), so the two stores can share one table */
    obx_pg_object_name(n->table, OBX_PG_SFX_DEAD_LETTERS, n->dead_buf);
    n->dead_table = conf->dead_table && conf->dead_table[0] ? conf->dead_table
                                                            : n->dead_buf;
    if (conf->slot && conf->slot[0]) {
        if (check_slot(conf->slot, err, errlen) != 0)
            return -1;
        n->slot = conf->slot;
    }
    for (int c = 0; c < PGW_C_COUNT; c++)
        n->col[c] = pgw_col_default[c];
    for (size_t i = 0; i < conf->column.n; i++)
        if (apply_mapping(n, &conf->column.items[i], err, errlen) != 0)
            return -1;
    return 0;
}

void pgw_names_slot(pgw_names *n, const obx_pg_wal_config *conf, const char *db)
{
    if (n->slot)
        return;
    const char *what =
        conf->source == OBX_PG_WAL_MESSAGES ? n->prefix : n->table;
    obx_pg_default_slot(db, n->schema, what, n->slot_buf);
    n->slot = n->slot_buf;
}

obx_status pgw_check_recover(const obx_pg_wal_config *conf, char *errstr,
                             size_t errlen)
{
    if (!conf->recover)
        return OBX_OK;
    if (conf->source == OBX_PG_WAL_MESSAGES) {
        obx_errf_words(errstr, errlen,
                       "store.recover = true needs the outbox table as a "
                       "source: with source = messages the events exist only "
                       "in the WAL, and a lost slot leaves nothing to re-read");
        return OBX_CONFIG;
    }
    if (conf->ack_mode != OBX_PG_WAL_ACK_MARK) {
        obx_errf_words(errstr, errlen,
                       "store.recover = true needs store.ack_mode = mark: "
                       "recovery re-reads the rows not marked published, and "
                       "only ack_mode = mark marks them");
        return OBX_CONFIG;
    }
    return OBX_OK;
}

/* ---- templates: {T} table, {D} dead table, {R} recovery list, {S}
 * schema, {P} publication, {SLOT} slot literal, {PFX} prefix literal,
 * {I:sfx} index name "<table>_<sfx>", {col} a column ---- */

/* name, or the object `sfx` of it (obx_pg_object_name), quoted and
 * qualified with the schema when there is one. */
static void qualified(pgw_buf *b, const pgw_names *n, const char *name,
                      const char *sfx)
{
    if (n->schema) {
        buf_ident(b, n->schema);
        buf_add(b, ".");
    }
    char obj[OBX_PG_NAME_MAX + 1];
    if (sfx)
        obx_pg_object_name(name, sfx, obj);
    buf_ident(b, sfx ? obj : name);
}

static int placeholder(pgw_buf *b, const pgw_names *n, const char *key)
{
    if (strcmp(key, "T") == 0)
        qualified(b, n, n->table, NULL);
    else if (strcmp(key, "D") == 0)
        qualified(b, n, n->dead_table, NULL);
    else if (strcmp(key, "R") == 0)
        qualified(b, n, n->table, OBX_PG_SFX_RECOVER);
    else if (strcmp(key, "S") == 0)
        buf_ident(b, n->schema ? n->schema : "public");
    else if (strcmp(key, "P") == 0)
        buf_ident(b, n->publication);
    else if (strcmp(key, "SLOT") == 0)
        buf_literal(b, n->slot ? n->slot : "");
    else if (strcmp(key, "PFX") == 0)
        buf_literal(b, n->prefix);
    else if (strncmp(key, "I:", 2) == 0) {
        char obj[OBX_PG_NAME_MAX + 1];
        obx_pg_object_name(n->table, key + 2, obj);
        buf_ident(b, obj);
    } else {
        for (int c = 0; c < PGW_C_COUNT; c++)
            if (strcmp(pgw_col_default[c], key) == 0) {
                buf_ident(b, n->col[c]);
                return 0;
            }
        /* the shared table's bookkeeping columns keep their names */
        if (!obx_pg_fixed_column(key))
            return -1;
        buf_ident(b, key);
    }
    return 0;
}

char *pgw_sql_expand(const pgw_names *n, const char *tpl)
{
    pgw_buf b = {0};
    const char *p = tpl;
    while (*p) {
        const char *open = strchr(p, '{');
        if (!open) {
            buf_add(&b, p);
            break;
        }
        buf_addn(&b, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        char key[32];
        size_t len = close ? (size_t)(close - open - 1) : 0;
        if (!close || len == 0 || len >= sizeof key) {
            free(b.p);
            return NULL;
        }
        memcpy(key, open + 1, len);
        key[len] = '\0';
        if (placeholder(&b, n, key) != 0) {
            free(b.p);
            return NULL;
        }
        p = close + 1;
    }
    return buf_take(&b);
}

/* ---- DDL ---- */

/* The outbox table and its indexes are the ones pg_poll creates (one
 * definition, stores/common/pg_schema.c), so an application moves between
 * the stores on one table; pg_wal only reads the writer columns and sets
 * published_at / dead_at with ack_mode = mark. The dead-letter table is
 * pg_wal's own: with ack_mode = none or source = messages there is no row
 * to mark. */
static const char pgw_ddl_schema[] = "CREATE SCHEMA IF NOT EXISTS {S}";

static const char pgw_ddl_dead[] =
    "CREATE TABLE IF NOT EXISTS {D} (\n"
    "    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
    "    event_id text NOT NULL,\n"
    "    aggregate_type text NOT NULL,\n"
    "    aggregate_id text NOT NULL,\n"
    "    event_type text NOT NULL,\n"
    "    payload bytea NOT NULL,\n"
    "    topic text,\n"
    "    headers jsonb,\n"
    "    created_at timestamptz NOT NULL,\n"
    "    attempts integer NOT NULL DEFAULT 0,\n"
    "    dead_at timestamptz NOT NULL DEFAULT now(),\n"
    "    dead_reason text,\n"
    "    dead_destination text,\n"
    "    from_message boolean NOT NULL DEFAULT false\n"
    ")";

static const char pgw_ddl_pub_table[] =
    "CREATE PUBLICATION {P} FOR TABLE {T} WITH (publish = 'insert')";
static const char pgw_ddl_pub_empty[] =
    "CREATE PUBLICATION {P} WITH (publish = 'insert')";
static const char pgw_ddl_slot[] =
    "SELECT pg_create_logical_replication_slot({SLOT}, 'pgoutput')";

static int ddl_one(const pgw_names *n, const char *tpl,
                   int (*emit)(void *ctx, const char *sql), void *ctx)
{
    char *sql = pgw_sql_expand(n, tpl);
    if (!sql)
        return -1;
    int rc = emit(ctx, sql);
    free(sql);
    return rc;
}

int pgw_ddl_each(const pgw_names *n, const obx_pg_wal_config *conf,
                 unsigned parts, int (*emit)(void *ctx, const char *sql),
                 void *ctx)
{
    bool table = conf->source != OBX_PG_WAL_MESSAGES;
    bool outbox = table && (parts & PGW_DDL_OUTBOX);
    int rc = 0;
    if ((outbox || (parts & PGW_DDL_DEAD)) && n->schema)
        rc = ddl_one(n, pgw_ddl_schema, emit, ctx);
    for (size_t i = 0; outbox && rc == 0 && i < obx_pg_outbox_ddl_n; i++)
        rc = ddl_one(n, obx_pg_outbox_ddl[i].tpl, emit, ctx);
    if ((parts & PGW_DDL_DEAD) && rc == 0)
        rc = ddl_one(n, pgw_ddl_dead, emit, ctx);
    if ((parts & PGW_DDL_PUBLICATION) && rc == 0)
        rc = ddl_one(n, table ? pgw_ddl_pub_table : pgw_ddl_pub_empty, emit,
                     ctx);
    if ((parts & PGW_DDL_SLOT) && rc == 0)
        rc = ddl_one(n, pgw_ddl_slot, emit, ctx);
    return rc;
}

/* ---- connections and errors ---- */

void pgw_scrub(const pgw_store *s, const char *in, char *out, size_t outlen)
{
    osc_pg_scrub(s->host, s->secret, in, out, outlen);
}

obx_status pgw_fail(pgw_store *s, PGconn *c, const PGresult *res,
                    const char *what, char *errstr, size_t errlen)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if ((!msg || !msg[0]) && c)
        msg = PQerrorMessage(c);
    char clean[OBX_ERRSTR_LEN];
    pgw_scrub(s, msg && msg[0] ? msg : "not connected", clean, sizeof clean);
    obx_errf_words(errstr, errlen, "pg_wal %s: %s: %s", s->target, what, clean);
    if (!c || PQstatus(c) == CONNECTION_BAD) {
        if (c && c == s->sql) {
            PQfinish(s->sql);
            s->sql = NULL;
        }
        return OBX_UNAVAILABLE;
    }
    if (c == s->sql && PQtransactionStatus(c) == PQTRANS_INERROR)
        PQclear(PQexec(c, "ROLLBACK"));
    return osc_pg_status_of(state);
}

/* Server notices ("relation ... already exists, skipping") go to the
 * debug log instead of libpq's default, stderr. */
static void pgw_notice(void *arg, const char *message)
{
    pgw_store *s = arg;
    if (!s->host->log_enabled(s->host, OBX_LOG_DEBUG))
        return;
    char clean[OBX_ERRSTR_LEN];
    pgw_scrub(s, message, clean, sizeof clean);
    s->host->log(s->host, OBX_LOG_DEBUG, "pg_wal: server says: %s", clean);
}

PGconn *pgw_connect(pgw_store *s, bool replication, char *errstr, size_t errlen)
{
    /* our defaults first, so that the user's conninfo (expanded from
     * dbname, the last keyword) overrides them */
    const char *kw[] = {"application_name",
                        "connect_timeout",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "dbname",
                        NULL,
                        NULL};
    const char *val[] = {"outbox-relay",
                         "10",
                         "1",
                         "10",
                         "5",
                         "3",
                         s->conf->conninfo ? s->conf->conninfo : "",
                         NULL,
                         NULL};
    if (replication) {
        kw[7] = "replication";
        val[7] = "database";
    }
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (c && PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeProcessor(c, pgw_notice, s);
        return c;
    }
    char clean[OBX_ERRSTR_LEN];
    pgw_scrub(s, c ? PQerrorMessage(c) : "out of memory", clean, sizeof clean);
    obx_errf_words(errstr, errlen, "pg_wal %s: cannot connect%s: %s", s->target,
                   replication ? " for replication" : "", clean);
    PQfinish(c);
    return NULL;
}

obx_status pgw_sql_ensure(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->sql)
        return OBX_OK;
    s->sql = pgw_connect(s, false, errstr, errlen);
    return s->sql ? OBX_OK : OBX_UNAVAILABLE;
}

obx_status pgw_exec(pgw_store *s, const char *sql, int n,
                    const char *const *params, PGresult **out, const char *what,
                    char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st != OBX_OK)
        return st;
    PGresult *r = PQexecParams(s->sql, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
        *out = r;
        return OBX_OK;
    }
    st = pgw_fail(s, s->sql, r, what, errstr, errlen);
    PQclear(r);
    return st;
}

/* Expand tpl and run it; the result is dropped. */
static obx_status run_tpl(pgw_store *s, const char *tpl, int n,
                          const char *const *params, const char *what,
                          char *errstr, size_t errlen)
{
    char *sql = pgw_sql_expand(&s->names, tpl);
    if (!sql)
        return OBX_NOMEM;
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, n, params, &r, what, errstr, errlen);
    free(sql);
    PQclear(r);
    return st;
}

/* A one-row query's first column ("" when NULL); *found false: no row. */
static obx_status query_text(pgw_store *s, const char *tpl, int n,
                             const char *const *params, char *out,
                             size_t outlen, bool *found, const char *what,
                             char *errstr, size_t errlen)
{
    char *sql = pgw_sql_expand(&s->names, tpl);
    if (!sql)
        return OBX_NOMEM;
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, n, params, &r, what, errstr, errlen);
    free(sql);
    if (st != OBX_OK)
        return st;
    *found = PQntuples(r) > 0;
    snprintf(out, outlen, "%s", *found ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return OBX_OK;
}

/* ---- set-up ---- */

static obx_status check_server(pgw_store *s, char *errstr, size_t errlen)
{
    int v = PQserverVersion(s->sql);
    if (v < PGW_MIN_SERVER) {
        obx_errf_words(
            errstr, errlen,
            "pg_wal %s: server version %d.%d is too old; PostgreSQL 14 "
            "or later is required",
            s->target, v / 10000, v % 10000);
        return OBX_CONFIG;
    }
    char level[32];
    bool found;
    obx_status st =
        query_text(s, "SELECT current_setting('wal_level')", 0, NULL, level,
                   sizeof level, &found, "read wal_level", errstr, errlen);
    if (st == OBX_OK && strcmp(level, "logical") != 0) {
        obx_errf_words(
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
    PGresult *r = PQexec(s->sql, sql);
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
    PGresult *r = PQexec(s->sql, "BEGIN");
    PQclear(r);
    r = PQexec(s->sql, "SELECT pg_advisory_xact_lock(" PGW_SCHEMA_LOCK ")");
    PQclear(r);
    int rc = pgw_ddl_each(&s->names, s->conf, parts, ddl_exec, s);
    r = PQexec(s->sql, rc ? "ROLLBACK" : "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (rc == 0 && ok)
        return OBX_OK;
    obx_errf_words(errstr, errlen,
                   "pg_wal %s: could not create the tables (see the log); run "
                   "`outbox-relay schema pg_wal` as the DBA",
                   s->target);
    return rc < 0 ? OBX_NOMEM : OBX_CONFIG;
}

static obx_status check_table(pgw_store *s, char *errstr, size_t errlen)
{
    char *name = pgw_sql_expand(&s->names, "{T}");
    if (!name)
        return OBX_NOMEM;
    const char *p[1] = {name};
    bool found;
    obx_status st = query_text(
        s,
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.oid = to_regclass($1)",
        1, p, s->nsp, sizeof s->nsp, &found, "look for the table", errstr,
        errlen);
    if (st == OBX_OK && !found) {
        free(name);
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: no table \"%s\" and create_schema is false; "
                       "create it with `outbox-relay schema pg_wal`",
                       s->target, s->names.table);
        return OBX_CONFIG;
    }
    /* A hand-made table may lack the bookkeeping columns pg_wal does not
     * need; burying then marks only dead_at and dead_reason. */
    char v[8] = "";
    if (st == OBX_OK)
        st = query_text(s,
                        "SELECT count(*) = 2 FROM pg_attribute WHERE "
                        "attrelid = to_regclass($1) AND attname IN "
                        "('attempts', 'dead_destination') AND NOT "
                        "attisdropped",
                        1, p, v, sizeof v, &found, "look at the table", errstr,
                        errlen);
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
    obx_status st = query_text(s,
                               "SELECT 1 FROM pg_publication WHERE "
                               "pubname = $1",
                               1, p, v, sizeof v, existed,
                               "look for the publication", errstr, errlen);
    if (st != OBX_OK || *existed)
        return st;
    if (!s->conf->create_schema) {
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: no publication \"%s\" and create_schema is "
                       "false; create it with `outbox-relay schema pg_wal`",
                       s->target, s->names.publication);
        return OBX_CONFIG;
    }
    bool table = s->conf->source != OBX_PG_WAL_MESSAGES;
    st = run_tpl(s, table ? pgw_ddl_pub_table : pgw_ddl_pub_empty, 0, NULL,
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
    if (s->conf->source == OBX_PG_WAL_MESSAGES)
        return OBX_OK;
    const char *p[3] = {s->names.publication, s->nsp, s->names.table};
    char v[8];
    bool found;
    obx_status st = query_text(
        s,
        "SELECT p.pubinsert FROM pg_publication p JOIN pg_publication_tables "
        "t ON t.pubname = p.pubname WHERE p.pubname = $1 AND t.schemaname = "
        "$2 AND t.tablename = $3",
        3, p, v, sizeof v, &found, "check the publication", errstr, errlen);
    if (st == OBX_OK && (!found || v[0] != 't')) {
        obx_errf_words(
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

typedef struct pgw_slot_info {
    bool found;
    char plugin[64], db[128], wal_status[32], confirmed[32];
    char curdb[128];
    int64_t lag;
} pgw_slot_info;

static obx_status read_slot(pgw_store *s, pgw_slot_info *si, char *errstr,
                            size_t errlen)
{
    memset(si, 0, sizeof *si);
    si->lag = -1;
    const char *p[1] = {s->names.slot};
    PGresult *r = NULL;
    obx_status st = pgw_exec(
        s,
        "SELECT plugin, database, coalesce(wal_status, ''), "
        "coalesce(confirmed_flush_lsn::text, ''), current_database(), "
        "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), "
        "confirmed_flush_lsn)::int8, -1) FROM pg_replication_slots WHERE "
        "slot_name = $1",
        1, p, &r, "read the replication slot", errstr, errlen);
    if (st != OBX_OK)
        return st;
    si->found = PQntuples(r) == 1;
    if (si->found) {
        snprintf(si->plugin, sizeof si->plugin, "%s", PQgetvalue(r, 0, 0));
        snprintf(si->db, sizeof si->db, "%s", PQgetvalue(r, 0, 1));
        snprintf(si->wal_status, sizeof si->wal_status, "%s",
                 PQgetvalue(r, 0, 2));
        snprintf(si->confirmed, sizeof si->confirmed, "%s",
                 PQgetvalue(r, 0, 3));
        snprintf(si->curdb, sizeof si->curdb, "%s", PQgetvalue(r, 0, 4));
        si->lag = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    }
    PQclear(r);
    return OBX_OK;
}

static obx_status slot_lost(pgw_store *s, const char *what, char *errstr,
                            size_t errlen)
{
    if (s->conf->ack_mode == OBX_PG_WAL_ACK_MARK)
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: replication slot \"%s\" %s: events "
                       "committed since its last confirmed position may "
                       "never be streamed. Restart with store.recover = true "
                       "to re-read every unpublished row of the table and "
                       "continue on a new slot.",
                       s->target, s->names.slot, what);
    else
        /* nothing says which rows were published: no way back by itself */
        obx_errf_words(
            errstr, errlen,
            "pg_wal %s: replication slot \"%s\" %s: events committed "
            "since its last confirmed position may never be streamed, and "
            "with ack_mode = %s nothing records which rows were published, "
            "so the relay cannot re-read them. To go on, create a new slot "
            "(SELECT pg_create_logical_replication_slot('%s', 'pgoutput')); "
            "it streams only what is committed after that, so events "
            "written while there was no slot are never streamed unless you "
            "insert them again. With ack_mode = mark the relay marks "
            "published rows, and store.recover = true then re-reads the "
            "unpublished ones onto a new slot.",
            s->target, s->names.slot, what,
            s->conf->ack_mode == OBX_PG_WAL_ACK_DELETE ? "delete" : "none",
            s->names.slot);
    s->host->log(s->host, OBX_LOG_ERROR, "%s", errstr);
    return OBX_FATAL;
}

obx_status pgw_slot_check(pgw_store *s, int64_t *lag, char *errstr,
                          size_t errlen)
{
    pgw_slot_info si;
    obx_status st = read_slot(s, &si, errstr, errlen);
    *lag = si.lag;
    if (st != OBX_OK)
        return st;
    if (!si.found)
        return slot_lost(s, "does not exist (dropped?)", errstr, errlen);
    if (strcmp(si.wal_status, "lost") == 0)
        return slot_lost(s,
                         "was invalidated (wal_status = lost: it fell "
                         "behind max_slot_wal_keep_size)",
                         errstr, errlen);
    if (strcmp(si.plugin, "pgoutput") != 0 || strcmp(si.db, si.curdb) != 0) {
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: replication slot \"%s\" uses plugin '%s' in "
                       "database '%s'; pg_wal needs a pgoutput slot in '%s'",
                       s->target, s->names.slot, si.plugin, si.db, si.curdb);
        return OBX_CONFIG;
    }
    pgo_lsn_parse(si.confirmed, &s->start_lsn);
    return OBX_OK;
}

static obx_status create_slot(pgw_store *s, char *errstr, size_t errlen)
{
    obx_status st = run_tpl(s, pgw_ddl_slot, 0, NULL,
                            "create the replication slot", errstr, errlen);
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_wal %s: created replication slot \"%s\"; events "
                     "committed from now on are streamed",
                     s->target, s->names.slot);
    return st == OBX_FATAL ? OBX_CONFIG : st;
}

/* ---- recovery: a new slot plus the list of rows it will not stream ---- */

/* Create the slot with an exported snapshot and, inside that snapshot,
 * record every unpublished row id: exactly the rows committed before the
 * slot's start, which the new slot will never stream. */
static obx_status recover_create(pgw_store *s, bool drop_first, char *errstr,
                                 size_t errlen)
{
    obx_status bad = pgw_check_recover(s->conf, errstr, errlen);
    if (bad != OBX_OK)
        return bad;
    if (drop_first) {
        obx_status st = run_tpl(s, "SELECT pg_drop_replication_slot({SLOT})", 0,
                                NULL, "drop the lost slot", errstr, errlen);
        if (st != OBX_OK)
            return st;
    }
    PGconn *rc = pgw_connect(s, true, errstr, errlen);
    if (!rc)
        return OBX_UNAVAILABLE;
    pgw_buf b = {0};
    buf_add(&b, "CREATE_REPLICATION_SLOT ");
    buf_ident(&b, s->names.slot);
    buf_add(&b, " LOGICAL pgoutput EXPORT_SNAPSHOT");
    char *cmd = buf_take(&b);
    PGresult *r = cmd ? PQexec(rc, cmd) : NULL;
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
    st = run_tpl(s, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL,
                 "recover: begin", errstr, errlen);
    if (st == OBX_OK) {
        /* SET TRANSACTION SNAPSHOT takes no parameters: quote it */
        pgw_buf q = {0};
        buf_add(&q, "SET TRANSACTION SNAPSHOT ");
        buf_literal(&q, snap);
        char *sql = buf_take(&q);
        st = sql ? run_tpl(s, sql, 0, NULL, "recover: import snapshot", errstr,
                           errlen)
                 : OBX_NOMEM;
        free(sql);
    }
    if (st == OBX_OK)
        st = run_tpl(s,
                     "CREATE TABLE IF NOT EXISTS {R} AS SELECT {id} AS id "
                     "FROM {T} WHERE {published_at} IS NULL AND {dead_at} IS "
                     "NULL",
                     0, NULL, "recover: list unpublished rows", errstr, errlen);
    if (st == OBX_OK)
        st = run_tpl(s, "COMMIT", 0, NULL, "recover: commit", errstr, errlen);
    else if (s->sql)
        PQclear(PQexec(s->sql, "ROLLBACK"));
    PQfinish(rc);
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_wal %s: recovery: created slot \"%s\"; re-reading "
                     "the table's unpublished rows before streaming",
                     s->target, s->names.slot);
    return st;
}

static obx_status recover_pending(pgw_store *s, char *errstr, size_t errlen)
{
    char *name = pgw_sql_expand(&s->names, "{R}");
    if (!name)
        return OBX_NOMEM;
    const char *p[1] = {name};
    char v[8];
    bool found;
    obx_status st =
        query_text(s, "SELECT to_regclass($1) IS NOT NULL", 1, p, v, sizeof v,
                   &found, "look for recovery", errstr, errlen);
    free(name);
    s->recovering = st == OBX_OK && v[0] == 't';
    s->recover_after = 0;
    return st;
}

static obx_status ensure_slot(pgw_store *s, bool pub_existed, char *errstr,
                              size_t errlen)
{
    pgw_slot_info si;
    obx_status st = read_slot(s, &si, errstr, errlen);
    if (st != OBX_OK)
        return st;
    bool lost = si.found && strcmp(si.wal_status, "lost") == 0;
    if (s->conf->recover && (!si.found || lost))
        return recover_create(s, lost, errstr, errlen);
    if (!si.found && !pub_existed && s->conf->create_slot)
        return create_slot(s, errstr, errlen);
    if (!si.found && !s->conf->create_slot) {
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: no replication slot \"%s\" and "
                       "create_slot is false. Create it with `outbox-relay "
                       "schema pg_wal` or SELECT "
                       "pg_create_logical_replication_slot('%s', "
                       "'pgoutput'); a new slot streams only events "
                       "committed after it exists, so rows already in the "
                       "table are never streamed (with ack_mode = mark, "
                       "store.recover = true re-reads the unpublished ones "
                       "instead).",
                       s->target, s->names.slot, s->names.slot);
        return OBX_CONFIG;
    }
    int64_t lag;
    return pgw_slot_check(s, &lag, errstr, errlen);
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
    obx_status st =
        t && d ? pgw_exec(s,
                          "SELECT to_regclass($1) IS NOT NULL, "
                          "coalesce((SELECT relkind IN ('r', 'p') FROM "
                          "pg_class WHERE oid = to_regclass($2)), false)",
                          2, p, &r, "look for the tables", errstr, errlen)
               : OBX_NOMEM;
    free(t);
    free(d);
    *parts = 0;
    if (st == OBX_OK && PQgetvalue(r, 0, 0)[0] != 't' &&
        s->conf->source != OBX_PG_WAL_MESSAGES)
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
    obx_status st = query_text(
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
        obx_errf_words(errstr, errlen,
                       "pg_wal %s: \"%s\" is not a table (relkind '%s'), so "
                       "it cannot hold dead letters; set store.dead_table "
                       "to another name",
                       s->target, s->names.dead_table, kind);
    else
        obx_errf_words(errstr, errlen,
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
    char name[OBX_PG_NAME_MAX + 1];
    obx_pg_object_name(s->names.table, OBX_PG_SFX_DEAD, name);
    old.dead_table = name;
    char *d = pgw_sql_expand(&old, "{D}");
    if (!d)
        return OBX_NOMEM;
    const char *p[1] = {d};
    char v[8];
    bool found;
    st = query_text(s,
                    "SELECT 1 FROM pg_attribute WHERE attrelid = "
                    "to_regclass($1) AND attname = 'from_message' AND "
                    "(SELECT relkind FROM pg_class WHERE oid = "
                    "to_regclass($1)) = 'r'",
                    1, p, v, sizeof v, &found, "look for the dead-letter table",
                    errstr, errlen);
    free(d);
    if (st != OBX_OK || !found)
        return st;
    char fresh[OBX_PG_NAME_MAX + 1];
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
        query_text(s, "SELECT current_database()", 0, NULL, db, sizeof db,
                   &found, "read the database name", errstr, errlen);
    if (st == OBX_OK)
        pgw_names_slot(&s->names, s->conf, db);
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
    if (st == OBX_OK && s->conf->source != OBX_PG_WAL_MESSAGES)
        st = check_table(s, errstr, errlen);
    if (st == OBX_OK)
        st = check_dead_table(s, errstr, errlen);
    bool pub_existed = true;
    if (st == OBX_OK)
        st = ensure_publication(s, &pub_existed, errstr, errlen);
    if (st == OBX_OK)
        st = check_publication(s, errstr, errlen);
    if (st == OBX_OK)
        st = ensure_slot(s, pub_existed, errstr, errlen);
    if (st == OBX_OK && s->conf->source != OBX_PG_WAL_MESSAGES)
        st = recover_pending(s, errstr, errlen);
    return st;
}

/* ---- ack_mode mark / delete ---- */

obx_status pgw_sql_ack(pgw_store *s, obx_event *const *evs, size_t n,
                       char *errstr, size_t errlen)
{
    if (s->conf->ack_mode == OBX_PG_WAL_ACK_NONE)
        return OBX_OK;
    pgw_buf b = {0};
    buf_add(&b, "{");
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        const pgw_event *e = (const pgw_event *)evs[i]->pos.ptr;
        if (e->row_id < 0)
            continue; /* a logical message: no row */
        char num[32];
        snprintf(num, sizeof num, "%s%lld", rows++ ? "," : "",
                 (long long)e->row_id);
        buf_add(&b, num);
    }
    buf_add(&b, "}");
    char *ids = buf_take(&b);
    if (!ids)
        return OBX_NOMEM;
    obx_status st = OBX_OK;
    if (rows) {
        const char *p[1] = {ids};
        st = run_tpl(s,
                     s->conf->ack_mode == OBX_PG_WAL_ACK_MARK
                         ? "UPDATE {T} SET {published_at} = now() WHERE {id} "
                           "= ANY($1::int8[]) AND {published_at} IS NULL"
                         : "DELETE FROM {T} WHERE {id} = ANY($1::int8[])",
                     1, p, "ack", errstr, errlen);
    }
    free(ids);
    return st;
}

/* ---- dead letters ---- */

static char *headers_json(const obx_event *ev)
{
    if (ev->n_headers == 0)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; o && i < ev->n_headers; i++)
        json_object_set_new(o, ev->headers[i].name,
                            json_string(ev->headers[i].value));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static obx_status bury_one(pgw_store *s, const char *ins, const char *mark,
                           const obx_burial *b, char *errstr, size_t errlen)
{
    const obx_event *ev = b->event;
    const pgw_event *e = (const pgw_event *)ev->pos.ptr;
    char created[32], att[16], rowid[32];
    snprintf(created, sizeof created, "%lld", (long long)ev->created_at_us);
    snprintf(att, sizeof att, "%u", ev->attempts);
    snprintf(rowid, sizeof rowid, "%lld", (long long)e->row_id);
    char *hdrs = headers_json(ev);
    const char *p[11] = {ev->event_id,
                         ev->aggregate_type,
                         ev->aggregate_id,
                         ev->event_type,
                         ev->payload,
                         ev->topic,
                         hdrs,
                         created,
                         att,
                         b->reason,
                         b->destination};
    int lens[11] = {0, 0, 0, 0, (int)ev->payload_len};
    int fmts[11] = {0, 0, 0, 0, 1};
    PGresult *r = PQexecParams(s->sql, ins, 11, NULL, p, lens, fmts, 0);
    free(hdrs);
    obx_status st = OBX_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pgw_fail(s, s->sql, r, "bury", errstr, errlen);
    PQclear(r);
    if (st == OBX_OK && mark && e->row_id >= 0) {
        const char *mp[4] = {rowid, b->reason, b->destination, att};
        int np =
            s->conf->ack_mode == OBX_PG_WAL_ACK_MARK && s->mark_full ? 4 : 2;
        r = PQexecParams(s->sql, mark, np, NULL, mp, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            st = pgw_fail(s, s->sql, r, "bury: mark the row", errstr, errlen);
        PQclear(r);
    }
    return st;
}

obx_status pgw_sql_bury(pgw_store *s, const obx_burial *items, size_t n,
                        char *errstr, size_t errlen)
{
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st != OBX_OK || n == 0)
        return st;
    char *ins = pgw_sql_expand(
        &s->names,
        "INSERT INTO {D} (event_id, aggregate_type, aggregate_id, event_type, "
        "payload, topic, headers, created_at, attempts, dead_reason, "
        "dead_destination, from_message) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7::jsonb, to_timestamp($8::int8 / 1e6), $9, $10, $11, false)");
    const char *mark_tpl =
        s->conf->ack_mode == OBX_PG_WAL_ACK_MARK && s->mark_full
            /* as pg_poll buries: the row tells its story after a switch */
            ? "UPDATE {T} SET {dead_at} = now(), {dead_reason} = $2, "
              "{dead_destination} = $3, {attempts} = $4::int4 WHERE "
              "{id} = $1::int8"
            : s->conf->ack_mode == OBX_PG_WAL_ACK_MARK
                  ? "UPDATE {T} SET {dead_at} = now(), {dead_reason} = $2 "
                    "WHERE "
                    "{id} = $1::int8"
              : s->conf->ack_mode == OBX_PG_WAL_ACK_DELETE
                  ? "DELETE FROM {T} WHERE {id} = $1::int8 AND $2::text IS NOT "
                    "NULL"
                  : NULL;
    char *mark = mark_tpl ? pgw_sql_expand(&s->names, mark_tpl) : NULL;
    if (!ins || (mark_tpl && !mark)) {
        free(ins);
        free(mark);
        return OBX_NOMEM;
    }
    PQclear(PQexec(s->sql, "BEGIN"));
    for (size_t i = 0; i < n && st == OBX_OK; i++)
        st = bury_one(s, ins, mark, &items[i], errstr, errlen);
    if (st == OBX_OK) {
        PGresult *r = PQexec(s->sql, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            st = pgw_fail(s, s->sql, r, "bury: commit", errstr, errlen);
        PQclear(r);
    } else if (s->sql) {
        PQclear(PQexec(s->sql, "ROLLBACK"));
    }
    free(ins);
    free(mark);
    return st;
}

static obx_status dead_row(pgw_store *s, const PGresult *r, int row,
                           obx_dead_cb cb, void *ctx, int *stop)
{
    pgw_event *e = NULL;
    obx_status st = pgw_event_from_result(s, r, row, &e);
    if (st != OBX_OK)
        return st;
    e->ev.attempts = (uint32_t)strtoul(PQgetvalue(r, row, 9), NULL, 10);
    obx_dead_letter dl = {
        .event = &e->ev,
        .reason = PQgetisnull(r, row, 10) ? NULL : PQgetvalue(r, row, 10),
        .destination = PQgetisnull(r, row, 11) ? NULL : PQgetvalue(r, row, 11),
        .dead_at_us = strtoll(PQgetvalue(r, row, 12), NULL, 10),
    };
    *stop = cb(ctx, &dl);
    free(e);
    return OBX_OK;
}

/* Call cb for each dead letter (all, or event_id's), oldest first. */
obx_status pgw_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                         void *ctx, char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    char *sql = pgw_sql_expand(
        &s->names,
        "SELECT id, event_id, aggregate_type, aggregate_id, event_type, "
        "payload, topic, headers::text, "
        "(extract(epoch FROM created_at) * 1000000)::int8, attempts, "
        "dead_reason, dead_destination, "
        "(extract(epoch FROM dead_at) * 1000000)::int8 FROM {D} "
        "WHERE $1::text IS NULL OR event_id = $1 ORDER BY id");
    if (!sql)
        return OBX_NOMEM;
    const char *p[1] = {event_id};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, 1, p, &r, "dead list", errstr, errlen);
    free(sql);
    int stop = 0;
    int rows = r ? PQntuples(r) : 0;
    for (int i = 0; st == OBX_OK && i < rows && !stop; i++)
        st = dead_row(s, r, i, cb, ctx, &stop);
    PQclear(r);
    if (st == OBX_OK && event_id && rows == 0) {
        obx_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return st;
}

static obx_status dead_count(pgw_store *s, const char *tpl,
                             const char *event_id, uint64_t *count,
                             const char *what, char *errstr, size_t errlen)
{
    char *sql = pgw_sql_expand(&s->names, tpl);
    if (!sql)
        return OBX_NOMEM;
    const char *p[2] = {event_id, s->names.prefix};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, 2, p, &r, what, errstr, errlen);
    free(sql);
    if (st != OBX_OK)
        return st;
    *count = PQntuples(r) == 1 ? strtoull(PQgetvalue(r, 0, 0), NULL, 10)
                               : strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (event_id && *count == 0) {
        obx_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return OBX_OK;
}

/* The original row (if any) goes first, in its own statement (a row
 * deleted by a sibling CTE still holds its unique key), so the
 * re-inserted one keeps the event id: consumers dedup on it, and it was
 * never delivered. */
static const char pgw_requeue_gone_sql[] =
    "DELETE FROM {T} WHERE {event_id} IN (SELECT event_id FROM {D} WHERE "
    "($1::text IS NULL OR event_id = $1) AND $2::text IS NOT NULL)";

static const char pgw_requeue_table_sql[] =
    "WITH d AS (DELETE FROM {D} WHERE ($1::text IS NULL OR event_id = $1) "
    "AND $2::text IS NOT NULL RETURNING *),\n"
    " ins AS (INSERT INTO {T} ({event_id}, {aggregate_type}, {aggregate_id}, "
    "{event_type}, {payload}, {topic}, {headers}, {created_at})\n"
    "   SELECT event_id, aggregate_type, aggregate_id, event_type, payload, "
    "topic, headers, created_at FROM d ORDER BY d.id RETURNING 1)\n"
    "SELECT count(*) FROM ins";

/* A table-less outbox: emit the envelope again as a transactional
 * message. Payloads came from JSON envelopes, so they are UTF-8 text. */
static const char pgw_requeue_msg_sql[] =
    "WITH d AS (DELETE FROM {D} WHERE $1::text IS NULL OR event_id = $1 "
    "RETURNING *)\n"
    "SELECT count(pg_logical_emit_message(true, $2, json_build_object("
    "'event_id', event_id, 'aggregate_type', aggregate_type, "
    "'aggregate_id', aggregate_id, 'event_type', event_type, "
    "'payload', convert_from(payload, 'UTF8'), 'topic', topic, "
    "'headers', headers)::text)) FROM (SELECT * FROM d ORDER BY id) x";

/* Move dead letters back into the stream (the outbox table, or a new
 * logical message when the outbox has no table). */
obx_status pgw_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                            char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    if (s->conf->source == OBX_PG_WAL_MESSAGES)
        return dead_count(s, pgw_requeue_msg_sql, event_id, count,
                          "dead requeue", errstr, errlen);
    obx_status st =
        run_tpl(s, "BEGIN", 0, NULL, "dead requeue", errstr, errlen);
    uint64_t gone = 0;
    if (st == OBX_OK)
        st = dead_count(s, pgw_requeue_gone_sql, event_id, &gone,
                        "dead requeue", errstr, errlen);
    if (st == OBX_NOT_FOUND)
        st = OBX_OK; /* no original row (ack_mode delete); the next
                        statement reports an unknown event_id */
    if (st == OBX_OK)
        st = dead_count(s, pgw_requeue_table_sql, event_id, count,
                        "dead requeue", errstr, errlen);
    if (st == OBX_OK)
        return run_tpl(s, "COMMIT", 0, NULL, "dead requeue", errstr, errlen);
    if (s->sql)
        PQclear(PQexec(s->sql, "ROLLBACK"));
    return st;
}

obx_status pgw_dead_purge(void *inst, const char *event_id, uint64_t *count,
                          char *errstr, size_t errlen)
{
    return dead_count(inst,
                      "DELETE FROM {D} WHERE ($1::text IS NULL OR event_id = "
                      "$1) AND $2::text IS NOT NULL",
                      event_id, count, "dead purge", errstr, errlen);
}

/* ---- recovery reads ---- */

obx_status pgw_recover_claim(pgw_store *s, size_t max, char *errstr,
                             size_t errlen)
{
    char after[32], lim[32];
    snprintf(after, sizeof after, "%lld", (long long)s->recover_after);
    snprintf(lim, sizeof lim, "%zu", max);
    const char *p[2] = {after, lim};
    char *sql = pgw_sql_expand(
        &s->names,
        "SELECT o.{id}, o.{event_id}, o.{aggregate_type}, o.{aggregate_id}, "
        "o.{event_type}, o.{payload}, o.{topic}, o.{headers}::text, "
        "(extract(epoch FROM o.{created_at}) * 1000000)::int8 "
        "FROM {T} o JOIN {R} r ON r.id = o.{id} WHERE o.{id} > $1::int8 "
        "AND o.{published_at} IS NULL AND o.{dead_at} IS NULL "
        "ORDER BY o.{id} LIMIT $2::int8");
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
    obx_status st = run_tpl(s, "DROP TABLE IF EXISTS {R}", 0, NULL,
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
