/* kafka_drain: the relay's sqlite -> kafka and pg_poll -> kafka drain
 * rates next to the raw librdkafka producer rate, in one run, against one
 * librdkafka mock cluster (rdkafka_mock.h, in this process; not an Apache
 * Kafka broker).
 *
 *   kafka_drain [-n EVENTS] [-b BATCH] [-k KEYS] [-p PARTITIONS]
 *               [-d PG_CONNINFO]
 *
 * pg_poll needs a PostgreSQL: -d CONNINFO, or OBX_BENCH_PG in the
 * environment; bench/kafka_drain.sh starts a private one with
 * tests/pg/pg_start.sh, runs this and stops it again. The backlog lives in
 * a schema of its own (kafka_drain_<pid>), dropped at the end. Without a
 * conninfo the pg_poll steps are skipped (and say so).
 *
 * Measures, with the plugin's producer settings (enable.idempotence, acks
 * all, murmur2_random, librdkafka's default linger.ms and batch sizes),
 * 256-byte payloads, the same four outbox-* headers and keys:
 *  1. raw stream:  produce all EVENTS as fast as librdkafka takes them,
 *                  then flush (librdkafka's ceiling);
 *  2. raw batches: produce BATCH, wait for every delivery report, repeat
 *                  (the ceiling for a synchronous publish(batch) call);
 *  3. relay:       `outbox-relay run --once` draining a pre-filled sqlite
 *                  backlog of EVENTS to kafka (batch_size = BATCH);
 *  4. reference:   the same drain to the stdout broker writing /dev/null,
 *                  i.e. the store and engine without kafka;
 *  5, 6.           3 and 4 with a pg_poll backlog of EVENTS (the same
 *                  rows, written with INSERT ... SELECT, then VACUUM
 *                  ANALYZE as autovacuum would have by the time a relay
 *                  catches up after an outage).
 * and prints events/s of each, relay / raw producer, and relay / min(raw
 * producer, store + engine) per store (the target is >= 0.8
 * of the smaller ceiling).
 *
 * The mock accepts connections without TCP_NODELAY; tests/kafka/
 * mock_nodelay.c (linked in) sets it, as Apache Kafka does, or every
 * synchronous batch would wait ~40 ms for a delayed ACK.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sqlite3.h>

#ifndef OBX_BUILD_DIR
#error "OBX_BUILD_DIR must name the build tree (outbox-relay, plugins/)"
#endif
#define RELAY OBX_BUILD_DIR "/outbox-relay"
#define PAYLOAD 256

extern char **environ;

typedef struct bench {
    long n;
    long batch;
    int keys;
    int partitions;
    char dir[256];
    char bootstraps[512];
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mock;
    long delivered; /* delivery reports without error, current run */
    long failed;
    const char *pg_conninfo; /* NULL: no PostgreSQL, pg_poll skipped */
    PGconn *pg;
    char pg_schema[64];
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "kafka_drain: %s: %s\n", what, why);
    exit(1);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "kafka_drain: librdkafka %s: %s\n", fac, buf);
}

/* ---- the mock cluster ------------------------------------------------- */

static void start_mock(bench *b)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(c, quiet_log);
    b->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!b->mock_rk)
        die("mock handle", err);
    b->mock = rd_kafka_mock_cluster_new(b->mock_rk, 3);
    if (!b->mock)
        die("mock cluster", "cannot create");
    const char *topics[] = {"raw.stream", "raw.batches", "outbox.order"};
    for (size_t i = 0; i < 3; i++)
        if (rd_kafka_mock_topic_create(b->mock, topics[i], b->partitions, 1))
            die("mock topic", topics[i]);
    snprintf(b->bootstraps, sizeof b->bootstraps, "%s",
             rd_kafka_mock_cluster_bootstraps(b->mock));
}

/* ---- raw producer ----------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    bench *b = opaque;
    if (m->err)
        b->failed++;
    else
        b->delivered++;
}

/* The plugin's defaults (brokers/kafka/kafka_conf.c), nothing else. */
static rd_kafka_t *producer(bench *b)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *props[][2] = {{"bootstrap.servers", b->bootstraps},
                              {"enable.idempotence", "true"},
                              {"acks", "all"},
                              {"partitioner", "murmur2_random"},
                              {"client.id", "kafka_drain"}};
    for (size_t i = 0; i < sizeof props / sizeof *props; i++)
        if (rd_kafka_conf_set(c, props[i][0], props[i][1], err, sizeof err))
            die(props[i][0], err);
    rd_kafka_conf_set_opaque(c, b);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_log_cb(c, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk)
        die("producer", err);
    return rk;
}

static void payload(char *buf, long seq)
{
    int len = snprintf(buf, PAYLOAD + 1, "{\"seq\":%ld,\"pad\":\"", seq);
    memset(buf + len, 'x', (size_t)(PAYLOAD - len - 2));
    memcpy(buf + PAYLOAD - 2, "\"}", 2);
}

/* One message as the plugin sends it: key, payload, four headers. */
static void produce_one(rd_kafka_t *rk, const char *topic, long seq, int keys)
{
    char key[32], id[32], val[PAYLOAD + 1];
    snprintf(key, sizeof key, "o%ld", seq % keys);
    snprintf(id, sizeof id, "e%ld", seq);
    payload(val, seq);
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        rd_kafka_header_add(h, "outbox-event-id", -1, id, -1);
        rd_kafka_header_add(h, "outbox-event-type", -1, "OrderCreated", -1);
        rd_kafka_header_add(h, "outbox-aggregate-type", -1, "order", -1);
        rd_kafka_header_add(h, "outbox-aggregate-id", -1, key, -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, PAYLOAD),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_END);
        if (!err)
            return;
        rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            die("produce", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 1);
    }
}

/* Events per second; every message must be confirmed. */
static double raw_run(bench *b, const char *topic, long per_call)
{
    rd_kafka_t *rk = producer(b);
    produce_one(rk, topic, 0, b->keys); /* connect, PID, metadata */
    rd_kafka_flush(rk, 10000);
    b->delivered = b->failed = 0;
    double t0 = now_s();
    for (long done = 0; done < b->n;) {
        long end = done + per_call < b->n ? done + per_call : b->n;
        for (; done < end; done++)
            produce_one(rk, topic, done, b->keys);
        if (rd_kafka_flush(rk, 60000))
            die(topic, "flush timed out");
    }
    double secs = now_s() - t0;
    rd_kafka_destroy(rk);
    if (b->delivered != b->n || b->failed)
        die(topic, "not every message was confirmed");
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

/* `outbox-relay schema STORE -c CONF`: the DDL for that config. */
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

/* ---- sqlite backlog --------------------------------------------------- */

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

/* A fresh outbox of b->n events: the relay's schema, plain INSERTs. */
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

/* ---- pg_poll backlog -------------------------------------------------- */

static void pg_exec(bench *b, const char *q)
{
    PGresult *r = PQexec(b->pg, q);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die(q, PQerrorMessage(b->pg));
    PQclear(r);
}

static void pg_connect(bench *b)
{
    b->pg = PQconnectdb(b->pg_conninfo);
    if (PQstatus(b->pg) != CONNECTION_OK)
        die("PostgreSQL", PQerrorMessage(b->pg));
    /* the DDL's IF NOT EXISTS notices are noise here */
    pg_exec(b, "SET client_min_messages = warning");
    snprintf(b->pg_schema, sizeof b->pg_schema, "kafka_drain_%ld",
             (long)getpid());
}

static void pg_disconnect(bench *b)
{
    char q[128];
    snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS %s CASCADE", b->pg_schema);
    pg_exec(b, q);
    PQfinish(b->pg);
}

/* The same rows as sqlite_fill, written server-side in one statement (a
 * client-side loop would only measure the bench), into the relay's own
 * DDL; then VACUUM ANALYZE, as autovacuum would have done by the time a
 * relay catches up with a backlog this size. */
static void pg_fill(bench *b, const char *conf)
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
             b->keys, PAYLOAD - 2, b->n - 1);
    pg_exec(b, q);
    pg_exec(b, "VACUUM ANALYZE outbox");
}

static long pg_published(bench *b)
{
    PGresult *r = PQexec(b->pg, "SELECT count(*) FROM outbox WHERE "
                                "published_at IS NOT NULL");
    long n = PQresultStatus(r) == PGRES_TUPLES_OK
                 ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
                 : -1;
    PQclear(r);
    return n;
}

/* ---- drains ----------------------------------------------------------- */

static bool is_pg(const char *store)
{
    return strcmp(store, "pg_poll") == 0;
}

static void write_conf(bench *b, const char *conf, const char *store,
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
        die(conf, strerror(errno));
    fprintf(f,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = %s/plugins\n"
            "[pipeline bench]\nstore = %s\nbroker = %s\n%s\n"
            "batch_size = %ld\n%s\n",
            OBX_BUILD_DIR, store, broker, store_keys, b->batch, keys);
    fclose(f);
}

/* Drain a fresh backlog of `store` with `broker` and its keys; events per
 * second. */
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
    char *argv[] = {RELAY, "run", "-c", conf, "--once", NULL};
    double t0 = now_s();
    int rc = run(argv, out);
    double secs = now_s() - t0;
    if (rc != 0)
        die("outbox-relay run --once", "non-zero exit");
    if ((is_pg(store) ? pg_published(b) : sqlite_published(b)) != b->n)
        die(broker, "not every event was published");
    return (double)b->n / secs;
}

typedef struct drain {
    double kafka; /* relay STORE -> kafka */
    double ref;   /* relay STORE -> /dev/null: store + engine */
} drain;

static drain measure(bench *b, const char *store)
{
    char keys[700];
    snprintf(keys, sizeof keys, "broker.brokers = %s", b->bootstraps);
    drain d;
    d.kafka = relay_run(b, store, "kafka", keys);
    printf("relay %-7s -> kafka     %10.0f events/s\n", store, d.kafka);
    d.ref = relay_run(b, store, "stdout", "broker.output = /dev/null");
    printf("relay %-7s -> /dev/null %10.0f events/s (store + engine)\n", store,
           d.ref);
    return d;
}

static void ratios(const char *store, drain d, double raw)
{
    double floor = raw < d.ref ? raw : d.ref;
    printf("%-7s relay / raw producer (best of both)     = %.2f\n", store,
           d.kafka / raw);
    printf("%-7s relay / min(raw producer, store+engine) = %.2f (target >= "
           "0.80)\n",
           store, d.kafka / floor);
}

static void parse(bench *b, int argc, char **argv)
{
    int opt;
    b->pg_conninfo = getenv("OBX_BENCH_PG");
    while ((opt = getopt(argc, argv, "n:b:k:p:d:")) != -1) {
        if (opt == 'd') {
            b->pg_conninfo = optarg;
            continue;
        }
        long v = opt == '?' ? 0 : atol(optarg);
        if (opt == '?')
            die("usage", "kafka_drain [-n EVENTS] [-b BATCH] [-k KEYS] "
                         "[-p PARTITIONS] [-d PG_CONNINFO]");
        if (v < 1)
            die("option", "values must be positive");
        if (opt == 'n')
            b->n = v;
        else if (opt == 'b')
            b->batch = v;
        else if (opt == 'k')
            b->keys = (int)v;
        else
            b->partitions = (int)v;
    }
    if (b->pg_conninfo && !b->pg_conninfo[0])
        b->pg_conninfo = NULL;
}

static void print_header(bench *b)
{
    printf("kafka_drain: %ld events of %d bytes, %d keys, batch %ld, "
           "librdkafka %s mock cluster (3 brokers, %d partitions)\n",
           b->n, PAYLOAD, b->keys, b->batch, rd_kafka_version_str(),
           b->partitions);
    if (b->pg)
        printf("  pg_poll on PostgreSQL %d.%d, schema %s\n",
               PQserverVersion(b->pg) / 10000, PQserverVersion(b->pg) % 100,
               b->pg_schema);
}

int main(int argc, char **argv)
{
    bench b = {.n = 200000, .batch = 1000, .keys = 1000, .partitions = 6};
    parse(&b, argc, argv);
    snprintf(b.dir, sizeof b.dir, "/tmp/kafka-drain-XXXXXX");
    if (!mkdtemp(b.dir))
        die("mkdtemp", strerror(errno));
    if (b.pg_conninfo)
        pg_connect(&b);
    start_mock(&b);
    print_header(&b);
    double stream = raw_run(&b, "raw.stream", b.n);
    printf("%-27s%10.0f events/s\n", "raw producer, stream", stream);
    double batches = raw_run(&b, "raw.batches", b.batch);
    printf("%-27s%10.0f events/s\n", "raw producer, batches", batches);
    drain lite = measure(&b, "sqlite");
    drain pg = {0, 0};
    if (b.pg)
        pg = measure(&b, "pg_poll");
    else
        printf("relay pg_poll: skipped, no PostgreSQL (-d CONNINFO, "
               "OBX_BENCH_PG, or bench/kafka_drain.sh)\n");
    double raw = stream > batches ? stream : batches;
    ratios("sqlite", lite, raw);
    if (b.pg) {
        ratios("pg_poll", pg, raw);
        pg_disconnect(&b);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "kafka_drain: could not remove %s\n", b.dir);
    rd_kafka_mock_cluster_destroy(b.mock);
    rd_kafka_destroy(b.mock_rk);
    return 0;
}
