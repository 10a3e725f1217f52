/* nats_drain: the relay's sqlite -> nats and pg_wal -> nats drain rates
 * next to the raw JetStream async publish rate of cnats, in one run,
 * against one nats-server with JetStream.
 *
 *   nats_drain [-n EVENTS] [-b BATCH] [-k KEYS] [-w WINDOW] -s NATS_URL
 *              [-d PG_CONNINFO]
 *
 * bench/nats_drain.sh starts a private nats-server (tests/nats/
 * nats_start.sh) and PostgreSQL (tests/pg/pg_start.sh), runs this and
 * stops both. Without a conninfo (-d, or OBX_BENCH_PG) the pg_wal steps
 * are skipped (and say so); the server comes from -s or OBX_BENCH_NATS.
 *
 * Measures, with 256-byte payloads, the plugin's five headers
 * (Nats-Msg-Id and the outbox-* ones), keys, and file-storage streams:
 *  1. raw stream:  js_PublishMsgAsync of all EVENTS with at most WINDOW
 *                  (the plugin's max_in_flight default, 4096) without a
 *                  PubAck, then wait for every PubAck (cnats' ceiling);
 *  2. raw batches: publish BATCH, wait for every PubAck, repeat (the
 *                  ceiling of a synchronous publish(batch) call);
 *  3. relay:       `outbox-relay run --once` draining a pre-filled sqlite
 *                  backlog of EVENTS to nats (batch_size = BATCH);
 *  4. reference:   the same drain to the stdout broker writing /dev/null,
 *                  i.e. the store and engine without nats;
 *  5, 6.           3 and 4 with a pg_wal backlog of EVENTS (the relay's
 *                  slot created first, as a DBA would, the rows committed
 *                  in transactions of 100 while nobody streams).
 * and prints events/s of each and relay / min(raw publish, store +
 * engine) per store (DESIGN section 9 asks for >= 0.8).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <nats/nats.h>
#include <sqlite3.h>

#ifndef OBX_BUILD_DIR
#error "OBX_BUILD_DIR must name the build tree (outbox-relay, plugins/)"
#endif
#define RELAY OBX_BUILD_DIR "/outbox-relay"
#define PAYLOAD 256

extern char **environ;

typedef struct bench {
    long n, batch, window;
    int keys;
    char dir[256];
    const char *url;
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long acked, failed, inflight; /* current raw run, under mu */
    const char *pg_conninfo;
    PGconn *pg;
    char pg_name[64];
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "nats_drain: %s: %s\n", what, why);
    exit(1);
}

/* ---- the server ------------------------------------------------------- */

static void on_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae,
                   void *closure)
{
    (void)js;
    (void)pa;
    bench *b = closure;
    pthread_mutex_lock(&b->mu);
    if (pae)
        b->failed++;
    else
        b->acked++;
    b->inflight--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(m); /* the handler owns it */
}

static void stream(bench *b, const char *name, const char *subject)
{
    js_DeleteStream(b->js, name, NULL, NULL);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[] = {subject};
    sc.Name = name;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 120 * 1000000000LL;
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    if (js_AddStream(&si, b->js, &sc, NULL, &code) != NATS_OK)
        die("add stream", name);
    jsStreamInfo_Destroy(si);
}

static void connect_nats(bench *b)
{
    if (natsConnection_ConnectTo(&b->nc, b->url) != NATS_OK)
        die("connect", b->url);
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 10000;
    o.PublishAsync.AckHandler = on_ack;
    o.PublishAsync.AckHandlerClosure = b;
    o.PublishAsync.MaxPending = 2 * b->window + 16;
    if (natsConnection_JetStream(&b->js, b->nc, &o) != NATS_OK)
        die("jetstream", "no context");
    stream(b, "RAW", "raw.>");
    stream(b, "OUT", "outbox.>");
}

/* ---- raw publish ------------------------------------------------------ */

static void payload(char *buf, long seq)
{
    int len = snprintf(buf, PAYLOAD + 1, "{\"seq\":%ld,\"pad\":\"", seq);
    memset(buf + len, 'x', (size_t)(PAYLOAD - len - 2));
    memcpy(buf + PAYLOAD - 2, "\"}", 2);
}

/* One message as the plugin sends it: subject, payload, five headers. */
static void publish_one(bench *b, const char *subject, int run, long seq)
{
    char key[32], id[48], val[PAYLOAD + 1];
    snprintf(key, sizeof key, "o%ld", seq % b->keys);
    snprintf(id, sizeof id, "r%d-%ld", run, seq);
    payload(val, seq);
    natsMsg *m = NULL;
    natsMsg_Create(&m, subject, NULL, val, PAYLOAD);
    natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    natsMsgHeader_Set(m, "outbox-event-id", id);
    natsMsgHeader_Set(m, "outbox-event-type", "OrderCreated");
    natsMsgHeader_Set(m, "outbox-aggregate-type", "order");
    natsMsgHeader_Set(m, "outbox-aggregate-id", key);
    pthread_mutex_lock(&b->mu);
    while (b->inflight >= b->window)
        pthread_cond_wait(&b->cv, &b->mu);
    b->inflight++;
    pthread_mutex_unlock(&b->mu);
    natsStatus s = js_PublishMsgAsync(b->js, &m, NULL);
    natsMsg_Destroy(m);
    if (s != NATS_OK)
        die("publish", natsStatus_GetText(s));
}

static void wait_acks(bench *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->inflight > 0)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

/* Events per second; every message must be acknowledged. */
static double raw_run(bench *b, int run, long per_call)
{
    js_PurgeStream(b->js, "RAW", NULL, NULL);
    b->acked = b->failed = 0;
    double t0 = now_s();
    for (long done = 0; done < b->n;) {
        long end = done + per_call < b->n ? done + per_call : b->n;
        for (; done < end; done++)
            publish_one(b, "raw.order", run, done);
        wait_acks(b);
    }
    double secs = now_s() - t0;
    if (b->acked != b->n || b->failed)
        die("raw", "not every message was acknowledged");
    return (double)b->n / secs;
}

/* ---- the relay -------------------------------------------------------- */

static int run(char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die(argv[0], strerror(rc));
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *relay_schema(bench *b, const char *store, const char *conf)
{
    char path[512];
    snprintf(path, sizeof path, "%s/schema.sql", b->dir);
    char *argv[] = {RELAY, "schema", (char *)store, "-c", (char *)conf, NULL};
    if (run(argv, path) != 0)
        die("outbox-relay schema", store);
    FILE *f = fopen(path, "r");
    static char ddl[65536];
    size_t len = f ? fread(ddl, 1, sizeof ddl - 1, f) : 0;
    if (f)
        fclose(f);
    ddl[len] = '\0';
    return ddl;
}

static void sql(sqlite3 *db, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        die(q, err ? err : "?");
}

static void sqlite_path(bench *b, char *buf, size_t len)
{
    snprintf(buf, len, "%s/outbox.db", b->dir);
}

static void sqlite_fill(bench *b, const char *conf)
{
    char db_path[512];
    sqlite_path(b, db_path, sizeof db_path);
    unlink(db_path);
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        die(db_path, sqlite3_errmsg(db));
    sql(db, relay_schema(b, "sqlite", conf));
    sql(db, "BEGIN");
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO outbox (aggregate_type, aggregate_id, "
                       "event_type, payload) VALUES ('order', ?, "
                       "'OrderCreated', ?)",
                       -1, &st, NULL);
    char key[32], val[PAYLOAD + 1];
    for (long i = 0; i < b->n; i++) {
        snprintf(key, sizeof key, "o%ld", i % b->keys);
        payload(val, i);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, val, PAYLOAD, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sql(db, "COMMIT");
    sqlite3_close(db);
}

static long sqlite_published(bench *b)
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

/* ---- pg_wal backlog --------------------------------------------------- */

static void pg_exec(bench *b, const char *q)
{
    PGresult *r = PQexec(b->pg, q);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die(q, PQerrorMessage(b->pg));
    PQclear(r);
}

static void pg_drop(bench *b)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT pg_drop_replication_slot(slot_name) FROM "
             "pg_replication_slots WHERE slot_name = '%s'",
             b->pg_name);
    pg_exec(b, q);
    snprintf(q, sizeof q, "DROP PUBLICATION IF EXISTS %s", b->pg_name);
    pg_exec(b, q);
    snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS %s CASCADE", b->pg_name);
    pg_exec(b, q);
}

/* The relay's DDL (table, publication, slot), then the backlog in
 * transactions of 100, committed while nobody streams. */
static void pg_fill(bench *b, const char *conf)
{
    char q[1400];
    pg_drop(b);
    snprintf(q, sizeof q, "CREATE SCHEMA %s", b->pg_name);
    pg_exec(b, q);
    snprintf(q, sizeof q, "SET search_path = %s", b->pg_name);
    pg_exec(b, q);
    /* One statement at a time: the slot cannot be created in the
     * implicit transaction of a multi-statement PQexec. */
    char *ddl = relay_schema(b, "pg_wal", conf), *save = NULL;
    for (char *st = strtok_r(ddl, ";", &save); st;
         st = strtok_r(NULL, ";", &save))
        if (strspn(st, " \t\r\n") < strlen(st))
            pg_exec(b, st);
    snprintf(q, sizeof q,
             "DO $$ BEGIN FOR t IN 0..%ld LOOP "
             "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, "
             "payload) SELECT 'order', 'o' || (g %% %d), 'OrderCreated', "
             "convert_to(rpad('{\"seq\":' || g || ',\"pad\":\"', %d, 'x') "
             "|| '\"}', 'UTF8') FROM generate_series(t * 100, t * 100 + 99) "
             "g; COMMIT; END LOOP; END $$",
             b->n / 100 - 1, b->keys, PAYLOAD - 2);
    pg_exec(b, q);
}

/* Whether the slot confirmed everything written so far. */
static bool pg_drained(bench *b)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT confirmed_flush_lsn >= pg_current_wal_insert_lsn() - 4096 "
             "FROM pg_replication_slots WHERE slot_name = '%s'",
             b->pg_name);
    PGresult *r = PQexec(b->pg, q);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return ok;
}

/* ---- drains ----------------------------------------------------------- */

static bool is_pg(const char *store)
{
    return strcmp(store, "pg_wal") == 0;
}

static void write_conf(bench *b, const char *conf, const char *store,
                       const char *broker, const char *keys)
{
    char db_path[512], store_keys[2048];
    sqlite_path(b, db_path, sizeof db_path);
    if (is_pg(store))
        snprintf(store_keys, sizeof store_keys,
                 "store.conninfo = %s\nstore.schema = %s\nstore.slot = %s\n"
                 "store.publication = %s",
                 b->pg_conninfo, b->pg_name, b->pg_name, b->pg_name);
    else
        snprintf(store_keys, sizeof store_keys, "store.path = %s", db_path);
    FILE *f = fopen(conf, "w");
    if (!f)
        die(conf, strerror(errno));
    fprintf(f,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = %s/plugins\n"
            "[pipeline bench]\nstore = %s\nbroker = %s\n%s\n"
            "batch_size = %ld\n%s\n",
            OBX_BUILD_DIR, store, broker, store_keys, b->batch, keys);
    fclose(f);
}

static double relay_run(bench *b, const char *store, const char *broker,
                        const char *keys)
{
    char conf[512], out[512];
    snprintf(conf, sizeof conf, "%s/relay.conf", b->dir);
    snprintf(out, sizeof out, "%s/relay.out", b->dir);
    write_conf(b, conf, store, broker, keys);
    if (is_pg(store))
        pg_fill(b, conf);
    else
        sqlite_fill(b, conf);
    js_PurgeStream(b->js, "OUT", NULL, NULL);
    char *argv[] = {RELAY, "run", "-c", conf, "--once", NULL};
    double t0 = now_s();
    int rc = run(argv, out);
    double secs = now_s() - t0;
    if (rc != 0)
        die("outbox-relay run --once", "non-zero exit");
    if (is_pg(store) ? !pg_drained(b) : sqlite_published(b) != b->n)
        die(broker, "not every event was published");
    if (strcmp(broker, "nats") == 0) {
        jsStreamInfo *si = NULL;
        if (js_GetStreamInfo(&si, b->js, "OUT", NULL, NULL) != NATS_OK ||
            (long)si->State.Msgs != b->n)
            die("stream OUT", "does not hold every event");
        jsStreamInfo_Destroy(si);
    }
    return (double)b->n / secs;
}

typedef struct drain {
    double nats; /* relay STORE -> nats */
    double ref;  /* relay STORE -> /dev/null: store + engine */
} drain;

static drain measure(bench *b, const char *store)
{
    char keys[700];
    snprintf(keys, sizeof keys,
             "broker.servers = %s\nbroker.stream = OUT\n"
             "broker.subjects = outbox.>\nbroker.max_in_flight = %ld",
             b->url, b->window);
    drain d;
    d.nats = relay_run(b, store, "nats", keys);
    printf("relay %-6s -> nats      %10.0f events/s\n", store, d.nats);
    d.ref = relay_run(b, store, "stdout", "broker.output = /dev/null");
    printf("relay %-6s -> /dev/null %10.0f events/s (store + engine)\n", store,
           d.ref);
    return d;
}

static void ratios(const char *store, drain d, double raw)
{
    double floor = raw < d.ref ? raw : d.ref;
    printf("%-6s relay / raw publish                   = %.2f\n", store,
           d.nats / raw);
    printf("%-6s relay / min(raw publish, store+engine) = %.2f (target >= "
           "0.80)\n",
           store, d.nats / floor);
}

static void parse(bench *b, int argc, char **argv)
{
    int opt;
    b->pg_conninfo = getenv("OBX_BENCH_PG");
    b->url = getenv("OBX_BENCH_NATS");
    while ((opt = getopt(argc, argv, "n:b:k:w:d:s:")) != -1) {
        if (opt == 'd' || opt == 's') {
            *(opt == 'd' ? &b->pg_conninfo : &b->url) = optarg;
            continue;
        }
        long v = opt == '?' ? 0 : atol(optarg);
        if (opt == '?')
            die("usage", "nats_drain [-n EVENTS] [-b BATCH] [-k KEYS] "
                         "[-w WINDOW] -s NATS_URL [-d PG_CONNINFO]");
        if (v < 1)
            die("option", "values must be positive");
        if (opt == 'n')
            b->n = v;
        else if (opt == 'b')
            b->batch = v;
        else if (opt == 'k')
            b->keys = (int)v;
        else
            b->window = v;
    }
    if (!b->url || !*b->url)
        die("usage", "no server: -s NATS_URL, OBX_BENCH_NATS or "
                     "bench/nats_drain.sh");
    if (b->pg_conninfo && !b->pg_conninfo[0])
        b->pg_conninfo = NULL;
    b->n -= b->n % 100; /* pg_wal writes transactions of 100 */
}

int main(int argc, char **argv)
{
    bench b = {.n = 200000, .batch = 1000, .keys = 1000, .window = 4096};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    parse(&b, argc, argv);
    snprintf(b.dir, sizeof b.dir, "/tmp/nats-drain-XXXXXX");
    if (!mkdtemp(b.dir))
        die("mkdtemp", strerror(errno));
    if (b.pg_conninfo) {
        b.pg = PQconnectdb(b.pg_conninfo);
        if (PQstatus(b.pg) != CONNECTION_OK)
            die("PostgreSQL", PQerrorMessage(b.pg));
        pg_exec(&b, "SET client_min_messages = warning");
        snprintf(b.pg_name, sizeof b.pg_name, "nats_drain_%ld", (long)getpid());
    }
    connect_nats(&b);
    printf("nats_drain: %ld events of %d bytes, %d keys, batch %ld, window "
           "%ld, cnats %s, %s\n",
           b.n, PAYLOAD, b.keys, b.batch, b.window, nats_GetVersion(), b.url);
    double streamed = raw_run(&b, 1, b.n);
    printf("%-27s%10.0f events/s\n", "raw js publish, stream", streamed);
    double batches = raw_run(&b, 2, b.batch);
    printf("%-27s%10.0f events/s\n", "raw js publish, batches", batches);
    drain lite = measure(&b, "sqlite");
    drain pg = {0, 0};
    if (b.pg)
        pg = measure(&b, "pg_wal");
    else
        printf("relay pg_wal: skipped, no PostgreSQL (-d CONNINFO, "
               "OBX_BENCH_PG, or bench/nats_drain.sh)\n");
    double raw = streamed > batches ? streamed : batches;
    ratios("sqlite", lite, raw);
    if (b.pg) {
        ratios("pg_wal", pg, raw);
        pg_drop(&b);
        PQfinish(b.pg);
    }
    js_DeleteStream(b.js, "RAW", NULL, NULL);
    js_DeleteStream(b.js, "OUT", NULL, NULL);
    jsCtx_Destroy(b.js);
    natsConnection_Destroy(b.nc);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "nats_drain: could not remove %s\n", b.dir);
    return 0;
}
