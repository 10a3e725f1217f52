/* The pg_wal store's normal SQL session: connecting (normal and
 * replication connections), error mapping, running statements. */
#include <errno.h>
#include <poll.h>
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
    if ((!msg || !msg[0]) && !res && s->silent[0])
        msg = s->silent; /* pgw_query gave up waiting and closed it */
    char clean[OBX_ERRSTR_LEN];
    pgw_scrub(s, msg && msg[0] ? msg : "not connected", clean, sizeof clean);
    s->silent[0] = '\0';
    osc_errf_words(errstr, errlen, "pg_wal %s: %s: %s", s->target, what, clean);
    if (!c || PQstatus(c) == CONNECTION_BAD) {
        if (c && c == s->sql) {
            PQfinish(s->sql);
            s->sql = NULL;
        }
        return OBX_UNAVAILABLE;
    }
    if (c == s->sql && PQtransactionStatus(c) == PQTRANS_INERROR)
        PQclear(pgw_query(s, &s->sql, "ROLLBACK", 0, NULL, NULL, NULL, true));
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

/* Wait up to deadline_us (monotonic; 0: no limit) until c has read a
 * whole result. false: the time ran out. */
static bool await_result(pgw_store *s, PGconn *c, int64_t deadline_us)
{
    while (PQisBusy(c)) {
        int ms = -1;
        if (deadline_us) {
            int64_t left = deadline_us - s->host->mono_us();
            if (left <= 0)
                return false;
            ms = (int)((left + 999) / 1000);
        }
        struct pollfd pfd = {PQsocket(c), POLLIN, 0};
        int rc = poll(&pfd, 1, ms);
        if (rc < 0 && errno != EINTR)
            return true; /* PQgetResult reports the broken connection */
        if (rc > 0 && !PQconsumeInput(c))
            return true;
    }
    return true;
}

PGresult *pgw_query(pgw_store *s, PGconn **conn, const char *sql, int n,
                    const char *const *params, const int *lens, const int *fmts,
                    bool simple)
{
    PGconn *c = *conn;
    if (!c)
        return NULL;
    int sent = simple
                   ? PQsendQuery(c, sql)
                   : PQsendQueryParams(c, sql, n, NULL, params, lens, fmts, 0);
    if (!sent)
        return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
    int64_t limit = s->query_timeout_ms;
    int64_t deadline = limit ? s->host->mono_us() + limit * 1000 : 0;
    /* as PQexec: the last result, or the first error; COPY ends it */
    PGresult *keep = NULL;
    for (;;) {
        if (!await_result(s, c, deadline)) {
            PQclear(keep);
            snprintf(s->silent, sizeof s->silent,
                     "no answer from the server within %lld ms (a stalled "
                     "link or a hung server); the connection is closed and "
                     "opened again",
                     (long long)limit);
            s->host->log(s->host, OBX_LOG_WARN, "pg_wal %s: %s", s->target,
                         s->silent);
            PQfinish(c);
            *conn = NULL;
            /* the same server, most likely the same link: the stream
             * would wait for it as long, so it starts afresh too */
            if (conn == &s->sql)
                pgw_stream_stop(s, "the SQL session stopped answering");
            return NULL;
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        ExecStatusType t = PQresultStatus(r);
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR)
            PQclear(r);
        else {
            PQclear(keep);
            keep = r;
        }
        if (t == PGRES_COPY_BOTH || t == PGRES_COPY_IN || t == PGRES_COPY_OUT)
            break;
    }
    return keep;
}

obx_status pgw_exec(pgw_store *s, const char *sql, int n,
                    const char *const *params, PGresult **out, const char *what,
                    char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st != OBX_OK)
        return st;
    PGresult *r = pgw_query(s, &s->sql, sql, n, params, NULL, NULL, false);
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
