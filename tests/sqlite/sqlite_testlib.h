/* Helpers for the sqlite store tests: a temp database, the plugin loaded
 * from the build tree, a raw connection playing the application writer. */
#ifndef SQ_TESTLIB_H
#define SQ_TESTLIB_H

#include <stdint.h>

#include <sqlite3.h>

#include <outbox/plugin.h>

#include "sqlite_config.h"

typedef struct sqt {
    const obx_plugin *plugin;
    const obx_store_ops *ops;
    const obx_host *host;
    char *dir;
    char path[4096];
    sq_config conf; /* defaults as the option table declares */
    sqlite3 *db;    /* the "application" connection */
} sqt;

/* Fresh temp dir, default config pointing at dir/outbox.db, plugin
 * loaded. Does not open anything yet. */
sqt *sqt_new(void);
/* Close the raw connection, remove the temp dir, free. */
void sqt_free(sqt *t);

/* Open an instance with conf (t->conf when NULL); asserts OBX_OK. */
void *sqt_open(sqt *t, const sq_config *conf);

/* The raw connection (opened on first use, busy_timeout 5s). */
sqlite3 *sqt_db(sqt *t);
/* Execute formatted SQL (sqlite3_mprintf syntax: %q, %w); asserts OK. */
void sqt_exec(sqt *t, const char *fmt, ...);
/* A single integer from formatted SQL; `def` when there is no row or NULL. */
int64_t sqt_int(sqt *t, int64_t def, const char *fmt, ...);
/* The writer's plain four-column INSERT; returns the new row id. */
int64_t sqt_insert(sqt *t, const char *agg_id, const char *payload);

/* SQL: the rows the live claims hold, one row per event: (id, owner,
 * expires_at, claim_id), from the claims table of the default name. */
#define SQT_CLAIMED                                                            \
    "(SELECT j.value AS id, c.owner AS owner, c.expires_at AS expires_at, "    \
    "c.claim_id AS claim_id FROM outbox_claims AS c, json_each(c.ids) AS j)"

/* Claim with wait 0 and assert OBX_OK; returns the count. */
size_t sqt_claim(sqt *t, void *inst, obx_event **out, size_t max);
/* Ack n events; asserts OBX_OK. */
void sqt_ack(sqt *t, void *inst, obx_event **evs, size_t n);

/* Wall clock, microseconds; sleep in milliseconds. */
int64_t sqt_now_us(void);
void sqt_sleep_ms(int ms);

#endif
