/* Internal: the pg_wal store instance, shared by the plugin's files.
 *
 * Two connections: `repl` (replication=database) streams the slot; `sql`
 * (a normal session) does everything else: set-up, slot health, marking
 * rows published, dead letters, recovery.
 *
 * Every event the stream delivered and the engine has not settled lives
 * on one list in stream position order (commit LSN, index inside the
 * transaction). Its head is the watermark: the slot is confirmed only up
 * to the head's commit LSN, so a restart replays every unsettled event.
 * The newest part of the list, from `ready` on, is read ahead and not yet
 * claimed; released events wait on the retry list, also in position
 * order, until their retry time. */
#ifndef PGW_STORE_H
#define PGW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <outbox/plugin.h>

#include "pg_wal_config.h"
#include "pgoutput.h"

#define PGW_NAME_MAX 63

/* Logical columns of the outbox table (the writer-facing contract plus
 * the bookkeeping columns pg_wal touches). Same names as pg_poll's. */
typedef enum pgw_col {
    PGW_C_ID,
    PGW_C_EVENT_ID,
    PGW_C_AGGREGATE_TYPE,
    PGW_C_AGGREGATE_ID,
    PGW_C_EVENT_TYPE,
    PGW_C_PAYLOAD,
    PGW_C_TOPIC,
    PGW_C_HEADERS,
    PGW_C_CREATED_AT,
    PGW_C_N_MAPPABLE,
    PGW_C_PUBLISHED_AT = PGW_C_N_MAPPABLE,
    PGW_C_DEAD_AT,
    PGW_C_DEAD_REASON,
    PGW_C_COUNT
} pgw_col;

typedef struct pgw_names {
    const char *schema; /* NULL: search_path */
    const char *table;
    const char *dead_table; /* the option, or dead_buf */
    const char *publication;
    const char *slot; /* the option, slot_buf, or NULL until derived */
    const char *prefix;
    const char *col[PGW_C_COUNT];
    char dead_buf[PGW_NAME_MAX + 1]; /* default: <table>_dead_letters */
    char slot_buf[PGW_NAME_MAX + 1]; /* default: see pgw_names_slot */
} pgw_names;

typedef enum pgw_state {
    PGW_READY,   /* read from the stream, not yet claimed */
    PGW_CLAIMED, /* handed to the engine */
    PGW_RETRY,   /* released; due at retry_at_us */
} pgw_state;

/* One event: a single malloc block (record, headers, strings). `ev` comes
 * first so the engine's obx_event pointer is the block. */
typedef struct pgw_event {
    obx_event ev;
    struct pgw_event *prev, *next;   /* the live list */
    struct pgw_event *rprev, *rnext; /* the retry list */
    pgw_state state;
    int64_t retry_at_us;
    int64_t row_id;     /* outbox id (ack_mode mark/delete); -1: none */
    const char *poison; /* why it cannot be published, or NULL */
} pgw_event;

/* Where the outbox table's columns sit in the stream's Relation. */
typedef struct pgw_rel {
    uint32_t oid;
    bool ours;                       /* the outbox table (others are ignored) */
    int idx[PGW_C_N_MAPPABLE];       /* column index, -1: absent */
    uint32_t type[PGW_C_N_MAPPABLE]; /* type oid of each mapped column */
} pgw_rel;

typedef struct pgw_store {
    const obx_host *host;
    const pgw_config *conf;
    pgw_names names;
    char target[512]; /* the conninfo, passwords masked: for messages */
    char *secret;     /* the conninfo's password, scrubbed from messages */
    char nsp[PGW_NAME_MAX + 1]; /* the table's schema as the server sees it */
    bool mark_full; /* the table has attempts and dead_destination */
    PGconn *sql;
    PGconn *repl; /* NULL while not streaming */
    bool standby; /* the slot is streamed by another relay: we wait */
    /* How long a query may go unanswered (store.query_timeout; 0 while one that
     * may rightly wait runs), and why pgw_query last gave up, for the
     * error that follows ("" when it did not). */
    int64_t query_timeout_ms;
    char silent[256];
    /* What broke a claim after it had taken events (they went out with
     * OBX_OK): the next claim's answer. OBX_OK: nothing. */
    obx_status deferred;
    char deferred_err[OBX_ERRSTR_LEN];

    /* live events, position order; ready: first unclaimed */
    pgw_event *head, *tail, *ready;
    size_t n_live, n_ready;
    pgw_event *rhead, *rtail; /* retry list, position order */
    size_t n_retry;

    /* stream state */
    bool have_last; /* last_* hold the newest event position */
    uint64_t last_seq, last_sub;
    bool in_txn;            /* between Begin and Commit */
    uint64_t txn_lsn;       /* the open transaction's commit LSN */
    int64_t txn_ts_us;      /* its commit time, unix microseconds */
    uint64_t txn_sub;       /* events so far in it */
    uint64_t received_lsn;  /* newest position read (reported as written) */
    uint64_t idle_lsn;      /* confirmable when nothing is in flight */
    uint64_t flushed_lsn;   /* last flush position we reported */
    uint64_t start_lsn;     /* the slot's confirmed position at start */
    int64_t next_status_us; /* monotonic time of the next status update */
    int64_t last_recv_us;   /* monotonic: the server's last message */
    int64_t ping_us;        /* a reply asked for since then, 0: none */
    bool warned_nontx;      /* logged a non-transactional message once */
    pgo_msg msg;
    pgw_rel *rels;
    size_t n_rels, cap_rels;

    /* recovery: rows re-read from the table before streaming */
    bool recovering;
    int64_t recover_after; /* last row id claimed during recovery */
    int64_t lag_bytes;     /* last measured, -1 unknown */

    /* stats: the server's WAL position when the stream was first asked
     * about, and whether the stream has read up to it since it started
     * (what was committed before is then all in memory or settled) */
    uint64_t catchup_lsn;
    bool caught_up;
} pgw_store;

/* ---- pgw_names.c: names and SQL templates ---- */

/* A growing string for SQL text; out of memory is sticky (every append
 * after it is a no-op) and reported once, by pgw_buf_take. */
typedef struct pgw_buf {
    char *p;
    size_t len, cap;
    bool oom;
} pgw_buf;

void pgw_buf_addn(pgw_buf *b, const char *s, size_t n);
void pgw_buf_add(pgw_buf *b, const char *s);
/* name as a quoted identifier ("..." with quotes doubled). */
void pgw_buf_ident(pgw_buf *b, const char *name);
/* text as a quoted literal ('...' with quotes doubled). */
void pgw_buf_literal(pgw_buf *b, const char *text);
/* The malloc'd text (the caller frees it; "" when nothing was added), or
 * NULL when memory ran out (the buffer is freed). */
char *pgw_buf_take(pgw_buf *b);

/* Resolve names from conf with defaults; validates lengths and column
 * mappings. Without a slot option n->slot stays NULL until
 * pgw_names_slot. 0, or -1 with err filled. n must not move afterwards
 * (it points into itself). */
int pgw_names_init(pgw_names *n, const pgw_config *conf, char *err,
                   size_t errlen);
/* store.recover's requirements (ack_mode = mark, a table source):
 * OBX_CONFIG with the reason, or OBX_OK. For validate and open alike. */
obx_status pgw_check_recover(const pgw_config *conf, char *errstr,
                             size_t errlen);
/* The default slot for database `db`: "outbox_relay_<db>_<table>" (the
 * message prefix instead of the table with source = messages; the schema
 * too when set), see osc_pg_default_slot. Slot names are cluster-wide,
 * so the database is part of it. No-op when the slot option is set. */
void pgw_names_slot(pgw_names *n, const pgw_config *conf, const char *db);
/* Whether logical column c was renamed (store.column.<name>). */
bool pgw_names_mapped(const pgw_names *n, int c);
/* Expand a template's placeholders ({T} table, {D} dead-letter table,
 * {R} recovery list, {S} schema, {P} publication, {SLOT} and {PFX}
 * literals, {I:sfx} an object named after the table, {col} a column) to
 * a malloc'd string; NULL on no memory or an unknown placeholder. */
char *pgw_sql_expand(const pgw_names *n, const char *tpl);

/* ---- pgw_ddl.c: the DDL ---- */

/* Emit the DDL for conf through emit(ctx, sql): the parts asked for
 * (PGW_DDL_* bits). 0, -1 on no memory, or what emit returned. */
#define PGW_DDL_OUTBOX 0x1u      /* schema, outbox table and its indexes */
#define PGW_DDL_DEAD 0x2u        /* schema, the dead-letter table */
#define PGW_DDL_PUBLICATION 0x4u /* the publication */
#define PGW_DDL_SLOT 0x8u        /* the slot */
int pgw_ddl_each(const pgw_names *n, const pgw_config *conf, unsigned parts,
                 int (*emit)(void *ctx, const char *sql), void *ctx);
/* The publication of the outbox table's inserts, or (source = messages)
 * of no table; the slot. Templates for pgw_sql_expand. */
extern const char pgw_ddl_pub_table[];
extern const char pgw_ddl_pub_empty[];
extern const char pgw_ddl_slot[];

/* ---- pgw_conn.c: the SQL session ---- */

/* Copy in to out with passwords masked; newlines folded. */
void pgw_scrub(const pgw_store *s, const char *in, char *out, size_t outlen);
/* Map a failed result (or a lost connection) to a status, errstr filled:
 * connection trouble OBX_UNAVAILABLE, anything else OBX_FATAL. */
obx_status pgw_fail(pgw_store *s, PGconn *c, const PGresult *res,
                    const char *what, char *errstr, size_t errlen);
/* Open a connection (replication: replication=database). NULL with
 * errstr filled when the server cannot be reached. */
PGconn *pgw_connect(pgw_store *s, bool replication, char *errstr,
                    size_t errlen);
/* Make sure s->sql is up. OBX_UNAVAILABLE when it is not. */
obx_status pgw_sql_ensure(pgw_store *s, char *errstr, size_t errlen);
/* PQexec (simple: several statements, or a replication command) or
 * PQexecParams on *conn, with the answer due within s->query_timeout_ms:
 * a server or a link that stops answering without closing anything (a
 * hung server, a dead middlebox) would make libpq wait forever. When the
 * time runs out *conn is closed and set to NULL, s->silent says so (for
 * pgw_fail), the stream stops too when it was s->sql, and NULL comes
 * back. NULL also when *conn is NULL. The caller PQclears the result. */
PGresult *pgw_query(pgw_store *s, PGconn **conn, const char *sql, int n,
                    const char *const *params, const int *lens, const int *fmts,
                    bool simple);
/* Run SQL with text parameters on s->sql; *out the result to PQclear. */
obx_status pgw_exec(pgw_store *s, const char *sql, int n,
                    const char *const *params, PGresult **out, const char *what,
                    char *errstr, size_t errlen);
/* Expand template tpl and run it; the result is dropped. */
obx_status pgw_run(pgw_store *s, const char *tpl, int n,
                   const char *const *params, const char *what, char *errstr,
                   size_t errlen);
/* Expand and run a one-row query: its first column into out ("" when
 * NULL); *found false when there is no row. */
obx_status pgw_query_text(pgw_store *s, const char *tpl, int n,
                          const char *const *params, char *out, size_t outlen,
                          bool *found, const char *what, char *errstr,
                          size_t errlen);

/* ---- pgw_setup.c ---- */

/* Set-up at open: schema, publication, slot (see pg_wal docs). */
obx_status pgw_setup(pgw_store *s, char *errstr, size_t errlen);

/* ---- pgw_slot.c ---- */

/* The slot's state: OBX_OK when usable, OBX_FATAL (missing, lost) or
 * OBX_UNAVAILABLE; *lag gets the bytes behind the server (-1 unknown). */
obx_status pgw_slot_check(pgw_store *s, int64_t *lag, char *errstr,
                          size_t errlen);
/* At open, after the publication: create the slot when missing and
 * allowed, start a recovery when it is missing or lost and
 * store.recover is set, refuse otherwise; then check it. */
obx_status pgw_slot_ensure(pgw_store *s, bool pub_existed, char *errstr,
                           size_t errlen);

/* ---- pgw_recover.c ---- */

/* Create a new slot with an exported snapshot and, in that snapshot, the
 * list of unpublished rows it will not stream (drop_first: drop the lost
 * slot first). */
obx_status pgw_recover_create(pgw_store *s, bool drop_first, char *errstr,
                              size_t errlen);
/* The recovery list in the database: none, marked as being built (a
 * recovery stopped after its slot and before its list: redo it), or
 * ready (recovery in progress). */
typedef enum pgw_recover_list {
    PGW_RECOVER_NONE,
    PGW_RECOVER_BUILDING,
    PGW_RECOVER_READY,
} pgw_recover_list;
obx_status pgw_recover_state(pgw_store *s, pgw_recover_list *out, char *errstr,
                             size_t errlen);
/* Whether a recovery list is waiting (s->recovering). */
obx_status pgw_recover_pending(pgw_store *s, char *errstr, size_t errlen);
/* Recovery: claim up to max rows from the recovery list. */
obx_status pgw_recover_claim(pgw_store *s, size_t max, char *errstr,
                             size_t errlen);
/* Drop the recovery list once everything in it is settled. */
obx_status pgw_recover_finish(pgw_store *s, char *errstr, size_t errlen);

/* ---- pgw_settle.c ---- */

/* ack_mode mark/delete for the events' rows. */
obx_status pgw_sql_ack(pgw_store *s, obx_event *const *evs, size_t n,
                       char *errstr, size_t errlen);
/* Insert the burials into the dead-letter table (and mark/delete rows). */
obx_status pgw_sql_bury(pgw_store *s, const obx_burial *items, size_t n,
                        char *errstr, size_t errlen);

/* ---- pgw_dead.c ---- */

obx_status pgw_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                         void *ctx, char *errstr, size_t errlen);
obx_status pgw_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                            char *errstr, size_t errlen);
obx_status pgw_dead_purge(void *inst, const char *event_id, uint64_t *count,
                          char *errstr, size_t errlen);

/* ---- pgw_demo.c ---- */

/* Write n demo orders (an `orders` table beside the outbox, created when
 * missing), each with its OrderCreated event in the same transaction: a
 * row of the outbox table, or with source = messages a transactional
 * logical message carrying the envelope. OBX_UNAVAILABLE when the server
 * is unreachable, OBX_FATAL on other SQL errors (errstr says which). */
obx_status pgw_demo(void *inst, uint64_t n, char *errstr, size_t errlen);

/* ---- pgw_stream.c: the replication connection ---- */

/* Connect, acquire the slot and START_REPLICATION. OBX_UNAVAILABLE when
 * the slot is in use by another process (hot standby) or the server is
 * unreachable, OBX_FATAL when the slot is missing or invalidated. */
obx_status pgw_stream_start(pgw_store *s, char *errstr, size_t errlen);
/* Drop the replication connection (events stay; the next start replays
 * from the slot and skips what we already hold). */
void pgw_stream_stop(pgw_store *s, const char *why);
/* End the stream at close, after the last status update: CopyDone, then
 * what the server still sends up to its own CopyDone and the command's
 * end (at most PGW_FINISH_US; unconfirmed data is replayed next time),
 * then drop the connection. Pipeline thread, like every store call. */
void pgw_stream_finish(pgw_store *s);
/* Read and decode what has arrived, waiting up to wait_us for something
 * when nothing is ready. Stops reading while max_buffered events are
 * held. OBX_OK, OBX_UNAVAILABLE (connection lost) or OBX_FATAL. */
obx_status pgw_stream_pump(pgw_store *s, int64_t wait_us, char *errstr,
                           size_t errlen);
/* Send a status update now when the flush position moved or `force`. */
void pgw_stream_feedback(pgw_store *s, bool force, bool reply);
/* The position up to which everything is settled. */
uint64_t pgw_watermark(const pgw_store *s);

/* ---- pgw_event.c: events ---- */

/* Build an event from an Insert's tuple for relation rel, at position
 * (seq, sub), committed at commit_us. On OBX_OK *out is a new block. A
 * row that cannot become an event gets ->poison set instead of failing. */
obx_status pgw_event_from_row(pgw_store *s, const pgw_rel *rel,
                              const pgo_msg *m, uint64_t seq, uint64_t sub,
                              int64_t commit_us, pgw_event **out);
/* Build an event from a logical message's envelope (see docs). */
obx_status pgw_event_from_message(pgw_store *s, const pgo_msg *m, uint64_t seq,
                                  uint64_t sub, int64_t commit_us,
                                  pgw_event **out);
/* Build an event from a row of the recovery query (text columns in
 * PGW_C order up to created_at in unix microseconds). */
obx_status pgw_event_from_result(pgw_store *s, const PGresult *r, int row,
                                 pgw_event **out);

/* Decode bytea text output ("\x4142" hex or escape format) in place;
 * returns the new length, or -1 when malformed. */
long pgw_bytea_decode(const char *in, size_t len, char *out);
/* Parse a timestamptz in ISO DateStyle ("2024-05-01 12:00:00.5+02") to
 * unix microseconds; false when it is not in that form. */
bool pgw_parse_timestamp(const char *s, size_t len, int64_t *us);

/* ---- pgw_store.c: live-list helpers ---- */

/* Append a freshly read event (state READY). */
void pgw_live_append(pgw_store *s, pgw_event *e);

#endif
