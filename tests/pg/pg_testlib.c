#include "pg_testlib.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "support.h"

const char *pgt_server_conninfo(void)
{
    static char buf[1024];
    if (buf[0])
        return buf;
    const char *path = PGT_STATE_DIR "/pg_conninfo";
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s is missing: the test PostgreSQL did not start (run the "
                 "tests through ctest, whose pg_server_start fixture starts "
                 "it, or run tests/pg/pg_start.sh %s)",
                 path, PGT_STATE_DIR);
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    if (!buf[0])
        fail_msg("%s is empty", path);
    return buf;
}

static PGconn *pgt_connect_to(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect '%s': %s", conninfo, PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

pgt *pgt_new(void)
{
    return pgt_new_on(pgt_server_conninfo());
}

pgt *pgt_new_on(const char *server)
{
    static unsigned counter;
    pgt *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->plugin = obx_test_plugin("store", "pg_poll");
    t->ops = t->plugin->ops;
    t->host = obx_test_host();
    snprintf(t->server, sizeof t->server, "%s", server);
    snprintf(t->schema, sizeof t->schema, "t%ld_%u", (long)getpid(), ++counter);
    snprintf(t->conninfo, sizeof t->conninfo,
             "%s options=-csearch_path=%s application_name=%s", t->server,
             t->schema, t->schema);
    PGconn *c = pgt_connect_to(t->server);
    pgt_exec_on(c, "DROP SCHEMA IF EXISTS %s CASCADE", t->schema);
    pgt_exec_on(c, "CREATE SCHEMA %s", t->schema);
    PQfinish(c);
    t->conf.conninfo = t->conninfo;
    t->conf.table = (char *)"outbox";
    t->conf.schema = (char *)"";
    t->conf.ack_mode = PGP_ACK_MARK;
    t->conf.lease_ms = 60000;
    t->conf.retention_ms = 7LL * 86400 * 1000;
    t->conf.create_schema = true;
    t->conf.listen = true;
    t->conf.notify_trigger = true;
    /* NOTIFY channels are per database: tests running in parallel would
     * wake each other on the default one (the table name) */
    t->conf.channel = t->schema;
    return t;
}

void pgt_free(pgt *t)
{
    if (t->db)
        PQfinish(t->db);
    /* A failed test may leave connections behind (an open transaction
     * holding locks): end every connection of this test first, so the
     * DROP cannot wait for them. */
    PGconn *c = pgt_connect_to(t->server);
    pgt_exec_on(c,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = '%s' AND pid <> "
                "pg_backend_pid()",
                t->schema);
    pgt_exec_on(c, "SET lock_timeout = '20s'");
    pgt_exec_on(c, "DROP SCHEMA IF EXISTS %s CASCADE", t->schema);
    PQfinish(c);
    free(t);
}

void *pgt_open(pgt *t, const pgp_config *conf)
{
    char err[OBX_ERRSTR_LEN] = "";
    void *inst = NULL;
    obx_status st =
        t->ops->open(t->host, conf ? conf : &t->conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    return inst;
}

PGconn *pgt_connect(pgt *t)
{
    return pgt_connect_to(t->conninfo);
}

PGconn *pgt_db(pgt *t)
{
    if (!t->db || PQstatus(t->db) != CONNECTION_OK) {
        if (t->db)
            PQfinish(t->db);
        t->db = pgt_connect(t);
    }
    return t->db;
}

static char *pgt_vfmt(const char *fmt, va_list ap)
{
    char *sql = NULL;
    if (vasprintf(&sql, fmt, ap) < 0)
        fail_msg("out of memory");
    return sql;
}

static void pgt_run(PGconn *c, char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    free(sql);
}

void pgt_exec_on(PGconn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    pgt_run(c, sql);
}

void pgt_exec(pgt *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    pgt_run(pgt_db(t), sql);
}

int64_t pgt_int(pgt *t, int64_t def, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = pgt_vfmt(fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(pgt_db(t), sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(t->db));
    int64_t v = def;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    free(sql);
    return v;
}

int64_t pgt_insert(pgt *t, const char *agg_id, const char *payload)
{
    const char *p[2] = {agg_id, payload};
    PGresult *r = PQexecParams(
        pgt_db(t),
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
        "payload) VALUES ('order', $1, 'OrderCreated', convert_to($2, "
        "'UTF8')) RETURNING id",
        2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("insert: %s", PQerrorMessage(t->db));
    int64_t id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return id;
}

size_t pgt_claim(pgt *t, void *inst, obx_event **out, size_t max)
{
    char err[OBX_ERRSTR_LEN] = "";
    size_t n = 99999;
    obx_status st = t->ops->claim(inst, out, max, &n, 0, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("claim: %s: %s", obx_status_name(st), err);
    assert_true(n <= max);
    return n;
}

void pgt_ack(pgt *t, void *inst, obx_event **evs, size_t n)
{
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st = t->ops->ack(inst, evs, n, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("ack: %s: %s", obx_status_name(st), err);
}

static void pgt_script(const char *script, const char *state_dir,
                       const char *arg)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/pg/%s' '%s' %s >&2",
             OBX_SOURCE_DIR, script, state_dir, arg);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
        fail_msg("%s failed (%d)", cmd, rc);
}

const char *pgt_server_start(const char *state_dir)
{
    static char buf[1024];
    pgt_script("pg_start.sh", state_dir, "");
    char path[4200];
    snprintf(path, sizeof path, "%s/pg_conninfo", state_dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(buf, sizeof buf, f))
        fail_msg("%s: no conninfo", path);
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

void pgt_server_restart(const char *state_dir, int down_s)
{
    char arg[16];
    snprintf(arg, sizeof arg, "%d", down_s);
    pgt_script("pg_restart.sh", state_dir, arg);
}

void pgt_server_stop(const char *state_dir)
{
    pgt_script("pg_stop.sh", state_dir, "");
}

int64_t pgt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t pgt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pgt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
