/* The pg_wal store's replication connection: START_REPLICATION, reading
 * and decoding the stream, and standby status updates (the watermark).
 * The loop follows pg_recvlogical: a written position (what arrived) and
 * a flushed position (what is done), keepalives answered when the server
 * asks, status updates on an interval. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err_words.h"
#include "pgw_store.h"

static int64_t pg_now(const pgw_store *s)
{
    return s->host->now_us() - PGO_EPOCH_OFFSET_US;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* ---- the watermark ---- */

uint64_t pgw_watermark(const pgw_store *s)
{
    uint64_t w;
    if (s->head)
        /* the oldest unsettled event's transaction must be replayed:
         * confirming its commit LSN (not past it) keeps it in the slot;
         * recovered rows (seq 0) hold the stream where it started */
        w = s->head->ev.pos.seq;
    else if (s->in_txn)
        w = s->txn_lsn;
    else
        w = s->idle_lsn;
    return max_u64(w, s->flushed_lsn);
}

void pgw_stream_feedback(pgw_store *s, bool force, bool reply)
{
    if (!s->repl)
        return;
    uint64_t w = pgw_watermark(s);
    int64_t now = s->host->mono_us();
    if (!force && !reply && w == s->flushed_lsn && now < s->next_status_us)
        return;
    uint8_t msg[PGO_STATUS_LEN];
    uint64_t written = max_u64(s->received_lsn, w);
    if (s->host->log_enabled(s->host, OBX_LOG_DEBUG)) {
        /* what the watermark came from: the evidence when the slot is
         * ever confirmed past an event not yet published */
        char a[32], b[32], c[32];
        const char *why = s->head     ? "oldest unsettled event"
                          : s->in_txn ? "open transaction"
                                      : "idle";
        uint64_t from = s->head     ? s->head->ev.pos.seq
                        : s->in_txn ? s->txn_lsn
                                    : s->idle_lsn;
        s->host->log(s->host, OBX_LOG_DEBUG,
                     "pg_wal: status update written %s flushed %s (%s at "
                     "%s, %zu held%s%s)",
                     pgo_lsn_str(written, a, sizeof a),
                     pgo_lsn_str(w, b, sizeof b), why,
                     pgo_lsn_str(from, c, sizeof c), s->n_live,
                     force ? ", forced" : "", reply ? ", reply asked" : "");
    }
    pgo_status_update(msg, written, w, w, pg_now(s), reply);
    if (PQputCopyData(s->repl, (const char *)msg, sizeof msg) <= 0 ||
        PQflush(s->repl) != 0) {
        pgw_stream_stop(s, "could not send a status update");
        return;
    }
    s->flushed_lsn = w;
    s->next_status_us = now + s->conf->status_interval_ms * 1000;
}

/* ---- starting and stopping ---- */

void pgw_stream_stop(pgw_store *s, const char *why)
{
    if (!s->repl)
        return;
    PQfinish(s->repl);
    s->repl = NULL;
    s->in_txn = false;
    s->n_rels = 0; /* the server sends Relation messages again */
    if (why)
        s->host->log(s->host, OBX_LOG_WARN,
                     "pg_wal %s: replication stream stopped (%s); resuming "
                     "from slot \"%s\"",
                     s->target, why, s->names.slot);
}

/* How long close waits for the server to end the stream. */
#define PGW_FINISH_US (2 * 1000 * 1000)

/* Wait until the socket is readable and read it; false at the deadline
 * or when the connection broke. */
static bool finish_wait(pgw_store *s, int64_t until_us)
{
    int64_t left = until_us - s->host->mono_us();
    if (left <= 0)
        return false;
    struct pollfd pfd = {PQsocket(s->repl), POLLIN, 0};
    int rc = poll(&pfd, 1, (int)((left + 999) / 1000));
    return (rc > 0 || (rc < 0 && errno == EINTR)) &&
           PQconsumeInput(s->repl) == 1;
}

/* The server handles our messages in order and answers CopyDone only
 * after the status update before it: once its end arrives, the slot holds
 * the position we confirmed last, so whoever looks at the slot after the
 * relay exited (an operator, a script, the next relay) sees it there
 * (pg_recvlogical ends its stream the same way). Dropping the socket
 * instead left the update to be read by the walsender some time after
 * the process was gone. */
void pgw_stream_finish(pgw_store *s)
{
    if (!s->repl)
        return;
    int64_t until = s->host->mono_us() + PGW_FINISH_US;
    bool ended = PQputCopyEnd(s->repl, NULL) == 1 && PQflush(s->repl) == 0;
    while (ended) {
        char *buf = NULL;
        int len = PQgetCopyData(s->repl, &buf, 1);
        if (len > 0) {
            PQfreemem(buf); /* not held, so never confirmed: replayed */
            continue;
        }
        if (len < 0)
            break; /* the server's CopyDone (-1), or the connection broke */
        ended = finish_wait(s, until);
    }
    while (ended) {
        if (PQisBusy(s->repl)) {
            ended = finish_wait(s, until);
            continue;
        }
        PGresult *r = PQgetResult(s->repl);
        if (!r)
            break;
        PQclear(r);
    }
    if (!ended)
        s->host->log(s->host, OBX_LOG_DEBUG,
                     "pg_wal %s: the stream did not end cleanly within %d "
                     "ms (or the connection broke); closing it anyway",
                     s->target, PGW_FINISH_US / 1000);
    pgw_stream_stop(s, NULL);
}

/* 'a','b' -> 'a''','b''' would be wrong: publication_names is one string
 * literal holding a list of (double-quoted) identifiers. */
static char *start_command(const pgw_store *s)
{
    char *cmd = NULL;
    char pub[2 * PGW_NAME_MAX + 8];
    size_t o = 0;
    pub[o++] = '"';
    for (const char *p = s->names.publication; *p && o + 4 < sizeof pub; p++) {
        if (*p == '"')
            pub[o++] = '"';
        if (*p == '\'')
            pub[o++] = '\'';
        pub[o++] = *p;
    }
    pub[o++] = '"';
    pub[o] = '\0';
    bool msgs = s->conf->source != PGW_SOURCE_TABLE;
    if (asprintf(&cmd,
                 "START_REPLICATION SLOT \"%s\" LOGICAL 0/0 (proto_version "
                 "'1', publication_names '%s'%s)",
                 s->names.slot, pub, msgs ? ", messages 'true'" : "") < 0)
        return NULL;
    return cmd;
}

static obx_status start_failed(pgw_store *s, PGresult *r, char *errstr,
                               size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    bool busy = state && strcmp(state, "55006") == 0;
    /* the standby note goes first: a long server message must not push
     * it out of the buffer */
    obx_status st =
        pgw_fail(s, s->repl, r,
                 busy ? "START_REPLICATION (another relay streams this slot; "
                        "standing by)"
                      : "START_REPLICATION",
                 errstr, errlen);
    s->standby = busy;
    PQclear(r);
    PQfinish(s->repl);
    s->repl = NULL;
    return st;
}

static obx_status stream_start(pgw_store *s, char *errstr, size_t errlen);

/* standby is this attempt's answer, not a latch: a slot that was busy and
 * now fails for another reason (invalidated, auth, server down) is an
 * outage the circuit must see, not an idle standby. */
obx_status pgw_stream_start(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->repl)
        return OBX_OK;
    bool was = s->standby;
    s->standby = false;
    obx_status st = stream_start(s, errstr, errlen);
    if (s->standby && !was)
        s->host->log(s->host, OBX_LOG_INFO,
                     "slot %s is streamed by another relay: standing by to "
                     "take over",
                     s->names.slot);
    else if (was && st == OBX_OK)
        s->host->log(s->host, OBX_LOG_INFO, "took over slot %s", s->names.slot);
    return st;
}

static obx_status stream_start(pgw_store *s, char *errstr, size_t errlen)
{
    int64_t lag;
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st == OBX_OK)
        st = pgw_slot_check(s, &lag, errstr, errlen);
    if (st != OBX_OK)
        return st;
    s->lag_bytes = lag;
    s->repl = pgw_connect(s, true, errstr, errlen);
    if (!s->repl)
        return OBX_UNAVAILABLE;
    char *cmd = start_command(s);
    if (!cmd) {
        PQfinish(s->repl);
        s->repl = NULL;
        return OBX_NOMEM;
    }
    PGresult *r = pgw_query(s, &s->repl, cmd, 0, NULL, NULL, NULL, true);
    free(cmd);
    if (!s->repl) {
        osc_errf_words(errstr, errlen, "pg_wal %s: START_REPLICATION: %s",
                       s->target, s->silent);
        s->silent[0] = '\0';
        return OBX_UNAVAILABLE;
    }
    if (PQresultStatus(r) != PGRES_COPY_BOTH)
        return start_failed(s, r, errstr, errlen);
    PQclear(r);
    s->last_recv_us = s->host->mono_us();
    s->ping_us = 0;
    s->in_txn = false;
    s->received_lsn = max_u64(s->received_lsn, s->start_lsn);
    s->idle_lsn = max_u64(s->idle_lsn, s->start_lsn);
    s->flushed_lsn = max_u64(s->flushed_lsn, s->start_lsn);
    s->next_status_us = 0;
    s->catchup_lsn = 0; /* stats sets the target again */
    s->caught_up = false;
    char lsn[32];
    s->host->log(s->host, OBX_LOG_INFO,
                 "pg_wal %s: streaming slot \"%s\" from %s (publication "
                 "\"%s\"%s)",
                 s->target, s->names.slot,
                 pgo_lsn_str(s->start_lsn, lsn, sizeof lsn),
                 s->names.publication,
                 s->conf->source != PGW_SOURCE_TABLE ? ", messages" : "");
    return OBX_OK;
}

/* ---- decoding ---- */

static obx_status protocol_error(pgw_store *s, const char *what, char *errstr,
                                 size_t errlen)
{
    osc_errf_words(errstr, errlen, "pg_wal %s: replication protocol error: %s",
                   s->target, what);
    s->host->log(s->host, OBX_LOG_ERROR, "%s", errstr);
    return OBX_FATAL;
}

static pgw_rel *rel_find(pgw_store *s, uint32_t oid)
{
    for (size_t i = 0; i < s->n_rels; i++)
        if (s->rels[i].oid == oid)
            return &s->rels[i];
    return NULL;
}

static obx_status on_relation(pgw_store *s, const pgo_msg *m)
{
    pgw_rel *r = rel_find(s, m->relid);
    if (!r) {
        if (s->n_rels == s->cap_rels) {
            size_t cap = s->cap_rels ? s->cap_rels * 2 : 4;
            pgw_rel *p = realloc(s->rels, cap * sizeof *p);
            if (!p)
                return OBX_NOMEM;
            s->rels = p;
            s->cap_rels = cap;
        }
        r = &s->rels[s->n_rels++];
    }
    memset(r, 0, sizeof *r);
    r->oid = m->relid;
    const char *nsp = m->nspname[0] ? m->nspname : "pg_catalog";
    r->ours = strcmp(m->relname, s->names.table) == 0 &&
              (!s->nsp[0] || strcmp(nsp, s->nsp) == 0);
    for (int c = 0; c < PGW_C_N_MAPPABLE; c++) {
        r->idx[c] = -1;
        for (int i = 0; i < m->ncols; i++)
            if (strcmp(m->cols[i].name, s->names.col[c]) == 0) {
                r->idx[c] = i;
                r->type[c] = m->cols[i].type_oid;
            }
    }
    return OBX_OK;
}

/* Events before or at the newest position we already hold were read on
 * an earlier connection: the slot replays from its confirmed position,
 * and we kept everything after it. */
static bool already_have(const pgw_store *s, uint64_t seq, uint64_t sub)
{
    return s->have_last &&
           (seq < s->last_seq || (seq == s->last_seq && sub <= s->last_sub));
}

static void take_event(pgw_store *s, pgw_event *e)
{
    if (s->host->log_enabled(s->host, OBX_LOG_DEBUG)) {
        char a[32];
        s->host->log(s->host, OBX_LOG_DEBUG, "pg_wal: read event %s at %s.%llu",
                     e->ev.event_id ? e->ev.event_id : "?",
                     pgo_lsn_str(e->ev.pos.seq, a, sizeof a),
                     (unsigned long long)e->ev.pos.sub);
    }
    s->have_last = true;
    s->last_seq = e->ev.pos.seq;
    s->last_sub = e->ev.pos.sub;
    pgw_live_append(s, e);
}

static obx_status on_insert(pgw_store *s, const pgo_msg *m, char *errstr,
                            size_t errlen)
{
    if (!s->in_txn)
        return protocol_error(s, "Insert outside a transaction", errstr,
                              errlen);
    pgw_rel *r = rel_find(s, m->relid);
    if (!r)
        return protocol_error(s, "Insert for a relation never described",
                              errstr, errlen);
    if (!r->ours || s->conf->source == PGW_SOURCE_MESSAGES)
        return OBX_OK;
    uint64_t sub = s->txn_sub++;
    if (already_have(s, s->txn_lsn, sub))
        return OBX_OK;
    pgw_event *e = NULL;
    obx_status st =
        pgw_event_from_row(s, r, m, s->txn_lsn, sub, s->txn_ts_us, &e);
    if (st == OBX_OK)
        take_event(s, e);
    return st;
}

static obx_status on_message(pgw_store *s, const pgo_msg *m, char *errstr,
                             size_t errlen)
{
    if (s->conf->source == PGW_SOURCE_TABLE ||
        strcmp(m->prefix, s->names.prefix) != 0)
        return OBX_OK;
    if (!(m->flags & PGO_MESSAGE_TRANSACTIONAL)) {
        /* not tied to a commit: it may come from a transaction that
         * rolled back, so it is never an outbox event */
        if (!s->warned_nontx)
            s->host->log(s->host, OBX_LOG_WARN,
                         "pg_wal: ignoring non-transactional messages with "
                         "prefix '%s'; emit them with "
                         "pg_logical_emit_message(true, ...)",
                         s->names.prefix);
        s->warned_nontx = true;
        return OBX_OK;
    }
    if (!s->in_txn)
        return protocol_error(s,
                              "transactional Message outside a "
                              "transaction",
                              errstr, errlen);
    uint64_t sub = s->txn_sub++;
    if (already_have(s, s->txn_lsn, sub))
        return OBX_OK;
    pgw_event *e = NULL;
    obx_status st =
        pgw_event_from_message(s, m, s->txn_lsn, sub, s->txn_ts_us, &e);
    if (st == OBX_OK)
        take_event(s, e);
    return st;
}

static obx_status on_begin(pgw_store *s, const pgo_msg *m, char *errstr,
                           size_t errlen)
{
    if (s->in_txn)
        return protocol_error(s, "Begin inside a transaction", errstr, errlen);
    s->in_txn = true;
    s->txn_lsn = m->lsn;
    s->txn_ts_us = m->commit_ts + PGO_EPOCH_OFFSET_US;
    s->txn_sub = 0;
    return OBX_OK;
}

static obx_status on_commit(pgw_store *s, const pgo_msg *m, char *errstr,
                            size_t errlen)
{
    if (!s->in_txn || m->lsn != s->txn_lsn)
        return protocol_error(s,
                              "Commit without a Begin, or for another "
                              "transaction",
                              errstr, errlen);
    s->in_txn = false;
    s->idle_lsn = max_u64(s->idle_lsn, m->end_lsn);
    return OBX_OK;
}

static obx_status on_data(pgw_store *s, const pgo_frame *f, char *errstr,
                          size_t errlen)
{
    char err[OBX_ERRSTR_LEN];
    int rc = pgo_decode(&s->msg, f->data, f->len, err, sizeof err);
    if (rc == PGO_NOMEM)
        return OBX_NOMEM;
    if (rc != PGO_OK)
        return protocol_error(s, err, errstr, errlen);
    const pgo_msg *m = &s->msg;
    switch (m->kind) {
    case PGO_BEGIN: return on_begin(s, m, errstr, errlen);
    case PGO_COMMIT: return on_commit(s, m, errstr, errlen);
    case PGO_RELATION: return on_relation(s, m);
    case PGO_INSERT: return on_insert(s, m, errstr, errlen);
    case PGO_MESSAGE: return on_message(s, m, errstr, errlen);
    default: return OBX_OK; /* Type, Origin; others are not published */
    }
}

static obx_status on_frame(pgw_store *s, const uint8_t *buf, size_t len,
                           char *errstr, size_t errlen)
{
    s->last_recv_us = s->host->mono_us();
    s->ping_us = 0;
    pgo_frame f;
    char err[OBX_ERRSTR_LEN];
    if (pgo_frame_parse(buf, len, &f, err, sizeof err) != PGO_OK)
        return protocol_error(s, err, errstr, errlen);
    if (f.kind == 'k') {
        if (s->host->log_enabled(s->host, OBX_LOG_DEBUG)) {
            char a[32];
            s->host->log(s->host, OBX_LOG_DEBUG,
                         "pg_wal: keepalive wal_end %s%s%s",
                         pgo_lsn_str(f.wal_end, a, sizeof a),
                         s->in_txn ? " (in a transaction)" : "",
                         f.reply_requested ? " (reply asked)" : "");
        }
        s->received_lsn = max_u64(s->received_lsn, f.wal_end);
        /* everything before the server's position reached us before this
         * keepalive; outside a transaction nothing of it is in flight */
        if (!s->in_txn)
            s->idle_lsn = max_u64(s->idle_lsn, f.wal_end);
        if (f.reply_requested)
            pgw_stream_feedback(s, true, false);
        return OBX_OK;
    }
    s->received_lsn = max_u64(s->received_lsn, f.wal_start);
    return on_data(s, &f, errstr, errlen);
}

/* ---- reading ---- */

static void sleep_until(const pgw_store *s, int64_t until_us)
{
    int64_t left = until_us - s->host->mono_us();
    if (left <= 0)
        return;
    struct timespec ts = {(time_t)(left / 1000000),
                          (long)(left % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static obx_status stream_ended(pgw_store *s, char *errstr, size_t errlen)
{
    PGresult *r = PQgetResult(s->repl);
    obx_status st =
        pgw_fail(s, s->repl, r, "replication stream ended", errstr, errlen);
    PQclear(r);
    char why[OBX_ERRSTR_LEN];
    snprintf(why, sizeof why, "%s", errstr);
    pgw_stream_stop(s, why);
    /* the next claim reconnects; a lost slot is reported then */
    return st == OBX_FATAL ? OBX_UNAVAILABLE : st;
}

/* ---- a stream that went silent ---- */

/* The server sends nothing while nothing is written (our status updates
 * keep it from sending keepalives), but answers at once a status update
 * that asks for a reply. A stream silent for half of store.query_timeout is
 * asked for one; when that goes unanswered for another half, the
 * connection is taken for lost (a hung server, a dead middlebox: no FIN,
 * no RST, and TCP keepalives answered by whatever sits in between). When
 * the relay itself was away longer (a slow publish), the reply still gets
 * half of the timeout. */
static int64_t silence_due(const pgw_store *s)
{
    int64_t half = s->conf->query_timeout_ms * 500;
    return s->ping_us ? s->ping_us + half : s->last_recv_us + half;
}

/* false (the stream stopped, errstr filled) when the server stays silent. */
static bool still_there(pgw_store *s, char *errstr, size_t errlen)
{
    if (s->conf->query_timeout_ms <= 0 || s->host->mono_us() < silence_due(s))
        return true;
    if (!s->ping_us) {
        s->ping_us = s->host->mono_us();
        pgw_stream_feedback(s, true, true);
        return s->repl != NULL;
    }
    osc_errf_words(errstr, errlen,
                   "pg_wal %s: the replication stream sent nothing for %lld "
                   "ms, not even the reply asked for (a stalled link or a "
                   "hung server)",
                   s->target,
                   (long long)((s->host->mono_us() - s->last_recv_us) / 1000));
    pgw_stream_stop(s, "the server stopped answering");
    return false;
}

/* Wait for the socket up to until_us (monotonic), waking for status
 * updates. false when the connection broke. */
static bool wait_readable(pgw_store *s, int64_t until_us)
{
    int64_t now = s->host->mono_us();
    int64_t until = until_us < s->next_status_us ? until_us : s->next_status_us;
    if (s->conf->query_timeout_ms > 0 && silence_due(s) < until)
        until = silence_due(s);
    int ms = until > now ? (int)((until - now + 999) / 1000) : 0;
    struct pollfd pfd = {PQsocket(s->repl), POLLIN, 0};
    int rc = poll(&pfd, 1, ms);
    if (rc < 0 && errno != EINTR)
        return false;
    pgw_stream_feedback(s, false, false);
    if (!s->repl)
        return false;
    return rc <= 0 || PQconsumeInput(s->repl) == 1;
}

obx_status pgw_stream_pump(pgw_store *s, int64_t wait_us, char *errstr,
                           size_t errlen)
{
    int64_t until = s->host->mono_us() + wait_us;
    size_t cap = (size_t)s->conf->max_buffered;
    /* What the socket holds already, without waiting: PQgetCopyData only
     * parses libpq's buffer. A failure shows in PQgetCopyData below. */
    if (s->repl && s->n_live < cap)
        PQconsumeInput(s->repl);
    while (s->repl) {
        if (s->n_live >= cap) {
            /* full: the server waits (TCP backpressure); an idle claim
             * still waits, for a retry to fall due */
            pgw_stream_feedback(s, false, false);
            if (s->n_ready == 0)
                sleep_until(s, until);
            return OBX_OK;
        }
        char *buf = NULL;
        int len = PQgetCopyData(s->repl, &buf, 1);
        if (len > 0) {
            obx_status st =
                on_frame(s, (const uint8_t *)buf, (size_t)len, errstr, errlen);
            PQfreemem(buf);
            if (st != OBX_OK)
                return st;
            continue;
        }
        if (len == -1)
            return stream_ended(s, errstr, errlen);
        if (len < -1) {
            osc_errf_words(errstr, errlen,
                           "pg_wal %s: replication connection: %s", s->target,
                           PQerrorMessage(s->repl));
            pgw_stream_stop(s, "connection lost");
            return OBX_UNAVAILABLE;
        }
        pgw_stream_feedback(s, false, false);
        if (!s->repl)
            break;
        if (!still_there(s, errstr, errlen))
            return OBX_UNAVAILABLE;
        if (s->n_ready > 0 || s->host->mono_us() >= until)
            return OBX_OK;
        if (!wait_readable(s, until)) {
            osc_errf_words(errstr, errlen,
                           "pg_wal %s: replication connection lost", s->target);
            pgw_stream_stop(s, "connection lost while waiting");
            return OBX_UNAVAILABLE;
        }
    }
    osc_errf_words(errstr, errlen, "pg_wal %s: not streaming", s->target);
    return OBX_UNAVAILABLE;
}
