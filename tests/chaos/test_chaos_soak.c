/* The soak: pg_poll -> kafka (the mock cluster process) at a steady rate
 * with a broker fault every minute, the relay's resident memory and open
 * file descriptors sampled every few seconds; at the end the chaos checks
 * (nothing lost, nothing invented, per-key order) and flatness:
 *
 *   - warm-up: the first min(60 s, duration / 4);
 *   - RSS: no sample after the warm-up above the warm-up's highest sample
 *     plus SOAK_RSS_SLACK_KB;
 *   - fds and threads: at the last sample before each later fault and at
 *     the last sample of the run, the fds within SOAK_FD_SLACK and the
 *     threads within SOAK_THREAD_SLACK of the last sample before the
 *     first fault (a fault closes connections while it lasts, and
 *     librdkafka opens its bootstrap connection, with its broker thread,
 *     only when it needs one, so the counts wander by one or two; a fresh
 *     Debian run ended a fault with 9 threads for 8; a leak grows with
 *     every fault, which the long form's ten faults show);
 *   - caught up: at those same samples, at most SOAK_BACKLOG_S seconds of
 *     writes pending (the relay's outbox_pending_events).
 *
 * Duplicates: at most a batch per fault (what the broker stored while the
 * connection closed under the call in flight) plus the copies the relay
 * itself reports as delivered after it had given up on them. The broker
 * is read while the run goes: the Kafka mock keeps 5 MiB per partition
 * and drops the oldest beyond that (the read-back fails, naming it, if
 * it ever falls behind).
 *
 * Faults, SOAK_FAULT_S long, at 30 s and then every 60 s (none that would
 * end less than 20 s before the run does), alternately: every mock broker
 * down (connections cut and refused) and the mock process stopped
 * (SIGSTOP: connections open, nothing answers).
 *
 *   OBX_SOAK_SECONDS  run length (default 60: one fault; 600 is the long
 *                     form, ten faults)
 *   OBX_SOAK_RATE     committed events/s (default 1000; 200 under ASan) */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "chaos.h"

/* Under ASan the relay is several times slower, and its quarantine holds
 * freed memory (256 MiB by default), so RSS grows by design: a sanitizer
 * build soaks at a lower default rate, for memory errors, and does not
 * judge RSS. */
#if defined(__SANITIZE_ADDRESS__)
#define SOAK_SANITIZED 1
#define SOAK_DEFAULT_RATE 200
#else
#define SOAK_SANITIZED 0
#define SOAK_DEFAULT_RATE 1000
#endif

#define SOAK_FAULT_S 5
#define SOAK_FIRST_FAULT_S 30
#define SOAK_FAULT_EVERY_S 60
#define SOAK_RSS_SLACK_KB 4096
#define SOAK_FD_SLACK 2
#define SOAK_THREAD_SLACK 1
/* Caught up: at most this many seconds of writes pending before the next
 * fault (the gauge is refreshed every few seconds). */
#define SOAK_BACKLOG_S 5
#define SOAK_MAX_SAMPLES 4096

typedef struct sample {
    double t;          /* seconds since the writers started */
    const char *phase; /* what the broker was going through */
    int fault;         /* faults begun before this sample */
    long rss_kb;
    int fds, threads;
    double pending; /* the relay's outbox_pending_events: keeping up? */
} sample;

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

/* VmRSS and Threads from /proc/PID/status; false once the process is gone.
 */
static bool proc_status(pid_t pid, long *rss_kb, int *threads)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    *rss_kb = -1;
    *threads = -1;
    while (fgets(line, sizeof line, fp)) {
        sscanf(line, "VmRSS: %ld", rss_kb);
        sscanf(line, "Threads: %d", threads);
    }
    fclose(fp);
    return *rss_kb >= 0 && *threads >= 0;
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The fault that starts at index k: even down, odd stalled. */
static const char *fault_name(int k)
{
    return k % 2 == 0 ? "down" : "stalled";
}

static void fault_begin(pid_t mock, int k)
{
    kill(mock, k % 2 == 0 ? SIGUSR1 : SIGSTOP);
}

static void fault_end(pid_t mock, int k)
{
    kill(mock, k % 2 == 0 ? SIGUSR2 : SIGCONT);
}

static void print_table(const sample *s, int n)
{
    printf("%8s  %-8s %6s %10s %5s %8s %8s\n", "t (s)", "broker", "fault",
           "RSS (KiB)", "fds", "threads", "pending");
    for (int i = 0; i < n; i++)
        printf("%8.1f  %-8s %6d %10ld %5d %8d %8.0f\n", s[i].t, s[i].phase,
               s[i].fault, s[i].rss_kb, s[i].fds, s[i].threads, s[i].pending);
}

static void test_soak(void **state)
{
    (void)state;
    int seconds = env_int("OBX_SOAK_SECONDS", 60);
    int rate = env_int("OBX_SOAK_RATE", SOAK_DEFAULT_RATE);
    if (seconds < SOAK_FIRST_FAULT_S + SOAK_FAULT_S + 20 || rate < 1)
        fail_msg("OBX_SOAK_SECONDS must be >= %d (one fault and its "
                 "recovery), OBX_SOAK_RATE >= 1",
                 SOAK_FIRST_FAULT_S + SOAK_FAULT_S + 20);
    double warmup = seconds / 4.0 < 60 ? seconds / 4.0 : 60;
    /* a sample every few seconds: 2 s for the short form, 5 s for 600 s */
    double every = seconds / 120.0 < 2 ? 2 : seconds / 120.0;
    int n_faults = 0;
    while (SOAK_FIRST_FAULT_S + SOAK_FAULT_EVERY_S * n_faults + SOAK_FAULT_S +
               20 <=
           seconds)
        n_faults++;

    chaos_store *store = chaos_store_named("pg_poll", 1);
    chaos_broker *broker = chaos_broker_named("kafka");
    /* room for the whole run with some to spare */
    long max_events = (long)rate * seconds / CHAOS_WRITERS * 3 / 2 + 1000;
    chaos_run *run = chaos_run_start(store, broker, rate, max_events);
    chaos_ctx *c = chaos_run_ctx(run);
    pid_t relay = chaos_run_relay(run, 0);
    pid_t mock = chaos_kafka_mock(c);
    char name[sizeof c->name];
    snprintf(name, sizeof name, "%s", c->name);
    printf("soak %s: %d s at %d events/s, %d fault%s of %d s (first at %d "
           "s, then every %d s), warm-up %.0f s, a sample every %.0f s\n",
           name, seconds, rate, n_faults, n_faults == 1 ? "" : "s",
           SOAK_FAULT_S, SOAK_FIRST_FAULT_S, SOAK_FAULT_EVERY_S, warmup, every);

    static sample s[SOAK_MAX_SAMPLES];
    int n = 0, begun = 0;
    bool in_fault = false, died = false;
    int64_t t0 = chaos_mono_ms();
    double next_sample = 0;
    for (;;) {
        double t = (double)(chaos_mono_ms() - t0) / 1000.0;
        if (t >= seconds)
            break;
        double fault_at = SOAK_FIRST_FAULT_S + SOAK_FAULT_EVERY_S * begun;
        if (!in_fault && begun < n_faults && t >= fault_at) {
            fault_begin(mock, begun++);
            in_fault = true;
        } else if (in_fault && t >= SOAK_FIRST_FAULT_S +
                                        SOAK_FAULT_EVERY_S * (begun - 1) +
                                        SOAK_FAULT_S) {
            fault_end(mock, begun - 1);
            in_fault = false;
        }
        if (t >= next_sample && n < SOAK_MAX_SAMPLES) {
            sample *x = &s[n];
            x->t = t;
            x->fault = begun;
            x->phase = in_fault ? fault_name(begun - 1) : "up";
            x->fds = count_fds(relay);
            /* a relay that exited is a zombie: no VmRSS */
            if (!proc_status(relay, &x->rss_kb, &x->threads) || x->fds < 0) {
                died = true;
                break;
            }
            /* after the fd count: the scrape's connection is one more */
            x->pending = chaos_run_metric(run, "outbox_pending_events");
            n++;
            next_sample += every;
        }
        /* the mock keeps 5 MiB per partition: read as the run goes */
        chaos_run_read_ahead(run, 50);
    }
    if (in_fault)
        fault_end(mock, begun - 1);
    /* drain, stop the relay, read back, judge, tear down */
    int64_t t_end = chaos_mono_ms();
    chaos_verdict v = chaos_run_finish(run);
    printf("soak: drain, read-back and teardown took %.1f s\n",
           (double)(chaos_mono_ms() - t_end) / 1000.0);
    free(store);
    free(broker);

    print_table(s, n);
    if (died)
        fail_msg("the relay exited during the soak (after %d samples)", n);

    /* flatness */
    long warm_max = 0, after_max = 0;
    int base = -1; /* the last sample before the first fault */
    for (int i = 0; i < n; i++) {
        if (s[i].t <= warmup) {
            if (s[i].rss_kb > warm_max)
                warm_max = s[i].rss_kb;
        } else if (s[i].rss_kb > after_max) {
            after_max = s[i].rss_kb;
        }
        if (s[i].fault == 0)
            base = i;
    }
    if (base < 0 || base == n - 1)
        fail_msg("no samples around the first fault");
    /* fds and threads back where they were: before each later fault and
     * at the end of the run */
    int bad = 0, behind = 0;
    char settle[2048] = "";
    size_t used = 0;
    for (int i = base + 1; i < n; i++) {
        bool last_of_period = i == n - 1 || s[i + 1].fault != s[i].fault;
        if (!last_of_period)
            continue;
        bool ok = abs(s[i].fds - s[base].fds) <= SOAK_FD_SLACK &&
                  abs(s[i].threads - s[base].threads) <= SOAK_THREAD_SLACK;
        bad += !ok;
        /* and caught up: a 5 s fault must not leave a backlog for the
         * next minute */
        bool up =
            s[i].pending >= 0 && s[i].pending <= (double)rate * SOAK_BACKLOG_S;
        behind += !up;
        if (used < sizeof settle - 64)
            used += (size_t)snprintf(settle + used, sizeof settle - used,
                                     " %d/%d/%.0f%s", s[i].fds, s[i].threads,
                                     s[i].pending, ok && up ? "" : "!");
    }
    long committed_rate = v.committed / seconds;
    /* A copy comes from an event the relay gave up on that reached the
     * broker anyway: stored while the connection closed under the call in
     * flight (a batch per fault), or confirmed after the call had given
     * up on it (the relay counts each: v.late). */
    long dup_bound = (long)n_faults * CHAOS_BATCH + v.late;
    printf("soak %s: committed %ld (%ld/s), rolled back %ld, delivered %ld, "
           "lost %ld, phantoms %ld, order breaks %ld, duplicates %ld "
           "(bound %ld: %d faults x %d + %ld late deliveries)\n",
           name, v.committed, committed_rate, v.rolled_back, v.delivered,
           v.lost, v.phantoms, v.order_breaks, v.duplicates, dup_bound,
           n_faults, CHAOS_BATCH, v.late);
    printf("soak RSS: warm-up max %ld KiB, after warm-up max %ld KiB "
           "(bound %ld KiB)\n",
           warm_max, after_max, warm_max + SOAK_RSS_SLACK_KB);
    printf("soak fds/threads/pending: %d/%d/%.0f before the first fault; "
           "before each later fault and at the end:%s\n",
           s[base].fds, s[base].threads, s[base].pending, settle);
    if (v.lost || v.phantoms || v.order_breaks || v.duplicates > dup_bound)
        fail_msg("soak: lost %ld, phantoms %ld, order breaks %ld, "
                 "duplicates %ld",
                 v.lost, v.phantoms, v.order_breaks, v.duplicates);
    if (v.committed < (long)rate * seconds * 9 / 10)
        fail_msg("soak: the writers committed %ld events, not the %ld of %d "
                 "s at %d/s",
                 v.committed, (long)rate * seconds, seconds, rate);
    if (SOAK_SANITIZED)
        printf("soak RSS: not judged in an ASan build\n");
    if (!SOAK_SANITIZED && after_max > warm_max + SOAK_RSS_SLACK_KB)
        fail_msg("soak: RSS grew to %ld KiB after a warm-up maximum of %ld "
                 "KiB",
                 after_max, warm_max);
    if (behind)
        fail_msg("soak: the relay had not caught up (pending above %d s of "
                 "writes, %d) before %d of the later faults or the end",
                 SOAK_BACKLOG_S, rate * SOAK_BACKLOG_S, behind);
    if (bad)
        fail_msg("soak: fds/threads not back to %d/%d (fds +-%d, threads "
                 "+-%d) after %d fault%s",
                 s[base].fds, s[base].threads, SOAK_FD_SLACK, SOAK_THREAD_SLACK,
                 bad, bad == 1 ? "" : "s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_soak)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
