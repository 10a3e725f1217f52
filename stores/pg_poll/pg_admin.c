/* The pg_poll store's slower paths: statistics, retention, dead letters
 * and the demo writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err_words.h"
#include "pg_schema.h"
#include "pg_store.h"

/* Rows deleted per retention run: small, so locks and WAL come in short
 * bursts that writers and replicas never notice. */
#define PGP_RETENTION_BATCH "1000"
#define PGP_RETENTION_BATCH_N 1000
/* Pause between runs; shorter while a run still found a full batch, so a
 * busy table catches up (20k rows/s) instead of growing forever. */
#define PGP_RETENTION_IDLE_US (5 * 1000000)
#define PGP_RETENTION_BUSY_US (50 * 1000)

void pgp_retention(pgp_store *s)
{
    if (s->conf->ack_mode != PGP_ACK_MARK || s->conf->retention_ms <= 0)
        return;
    int64_t mono = s->host->mono_us();
    if (mono < s->retention_due_us)
        return;
    char keep[24];
    snprintf(keep, sizeof keep, "%lld", (long long)s->conf->retention_ms);
    const char *p[2] = {keep, PGP_RETENTION_BATCH};
    PGresult *r = NULL;
    char err[OBX_ERRSTR_LEN];
    obx_status st =
        pgp_exec(s, PGP_S_RETENTION, 2, p, 0, &r, "retention", err, sizeof err);
    long deleted = st == OBX_OK ? strtol(PQcmdTuples(r), NULL, 10) : 0;
    PQclear(r);
    s->retention_due_us =
        mono + (deleted >= PGP_RETENTION_BATCH_N ? PGP_RETENTION_BUSY_US
                                                 : PGP_RETENTION_IDLE_US);
    if (st != OBX_OK)
        s->host->log(s->host, OBX_LOG_WARN, "%s (will try again)", err);
    else if (deleted > 0)
        s->host->log(s->host, OBX_LOG_DEBUG,
                     "pg_poll \"%s\": retention deleted %ld published rows",
                     s->names.table, deleted);
}

/* Pending (unpublished, not dead; exact up to 100000, estimated from the
 * id range above that) and dead counts, created_at of the oldest pending
 * event on our clock (its age as the database sees it, subtracted from
 * our now), lag_bytes -1. Fields past st->struct_size are left alone. */
obx_status pgp_stats(void *inst, obx_store_stats *st, char *errstr,
                     size_t errlen)
{
    pgp_store *s = inst;
    PGresult *r = NULL;
    obx_status rc =
        pgp_exec(s, PGP_S_STATS, 0, NULL, 1, &r, "stats", errstr, errlen);
    if (rc != OBX_OK)
        return rc;
    int64_t pending = pgp_get_i64(r, 0, 0), dead = pgp_get_i64(r, 0, 1);
    bool any = !PQgetisnull(r, 0, 2);
    int64_t age = pgp_get_i64(r, 0, 2);
    PQclear(r);
    obx_store_stats out = {
        .struct_size = st->struct_size,
        .pending = (uint64_t)pending,
        .dead = (uint64_t)dead,
        .oldest_pending_us = any ? s->host->now_us() - (age > 0 ? age : 0) : 0,
        .lag_bytes = -1,
    };
    size_t len = st->struct_size < sizeof out ? st->struct_size : sizeof out;
    memcpy(st, &out, len);
    return OBX_OK;
}

/* ---- dead letters ---- */

static obx_status pgp_dead_row(const PGresult *r, obx_dead_cb cb, void *ctx,
                               int *stop)
{
    pgp_event *e = NULL;
    char err[OBX_ERRSTR_LEN];
    obx_status rc = pgp_event_read(r, 0, false, &e, err, sizeof err);
    if (rc != OBX_OK)
        return rc;
    obx_dead_letter dl = {
        .event = &e->ev,
        .reason = PQgetisnull(r, 0, PGP_EVENT_COLUMNS)
                      ? NULL
                      : PQgetvalue(r, 0, PGP_EVENT_COLUMNS),
        .destination = PQgetisnull(r, 0, PGP_EVENT_COLUMNS + 1)
                           ? NULL
                           : PQgetvalue(r, 0, PGP_EVENT_COLUMNS + 1),
        .dead_at_us = pgp_get_i64(r, 0, PGP_EVENT_COLUMNS + 2),
    };
    *stop = cb(ctx, &dl);
    free(e);
    return OBX_OK;
}

/* Read the rows of a single-row-mode query; `rows` counts them. After a
 * stop or an error the rest is read and dropped, leaving the connection
 * ready for the next statement. */
static obx_status pgp_dead_rows(pgp_store *s, obx_dead_cb cb, void *ctx,
                                int *rows, char *errstr, size_t errlen)
{
    obx_status st = OBX_OK;
    int stop = 0;
    PGresult *r;
    while ((r = PQgetResult(s->conn)) != NULL) {
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_SINGLE_TUPLE) {
            (*rows)++;
            if (!stop && st == OBX_OK)
                st = pgp_dead_row(r, cb, ctx, &stop);
        } else if (t != PGRES_TUPLES_OK && st == OBX_OK) {
            st = pgp_fail(s, r, "dead list", errstr, errlen);
        }
        PQclear(r);
        if (!s->conn)
            break; /* pgp_fail dropped a lost connection */
    }
    if (st == OBX_NOMEM)
        osc_errf_words(errstr, errlen, "pg_poll: dead list: out of memory");
    return st;
}

/* Call cb for each dead letter (all, or the one with event_id), in id
 * order, one row in memory at a time. The callback must not call back
 * into this instance. Errors: OBX_NOT_FOUND for an unknown event_id,
 * database failures as pgp_fail. */
obx_status pgp_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                         void *ctx, char *errstr, size_t errlen)
{
    pgp_store *s = inst;
    obx_status st = pgp_ensure(s, errstr, errlen);
    if (st != OBX_OK)
        return st;
    const char *p[1] = {event_id};
    if (!PQsendQueryPrepared(s->conn, pgp_stmt_name(PGP_S_DEAD_LIST), 1, p,
                             NULL, NULL, 1) ||
        !PQsetSingleRowMode(s->conn))
        return pgp_fail(s, NULL, "dead list", errstr, errlen);
    int rows = 0;
    st = pgp_dead_rows(s, cb, ctx, &rows, errstr, errlen);
    if (st == OBX_OK && event_id && rows == 0) {
        osc_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return st;
}

/* Run a dead-letter UPDATE/DELETE for event_id (NULL: all) and count. */
static obx_status pgp_dead_change(pgp_store *s, pgp_stmt which,
                                  const char *event_id, uint64_t *count,
                                  const char *what, char *errstr, size_t errlen)
{
    const char *p[1] = {event_id};
    PGresult *r = NULL;
    obx_status st = pgp_exec(s, which, 1, p, 0, &r, what, errstr, errlen);
    if (st != OBX_OK)
        return st;
    *count = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (event_id && *count == 0) {
        osc_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return OBX_OK;
}

/* Make dead letters pending again with attempts 0, due at once. */
obx_status pgp_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                            char *errstr, size_t errlen)
{
    return pgp_dead_change(inst, PGP_S_REQUEUE, event_id, count, "dead requeue",
                           errstr, errlen);
}

/* Delete dead letters. */
obx_status pgp_dead_purge(void *inst, const char *event_id, uint64_t *count,
                          char *errstr, size_t errlen)
{
    return pgp_dead_change(inst, PGP_S_PURGE, event_id, count, "dead purge",
                           errstr, errlen);
}

/* ---- demo: the transactional outbox pattern itself ---- */

typedef struct pgp_demo_ctx {
    pgp_store *s;
    char *orders_sql; /* INSERT INTO orders ... RETURNING */
    char *event_sql;  /* INSERT INTO outbox ... */
    uint64_t rng;
} pgp_demo_ctx;

static uint64_t pgp_rand(pgp_demo_ctx *d)
{
    /* xorshift64: good enough for made-up order amounts */
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return d->rng;
}

/* The orders table lives beside the outbox (same schema option): {T}
 * expanded with the table name "orders"; its DDL and the check that an
 * existing one fits are the pg stores' (pg_schema.h). An orders table of
 * another shape is named with the shape the demo needs, rather than
 * failing the first INSERT with a bare SQL error. */
static obx_status pgp_demo_check_orders(pgp_demo_ctx *d, const pgp_names *n,
                                        char *errstr, size_t errlen)
{
    char *table = pgp_sql_expand(n, "{T}");
    if (!table)
        return OBX_NOMEM;
    const char *p[1] = {table};
    PGresult *r = PQexecParams(d->s->conn, osc_pg_demo_orders_check, 1, NULL, p,
                               NULL, NULL, 0);
    obx_status st = OBX_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        st = pgp_fail(d->s, r, "demo: look at orders", errstr, errlen);
    else if (!PQgetisnull(r, 0, 0)) {
        osc_pg_demo_orders_err(errstr, errlen, "pg_poll", table,
                               PQgetvalue(r, 0, 0));
        st = OBX_CONFIG;
    }
    PQclear(r);
    free(table);
    return st;
}

static obx_status pgp_demo_prepare(pgp_demo_ctx *d, char *errstr, size_t errlen)
{
    pgp_names n = d->s->names;
    n.table = "orders";
    char *ddl = pgp_sql_expand(&n, osc_pg_demo_orders_ddl);
    d->orders_sql = pgp_sql_expand(
        &n, "INSERT INTO {T} (customer, amount_cents) VALUES ($1, $2) "
            "RETURNING id, (extract(epoch FROM created_at) * 1000000)::int8");
    d->event_sql = pgp_sql_expand(
        &d->s->names, "INSERT INTO {T} ({aggregate_type}, {aggregate_id}, "
                      "{event_type}, {payload}) "
                      "VALUES ('order', $1, 'OrderCreated', $2)");
    if (!ddl || !d->orders_sql || !d->event_sql) {
        free(ddl);
        return OBX_NOMEM;
    }
    PGresult *r = PQexec(d->s->conn, ddl);
    free(ddl);
    obx_status st = OBX_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pgp_fail(d->s, r, "demo: create orders", errstr, errlen);
    PQclear(r);
    return st == OBX_OK ? pgp_demo_check_orders(d, &n, errstr, errlen) : st;
}

/* Run a command without parameters; its error stays in PQerrorMessage. */
static bool pgp_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* The event's payload: the order as JSON, sent in binary format so it
 * lands as the same bytes in a bytea or a text payload column. */
static char *pgp_demo_payload(const PGresult *r, const char *customer,
                              int64_t cents)
{
    json_t *doc = json_pack("{sIsssIsI}", "order_id",
                            (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10),
                            "customer", customer, "amount_cents",
                            (json_int_t)cents, "created_at",
                            (json_int_t)strtoll(PQgetvalue(r, 0, 1), NULL, 10));
    char *payload = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return payload;
}

/* The order row and its event, written by one transaction: either both
 * exist or neither does. That is the whole pattern. */
static obx_status pgp_demo_one(pgp_demo_ctx *d, char *errstr, size_t errlen)
{
    static const char *const customers[] = {"alice", "bob", "carol", "dave",
                                            "erin"};
    PGconn *c = d->s->conn;
    char cents[24];
    const char *customer = customers[pgp_rand(d) % 5];
    int64_t amount = 500 + (int64_t)(pgp_rand(d) % 20000);
    snprintf(cents, sizeof cents, "%lld", (long long)amount);
    if (!pgp_cmd(c, "BEGIN"))
        return pgp_fail(d->s, NULL, "demo: begin", errstr, errlen);
    const char *op[2] = {customer, cents};
    PGresult *r = PQexecParams(c, d->orders_sql, 2, NULL, op, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        obx_status st = pgp_fail(d->s, r, "demo: insert order", errstr, errlen);
        PQclear(r);
        return st;
    }
    char *payload = pgp_demo_payload(r, customer, amount);
    const char *ep[2] = {PQgetvalue(r, 0, 0), payload};
    int lens[2] = {0, payload ? (int)strlen(payload) : 0};
    int fmts[2] = {0, 1};
    PGresult *e =
        payload ? PQexecParams(c, d->event_sql, 2, NULL, ep, lens, fmts, 0)
                : NULL;
    PQclear(r);
    free(payload);
    if (!e || PQresultStatus(e) != PGRES_COMMAND_OK) {
        obx_status st =
            e ? pgp_fail(d->s, e, "demo: insert event", errstr, errlen)
              : OBX_NOMEM;
        PQclear(e);
        if (st == OBX_NOMEM)
            pgp_cmd(c, "ROLLBACK");
        return st;
    }
    PQclear(e);
    if (!pgp_cmd(c, "COMMIT"))
        return pgp_fail(d->s, NULL, "demo: commit", errstr, errlen);
    return OBX_OK;
}

/* Create the `orders` table when missing (beside the outbox) and write n
 * orders, each with its OrderCreated event in the same transaction. */
obx_status pgp_demo(void *inst, uint64_t n, char *errstr, size_t errlen)
{
    pgp_demo_ctx d = {inst, NULL, NULL, 0};
    d.rng = (uint64_t)d.s->host->now_us() | 1;
    obx_status st = pgp_ensure(d.s, errstr, errlen);
    if (st == OBX_OK)
        st = pgp_demo_prepare(&d, errstr, errlen);
    for (uint64_t i = 0; st == OBX_OK && i < n; i++)
        st = pgp_demo_one(&d, errstr, errlen);
    if (st == OBX_NOMEM)
        osc_errf_words(errstr, errlen, "pg_poll: demo: out of memory");
    if (st == OBX_OK)
        d.s->host->log(d.s->host, OBX_LOG_INFO,
                       "pg_poll \"%s\": demo wrote %llu orders with their "
                       "OrderCreated events",
                       d.s->names.table, (unsigned long long)n);
    free(d.orders_sql);
    free(d.event_sql);
    return st;
}
