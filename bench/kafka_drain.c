/* kafka_drain: the relay's sqlite -> kafka drain rate next to the raw
 * librdkafka producer rate, in one run, against one librdkafka mock
 * cluster (rdkafka_mock.h, in this process; not an Apache Kafka broker).
 *
 *   kafka_drain [-n EVENTS] [-b BATCH] [-k KEYS] [-p PARTITIONS]
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
 *                  i.e. the store and engine without kafka.
 * and prints events/s of each, relay / raw producer, and relay / min(raw
 * producer, store + engine) (DESIGN section 9 asks for >= 0.8 of the
 * smaller ceiling).
 *
 * pg_poll -> kafka: to be added next to step 3 once the pg_poll store
 * lands.
 *
 * The mock accepts connections without TCP_NODELAY; tests/kafka/
 * mock_nodelay.c (linked in) sets it, as Apache Kafka does, or every
 * synchronous batch would wait ~40 ms for a delayed ACK.
 */
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

static void sql(sqlite3 *db, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        die(q, err ? err : "?");
}

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

/* A fresh outbox of b->n events: the relay's schema, plain INSERTs. */
static void fill_backlog(bench *b, const char *db_path)
{
    char schema[512];
    snprintf(schema, sizeof schema, "%s/schema.sql", b->dir);
    char *argv[] = {RELAY, "schema", "sqlite", NULL};
    if (run(argv, schema) != 0)
        die("outbox-relay schema sqlite", "failed");
    unlink(db_path);
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        die(db_path, sqlite3_errmsg(db));
    FILE *f = fopen(schema, "r");
    static char ddl[65536];
    size_t len = f ? fread(ddl, 1, sizeof ddl - 1, f) : 0;
    if (f)
        fclose(f);
    ddl[len] = '\0';
    sql(db, ddl);
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

static long published(const char *db_path)
{
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

/* Drain a fresh backlog with `broker` and its keys; events per second. */
static double relay_run(bench *b, const char *broker, const char *keys)
{
    char db[512], conf[512], out[512];
    snprintf(db, sizeof db, "%s/outbox.db", b->dir);
    snprintf(conf, sizeof conf, "%s/relay.conf", b->dir);
    snprintf(out, sizeof out, "%s/relay.out", b->dir);
    fill_backlog(b, db);
    FILE *f = fopen(conf, "w");
    if (!f)
        die(conf, strerror(errno));
    fprintf(f,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "plugin_path = %s/plugins\n"
            "[pipeline bench]\nstore = sqlite\nbroker = %s\n"
            "store.path = %s\nbatch_size = %ld\n%s\n",
            OBX_BUILD_DIR, broker, db, b->batch, keys);
    fclose(f);
    char *argv[] = {RELAY, "run", "-c", conf, "--once", NULL};
    double t0 = now_s();
    int rc = run(argv, out);
    double secs = now_s() - t0;
    if (rc != 0)
        die("outbox-relay run --once", "non-zero exit");
    if (published(db) != b->n)
        die(broker, "not every event was published");
    return (double)b->n / secs;
}

static void parse(bench *b, int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "n:b:k:p:")) != -1) {
        long v = atol(optarg);
        if (v < 1)
            die("option", "values must be positive");
        if (opt == 'n')
            b->n = v;
        else if (opt == 'b')
            b->batch = v;
        else if (opt == 'k')
            b->keys = (int)v;
        else if (opt == 'p')
            b->partitions = (int)v;
        else
            die("usage", "kafka_drain [-n EVENTS] [-b BATCH] [-k KEYS] "
                         "[-p PARTITIONS]");
    }
}

int main(int argc, char **argv)
{
    bench b = {.n = 200000, .batch = 1000, .keys = 1000, .partitions = 6};
    parse(&b, argc, argv);
    snprintf(b.dir, sizeof b.dir, "/tmp/kafka-drain-XXXXXX");
    if (!mkdtemp(b.dir))
        die("mkdtemp", strerror(errno));
    start_mock(&b);
    printf("kafka_drain: %ld events of %d bytes, %d keys, batch %ld, "
           "librdkafka %s mock cluster (3 brokers, %d partitions)\n",
           b.n, PAYLOAD, b.keys, b.batch, rd_kafka_version_str(), b.partitions);
    double stream = raw_run(&b, "raw.stream", b.n);
    printf("raw producer, stream      %10.0f events/s\n", stream);
    double batches = raw_run(&b, "raw.batches", b.batch);
    printf("raw producer, batches     %10.0f events/s\n", batches);
    char keys[700];
    snprintf(keys, sizeof keys, "broker.brokers = %s", b.bootstraps);
    double relay = relay_run(&b, "kafka", keys);
    printf("relay sqlite -> kafka     %10.0f events/s\n", relay);
    double ref = relay_run(&b, "stdout", "broker.output = /dev/null");
    printf("relay sqlite -> /dev/null %10.0f events/s (store + engine)\n", ref);
    double raw = stream > batches ? stream : batches;
    printf("relay / raw producer (best of both)      = %.2f\n", relay / raw);
    printf("relay / min(raw producer, store+engine)  = %.2f (target >= "
           "0.80)\n",
           relay / (raw < ref ? raw : ref));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "kafka_drain: could not remove %s\n", b.dir);
    rd_kafka_mock_cluster_destroy(b.mock);
    rd_kafka_destroy(b.mock_rk);
    return 0;
}
