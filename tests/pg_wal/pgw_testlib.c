#include "pgw_testlib.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pgoutput.h"
#include "support.h"

const char *wt_server_conninfo(void)
{
    static char buf[1024];
    if (buf[0])
        return buf;
    const char *path = OBX_BUILD_DIR "/tests/pg/pg_conninfo";
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s is missing: the test PostgreSQL did not start (run the "
                 "tests through ctest, whose pg_server_start fixture starts "
                 "it)",
                 path);
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    if (!buf[0])
        fail_msg("%s is empty", path);
    return buf;
}

static PGconn *connect_to(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect '%s': %s", conninfo, PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static void run(PGconn *c, char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    free(sql);
}

static char *vfmt(const char *fmt, va_list ap)
{
    char *sql = NULL;
    if (vasprintf(&sql, fmt, ap) < 0)
        fail_msg("out of memory");
    return sql;
}

static void exec_on(PGconn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = vfmt(fmt, ap);
    va_end(ap);
    run(c, sql);
}

wt *wt_new(void)
{
    static unsigned counter;
    wt *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->plugin = obx_test_plugin("store", "pg_wal");
    t->ops = t->plugin->ops;
    t->host = obx_test_host();
    snprintf(t->server, sizeof t->server, "%s", wt_server_conninfo());
    snprintf(t->name, sizeof t->name, "w%ld_%u", (long)getpid(), ++counter);
    snprintf(t->conninfo, sizeof t->conninfo, "%s options=-csearch_path=%s",
             t->server, t->name);
    PGconn *c = connect_to(t->server);
    exec_on(c, "DROP SCHEMA IF EXISTS %s CASCADE", t->name);
    exec_on(c, "CREATE SCHEMA %s", t->name);
    PQfinish(c);
    pgw_config *k = &t->conf;
    k->conninfo = t->conninfo;
    k->table = (char *)"outbox";
    k->schema = t->name;
    k->publication = t->name;
    k->slot = t->name;
    k->message_prefix = (char *)"outbox";
    k->dead_table = (char *)"";
    k->source = PGW_SOURCE_TABLE;
    k->create_schema = true;
    k->create_slot = true;
    k->ack_mode = PGW_ACK_NONE;
    k->status_interval_ms = 1000;
    k->query_timeout_ms = 15000;
    k->max_buffered = 10000;
    return t;
}

void wt_free(wt *t)
{
    if (t->db)
        PQfinish(t->db);
    PGconn *c = connect_to(t->server);
    /* a walsender may take a moment to let go of the slot */
    for (int i = 0; i < 100; i++) {
        PGresult *r = PQexecParams(
            c,
            "SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE slot_name = $1 AND active_pid IS "
            "NULL",
            1, NULL, (const char *const[]){t->name}, NULL, NULL, 0);
        PQclear(r);
        PGresult *q = PQexecParams(
            c, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", 1,
            NULL, (const char *const[]){t->name}, NULL, NULL, 0);
        int left = PQntuples(q);
        PQclear(q);
        if (!left)
            break;
        wt_sleep_ms(50);
    }
    exec_on(c, "DROP PUBLICATION IF EXISTS %s", t->name);
    exec_on(c, "DROP SCHEMA IF EXISTS %s CASCADE", t->name);
    PQfinish(c);
    free(t);
}

obx_status wt_try_open(wt *t, const pgw_config *conf, void **inst, char *err,
                       size_t errlen)
{
    err[0] = '\0';
    *inst = NULL;
    return t->ops->open(t->host, conf ? conf : &t->conf, inst, err, errlen);
}

void *wt_open(wt *t, const pgw_config *conf)
{
    char err[OBX_ERRSTR_LEN];
    void *inst = NULL;
    obx_status st = wt_try_open(t, conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    return inst;
}

PGconn *wt_db(wt *t)
{
    if (!t->db || PQstatus(t->db) != CONNECTION_OK) {
        if (t->db)
            PQfinish(t->db);
        t->db = connect_to(t->conninfo);
    }
    return t->db;
}

void wt_exec(wt *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = vfmt(fmt, ap);
    va_end(ap);
    run(wt_db(t), sql);
}

int64_t wt_int(wt *t, int64_t def, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = vfmt(fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(wt_db(t), sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(t->db));
    int64_t v = def;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    free(sql);
    return v;
}

void wt_insert(wt *t, const char *agg_id, const char *type, const char *payload)
{
    const char *p[3] = {agg_id, type, payload};
    PGresult *r = PQexecParams(
        wt_db(t),
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
        "payload) VALUES ('order', $1, $2, convert_to($3, 'UTF8'))",
        3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("insert: %s", PQerrorMessage(t->db));
    PQclear(r);
}

size_t wt_claim(wt *t, void *inst, obx_event **out, size_t max, size_t want,
                int wait_ms)
{
    size_t got = 0;
    int64_t end = wt_mono_ms() + wait_ms;
    do {
        char err[OBX_ERRSTR_LEN] = "";
        size_t n = 0;
        obx_status st =
            t->ops->claim(inst, out + got, max - got, &n, 50, err, sizeof err);
        if (st != OBX_OK)
            fail_msg("claim: %s: %s", obx_status_name(st), err);
        got += n;
    } while (got < want && got < max && wt_mono_ms() < end);
    return got;
}

void wt_ack(wt *t, void *inst, obx_event **evs, size_t n)
{
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st = t->ops->ack(inst, evs, n, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("ack: %s: %s", obx_status_name(st), err);
}

static uint64_t lsn_query(wt *t, const char *sql)
{
    PGresult *r = PQexecParams(wt_db(t), sql, 1, NULL,
                               (const char *const[]){t->name}, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(t->db));
    uint64_t v = 0;
    if (PQntuples(r) != 1 || !pgo_lsn_parse(PQgetvalue(r, 0, 0), &v))
        fail_msg("%s: no LSN", sql);
    PQclear(r);
    return v;
}

uint64_t wt_confirmed(wt *t)
{
    return lsn_query(t, "SELECT confirmed_flush_lsn::text FROM "
                        "pg_replication_slots WHERE slot_name = $1");
}

uint64_t wt_current_lsn(wt *t)
{
    return lsn_query(
        t, "SELECT pg_current_wal_insert_lsn()::text WHERE $1::text IS NOT "
           "NULL");
}

int64_t wt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
