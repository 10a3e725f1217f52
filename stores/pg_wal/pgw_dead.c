/* The pg_wal store's dead-letter operations (`outbox-relay dead list |
 * requeue | purge`): list, move back into the stream, delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pgw_store.h"

static obx_status dead_row(pgw_store *s, const PGresult *r, int row,
                           obx_dead_cb cb, void *ctx, int *stop)
{
    pgw_event *e = NULL;
    obx_status st = pgw_event_from_result(s, r, row, &e);
    if (st != OBX_OK)
        return st;
    e->ev.attempts = (uint32_t)strtoul(PQgetvalue(r, row, 9), NULL, 10);
    obx_dead_letter dl = {
        .event = &e->ev,
        .reason = PQgetisnull(r, row, 10) ? NULL : PQgetvalue(r, row, 10),
        .destination = PQgetisnull(r, row, 11) ? NULL : PQgetvalue(r, row, 11),
        .dead_at_us = strtoll(PQgetvalue(r, row, 12), NULL, 10),
    };
    *stop = cb(ctx, &dl);
    free(e);
    return OBX_OK;
}

/* clang-format off */
/* $1: an event_id or NULL (all); times as unix microseconds. */
static const char pgw_dead_list_sql[] =
    "SELECT id, event_id, aggregate_type, aggregate_id, event_type,\n"
    "       payload, topic, headers::text,\n"
    "       (extract(epoch FROM created_at) * 1000000)::int8, attempts,\n"
    "       dead_reason, dead_destination,\n"
    "       (extract(epoch FROM dead_at) * 1000000)::int8\n"
    "  FROM {D}\n"
    " WHERE $1::text IS NULL OR event_id = $1\n"
    " ORDER BY id";
/* clang-format on */

/* Call cb for each dead letter (all, or event_id's), oldest first. */
obx_status pgw_dead_list(void *inst, const char *event_id, obx_dead_cb cb,
                         void *ctx, char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    char *sql = pgw_sql_expand(&s->names, pgw_dead_list_sql);
    if (!sql)
        return OBX_NOMEM;
    const char *p[1] = {event_id};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, 1, p, &r, "dead list", errstr, errlen);
    free(sql);
    int stop = 0;
    int rows = r ? PQntuples(r) : 0;
    for (int i = 0; st == OBX_OK && i < rows && !stop; i++)
        st = dead_row(s, r, i, cb, ctx, &stop);
    PQclear(r);
    if (st == OBX_OK && event_id && rows == 0) {
        osc_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return st;
}

static obx_status dead_count(pgw_store *s, const char *tpl,
                             const char *event_id, uint64_t *count,
                             const char *what, char *errstr, size_t errlen)
{
    char *sql = pgw_sql_expand(&s->names, tpl);
    if (!sql)
        return OBX_NOMEM;
    const char *p[2] = {event_id, s->names.prefix};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, sql, 2, p, &r, what, errstr, errlen);
    free(sql);
    if (st != OBX_OK)
        return st;
    *count = PQntuples(r) == 1 ? strtoull(PQgetvalue(r, 0, 0), NULL, 10)
                               : strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (event_id && *count == 0) {
        osc_errf_words(errstr, errlen, "no dead letter with event_id '%s'",
                       event_id);
        return OBX_NOT_FOUND;
    }
    return OBX_OK;
}

/* The statements below take $1, an event_id or NULL (all), and $2, the
 * message prefix (NOT NULL: it is always set; it is a parameter so the
 * statements share one parameter list). */
/* clang-format off */

/* The original row (if any) goes first, in its own statement (a row
 * deleted by a sibling CTE still holds its unique key), so the
 * re-inserted one keeps the event id: consumers dedup on it, and it was
 * never delivered. */
#define PGW_REQUEUE_GONE                                                       \
    "DELETE FROM {T}\n"                                                        \
    " WHERE {event_id} IN (SELECT event_id FROM {D}\n"                         \
    "                       WHERE ($1::text IS NULL OR event_id = $1)\n"       \
    "                         AND $2::text IS NOT NULL)"
static const char pgw_requeue_gone_sql[] = PGW_REQUEUE_GONE;
/* ack_mode = mark keeps published rows: the original was never
 * published, and saying so lets the lookup use the partial unique index
 * on event_id (not a scan of every row kept for retention) and leaves
 * alone a published row whose id a writer used again. (The other modes
 * never set published_at, and a table of theirs may lack it.) */
static const char pgw_requeue_gone_marked_sql[] =
    PGW_REQUEUE_GONE "\n   AND {published_at} IS NULL";

static const char pgw_requeue_table_sql[] =
    "WITH d AS (DELETE FROM {D}\n"
    "            WHERE ($1::text IS NULL OR event_id = $1)\n"
    "              AND $2::text IS NOT NULL\n"
    "        RETURNING *),\n"
    "   ins AS (INSERT INTO {T} ({event_id}, {aggregate_type},\n"
    "                            {aggregate_id}, {event_type}, {payload},\n"
    "                            {topic}, {headers}, {created_at})\n"
    "           SELECT event_id, aggregate_type, aggregate_id, event_type,\n"
    "                  payload, topic, headers, created_at\n"
    "             FROM d ORDER BY d.id\n"
    "        RETURNING 1)\n"
    "SELECT count(*) FROM ins";

/* A table-less outbox: emit the envelope again as a transactional
 * message. Payloads came from JSON envelopes, so they are UTF-8 text. */
static const char pgw_requeue_msg_sql[] =
    "WITH d AS (DELETE FROM {D}\n"
    "            WHERE $1::text IS NULL OR event_id = $1\n"
    "        RETURNING *)\n"
    "SELECT count(pg_logical_emit_message(true, $2, json_build_object(\n"
    "           'event_id', event_id,\n"
    "           'aggregate_type', aggregate_type,\n"
    "           'aggregate_id', aggregate_id,\n"
    "           'event_type', event_type,\n"
    "           'payload', convert_from(payload, 'UTF8'),\n"
    "           'topic', topic,\n"
    "           'headers', headers)::text))\n"
    "  FROM (SELECT * FROM d ORDER BY id) x";

static const char pgw_purge_sql[] =
    "DELETE FROM {D}\n"
    " WHERE ($1::text IS NULL OR event_id = $1)\n"
    "   AND $2::text IS NOT NULL";

/* clang-format on */

/* Move dead letters back into the stream (the outbox table, or a new
 * logical message when the outbox has no table). */
obx_status pgw_dead_requeue(void *inst, const char *event_id, uint64_t *count,
                            char *errstr, size_t errlen)
{
    pgw_store *s = inst;
    if (s->conf->source == PGW_SOURCE_MESSAGES)
        return dead_count(s, pgw_requeue_msg_sql, event_id, count,
                          "dead requeue", errstr, errlen);
    obx_status st =
        pgw_run(s, "BEGIN", 0, NULL, "dead requeue", errstr, errlen);
    uint64_t gone = 0;
    if (st == OBX_OK)
        st = dead_count(s,
                        s->conf->ack_mode == PGW_ACK_MARK
                            ? pgw_requeue_gone_marked_sql
                            : pgw_requeue_gone_sql,
                        event_id, &gone, "dead requeue", errstr, errlen);
    if (st == OBX_NOT_FOUND)
        st = OBX_OK; /* no original row (ack_mode delete); the next
                        statement reports an unknown event_id */
    if (st == OBX_OK)
        st = dead_count(s, pgw_requeue_table_sql, event_id, count,
                        "dead requeue", errstr, errlen);
    if (st == OBX_OK)
        return pgw_run(s, "COMMIT", 0, NULL, "dead requeue", errstr, errlen);
    if (s->sql)
        PQclear(pgw_query(s, &s->sql, "ROLLBACK", 0, NULL, NULL, NULL, true));
    return st;
}

obx_status pgw_dead_purge(void *inst, const char *event_id, uint64_t *count,
                          char *errstr, size_t errlen)
{
    return dead_count(inst, pgw_purge_sql, event_id, count, "dead purge",
                      errstr, errlen);
}
