/* obx_bench: the C drivers of bench/run, where speed matters (the raw
 * ceilings of stores and brokers, the consumers that read events back
 * from a broker, the start-up clock). bench/run orchestrates them; each
 * subcommand prints one result line on stdout and dies (exit 1, a
 * message on stderr) on any error: a benchmark that cannot measure must
 * not print a number.
 *
 * Every event is a 256-byte JSON payload {"seq":N,"k":K,"t":T,"pad":"x.."}
 * (bench/run writes the same shape in SQL): seq orders the events of key
 * K, T is the commit time in unix microseconds (0 in a backlog). */
#ifndef OBX_BENCH_H
#define OBX_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_PAYLOAD 256
#define BENCH_MAX_BATCH 100000

typedef struct bench_args {
    long n;             /* events */
    long keys;          /* distinct keys */
    long batch;         /* claim batch, publish window */
    long window;        /* broker: unconfirmed messages at most */
    long skip;          /* consume: events left out of the latency (warm-up) */
    long idle_ms;       /* consume: stop after this long without a message */
    int channels;       /* rabbitmq */
    const char *target; /* conninfo, db path, URL, bootstrap servers */
    const char *dest;   /* table, topic, queue, subject, stream */
    const char *extra;  /* plugin dir (stdout), stream (nats) */
    const char *ready;  /* consume: touch this file once subscribed */
} bench_args;

double bench_now(void);      /* CLOCK_MONOTONIC, seconds */
int64_t bench_wall_us(void); /* CLOCK_REALTIME, unix microseconds */
_Noreturn void bench_die(const char *what, const char *why);

/* The clock of a ceiling: the wall time of the measured part and the CPU
 * the whole machine spent meanwhile (/proc/stat: every process, the
 * servers' included), so bench/run can tell a ceiling that owned the
 * cores from one that waited. */
typedef struct bench_clock {
    double t0, busy0; /* at start */
    double secs;      /* after stop: wall seconds */
    double cores;     /* after stop: machine CPU seconds / wall seconds */
} bench_clock;

bench_clock bench_clock_start(void);
void bench_clock_stop(bench_clock *c);
/* The result line of a ceiling: "RATE CORES" (n items over c). */
void bench_clock_print(const bench_clock *c, long n);

/* The payload of event seq (key seq % keys, t = 0) into buf
 * (BENCH_PAYLOAD + 1 bytes); returns BENCH_PAYLOAD. */
size_t bench_payload(char *buf, long seq, long keys);

/* Store ceilings: fill a minimal outbox table with a->n events, then
 * claim + mark it in batches of a->batch; prints rows/s and busy cores
 * (bench_clock_print). */
void bench_store_sqlite(const bench_args *a);
void bench_store_pg(const bench_args *a);

/* Broker ceilings: a->n messages as the plugin sends them, pipelined
 * with the plugin's window, every one confirmed; prints msgs/s and busy
 * cores (bench_clock_print). */
void bench_broker_stdout(const bench_args *a);
void bench_broker_kafka(const bench_args *a);
void bench_broker_rabbitmq(const bench_args *a);
void bench_broker_nats(const bench_args *a);

/* RabbitMQ: declare and purge queue a->dest. NATS: create (or purge)
 * stream a->dest capturing subjects a->extra. */
void bench_rabbitmq_queue(const bench_args *a);
void bench_nats_stream(const bench_args *a);

/* The consumer side: what a consumer reads back. */
typedef struct bench_tally {
    long count;
    long order_violations; /* an event older than one seen before, same key */
    long duplicates;       /* the same seq of a key again */
    long nlat;
    double *lat_ms; /* commit-to-arrival of each event with t > 0 */
    long cap;
    long *last_seq; /* per key, -1: none yet */
    long keys;
    int64_t first_us, last_us; /* wall clock of the first, last arrival */
} bench_tally;

void bench_tally_init(bench_tally *t, long keys);
/* One message: find seq, k and t in the payload bytes. */
void bench_tally_add(bench_tally *t, const char *payload, size_t len,
                     long skip);
/* "count N order_violations V duplicates D p50 X p99 Y max Z" (ms). */
void bench_tally_print(bench_tally *t);

/* Read events until a->n arrived or a->idle_ms passed without one (after
 * the first); print the tally. fd: JSON lines (the stdout broker) on the
 * file a->target (a FIFO). */
void bench_consume_fd(const bench_args *a);
void bench_consume_kafka(const bench_args *a);
void bench_consume_rabbitmq(const bench_args *a);
void bench_consume_nats(const bench_args *a);

/* Start-up: exec a->target (outbox-relay) with `run -c a->dest`, its
 * stdout a pipe (the config's stdout broker writes /dev/stdout, over a
 * pre-filled store), and print the milliseconds from before the exec to
 * the first byte published; then SIGTERM it. */
void bench_startup(const bench_args *a);

/* Touch a->ready (when set): the consumer is subscribed. */
void bench_signal_ready(const bench_args *a);

#endif
