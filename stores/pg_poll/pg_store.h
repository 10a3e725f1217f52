/* Internal: the pg_poll store instance, shared by the plugin's files. */
#ifndef OBX_PG_STORE_H
#define OBX_PG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <outbox/plugin.h>

#include "pg_buf.h"
#include "pg_event.h"
#include "pg_poll_config.h"
#include "pg_sql.h"

/* Parameter slots of the widest statement (release and bury: 7). */
#define PGP_MAX_PARAMS 7

typedef struct pgp_store {
    const obx_host *host;
    const pgp_config *conf;
    pgp_names names;
    char owner[320];
    char target[512]; /* the conninfo, passwords masked: for messages */
    char *secret;     /* the conninfo's password, scrubbed from messages */
    PGconn *conn;     /* NULL while disconnected; non-blocking */
    bool timed_out;   /* the last statement got no answer in time */
    char *table_ref;  /* the quoted, qualified table name */
    int failures;     /* connection attempts failed in a row */
    int64_t retry_us; /* monotonic time of the next connection attempt */
    int64_t lost_us;  /* monotonic time the connection was lost, 0: not */
    pgp_event *live;  /* claimed, not yet settled */
    int64_t retention_due_us; /* monotonic time of the next retention run */
    bool checked_objects;     /* looked for indexes and trigger (once) */
    bool no_wakeup;           /* LISTEN, but no trigger signals our channel */
    pgp_buf arg[PGP_MAX_PARAMS]; /* reused parameter buffers */
} pgp_store;

/* ---- pg_conn.c ---- */

/* Fill the parts of s that need no server: names, owner, masked target,
 * secret. OBX_CONFIG (bad names or conninfo syntax) with errstr filled. */
obx_status pgp_init(pgp_store *s, const obx_host *host, const pgp_config *conf,
                    char *errstr, size_t errlen);
/* Free what pgp_init and the connection hold (not the events). */
void pgp_fini(pgp_store *s);

typedef enum pgp_connect_mode {
    PGP_CONNECT_RUN,    /* the table must exist */
    PGP_CONNECT_CREATE, /* create table, indexes, trigger when missing */
    PGP_CONNECT_CHECK,  /* validate: a missing table is fine when
                           create_schema is set; no LISTEN */
} pgp_connect_mode;

/* Connect now: open the connection, check the server version and the
 * table (see mode), prepare the statements (which proves the table has
 * our columns) and LISTEN. OBX_UNAVAILABLE when the server cannot be
 * reached, OBX_CONFIG when it answers but does not fit (version, missing
 * table or columns, rights). On failure s->conn stays NULL. */
obx_status pgp_connect(pgp_store *s, pgp_connect_mode mode, char *errstr,
                       size_t errlen);
/* Make sure there is a connection, reconnecting when the last one was
 * lost; attempts are spaced by a short backoff (100 ms doubling to 1 s) so
 * a dead server is not hammered between the engine's circuit probes.
 * OBX_UNAVAILABLE while the server stays unreachable. */
obx_status pgp_ensure(pgp_store *s, char *errstr, size_t errlen);
/* Close the connection (it is reopened by the next pgp_ensure). */
void pgp_disconnect(pgp_store *s, const char *why);

/* Describe a failed result (res may be NULL: no result at all) of step
 * `what` in errstr, passwords scrubbed, and map it to a status: lost
 * connections, shutdowns, lock and resource trouble are OBX_UNAVAILABLE
 * (the connection is dropped when it is gone), anything else OBX_FATAL.
 * Does not clear res. */
obx_status pgp_fail(pgp_store *s, const PGresult *res, const char *what,
                    char *errstr, size_t errlen);

/* ---- pg_query.c: statements within query_timeout ---- */

/* One statement with text parameters (NULL: SQL NULL) on s->conn, which
 * must be open; the answer is awaited at most query_timeout. Returns the
 * result to PQclear() (the first failed one when the server sent several),
 * or NULL when none came: the connection failed, or timed out, which sets
 * s->timed_out for pgp_fail to report (and drop the connection). */
PGresult *pgp_query(pgp_store *s, const char *sql, int n,
                    const char *const *params);
/* PREPARE names[i] AS sqls[i] for i < n (at most PGP_S_COUNT), all in
 * one pipeline: one round trip. Returns -1 when every one was prepared;
 * else the index of the first that was not, with its failed result in
 * *failed to PQclear() (NULL when the connection failed or timed out:
 * s->timed_out says which; a connection stuck in the pipeline is
 * dropped). */
int pgp_query_prepare_all(pgp_store *s, int n, const char *const *names,
                          char *const *sqls, PGresult **failed);
/* A result of PGRES_COMMAND_OK or PGRES_TUPLES_OK (NULL is not). */
bool pgp_ok(const PGresult *r);
/* query_timeout in ms (the default when the config says 0). */
int64_t pgp_query_timeout_ms(const pgp_store *s);
/* "no answer from the server within N ms (query_timeout) ..." */
void pgp_timeout_text(const pgp_store *s, char *out, size_t outlen);

/* Run a prepared statement with text parameters (NULL: SQL NULL) and the
 * given result format (0 text, 1 binary), reconnecting first when the
 * connection was lost. On OBX_OK *out is the result (PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK) to PQclear(); otherwise *out is NULL and errstr says
 * why (a timeout is OBX_UNAVAILABLE). */
obx_status pgp_exec(pgp_store *s, pgp_stmt st, int nparams,
                    const char *const *params, int binary, PGresult **out,
                    const char *what, char *errstr, size_t errlen);
/* The claim statement (binary results), run after the table's claim lock
 * and the expiry of lapsed claims, in one transaction and one round trip,
 * so that claims of one table, from any relay, never overlap (see
 * pgp_claim_lock_sql). As pgp_exec. */
obx_status pgp_exec_claim(pgp_store *s, int nparams, const char *const *params,
                          PGresult **out, char *errstr, size_t errlen);

/* Wait up to wait_us for a NOTIFY on our channel (or, without LISTEN,
 * just sleep). 1: woken, 0: timed out, -1: the connection was lost. */
int pgp_wait(pgp_store *s, int64_t wait_us);
/* Discard notifications already received; true when there were any. */
bool pgp_drain_notifies(pgp_store *s);

/* Copy `in` to out with passwords masked (conninfo pairs, URLs and the
 * configured password wherever it appears). */
void pgp_scrub(const pgp_store *s, const char *in, char *out, size_t outlen);

/* ---- pg_admin.c ---- */

obx_status pgp_stats(void *inst, obx_store_stats *st, char *errstr,
                     size_t errlen);
obx_status pgp_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                         void *ctx, char *errstr, size_t errlen);
obx_status pgp_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                            char *errstr, size_t errlen);
obx_status pgp_dead_purge(void *inst, const char *event_id, uint64_t *count,
                          char *errstr, size_t errlen);
obx_status pgp_demo(void *inst, uint64_t n, char *errstr, size_t errlen);

/* Delete one batch of expired published rows when due (ack_mode=mark). */
void pgp_retention(pgp_store *s);

#endif
