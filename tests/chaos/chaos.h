/* The chaos suite: real relay processes between a real store and a real
 * broker, killed with SIGKILL at random moments while two writers commit
 * (and roll back) small transactions; afterwards what the broker itself
 * holds is checked against what the writers committed.
 *
 * A run is one store x broker pair. The store and broker adapters
 * (chaos_stores.c, chaos_brokers.c) know how to set their side up, what
 * the relay's config needs, how to write a transaction and how to read
 * back what was delivered; chaos.c holds the writers, the kill loop and
 * the checks, written once for every pair. */
#ifndef OBX_TEST_CHAOS_H
#define OBX_TEST_CHAOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CHAOS_WRITERS 2
#define CHAOS_KEYS_PER_WRITER 200
#define CHAOS_MAX_RELAYS 3
#define CHAOS_BATCH 50

/* One event a writer tried: writer w, its sequence number (over all its
 * attempts, committed or not), the key index within the writer. */
typedef struct chaos_ev {
    int w;
    long seq;
    int key;
} chaos_ev;

/* What came back from the broker, in delivery order (per key, the order
 * the broker keeps: a partition, a queue, a stream subject). */
typedef struct chaos_seen {
    chaos_ev *items;
    size_t n, cap;
} chaos_seen;

void chaos_seen_add(chaos_seen *s, int w, long seq, int key);
void chaos_seen_free(chaos_seen *s);
/* Parse {"w":W,"seq":S,"k":K} (as the writers build it) into s. */
void chaos_seen_add_payload(chaos_seen *s, const char *payload, size_t len);

typedef struct chaos_ctx chaos_ctx;

typedef struct chaos_store {
    const char *name; /* "sqlite", "pg_poll", "pg_wal" */
    int relays;       /* relays running at once */
    /* Most events a SIGKILL may make a store hand out again: 0 means one
     * batch (CHAOS_BATCH), right for polling stores. */
    long dups_per_kill;
    /* Create what the run needs (file, schema); the relay creates the
     * table itself. */
    void (*setup)(chaos_ctx *c);
    /* The store lines of relay i's config. */
    void (*config)(chaos_ctx *c, FILE *fp);
    /* Once the relays run: wait until writes will be relayed (the table
     * exists; for pg_wal, the slot). */
    void (*ready)(chaos_ctx *c);
    /* A writer connection, and one transaction of n events on it,
     * committed or rolled back. Returns 0, or -1 when the store said no
     * (the transaction then counts as not committed). */
    void *(*writer_open)(chaos_ctx *c);
    int (*write_tx)(void *w, const chaos_ev *evs, int n, bool commit);
    void (*writer_close)(void *w);
    void (*teardown)(chaos_ctx *c);
    void *state;
} chaos_store;

typedef struct chaos_broker {
    const char *name; /* "stdout", "kafka", ... */
    void (*setup)(chaos_ctx *c);
    void (*config)(chaos_ctx *c, FILE *fp);
    /* Everything delivered so far, in delivery order. `want` distinct
     * committed events are expected: an adapter that consumes may stop
     * once it has that many and nothing more arrives. */
    void (*read_back)(chaos_ctx *c, size_t want, chaos_seen *out);
    void (*teardown)(chaos_ctx *c);
    void *state;
} chaos_broker;

struct chaos_ctx {
    char *dir;
    chaos_store *store;
    chaos_broker *broker;
    char name[64]; /* "sqlite-kafka": the pair */
    unsigned id;   /* unique per run: schema, slot and topic names */
    unsigned seed;
    /* committed events per second over all writers, paced; 0: the kill
     * loop's pace (a pause of 2-5 ms after each transaction) */
    int rate;
};

/* Run the kill loop on a pair: `kills` SIGKILLs at random moments, then a
 * drain and the checks. Fails the running cmocka test on a guarantee
 * broken; writes its summary row to OBX_CHAOS_SUMMARY when set. */
void chaos_kill_loop(chaos_store *store, chaos_broker *broker, int kills);

/* Adapters, by name: a fresh copy the caller frees. Fails the test for a
 * name that has none. */
chaos_store *chaos_store_named(const char *name, int relays);
chaos_broker *chaos_broker_named(const char *name);

/* For the adapters: a relay's config lines go to fp; the run's own
 * directory; clocks. */
int64_t chaos_mono_ms(void);
void chaos_sleep_ms(int ms);

/* ---- runs other than the kill loop (the soak) ------------------------
 * The kill loop's pieces for a run that drives its own faults: the pair
 * set up, the store's relays and the writers started, then at the end the
 * same drain, read-back and checks. One thread drives a run. */

/* What the checks found: committed and rolled back by the writers; what
 * the broker holds (delivered, with copies), committed events it lacks
 * (lost), events it has that were never committed (phantoms), first
 * deliveries out of commit order within a key, and later copies. */
typedef struct chaos_verdict {
    long committed, rolled_back, delivered, lost, phantoms, order_breaks,
        duplicates;
} chaos_verdict;

typedef struct chaos_run chaos_run;

/* Set the pair up and start its relays and the writers at `rate`
 * committed events/s (0: the kill loop's pace), each writer able to write
 * `max_events`. The run owns store and broker until chaos_run_finish
 * (which frees neither). Fails the test when a step fails. */
chaos_run *chaos_run_start(chaos_store *store, chaos_broker *broker, int rate,
                           long max_events);
chaos_ctx *chaos_run_ctx(chaos_run *run);
/* Relay i's pid (it runs until chaos_run_finish). */
pid_t chaos_run_relay(chaos_run *run, int i);
/* Stop the writers, drain (until every committed event is delivered, or
 * 90 s), stop the relays with SIGTERM, read back and judge; print the
 * relays' logs when something was lost, invented or reordered; tear the
 * pair down and free the run. */
chaos_verdict chaos_run_finish(chaos_run *run);

/* The kafka adapter's mock cluster process (tests/kafka/mock_cluster),
 * for faults: SIGUSR1 takes its brokers down, SIGUSR2 up, SIGSTOP stalls
 * it. Fails the test when the run's broker is not kafka. */
pid_t chaos_kafka_mock(chaos_ctx *c);

#endif
