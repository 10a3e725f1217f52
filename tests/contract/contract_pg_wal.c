/* The pg_wal store's contract harness: a fresh schema, publication and
 * slot per check on the `pg` fixture's server (tests/pg_wal/pgw_testlib),
 * events written by a raw connection as the application does; the store
 * (its replication and query connections) goes through harness_proxy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "pgw_testlib.h"
#include "harness_proxy.h"

static wt *cur;
static int port;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    cur = wt_new();
    int server = hp_port_in(cur->server, "port=", err, errlen);
    if (server < 0)
        return -1;
    port = hp_pass(server);
    /* table, publication and slot: open() creates them, so that what the
     * kit writes next is in the slot's stream */
    cur->ops->close(wt_open(cur, NULL));
    return 0;
}

static void h_teardown(void *ctx)
{
    wt_free(cur);
    cur = NULL;
}

static int h_config(void *ctx, const obx_contract_conf *req, char *text,
                    size_t len, char *err, size_t errlen)
{
    if (req->instance != 0) {
        snprintf(err, errlen, "one instance per slot (lease_expiry is n/a)");
        return -1;
    }
    /* status_interval short: the kit reopens instances often, and each
     * open waits for the slot the last one let go of */
    snprintf(text, len,
             "conninfo = %s host=127.0.0.1 port=%d\n"
             "schema = %s\npublication = %s\nslot = %s\n"
             "status_interval = 100ms\n",
             cur->conninfo, port, cur->name, cur->name, cur->name);
    return 0;
}

static int h_write(void *ctx, const char *key, const char *payload, char *err,
                   size_t errlen)
{
    wt_insert(cur, key, "ContractChecked", payload);
    return 0;
}

int main(void)
{
    static const obx_contract_na na[] = {
        {"lease_expiry",
         "no leases: the slot streams to one instance at a time; a second "
         "relay is a hot standby that takes over when the first one's "
         "connection drops (pg_wal_store test_standby)"},
        {"inspect",
         "attempts, retry times and last errors live in the relay's memory "
         "(docs/pg-wal.md, rule 5): the backend holds nothing of them to "
         "read back; dead letters are checked through dead_list"},
        {NULL, NULL}};
    obx_contract_store_harness h = {
        .struct_size = sizeof h,
        .name = "pg_wal",
        .plugin = "pg_wal",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .write = h_write,
        .backend_stop = hp_backend_stop,
        .backend_start = hp_backend_start,
        /* events claimed at close come back when the next instance
         * replays the stream from the slot's confirmed position */
        .close_returns_claims = false,
        .reports_lag = true,
        .not_applicable = na,
    };
    return hp_exit(obx_contract_store_run(&h));
}
