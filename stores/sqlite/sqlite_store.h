/* Internal: the sqlite store instance, shared by the plugin's files. */
#ifndef SQ_STORE_H
#define SQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <outbox/plugin.h>

#include "sqlite_config.h"
#include "sqlite_event.h"
#include "sqlite_sql.h"

/* Prepared statements, prepared once at open. */
typedef enum sq_stmt {
    SQ_S_BEGIN,
    SQ_S_COMMIT,
    SQ_S_ROLLBACK,
    SQ_S_DATA_VERSION,
    SQ_S_EXPIRE,
    SQ_S_CLAIM,
    SQ_S_CLAIM_ADD,
    SQ_S_CLAIM_END,
    SQ_S_ACK,
    SQ_S_RELEASE,
    SQ_S_BURY,
    SQ_S_POISON,
    SQ_S_RETENTION,
    SQ_S_PENDING,
    SQ_S_OLDEST,
    SQ_S_DEAD_COUNT,
    SQ_S_DEAD_LIST,
    SQ_S_REQUEUE,
    SQ_S_PURGE,
    SQ_S_COUNT
} sq_stmt;

typedef struct sq_store {
    const obx_host *host;
    const sq_config *conf;
    sq_names names;
    const char *path;
    sqlite3 *db;
    char owner[320];
    sqlite3_stmt *st[SQ_S_COUNT];
    sq_event *live; /* claimed, not yet settled */
    char *ids_json; /* a batch's ids as a JSON array (claim, ack); owned */
    size_t ids_json_cap;
    int64_t retention_due_us; /* monotonic time of the next retention run */
    bool retention_failing;   /* the last run failed (and said so) */
} sq_store;

/* Write an error into (errstr, errlen) for result code rc of step `what`,
 * roll back an open transaction and map rc to a status: lock contention
 * beyond busy_timeout and I/O trouble are OBX_UNAVAILABLE, out of memory
 * OBX_NOMEM, anything else OBX_FATAL. */
obx_status sq_fail(sq_store *s, int rc, const char *what, char *errstr,
                   size_t errlen);

/* Step a statement that returns no rows we need, then reset it. Returns
 * SQLITE_OK or the error code (the message stays in sqlite3_errmsg). */
int sq_run(sq_store *s, sq_stmt which);

/* Bind an optional string (NULL binds SQL NULL). */
void sq_bind_str(sqlite3_stmt *st, int idx, const char *v);

/* Which of the columns want[0..n_want) table `table` has, compared as
 * SQLite compares names (ASCII case-insensitive): found[i] is set for
 * each one present (the caller zeroes found). *n_cols counts the table's
 * columns, 0 when there is no such table. Returns an SQLite code. */
int sq_columns_found(sqlite3 *db, const char *table, const char *const *want,
                     int n_want, bool *found, int *n_cols);

/* Operator and statistics operations (sqlite_admin.c). */
obx_status sq_stats(void *inst, obx_store_stats *st, char *errstr,
                    size_t errlen);
obx_status sq_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                        void *ctx, char *errstr, size_t errlen);
obx_status sq_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                           char *errstr, size_t errlen);
obx_status sq_dead_purge(void *inst, const char *event_id, uint64_t *count,
                         char *errstr, size_t errlen);
obx_status sq_demo(void *inst, uint64_t n, char *errstr, size_t errlen);

/* Delete one batch of expired published rows when due (ack_mode=mark). */
void sq_retention(sq_store *s);

#endif
