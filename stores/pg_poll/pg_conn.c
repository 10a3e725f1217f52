/* The pg_poll store's connection: connect, reconnect with backoff, error
 * mapping, prepared statements, LISTEN and waiting for NOTIFY. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err_words.h"
#include "pg_schema.h"
#include "pg_secret.h"
#include "pg_status.h"
#include "pg_store.h"

/* Reconnect backoff: short, because the engine's circuit breaker already
 * spaces its probes; this only keeps settle calls made while the server
 * is down from each waiting for a connection attempt. */
#define PGP_RETRY_MIN_US (100 * 1000)
#define PGP_RETRY_MAX_US (1000 * 1000)
/* Oldest server we run on: extract() returns exact numerics from 14 on,
 * and the emitted schema uses CREATE OR REPLACE TRIGGER (14). */
#define PGP_MIN_SERVER 140000

/* Key of the transaction-level advisory lock that serialises schema
 * creation by relays starting together ("obx_sch"). */
#define PGP_SCHEMA_LOCK "7021781148607336"

/* ---- masking ---- */

void pgp_scrub(const pgp_store *s, const char *in, char *out, size_t outlen)
{
    osc_pg_scrub(s->host, s->secret, in, out, outlen);
}

/* ---- init ---- */

obx_status pgp_init(pgp_store *s, const obx_host *host, const pgp_config *conf,
                    char *errstr, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->host = host;
    s->conf = conf;
    if (pgp_names_init(&s->names, conf, errstr, errlen) != 0)
        return OBX_CONFIG;
    osc_lease_owner(conf->owner, s->owner, sizeof s->owner);
    s->table_ref = pgp_sql_expand(&s->names, "{T}");
    if (!s->table_ref)
        return OBX_NOMEM;
    return osc_pg_conninfo(host, conf->conninfo, &s->secret, s->target,
                           sizeof s->target, errstr, errlen);
}

void pgp_fini(pgp_store *s)
{
    if (s->conn)
        PQfinish(s->conn);
    s->conn = NULL;
    for (int i = 0; i < PGP_MAX_PARAMS; i++)
        pgp_buf_free(&s->arg[i]);
    osc_pg_secret_free(s->secret);
    s->secret = NULL;
    free(s->table_ref);
    s->table_ref = NULL;
}

/* ---- errors ---- */

void pgp_disconnect(pgp_store *s, const char *why)
{
    if (!s->conn)
        return;
    PQfinish(s->conn);
    s->conn = NULL;
    s->timed_out = false;
    s->lost_us = s->host->mono_us();
    s->retry_us = 0; /* the first reconnect may come at once */
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_poll %s: connection lost (%s); reconnecting", s->target,
                 why && why[0] ? why : "unknown reason");
}

static void pgp_rollback_if_open(pgp_store *s)
{
    if (s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE &&
        PQtransactionStatus(s->conn) != PQTRANS_UNKNOWN)
        PQclear(pgp_query(s, "ROLLBACK", 0, NULL));
}

obx_status pgp_fail(pgp_store *s, const PGresult *res, const char *what,
                    char *errstr, size_t errlen)
{
    if (s->conn && s->timed_out) {
        char why[160];
        pgp_timeout_text(s, why, sizeof why);
        osc_errf_words(errstr, errlen, "pg_poll \"%s\": %s: %s", s->names.table,
                       what, why);
        pgp_disconnect(s, why);
        return OBX_UNAVAILABLE;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if ((!msg || !msg[0]) && s->conn)
        msg = PQerrorMessage(s->conn);
    char clean[OBX_ERRSTR_LEN];
    pgp_scrub(s, msg && msg[0] ? msg : "not connected", clean, sizeof clean);
    osc_errf_words(errstr, errlen, "pg_poll \"%s\": %s: %s", s->names.table,
                   what, clean);
    if (!s->conn)
        return OBX_UNAVAILABLE;
    if (PQstatus(s->conn) == CONNECTION_BAD) {
        pgp_disconnect(s, clean);
        return OBX_UNAVAILABLE;
    }
    pgp_rollback_if_open(s);
    return osc_pg_status_of(state);
}

/* ---- connecting ---- */

/* Errors while connecting: trouble reaching the server is UNAVAILABLE,
 * a server that answers but refuses our SQL is the operator's to fix. */
static obx_status pgp_setup_fail(pgp_store *s, PGresult *r, const char *what,
                                 char *errstr, size_t errlen)
{
    obx_status st = pgp_fail(s, r, what, errstr, errlen);
    PQclear(r);
    return st == OBX_FATAL ? OBX_CONFIG : st;
}

/* Whether the relation `tpl` ("{T}", "{F:claims}") expands to exists. */
static obx_status pgp_rel_exists(pgp_store *s, const char *tpl, bool *exists,
                                 char *errstr, size_t errlen)
{
    char *name = pgp_sql_expand(&s->names, tpl);
    if (!name)
        return OBX_NOMEM;
    const char *p[1] = {name};
    PGresult *r = pgp_query(s, "SELECT to_regclass($1) IS NOT NULL", 1, p);
    free(name);
    if (!pgp_ok(r) || PQntuples(r) != 1)
        return pgp_setup_fail(s, r, "look for the table", errstr, errlen);
    *exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return OBX_OK;
}

static obx_status pgp_table_exists(pgp_store *s, bool *exists, char *errstr,
                                   size_t errlen)
{
    return pgp_rel_exists(s, "{T}", exists, errstr, errlen);
}

static obx_status pgp_claims_exist(pgp_store *s, bool *exists, char *errstr,
                                   size_t errlen)
{
    return pgp_rel_exists(s, "{F:" PGP_SFX_CLAIMS "}", exists, errstr, errlen);
}

typedef struct pgp_ddl_run {
    pgp_store *s;
    PGresult *failed; /* the failing statement's result, to report */
} pgp_ddl_run;

static int pgp_ddl_exec(void *ctx, const char *sql)
{
    pgp_ddl_run *run = ctx;
    PGresult *r = pgp_query(run->s, sql, 0, NULL);
    if (pgp_ok(r)) {
        PQclear(r);
        return 0;
    }
    run->failed = r;
    return 1;
}

/* Create the table, its indexes, claims table and trigger in one
 * transaction; for a table that exists, only the claims table when it is
 * missing (a table made by pg_wal, by hand, or before claims had a table
 * of their own: a new table, so the writers are not locked out). The
 * advisory lock makes relays that start together take turns; the second
 * finds everything there and does nothing. */
static obx_status pgp_create_schema(pgp_store *s, char *errstr, size_t errlen)
{
    PGresult *r = pgp_query(s, "BEGIN", 0, NULL);
    if (pgp_ok(r)) {
        PQclear(r);
        r = pgp_query(s, "SELECT pg_advisory_xact_lock(" PGP_SCHEMA_LOCK ")", 0,
                      NULL);
    }
    if (!pgp_ok(r))
        return pgp_setup_fail(s, r, "create schema", errstr, errlen);
    PQclear(r);
    bool exists = false, claims = false;
    obx_status st = pgp_table_exists(s, &exists, errstr, errlen);
    if (st == OBX_OK && exists)
        st = pgp_claims_exist(s, &claims, errstr, errlen);
    if (st != OBX_OK) {
        pgp_rollback_if_open(s);
        return st;
    }
    pgp_ddl_run run = {s, NULL};
    int rc = 0;
    if (!exists)
        rc = pgp_ddl_each(&s->names, s->conf, pgp_ddl_exec, &run);
    else if (!claims)
        rc = pgp_ddl_claims_each(&s->names, pgp_ddl_exec, &run);
    if (rc < 0) {
        pgp_rollback_if_open(s);
        return OBX_NOMEM;
    }
    r = rc == 0 ? pgp_query(s, "COMMIT", 0, NULL) : run.failed;
    if (!pgp_ok(r))
        return pgp_setup_fail(s, r, "create schema", errstr, errlen);
    PQclear(r);
    if (!exists)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_poll %s: created table \"%s\" with its indexes, "
                     "claims table%s",
                     s->target, s->names.table,
                     s->conf->notify_trigger ? " and NOTIFY trigger" : "");
    else if (!claims)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_poll %s: created the claims table of \"%s\"",
                     s->target, s->names.table);
    return OBX_OK;
}

/* Log lines are one line: the DDL's newlines and indentation become one
 * space. In place. */
static void pgp_one_line(char *sql)
{
    size_t o = 0;
    for (size_t i = 0; sql[i]; i++) {
        char c = sql[i] == '\n' ? ' ' : sql[i];
        if (c == ' ' && o > 0 && sql[o - 1] == ' ')
            continue;
        sql[o++] = c;
    }
    sql[o] = '\0';
}

/* Append one DDL statement, on one line, ending in ";", to a pgp_buf. */
static int pgp_ddl_join(void *ctx, const char *sql)
{
    pgp_buf *b = ctx;
    size_t at = b->len;
    pgp_buf_add(b, sql);
    pgp_buf_add(b, "; ");
    if (!b->oom)
        pgp_one_line(b->p + at);
    if (!b->oom)
        b->len = at + strlen(b->p + at);
    return 0;
}

/* A table without its claims table (made by pg_wal, by hand, or by a
 * relay before 1.4) and no create_schema: the error gives the DDL. In
 * check mode with create_schema, fine (*ready false: open() creates it). */
static obx_status pgp_claims_missing(pgp_store *s, pgp_connect_mode mode,
                                     bool *ready, char *errstr, size_t errlen)
{
    *ready = false;
    if (mode == PGP_CONNECT_CHECK && s->conf->create_schema)
        return OBX_OK;
    pgp_buf ddl = {0};
    obx_status st =
        pgp_ddl_claims_each(&s->names, pgp_ddl_join, &ddl) == 0 && !ddl.oom
            ? OBX_CONFIG
            : OBX_NOMEM;
    char name[OSC_PG_NAME_MAX + 1];
    osc_pg_object_name(s->names.table, PGP_SFX_CLAIMS, name);
    if (st == OBX_CONFIG)
        osc_errf_words(errstr, errlen,
                       "pg_poll %s: table \"%s\" has no claims table \"%s\" "
                       "(leases live there since version 1.4) and "
                       "create_schema is false; create it: %s",
                       s->target, s->names.table, name, ddl.p);
    pgp_buf_free(&ddl);
    return st;
}

/* *exists: the table and its claims table are there (after creating them
 * in create mode). */
static obx_status pgp_check_table(pgp_store *s, pgp_connect_mode mode,
                                  bool *exists, char *errstr, size_t errlen)
{
    bool claims = false;
    obx_status st = pgp_table_exists(s, exists, errstr, errlen);
    if (st == OBX_OK && *exists)
        st = pgp_claims_exist(s, &claims, errstr, errlen);
    if (st != OBX_OK || (*exists && claims))
        return st;
    if (mode == PGP_CONNECT_CREATE) {
        /* under the schema lock, which looks again */
        *exists = true;
        return pgp_create_schema(s, errstr, errlen);
    }
    if (*exists)
        return pgp_claims_missing(s, mode, exists, errstr, errlen);
    if (mode == PGP_CONNECT_CHECK && s->conf->create_schema)
        return OBX_OK; /* open() will create it */
    osc_errf_words(
        errstr, errlen,
        "pg_poll %s: no table \"%s\" (in %s%s%s) and create_schema is "
        "false; create it with `outbox-relay schema pg_poll`",
        s->target, s->names.table,
        s->names.schema ? "schema \"" : "the search_path",
        s->names.schema ? s->names.schema : "", s->names.schema ? "\"" : "");
    return OBX_CONFIG;
}

/* ---- what an existing table has ---- */

/* The first column of a query's first row into out ("" when there is no
 * row or it is NULL). OBX_OK, or the failure's status with errstr
 * filled. */
static obx_status pgp_query1(pgp_store *s, const char *sql, int n,
                             const char *const *p, char *out, size_t outlen,
                             const char *what, char *errstr, size_t errlen)
{
    PGresult *r = pgp_query(s, sql, n, p);
    if (!pgp_ok(r))
        return pgp_setup_fail(s, r, what, errstr, errlen);
    snprintf(out, outlen, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return OBX_OK;
}

/* Columns the claim, settle and dead-letter statements use (mapped names
 * for the writer's, ours for the bookkeeping ones) that the table lacks:
 * a table made for another tool, or by hand. Refused with every missing
 * column named, since the statements cannot work without them. The
 * bookkeeping columns can be added in place; the writer's are the
 * application's to map (column.*) or add. */
static obx_status pgp_check_columns(pgp_store *s, const char *table,
                                    char *errstr, size_t errlen)
{
    pgp_buf want = {0};
    pgp_buf_addc(&want, '{');
    for (int c = 0; c < PGP_C_COUNT; c++)
        pgp_buf_array_text(&want, s->names.col[c]);
    pgp_buf_addc(&want, '}');
    char *arr = pgp_buf_take(&want);
    if (!arr)
        return OBX_NOMEM;
    const char *p[2] = {table, arr};
    char missing[1024];
    obx_status st = pgp_query1(
        s,
        "SELECT string_agg(w.name, ', ' ORDER BY w.n) FROM unnest($2::text[]) "
        "WITH ORDINALITY AS w(name, n) WHERE NOT EXISTS (SELECT 1 FROM "
        "pg_attribute a WHERE a.attrelid = $1::regclass AND a.attname = "
        "w.name AND a.attnum > 0 AND NOT a.attisdropped)",
        2, p, missing, sizeof missing, "look at the table's columns", errstr,
        errlen);
    free(arr);
    if (st != OBX_OK || !missing[0])
        return st;
    osc_errf_words(
        errstr, errlen,
        "pg_poll %s: table \"%s\" lacks column(s) %s, which the relay "
        "needs. The relay's own columns can be added with ALTER TABLE "
        "... ADD COLUMN IF NOT EXISTS, typed as in `outbox-relay "
        "schema pg_poll`; writer columns named differently are mapped "
        "with store.column.<name>",
        s->target, s->names.table, missing);
    return OBX_CONFIG;
}

/* The warning for a missing index d, with the DDL that adds it. */
static obx_status pgp_warn_index(pgp_store *s, const osc_pg_ddl *d)
{
    char name[OSC_PG_NAME_MAX + 1];
    osc_pg_object_name(s->names.table, d->sfx, name);
    char *ddl = pgp_sql_expand(&s->names, d->tpl);
    if (!ddl)
        return OBX_NOMEM;
    pgp_one_line(ddl);
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_poll \"%s\": no index \"%s\" (without it %s); add "
                 "it: %s;",
                 s->names.table, name, d->why, ddl);
    free(ddl);
    return OBX_OK;
}

/* Warn (once per instance) about each index of the shared table that is
 * missing, and about a missing NOTIFY trigger: the relay still works
 * (more slowly, or waking only every poll_interval), so this is the
 * operator's to fix, with the exact DDL in the message. Creating an index
 * here would lock a live table against the application's writes. */
static obx_status pgp_check_indexes(pgp_store *s, const char *table,
                                    char *errstr, size_t errlen)
{
    /* One question for all of them: "{t,f,...}", in DDL order. */
    pgp_buf want = {0};
    pgp_buf_addc(&want, '{');
    for (size_t i = 0; i < osc_pg_outbox_ddl_n; i++) {
        char name[OSC_PG_NAME_MAX + 1];
        if (!osc_pg_outbox_ddl[i].sfx)
            continue;
        osc_pg_object_name(s->names.table, osc_pg_outbox_ddl[i].sfx, name);
        pgp_buf_array_text(&want, name);
    }
    pgp_buf_addc(&want, '}');
    char *arr = pgp_buf_take(&want);
    if (!arr)
        return OBX_NOMEM;
    const char *p[2] = {table, arr};
    char found[128];
    obx_status st = pgp_query1(
        s,
        "SELECT array_agg(EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c "
        "ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND "
        "c.relname = w.name) ORDER BY w.n)::text FROM unnest($2::text[]) "
        "WITH ORDINALITY AS w(name, n)",
        2, p, found, sizeof found, "look for the indexes", errstr, errlen);
    free(arr);
    const char *f = found;
    for (size_t i = 0; st == OBX_OK && i < osc_pg_outbox_ddl_n; i++) {
        const osc_pg_ddl *d = &osc_pg_outbox_ddl[i];
        if (!d->sfx)
            continue;
        f += strcspn(f, "tf");
        bool have = *f != 'f'; /* an answer we cannot read: say nothing */
        if (*f)
            f++;
        if (!have)
            st = pgp_warn_index(s, d);
    }
    return st;
}

static obx_status pgp_check_trigger(pgp_store *s, const char *table,
                                    char *errstr, size_t errlen)
{
    if (!s->conf->listen || !s->conf->notify_trigger)
        return OBX_OK; /* writers NOTIFY, or nobody listens */
    char name[OSC_PG_NAME_MAX + 1], chan[256];
    osc_pg_object_name(s->names.table, OSC_PG_SFX_NOTIFY, name);
    const char *p[2] = {table, name};
    /* tgargs: the arguments, each NUL-terminated */
    obx_status st = pgp_query1(
        s,
        "SELECT coalesce(convert_from(substring(tgargs FROM 1 FOR "
        "greatest(length(tgargs) - 1, 0)), 'UTF8'), '') || "
        "CASE WHEN tgenabled = 'D' THEN ' (disabled)' ELSE '' END "
        "FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2 AND "
        "NOT tgisinternal",
        2, p, chan, sizeof chan, "look for the NOTIFY trigger", errstr, errlen);
    if (st != OBX_OK || strcmp(chan, s->names.channel) == 0)
        return st;
    char *fn = pgp_sql_expand(&s->names, pgp_ddl_notify_fn);
    char *tg = pgp_sql_expand(&s->names, pgp_ddl_notify_trigger);
    if (fn && tg) {
        pgp_one_line(fn);
        pgp_one_line(tg);
        char found[400] = "";
        if (chan[0])
            snprintf(found, sizeof found,
                     " (it signals '%.250s', not the channel '%.64s' this "
                     "relay listens on)",
                     chan, s->names.channel);
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_poll \"%s\": no NOTIFY trigger \"%s\" for channel "
                     "'%s'%s: new events wait up to poll_interval; add it: "
                     "%s; %s; (or set store.notify_trigger = false if "
                     "writers send NOTIFY themselves)",
                     s->names.table, name, s->names.channel, found, fn, tg);
        s->no_wakeup = true;
    }
    free(fn);
    free(tg);
    return fn && tg ? OBX_OK : OBX_NOMEM;
}

/* What an existing table must have (columns: refused when missing) and
 * should have (indexes, trigger: warned about), checked at the first
 * connection only. */
static obx_status pgp_check_objects(pgp_store *s, char *errstr, size_t errlen)
{
    if (s->checked_objects)
        return OBX_OK;
    char *table = pgp_sql_expand(&s->names, "{T}");
    if (!table)
        return OBX_NOMEM;
    obx_status st = pgp_check_columns(s, table, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_check_indexes(s, table, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_check_trigger(s, table, errstr, errlen);
    free(table);
    s->checked_objects = st == OBX_OK;
    return st;
}

/* Every statement of the store, prepared in one round trip (a relay
 * reconnecting after a failover is back as soon as the server is). */
static obx_status pgp_prepare_all(pgp_store *s, char *errstr, size_t errlen)
{
    const char *names[PGP_S_COUNT];
    char *sqls[PGP_S_COUNT] = {0};
    bool nomem = false;
    for (int i = 0; i < PGP_S_COUNT; i++) {
        names[i] = pgp_stmt_name((pgp_stmt)i);
        sqls[i] = pgp_sql_expand(
            &s->names, pgp_stmt_template((pgp_stmt)i, s->conf->ack_mode));
        nomem = nomem || !sqls[i];
    }
    PGresult *failed = NULL;
    int bad = nomem
                  ? -1
                  : pgp_query_prepare_all(s, PGP_S_COUNT, names, sqls, &failed);
    for (int i = 0; i < PGP_S_COUNT; i++)
        free(sqls[i]);
    if (nomem)
        return OBX_NOMEM;
    if (bad < 0)
        return OBX_OK;
    char what[160];
    snprintf(what, sizeof what, "table \"%s\" does not fit (statement %s)",
             s->names.table, names[bad]);
    return pgp_setup_fail(s, failed, what, errstr, errlen);
}

static obx_status pgp_listen(pgp_store *s, char *errstr, size_t errlen)
{
    if (!s->conf->listen)
        return OBX_OK;
    pgp_buf b = {0};
    pgp_buf_add(&b, "LISTEN ");
    pgp_buf_ident(&b, s->names.channel);
    char *sql = pgp_buf_take(&b);
    if (!sql)
        return OBX_NOMEM;
    PGresult *r = pgp_query(s, sql, 0, NULL);
    free(sql);
    if (!pgp_ok(r))
        return pgp_setup_fail(s, r, "listen", errstr, errlen);
    PQclear(r);
    return OBX_OK;
}

/* The planner settings of pgp_session_sql. A SET rather than an
 * `options` default: the user's conninfo may set options of its own. */
static obx_status pgp_session(pgp_store *s, char *errstr, size_t errlen)
{
    PGresult *r = pgp_query(s, pgp_session_sql, 0, NULL);
    if (!pgp_ok(r))
        return pgp_setup_fail(s, r, "set the session's planner settings",
                              errstr, errlen);
    PQclear(r);
    return OBX_OK;
}

/* Our defaults come first so that the user's conninfo (expanded from
 * dbname, the last keyword) overrides them: a connect timeout (the query
 * timeout in whole seconds, at least libpq's minimum of 2), so an
 * unreachable or stalled host does not hang a claim for minutes, and
 * keepalives, so a dead peer is noticed while we wait for NOTIFY. */
static PGconn *pgp_open_conn(const pgp_store *s)
{
    char connect_s[24];
    int64_t qms = pgp_query_timeout_ms(s);
    snprintf(connect_s, sizeof connect_s, "%lld",
             (long long)(qms < 2000 ? 2 : (qms + 999) / 1000));
    static const char *const kw[] = {"application_name",
                                     "connect_timeout",
                                     "keepalives",
                                     "keepalives_idle",
                                     "keepalives_interval",
                                     "keepalives_count",
                                     "dbname",
                                     NULL};
    const char *val[] = {"outbox-relay",
                         connect_s,
                         "1",
                         "30",
                         "10",
                         "3",
                         s->conf->conninfo ? s->conf->conninfo : "",
                         NULL};
    return PQconnectdbParams(kw, val, 1);
}

static obx_status pgp_check_version(pgp_store *s, char *errstr, size_t errlen)
{
    int v = PQserverVersion(s->conn);
    if (v >= PGP_MIN_SERVER)
        return OBX_OK;
    osc_errf_words(
        errstr, errlen,
        "pg_poll %s: server version %d.%d is too old; PostgreSQL 14 or "
        "later is required",
        s->target, v / 10000, v % 10000);
    return OBX_CONFIG;
}

/* Server notices go to the debug log instead of libpq's default,
 * stderr. */
static void pgp_notice(void *arg, const char *message)
{
    const pgp_store *s = arg;
    osc_pg_notice(s->host, s->secret, "pg_poll", message);
}

obx_status pgp_connect(pgp_store *s, pgp_connect_mode mode, char *errstr,
                       size_t errlen)
{
    s->conn = pgp_open_conn(s);
    if (!s->conn)
        return OBX_NOMEM;
    PQsetNoticeProcessor(s->conn, pgp_notice, s);
    if (PQstatus(s->conn) != CONNECTION_OK || PQsetnonblocking(s->conn, 1)) {
        char clean[OBX_ERRSTR_LEN];
        pgp_scrub(s, PQerrorMessage(s->conn), clean, sizeof clean);
        osc_errf_words(errstr, errlen, "pg_poll %s: cannot connect: %s",
                       s->target, clean);
        PQfinish(s->conn);
        s->conn = NULL;
        return OBX_UNAVAILABLE;
    }
    bool exists = true;
    obx_status st = pgp_check_version(s, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_session(s, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_check_table(s, mode, &exists, errstr, errlen);
    if (st == OBX_OK && exists)
        st = pgp_check_objects(s, errstr, errlen);
    if (st == OBX_OK && exists)
        st = pgp_prepare_all(s, errstr, errlen);
    if (st == OBX_OK && mode != PGP_CONNECT_CHECK)
        st = pgp_listen(s, errstr, errlen);
    if (st != OBX_OK && s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    return st;
}

obx_status pgp_ensure(pgp_store *s, char *errstr, size_t errlen)
{
    if (s->conn)
        return OBX_OK;
    int64_t now = s->host->mono_us();
    if (now < s->retry_us) {
        osc_errf_words(errstr, errlen,
                       "pg_poll %s: not connected; next attempt in %lld ms",
                       s->target, (long long)((s->retry_us - now) / 1000));
        return OBX_UNAVAILABLE;
    }
    obx_status st = pgp_connect(s, PGP_CONNECT_RUN, errstr, errlen);
    if (st == OBX_OK) {
        if (s->lost_us)
            s->host->log(s->host, OBX_LOG_INFO,
                         "pg_poll %s: reconnected after %.1fs", s->target,
                         (double)(s->host->mono_us() - s->lost_us) / 1e6);
        s->failures = 0;
        s->lost_us = 0;
        return OBX_OK;
    }
    if (!s->lost_us)
        s->lost_us = now;
    int64_t delay = PGP_RETRY_MIN_US << (s->failures < 4 ? s->failures : 4);
    s->failures++;
    s->retry_us = now + (delay > PGP_RETRY_MAX_US ? PGP_RETRY_MAX_US : delay);
    /* a server that answers but no longer fits (table dropped, rights
     * revoked) is not an outage the circuit breaker can wait out */
    return st == OBX_CONFIG ? OBX_FATAL : st;
}

/* ---- waiting ---- */

bool pgp_drain_notifies(pgp_store *s)
{
    bool any = false;
    PGnotify *n;
    while (s->conn && (n = PQnotifies(s->conn)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

static void pgp_sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int pgp_wait(pgp_store *s, int64_t wait_us)
{
    if (!s->conf->listen || !s->conn) {
        pgp_sleep_us(wait_us);
        return 0;
    }
    int64_t deadline = s->host->mono_us() + wait_us;
    for (;;) {
        if (pgp_drain_notifies(s))
            return 1;
        int64_t left = deadline - s->host->mono_us();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {PQsocket(s->conn), POLLIN, 0};
        int rc = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc > 0 &&
            (!PQconsumeInput(s->conn) || PQstatus(s->conn) == CONNECTION_BAD))
            return -1;
    }
}
