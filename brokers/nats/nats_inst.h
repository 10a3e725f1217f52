/* The instance of the nats broker, shared by its two halves: nats.c (the
 * option table, the connection and its callbacks, the ops) and
 * nats_publish.c (the publish calls and their PubAcks).
 *
 * Threads: cnats calls the PubAck handler and the connection callbacks on
 * its own threads. Everything they touch (the current call, the down
 * state) is guarded by natsb.mu; the pipeline thread waits on natsb.cv.
 * cnats is never called with mu held. Internal to the plugin (hidden
 * visibility); not an ABI.
 */
#ifndef NATSB_INST_H
#define NATSB_INST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>
#include <outbox/plugin.h>

#include "keyset.h"
#include "nats_config.h"
#include "nats_stream.h"

/* Where one event of the current call stands. */
typedef enum natsb_state {
    NATSB_UNSENT = 0,   /* not handed to cnats */
    NATSB_INFLIGHT = 1, /* handed over, no PubAck yet */
    NATSB_DONE = 2,     /* result filled */
    NATSB_HELD = 3,     /* not attempted: an earlier event of its key failed */
    NATSB_NORESP = 4,   /* "no responders": resolved in finish() */
} natsb_state;

/* The publish call in progress. Guarded by natsb.mu while active. */
typedef struct natsb_call {
    bool active; /* PubAcks may fill results */
    obx_event *const *events;
    obx_result *results;
    unsigned char *state; /* natsb_state per event */
    size_t n;
    size_t inflight;
    size_t answered;
    obc_keyset ids;    /* event id -> index + 1 */
    obc_keyset failed; /* keys with a failed event in this call */
} natsb_call;

typedef struct natsb {
    const obx_host *host;
    const natsb_config *conf; /* borrowed from the core */
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    /* Guarded by mu. */
    natsb_call call;
    bool down; /* not connected */
    char down_reason[OBX_ERRSTR_LEN];
    bool slow; /* an asynchronous error on our connection (PubAcks dropped
                  as a slow consumer, a permissions violation): the
                  events still waiting are not at fault */
    char slow_reason[OBX_ERRSTR_LEN];
    bool closing;     /* close() began: callbacks stay quiet */
    bool closed_seen; /* cnats ran the closed callback: no more will come */
    bool renewed;     /* natsb_renew ran since the last connect */
    uint64_t late_ok, late_failed;
    /* PubAck handlers running: counted on entry, before the handler
     * takes mu, so close() also waits for one that has not locked yet. */
    atomic_int in_puback;
    /* Pipeline thread only. */
    unsigned char *state;
    size_t state_cap;
    bool stream_ok;      /* the stream was checked since the last connect */
    bool sent_any;       /* js_PublishMsgAsync was called on js */
    bool window_checked; /* the duplicate window was compared once */
    natsb_stream_state stream;
    uint64_t late_logged;
} natsb;

/* Fill one result: status and a formatted reason (cut at OBX_ERRSTR_LEN). */
void natsb_fill(obx_result *r, obx_status st, const char *fmt, ...)
    OBX_PRINTF(3, 4);

/* Under mu: mark the connection down with why (logged once, masked by the
 * caller) and wake the pipeline thread. */
void natsb_set_down_locked(natsb *b, const char *why);

/* Take back and drop what cnats still holds of our asynchronous
 * publishes. Pipeline thread, mu not held. */
void natsb_drop_pending(natsb *b);

/* Log (and export as a gauge) PubAcks that came for calls already over.
 * Pipeline thread. */
void natsb_log_late(natsb *b);

/* The jsPubAckHandler of the instance's JetStream context (closure: the
 * instance); runs on a cnats thread; destroys msg. */
void natsb_on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                     void *closure);

/* Every result UNAVAILABLE with why; returns OBX_UNAVAILABLE. */
obx_status natsb_fail_all(obx_result *results, size_t n, const char *why);

/* Room for n per-event states; -1 when out of memory. Pipeline thread. */
int natsb_reserve(natsb *b, size_t n);

/* One publish call (broker.h) in JetStream mode: asynchronous publishes
 * in a window of max_in_flight, a result per event from its PubAck, what
 * is unanswered at the deadline taken back. The connection must be up.
 * Pipeline thread. */
obx_status natsb_publish_js(natsb *b, obx_event *const *events, size_t n,
                            obx_result *results, int timeout_ms);

/* One publish call in core mode: plain publishes and one flush. */
obx_status natsb_publish_core(natsb *b, obx_event *const *events, size_t n,
                              obx_result *results, int timeout_ms);

#endif
