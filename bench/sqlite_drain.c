/* Drain benchmark, sqlite store -> stdout broker (to /dev/null), measured
 * in one run next to the raw ceilings of both ends:
 *   store ceiling:  claim+mark with plain SQL (WAL mode, batches of 1000)
 *   broker ceiling: the stdout plugin's publish() alone, same events
 *   relay:          outbox-relay run --once on the same backlog
 * Prints events/s for each and relay / min(store, broker).
 *
 *   build/bench/sqlite_drain [EVENTS] [KEYS]     (default 200000 1000) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <outbox/plugin.h>

#include "host.h"
#include "log.h"
#include "options.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "sqlite_drain: %s: %s\n", what,
            db ? sqlite3_errmsg(db) : "");
    exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(sql, db);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return s;
}

/* A fresh outbox with n events of a 256-byte JSON payload over `keys`. */
static void fill(const char *path, long n, long keys)
{
    unlink(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("open", db);
    char *ddl = slurp(OBX_SOURCE_DIR "/stores/sqlite/schema.sql");
    if (!ddl)
        die("read schema.sql", NULL);
    exec(db, "PRAGMA journal_mode=WAL");
    exec(db, ddl);
    free(ddl);
    char payload[257];
    int len = snprintf(payload, sizeof payload, "{\"order_id\":1,\"note\":\"");
    memset(payload + len, 'x', 254 - (size_t)len);
    memcpy(payload + 254, "\"}", 3);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO outbox (aggregate_type, aggregate_id, "
                       "event_type, payload) VALUES ('order', ?, "
                       "'OrderCreated', ?)",
                       -1, &st, NULL);
    exec(db, "BEGIN");
    for (long i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "o%ld", i % keys);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, payload, 256, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("insert", db);
        sqlite3_reset(st);
    }
    exec(db, "COMMIT");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The store's raw ceiling: claim a batch with UPDATE ... RETURNING in
 * BEGIN IMMEDIATE, then mark it published, as a hand-written relay would. */
static double raw_store(const char *path, long n)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    sqlite3_stmt *claim, *mark;
    sqlite3_prepare_v2(db,
                       "UPDATE outbox SET locked_by = 'bench', locked_until "
                       "= ?1 WHERE id IN (SELECT id FROM outbox WHERE "
                       "published_at IS NULL AND dead_at IS NULL AND "
                       "(locked_until IS NULL OR locked_until < ?1) ORDER BY "
                       "id LIMIT 1000) RETURNING id, event_id, aggregate_id, "
                       "event_type, payload",
                       -1, &claim, NULL);
    sqlite3_prepare_v2(db,
                       "UPDATE outbox SET published_at = ?2, locked_by = "
                       "NULL, locked_until = NULL WHERE id = ?1",
                       -1, &mark, NULL);
    int64_t ids[1000];
    long done = 0;
    double t0 = now_s();
    while (done < n) {
        int k = 0;
        exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(claim, 1, (int64_t)(now_s() * 1e6) + 60000000);
        while (sqlite3_step(claim) == SQLITE_ROW)
            ids[k++] = sqlite3_column_int64(claim, 0);
        sqlite3_reset(claim);
        exec(db, "COMMIT");
        if (k == 0)
            break;
        exec(db, "BEGIN IMMEDIATE");
        for (int i = 0; i < k; i++) {
            sqlite3_bind_int64(mark, 1, ids[i]);
            sqlite3_bind_int64(mark, 2, (int64_t)(now_s() * 1e6));
            sqlite3_step(mark);
            sqlite3_reset(mark);
        }
        exec(db, "COMMIT");
        done += k;
    }
    double rate = (double)done / (now_s() - t0);
    sqlite3_finalize(claim);
    sqlite3_finalize(mark);
    sqlite3_close(db);
    return rate;
}

/* The broker's raw ceiling: the stdout plugin's publish() on batches of
 * 1000 prepared events, writing to /dev/null. */
static double raw_broker(long n)
{
    void *h = dlopen(OBX_PLUGIN_DIR "/obx_broker_stdout.so", RTLD_NOW);
    if (!h) {
        fprintf(stderr, "sqlite_drain: %s\n", dlerror());
        exit(1);
    }
    obx_plugin_entry_fn entry =
        (obx_plugin_entry_fn)(uintptr_t)dlsym(h, OBX_PLUGIN_ENTRY_SYMBOL);
    const obx_plugin *p = entry();
    const obx_broker_ops *ops = p->ops;
    void *conf = calloc(1, p->config_size);
    obx_conf_entry out = {"broker.output", "/dev/null", 1};
    obx_conf_section sec = {OBX_SECTION_PIPELINE, "bench", 1, &out, 1};
    char oerr[512];
    if (obx_options_fill((obx_optable){p->options, p->option_size}, "bench",
                         &sec, "broker.", conf, oerr, sizeof oerr) != 0) {
        fprintf(stderr, "sqlite_drain: %s\n", oerr);
        exit(1);
    }
    obx_logger lg;
    obx_logger_init(&lg);
    obx_host_ctx ctx = {.lg = &lg};
    obx_host host;
    obx_host_init(&host, &ctx, "bench");
    void *inst;
    char err[256];
    if (ops->open(&host, conf, &inst, err, sizeof err) != OBX_OK) {
        fprintf(stderr, "sqlite_drain: stdout open: %s\n", err);
        exit(1);
    }
    static obx_event evs[1000];
    static obx_event *ptrs[1000];
    static obx_result res[1000];
    static char ids[1000][40], keys[1000][16], payload[257];
    memset(payload, 'x', 256);
    memcpy(payload, "{\"n\":\"", 6);
    memcpy(payload + 254, "\"}", 2);
    for (int i = 0; i < 1000; i++) {
        snprintf(ids[i], sizeof ids[i], "0000-%d", i);
        snprintf(keys[i], sizeof keys[i], "o%d", i);
        evs[i] = (obx_event){.event_id = ids[i],
                             .key = keys[i],
                             .event_type = "OrderCreated",
                             .aggregate_type = "order",
                             .aggregate_id = keys[i],
                             .payload = payload,
                             .payload_len = 256,
                             .destination = "outbox.order"};
        ptrs[i] = &evs[i];
    }
    double t0 = now_s();
    for (long done = 0; done < n; done += 1000)
        ops->publish(inst, ptrs, 1000, res, 30000);
    double rate = (double)n / (now_s() - t0);
    ops->close(inst);
    free(conf);
    return rate;
}

static double relay(const char *dir, const char *db, long n)
{
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/bench.conf", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f,
            "[relay]\nlog_level = warn\nmetrics_listen = off\n"
            "[pipeline bench]\nstore = sqlite\nbroker = stdout\n"
            "batch_size = 1000\nstore.path = %s\nbroker.output = /dev/null\n",
            db);
    fclose(f);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        execl(OBX_BUILD_DIR "/outbox-relay", "outbox-relay", "run", "-c", conf,
              "--once", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "sqlite_drain: relay failed\n");
        exit(1);
    }
    return (double)n / (now_s() - t0);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    long keys = argc > 2 ? atol(argv[2]) : 1000;
    char dir[] = "/tmp/obx-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char db[4200];
    snprintf(db, sizeof db, "%s/outbox.db", dir);
    printf("sqlite -> stdout(/dev/null): %ld events of 256 bytes, %ld keys\n",
           n, keys);
    fill(db, n, keys);
    double store = raw_store(db, n);
    printf("  store ceiling  (SQL claim+mark, batch 1000) %10.0f events/s\n",
           store);
    double broker = raw_broker(n);
    printf("  broker ceiling (stdout publish, batch 1000) %10.0f events/s\n",
           broker);
    fill(db, n, keys);
    double r = relay(dir, db, n);
    double ceil = store < broker ? store : broker;
    printf("  relay          (run --once, batch 1000)     %10.0f events/s\n",
           r);
    printf("  relay / min(ceilings) = %.2f (target >= 0.80)\n", r / ceil);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "%s/outbox.db", dir);
    unlink(cmd);
    snprintf(cmd, sizeof cmd, "%s/outbox.db-wal", dir);
    unlink(cmd);
    snprintf(cmd, sizeof cmd, "%s/outbox.db-shm", dir);
    unlink(cmd);
    snprintf(cmd, sizeof cmd, "%s/bench.conf", dir);
    unlink(cmd);
    rmdir(dir);
    return 0;
}
