/* The plugin conformance kit: the store and broker contract suites
 * (store.h, broker.h) as a library, run against a plugin's .so through a
 * harness its author writes. The in-tree plugins run the same suites
 * (tests/contract/); docs/writing-plugins.md walks through a harness.
 *
 *     cc -o my_contract my_contract.c $(pkg-config --cflags --libs
 * outbox-contract)
 *
 * A harness is a struct of callbacks that lets the kit reach the plugin's
 * backend from outside the plugin, as the application and the operator
 * would: write an event into the store's backend, read back what arrived
 * at the broker, stop and start the backend. Every check a plugin cannot
 * take (a store without leases, a broker that cannot be down) is declared
 * in the harness's not_applicable list with a reason; the suite prints
 * each one. A check the plugin lacks the means for (an optional op left
 * NULL, a callback not given) and that is not declared fails: nothing
 * passes silently.
 *
 * Threads: the suites run on the caller's thread, one check at a time;
 * a harness callback may be called from a second thread of the kit only
 * where it says so (store write during claim_wait). Not for use from two
 * threads at once. Output goes to stdout (cmocka's format). Not part of
 * the plugin ABI: a plugin never links against it.
 */
#ifndef OUTBOX_CONTRACT_H
#define OUTBOX_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A check the plugin cannot take, and why (both static strings). Lists end
 * with {NULL, NULL}. A name the suite does not know fails the suite. */
typedef struct obx_contract_na {
    const char *check;
    const char *reason;
} obx_contract_na;

/* What the kit asks of one instance's config. */
typedef struct obx_contract_conf {
    /* 0 for the first instance of a check, 1 for a second one sharing the
     * same backend (another relay: give it another lease owner). */
    int instance;
    /* A lease this short, in milliseconds (lease_after_close,
     * lease_expiry), or 0: the plugin's default. */
    int64_t lease_ms;
} obx_contract_conf;

/* Where an event stands in the store, as the harness reads it from the
 * backend (store inspect). */
typedef enum obx_contract_state {
    OBX_CONTRACT_ABSENT = 0,    /* not there (acked by deleting, purged) */
    OBX_CONTRACT_PENDING = 1,   /* unpublished, not dead, not leased */
    OBX_CONTRACT_CLAIMED = 2,   /* leased to an instance */
    OBX_CONTRACT_PUBLISHED = 3, /* acked, kept */
    OBX_CONTRACT_DEAD = 4,      /* a dead letter */
} obx_contract_state;

typedef struct obx_contract_record {
    obx_contract_state state;
    uint32_t attempts;    /* failed attempts recorded */
    int64_t retry_at_us;  /* not before; 0 (or in the past): due */
    char last_error[256]; /* "" when none */
    char dead_reason[256];
    char dead_destination[256]; /* "" when none */
} obx_contract_record;

/* The store harness. Callbacks return 0 on success, -1 with err filled
 * (the check then fails, naming the callback). */
typedef struct obx_contract_store_harness {
    uint32_t struct_size; /* sizeof(obx_contract_store_harness) */
    const char *name;     /* shown in the output: "sqlite" */
    /* The plugin: a path to its .so (contains '/'), or a bare name looked
     * up as obx_store_NAME.so in plugin_dir. */
    const char *plugin;
    const char *plugin_dir;
    void *ctx; /* passed to every callback */

    /* Required. A fresh, empty backend for one check (a new database,
     * schema or directory); teardown (optional) removes it. */
    int (*setup)(void *ctx, char *err, size_t errlen);
    void (*teardown)(void *ctx);
    /* Required. The store.* keys of an instance as config text, one
     * "key = value" per line, without the "store." prefix. */
    int (*config)(void *ctx, const obx_contract_conf *req, char *text,
                  size_t len, char *err, size_t errlen);
    /* Required. Commit one event as the application does: key (never
     * NULL or empty) as its ordering key, payload (a short string) as
     * its payload. May be called from a second thread while the kit's
     * thread waits in claim() (claim_wait). */
    int (*write)(void *ctx, const char *key, const char *payload, char *err,
                 size_t errlen);
    /* Optional (declare "inspect" n/a without it). The store's record of
     * event_id, read from the backend; OBX_CONTRACT_ABSENT when there is
     * none. Makes release, bury and dead_ops check what was recorded. */
    int (*inspect)(void *ctx, const char *event_id, obx_contract_record *rec,
                   char *err, size_t errlen);
    /* Optional (declare "backend_down" n/a without them). Make the
     * backend unreachable / reachable again. */
    int (*backend_stop)(void *ctx, char *err, size_t errlen);
    int (*backend_start)(void *ctx, char *err, size_t errlen);

    /* close() makes the events it still held claimable at once (the store
     * can tell); false: they come back when their lease runs out. */
    bool close_returns_claims;
    /* stats() reports lag_bytes (a WAL store); false: it must leave the
     * core's -1. */
    bool reports_lag;
    const obx_contract_na *not_applicable;
} obx_contract_store_harness;

/* A message as it arrived at the broker (broker read_back). Strings are
 * NUL-terminated; the harness fills them, truncating what does not fit. */
typedef struct obx_contract_msg {
    char event_id[128];
    char key[128]; /* "" when the broker does not carry it */
    char payload[512];
} obx_contract_msg;

/* The broker harness. */
typedef struct obx_contract_broker_harness {
    uint32_t struct_size; /* sizeof(obx_contract_broker_harness) */
    const char *name;
    const char *plugin; /* as the store harness's; obx_broker_NAME.so */
    const char *plugin_dir;
    void *ctx;

    /* Required. A fresh destination for one check; teardown optional. */
    int (*setup)(void *ctx, char *err, size_t errlen);
    void (*teardown)(void *ctx);
    /* Required. The broker.* keys, as the store harness's config. */
    int (*config)(void *ctx, char *text, size_t len, char *err, size_t errlen);
    /* Required. The destination events of this check go to (a topic,
     * a queue's routing key, a subject). Static for the check. */
    const char *(*destination)(void *ctx);
    /* Required. Every message that arrived at the destination since
     * setup, in arrival order (per key at least), into out[0..max);
     * *n the count. Waits up to wait_ms for at least `want` messages,
     * then returns what is there. */
    int (*read_back)(void *ctx, size_t want, int wait_ms, obx_contract_msg *out,
                     size_t max, size_t *n, char *err, size_t errlen);
    /* Optional (declare "not_attempted" n/a without it). Change *ev, in
     * memory the harness owns (say a static buffer), so that the broker
     * fails it and only it: an unroutable destination, an oversize
     * payload. The kit calls it on an event before publish(). */
    int (*poison)(void *ctx, obx_event *ev, char *err, size_t errlen);
    /* Optional (declare "unavailable" n/a without them). */
    int (*backend_stop)(void *ctx, char *err, size_t errlen);
    int (*backend_start)(void *ctx, char *err, size_t errlen);
    /* publish timeout_ms the kit passes (0: 5000). */
    int timeout_ms;
    const obx_contract_na *not_applicable;
} obx_contract_broker_harness;

/* Run the store suite against h's plugin. Prints one line per check
 * (passed, failed with the reason, or n/a with the declared reason) and a
 * summary. Returns the number of failed checks (0: conformant); a harness
 * that is malformed (a required callback missing, an unknown check name
 * in not_applicable, a plugin that does not load) counts as a failure.
 * Thread: the caller's (see the top of this file). */
int obx_contract_store_run(const obx_contract_store_harness *h);

/* The same for a broker. */
int obx_contract_broker_run(const obx_contract_broker_harness *h);

#ifdef __cplusplus
}
#endif

#endif
