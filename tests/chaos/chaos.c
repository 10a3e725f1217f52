/* The writers, the faults and the checks, the same for every store x
 * broker pair. */
#include "chaos.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "proc.h"
#include "support.h"
#include "tcp_proxy.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"

/* How long the relays may take to publish again once a fault is over:
 * noticing a dead connection (heartbeats, publish_timeout), reconnecting,
 * the circuit's next probe. */
#define CHAOS_RECOVERY_MS 30000
/* Writing before a fault begins and after the last one ended, so each
 * fault lands mid-stream and the run ends with the relays keeping up. */
#define CHAOS_LEAD_MS 1000
/* Committed events a second in a run of faults without kills. */
#define CHAOS_FAULT_RATE 300

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
    void *conn; /* opened on the main thread: opening may fail the test */
    unsigned char *fate; /* by seq */
    long cap, next_seq;
    /* the main thread reads committed while the writer runs */
    atomic_long committed;
    long rolled_back, failed_tx;
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
    int64_t due = wr->start_ms +
                  atomic_load(&wr->committed) * 1000 * CHAOS_WRITERS / rate;
    int64_t now = chaos_mono_ms();
    if (due > now)
        chaos_sleep_ms((int)(due - now));
}

static void *writer_main(void *arg)
{
    writer *wr = arg;
    wr->start_ms = chaos_mono_ms();
    while (!atomic_load(wr->stop) && wr->next_seq + 3 < wr->cap) {
        chaos_ev evs[3];
        int n = 1 + (int)(rand_r(&wr->rng) % 3);
        for (int i = 0; i < n; i++)
            evs[i] =
                (chaos_ev){wr->w, wr->next_seq++,
                           (int)(rand_r(&wr->rng) % CHAOS_KEYS_PER_WRITER)};
        bool commit = rand_r(&wr->rng) % 10 != 0; /* ~10% rollbacks */
        int rc = wr->c->store->write_tx(wr->conn, evs, n, commit);
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
        /* a store that is down answers at once: no busy loop meanwhile */
        if (rc != 0)
            chaos_sleep_ms(50);
        else
            writer_pause(wr);
    }
    return NULL;
}

/* ---- relays ------------------------------------------------------------ */

typedef struct relays {
    chaos_ctx *c;
    char conf[4300];
    char err[CHAOS_MAX_RELAYS][4300];
    pid_t pid[CHAOS_MAX_RELAYS];
    int mport[CHAOS_MAX_RELAYS]; /* its metrics port, 0 until known */
    int n;
} relays;

/* tight: the run stalls a link; the relays give up on a publish after
 * 10 s, not 30, so they notice a 20 s stall within it (the adapters
 * shorten their own timeouts so). */
static void write_config(relays *r, bool tight)
{
    chaos_ctx *c = r->c;
    snprintf(r->conf, sizeof r->conf, "%s/relay.conf", c->dir);
    FILE *fp = fopen(r->conf, "w");
    assert_non_null(fp);
    /* OBX_CHAOS_LOG_LEVEL=debug: the relays' full story of a failing run.
     * claim_ahead is on for every store: two batches out at once is the
     * path SIGKILL can hurt most (the default, auto, does so only for
     * sqlite and pg_poll; pg_wal's other tests run one batch at a time).
     * Metrics on a port of each relay's choosing (its log names it). */
    const char *level = getenv("OBX_CHAOS_LOG_LEVEL");
    if (!level || !*level)
        level = "info";
    fprintf(fp,
            "[relay]\nlog_level = %s\nmetrics_listen = 127.0.0.1:0\n"
            "shutdown_grace = 20s\n"
            "[pipeline chaos]\nbatch_size = %d\npoll_interval = 100ms\n"
            "retry.backoff = 10ms..200ms\ncircuit.backoff = 50ms..500ms\n"
            "claim_ahead = true\n%s",
            level, CHAOS_BATCH, tight ? "publish_timeout = 10s\n" : "");
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
    r->mport[i] = 0;
}

/* Stop every relay still running with sig; returns how many did not exit
 * 0 on a SIGTERM. */
static int relays_stop(relays *r, int sig)
{
    int bad = 0;
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) {
            kill(r->pid[i], sig);
            int rc = proc_wait(r->pid[i], 30000);
            if (sig == SIGTERM && rc != 0) {
                fprintf(stderr, "%s: relay %d exited %d on SIGTERM\n",
                        r->c->name, i, rc);
                bad++;
            }
            r->pid[i] = 0;
        }
    return bad;
}

static void dump_logs(relays *r)
{
    for (int i = 0; i < r->n; i++) {
        char *log = slurp(r->err[i]);
        size_t len = log ? strlen(log) : 0;
        fprintf(stderr, "---- %s relay %d log (last 6 KiB) ----\n%s\n",
                r->c->name, i, log ? log + (len > 6144 ? len - 6144 : 0) : "");
        free(log);
    }
}

/* OBX_CHAOS_KEEP=1: keep a run's directory and store for a post-mortem. */
static bool keep_wanted(void)
{
    const char *v = getenv("OBX_CHAOS_KEEP");
    return v && strcmp(v, "1") == 0;
}

/* How often `what` occurs in every relay's log. */
static int logs_count(relays *r, const char *what)
{
    int n = 0;
    for (int i = 0; i < r->n; i++)
        n += (int)count_in_file(r->err[i], what);
    return n;
}

/* ---- the relays' /metrics ---------------------------------------------- */

typedef struct sample {
    double published, dead, retries;
} sample;

/* Where the text after the last `tag` in log begins; NULL when there is
 * none (or no log). */
static const char *after_last(const char *log, const char *tag)
{
    const char *last = NULL;
    size_t len = strlen(tag);
    for (const char *p = log; p && (p = strstr(p, tag)); p += len)
        last = p + len;
    return last;
}

/* The port relay i serves /metrics on, from its latest "metrics on" log
 * line; 0 while it has not said. */
static int metrics_port(relays *r, int i)
{
    if (r->mport[i])
        return r->mport[i];
    char *log = slurp(r->err[i]);
    const char *port = after_last(log, "metrics on http://127.0.0.1:");
    if (port)
        r->mport[i] = atoi(port);
    free(log);
    return r->mport[i];
}

/* The counters of every relay, summed; false (why in *why) when a relay
 * has died or does not answer. */
static bool scrape(relays *r, sample *s, char *why, size_t len)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < r->n; i++) {
        int st;
        if (r->pid[i] <= 0) {
            snprintf(why, len, "relay %d is not running", i);
            return false;
        }
        if (waitpid(r->pid[i], &st, WNOHANG) == r->pid[i]) {
            r->pid[i] = 0;
            snprintf(why, len, "relay %d exited (status %d)", i, st);
            return false;
        }
        int port = 0;
        for (int t = 0; t < 200 && !(port = metrics_port(r, i)); t++)
            chaos_sleep_ms(50);
        char *body = NULL;
        if (!port || http_get(port, "/metrics", &body) != 200) {
            free(body);
            snprintf(why, len, "relay %d serves no /metrics (port %d)", i,
                     port);
            return false;
        }
        s->published += metric_sum(body, "outbox_events_published_total");
        s->dead += metric_sum(body, "outbox_events_dead_lettered_total");
        s->retries += metric_sum(body, "outbox_publish_retries_total");
        free(body);
    }
    return true;
}

/* ---- the run ------------------------------------------------------------ */

struct chaos_run {
    chaos_ctx c;
    const chaos_schedule *sch;
    relays r;
    writer ws[CHAOS_WRITERS];
    pthread_t th[CHAOS_WRITERS];
    atomic_int stop;
    bool writing, store_set_up, broker_set_up, broker_stopped;
    tp_proxy *proxy[2]; /* by chaos_link */
    unsigned rng;
    int kills, disruptions;
    long replayable; /* events a store restart may hand out again */
    int64_t t0;      /* when the run began (chaos_mono_ms) */
    char why[1024];  /* the first thing that went wrong, "" when none */
};

typedef struct chaos_run run;

/* The run in progress, for chaos_cleanup when an adapter fails the test
 * in the middle of it. */
static run *current;

/* A line of the run's story on stdout, with the seconds since it began:
 * where a slow or failing run spent its time. */
static void note(run *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(run *u, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("chaos %s [%6.1fs]: %s\n", u->c.name,
           (double)(chaos_mono_ms() - u->t0) / 1000.0, msg);
    fflush(stdout);
}

static bool failed(run *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool failed(run *u, const char *fmt, ...)
{
    if (!u->why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->why, sizeof u->why, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void stop_writers(run *u)
{
    if (!u->writing)
        return;
    atomic_store(&u->stop, 1);
    for (int w = 0; w < CHAOS_WRITERS; w++)
        pthread_join(u->th[w], NULL);
    u->writing = false;
}

/* Everything the run started, whatever state it is in; idempotent. */
static void release(run *u, bool keep_store)
{
    stop_writers(u);
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        if (u->ws[w].conn)
            u->c.store->writer_close(u->ws[w].conn);
        u->ws[w].conn = NULL;
        free(u->ws[w].fate);
        u->ws[w].fate = NULL;
    }
    relays_stop(&u->r, SIGKILL);
    for (int l = 0; l < 2; l++)
        if (u->proxy[l]) {
            tp_stop(u->proxy[l]);
            u->proxy[l] = NULL;
        }
    if (u->broker_set_up)
        u->c.broker->teardown(&u->c);
    u->broker_set_up = false;
    if (u->store_set_up && !keep_store)
        u->c.store->teardown(&u->c);
    u->store_set_up = false;
    if (u->c.dir && !keep_store)
        obx_test_rmtree(u->c.dir);
    free(u->c.dir);
    u->c.dir = NULL;
}

void chaos_cleanup(void)
{
    if (current) {
        dump_logs(&current->r);
        release(current, false);
        free(current);
        current = NULL;
    }
}

static bool take_sample(run *u, sample *s)
{
    char why[256];
    if (scrape(&u->r, s, why, sizeof why))
        return true;
    return failed(u, "%s", why);
}

/* The proxies a step is aimed at (one link or both), NULL elsewhere. */
typedef struct links {
    tp_proxy *p[2];
} links;

static links links_of(run *u, chaos_link l)
{
    links k = {{NULL, NULL}};
    if (l != CHAOS_LINK_BROKER)
        k.p[CHAOS_LINK_STORE] = u->proxy[CHAOS_LINK_STORE];
    if (l != CHAOS_LINK_STORE)
        k.p[CHAOS_LINK_BROKER] = u->proxy[CHAOS_LINK_BROKER];
    return k;
}

static void links_mode(links *k, tp_mode mode, int delay_ms)
{
    for (int l = 0; l < 2; l++)
        if (k->p[l])
            tp_set_mode(k->p[l], mode, delay_ms);
}

/* Connections accepted so far through each proxy of k. */
static void links_accepted(const links *k, int out[2])
{
    for (int l = 0; l < 2; l++)
        out[l] = k->p[l] ? tp_accepted(k->p[l]) : 0;
}

/* Once a fault is over: the relays must publish again within
 * CHAOS_RECOVERY_MS (they do not hang on a dead connection), and, when k
 * is given, have opened a new connection through each of its proxies
 * since `before` (they reconnected). */
static bool recovered(run *u, const char *what, const links *k,
                      const int before[2])
{
    sample s0, s;
    if (!take_sample(u, &s0))
        return false;
    int64_t t0 = chaos_mono_ms();
    for (;;) {
        chaos_sleep_ms(100);
        if (!take_sample(u, &s))
            return false;
        bool again = true;
        for (int l = 0; k && l < 2; l++)
            if (k->p[l] && tp_accepted(k->p[l]) <= before[l])
                again = false;
        if (s.published > s0.published && again) {
            note(u, "%s: publishing again %lld ms after it ended", what,
                 (long long)(chaos_mono_ms() - t0));
            return true;
        }
        if (chaos_mono_ms() - t0 > CHAOS_RECOVERY_MS)
            return failed(u, "%s: no progress within %d s after it ended (%s)",
                          what, CHAOS_RECOVERY_MS / 1000,
                          again ? "published count still"
                                : "no new connection either");
    }
}

/* Sleep ms while the relays run, failing when one of them dies. */
static bool watch(run *u, int ms)
{
    int64_t end = chaos_mono_ms() + ms;
    while (chaos_mono_ms() < end) {
        for (int i = 0; i < u->r.n; i++) {
            int st;
            if (u->r.pid[i] > 0 &&
                waitpid(u->r.pid[i], &st, WNOHANG) == u->r.pid[i]) {
                u->r.pid[i] = 0;
                return failed(u, "relay %d exited (status %d) mid-run", i, st);
            }
        }
        int64_t left = end - chaos_mono_ms();
        chaos_sleep_ms(left > 100 ? 100 : left > 0 ? (int)left : 0);
    }
    return true;
}

static bool kill_phase(run *u, int kills)
{
    relays *r = &u->r;
    for (int k = 0; k < kills; k++) {
        chaos_sleep_ms(150 + (int)(rand_r(&u->rng) % 450));
        int i = (int)(rand_r(&u->rng) % (unsigned)r->n);
        if (r->pid[i] <= 0) /* kill(0) would hit the whole process group */
            return failed(u, "relay %d is not running", i);
        kill(r->pid[i], SIGKILL);
        proc_wait(r->pid[i], 10000);
        relay_start(r, i);
        u->kills++;
    }
    return true;
}

/* The broker or store down for ms, circuit opened meanwhile: "circuit
 * open" lines in the relays' logs are how the engine reports it. */
static bool outage_felt(run *u, int circuits_before, const char *what)
{
    if (logs_count(&u->r, "circuit open:") > circuits_before)
        return true;
    return failed(u, "%s: no relay opened its circuit", what);
}

static bool broker_down(run *u, const chaos_step *st, const char *what)
{
    if (!watch(u, CHAOS_LEAD_MS))
        return false;
    int circuits = logs_count(&u->r, "circuit open:");
    u->c.broker->stop(&u->c);
    u->broker_stopped = true;
    note(u, "the broker's server is stopped");
    bool ok = watch(u, st->ms);
    u->c.broker->start(&u->c);
    u->broker_stopped = false;
    note(u, "the broker's server is up again");
    u->disruptions++;
    return ok && outage_felt(u, circuits, what) &&
           recovered(u, what, NULL, NULL);
}

static bool cold_start(run *u, const chaos_step *st, const char *what)
{
    /* the broker was stopped before the relays started (run_begin) */
    if (!watch(u, st->ms))
        return false;
    bool felt = outage_felt(u, 0, what);
    u->c.broker->start(&u->c);
    u->broker_stopped = false;
    note(u, "the broker's server is up");
    u->disruptions++;
    return felt && recovered(u, what, NULL, NULL);
}

static bool store_restart(run *u, const chaos_step *st, const char *what)
{
    if (!watch(u, CHAOS_LEAD_MS))
        return false;
    int circuits = logs_count(&u->r, "circuit open:");
    if (u->c.store->restart_replays)
        for (int w = 0; w < CHAOS_WRITERS; w++)
            u->replayable += atomic_load(&u->ws[w].committed);
    pid_t child = u->c.store->restart(&u->c, st->ms);
    note(u, "restarting the database");
    int64_t end = chaos_mono_ms() + st->ms + 120000;
    int status = -1;
    while (status < 0) {
        int wst;
        if (waitpid(child, &wst, WNOHANG) == child)
            status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst);
        else if (chaos_mono_ms() > end)
            status = proc_wait(child, 0);
        else if (!watch(u, 100))
            return false;
    }
    u->disruptions++;
    note(u, "the database restart is done (exit %d)", status);
    if (status != 0)
        return failed(u, "%s: the restart failed (exit %d)", what, status);
    return outage_felt(u, circuits, what) && recovered(u, what, NULL, NULL);
}

static bool cut(run *u, const chaos_step *st, const char *what)
{
    links k = links_of(u, st->link);
    for (int c = 0; c < st->count; c++) {
        if (!watch(u, c ? 700 + (int)(rand_r(&u->rng) % 600) : CHAOS_LEAD_MS))
            return false;
        int before[2];
        links_accepted(&k, before);
        int n = 0;
        for (int l = 0; l < 2; l++)
            if (k.p[l]) {
                int cut = tp_cut(k.p[l]);
                if (cut == 0)
                    return failed(u, "%s: no %s connection to cut", what,
                                  l == CHAOS_LINK_STORE ? "store" : "broker");
                n += cut;
            }
        u->disruptions++;
        char one[160];
        snprintf(one, sizeof one, "%s (%d of %d, %d connections)", what, c + 1,
                 st->count, n);
        if (!recovered(u, one, &k, before))
            return false;
    }
    return true;
}

static bool stall(run *u, const chaos_step *st, const char *what)
{
    links k = links_of(u, st->link);
    if (!watch(u, CHAOS_LEAD_MS))
        return false;
    links_mode(&k, TP_STALL, 0);
    u->disruptions++;
    /* what the relays had in hand when it began may still settle */
    int grace = st->ms > 4000 ? 2000 : st->ms / 2;
    sample a, b;
    if (!watch(u, grace) || !take_sample(u, &a) || !watch(u, st->ms - grace) ||
        !take_sample(u, &b))
        return false;
    /* the old connections never come back: only a relay that noticed the
     * dead link (its own timeouts) and reconnected goes on */
    int dead = 0;
    for (int l = 0; l < 2; l++)
        if (k.p[l])
            dead += tp_abandon(k.p[l]);
    int before[2];
    links_accepted(&k, before);
    links_mode(&k, TP_PASS, 0);
    note(u, "%s: %.0f published during it, %d connections abandoned", what,
         b.published - a.published, dead);
    if (b.published - a.published > 2.0 * CHAOS_BATCH * u->r.n)
        return failed(u,
                      "%s: %.0f events published while it stalled: the "
                      "relays' connections do not go through the proxy",
                      what, b.published - a.published);
    return recovered(u, what, &k, before);
}

static bool slow(run *u, const chaos_step *st, const char *what)
{
    links k = links_of(u, st->link);
    if (!watch(u, CHAOS_LEAD_MS))
        return false;
    sample a, b;
    if (!take_sample(u, &a))
        return false;
    links_mode(&k, TP_SLOW, st->delay_ms);
    u->disruptions++;
    bool ok = watch(u, st->ms) && take_sample(u, &b);
    links_mode(&k, TP_PASS, 0);
    if (!ok)
        return false;
    note(u, "%s: %.0f published meanwhile", what, b.published - a.published);
    if (b.published <= a.published)
        return failed(u, "%s: nothing published over the slow link", what);
    return recovered(u, what, NULL, NULL);
}

static const char *link_name(chaos_link l)
{
    return l == CHAOS_LINK_STORE    ? "store link"
           : l == CHAOS_LINK_BROKER ? "broker link"
                                    : "store and broker links";
}

static bool apply(run *u, const chaos_step *st)
{
    char what[96];
    switch (st->fault) {
    case CHAOS_KILL: return kill_phase(u, st->count);
    case CHAOS_BROKER_DOWN:
        snprintf(what, sizeof what, "broker down %d ms", st->ms);
        return broker_down(u, st, what);
    case CHAOS_COLD_START:
        snprintf(what, sizeof what, "started with the broker down %d ms",
                 st->ms);
        return cold_start(u, st, what);
    case CHAOS_STORE_RESTART:
        snprintf(what, sizeof what, "database restart, down %d ms", st->ms);
        return store_restart(u, st, what);
    case CHAOS_CUT:
        snprintf(what, sizeof what, "%s cut", link_name(st->link));
        return cut(u, st, what);
    case CHAOS_STALL:
        snprintf(what, sizeof what, "%s stalled %d ms", link_name(st->link),
                 st->ms);
        return stall(u, st, what);
    case CHAOS_SLOW:
        snprintf(what, sizeof what, "%s slowed (%d ms a chunk, %d ms)",
                 link_name(st->link), st->delay_ms, st->ms);
        return slow(u, st, what);
    }
    return failed(u, "unknown fault %d", (int)st->fault);
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

static void summary_row(run *u, const verdict *v)
{
    char row[512];
    snprintf(row, sizeof row, "%-22s %5d %9ld %6ld %8ld %12ld %10ld  %s\n",
             u->c.name, u->kills, v->committed, v->lost, v->phantoms,
             v->order_breaks, v->duplicates, u->sch->name);
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

/* Read back until every committed event is there (or 90 s passed). */
static void drain(run *u, long committed, chaos_seen *seen)
{
    int64_t end = chaos_mono_ms() + 90000;
    for (;;) {
        chaos_seen_free(seen);
        u->c.broker->read_back(&u->c, (size_t)committed, seen);
        if (distinct_committed_seen(u->ws, seen) >= committed ||
            chaos_mono_ms() > end)
            return;
        chaos_sleep_ms(500);
    }
}

/* The store's own count of dead letters, from `outbox-relay stats
 * --json`: none, whatever the faults (an outage is not the events'
 * fault, and a kill is not either). */
static bool no_dead_letters(run *u)
{
    char out[4400], err[4400];
    snprintf(out, sizeof out, "%s/stats.json", u->c.dir);
    snprintf(err, sizeof err, "%s/stats.err", u->c.dir);
    char *argv[] = {BIN, "stats", "--json", "-c", u->r.conf, NULL};
    int rc = proc_run(argv, out, err, 60000);
    json_error_t je;
    json_t *doc = json_load_file(out, 0, &je);
    json_t *p = json_array_get(json_object_get(doc, "pipelines"), 0);
    json_t *dead = json_object_get(p, "dead");
    bool ok = rc == 0 && json_is_integer(dead) && json_integer_value(dead) == 0;
    if (!ok) {
        char *e = slurp(err);
        char *o = slurp(out);
        failed(u, "stats --json (exit %d): %s %s", rc, o ? o : "", e ? e : "");
        free(e);
        free(o);
    }
    json_decref(doc);
    return ok;
}

/* ---- chaos_run ----------------------------------------------------------- */

static void check_adapters(run *u)
{
    chaos_ctx *c = &u->c;
    const chaos_schedule *s = u->sch;
    if (c->own_broker_server && (!c->broker->stop || !c->broker->start))
        fail_msg("%s: the %s broker has no server to stop", c->name,
                 c->broker->name);
    if (chaos_schedule_has(s, CHAOS_STORE_RESTART) && !c->store->restart)
        fail_msg("%s: the %s store has no server to restart", c->name,
                 c->store->name);
    /* Kafka is not proxied: a client learns every broker's own address
     * from the metadata and connects there, past any proxy given as the
     * bootstrap. Its faults go through the mock cluster itself. */
    if (chaos_schedule_proxies(s, CHAOS_LINK_BROKER) && !c->broker->server_port)
        fail_msg("%s: the %s broker cannot be reached through the fault "
                 "proxy",
                 c->name, c->broker->name);
    if (chaos_schedule_proxies(s, CHAOS_LINK_STORE) && !c->store->server_port)
        fail_msg("%s: the %s store has no network link to fault", c->name,
                 c->store->name);
}

static void start_writers(run *u, long max_events)
{
    for (int w = 0; w < CHAOS_WRITERS; w++) {
        u->ws[w] = (writer){.c = &u->c,
                            .w = w,
                            .rng = u->c.seed + 7919u * (unsigned)w,
                            .stop = &u->stop,
                            .cap = max_events};
        u->ws[w].fate = calloc((size_t)u->ws[w].cap, 1);
        assert_non_null(u->ws[w].fate);
        u->ws[w].conn = u->c.store->writer_open(&u->c);
    }
    for (int w = 0; w < CHAOS_WRITERS; w++)
        pthread_create(&u->th[w], NULL, writer_main, &u->ws[w]);
    u->writing = true;
}

static long committed_so_far(run *u)
{
    long n = 0;
    for (int w = 0; w < CHAOS_WRITERS; w++)
        n += atomic_load(&u->ws[w].committed);
    return n;
}

/* The pair set up (with what sch needs, when given: servers of the run's
 * own, proxies, the broker stopped for a cold start), its relays and the
 * writers started. */
static run *run_begin(chaos_store *store, chaos_broker *broker,
                      const chaos_schedule *sch, int rate, long max_events)
{
    static unsigned runs;
    run *u = calloc(1, sizeof *u);
    assert_non_null(u);
    current = u;
    chaos_ctx *c = &u->c;
    u->sch = sch;
    c->store = store;
    c->broker = broker;
    c->rate = rate;
    c->dir = obx_test_tmpdir();
    c->id = (unsigned)getpid() * 100u + ++runs;
    c->seed = (unsigned)time(NULL) ^ c->id;
    const char *s = getenv("OBX_CHAOS_SEED");
    if (s && *s)
        c->seed = (unsigned)strtoul(s, NULL, 10);
    u->rng = c->seed;
    u->t0 = chaos_mono_ms();
    snprintf(c->name, sizeof c->name, "%s%s -> %s", store->name,
             store->relays > 1 ? (store->relays == 2 ? " x2" : " x3") : "",
             broker->name);
    printf("chaos %s, %s: seed %u (OBX_CHAOS_SEED=%u repeats it)\n", c->name,
           sch ? sch->name : "faults of the caller's", c->seed, c->seed);
    if (sch) {
        c->own_broker_server = chaos_schedule_has(sch, CHAOS_BROKER_DOWN) ||
                               chaos_schedule_has(sch, CHAOS_COLD_START);
        c->own_store_server = chaos_schedule_has(sch, CHAOS_STORE_RESTART);
        check_adapters(u);
    }

    store->setup(c);
    u->store_set_up = true;
    broker->setup(c);
    u->broker_set_up = true;
    note(u, "store and broker set up");
    if (sch && chaos_schedule_proxies(sch, CHAOS_LINK_STORE)) {
        u->proxy[CHAOS_LINK_STORE] =
            tp_start("127.0.0.1", store->server_port(c));
        c->store_port = tp_port(u->proxy[CHAOS_LINK_STORE]);
    }
    if (sch && chaos_schedule_proxies(sch, CHAOS_LINK_BROKER)) {
        u->proxy[CHAOS_LINK_BROKER] =
            tp_start("127.0.0.1", broker->server_port(c));
        c->broker_port = tp_port(u->proxy[CHAOS_LINK_BROKER]);
    }

    u->r = (relays){.c = c, .n = store->relays};
    for (int i = 0; i < u->r.n; i++)
        snprintf(u->r.err[i], sizeof u->r.err[i], "%s/relay%d.log", c->dir, i);
    write_config(&u->r, sch && chaos_schedule_has(sch, CHAOS_STALL));
    if (sch && sch->steps[0].fault == CHAOS_COLD_START) {
        broker->stop(c);
        u->broker_stopped = true;
        note(u, "the broker's server is stopped");
    }
    for (int i = 0; i < u->r.n; i++)
        relay_start(&u->r, i);
    store->ready(c);
    start_writers(u, max_events);
    note(u, "relays running, writers writing");
    return u;
}

void chaos_run_schedule(chaos_store *store, chaos_broker *broker,
                        const chaos_schedule *sch)
{
    /* with kills, each incarnation's counters die with it: the metrics
     * checks need relays that live through the whole run */
    bool whole = chaos_schedule_kills(sch) == 0;
    /* Kills come every few hundred ms: the writers go flat out. A fault
     * lasts seconds, and what piles up meanwhile is drained afterwards:
     * a steady pace keeps that to seconds too. */
    run *u =
        run_begin(store, broker, sch, whole ? CHAOS_FAULT_RATE : 0, 1000000);
    chaos_ctx *c = &u->c;
    bool ok = true;
    /* the pair works before anything is done to it */
    if (whole && !u->broker_stopped)
        ok = recovered(u, "start", NULL, NULL);
    for (int i = 0; ok && i < sch->n; i++)
        ok = apply(u, &sch->steps[i]);
    if (ok)
        ok = watch(u, whole ? CHAOS_LEAD_MS : 300);
    stop_writers(u);
    if (u->broker_stopped) {
        broker->start(c);
        u->broker_stopped = false;
    }

    long committed = committed_so_far(u);
    chaos_seen seen = {0};
    note(u, "writers stopped, %ld events committed", committed);
    if (ok)
        drain(u, committed, &seen);
    note(u, "drained");
    sample end = {0};
    if (ok && whole && take_sample(u, &end) && (end.dead || end.retries))
        ok = failed(u,
                    "the faults cost the events: %.0f dead-lettered, %.0f "
                    "attempts counted (outbox_publish_retries_total)",
                    end.dead, end.retries);
    if (relays_stop(&u->r, SIGTERM))
        ok = failed(u, "a relay did not exit 0 on SIGTERM");
    if (ok)
        ok = no_dead_letters(u);
    /* what arrived after the drain (a copy still in flight) counts too */
    chaos_seen_free(&seen);
    broker->read_back(c, (size_t)committed, &seen);
    verdict v = judge(u->ws, &seen, true);
    summary_row(u, &v);
    /* A kill or a fault re-publishes at most what the relays had in
     * flight: a batch for a polling store, the unconfirmed window for a
     * WAL one, per relay hit. */
    long per_kill = store->dups_per_kill ? store->dups_per_kill : CHAOS_BATCH;
    long dup_bound =
        ((long)u->kills + (long)u->disruptions * u->r.n) * per_kill +
        u->replayable;
    bool bad = !ok || v.lost || v.phantoms || v.order_breaks ||
               v.committed == 0 || v.rolled_back == 0 ||
               v.duplicates > dup_bound;
    if (bad)
        dump_logs(&u->r);
    /* OBX_CHAOS_KEEP=1: a failing run's directory (full relay logs) and
     * its store (tables, slot; a database server of the run's own keeps
     * running, in the directory) stay for a post-mortem */
    bool keep = bad && keep_wanted();
    if (keep)
        fprintf(stderr, "%s: kept %s and the store's data (run id %u)\n",
                c->name, c->dir, c->id);
    chaos_seen_free(&seen);
    char msg[2048];
    snprintf(msg, sizeof msg,
             "%s, %s (seed %u): %s%scommitted %ld, rolled back %ld, lost %ld, "
             "phantoms %ld, order breaks %ld, duplicates %ld (bound %ld)",
             c->name, sch->name, c->seed, u->why, u->why[0] ? "; " : "",
             v.committed, v.rolled_back, v.lost, v.phantoms, v.order_breaks,
             v.duplicates, dup_bound);
    release(u, keep);
    free(u);
    current = NULL;
    if (bad)
        fail_msg("%s", msg);
}

/* ---- runs that drive their own faults --------------------------------- */

chaos_run *chaos_run_start(chaos_store *store, chaos_broker *broker, int rate,
                           long max_events)
{
    return run_begin(store, broker, NULL, rate, max_events);
}

chaos_ctx *chaos_run_ctx(chaos_run *u)
{
    return &u->c;
}

pid_t chaos_run_relay(chaos_run *u, int i)
{
    return u->r.pid[i];
}

void chaos_run_read_ahead(chaos_run *u, int ms)
{
    if (u->c.broker->read_ahead)
        u->c.broker->read_ahead(&u->c, ms);
    else
        chaos_sleep_ms(ms);
}

double chaos_run_metric(chaos_run *u, const char *name)
{
    double sum = 0;
    for (int i = 0; i < u->r.n; i++) {
        int port = metrics_port(&u->r, i);
        char *body = NULL;
        if (!port || http_get(port, "/metrics", &body) != 200) {
            free(body);
            return -1;
        }
        sum += metric_sum(body, name);
        free(body);
    }
    return sum;
}

/* The relays' own count of late deliveries: the last "delivered after
 * all (N in total)" of each relay's log (the Kafka plugin says it on
 * every change and at close), summed. */
static long late_deliveries(relays *r)
{
    long n = 0;
    for (int i = 0; i < r->n; i++) {
        char *log = slurp(r->err[i]);
        const char *total = after_last(log, "delivered after all (");
        if (total)
            n += atol(total);
        free(log);
    }
    return n;
}

chaos_verdict chaos_run_finish(chaos_run *u)
{
    stop_writers(u);
    long committed = committed_so_far(u);
    chaos_seen seen = {0};
    drain(u, committed, &seen);
    relays_stop(&u->r, SIGTERM);
    chaos_seen_free(&seen);
    u->c.broker->read_back(&u->c, (size_t)committed, &seen);
    verdict v = judge(u->ws, &seen, true);
    v.late = late_deliveries(&u->r);
    if (v.lost || v.phantoms || v.order_breaks)
        dump_logs(&u->r);
    /* the caller judges more than this: OBX_CHAOS_KEEP=1 keeps the run's
     * directory (full relay logs) and store whatever the verdict */
    bool keep = keep_wanted();
    if (keep)
        fprintf(stderr, "%s: kept %s and the store's data (run id %u)\n",
                u->c.name, u->c.dir, u->c.id);
    chaos_seen_free(&seen);
    release(u, keep);
    free(u);
    current = NULL;
    return v;
}
