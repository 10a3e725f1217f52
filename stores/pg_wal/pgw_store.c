/* The pg_wal store plugin: PostgreSQL logical replication (pgoutput) of
 * an outbox table's INSERTs and/or of transactional logical messages.
 *
 * The WAL is the queue: no polling, and nothing is written back per event
 * unless ack_mode asks for it. The slot is confirmed only up to the commit
 * below which every event is published or dead-lettered (the watermark,
 * see pgw_store.h), so a crash at any point replays from the oldest
 * unsettled event: at-least-once, duplicates bounded by what was in
 * flight. Retries live in memory (the engine's rules: a released event
 * comes back from claim at its retry time, ties in position order), so
 * the store does not order claims per key itself: the engine's held-key
 * set does (OBX_STORE_ORDERED_CLAIM is not set). Only one process can
 * stream a slot; another relay on the same slot stands by (its claims
 * return nothing and try the slot again) and takes over at its first
 * claim after the first one's connection goes. */
#include "err_words.h"
#include "pg_secret.h"
#include "pgw_store.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pwd.h>
#include <unistd.h>

static const char *const pgw_sources[] = {"table", "messages", "both", NULL};
static const char *const pgw_ack_modes[] = {"none", "mark", "delete", NULL};

static const obx_option pgw_options[] = {
    OBX_OPT_STRING(
        pgw_config, conninfo, "conninfo", OBX_SECRET(""),
        "libpq connection string or URI (as pg_poll); the role needs the "
        "REPLICATION attribute. Keep the password out of the file: "
        "${env:NAME}, PGPASSWORD or ~/.pgpass. Masked in logs"),
    OBX_OPT_STRING(pgw_config, table, "table", "outbox",
                   "outbox table whose INSERTs are streamed (the same table as "
                   "pg_poll's)"),
    OBX_OPT_STRING(
        pgw_config, schema, "schema", "",
        "schema of the outbox and dead-letter tables; empty: search_path"),
    OBX_OPT_PREFIX(pgw_config, column, "column",
                   "column.<name> = <real column>: rename a writer-facing "
                   "column (id, event_id, aggregate_type, aggregate_id, "
                   "event_type, payload, topic, headers, created_at)"),
    OBX_OPT_ENUM(pgw_config, source, "source", "table", pgw_sources,
                 "table: INSERTs into the outbox table; messages: "
                 "pg_logical_emit_message(true, message_prefix, <JSON "
                 "envelope>), a table-less outbox (PostgreSQL 14+); both"),
    OBX_OPT_STRING(
        pgw_config, message_prefix, "message_prefix", "outbox",
        "prefix of the logical messages that are events (others are ignored)"),
    OBX_OPT_STRING(pgw_config, publication, "publication", "outbox_relay",
                   "publication streamed (INSERTs of the outbox table only)"),
    OBX_OPT_STRING(
        pgw_config, slot, "slot", "",
        "logical replication slot (pgoutput); one per pipeline, and slot names "
        "are cluster-wide; empty: outbox_relay_<database>_<table> (schema "
        "included when set, the message prefix with source = messages)"),
    OBX_OPT_STRING(pgw_config, dead_table, "dead_table", "",
                   "dead-letter table written by dlq = store; empty: "
                   "<table>_dead_letters"),
    OBX_OPT_BOOL(
        pgw_config, create_schema, "create_schema", "true",
        "create the outbox and dead-letter tables and the publication when "
        "missing (otherwise run `outbox-relay schema pg_wal` as the DBA)"),
    OBX_OPT_BOOL(
        pgw_config, create_slot, "create_slot", "true",
        "create the slot on first start (when the publication is new too); a "
        "slot missing next to an existing publication is lost: a loud error"),
    OBX_OPT_ENUM(
        pgw_config, ack_mode, "ack_mode", "none", pgw_ack_modes,
        "none: only the slot advances; mark: also set published_at (one UPDATE "
        "per batch; makes `recover` possible); delete: delete the row"),
    OBX_OPT_DURATION(
        pgw_config, status_interval_ms, "status_interval", "1s", 10, 60000,
        "standby status updates at least this often (also sent after each ack "
        "that moves the confirmed position); below wal_sender_timeout"),
    OBX_OPT_DURATION(
        pgw_config, query_timeout_ms, "query_timeout", "15s", 100, 3600000,
        "longest wait for the server to answer a statement, and for the "
        "replication stream to answer a keepalive asked for once it has been "
        "silent half this long, before the connection is given up and opened "
        "again: a link that stalls without a reset (a dead middlebox, a "
        "half-open connection) answers TCP keepalives, so only this notices "
        "it. Creating the slot is never cut short: it waits for the "
        "transactions running then"),
    OBX_OPT_INT(pgw_config, max_buffered, "max_buffered", "10000", 16, 10000000,
                "events held in memory (read ahead, in flight, waiting for a "
                "retry) before the relay stops reading the stream"),
    OBX_OPT_BOOL(
        pgw_config, recover, "recover", "false",
        "when the slot is missing or invalidated: create a new one and first "
        "re-read every unpublished, not dead row of the table (needs ack_mode "
        "= mark); an interrupted recovery resumes by itself"),
    OBX_OPTIONS_END,
};

/* ---- live list ---- */

void pgw_live_append(pgw_store *s, pgw_event *e)
{
    e->state = PGW_READY;
    e->prev = s->tail;
    e->next = NULL;
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    if (!s->ready)
        s->ready = e;
    s->n_live++;
    s->n_ready++;
}

static void retry_unlink(pgw_store *s, pgw_event *e)
{
    if (e->rprev)
        e->rprev->rnext = e->rnext;
    else
        s->rhead = e->rnext;
    if (e->rnext)
        e->rnext->rprev = e->rprev;
    else
        s->rtail = e->rprev;
    e->rprev = e->rnext = NULL;
    s->n_retry--;
}

/* Insert in position order (the live list's order): releases mostly come
 * in order, so the walk from the tail is short. */
static void retry_insert(pgw_store *s, pgw_event *e)
{
    pgw_event *after = s->rtail;
    while (after && (after->ev.pos.seq > e->ev.pos.seq ||
                     (after->ev.pos.seq == e->ev.pos.seq &&
                      after->ev.pos.sub > e->ev.pos.sub)))
        after = after->rprev;
    e->rprev = after;
    e->rnext = after ? after->rnext : s->rhead;
    if (e->rnext)
        e->rnext->rprev = e;
    else
        s->rtail = e;
    if (after)
        after->rnext = e;
    else
        s->rhead = e;
    s->n_retry++;
}

/* Debug log of an event's fate with its stream position, to match a
 * status update's flush position against what was settled. */
static void log_event(const pgw_store *s, const char *what, const obx_event *ev)
{
    if (!s->host->log_enabled(s->host, OBX_LOG_DEBUG))
        return;
    char lsn[32];
    s->host->log(s->host, OBX_LOG_DEBUG, "pg_wal: %s event %s at %s.%llu", what,
                 ev->event_id ? ev->event_id : "?",
                 pgo_lsn_str(ev->pos.seq, lsn, sizeof lsn),
                 (unsigned long long)ev->pos.sub);
}

/* Settled: forget and free. */
static void live_free(pgw_store *s, pgw_event *e)
{
    if (e->state == PGW_RETRY)
        retry_unlink(s, e);
    if (e == s->ready) {
        s->ready = e->next;
        s->n_ready--;
    }
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    s->n_live--;
    free(e);
}

/* ---- open / close ---- */

static obx_status pgw_init(pgw_store *s, const obx_host *host,
                           const pgw_config *conf, char *errstr, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->host = host;
    s->conf = conf;
    s->lag_bytes = -1;
    s->query_timeout_ms = conf->query_timeout_ms;
    if (pgw_names_init(&s->names, conf, errstr, errlen) != 0)
        return OBX_CONFIG;
    obx_status st = pgw_check_recover(conf, errstr, errlen);
    return st != OBX_OK
               ? st
               : osc_pg_conninfo(host, conf->conninfo, &s->secret, s->target,
                                 sizeof s->target, errstr, errlen);
}

static void pgw_fini(pgw_store *s)
{
    pgw_stream_stop(s, NULL);
    if (s->sql)
        PQfinish(s->sql);
    while (s->head)
        live_free(s, s->head);
    pgo_msg_free(&s->msg);
    free(s->rels);
    osc_pg_secret_free(s->secret);
}

/* Set up (tables, publication, slot). The slot is taken by the first
 * claim, so `outbox-relay stats` and `dead ...` work while a relay
 * streams it. OBX_UNAVAILABLE while the server is down. */
static obx_status pgw_open(const obx_host *host, const void *config,
                           void **inst, char *errstr, size_t errlen)
{
    pgw_store *s = malloc(sizeof *s);
    if (!s)
        return OBX_NOMEM;
    obx_status st = pgw_init(s, host, config, errstr, errlen);
    if (st == OBX_OK)
        st = pgw_setup(s, errstr, errlen);
    if (st != OBX_OK) {
        pgw_fini(s);
        free(s);
        return st;
    }
    static const char *const acks[] = {"none", "mark", "delete"};
    host->log(host, OBX_LOG_INFO,
              "pg_wal %s: slot \"%s\", publication \"%s\", source %s, "
              "ack_mode %s%s",
              s->target, s->names.slot, s->names.publication,
              pgw_sources[s->conf->source], acks[s->conf->ack_mode],
              s->recovering ? ", recovering unpublished rows first" : "");
    *inst = s;
    return OBX_OK;
}

/* Confirm what is settled (never past an unsettled event) and end the
 * stream once the server has it, then free the unsettled events: the
 * slot replays them on the next start. */
static void pgw_close(void *inst)
{
    pgw_store *s = inst;
    if (!s)
        return;
    pgw_stream_feedback(s, true, false);
    pgw_stream_finish(s);
    pgw_fini(s);
    free(s);
}

/* ---- claim ---- */

/* Dead-letter an event that can never be published (unreadable envelope,
 * NULL required column) without bothering the broker. */
static obx_status bury_poison(pgw_store *s, pgw_event *e, char *errstr,
                              size_t errlen)
{
    obx_burial b = {&e->ev, e->poison, NULL};
    obx_status st = pgw_sql_bury(s, &b, 1, errstr, errlen);
    if (st != OBX_OK)
        return st;
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_wal: event %s dead-lettered when read: %s", e->ev.event_id,
                 e->poison);
    live_free(s, e);
    return OBX_OK;
}

static obx_status take_ready(pgw_store *s, obx_event **out, size_t max,
                             size_t *n, char *errstr, size_t errlen)
{
    while (*n < max && s->ready) {
        pgw_event *e = s->ready;
        if (e->poison) {
            if (*n > 0)
                return OBX_OK; /* handled by the next claim */
            obx_status st = bury_poison(s, e, errstr, errlen);
            if (st != OBX_OK)
                return st;
            continue;
        }
        s->ready = e->next;
        s->n_ready--;
        e->state = PGW_CLAIMED;
        log_event(s, "claimed", &e->ev);
        out[(*n)++] = &e->ev;
    }
    return OBX_OK;
}

/* Released events due now, in position order. */
static void take_due(pgw_store *s, obx_event **out, size_t max, size_t *n)
{
    int64_t now = s->host->now_us();
    pgw_event *e = s->rhead;
    while (e && *n < max) {
        pgw_event *next = e->rnext;
        if (e->retry_at_us <= now) {
            retry_unlink(s, e);
            e->state = PGW_CLAIMED;
            log_event(s, "claimed (retry)", &e->ev);
            out[(*n)++] = &e->ev;
        }
        e = next;
    }
}

/* How long an idle claim may wait: wait_ms, or less when a retry falls
 * due sooner. */
static int64_t idle_wait_us(const pgw_store *s, int wait_ms)
{
    int64_t wait = (int64_t)wait_ms * 1000;
    int64_t now = s->host->now_us();
    for (const pgw_event *e = s->rhead; e; e = e->rnext)
        if (e->retry_at_us - now < wait)
            wait = e->retry_at_us - now;
    return wait < 0 ? 0 : wait;
}

static void sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static obx_status claim_recovering(pgw_store *s, obx_event **out, size_t max,
                                   size_t *n, char *errstr, size_t errlen)
{
    take_due(s, out, max, n);
    if (*n < max && !s->ready) {
        obx_status st = pgw_recover_claim(s, max - *n, errstr, errlen);
        if (st != OBX_OK)
            return st;
    }
    /* keep the slot: status updates while the stream is not read */
    pgw_stream_feedback(s, false, false);
    return take_ready(s, out, max, n, errstr, errlen);
}

/* While the stream keeps coming, read on until the batch is full: one
 * read of the socket is a few dozen events of a backlog, what the socket
 * holds at most a few hundred (the server stops sending while the relay
 * publishes), and each batch costs the broker a round trip. A claim that
 * waited for its first event fills the same way. A pause of
 * PGW_FILL_GAP_US in the stream ends the batch, so a steady trickle (1k
 * events/s: one a millisecond) goes out as it comes. */
#define PGW_FILL_GAP_US 300

static obx_status fill_batch(pgw_store *s, obx_event **out, size_t max,
                             size_t *n, char *errstr, size_t errlen)
{
    obx_status st = OBX_OK;
    while (st == OBX_OK && *n < max && s->n_ready == 0 &&
           s->n_live < (size_t)s->conf->max_buffered) {
        size_t before = *n;
        st = pgw_stream_pump(s, PGW_FILL_GAP_US, errstr, errlen);
        if (st == OBX_OK)
            st = take_ready(s, out, max, n, errstr, errlen);
        if (*n == before)
            break;
    }
    return st;
}

static obx_status claim_events(pgw_store *s, obx_event **out, size_t max,
                               size_t *n, int wait_ms, char *errstr,
                               size_t errlen)
{
    obx_status st = pgw_stream_start(s, errstr, errlen);
    if (st != OBX_OK && s->standby) {
        /* A hot standby is healthy, not an outage: wait here and try the
         * slot again on the next claim (every poll_interval), so take-over
         * does not wait out the circuit breaker's backoff. */
        if (wait_ms > 0)
            sleep_us((int64_t)wait_ms * 1000);
        return OBX_OK;
    }
    if (st != OBX_OK)
        return st;
    if (s->recovering) {
        st = claim_recovering(s, out, max, n, errstr, errlen);
        if (st == OBX_OK && *n == 0 && s->recovering && wait_ms > 0)
            sleep_us(idle_wait_us(s, wait_ms)); /* only retries are left */
        if (st != OBX_OK || *n > 0 || s->recovering)
            return st;
    }
    take_due(s, out, max, n);
    st = pgw_stream_pump(s, 0, errstr, errlen);
    if (st == OBX_OK)
        st = take_ready(s, out, max, n, errstr, errlen);
    if (st == OBX_OK && *n == 0 && wait_ms > 0) {
        st = pgw_stream_pump(s, idle_wait_us(s, wait_ms), errstr, errlen);
        take_due(s, out, max, n);
        if (st == OBX_OK)
            st = take_ready(s, out, max, n, errstr, errlen);
    }
    if (st == OBX_OK && *n > 0)
        st = fill_batch(s, out, max, n, errstr, errlen);
    return st;
}

/* Claim up to max events (see obx_store_ops.claim): retries that are due,
 * then what the stream delivered, in position order. The events are ours
 * until ack/release/bury settles them, or close().
 * A claim takes events and reads the stream in turns (a retry that fell
 * due, then the stream; a batch being filled), so the stream can break
 * after events were taken. The engine ignores out on an error, and an
 * event taken here never expires the way a row lease does: it would stay
 * claimed, never published, and hold the watermark until a restart. So
 * the events go out, and the error is the next claim's answer (the
 * stream is stopped already when it was the connection). */
static obx_status pgw_claim(void *inst, obx_event **out, size_t max, size_t *n,
                            int wait_ms, char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    *n = 0;
    if (s->deferred != OBX_OK) {
        obx_status st = s->deferred;
        s->deferred = OBX_OK;
        snprintf(errstr, errlen, "%s", s->deferred_err);
        return st;
    }
    if (max == 0)
        return OBX_OK;
    obx_status st = claim_events(s, out, max, n, wait_ms, errstr, errlen);
    if (st == OBX_OK || *n == 0)
        return st;
    s->deferred = st;
    snprintf(s->deferred_err, sizeof s->deferred_err, "%s", errstr);
    return OBX_OK;
}

/* ---- settle ---- */

static pgw_event *block_of(obx_event *ev)
{
    return (pgw_event *)ev->pos.ptr;
}

/* Published: mark (ack_mode) and confirm. An error leaves the events
 * claimed; the engine calls again. */
static obx_status pgw_ack(void *inst, obx_event *const *events, size_t n,
                          char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    obx_status st = pgw_sql_ack(s, events, n, errstr, errlen);
    if (st != OBX_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        log_event(s, "acked", events[i]);
        live_free(s, block_of(events[i]));
    }
    pgw_stream_feedback(s, false, false);
    return OBX_OK;
}

/* Back to memory until retry_at; the watermark stays below them. */
static obx_status pgw_release(void *inst, const obx_release *items, size_t n,
                              char *errstr, size_t errlen)
{
    (void)errstr;
    (void)errlen;
    pgw_store *s = inst;
    for (size_t i = 0; i < n; i++) {
        pgw_event *e = block_of(items[i].event);
        if (items[i].counts_as_attempt)
            e->ev.attempts++;
        e->retry_at_us = items[i].retry_at_us;
        e->state = PGW_RETRY;
        log_event(s, "released", &e->ev);
        retry_insert(s, e);
    }
    return OBX_OK;
}

/* Into the dead-letter table; then the watermark may pass them. */
static obx_status pgw_bury(void *inst, const obx_burial *items, size_t n,
                           char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    obx_status st = pgw_sql_bury(s, items, n, errstr, errlen);
    if (st != OBX_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        log_event(s, "buried", items[i].event);
        live_free(s, block_of(items[i].event));
    }
    pgw_stream_feedback(s, false, false);
    return OBX_OK;
}

/* ---- stats, schema, validate ---- */

/* pending: the events this relay holds (read ahead, in flight, waiting
 * for a retry), oldest_pending_us the oldest of them. When it holds none,
 * 1 instead of 0 while a streaming relay has not yet read up to where the
 * server's WAL was when stats was first asked after the stream started,
 * or while recovery has rows left, so `run --once` does not stop before
 * it has read what was committed before it. Where the WAL was is its
 * insert position, not its flush position: with synchronous_commit = off
 * a transaction is committed (its rows visible) before its WAL is
 * flushed, the walsender streams only flushed WAL, and a relay started
 * right after such commits would find the stream "caught up" with
 * nothing read. That target is fixed: WAL
 * that other tables or other databases keep writing never makes the
 * stream look behind for long.
 * lag_bytes: the server's WAL position minus the slot's confirmed one,
 * the bytes the slot holds back (on a shared server including other
 * databases' WAL). standby: another relay streams the slot. */
static obx_status pgw_stats(void *inst, obx_store_stats *st, char *errstr,
                            size_t errlen)
{
    pgw_store *s = inst;
    PGresult *r = NULL;
    char *sql =
        pgw_sql_expand(&s->names, "SELECT pg_current_wal_insert_lsn()::text, "
                                  "(SELECT count(*) FROM {D})::int8");
    if (!sql)
        return OBX_NOMEM;
    obx_status rc = pgw_exec(s, sql, 0, NULL, &r, "stats", errstr, errlen);
    free(sql);
    if (rc != OBX_OK)
        return rc;
    uint64_t server = 0;
    pgo_lsn_parse(PQgetvalue(r, 0, 0), &server);
    uint64_t dead = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (s->repl && !s->caught_up && s->catchup_lsn == 0)
        s->catchup_lsn = server;
    int64_t until = s->host->mono_us() + 200 * 1000;
    /* with events in memory pending is not 0 anyway: only an empty
     * instance needs to know whether the stream has caught up */
    while (s->repl && !s->recovering && s->n_live == 0 && !s->caught_up &&
           s->received_lsn < s->catchup_lsn && s->host->mono_us() < until)
        if (pgw_stream_pump(s, 20 * 1000, errstr, errlen) != OBX_OK)
            break;
    if (s->repl && s->received_lsn >= s->catchup_lsn)
        s->caught_up = true;
    int64_t lag = -1;
    rc = pgw_slot_check(s, &lag, errstr, errlen);
    s->lag_bytes = lag;
    bool behind = s->recovering || (s->repl && !s->caught_up);
    obx_store_stats out = {
        .struct_size = st->struct_size,
        .pending = s->n_live ? s->n_live
                   : behind  ? 1
                             : 0,
        .dead = dead,
        .oldest_pending_us = s->head ? s->head->ev.created_at_us : 0,
        .lag_bytes = lag,
        .standby = s->standby ? 1 : 0,
    };
    size_t len = st->struct_size < sizeof out ? st->struct_size : sizeof out;
    memcpy(st, &out, len);
    return rc;
}

typedef struct pgw_emit_ctx {
    obx_emit_fn emit;
    void *ctx;
} pgw_emit_ctx;

static int pgw_emit_one(void *ctx, const char *sql)
{
    pgw_emit_ctx *e = ctx;
    size_t len = strlen(sql);
    char *stmt = malloc(len + 3);
    if (!stmt)
        return -1;
    memcpy(stmt, sql, len);
    memcpy(stmt + len, ";\n", 3);
    e->emit(e->ctx, stmt);
    free(stmt);
    return 0;
}

/* The database a connection with `conninfo` would use, as libpq picks it
 * (dbname, PGDATABASE, then the user name: user, PGUSER, the login), for
 * the default slot name when there is no connection; false when it cannot
 * be told. A service file is not read: with one, set store.slot. */
static bool schema_db(const char *conninfo, char *out, size_t len)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &msg);
    PQfreemem(msg);
    const char *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "dbname") == 0 && o->val && o->val[0])
            db = o->val;
        if (strcmp(o->keyword, "user") == 0 && o->val && o->val[0])
            user = o->val;
    }
    const char *env_db = getenv("PGDATABASE"), *env_user = getenv("PGUSER");
    struct passwd *pw = getpwuid(geteuid());
    const char *pick = db                        ? db
                       : env_db && env_db[0]     ? env_db
                       : user                    ? user
                       : env_user && env_user[0] ? env_user
                       : pw                      ? pw->pw_name
                                                 : NULL;
    if (pick)
        snprintf(out, len, "%s", pick);
    PQconninfoFree(opts);
    return pick != NULL;
}

/* The DDL: tables, publication, slot; the role needs REPLICATION. */
static obx_status pgw_schema(const obx_host *host, const void *config,
                             obx_emit_fn emit, void *ctx)
{
    (void)host;
    pgw_names n;
    char err[OBX_ERRSTR_LEN];
    if (pgw_names_init(&n, config, err, sizeof err) != 0) {
        emit(ctx, "-- ");
        emit(ctx, err);
        emit(ctx, "\n");
        return OBX_CONFIG;
    }
    char db[256];
    const pgw_config *conf = config;
    if (!n.slot && schema_db(conf->conninfo, db, sizeof db))
        pgw_names_slot(&n, conf, db);
    if (!n.slot) {
        emit(ctx, "-- store.slot is not set and the database cannot be "
                  "told from store.conninfo: set store.slot\n");
        return OBX_CONFIG;
    }
    emit(ctx, "-- outbox-relay pg_wal schema (PostgreSQL 14 or later, "
              "wal_level = logical).\n-- The relay's role needs the "
              "REPLICATION attribute (ALTER ROLE ... REPLICATION).\n"
              "-- The outbox table and its indexes are pg_poll's: either "
              "store runs on them.\n-- The slot streams only events "
              "committed after it is created.\n");
    pgw_emit_ctx e = {emit, ctx};
    int rc = pgw_ddl_each(&n, config,
                          PGW_DDL_OUTBOX | PGW_DDL_DEAD | PGW_DDL_PUBLICATION |
                              PGW_DDL_SLOT,
                          pgw_emit_one, &e);
    return rc == 0 ? OBX_OK : OBX_NOMEM;
}

static obx_status pgw_validate(const obx_host *host, const void *config,
                               bool connect, char *errstr, size_t errlen)
{
    pgw_store s;
    obx_status st = pgw_init(&s, host, config, errstr, errlen);
    if (st == OBX_OK && connect) {
        st = pgw_sql_ensure(&s, errstr, errlen);
        PGconn *rc =
            st == OBX_OK ? pgw_connect(&s, true, errstr, errlen) : NULL;
        if (st == OBX_OK && !rc)
            st = OBX_UNAVAILABLE;
        PQfinish(rc);
    }
    pgw_fini(&s);
    return st;
}

static const obx_store_ops pgw_ops = {
    .struct_size = sizeof(obx_store_ops),
    .flags = 0, /* no ordered claims (the engine holds keys), no durable
                   retries (they live in memory) */
    .validate = pgw_validate,
    .open = pgw_open,
    .close = pgw_close,
    .claim = pgw_claim,
    .ack = pgw_ack,
    .release = pgw_release,
    .bury = pgw_bury,
    .stats = pgw_stats,
    .schema = pgw_schema,
    .dead_list = pgw_dead_list,
    .dead_requeue = pgw_dead_requeue,
    .dead_purge = pgw_dead_purge,
    .demo = pgw_demo,
};

OBX_STORE_PLUGIN("pg_wal",
                 "PostgreSQL logical replication (pgoutput): the WAL is the "
                 "queue",
                 "1.0.0", pgw_options, pgw_config, pgw_ops)
