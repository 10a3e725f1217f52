/* The pg_wal store's normal SQL session: connecting (normal and
 * replication connections), error mapping, running statements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pg_secret.h"
#include "pg_status.h"
#include "pgw_store.h"

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
    osc_errf_words(errstr, errlen, "pg_wal %s: %s: %s", s->target, what, clean);
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

/* Server notices go to the debug log instead of libpq's default,
 * stderr. */
static void pgw_notice(void *arg, const char *message)
{
    const pgw_store *s = arg;
    osc_pg_notice(s->host, s->secret, "pg_wal", message);
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
    osc_errf_words(errstr, errlen, "pg_wal %s: cannot connect%s: %s", s->target,
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

/* Expand tpl and run it: *out the result to PQclear (NULL on failure). */
static obx_status exec_tpl(pgw_store *s, const char *tpl, int n,
                           const char *const *params, PGresult **out,
                           const char *what, char *errstr, size_t errlen)
{
    *out = NULL;
    char *sql = pgw_sql_expand(&s->names, tpl);
    if (!sql)
        return OBX_NOMEM;
    obx_status st = pgw_exec(s, sql, n, params, out, what, errstr, errlen);
    free(sql);
    return st;
}

obx_status pgw_run(pgw_store *s, const char *tpl, int n,
                   const char *const *params, const char *what, char *errstr,
                   size_t errlen)
{
    PGresult *r;
    obx_status st = exec_tpl(s, tpl, n, params, &r, what, errstr, errlen);
    PQclear(r);
    return st;
}

obx_status pgw_query_text(pgw_store *s, const char *tpl, int n,
                          const char *const *params, char *out, size_t outlen,
                          bool *found, const char *what, char *errstr,
                          size_t errlen)
{
    PGresult *r;
    obx_status st = exec_tpl(s, tpl, n, params, &r, what, errstr, errlen);
    if (st != OBX_OK)
        return st;
    *found = PQntuples(r) > 0;
    snprintf(out, outlen, "%s", *found ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return OBX_OK;
}
