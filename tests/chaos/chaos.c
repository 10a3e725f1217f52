/* The kill loop and its checks, the same for every store x broker pair. */
#include "chaos.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

int64_t chaos_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chaos_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void chaos_seen_add(chaos_seen *s, int w, long seq, int key)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->items = realloc(s->items, s->cap * sizeof *s->items);
        assert_non_null(s->items);
    }
    s->items[s->n++] = (chaos_ev){w, seq, key};
}

void chaos_seen_free(chaos_seen *s)
{
    free(s->items);
    memset(s, 0, sizeof *s);
}

void chaos_seen_add_payload(chaos_seen *s, const char *payload, size_t len)
{
    char buf[128];
    if (len >= sizeof buf)
        fail_msg("unexpected payload of %zu bytes", len);
    memcpy(buf, payload, len);
    buf[len] = '\0';
    int w, k;
    long seq;
    if (sscanf(buf, "{\"w\":%d,\"seq\":%ld,\"k\":%d}", &w, &seq, &k) != 3)
        fail_msg("not a chaos payload: %s", buf);
    chaos_seen_add(s, w, seq, k);
}

/* ---- writers ----------------------------------------------------------- */

/* Per writer, what happened to each sequence number it used. */
enum { EV_UNUSED = 0, EV_COMMITTED, EV_ROLLED_BACK, EV_FAILED };

typedef struct writer {
    chaos_ctx *c;
    int w;
    unsigned rng;
    atomic_int *stop;
    unsigned char *fate; /* by seq */
    long cap, next_seq;
    long committed, rolled_back, failed_tx;
    int64_t start_ms; /* paced writers: when the first transaction began */
} writer;

/* After a transaction: the kill loop's short random pause, or, for a
 * paced run, until this writer's share of c->rate is due. */
static void writer_pause(writer *wr)
{
    int rate = wr->c->rate;
    if (rate <= 0) {
        chaos_sleep_ms(2 + (int)(rand_r(&wr->rng) % 4));
        return;
    }
    int64_t due = wr->start_ms + wr->committed * 1000 * CHAOS_WRITERS / rate;
    int64_t now = chaos_mono_ms();
    if (due > now)
        chaos_sleep_ms((int)(due - now));
}

static void *writer_main(void *arg)
{
    writer *wr = arg;
    void *conn = wr->c->store->writer_open(wr->c);
    wr->start_ms = chaos_mono_ms();
    while (!atomic_load(wr->stop) && wr->next_seq + 3 < wr->cap) {
        chaos_ev evs[3];
        int n = 1 + (int)(rand_r(&wr->rng) % 3);
        for (int i = 0; i < n; i++)
            evs[i] =
                (chaos_ev){wr->w, wr->next_seq++,
                           (int)(rand_r(&wr->rng) % CHAOS_KEYS_PER_WRITER)};
        bool commit = rand_r(&wr->rng) % 10 != 0; /* ~10% rollbacks */
        int rc = wr->c->store->write_tx(conn, evs, n, commit);
        unsigned char fate = rc != 0  ? EV_FAILED
                             : commit ? EV_COMMITTED
                                      : EV_ROLLED_BACK;
        for (int i = 0; i < n; i++)
            wr->fate[evs[i].seq] = fate;
        if (rc != 0)
            wr->failed_tx++;
        else if (commit)
            wr->committed += n;
        else
            wr->rolled_back += n;
        writer_pause(wr);
    }
    wr->c->store->writer_close(conn);
    return NULL;
}

/* ---- relays ------------------------------------------------------------ */

typedef struct relays {
    chaos_ctx *c;
    char conf[4300];
    char err[CHAOS_MAX_RELAYS][4300];
    pid_t pid[CHAOS_MAX_RELAYS];
    int n;
} relays;

static void write_config(relays *r)
{
    chaos_ctx *c = r->c;
    snprintf(r->conf, sizeof r->conf, "%s/relay.conf", c->dir);
    FILE *fp = fopen(r->conf, "w");
    assert_non_null(fp);
    /* OBX_CHAOS_LOG_LEVEL=debug: the relays' full story of a failing run.
     * claim_ahead is on: two batches out at once is the path SIGKILL can
     * hurt most (the default, one batch at a time, is what every other
     * test runs). */
    const char *level = getenv("OBX_CHAOS_LOG_LEVEL");
    if (!level || !*level)
        level = "info";
    fprintf(fp,
            "[relay]\nlog_level = %s\nmetrics_listen = off\n"
            "shutdown_grace = 20s\n"
            "[pipeline chaos]\nbatch_size = %d\npoll_interval = 100ms\n"
            "retry.backoff = 10ms..200ms\ncircuit.backoff = 50ms..500ms\n"
            "claim_ahead = true\n",
            level, CHAOS_BATCH);
    c->store->config(c, fp);
    c->broker->config(c, fp);
    fclose(fp);
}

static void relay_start(relays *r, int i)
{
    char *argv[] = {BIN, "run", "-c", r->conf, NULL};
    /* each incarnation appends to the relay's log, kept for a failure */
    int fd = open(r->err[i], O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 2);
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        execv(BIN, argv);
        _exit(127);
    }
    close(fd);
    r->pid[i] = pid;
}

static void relays_stop(relays *r, int sig)
{
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) {
            kill(r->pid[i], sig);
            int rc = proc_wait(r->pid[i], 30000);
            if (sig == SIGTERM && rc != 0) {
                char *log = slurp(r->err[i]);
                fail_msg("%s: relay %d exited %d on SIGTERM:\n%s", r->c->name,
                         i, rc, log ? log : "");
            }
            r->pid[i] = 0;
        }
}

/* ---- checks ------------------------------------------------------------ */

typedef chaos_verdict verdict;

/* Per key, the first deliveries must come in commit order (a writer's
 * seq order: one writer owns a key); a later copy of an event already seen
 * is a duplicate, not a break, as a consumer drops it by event id. */
static verdict judge(writer *ws, const chaos_seen *seen, bool print_lost)
{
    verdict v = {0};
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        v.committed += ws[w].committed;
        v.rolled_back += ws[w].rolled_back;
    }
    unsigned char *got[CHAOS_WRITERS];
    long last[CHAOS_WRITERS][CHAOS_KEYS_PER_WRITER];
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        got[w] = calloc((size_t)ws[w].cap, 1);
        for (int k = 0; k < CHAOS_KEYS_PER_WRITER; k++)
            last[w][k] = -1;
    }
    v.delivered = (long)seen->n;
    for (size_t i = 0; i < seen->n; i++) {
        const chaos_ev *e = &seen->items[i];
        if (e->w < 0 || e->w >= CHAOS_WRITERS || e->seq < 0 ||
            e->seq >= ws[e->w].cap || e->key < 0 ||
            e->key >= CHAOS_KEYS_PER_WRITER ||
            ws[e->w].fate[e->seq] != EV_COMMITTED) {
            v.phantoms++;
            continue;
        }
        if (got[e->w][e->seq]++) {
            v.duplicates++;
            continue;
        }
        if (e->seq < last[e->w][e->key])
            v.order_breaks++;
        else
            last[e->w][e->key] = e->seq;
    }
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        for (long s = 0; s < ws[w].next_seq; s++)
            if (ws[w].fate[s] == EV_COMMITTED && !got[w][s])
                v.lost++;
    }
    if (print_lost && v.lost) {
        /* which ones: their rows (payload {"w":..,"seq":..}) lead to the
         * commit LSN, to compare with the relays' status updates */
        long shown = 0;
        fprintf(stderr, "lost events (w, seq):");
        for (int w = 0; w < CHAOS_WRITERS; w++)
            for (long s = 0; s < ws[w].next_seq && shown < 100; s++)
                if (ws[w].fate[s] == EV_COMMITTED && !got[w][s]) {
                    fprintf(stderr, " (%d, %ld)", w, s);
                    shown++;
                }
        fprintf(stderr, "%s\n", v.lost > shown ? " ..." : "");
    }
    for (int w = 0; w < CHAOS_WRITERS; w++)
        free(got[w]);
    return v;
}

static long distinct_committed_seen(writer *ws, const chaos_seen *seen)
{
    verdict v = judge(ws, seen, false);
    return v.delivered - v.phantoms - v.duplicates;
}

static void summary_row(chaos_ctx *c, int kills, const verdict *v)
{
    char row[512];
    snprintf(row, sizeof row, "%-22s %5d %9ld %6ld %8ld %12ld %10ld\n", c->name,
             kills, v->committed, v->lost, v->phantoms, v->order_breaks,
             v->duplicates);
    fputs(row, stdout);
    const char *path = getenv("OBX_CHAOS_SUMMARY");
    if (path && *path) {
        FILE *fp = fopen(path, "a");
        if (fp) {
            fputs(row, fp);
            fclose(fp);
        }
    }
}

static void dump_logs(relays *r)
{
    for (int i = 0; i < r->n; i++) {
        char *log = slurp(r->err[i]);
        size_t len = log ? strlen(log) : 0;
        fprintf(stderr, "---- %s relay %d log (last 4 KiB) ----\n%s\n",
                r->c->name, i, log ? log + (len > 4096 ? len - 4096 : 0) : "");
        free(log);
    }
}

/* ---- the loop ---------------------------------------------------------- */

static void kill_phase(relays *r, int kills, unsigned *rng)
{
    for (int k = 0; k < kills; k++) {
        chaos_sleep_ms(150 + (int)(rand_r(rng) % 450));
        int i = (int)(rand_r(rng) % (unsigned)r->n);
        kill(r->pid[i], SIGKILL);
        proc_wait(r->pid[i], 10000);
        relay_start(r, i);
    }
}

/* Read back until every committed event is there (or a minute passed). */
static void drain(chaos_ctx *c, writer *ws, long committed, chaos_seen *seen)
{
    int64_t end = chaos_mono_ms() + 90000;
    for (;;) {
        chaos_seen_free(seen);
        c->broker->read_back(c, (size_t)committed, seen);
        if (distinct_committed_seen(ws, seen) >= committed ||
            chaos_mono_ms() > end)
            return;
        chaos_sleep_ms(500);
    }
}

void chaos_kill_loop(chaos_store *store, chaos_broker *broker, int kills)
{
    static unsigned runs;
    chaos_ctx c = {.store = store, .broker = broker};
    c.dir = obx_test_tmpdir();
    c.id = (unsigned)getpid() * 100u + ++runs;
    c.seed = (unsigned)time(NULL) ^ c.id;
    const char *s = getenv("OBX_CHAOS_SEED");
    if (s && *s)
        c.seed = (unsigned)strtoul(s, NULL, 10);
    snprintf(c.name, sizeof c.name, "%s%s -> %s", store->name,
             store->relays > 1 ? (store->relays == 2 ? " x2" : " x3") : "",
             broker->name);
    printf("chaos %s: seed %u (OBX_CHAOS_SEED=%u repeats it)\n", c.name, c.seed,
           c.seed);
    store->setup(&c);
    broker->setup(&c);

    relays r = {.c = &c, .n = store->relays};
    for (int i = 0; i < r.n; i++)
        snprintf(r.err[i], sizeof r.err[i], "%s/relay%d.log", c.dir, i);
    write_config(&r);
    for (int i = 0; i < r.n; i++)
        relay_start(&r, i);
    store->ready(&c);

    atomic_int stop = 0;
    writer ws[CHAOS_WRITERS];
    pthread_t th[CHAOS_WRITERS];
    unsigned rng = c.seed;
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        ws[w] = (writer){.c = &c,
                         .w = w,
                         .rng = c.seed + 7919u * (unsigned)w,
                         .stop = &stop,
                         .cap = 1000000};
        ws[w].fate = calloc((size_t)ws[w].cap, 1);
        pthread_create(&th[w], NULL, writer_main, &ws[w]);
    }
    kill_phase(&r, kills, &rng);
    chaos_sleep_ms(300);
    atomic_store(&stop, 1);
    for (int w = 0; w < CHAOS_WRITERS; w++)
        pthread_join(th[w], NULL);

    long committed = 0;
    for (int w = 0; w < CHAOS_WRITERS; w++)
        committed += ws[w].committed;
    chaos_seen seen = {0};
    drain(&c, ws, committed, &seen);
    relays_stop(&r, SIGTERM);
    /* what arrived after the drain (a copy still in flight) counts too */
    chaos_seen_free(&seen);
    broker->read_back(&c, (size_t)committed, &seen);
    verdict v = judge(ws, &seen, true);
    summary_row(&c, kills, &v);
    /* A kill re-publishes at most what the killed relay had in flight: a
     * batch for a polling store, the unconfirmed window for a WAL one. */
    long per_kill = store->dups_per_kill ? store->dups_per_kill : CHAOS_BATCH;
    long dup_bound = (long)kills * per_kill;
    bool bad = v.lost || v.phantoms || v.order_breaks || v.committed == 0 ||
               v.rolled_back == 0 || v.duplicates > dup_bound;
    if (bad)
        dump_logs(&r);
    /* OBX_CHAOS_KEEP=1: a failing run's directory (full relay logs) and
     * its store (tables, slot) stay for a post-mortem */
    const char *keep_env = getenv("OBX_CHAOS_KEEP");
    bool keep = bad && keep_env && strcmp(keep_env, "1") == 0;
    broker->teardown(&c);
    if (keep)
        fprintf(stderr, "%s: kept %s and the store's data (run id %u)\n",
                c.name, c.dir, c.id);
    else
        store->teardown(&c);
    for (int w = 0; w < CHAOS_WRITERS; w++)
        free(ws[w].fate);
    chaos_seen_free(&seen);
    if (!keep)
        obx_test_rmtree(c.dir);
    free(c.dir);
    if (bad)
        fail_msg("%s (seed %u): committed %ld, rolled back %ld, lost %ld, "
                 "phantoms %ld, order breaks %ld, duplicates %ld (bound %ld)",
                 c.name, c.seed, v.committed, v.rolled_back, v.lost, v.phantoms,
                 v.order_breaks, v.duplicates, dup_bound);
}

/* ---- runs other than the kill loop ------------------------------------ */

struct chaos_run {
    chaos_ctx c;
    relays r;
    atomic_int stop;
    writer ws[CHAOS_WRITERS];
    pthread_t th[CHAOS_WRITERS];
};

chaos_run *chaos_run_start(chaos_store *store, chaos_broker *broker, int rate,
                           long max_events)
{
    static unsigned runs;
    chaos_run *run = calloc(1, sizeof *run);
    assert_non_null(run);
    chaos_ctx *c = &run->c;
    *c = (chaos_ctx){.store = store, .broker = broker, .rate = rate};
    c->dir = obx_test_tmpdir();
    c->id = (unsigned)getpid() * 100u + 50u + ++runs;
    c->seed = (unsigned)time(NULL) ^ c->id;
    snprintf(c->name, sizeof c->name, "%s -> %s", store->name, broker->name);
    store->setup(c);
    broker->setup(c);
    run->r = (relays){.c = c, .n = store->relays};
    for (int i = 0; i < run->r.n; i++)
        snprintf(run->r.err[i], sizeof run->r.err[i], "%s/relay%d.log", c->dir,
                 i);
    write_config(&run->r);
    for (int i = 0; i < run->r.n; i++)
        relay_start(&run->r, i);
    store->ready(c);
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        writer *wr = &run->ws[w];
        *wr = (writer){.c = c,
                       .w = w,
                       .rng = c->seed + 7919u * (unsigned)w,
                       .stop = &run->stop,
                       .cap = max_events};
        wr->fate = calloc((size_t)wr->cap, 1);
        assert_non_null(wr->fate);
        pthread_create(&run->th[w], NULL, writer_main, wr);
    }
    return run;
}

chaos_ctx *chaos_run_ctx(chaos_run *run)
{
    return &run->c;
}

pid_t chaos_run_relay(chaos_run *run, int i)
{
    return run->r.pid[i];
}

chaos_verdict chaos_run_finish(chaos_run *run)
{
    chaos_ctx *c = &run->c;
    atomic_store(&run->stop, 1);
    long committed = 0;
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        pthread_join(run->th[w], NULL);
        committed += run->ws[w].committed;
    }
    chaos_seen seen = {0};
    drain(c, run->ws, committed, &seen);
    relays_stop(&run->r, SIGTERM);
    chaos_seen_free(&seen);
    c->broker->read_back(c, (size_t)committed, &seen);
    verdict v = judge(run->ws, &seen, true);
    if (v.lost || v.phantoms || v.order_breaks)
        dump_logs(&run->r);
    c->broker->teardown(c);
    c->store->teardown(c);
    for (int w = 0; w < CHAOS_WRITERS; w++)
        free(run->ws[w].fate);
    chaos_seen_free(&seen);
    obx_test_rmtree(c->dir);
    free(c->dir);
    free(run);
    return v;
}
