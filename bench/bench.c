/* obx_bench: see bench.h. Usage:
 *
 *   obx_bench COMMAND [-n EVENTS] [-k KEYS] [-b BATCH] [-w WINDOW]
 *             [-c CHANNELS] [-s SKIP] [-i IDLE_MS] [-t TARGET] [-d DEST]
 *             [-x EXTRA] [-r READY_FILE]
 *
 * COMMAND: store-sqlite, store-pg, broker-stdout, broker-kafka,
 * broker-rabbitmq, broker-nats, rabbitmq-queue, nats-stream,
 * consume-fd, consume-kafka, consume-rabbitmq, consume-nats, startup. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t bench_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CPU seconds the machine spent busy since boot: user, nice, system, irq,
 * softirq and steal of /proc/stat's first line (idle and iowait left
 * out). */
static double machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        bench_die("/proc/stat", "cannot be read");
    unsigned long long v[8] = {0};
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                     &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got != 8)
        bench_die("/proc/stat", "no cpu line");
    double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    return busy / (double)sysconf(_SC_CLK_TCK);
}

bench_clock bench_clock_start(void)
{
    return (bench_clock){.t0 = bench_now(), .busy0 = machine_busy()};
}

void bench_clock_stop(bench_clock *c)
{
    c->secs = bench_now() - c->t0;
    c->cores = c->secs > 0 ? (machine_busy() - c->busy0) / c->secs : 0;
}

void bench_clock_print(const bench_clock *c, long n)
{
    printf("%.0f %.2f\n", (double)n / c->secs, c->cores);
}

_Noreturn void bench_die(const char *what, const char *why)
{
    fprintf(stderr, "obx_bench: %s: %s\n", what, why ? why : "");
    exit(1);
}

size_t bench_payload(char *buf, long seq, long keys)
{
    int len =
        snprintf(buf, BENCH_PAYLOAD + 1,
                 "{\"seq\":%ld,\"k\":%ld,\"t\":0,\"pad\":\"", seq, seq % keys);
    memset(buf + len, 'x', (size_t)(BENCH_PAYLOAD - len - 2));
    memcpy(buf + BENCH_PAYLOAD - 2, "\"}", 3);
    return BENCH_PAYLOAD;
}

void bench_signal_ready(const bench_args *a)
{
    if (!a->ready)
        return;
    FILE *f = fopen(a->ready, "w");
    if (!f)
        bench_die(a->ready, strerror(errno));
    fclose(f);
}

/* ---- tally ------------------------------------------------------------ */

void bench_tally_init(bench_tally *t, long keys)
{
    memset(t, 0, sizeof *t);
    t->keys = keys;
    t->last_seq = malloc(sizeof *t->last_seq * (size_t)keys);
    if (!t->last_seq)
        bench_die("tally", "out of memory");
    for (long i = 0; i < keys; i++)
        t->last_seq[i] = -1;
}

/* The integer after "name": in p[0..len), or -1 when absent. The stdout
 * broker writes the payload as JSON inside its line, so the quotes are
 * plain there too. */
static long long field(const char *p, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 3 <= len; i++) {
        if (p[i] != '"' || memcmp(p + i + 1, name, nl) != 0 ||
            p[i + 1 + nl] != '"' || p[i + 2 + nl] != ':')
            continue;
        long long v = 0;
        size_t j = i + 3 + nl;
        if (j >= len || p[j] < '0' || p[j] > '9')
            return -1;
        for (; j < len && p[j] >= '0' && p[j] <= '9'; j++)
            v = v * 10 + (p[j] - '0');
        return v;
    }
    return -1;
}

void bench_tally_add(bench_tally *t, const char *p, size_t len, long skip)
{
    int64_t now = bench_wall_us();
    if (!t->count)
        t->first_us = now;
    t->last_us = now;
    t->count++;
    long long seq = field(p, len, "seq"), k = field(p, len, "k");
    long long ts = field(p, len, "t");
    if (seq >= 0 && k >= 0 && k < t->keys) {
        if (seq < t->last_seq[k])
            t->order_violations++;
        else if (seq == t->last_seq[k])
            t->duplicates++;
        else
            t->last_seq[k] = (long)seq;
    }
    if (ts <= 0 || t->count <= skip)
        return;
    if (t->nlat == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 65536;
        t->lat_ms = realloc(t->lat_ms, sizeof *t->lat_ms * (size_t)t->cap);
        if (!t->lat_ms)
            bench_die("tally", "out of memory");
    }
    t->lat_ms[t->nlat++] = (double)(now - ts) / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_tally_print(bench_tally *t)
{
    double p50 = 0, p99 = 0, max = 0;
    if (t->nlat > 0) {
        qsort(t->lat_ms, (size_t)t->nlat, sizeof *t->lat_ms, cmp_double);
        p50 = t->lat_ms[(t->nlat - 1) / 2];
        p99 = t->lat_ms[(long)((double)(t->nlat - 1) * 0.99)];
        max = t->lat_ms[t->nlat - 1];
    }
    printf("count %ld order_violations %ld duplicates %ld latency_n %ld "
           "p50 %.2f p99 %.2f max %.2f first_wall %lld last_wall %lld\n",
           t->count, t->order_violations, t->duplicates, t->nlat, p50, p99, max,
           (long long)t->first_us, (long long)t->last_us);
    fflush(stdout);
}

/* ---- consume-fd: JSON lines from a FIFO ------------------------------- */

void bench_consume_fd(const bench_args *a)
{
    /* O_RDWR: the open does not wait for a writer, and a writer that goes
     * away (the relay restarting) is no end of file. */
    int fd = open(a->target, O_RDWR);
    if (fd < 0)
        bench_die(a->target, strerror(errno));
    bench_tally t;
    bench_tally_init(&t, a->keys);
    bench_signal_ready(a);
    static char buf[1 << 20];
    size_t have = 0;
    while (t.count < a->n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int rc = poll(&pfd, 1, t.count ? (int)a->idle_ms : 600000);
        if (rc == 0)
            break;
        if (rc < 0 && errno == EINTR)
            continue;
        ssize_t got = read(fd, buf + have, sizeof buf - have);
        if (got <= 0)
            break;
        have += (size_t)got;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
            bench_tally_add(&t, line, (size_t)(nl - line), a->skip);
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
    }
    close(fd);
    bench_tally_print(&t);
}

/* ---- startup ---------------------------------------------------------- */

void bench_startup(const bench_args *a)
{
    int p[2];
    if (pipe(p) != 0)
        bench_die("pipe", strerror(errno));
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", strerror(errno));
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(a->target, "outbox-relay", "run", "-c", a->dest, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char c;
    struct pollfd pfd = {p[0], POLLIN, 0};
    int rc = poll(&pfd, 1, 10000);
    double t1 = bench_now();
    bool got = rc == 1 && read(p[0], &c, 1) == 1;
    kill(pid, SIGTERM);
    /* Drain what it still writes while it settles, so it cannot block. */
    char sink[65536];
    while (read(p[0], sink, sizeof sink) > 0)
        ;
    int st = 0;
    waitpid(pid, &st, 0);
    if (!got)
        bench_die("startup", "nothing was published within 10 s");
    printf("%.2f\n", (t1 - t0) * 1000.0);
}

/* ---- main ------------------------------------------------------------- */

typedef struct command {
    const char *name;
    void (*fn)(const bench_args *);
} command;

static const command commands[] = {
    {"store-sqlite", bench_store_sqlite},
    {"store-pg", bench_store_pg},
    {"broker-stdout", bench_broker_stdout},
    {"broker-kafka", bench_broker_kafka},
    {"broker-rabbitmq", bench_broker_rabbitmq},
    {"broker-nats", bench_broker_nats},
    {"rabbitmq-queue", bench_rabbitmq_queue},
    {"nats-stream", bench_nats_stream},
    {"consume-fd", bench_consume_fd},
    {"consume-kafka", bench_consume_kafka},
    {"consume-rabbitmq", bench_consume_rabbitmq},
    {"consume-nats", bench_consume_nats},
    {"startup", bench_startup},
};

static long positive(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0)
        bench_die("not a count", s);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        bench_die("usage", "obx_bench COMMAND [options] (see bench.c)");
    bench_args a = {.n = 200000,
                    .keys = 1000,
                    .batch = 1000,
                    .window = 1000,
                    .idle_ms = 3000,
                    .channels = 1};
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "n:k:b:w:c:s:i:t:d:x:r:")) != -1) {
        switch (opt) {
        case 'n': a.n = positive(optarg); break;
        case 'k': a.keys = positive(optarg); break;
        case 'b': a.batch = positive(optarg); break;
        case 'w': a.window = positive(optarg); break;
        case 'c': a.channels = (int)positive(optarg); break;
        case 's': a.skip = positive(optarg); break;
        case 'i': a.idle_ms = positive(optarg); break;
        case 't': a.target = optarg; break;
        case 'd': a.dest = optarg; break;
        case 'x': a.extra = optarg; break;
        case 'r': a.ready = optarg; break;
        default: bench_die("usage", "unknown option");
        }
    }
    if (a.keys < 1 || a.batch < 1 || a.batch > BENCH_MAX_BATCH ||
        a.window < 1 || a.channels < 1)
        bench_die("usage", "keys, batch, window and channels must be >= 1");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            commands[i].fn(&a);
            return 0;
        }
    bench_die("unknown command", argv[1]);
}
