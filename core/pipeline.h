/* One pipeline: a store instance, a broker instance, and the engine state
 * that moves events between them (claim -> publish -> ack) on its own
 * thread. Nothing here is shared between pipelines except the logger and
 * the read-only stop flag. */
#ifndef OBX_CORE_PIPELINE_H
#define OBX_CORE_PIPELINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <outbox/plugin.h>

#include "backoff.h"
#include "host.h"
#include "keyset.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "settings.h"

/* Room for what a store op writes into the core's errstr buffers (their
 * messages explain a lost slot or a schema to fix: never cut them at the
 * ABI's per-event OBX_ERRSTR_LEN). */
#define OBX_CORE_ERR_LEN 2048
/* A dead letter's reason: the broker's errstr, the attempt count, and a
 * failed DLQ-topic publish's errstr after it. */
#define OBX_REASON_LEN (2 * OBX_ERRSTR_LEN + 128)

/* Which side of the pipeline tripped the circuit breaker. */
typedef enum obx_circuit_side {
    OBX_CIRCUIT_NONE,   /* never tripped */
    OBX_CIRCUIT_STORE,  /* a claim or settle came back UNAVAILABLE */
    OBX_CIRCUIT_BROKER, /* a publish or health probe came back UNAVAILABLE */
} obx_circuit_side;

typedef struct obx_circuit {
    bool open;
    /* the side that opened it last; kept after it closes, so an empty
     * claim after a store outage still knows the store was the cause */
    obx_circuit_side side;
    uint32_t failures; /* consecutive failed probes */
    /* the broker's health op answered OK since it last tripped: an empty
     * claim then closes a broker-side circuit too (no event may come to
     * prove the broker back, and /readyz would stay failed meanwhile) */
    bool health_ok;
    int64_t next_probe_us;              /* monotonic */
    int64_t opened_us;                  /* monotonic */
    char reason[OBX_CORE_ERR_LEN + 32]; /* "<side> unavailable: <why>" */
} obx_circuit;

/* At most `burst` lines per second; the rest are counted and summed up in
 * the next line that is written. */
typedef struct obx_ratelimit {
    int64_t window_us; /* monotonic start of the current second */
    unsigned written, dropped, burst;
} obx_ratelimit;

/* Per-batch scratch, sized for batch_size at the first open. */
typedef struct obx_batch {
    obx_event **claimed;
    obx_event **pub;
    obx_result *results;
    char *dest_buf; /* expanded route templates, NUL-separated */
    size_t dest_cap;
    size_t *dest_off; /* per published event: its expansion in dest_buf */
    obx_event **acks;
    obx_release *rels;
    obx_burial *burs;
    char (*reasons)[OBX_REASON_LEN];
    size_t n_claimed, n_pub, n_acks, n_rels, n_burs;
    size_t n_dlq_acks; /* acks that are dead letters delivered to the DLQ */
    /* claimed by the store's claim_ahead while the other batch was out:
     * it may hold later events of that batch's keys, so it is routed
     * against the other batch's releases as an unordered store's is */
    bool past_own;
} obx_batch;

/* The thread that runs the broker's publish for a batch while the
 * pipeline thread does store work. One call at a time: the pipeline
 * thread calls other broker ops only while it is idle. */
typedef struct obx_publisher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, busy, quit;
    obx_batch *batch; /* the batch being published */
    obx_status st;    /* publish's return */
} obx_publisher;

typedef struct obx_pipeline {
    char *name;
    obx_logger *lg;
    char component[160];
    const atomic_int *stop; /* the relay's: set by the signal thread */
    atomic_int halt;        /* this pipeline only: a reload replaces it */
    bool once;              /* drain what is pending, then return */
    bool once_idle;         /* once: the last claim found nothing */

    obx_pipeline_settings set;
    const obx_loaded *store_pl, *broker_pl;
    const obx_store_ops *sops;
    const obx_broker_ops *bops;
    void *store_conf, *broker_conf; /* filled from the option tables */
    obx_host_ctx store_hctx, broker_hctx;
    obx_host store_host, broker_host;
    void *store, *broker; /* NULL until opened */

    obx_pipeline_metrics metrics;
    int64_t stats_interval_us;
    int64_t next_stats_us;

    obx_rng rng;
    obx_circuit circuit;
    obx_keyset held;      /* keys waiting for a retry (unordered stores only) */
    obx_keyset failed;    /* keys that failed in the current batch */
    obx_keyset returning; /* keys with an event in the other batch's
                             release list (unordered stores, and a batch
                             claimed past_own) */
    /* Two batches: while one is out at the broker (on the publisher's
     * thread), the pipeline thread settles the other's results and claims
     * the next batch into it. cur is the one to publish next. */
    obx_batch bs[2];
    int cur;
    /* claim_ahead's back-off (engine.c ahead_due): full batches still to
     * go out without a claim ahead, and the length of the last pause. */
    int ahead_skip, ahead_backoff;
    obx_publisher pub;

    obx_ratelimit retry_log;  /* debug lines for retries */
    int64_t last_progress_us; /* monotonic: events published or buried */
    bool broker_fatal;        /* the last publish returned OBX_FATAL */
    bool stats_ok;            /* the last stats call succeeded */
    bool standby;             /* the store said another relay has it */
    char stats_err[OBX_CORE_ERR_LEN];

    /* Read by the main thread for systemd: set once store and broker are
     * open; the engine loop's last sign of life (monotonic us). */
    atomic_int opened;
    atomic_int_fast64_t heartbeat_us;

    pthread_t thread;
    pthread_t waker; /* the thread to wake when this one's work is done */
    bool started;
    atomic_int rc;       /* thread result: 0 ok, 1 fatal (read by the main
                            thread) */
    atomic_int finished; /* set after rc, just before the thread returns */

    /* Reload bookkeeping (relay.c, main thread only). A pipeline a reload
     * started is on trial until it opens: if it fails before that, the
     * relay runs `previous` (the halted pipeline it replaced, NULL for an
     * added one) again instead of stopping. `reverted`: running again on
     * settings the config file no longer has, so the next reload restarts
     * it even when the file is unchanged. */
    bool trial, reverted;
    struct obx_pipeline *previous;
} obx_pipeline;

/* Initialise engine state (metrics, key sets); plugins must be loaded and
 * their configs filled. Batch buffers come with the first open. 0 / -1. */
int obx_pipeline_prepare(obx_pipeline *p);

/* Allocate the batch buffers, then open store and broker (those not open
 * yet), retrying with circuit backoff while they are unavailable and the
 * stop flag is clear (with once, for at most once_timeout). 0, or -1 on a
 * fatal error. */
int obx_pipeline_open(obx_pipeline *p);

/* Run the claim -> publish -> ack loop until stop (or, with once, until
 * nothing is pending). Returns 0, or 1 after a fatal error. Closes the
 * plugin instances before returning. */
int obx_pipeline_run(obx_pipeline *p);

/* One claim -> publish -> settle cycle. Returns the number of events
 * claimed, or -1 on a fatal error. */
long obx_pipeline_step(obx_pipeline *p);

/* One turn of the run loop: wait out an open circuit (probing), reopen a
 * lost broker, refresh stats, then step. Same returns as step. */
long obx_pipeline_tick(obx_pipeline *p);

/* Flush and close the plugin instances (idempotent). */
void obx_pipeline_close(obx_pipeline *p);

/* Free engine state (not the plugin configs, which the relay owns). */
void obx_pipeline_release(obx_pipeline *p);

#endif
