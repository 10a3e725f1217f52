/* The chaos suite: real relay processes between a real store and a real
 * broker, while two writers commit (and roll back) small transactions,
 * under a fault schedule: relays killed with SIGKILL at random moments,
 * the broker's server stopped, the database restarted, the relay's
 * connections cut, stalled or slowed through a TCP proxy. Afterwards what
 * the broker itself holds is checked against what the writers committed.
 *
 * A run is one store x broker pair and one schedule. The store and broker
 * adapters (chaos_stores.c, chaos_brokers.c) know how to set their side up,
 * what the relay's config needs, how to write a transaction, how to read
 * back what was delivered and how to stop or restart their server;
 * chaos.c holds the writers, the faults and the checks, written once for
 * every pair; chaos_schedule.c reads a schedule from its text. */
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

/* ---- fault schedules ---------------------------------------------------- */

typedef enum chaos_fault {
    CHAOS_KILL,          /* SIGKILL a relay at random, start it again */
    CHAOS_BROKER_DOWN,   /* stop the broker's server, start it ms later */
    CHAOS_STORE_RESTART, /* restart the database server, down for ms */
    CHAOS_COLD_START,    /* the relays start while the broker's server is
                            stopped; it starts ms later (first step only) */
    CHAOS_CUT,           /* reset the link's connections (RST), count times */
    CHAOS_STALL,         /* the link forwards nothing for ms (no FIN, no
                            RST), then its connections are dead for good */
    CHAOS_SLOW,          /* each chunk on the link waits delay_ms, for ms */
} chaos_fault;

/* The relays' connections a proxy fault is aimed at (both: the two at
 * once). */
typedef enum chaos_link {
    CHAOS_LINK_STORE,
    CHAOS_LINK_BROKER,
    CHAOS_LINK_BOTH
} chaos_link;

typedef struct chaos_step {
    chaos_fault fault;
    chaos_link link; /* cut, stall, slow */
    int count;       /* kill: SIGKILLs; cut: cuts */
    int ms;          /* the outage, stall or slow period */
    int delay_ms;    /* slow */
} chaos_step;

#define CHAOS_MAX_STEPS 8

typedef struct chaos_schedule {
    chaos_step steps[CHAOS_MAX_STEPS];
    int n;
    char name[160]; /* for the summary: "broker-down 10s", "kill 20" */
} chaos_schedule;

/* Read a schedule: steps separated by commas, each NAME[:ARG...]:
 *
 *   kill[:N]                 N SIGKILLs (default OBX_CHAOS_KILLS, or 20)
 *   broker-down[:DUR]        the broker's server stopped for DUR
 *   store-restart[:DUR]      the database restarted, down for DUR
 *   cold-start[:DUR]         the relays start with the broker stopped; it
 *                            starts DUR later (the first step only)
 *   cut:LINK[:N]             LINK (store, broker or both) cut N times (3)
 *   stall:LINK[:DUR]         LINK stalled for DUR (20s)
 *   slow:LINK[:DELAY[:DUR]]  LINK slowed, DELAY before each chunk
 *                            (20ms), for DUR (5s)
 *
 * DUR is 500ms, 10s or a number of seconds; an outage without one lasts
 * 10 s, and OBX_CHAOS_OUTAGE=DUR sets the length of every outage (the
 * long form: 30s). Fails the running test on a bad schedule. */
void chaos_schedule_parse(const char *spec, chaos_schedule *out);
bool chaos_schedule_has(const chaos_schedule *s, chaos_fault f);
/* Whether any step of s goes through the proxy of link l. */
bool chaos_schedule_proxies(const chaos_schedule *s, chaos_link l);
/* The SIGKILLs of s, all steps together. */
int chaos_schedule_kills(const chaos_schedule *s);

/* ---- adapters ------------------------------------------------------------ */

typedef struct chaos_ctx chaos_ctx;

typedef struct chaos_store {
    const char *name; /* "sqlite", "pg_poll", "pg_wal" */
    int relays;       /* relays running at once */
    /* Most events a SIGKILL may make a store hand out again: 0 means one
     * batch (CHAOS_BATCH), right for polling stores. */
    long dups_per_kill;
    /* A restart of the database may make it hand out again everything
     * committed before (pg_wal: the server keeps the slot's confirmed
     * position only as of its last save, docs/pg-wal.md). */
    bool restart_replays;
    /* Create what the run needs (file, schema; a server of the run's own
     * when c->own_store_server); the relay creates the table itself. */
    void (*setup)(chaos_ctx *c);
    /* The store lines of the relays' config (through c->store_port when
     * it is set). */
    void (*config)(chaos_ctx *c, FILE *fp);
    /* Once the relays run: wait until writes will be relayed (the table
     * exists; for pg_wal, the slot). */
    void (*ready)(chaos_ctx *c);
    /* A writer connection, and one transaction of n events on it,
     * committed or rolled back. Returns 0 when it did what was asked, -1
     * when it is sure the transaction did not commit (the events then
     * count as not committed). A writer outlives a restart of the
     * database: it reconnects, and learns whether a COMMIT whose answer
     * was lost took effect. Runs on the writer's thread. */
    void *(*writer_open)(chaos_ctx *c);
    int (*write_tx)(void *w, const chaos_ev *evs, int n, bool commit);
    void (*writer_close)(void *w);
    /* Restart the database server (of the run's own), down for down_ms,
     * in a child process whose pid it returns: exit 0 once the server
     * accepts connections again. NULL: no server. */
    pid_t (*restart)(chaos_ctx *c, int down_ms);
    /* The 127.0.0.1 TCP port the relays reach the server on, for the
     * fault proxy. NULL: no network between them. */
    int (*server_port)(chaos_ctx *c);
    void (*teardown)(chaos_ctx *c);
    void *state;
} chaos_store;

typedef struct chaos_broker {
    const char *name; /* "stdout", "kafka", ... */
    /* A server of the run's own when c->own_broker_server. */
    void (*setup)(chaos_ctx *c);
    /* Through c->broker_port when it is set. */
    void (*config)(chaos_ctx *c, FILE *fp);
    /* Everything delivered so far, in delivery order. `want` distinct
     * committed events are expected: an adapter that consumes may stop
     * once it has that many and nothing more arrives. */
    void (*read_back)(chaos_ctx *c, size_t want, chaos_seen *out);
    /* Read what has arrived, for about ms, into the adapter's own copy
     * (read_back then adds only what is newer), for a broker that does
     * not keep everything for a long run (the Kafka mock keeps 5 MiB per
     * partition). NULL: the broker keeps everything. */
    void (*read_ahead)(chaos_ctx *c, int ms);
    /* Stop the run's own server, keeping what it holds; start it again,
     * on the same port. Each returns once done. NULL: no server. */
    void (*stop)(chaos_ctx *c);
    void (*start)(chaos_ctx *c);
    /* As chaos_store's. */
    int (*server_port)(chaos_ctx *c);
    void (*teardown)(chaos_ctx *c);
    void *state;
} chaos_broker;

struct chaos_ctx {
    char *dir;
    chaos_store *store;
    chaos_broker *broker;
    char name[64]; /* "sqlite -> kafka": the pair */
    unsigned id;   /* unique per run: schema, slot and topic names */
    unsigned seed;
    /* The schedule stops or restarts the server: the adapter starts one
     * of the run's own (in dir) instead of the ctest fixture's. */
    bool own_store_server, own_broker_server;
    /* Non-zero: the port on 127.0.0.1 the relays must use instead of the
     * server's (the fault proxy in front of it). */
    int store_port, broker_port;
    /* committed events per second over all writers, paced; 0: the kill
     * loop's pace (a pause of 2-5 ms after each transaction) */
    int rate;
};

/* Run a schedule on a pair: the writers write while its steps happen in
 * order, then a drain and the checks: nothing lost, no phantom, no
 * per-key order break, duplicates bounded by what the faults may have
 * caught in flight, no dead letter; for schedules without kills also
 * that each fault was felt (a circuit opened, connections were cut,
 * progress stopped during a stall), that the relays made progress again
 * within a bound after it, and that no attempt was counted (the relays'
 * /metrics). Fails the running cmocka test on a guarantee broken; writes
 * its summary row to OBX_CHAOS_SUMMARY when set. Main thread only. */
void chaos_run_schedule(chaos_store *store, chaos_broker *broker,
                        const chaos_schedule *sch);

/* After a run that failed the test half-way (an adapter's fail_msg):
 * stop its writers, relays and proxies, tear its store and broker down
 * (their servers of the run's own stop), remove its directory. Nothing
 * when no run is left over. For a cmocka teardown. */
void chaos_cleanup(void);

/* Adapters, by name: a fresh copy the caller frees. Fails the test for a
 * name that has none. */
chaos_store *chaos_store_named(const char *name, int relays);
chaos_broker *chaos_broker_named(const char *name);

/* Clocks, for the adapters. */
int64_t chaos_mono_ms(void);
void chaos_sleep_ms(int ms);

/* ---- runs that drive their own faults (the soak) -----------------------
 * The pieces of a run: the pair set up, the store's relays and the writers
 * started; then at the end the same drain, read-back and checks. One
 * thread drives a run. */

/* What the checks found: committed and rolled back by the writers; what
 * the broker holds (delivered, with copies), committed events it lacks
 * (lost), events it has that were never committed (phantoms), first
 * deliveries out of commit order within a key, and later copies. */
typedef struct chaos_verdict {
    long committed, rolled_back, delivered, lost, phantoms, order_breaks,
        duplicates;
    /* Messages the relays gave up on (a timeout, an outage) and later saw
     * delivered after all, by their own count (the Kafka plugin logs it):
     * each is one copy at most. */
    long late;
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
/* Spend about ms letting the broker adapter read what has arrived so far
 * (chaos_broker.read_ahead); a sleep for a broker that keeps all. */
void chaos_run_read_ahead(chaos_run *run, int ms);
/* Metric `name` of every relay's /metrics, summed; -1 when one does not
 * answer (yet). */
double chaos_run_metric(chaos_run *run, const char *name);
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
