/* The pg_poll store's contract harness: a fresh schema per check on the
 * `pg` fixture's server (tests/pg/pg_testlib), events written by a raw
 * connection as the application does, records read back from the outbox
 * table's columns; the store connects through harness_proxy (backend_down
 * without stopping the server the other pg tests share). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "pg_testlib.h"
#include "harness_proxy.h"

static pgt *cur;
static int port;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    cur = pgt_new();
    int server = hp_port_in(cur->server, "port=", err, errlen);
    if (server < 0)
        return -1;
    port = hp_pass(server);
    /* the writer's table: open() creates it */
    cur->ops->close(pgt_open(cur, NULL));
    return 0;
}

static void h_teardown(void *ctx)
{
    pgt_free(cur);
    cur = NULL;
}

static int h_config(void *ctx, const obx_contract_conf *req, char *text,
                    size_t len, char *err, size_t errlen)
{
    /* query_timeout bounds a call on a link that went away mid-query */
    int n = snprintf(text, len,
                     "conninfo = %s host=127.0.0.1 port=%d\n"
                     "owner = contract-%d\nchannel = %s\n"
                     "query_timeout = 3s\n",
                     cur->conninfo, port, req->instance, cur->schema);
    if (req->lease_ms > 0)
        snprintf(text + n, len - (size_t)n, "lease = %lldms\n",
                 (long long)req->lease_ms);
    return 0;
}

static int h_write(void *ctx, const char *key, const char *payload, char *err,
                   size_t errlen)
{
    pgt_insert(cur, key, payload);
    return 0;
}

/* A pending row is CLAIMED while a claims row holds it, expired or not
 * (or, from a relay of an earlier version, while its lease columns are
 * set): every settle must let go of it, which this makes the kit check. */
static int h_inspect(void *ctx, const char *id, obx_contract_record *rec,
                     char *err, size_t errlen)
{
    const char *p[1] = {id};
    PGresult *r = PQexecParams(
        pgt_db(cur),
        "SELECT (dead_at IS NOT NULL)::int, (published_at IS NOT NULL)::int, "
        "(locked_by IS NOT NULL OR locked_until IS NOT NULL OR EXISTS ("
        "SELECT 1 FROM outbox_claims AS c WHERE o.id = ANY(c.ids)))::int, "
        "attempts, "
        "CASE WHEN next_attempt_at = '-infinity' THEN 0 ELSE "
        "(extract(epoch FROM next_attempt_at) * 1000000)::bigint END, "
        "coalesce(last_error, ''), coalesce(dead_reason, ''), "
        "coalesce(dead_destination, '') FROM outbox AS o WHERE event_id = $1",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(pgt_db(cur)));
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        rec->state = OBX_CONTRACT_ABSENT;
    } else {
        rec->state = atoi(PQgetvalue(r, 0, 0))   ? OBX_CONTRACT_DEAD
                     : atoi(PQgetvalue(r, 0, 1)) ? OBX_CONTRACT_PUBLISHED
                     : atoi(PQgetvalue(r, 0, 2)) ? OBX_CONTRACT_CLAIMED
                                                 : OBX_CONTRACT_PENDING;
        rec->attempts = (uint32_t)strtoul(PQgetvalue(r, 0, 3), NULL, 10);
        rec->retry_at_us = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        snprintf(rec->last_error, sizeof rec->last_error, "%s",
                 PQgetvalue(r, 0, 5));
        snprintf(rec->dead_reason, sizeof rec->dead_reason, "%s",
                 PQgetvalue(r, 0, 6));
        snprintf(rec->dead_destination, sizeof rec->dead_destination, "%s",
                 PQgetvalue(r, 0, 7));
    }
    PQclear(r);
    return 0;
}

int main(void)
{
    obx_contract_store_harness h = {
        .struct_size = sizeof h,
        .name = "pg_poll",
        .plugin = "pg_poll",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .write = h_write,
        .inspect = h_inspect,
        .backend_stop = hp_backend_stop,
        .backend_start = hp_backend_start,
        /* close() clears the leases it still holds (ack_mode_case in
         * tests/pg/test_pg_store.c checks the columns) */
        .close_returns_claims = true,
    };
    return hp_exit(obx_contract_store_run(&h));
}
