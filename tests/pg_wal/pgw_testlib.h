/* Helpers for the pg_wal tests: the private server started by the ctest
 * fixture `pg` (tests/pg/pg_start.sh), a fresh schema, publication and
 * slot per test so tests never see each other's WAL, the plugin loaded
 * from the build tree, and a raw libpq connection playing the writer. */
#ifndef OBX_PGW_TESTLIB_H
#define OBX_PGW_TESTLIB_H

#include <stdint.h>

#include <libpq-fe.h>

#include <outbox/plugin.h>

#include "pg_wal_config.h"

typedef struct wt {
    const obx_plugin *plugin;
    const obx_store_ops *ops;
    const obx_host *host;
    char name[64];       /* schema, slot and publication of this test */
    char server[1024];   /* the fixture's conninfo */
    char conninfo[1280]; /* server + search_path=<name> */
    pgw_config conf;     /* the option table's defaults, our names */
    PGconn *db;          /* the "application" connection */
} wt;

/* The fixture's conninfo; fails the test (never skips) when missing. */
const char *wt_server_conninfo(void);

/* A fresh schema; config defaults pointing at it. Opens nothing. */
wt *wt_new(void);
/* Drop slot, publication and schema; free. */
void wt_free(wt *t);

/* Open with conf (t->conf when NULL); asserts OBX_OK. */
void *wt_open(wt *t, const pgw_config *conf);
/* Open and return the status, errstr in err. */
obx_status wt_try_open(wt *t, const pgw_config *conf, void **inst, char *err,
                       size_t errlen);

PGconn *wt_db(wt *t);
void wt_exec(wt *t, const char *fmt, ...);
int64_t wt_int(wt *t, int64_t def, const char *fmt, ...);
/* The writer's plain INSERT (aggregate_id, event_type, payload text). */
void wt_insert(wt *t, const char *agg_id, const char *type,
               const char *payload);

/* Claim, waiting up to wait_ms in total until at least `want` events
 * arrived (or max); asserts OBX_OK. Returns the count. */
size_t wt_claim(wt *t, void *inst, obx_event **out, size_t max, size_t want,
                int wait_ms);
void wt_ack(wt *t, void *inst, obx_event **evs, size_t n);

/* The slot's confirmed_flush_lsn and the server's current WAL position
 * (as numbers). */
uint64_t wt_confirmed(wt *t);
uint64_t wt_current_lsn(wt *t);

int64_t wt_now_us(void);
int64_t wt_mono_ms(void);
void wt_sleep_ms(int ms);

#endif
