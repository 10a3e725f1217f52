/* The pg_poll store plugin: an outbox table in PostgreSQL, polled.
 *
 * A claim leases a batch with one row in the claims table (its ids, its
 * keys, its owner and when it expires), so several relay processes share
 * one table; a crashed relay's rows come back when its claim expires.
 * Per-key order holds across relays: claims take turns, and a row is
 * claimed only when no row of its key is in a claim or waiting for a
 * retry, and in its key's claim order (see the claim statement in
 * pg_sql.c). Idle claims sleep on LISTEN until a
 * NOTIFY (sent by the table's trigger or by the writer) or the poll
 * interval. Every time that decides eligibility is the database's now(),
 * so clocks of the relay hosts do not matter. */
#include "err_words.h"
#include "pg_store.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An idle claim asks when the next lease or retry runs out only when it
 * would otherwise sleep longer than this. */
#define PGP_NEXT_DUE_MIN_MS 20

static const char *const pgp_ack_modes[] = {"mark", "delete", NULL};

static const obx_option pgp_options[] = {
    OBX_OPT_STRING(pgp_config, conninfo, "conninfo", OBX_SECRET(""),
                   "libpq connection string ('host=db dbname=app user=relay "
                   "sslmode=verify-full') or URI (postgresql://relay@db/app); "
                   "empty: libpq defaults and the PG* environment variables. "
                   "Keep the password out of the file: ${env:NAME}, PGPASSWORD "
                   "or ~/.pgpass. Masked in logs"),
    OBX_OPT_STRING(pgp_config, table, "table", "outbox",
                   "outbox table name (quoted as an identifier)"),
    OBX_OPT_STRING(pgp_config, schema, "schema", "",
                   "schema holding the table and its trigger function; empty: "
                   "the connection's search_path"),
    OBX_OPT_ENUM(pgp_config, ack_mode, "ack_mode", "mark", pgp_ack_modes,
                 "mark: set published_at and delete after `retention`; delete: "
                 "delete the row once the broker confirmed it"),
    OBX_OPT_DURATION(pgp_config, lease_ms, "lease", "60s", 10, 86400000,
                     "how long a claim is owned before another relay may take "
                     "the event; longer than the slowest publish"),
    OBX_OPT_DURATION(
        pgp_config, query_timeout_ms, "query_timeout", "15s", 100, 3600000,
        "longest wait for the server to answer a statement before the "
        "connection is given up and opened again: a link that stalls without a "
        "reset (a dead middlebox, a half-open connection) answers TCP "
        "keepalives, so only this notices it"),
    OBX_OPT_DURATION(pgp_config, retention_ms, "retention", "7d", 0,
                     315360000000,
                     "ack_mode=mark: delete published rows older than this, in "
                     "small batches (0: keep)"),
    OBX_OPT_BOOL(pgp_config, create_schema, "create_schema", "true",
                 "create the table, its indexes and trigger at start-up when "
                 "the table is missing (needs CREATE rights; otherwise run "
                 "`outbox-relay schema pg_poll` as the DBA)"),
    OBX_OPT_STRING(
        pgp_config, owner, "owner", NULL,
        "lease owner id written with each claim (default <hostname>:<pid>)"),
    OBX_OPT_BOOL(
        pgp_config, listen, "listen", "true",
        "LISTEN on `channel` and wake up on NOTIFY; false: look every "
        "poll_interval only (e.g. behind a transaction-pooling proxy)"),
    OBX_OPT_STRING(pgp_config, channel, "channel", NULL,
                   "NOTIFY channel the trigger signals and the relay listens "
                   "on (default: the table name)"),
    OBX_OPT_BOOL(
        pgp_config, notify_trigger, "notify_trigger", "true",
        "the schema includes a trigger that sends NOTIFY after every INSERT "
        "statement; false: writers send it (or the relay polls)"),
    OBX_OPT_PREFIX(pgp_config, column, "column",
                   "column.<name> = <real column>: rename a writer-facing "
                   "column (id, event_id, aggregate_type, aggregate_id, "
                   "event_type, payload, topic, headers, created_at)"),
    OBX_OPTIONS_END,
};

/* ---- parameters ---- */

/* Start array parameter k (an empty "{" in its buffer). */
static pgp_buf *pgp_arr(pgp_store *s, int k)
{
    pgp_buf_reset(&s->arg[k]);
    pgp_buf_addc(&s->arg[k], '{');
    return &s->arg[k];
}

/* Close arrays 0..n-1 into params; false when out of memory. */
static bool pgp_arr_done(pgp_store *s, int first, int n, const char **params)
{
    bool ok = true;
    for (int k = first; k < first + n; k++) {
        pgp_buf_addc(&s->arg[k], '}');
        ok = ok && !s->arg[k].oom;
        params[k] = s->arg[k].p;
    }
    return ok;
}

/* ---- open / close ---- */

/* Connect (creating the schema when asked) and prepare every statement.
 * The config must outlive the instance. */
static obx_status pgp_open(const obx_host *host, const void *config,
                           void **inst, char *errstr, size_t errlen)
{
    pgp_store *s = malloc(sizeof *s);
    if (!s)
        return OBX_NOMEM;
    const pgp_config *conf = config;
    obx_status st = pgp_init(s, host, conf, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_connect(
            s, conf->create_schema ? PGP_CONNECT_CREATE : PGP_CONNECT_RUN,
            errstr, errlen);
    if (st != OBX_OK) {
        pgp_fini(s);
        free(s);
        return st;
    }
    char wake[128];
    if (conf->listen && s->no_wakeup)
        snprintf(wake, sizeof wake,
                 "LISTEN \"%s\" but no trigger signals it: polling every "
                 "poll_interval",
                 s->names.channel);
    else if (conf->listen)
        snprintf(wake, sizeof wake, "LISTEN \"%s\"", s->names.channel);
    else
        snprintf(wake, sizeof wake, "polling");
    host->log(host, OBX_LOG_INFO,
              "pg_poll %s: table \"%s\", owner %s, ack_mode %s, lease %lld "
              "ms, %s",
              s->target, s->names.table, s->owner,
              conf->ack_mode == PGP_ACK_DELETE ? "delete" : "mark",
              (long long)conf->lease_ms, wake);
    *inst = s;
    return OBX_OK;
}

/* Hand the claims of unsettled events back at once (best effort: if this
 * fails the claims simply expire), then free them. */
static void pgp_unlease_live(pgp_store *s)
{
    if (!s->live)
        return;
    if (s->conn) {
        pgp_buf *ids = pgp_arr(s, 1), *tok = pgp_arr(s, 2);
        for (pgp_event *e = s->live; e; e = e->next) {
            pgp_buf_array_i64(ids, (int64_t)e->ev.pos.seq);
            pgp_buf_array_i64(tok, e->lease_token);
        }
        const char *p[3] = {s->owner};
        char err[OBX_ERRSTR_LEN] = "";
        PGresult *r = NULL;
        obx_status st = pgp_arr_done(s, 1, 2, p)
                            ? pgp_exec(s, PGP_S_UNLEASE, 3, p, 0, &r,
                                       "return leases", err, sizeof err)
                            : OBX_NOMEM;
        PQclear(r);
        if (st != OBX_OK)
            s->host->log(s->host, OBX_LOG_WARN,
                         "pg_poll \"%s\": could not return leases at close: "
                         "%s; they expire after the lease",
                         s->names.table, err[0] ? err : obx_status_name(st));
    }
    osc_claimed_settle_all(&s->live);
}

static void pgp_close(void *inst)
{
    pgp_store *s = inst;
    if (!s)
        return;
    pgp_unlease_live(s);
    pgp_fini(s);
    free(s);
}

/* ---- claim ---- */

/* A row that cannot be published (headers that cannot be parsed, a NULL
 * id or key), dead-lettered right after the claim instead of being handed
 * out half-filled. */
typedef struct pgp_batch {
    obx_event **out;
    size_t n;
    pgp_buf *bad_ids, *bad_why; /* array literals; NULL until needed */
    size_t n_bad;
    int64_t token; /* the claim's, once a row was bad */
} pgp_batch;

static void pgp_batch_drop(pgp_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->out[i]);
    b->n = 0;
}

static obx_status pgp_claim_row(pgp_store *s, const PGresult *r, int row,
                                pgp_batch *b)
{
    char err[OBX_ERRSTR_LEN];
    pgp_event *e = NULL;
    obx_status st = pgp_event_read(r, row, true, &e, err, sizeof err);
    if (st == OBX_PERMANENT) {
        if (!b->bad_ids) {
            b->bad_ids = pgp_arr(s, 1);
            b->bad_why = pgp_arr(s, 2);
            b->token = pgp_get_i64(r, row, PGP_EVENT_COLUMNS);
        }
        pgp_buf_array_i64(b->bad_ids, pgp_get_i64(r, row, 0));
        pgp_buf_array_text(b->bad_why, err);
        b->n_bad++;
        return OBX_OK;
    }
    if (st != OBX_OK)
        return st;
    e->lease_token = pgp_get_i64(r, row, PGP_EVENT_COLUMNS);
    /* the claim order of its key (see pgp_claim_sql) */
    e->ev.pos.sub = (uint64_t)pgp_get_i64(r, row, PGP_EVENT_COLUMNS + 1);
    b->out[b->n++] = &e->ev;
    return OBX_OK;
}

/* Best effort: if this fails the rows come back after their lease and are
 * dead-lettered then. A claim of nothing but such rows is done here. */
static void pgp_bury_poison(pgp_store *s, pgp_batch *b)
{
    const char *p[4] = {s->owner};
    pgp_buf *done = pgp_arr(s, 3);
    if (b->n == 0)
        pgp_buf_array_i64(done, b->token);
    char err[OBX_ERRSTR_LEN] = "";
    PGresult *r = NULL;
    obx_status st =
        pgp_arr_done(s, 1, 3, p)
            ? pgp_exec(s, PGP_S_POISON, 4, p, 0, &r,
                       "dead-letter unreadable rows", err, sizeof err)
            : OBX_NOMEM;
    PQclear(r);
    if (st != OBX_OK)
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_poll \"%s\": %s; retried after the lease",
                     s->names.table, err[0] ? err : obx_status_name(st));
    else
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_poll \"%s\": %zu unreadable rows (headers, NULL "
                     "columns) dead-lettered at claim (ids %s)",
                     s->names.table, b->n_bad, p[1]);
}

/* Claim order: claim_seq (pos.sub), then id (pos.seq). */
static int pgp_cmp_rank(const void *a, const void *b)
{
    const obx_position *x = &(*(obx_event *const *)a)->pos;
    const obx_position *y = &(*(obx_event *const *)b)->pos;
    if (x->sub != y->sub)
        return x->sub < y->sub ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static obx_status pgp_claim_rows(pgp_store *s, const PGresult *r, size_t max,
                                 pgp_batch *b, char *errstr, size_t errlen)
{
    size_t rows = (size_t)PQntuples(r);
    if (rows > max || PQnfields(r) != PGP_EVENT_COLUMNS + 2) {
        osc_errf_words(errstr, errlen,
                       "pg_poll \"%s\": claim returned %zu rows of %d columns; "
                       "asked for %zu of %d",
                       s->names.table, rows, PQnfields(r), max,
                       PGP_EVENT_COLUMNS + 2);
        return OBX_FATAL;
    }
    for (size_t i = 0; i < rows; i++) {
        obx_status st = pgp_claim_row(s, r, (int)i, b);
        if (st != OBX_OK) {
            /* the rows stay leased and come back after the lease */
            osc_errf_words(errstr, errlen, "pg_poll \"%s\": claim: %s",
                           s->names.table, obx_status_name(st));
            return st;
        }
    }
    return OBX_OK;
}

/* One claim; past_own: go past this instance's unsettled claims
 * (claim_ahead), else past none. */
static obx_status pgp_claim_once(pgp_store *s, obx_event **out, size_t max,
                                 bool past_own, size_t *n, char *errstr,
                                 size_t errlen)
{
    char smax[24], lease[24];
    snprintf(smax, sizeof smax, "%zu", max);
    snprintf(lease, sizeof lease, "%lld", (long long)s->conf->lease_ms);
    const char *p[4] = {s->owner, smax, lease};
    pgp_buf *past = pgp_arr(s, 3);
    int64_t tok[OSC_AHEAD_MAX_CLAIMS];
    size_t nt =
        past_own ? osc_claimed_tokens(s->live, tok, OSC_AHEAD_MAX_CLAIMS) : 0;
    for (size_t i = 0; i < nt; i++)
        pgp_buf_array_i64(past, tok[i]);
    if (!pgp_arr_done(s, 3, 1, p)) {
        snprintf(errstr, errlen, "pg_poll \"%s\": claim: out of memory",
                 s->names.table);
        return OBX_NOMEM;
    }
    PGresult *r = NULL;
    obx_status st = pgp_exec_claim(s, 4, p, &r, errstr, errlen);
    if (st != OBX_OK)
        return st;
    pgp_batch b = {out, 0, NULL, NULL, 0, 0};
    st = pgp_claim_rows(s, r, max, &b, errstr, errlen);
    PQclear(r);
    if (st != OBX_OK) {
        pgp_batch_drop(&b);
        return st;
    }
    if (b.n_bad)
        pgp_bury_poison(s, &b);
    /* RETURNING gives no order guarantee; the engine needs each key's
     * events in claim order */
    qsort(out, b.n, sizeof *out, pgp_cmp_rank);
    for (size_t i = 0; i < b.n; i++)
        osc_claimed_add(&s->live, (pgp_event *)out[i]);
    *n = b.n;
    return OBX_OK;
}

/* How long an idle claim may sleep: wait_us, or less when a lease or a
 * retry runs out sooner (no NOTIFY announces those). */
static int64_t pgp_idle_wait(pgp_store *s, int wait_ms)
{
    int64_t wait_us = (int64_t)wait_ms * 1000;
    if (wait_ms <= PGP_NEXT_DUE_MIN_MS)
        return wait_us;
    PGresult *r = NULL;
    char err[OBX_ERRSTR_LEN];
    if (pgp_exec(s, PGP_S_NEXT_DUE, 0, NULL, 1, &r, "next due", err,
                 sizeof err) != OBX_OK)
        return wait_us; /* the claim after the wait reports it */
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        int64_t due_us = (pgp_get_i64(r, 0, 0) + 1) * 1000;
        if (due_us < wait_us)
            wait_us = due_us < 1000 ? 1000 : due_us;
    }
    PQclear(r);
    return wait_us;
}

/* Claim up to max due events (see obx_store_ops.claim). The events are
 * ours until ack/release/bury settles them, or close(). */
static obx_status pgp_claim(void *inst, obx_event **out, size_t max, size_t *n,
                            int wait_ms, char *errstr, size_t errlen)
{
    pgp_store *s = inst;
    *n = 0;
    if (max == 0)
        return OBX_OK;
    obx_status st = pgp_ensure(s, errstr, errlen);
    if (st != OBX_OK)
        return st;
    pgp_retention(s);
    pgp_drain_notifies(s); /* we are about to look anyway */
    st = pgp_claim_once(s, out, max, false, n, errstr, errlen);
    if (st != OBX_OK || *n > 0 || wait_ms <= 0)
        return st;
    if (pgp_wait(s, pgp_idle_wait(s, wait_ms)) < 0) {
        pgp_disconnect(s, "connection closed while waiting for NOTIFY");
        osc_errf_words(errstr, errlen,
                       "pg_poll %s: connection lost while waiting for events",
                       s->target);
        return OBX_UNAVAILABLE;
    }
    return pgp_claim_once(s, out, max, false, n, errstr, errlen);
}

/* Claim the events behind our own unsettled ones as well (see
 * obx_store_ops.claim_ahead). */
static obx_status pgp_claim_ahead(void *inst, obx_event **out, size_t max,
                                  size_t *n, char *errstr, size_t errlen)
{
    pgp_store *s = inst;
    *n = 0;
    obx_status st = max ? pgp_ensure(s, errstr, errlen) : OBX_OK;
    if (st != OBX_OK || max == 0)
        return st;
    /* with a backlog every claim is one of these: they keep retention
     * going and the notifications read, as claim does */
    pgp_retention(s);
    pgp_drain_notifies(s);
    return pgp_claim_once(s, out, max, true, n, errstr, errlen);
}

/* ---- settle: ack, release, bury ---- */

/* Fill the statement's parameters for items[0..n); false: no memory. */
typedef bool (*pgp_args_fn)(pgp_store *s, const void *items, size_t n,
                            const char **params);

typedef struct pgp_settle_op {
    pgp_stmt stmt;
    int nparams; /* the last one: the claims this settle finishes */
    pgp_args_fn args;
    osc_claimed_item_fn item;
    const char *what;
} pgp_settle_op;

/* The claims (tokens) whose last events items[0..n) are, into the array
 * literal `done`: the statement deletes their claims rows, which frees
 * their keys. False: no memory. */
static bool pgp_done_claims(pgp_store *s, const pgp_settle_op *op,
                            const void *items, size_t n, pgp_buf *done)
{
    int64_t *tokens = malloc((n ? n : 1) * sizeof *tokens);
    long ended =
        tokens ? osc_claimed_ended(s->live, items, n, op->item, tokens) : -1;
    for (long j = 0; j < ended; j++)
        pgp_buf_array_i64(done, tokens[j]);
    free(tokens);
    return ended >= 0;
}

/* Run one statement for the whole batch (array parameters, one round
 * trip). Only OBX_OK settles (frees) the events: on an error they stay
 * claimed and valid for the engine to call again once the database is
 * back, since acking late beats publishing twice (store.h). If it never
 * comes back, close() frees them and the leases return the rows. */
static obx_status pgp_settle(pgp_store *s, const pgp_settle_op *op,
                             const void *items, size_t n, char *errstr,
                             size_t errlen)
{
    if (n == 0)
        return OBX_OK;
    const char *params[PGP_MAX_PARAMS] = {s->owner};
    PGresult *r = NULL;
    obx_status st = OBX_NOMEM;
    int last = op->nparams - 1;
    if (op->args(s, items, n, params) &&
        pgp_done_claims(s, op, items, n, pgp_arr(s, last)) &&
        pgp_arr_done(s, last, 1, params))
        st = pgp_exec(s, op->stmt, op->nparams, params, 0, &r, op->what, errstr,
                      errlen);
    else
        osc_errf_words(errstr, errlen, "pg_poll: %s: out of memory", op->what);
    if (st != OBX_OK)
        return st;
    size_t done = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (done < n && op->stmt != PGP_S_ACK)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_poll \"%s\": %s: %zu of %zu events were no longer "
                     "ours (lease expired and taken over); left to their "
                     "owner",
                     s->names.table, op->what, n - done, n);
    for (size_t i = 0; i < n; i++)
        osc_claimed_settle(&s->live, op->item(items, i));
    return OBX_OK;
}

static pgp_event *pgp_item_event(const void *items, size_t i)
{
    return (pgp_event *)((obx_event *const *)items)[i];
}

static pgp_event *pgp_item_release(const void *items, size_t i)
{
    return (pgp_event *)((const obx_release *)items)[i].event;
}

static pgp_event *pgp_item_burial(const void *items, size_t i)
{
    return (pgp_event *)((const obx_burial *)items)[i].event;
}

static bool pgp_args_ack(pgp_store *s, const void *items, size_t n,
                         const char **params)
{
    pgp_buf *ids = pgp_arr(s, 1), *tok = pgp_arr(s, 2);
    for (size_t i = 0; i < n; i++) {
        const pgp_event *e = pgp_item_event(items, i);
        pgp_buf_array_i64(ids, (int64_t)e->ev.pos.seq);
        pgp_buf_array_i64(tok, e->lease_token);
    }
    return pgp_arr_done(s, 1, 2, params);
}

/* The engine's retry time is on its clock; the delay is added to the
 * database's, like every other time the claim compares. */
static bool pgp_args_release(pgp_store *s, const void *items, size_t n,
                             const char **params)
{
    pgp_buf *ids = pgp_arr(s, 1), *tok = pgp_arr(s, 2), *dly = pgp_arr(s, 3);
    pgp_buf *cnt = pgp_arr(s, 4), *why = pgp_arr(s, 5);
    int64_t now = s->host->now_us();
    for (size_t i = 0; i < n; i++) {
        const obx_release *r = &((const obx_release *)items)[i];
        const pgp_event *e = (const pgp_event *)r->event;
        int64_t delay = r->retry_at_us > now ? r->retry_at_us - now : 0;
        pgp_buf_array_i64(ids, (int64_t)e->ev.pos.seq);
        pgp_buf_array_i64(tok, e->lease_token);
        pgp_buf_array_i64(dly, delay);
        pgp_buf_array_i64(cnt, r->counts_as_attempt ? 1 : 0);
        pgp_buf_array_text(why, r->error);
    }
    return pgp_arr_done(s, 1, 5, params);
}

static bool pgp_args_bury(pgp_store *s, const void *items, size_t n,
                          const char **params)
{
    pgp_buf *ids = pgp_arr(s, 1), *tok = pgp_arr(s, 2), *why = pgp_arr(s, 3);
    pgp_buf *dst = pgp_arr(s, 4), *att = pgp_arr(s, 5);
    for (size_t i = 0; i < n; i++) {
        const obx_burial *b = &((const obx_burial *)items)[i];
        const pgp_event *e = (const pgp_event *)b->event;
        pgp_buf_array_i64(ids, (int64_t)e->ev.pos.seq);
        pgp_buf_array_i64(tok, e->lease_token);
        pgp_buf_array_text(why, b->reason ? b->reason : "unknown");
        pgp_buf_array_text(dst, b->destination);
        pgp_buf_array_i64(att, (int64_t)b->event->attempts);
    }
    return pgp_arr_done(s, 1, 5, params);
}

/* Mark published (ack_mode=mark) or delete (delete), one statement for
 * the batch. Acks whatever the lease says: the broker has the events. */
static obx_status pgp_ack(void *inst, obx_event *const *events, size_t n,
                          char *errstr, size_t errlen)
{
    static const pgp_settle_op op = {PGP_S_ACK, 4, pgp_args_ack, pgp_item_event,
                                     "ack"};
    return pgp_settle(inst, &op, events, n, errstr, errlen);
}

/* Schedule retries: next_attempt_at, attempts (when it counts), last_error
 * (kept when error is NULL); the lease is cleared. Rows whose lease was
 * taken over by another relay are left alone. */
static obx_status pgp_release(void *inst, const obx_release *items, size_t n,
                              char *errstr, size_t errlen)
{
    static const pgp_settle_op op = {PGP_S_RELEASE, 7, pgp_args_release,
                                     pgp_item_release, "release"};
    return pgp_settle(inst, &op, items, n, errstr, errlen);
}

/* Dead-letter in the table: dead_at, reason, destination, attempts. */
static obx_status pgp_bury(void *inst, const obx_burial *items, size_t n,
                           char *errstr, size_t errlen)
{
    static const pgp_settle_op op = {PGP_S_BURY, 7, pgp_args_bury,
                                     pgp_item_burial, "bury"};
    return pgp_settle(inst, &op, items, n, errstr, errlen);
}

/* ---- validate / schema ---- */

/* Check the config; with `connect`, also that the server is reachable, new
 * enough, and that the table exists (or create_schema is set) and has our
 * columns. Creates nothing. */
static obx_status pgp_validate(const obx_host *host, const void *config,
                               bool connect, char *errstr, size_t errlen)
{
    pgp_store s;
    obx_status st = pgp_init(&s, host, config, errstr, errlen);
    if (st == OBX_OK && connect)
        st = pgp_connect(&s, PGP_CONNECT_CHECK, errstr, errlen);
    pgp_fini(&s);
    return st;
}

typedef struct pgp_emit_ctx {
    obx_emit_fn emit;
    void *ctx;
} pgp_emit_ctx;

static int pgp_emit_stmt(void *ctx, const char *sql)
{
    pgp_emit_ctx *e = ctx;
    pgp_buf b = {0};
    pgp_buf_add(&b, sql);
    pgp_buf_add(&b, ";\n");
    char *text = pgp_buf_take(&b);
    if (!text)
        return -1;
    e->emit(e->ctx, text);
    free(text);
    return 0;
}

static const char pgp_schema_note[] =
    "-- outbox-relay pg_poll schema (PostgreSQL 14 or later).\n"
    "-- Writers insert aggregate_type, aggregate_id, event_type and payload\n"
    "-- in the transaction that changes their data; event_id, topic,\n"
    "-- headers (a JSON object of strings) and created_at are optional.\n"
    "-- payload is bytea, so any bytes fit: pass bytes from your driver, or\n"
    "-- convert_to('{\"id\": 1}', 'UTF8') in SQL. A text, json or jsonb\n"
    "-- payload column works too if your events are always text.\n"
    "-- The other columns belong to the relay.\n";

/* Emit the DDL for `config`: a comment, then one statement per call, each
 * ending in ";". Errors: OBX_CONFIG (logged) for bad names. */
static obx_status pgp_schema(const obx_host *host, const void *config,
                             obx_emit_fn emit, void *ctx)
{
    pgp_names names;
    char err[OBX_ERRSTR_LEN];
    if (pgp_names_init(&names, config, err, sizeof err) != 0) {
        host->log(host, OBX_LOG_ERROR, "pg_poll schema: %s", err);
        return OBX_CONFIG;
    }
    emit(ctx, pgp_schema_note);
    pgp_emit_ctx e = {emit, ctx};
    return pgp_ddl_each(&names, config, pgp_emit_stmt, &e) == 0 ? OBX_OK
                                                                : OBX_NOMEM;
}

static const obx_store_ops pgp_ops = {
    .struct_size = sizeof(obx_store_ops),
    .flags = OBX_STORE_ORDERED_CLAIM,
    .validate = pgp_validate,
    .open = pgp_open,
    .close = pgp_close,
    .claim = pgp_claim,
    .ack = pgp_ack,
    .release = pgp_release,
    .bury = pgp_bury,
    .stats = pgp_stats,
    .schema = pgp_schema,
    .dead_list = pgp_dead_list,
    .dead_requeue = pgp_dead_requeue,
    .dead_purge = pgp_dead_purge,
    .demo = pgp_demo,
    .claim_ahead = pgp_claim_ahead,
};

OBX_STORE_PLUGIN("pg_poll",
                 "PostgreSQL outbox table (polling with SKIP LOCKED, "
                 "LISTEN/NOTIFY wake-up)",
                 "1.0.0", pgp_options, pgp_config, pgp_ops)
