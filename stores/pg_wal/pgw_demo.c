/* The demo writer: the transactional outbox pattern itself. Each order
 * and its event are written by one statement (a data-modifying CTE), so
 * they commit together or not at all. */
#include "err_words.h"
#include "pg_schema.h"
#include "pgw_store.h"

#include <stdio.h>
#include <stdlib.h>

/* The orders table lives beside the outbox (same schema): {T} expanded
 * with the table name "orders"; DDL and shape check are the pg stores'
 * (pg_schema.h). */

/* An orders table of another shape is named with the shape the demo
 * needs, rather than failing the first INSERT with a bare SQL error. */
static obx_status demo_check_orders(pgw_store *s, const pgw_names *orders,
                                    char *errstr, size_t errlen)
{
    char *table = pgw_sql_expand(orders, "{T}");
    if (!table)
        return OBX_NOMEM;
    const char *p[1] = {table};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, osc_pg_demo_orders_check, 1, p, &r,
                             "demo: look at orders", errstr, errlen);
    if (st == OBX_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
        osc_pg_demo_orders_err(errstr, errlen, "pg_wal", table,
                               PQgetvalue(r, 0, 0));
        st = OBX_CONFIG;
    }
    PQclear(r);
    free(table);
    return st;
}

/* $1 customer, $2 amount. Expanded with the orders table as {T}; the
 * event payload is the order as JSON. */
static const char demo_order_cte[] =
    "WITH o AS (INSERT INTO {T} (customer, amount_cents) VALUES ($1, $2) "
    "RETURNING id, customer, amount_cents), "
    "doc AS (SELECT o.id, json_build_object('order_id', o.id, 'customer', "
    "o.customer, 'amount_cents', o.amount_cents) AS payload FROM o) ";

static const char demo_row_sql[] =
    "INSERT INTO {T} ({aggregate_type}, {aggregate_id}, {event_type}, "
    "{payload}) SELECT 'order', doc.id::text, 'OrderCreated', "
    "convert_to(doc.payload::text, 'UTF8') FROM doc";

/* $3 the message prefix: the envelope documented in docs/pg-wal.md. */
static const char demo_message_sql[] =
    "SELECT pg_logical_emit_message(true, $3, json_build_object("
    "'aggregate_type', 'order', 'aggregate_id', doc.id::text, "
    "'event_type', 'OrderCreated', 'payload', doc.payload)::text) FROM doc";

/* The statement writing one order and its event, for this store's source;
 * heap string, or NULL on no memory. */
static char *demo_statement(const pgw_store *s)
{
    pgw_names orders = s->names;
    orders.table = "orders";
    char *cte = pgw_sql_expand(&orders, demo_order_cte);
    char *tail = pgw_sql_expand(
        &s->names, s->conf->source == PGW_SOURCE_MESSAGES ? demo_message_sql
                                                          : demo_row_sql);
    char *sql = NULL;
    if (cte && tail && asprintf(&sql, "%s%s", cte, tail) < 0)
        sql = NULL;
    free(cte);
    free(tail);
    return sql;
}

static obx_status demo_prepare(pgw_store *s, char **sql, char *errstr,
                               size_t errlen)
{
    pgw_names orders = s->names;
    orders.table = "orders";
    char *ddl = pgw_sql_expand(&orders, osc_pg_demo_orders_ddl);
    char *cte = ddl ? demo_statement(s) : NULL;
    if (!ddl || !cte) {
        free(ddl);
        free(cte);
        osc_errf_words(errstr, errlen, "pg_wal: demo: out of memory");
        return OBX_NOMEM;
    }
    PGresult *r = NULL;
    obx_status st =
        pgw_exec(s, ddl, 0, NULL, &r, "demo: create orders", errstr, errlen);
    PQclear(r);
    free(ddl);
    if (st == OBX_OK)
        st = demo_check_orders(s, &orders, errstr, errlen);
    if (st != OBX_OK) {
        free(cte);
        return st;
    }
    *sql = cte;
    return OBX_OK;
}

obx_status pgw_demo(void *inst, uint64_t n, char *errstr, size_t errlen)
{
    static const char *const customers[] = {"alice", "bob", "carol", "dave",
                                            "erin"};
    pgw_store *s = inst;
    char *sql = NULL;
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st == OBX_OK)
        st = demo_prepare(s, &sql, errstr, errlen);
    uint64_t rng = (uint64_t)s->host->now_us() | 1;
    for (uint64_t i = 0; st == OBX_OK && i < n; i++) {
        rng ^= rng << 13; /* xorshift64: made-up amounts */
        rng ^= rng >> 7;
        rng ^= rng << 17;
        char cents[24];
        snprintf(cents, sizeof cents, "%llu",
                 (unsigned long long)(500 + rng % 20000));
        const char *p[3] = {customers[rng % 5], cents, s->names.prefix};
        int np = s->conf->source == PGW_SOURCE_MESSAGES ? 3 : 2;
        PGresult *r = NULL;
        st = pgw_exec(s, sql, np, p, &r, "demo: insert order", errstr, errlen);
        PQclear(r);
    }
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_wal: demo wrote %llu orders with their OrderCreated "
                     "events",
                     (unsigned long long)n);
    free(sql);
    return st;
}
