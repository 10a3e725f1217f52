/* The sqlite store's slower paths: statistics, retention, dead letters
 * and the demo writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_store.h"

/* Rows deleted per retention run: small, so the write lock is held only
 * briefly and writers never wait long behind it. */
#define SQ_RETENTION_BATCH 1000
/* Pause between runs; shorter while a run still found a full batch, so a
 * busy table catches up (20k rows/s) instead of growing forever. */
#define SQ_RETENTION_IDLE_US (5 * 1000000)
#define SQ_RETENTION_BUSY_US (50 * 1000)

void sq_retention(sq_store *s)
{
    if (s->conf->ack_mode != SQ_ACK_MARK || s->conf->retention_ms <= 0)
        return;
    int64_t mono = s->host->mono_us();
    if (mono < s->retention_due_us)
        return;
    sqlite3_stmt *st = s->st[SQ_S_RETENTION];
    sqlite3_bind_int64(st, 1, s->host->now_us() - s->conf->retention_ms * 1000);
    sqlite3_bind_int(st, 2, SQ_RETENTION_BATCH);
    int rc = sq_run(s, SQ_S_RETENTION);
    int deleted = rc == SQLITE_OK ? sqlite3_changes(s->db) : 0;
    s->retention_due_us =
        mono + (deleted >= SQ_RETENTION_BATCH ? SQ_RETENTION_BUSY_US
                                              : SQ_RETENTION_IDLE_US);
    /* Once per failing streak: on a full disk it fails every run, and
     * one line says all there is to say until it works again. */
    if (rc != SQLITE_OK && !s->retention_failing)
        s->host->log(s->host, OBX_LOG_WARN,
                     "sqlite %s: retention: %s (retried every %d s, "
                     "quietly until it works again)",
                     s->path, sqlite3_errmsg(s->db),
                     SQ_RETENTION_IDLE_US / 1000000);
    else if (rc == SQLITE_OK && s->retention_failing)
        s->host->log(s->host, OBX_LOG_INFO, "sqlite %s: retention works again",
                     s->path);
    s->retention_failing = rc != SQLITE_OK;
    if (rc == SQLITE_OK && deleted > 0)
        s->host->log(s->host, OBX_LOG_DEBUG,
                     "sqlite %s: retention deleted %d published rows", s->path,
                     deleted);
}

/* One-row, one-integer query; *v untouched when there is no row. */
static int sq_query_int(sq_store *s, sq_stmt which, int64_t *v)
{
    sqlite3_stmt *st = s->st[which];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Pending (unpublished, not dead) and dead counts, created_at of the oldest
 * pending event (the lowest pending id); lag_bytes -1. Fields past
 * st->struct_size are left alone. */
obx_status sq_stats(void *inst, obx_store_stats *st, char *errstr,
                    size_t errlen)
{
    sq_store *s = inst;
    int64_t pending = 0, dead = 0, oldest = 0;
    int rc = sq_query_int(s, SQ_S_PENDING, &pending);
    if (rc == SQLITE_OK)
        rc = sq_query_int(s, SQ_S_DEAD_COUNT, &dead);
    if (rc == SQLITE_OK)
        rc = sq_query_int(s, SQ_S_OLDEST, &oldest);
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, "stats", errstr, errlen);
    obx_store_stats out = {
        .struct_size = st->struct_size,
        .pending = (uint64_t)pending,
        .dead = (uint64_t)dead,
        .oldest_pending_us = pending ? oldest : 0,
        .lag_bytes = -1,
    };
    size_t len = st->struct_size < sizeof out ? st->struct_size : sizeof out;
    memcpy(st, &out, len);
    return OBX_OK;
}

static obx_status sq_dead_row(sqlite3_stmt *st, obx_dead_cb cb, void *ctx,
                              int *stop)
{
    sq_event *e = NULL;
    obx_status rc = sq_event_read(st, 0, false, &e, NULL, 0);
    if (rc != OBX_OK)
        return rc;
    obx_dead_letter dl = {
        .event = &e->ev,
        .reason = (const char *)sqlite3_column_text(st, SQ_EVENT_COLUMNS),
        .destination =
            (const char *)sqlite3_column_text(st, SQ_EVENT_COLUMNS + 1),
        .dead_at_us = sqlite3_column_int64(st, SQ_EVENT_COLUMNS + 2),
    };
    *stop = cb(ctx, &dl);
    free(e);
    return OBX_OK;
}

/* Call cb for each dead letter (all, or the one with event_id), in id
 * order. The callback must not call back into this instance. Errors:
 * OBX_NOT_FOUND for an unknown event_id, sqlite failures as sq_fail. */
obx_status sq_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                        void *ctx, char *errstr, size_t errlen)
{
    sq_store *s = inst;
    sqlite3_stmt *st = s->st[SQ_S_DEAD_LIST];
    sq_bind_str(st, 1, event_id);
    obx_status ost = OBX_OK;
    int stop = 0, rc, rows = 0;
    while (!stop && ost == OBX_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        ost = sq_dead_row(st, cb, ctx, &stop);
    }
    sqlite3_reset(st);
    if (!stop && ost == OBX_OK && rc != SQLITE_DONE)
        return sq_fail(s, rc, "dead list", errstr, errlen);
    if (ost != OBX_OK) {
        snprintf(errstr, errlen, "sqlite %s: dead list: out of memory",
                 s->path);
        return ost;
    }
    if (event_id && rows == 0) {
        snprintf(errstr, errlen, "no dead letter with event_id '%s'", event_id);
        return OBX_NOT_FOUND;
    }
    return OBX_OK;
}

/* Run a dead-letter UPDATE/DELETE for event_id (NULL: all) and count. */
static obx_status sq_dead_change(sq_store *s, sq_stmt which,
                                 const char *event_id, uint64_t *count,
                                 const char *what, char *errstr, size_t errlen)
{
    sq_bind_str(s->st[which], 1, event_id);
    int rc = sq_run(s, which);
    sqlite3_bind_null(s->st[which], 1);
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, what, errstr, errlen);
    *count = (uint64_t)sqlite3_changes(s->db);
    if (event_id && *count == 0) {
        snprintf(errstr, errlen, "no dead letter with event_id '%s'", event_id);
        return OBX_NOT_FOUND;
    }
    return OBX_OK;
}

/* Make dead letters pending again with attempts 0, due at once. */
obx_status sq_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                           char *errstr, size_t errlen)
{
    return sq_dead_change(inst, SQ_S_REQUEUE, event_id, count, "dead requeue",
                          errstr, errlen);
}

/* Delete dead letters. */
obx_status sq_dead_purge(void *inst, const char *event_id, uint64_t *count,
                         char *errstr, size_t errlen)
{
    return sq_dead_change(inst, SQ_S_PURGE, event_id, count, "dead purge",
                          errstr, errlen);
}

/* ---- demo: the transactional outbox pattern itself ---- */

/* What demo writes next to the outbox; an existing table of that name
 * must take these rows. */
#define SQ_DEMO_SHAPE                                                          \
    "orders(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER, "     \
    "created_at INTEGER)"

typedef struct sq_demo_ctx {
    sq_store *s;
    sqlite3_stmt *order;
    sqlite3_stmt *event;
    uint64_t rng;
    bool existed;      /* "orders" was there before demo ran */
    bool order_failed; /* the last failure was writing the order row */
} sq_demo_ctx;

static uint64_t sq_rand(sq_demo_ctx *d)
{
    /* xorshift64: good enough for made-up order amounts */
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return d->rng;
}

/* An "orders" table of the user's own: say which, and what demo needs,
 * instead of SQLite's bare complaint about a column. */
static obx_status sq_demo_shape(sq_demo_ctx *d, const char *why, char *errstr,
                                size_t errlen)
{
    /* short: it must fit OBX_ERRSTR_LEN with the path */
    snprintf(errstr, errlen,
             "sqlite %s: demo: \"orders\" exists with another shape (%s); "
             "demo needs " SQ_DEMO_SHAPE ": set another store.path or "
             "rename it",
             d->s->path, why);
    return OBX_CONFIG;
}

/* Which of demo's columns an existing "orders" lacks, as "no column a, b". */
static int sq_demo_columns(sq_demo_ctx *d, char *missing, size_t len)
{
    static const char *const want[] = {"id", "customer", "amount_cents",
                                       "created_at"};
    bool found[4] = {false};
    int n_cols = 0;
    int rc = sq_columns_found(d->s->db, "orders", want, 4, found, &n_cols);
    d->existed = n_cols > 0;
    missing[0] = '\0';
    for (int i = 0; rc == SQLITE_OK && d->existed && i < 4; i++) {
        size_t used = strlen(missing);
        if (!found[i])
            snprintf(missing + used, len - used, "%s%s",
                     used ? ", " : "no column ", want[i]);
    }
    return rc;
}

static obx_status sq_demo_prepare(sq_demo_ctx *d, char *errstr, size_t errlen)
{
    sq_store *s = d->s;
    char missing[128];
    int rc = sq_demo_columns(d, missing, sizeof missing);
    if (rc == SQLITE_OK && missing[0])
        return sq_demo_shape(d, missing, errstr, errlen);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db,
                          "CREATE TABLE IF NOT EXISTS orders (\n"
                          "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                          "    customer TEXT NOT NULL,\n"
                          "    amount_cents INTEGER NOT NULL,\n"
                          "    created_at INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO orders (customer, amount_cents, "
                                "created_at) VALUES (?1, ?2, ?3)",
                                -1, &d->order, NULL);
    char *sql =
        sq_sql_expand(&s->names, "INSERT INTO {T} ({aggregate_type}, "
                                 "{aggregate_id}, {event_type}, {payload}) "
                                 "VALUES ('order', ?1, 'OrderCreated', ?2)");
    if (rc == SQLITE_OK)
        rc = sql ? sqlite3_prepare_v2(s->db, sql, -1, &d->event, NULL)
                 : SQLITE_NOMEM;
    sqlite3_free(sql);
    return rc == SQLITE_OK ? OBX_OK : sq_fail(s, rc, "demo", errstr, errlen);
}

static int sq_step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The order row and its event, written by one transaction: either both
 * exist or neither does. That is the whole pattern. */
static int sq_demo_one(sq_demo_ctx *d)
{
    static const char *const customers[] = {"alice", "bob", "carol", "dave",
                                            "erin"};
    const char *customer = customers[sq_rand(d) % 5];
    int64_t cents = 500 + (int64_t)(sq_rand(d) % 20000);
    int64_t now = d->s->host->now_us();
    /* return at the first failure: a later sqlite3_bind_* would clear
     * the error message that sq_demo reports */
    int rc = sq_run(d->s, SQ_S_BEGIN);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(d->order, 1, customer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(d->order, 2, cents);
    sqlite3_bind_int64(d->order, 3, now);
    rc = sq_step_reset(d->order);
    d->order_failed = rc != SQLITE_OK;
    if (rc != SQLITE_OK)
        return rc;
    int64_t id = sqlite3_last_insert_rowid(d->s->db);
    /* the customers are fixed ASCII words: nothing to escape */
    char payload[160];
    snprintf(payload, sizeof payload,
             "{\"order_id\":%lld,\"customer\":\"%s\",\"amount_cents\":"
             "%lld,\"created_at\":%lld}",
             (long long)id, customer, (long long)cents, (long long)now);
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)id);
    sqlite3_bind_text(d->event, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(d->event, 2, payload, -1, SQLITE_STATIC);
    rc = sq_step_reset(d->event);
    if (rc != SQLITE_OK)
        return rc; /* stepped again only after binding anew */
    /* the key and payload live on this stack frame */
    sqlite3_clear_bindings(d->event);
    return sq_run(d->s, SQ_S_COMMIT);
}

/* Create the `orders` table when missing and write n orders, each with its
 * OrderCreated event in the same transaction. An `orders` table of
 * another shape is OBX_CONFIG, with the shape demo needs. */
obx_status sq_demo(void *inst, uint64_t n, char *errstr, size_t errlen)
{
    sq_demo_ctx d = {.s = inst};
    d.rng = (uint64_t)d.s->host->now_us() | 1;
    obx_status st = sq_demo_prepare(&d, errstr, errlen);
    int rc = SQLITE_OK;
    for (uint64_t i = 0; st == OBX_OK && rc == SQLITE_OK && i < n; i++)
        rc = sq_demo_one(&d);
    if (st == OBX_OK && rc != SQLITE_OK) {
        char why[OBX_ERRSTR_LEN];
        snprintf(why, sizeof why, "%s", sqlite3_errmsg(d.s->db));
        st = sq_fail(d.s, rc, "demo", errstr, errlen); /* rolls back */
        if (d.existed && d.order_failed && (rc & 0xff) == SQLITE_CONSTRAINT)
            st = sq_demo_shape(&d, why, errstr, errlen);
    } else if (st == OBX_OK) {
        d.s->host->log(d.s->host, OBX_LOG_INFO,
                       "sqlite %s: demo wrote %llu orders with their "
                       "OrderCreated events",
                       d.s->path, (unsigned long long)n);
    }
    sqlite3_finalize(d.order);
    sqlite3_finalize(d.event);
    return st;
}
