/* Helpers for the pg_poll tests: the private server started by the ctest
 * fixture (tests/pg/pg_start.sh), a fresh schema per test so tests never
 * see each other's tables, the plugin loaded from the build tree, and a
 * raw libpq connection playing the application writer. */
#ifndef OBX_PG_TESTLIB_H
#define OBX_PG_TESTLIB_H

#include <stdint.h>

#include <libpq-fe.h>

#include <outbox/plugin.h>

#include "pg_poll_config.h"

/* Where the fixture writes the server's conninfo and state. */
#define PGT_STATE_DIR OBX_BUILD_DIR "/tests/pg"

typedef struct pgt {
    const obx_plugin *plugin;
    const obx_store_ops *ops;
    const obx_host *host;
    char schema[64];     /* this test's schema, first in search_path */
    char server[1024];   /* the server's conninfo, as the fixture wrote it */
    char conninfo[1280]; /* server + search_path and application_name
                            set to the schema (teardown ends them all) */
    pgp_config conf;     /* the option table's defaults, but the
                                    NOTIFY channel is the schema's name */
    PGconn *db;          /* the "application" connection */
} pgt;

/* The fixture's conninfo; fails the test (never skips) when the server is
 * not there. Static buffer. */
const char *pgt_server_conninfo(void);

/* A fresh schema on the test server, default config pointing at it,
 * plugin loaded. Does not open an instance. */
pgt *pgt_new(void);
/* The same on another server (conninfo of its database). */
pgt *pgt_new_on(const char *server);
/* Drop the schema, close the raw connection, free. */
void pgt_free(pgt *t);

/* Open an instance with conf (t->conf when NULL); asserts OBX_OK. */
void *pgt_open(pgt *t, const pgp_config *conf);

/* A new connection to the test schema; the caller PQfinish()es it. */
PGconn *pgt_connect(pgt *t);
/* The raw connection (opened on first use). */
PGconn *pgt_db(pgt *t);
/* Execute formatted SQL on the raw connection; asserts success. */
void pgt_exec(pgt *t, const char *fmt, ...);
/* Same on another connection. */
void pgt_exec_on(PGconn *c, const char *fmt, ...);
/* A single integer from formatted SQL; `def` when there is no row or NULL. */
int64_t pgt_int(pgt *t, int64_t def, const char *fmt, ...);
/* The writer's plain four-column INSERT; returns the new row id. */
int64_t pgt_insert(pgt *t, const char *agg_id, const char *payload);

/* Claim with wait 0 and assert OBX_OK; returns the count. */
size_t pgt_claim(pgt *t, void *inst, obx_event **out, size_t max);
/* Ack n events; asserts OBX_OK. */
void pgt_ack(pgt *t, void *inst, obx_event **evs, size_t n);

/* A server of the test's own, for tests that restart it (the shared one
 * serves tests running in parallel): tests/pg/pg_start.sh into state_dir;
 * returns its conninfo (static buffer). Fails the test when it cannot
 * start. */
const char *pgt_server_start(const char *state_dir);
/* tests/pg/pg_restart.sh on it (down for down_s seconds). */
void pgt_server_restart(const char *state_dir, int down_s);
/* tests/pg/pg_stop.sh on it. */
void pgt_server_stop(const char *state_dir);

/* Clocks and sleep. */
int64_t pgt_now_us(void);
int64_t pgt_mono_ms(void);
void pgt_sleep_ms(int ms);

#endif
