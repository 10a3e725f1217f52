#include "sqlite_testlib.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "support.h"

sqt *sqt_new(void)
{
    sqt *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->plugin = obx_test_plugin("store", "sqlite");
    t->ops = t->plugin->ops;
    t->host = obx_test_host();
    t->dir = obx_test_tmpdir();
    snprintf(t->path, sizeof t->path, "%s/outbox.db", t->dir);
    t->conf.path = t->path;
    t->conf.table = (char *)"outbox";
    t->conf.ack_mode = SQ_ACK_MARK;
    t->conf.lease_ms = 60000;
    t->conf.busy_timeout_ms = 5000;
    t->conf.retention_ms = 7LL * 86400 * 1000;
    t->conf.create_schema = true;
    return t;
}

void sqt_free(sqt *t)
{
    if (t->db)
        sqlite3_close(t->db);
    obx_test_rmtree(t->dir);
    free(t->dir);
    free(t);
}

void *sqt_open(sqt *t, const sq_config *conf)
{
    char err[OBX_ERRSTR_LEN] = "";
    void *inst = NULL;
    obx_status st =
        t->ops->open(t->host, conf ? conf : &t->conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    return inst;
}

sqlite3 *sqt_db(sqt *t)
{
    if (!t->db) {
        assert_int_equal(sqlite3_open(t->path, &t->db), SQLITE_OK);
        sqlite3_busy_timeout(t->db, 5000);
    }
    return t->db;
}

void sqt_exec(sqt *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (sqlite3_exec(sqt_db(t), sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_free(sql);
}

int64_t sqt_int(sqt *t, int64_t def, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(sqt_db(t), sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(t->db));
    int64_t v = def;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

int64_t sqt_insert(sqt *t, const char *agg_id, const char *payload)
{
    sqt_exec(t,
             "INSERT INTO outbox(aggregate_type, aggregate_id, event_type, "
             "payload) VALUES ('order', %Q, 'OrderCreated', %Q)",
             agg_id, payload);
    return sqlite3_last_insert_rowid(t->db);
}

size_t sqt_claim(sqt *t, void *inst, obx_event **out, size_t max)
{
    char err[OBX_ERRSTR_LEN] = "";
    size_t n = 99999;
    obx_status st = t->ops->claim(inst, out, max, &n, 0, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("claim: %s: %s", obx_status_name(st), err);
    assert_true(n <= max);
    return n;
}

void sqt_ack(sqt *t, void *inst, obx_event **evs, size_t n)
{
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st = t->ops->ack(inst, evs, n, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("ack: %s: %s", obx_status_name(st), err);
}

int64_t sqt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sqt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
