/* Every statement of the pg_poll store goes through here: sent without
 * blocking and answered within query_timeout, or the connection is given
 * up. libpq's own calls wait forever, and a link that stalls without a
 * reset (a dead middlebox, a half-open connection, a proxy that stopped
 * forwarding) still answers TCP keepalives, so only a deadline of ours
 * notices it. The connection is in non-blocking mode from pgp_connect on.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "err_words.h"
#include "pg_store.h"

#define PGP_QUERY_TIMEOUT_DEFAULT_MS 15000

int64_t pgp_query_timeout_ms(const pgp_store *s)
{
    return s->conf->query_timeout_ms > 0 ? s->conf->query_timeout_ms
                                         : PGP_QUERY_TIMEOUT_DEFAULT_MS;
}

static int64_t pgp_deadline(const pgp_store *s)
{
    return s->host->mono_us() + pgp_query_timeout_ms(s) * 1000;
}

/* Wait until the socket is ready for `events`; false when the deadline
 * passed (s->timed_out set) or poll failed. */
static bool pgp_poll_sock(pgp_store *s, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - s->host->mono_us();
        if (left <= 0) {
            s->timed_out = true;
            return false;
        }
        struct pollfd pfd = {PQsocket(s->conn), events, 0};
        int rc = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (rc > 0)
            return true;
        if (rc < 0 && errno != EINTR)
            return false;
    }
}

/* The next result of what was sent (NULL: that query has no more), or
 * NULL with *broken set when the deadline passed or the connection
 * failed. Input is consumed while output is flushed, as libpq asks, so a
 * server that answers while we still send cannot deadlock us. */
static PGresult *pgp_next(pgp_store *s, int64_t deadline, bool *broken)
{
    int f;
    while ((f = PQflush(s->conn)) == 1)
        if (!pgp_poll_sock(s, POLLOUT | POLLIN, deadline) ||
            !PQconsumeInput(s->conn))
            goto fail;
    if (f < 0)
        goto fail;
    while (PQisBusy(s->conn))
        if (!pgp_poll_sock(s, POLLIN, deadline) || !PQconsumeInput(s->conn))
            goto fail;
    return PQgetResult(s->conn);
fail:
    *broken = true;
    return NULL;
}

/* The results of one sent query: the first failed one, else the last.
 * NULL when none came (timed out, connection failed). */
static PGresult *pgp_collect(pgp_store *s, int64_t deadline)
{
    PGresult *keep = NULL, *r;
    bool broken = false;
    while ((r = pgp_next(s, deadline, &broken)) != NULL) {
        if (keep && !pgp_ok(keep)) {
            PQclear(r);
            continue;
        }
        PQclear(keep);
        keep = r;
    }
    if (broken) {
        PQclear(keep);
        return NULL;
    }
    return keep;
}

PGresult *pgp_query(pgp_store *s, const char *sql, int n,
                    const char *const *params)
{
    s->timed_out = false;
    if (!s->conn ||
        !PQsendQueryParams(s->conn, sql, n, NULL, params, NULL, NULL, 0))
        return NULL;
    return pgp_collect(s, pgp_deadline(s));
}

static PGresult *pgp_query_prepared(pgp_store *s, pgp_stmt st, int n,
                                    const char *const *params, int binary)
{
    s->timed_out = false;
    if (!s->conn || !PQsendQueryPrepared(s->conn, pgp_stmt_name(st), n, params,
                                         NULL, NULL, binary))
        return NULL;
    return pgp_collect(s, pgp_deadline(s));
}

bool pgp_ok(const PGresult *r)
{
    ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

/* On failure: the status, with errstr filled, and r cleared. */
static obx_status pgp_result(pgp_store *s, PGresult *r, PGresult **out,
                             const char *what, char *errstr, size_t errlen)
{
    if (pgp_ok(r)) {
        *out = r;
        return OBX_OK;
    }
    obx_status rc = pgp_fail(s, r, what, errstr, errlen);
    PQclear(r);
    return rc;
}

obx_status pgp_exec(pgp_store *s, pgp_stmt st, int nparams,
                    const char *const *params, int binary, PGresult **out,
                    const char *what, char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status rc = pgp_ensure(s, errstr, errlen);
    if (rc != OBX_OK)
        return rc;
    PGresult *r = pgp_query_prepared(s, st, nparams, params, binary);
    return pgp_result(s, r, out, what, errstr, errlen);
}

/* After n commands and a sync were sent in pipeline mode: their results
 * into res[0..n) (NULL from the first that did not come), the sync, and
 * out of pipeline mode. False when the connection failed, timed out or
 * could not leave the pipeline; res holds what came either way, for the
 * caller to clear. */
static bool pgp_pipeline_collect(pgp_store *s, int64_t deadline, int n,
                                 PGresult **res)
{
    bool got_all = true;
    for (int i = 0; i < n; i++) {
        res[i] = got_all ? pgp_collect(s, deadline) : NULL;
        got_all = got_all && res[i];
    }
    bool broken = false;
    PGresult *sync = got_all ? pgp_next(s, deadline, &broken) : NULL;
    bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    return synced && PQexitPipelineMode(s->conn);
}

/* The claim lock, the expiry of lapsed claims and the claim sent as one
 * pipeline: all run in the implicit transaction that the pipeline's sync
 * ends, in one round trip. Returns the claim's result, or NULL (timed
 * out, connection failed, or the pipeline could not be left); *failed
 * holds the failed result of the lock or the expiry, if one failed, and
 * *failed_what names it. */
static PGresult *pgp_claim_pipeline(pgp_store *s, int nparams,
                                    const char *const *params,
                                    PGresult **failed, const char **failed_what)
{
    const char *lp[1] = {s->table_ref};
    int64_t deadline = pgp_deadline(s);
    s->timed_out = false;
    if (!PQenterPipelineMode(s->conn) ||
        !PQsendQueryPrepared(s->conn, pgp_stmt_name(PGP_S_CLAIM_LOCK), 1, lp,
                             NULL, NULL, 0) ||
        !PQsendQueryPrepared(s->conn, pgp_stmt_name(PGP_S_EXPIRE), 0, NULL,
                             NULL, NULL, 0) ||
        !PQsendQueryPrepared(s->conn, pgp_stmt_name(PGP_S_CLAIM), nparams,
                             params, NULL, NULL, 1) ||
        !PQpipelineSync(s->conn))
        return NULL;
    PGresult *res[3];
    bool got = pgp_pipeline_collect(s, deadline, 3, res);
    static const char *const what[2] = {"claim lock", "expire claims"};
    for (int i = 0; got && i < 2; i++)
        if (!pgp_ok(res[i])) {
            *failed = res[i];
            *failed_what = what[i];
            res[i] = NULL;
            got = false;
        }
    for (int i = 0; i < (got ? 2 : 3); i++)
        PQclear(res[i]);
    return got ? res[2] : NULL;
}

int pgp_query_prepare_all(pgp_store *s, int n, const char *const *names,
                          char *const *sqls, PGresult **failed)
{
    *failed = NULL;
    int64_t deadline = pgp_deadline(s);
    s->timed_out = false;
    bool sent = n <= PGP_S_COUNT && s->conn && PQenterPipelineMode(s->conn);
    for (int i = 0; sent && i < n; i++)
        sent = PQsendPrepare(s->conn, names[i], sqls[i], 0, NULL);
    PGresult *res[PGP_S_COUNT] = {0};
    bool ok = sent && PQpipelineSync(s->conn) &&
              pgp_pipeline_collect(s, deadline, n, res);
    int bad = ok ? -1 : 0;
    for (int i = 0; i < n; i++) {
        if (bad < 0 && !pgp_ok(res[i])) {
            bad = i;
            *failed = res[i];
            continue;
        }
        PQclear(res[i]);
    }
    if (!ok && s->conn && PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF)
        pgp_disconnect(s, "the prepare pipeline could not be ended");
    return bad;
}

obx_status pgp_exec_claim(pgp_store *s, int nparams, const char *const *params,
                          PGresult **out, char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status rc = pgp_ensure(s, errstr, errlen);
    if (rc != OBX_OK)
        return rc;
    PGresult *failed = NULL;
    const char *failed_what = NULL;
    PGresult *r = pgp_claim_pipeline(s, nparams, params, &failed, &failed_what);
    if (failed)
        return pgp_result(s, failed, out, failed_what, errstr, errlen);
    if (!r && s->conn && PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF)
        pgp_disconnect(s, "the claim pipeline could not be ended");
    return pgp_result(s, r, out, "claim", errstr, errlen);
}

void pgp_timeout_text(const pgp_store *s, char *out, size_t outlen)
{
    int64_t ms = pgp_query_timeout_ms(s);
    snprintf(out, outlen,
             "no answer from the server within %lld ms (query_timeout); the "
             "link may be stalled",
             (long long)ms);
}
