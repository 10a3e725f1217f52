/* See drain_common.h. */
#include "drain_common.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#ifndef OBX_BUILD_DIR
#error "OBX_BUILD_DIR must name the build tree (outbox-relay, plugins/)"
#endif
#define RELAY OBX_BUILD_DIR "/outbox-relay"

extern char **environ;

double drain_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void drain_die(const drain_bench *b, const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", b->name, what, why);
    exit(1);
}

void drain_payload(char *buf, long seq)
{
    int len = snprintf(buf, DRAIN_PAYLOAD + 1, "{\"seq\":%ld,\"pad\":\"", seq);
    memset(buf + len, 'x', (size_t)(DRAIN_PAYLOAD - len - 2));
    memcpy(buf + DRAIN_PAYLOAD - 2, "\"}", 2);
    buf[DRAIN_PAYLOAD] = '\0';
}

void drain_make_dir(drain_bench *b)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/%s-XXXXXX", b->name);
    if (!mkdtemp(b->dir))
        drain_die(b, "mkdtemp", strerror(errno));
}

void drain_remove_dir(drain_bench *b)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "%s: could not remove %s\n", b->name, b->dir);
}

static int run(const drain_bench *b, char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        drain_die(b, argv[0], strerror(rc));
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* `outbox-relay schema STORE -c CONF`: the DDL for that config. */
static char *relay_schema(drain_bench *b, const char *store, const char *conf)
{
    char path[512];
    snprintf(path, sizeof path, "%s/schema.sql", b->dir);
    char *argv[] = {RELAY, "schema", (char *)store, "-c", (char *)conf, NULL};
    if (run(b, argv, path) != 0)
        drain_die(b, "outbox-relay schema", store);
    FILE *f = fopen(path, "r");
    static char ddl[65536];
    size_t len = f ? fread(ddl, 1, sizeof ddl - 1, f) : 0;
    if (f)
        fclose(f);
    ddl[len] = '\0';
    return ddl;
}

static void sql(drain_bench *b, sqlite3 *db, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        drain_die(b, q, err ? err : "?");
}

static void sqlite_path(const drain_bench *b, char *buf, size_t len)
{
    snprintf(buf, len, "%s/outbox.db", b->dir);
}

static void sqlite_fill(drain_bench *b, const char *conf)
{
    char db_path[512];
    sqlite_path(b, db_path, sizeof db_path);
    unlink(db_path);
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        drain_die(b, db_path, sqlite3_errmsg(db));
    sql(b, db, relay_schema(b, "sqlite", conf));
    sql(b, db, "BEGIN");
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO outbox (aggregate_type, aggregate_id, "
                       "event_type, payload) VALUES ('order', ?, "
                       "'OrderCreated', ?)",
                       -1, &st, NULL);
    char key[32], val[DRAIN_PAYLOAD + 1];
    for (long i = 0; i < b->n; i++) {
        snprintf(key, sizeof key, "o%ld", i % b->keys);
        drain_payload(val, i);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, val, DRAIN_PAYLOAD, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            drain_die(b, "insert", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sql(b, db, "COMMIT");
    sqlite3_close(db);
}

static long sqlite_published(const drain_bench *b)
{
    char db_path[512];
    sqlite_path(b, db_path, sizeof db_path);
    sqlite3 *db;
    sqlite3_stmt *st;
    long n = -1;
    if (sqlite3_open(db_path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM outbox WHERE published_at "
                           "IS NOT NULL",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void pg_exec(drain_bench *b, const char *q)
{
    PGresult *r = PQexec(b->pg, q);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        drain_die(b, q, PQerrorMessage(b->pg));
    PQclear(r);
}

void drain_pg_connect(drain_bench *b, const char *prefix)
{
    b->pg = PQconnectdb(b->pg_conninfo);
    if (PQstatus(b->pg) != CONNECTION_OK)
        drain_die(b, "PostgreSQL", PQerrorMessage(b->pg));
    /* the DDL's IF NOT EXISTS notices are noise here */
    pg_exec(b, "SET client_min_messages = warning");
    snprintf(b->pg_schema, sizeof b->pg_schema, "%s_%ld", prefix,
             (long)getpid());
}

void drain_pg_disconnect(drain_bench *b)
{
    char q[128];
    snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS %s CASCADE", b->pg_schema);
    pg_exec(b, q);
    PQfinish(b->pg);
    b->pg = NULL;
}

/* The same rows as sqlite_fill, written server-side in one statement,
 * into the relay's own DDL; then VACUUM ANALYZE, as autovacuum would have
 * done by the time a relay catches up with a backlog this size. */
static void pg_fill(drain_bench *b, const char *conf)
{
    char q[1024];
    pg_exec(b, relay_schema(b, "pg_poll", conf)); /* IF NOT EXISTS */
    snprintf(q, sizeof q, "SET search_path = %s", b->pg_schema);
    pg_exec(b, q);
    pg_exec(b, "TRUNCATE outbox");
    snprintf(q, sizeof q,
             "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
             "payload) SELECT 'order', 'o' || (g %% %d), 'OrderCreated', "
             "convert_to(rpad('{\"seq\":' || g || ',\"pad\":\"', %d, 'x') "
             "|| '\"}', 'UTF8') FROM generate_series(0, %ld) g",
             b->keys, DRAIN_PAYLOAD - 2, b->n - 1);
    pg_exec(b, q);
    pg_exec(b, "VACUUM ANALYZE outbox");
}

static long pg_published(drain_bench *b)
{
    PGresult *r = PQexec(b->pg, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL");
    long n = PQresultStatus(r) == PGRES_TUPLES_OK
                 ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
                 : -1;
    PQclear(r);
    return n;
}

static bool is_pg(const char *store)
{
    return strcmp(store, "pg_poll") == 0;
}

static void write_conf(drain_bench *b, const char *conf, const char *store,
                       const char *broker, const char *keys)
{
    char db_path[512], store_keys[2048];
    sqlite_path(b, db_path, sizeof db_path);
    if (is_pg(store))
        snprintf(store_keys, sizeof store_keys,
                 "store.conninfo = %s\nstore.schema = %s", b->pg_conninfo,
                 b->pg_schema);
    else
        snprintf(store_keys, sizeof store_keys, "store.path = %s", db_path);
    FILE *f = fopen(conf, "w");
    if (!f)
        drain_die(b, conf, strerror(errno));
    fprintf(f,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = %s/plugins\n"
            "[pipeline bench]\nstore = %s\nbroker = %s\n%s\n"
            "batch_size = %ld\n%s\n",
            OBX_BUILD_DIR, store, broker, store_keys, b->batch, keys);
    fclose(f);
}

double drain_relay_run(drain_bench *b, const char *store, const char *broker,
                       const char *broker_keys)
{
    char conf[512], out[512];
    snprintf(conf, sizeof conf, "%s/relay.conf", b->dir);
    snprintf(out, sizeof out, "%s/relay.out", b->dir);
    write_conf(b, conf, store, broker, broker_keys);
    if (is_pg(store))
        pg_fill(b, conf);
    else
        sqlite_fill(b, conf);
    char *argv[] = {RELAY, "run", "-c", conf, "--once", NULL};
    double t0 = drain_now_s();
    int rc = run(b, argv, out);
    double secs = drain_now_s() - t0;
    if (rc != 0)
        drain_die(b, "outbox-relay run --once", "non-zero exit");
    if ((is_pg(store) ? pg_published(b) : sqlite_published(b)) != b->n)
        drain_die(b, broker, "not every event was published");
    return (double)b->n / secs;
}
