/* What the drain benchmarks share: a backlog of N events of 256 bytes in
 * sqlite or pg_poll (the relay's own DDL), the relay run with `--once`
 * over it, and the clock. Written for bench/rabbitmq_drain.c; the same
 * code as in bench/kafka_drain.c, which can move onto it.
 *
 * Everything dies (exit 1, a message on stderr) on error: these are
 * benchmarks run by hand, not libraries. */
#ifndef OBX_BENCH_DRAIN_COMMON_H
#define OBX_BENCH_DRAIN_COMMON_H

#include <stdbool.h>

#include <libpq-fe.h>

#define DRAIN_PAYLOAD 256

typedef struct drain_bench {
    const char *name; /* the program, for messages */
    long n;
    long batch;
    int keys;
    char dir[256];           /* temp dir: sqlite file, configs, outputs */
    const char *pg_conninfo; /* NULL: no PostgreSQL */
    PGconn *pg;
    char pg_schema[64];
} drain_bench;

double drain_now_s(void);
void drain_die(const drain_bench *b, const char *what, const char *why);

/* The payload of event seq: {"seq":N,"pad":"xxx..."}, DRAIN_PAYLOAD
 * bytes, into buf (DRAIN_PAYLOAD + 1 bytes). */
void drain_payload(char *buf, long seq);

/* mkdtemp the work directory; remove it again. */
void drain_make_dir(drain_bench *b);
void drain_remove_dir(drain_bench *b);

/* Connect to pg_conninfo, name the schema <prefix>_<pid>; drop it and
 * disconnect. */
void drain_pg_connect(drain_bench *b, const char *prefix);
void drain_pg_disconnect(drain_bench *b);

/* Write the relay config for store (sqlite, pg_poll) and broker with the
 * broker's keys (lines), batch_size = b->batch, then fill a fresh
 * backlog of b->n events over b->keys keys, run `outbox-relay run
 * --once`, check that every event was published. Events per second. */
double drain_relay_run(drain_bench *b, const char *store, const char *broker,
                       const char *broker_keys);

#endif
