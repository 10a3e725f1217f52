/* The sqlite store's contract harness: a fresh database file per check,
 * events written by a raw connection as the application does, records read
 * back from the outbox table's columns. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "sqlite_testlib.h"

static sqt *cur;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    cur = sqt_new();
    /* the writer's table: open() creates it */
    void *s = sqt_open(cur, NULL);
    cur->ops->close(s);
    return 0;
}

static void h_teardown(void *ctx)
{
    sqt_free(cur);
    cur = NULL;
}

static int h_config(void *ctx, const obx_contract_conf *req, char *text,
                    size_t len, char *err, size_t errlen)
{
    int n = snprintf(text, len, "path = %s\nowner = contract-%d\n", cur->path,
                     req->instance);
    if (req->lease_ms > 0)
        n += snprintf(text + n, len - (size_t)n, "lease = %lldms\n",
                      (long long)req->lease_ms);
    return 0;
}

static int h_write(void *ctx, const char *key, const char *payload, char *err,
                   size_t errlen)
{
    sqt_insert(cur, key, payload);
    return 0;
}

static int h_inspect(void *ctx, const char *id, obx_contract_record *rec,
                     char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(sqt_db(cur),
                           "SELECT dead_at IS NOT NULL, published_at IS NOT "
                           "NULL, id IN (SELECT id FROM " SQT_CLAIMED
                           " WHERE expires_at > ?2), attempts, "
                           "next_attempt_at, "
                           "coalesce(last_error, ''), coalesce(dead_reason, "
                           "''), coalesce(dead_destination, '') "
                           "FROM outbox WHERE event_id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(sqt_db(cur)));
        return -1;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sqt_now_us());
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rec->state = sqlite3_column_int(st, 0)   ? OBX_CONTRACT_DEAD
                     : sqlite3_column_int(st, 1) ? OBX_CONTRACT_PUBLISHED
                     : sqlite3_column_int(st, 2) ? OBX_CONTRACT_CLAIMED
                                                 : OBX_CONTRACT_PENDING;
        rec->attempts = (uint32_t)sqlite3_column_int64(st, 3);
        rec->retry_at_us = sqlite3_column_int64(st, 4);
        snprintf(rec->last_error, sizeof rec->last_error, "%s",
                 sqlite3_column_text(st, 5));
        snprintf(rec->dead_reason, sizeof rec->dead_reason, "%s",
                 sqlite3_column_text(st, 6));
        snprintf(rec->dead_destination, sizeof rec->dead_destination, "%s",
                 sqlite3_column_text(st, 7));
    } else {
        rec->state = OBX_CONTRACT_ABSENT;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int main(void)
{
    static const obx_contract_na na[] = {
        {"backend_down", "a database file has no server to stop (busy and "
                         "locked files: sqlite_store test_busy_unavailable)"},
        {NULL, NULL}};
    obx_contract_store_harness h = {
        .struct_size = sizeof h,
        .name = "sqlite",
        .plugin = "sqlite",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .write = h_write,
        .inspect = h_inspect,
        .close_returns_claims = true,
        .not_applicable = na,
    };
    return obx_contract_store_run(&h) ? 1 : 0;
}
