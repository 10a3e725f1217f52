/* The pg_wal store's settle SQL: ack_mode mark / delete for published
 * events' rows, and burying events in the dead-letter table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err_words.h"
#include "pgw_store.h"

/* clang-format off */

/* ---- ack_mode mark / delete: $1 the rows' ids, an int8[] ---- */

static const char pgw_ack_mark_sql[] =
    "UPDATE {T} SET {published_at} = now()\n"
    " WHERE {id} = ANY($1::int8[]) AND {published_at} IS NULL";

static const char pgw_ack_delete_sql[] =
    "DELETE FROM {T} WHERE {id} = ANY($1::int8[])";

/* ---- bury ---- */

static const char pgw_bury_insert_sql[] =
    "INSERT INTO {D} (event_id, aggregate_type, aggregate_id, event_type,\n"
    "                 payload, topic, headers, created_at, attempts,\n"
    "                 dead_reason, dead_destination, from_message)\n"
    "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb,\n"
    "        to_timestamp($8::int8 / 1e6), $9, $10, $11, false)";

/* The buried event's row: $1 its id, $2 the reason, then (a table with
 * the bookkeeping columns) $3 the destination and $4 the attempts. As
 * pg_poll buries, so the row tells its story after a switch of stores. */
static const char pgw_bury_mark_full_sql[] =
    "UPDATE {T}\n"
    "   SET {dead_at} = now(), {dead_reason} = $2,\n"
    "       {dead_destination} = $3, {attempts} = $4::int4\n"
    " WHERE {id} = $1::int8";

static const char pgw_bury_mark_sql[] =
    "UPDATE {T} SET {dead_at} = now(), {dead_reason} = $2\n"
    " WHERE {id} = $1::int8";

static const char pgw_bury_delete_sql[] =
    "DELETE FROM {T} WHERE {id} = $1::int8 AND $2::text IS NOT NULL";

/* clang-format on */

/* ---- ack_mode mark / delete ---- */

obx_status pgw_sql_ack(pgw_store *s, obx_event *const *evs, size_t n,
                       char *errstr, size_t errlen)
{
    if (s->conf->ack_mode == PGW_ACK_NONE)
        return OBX_OK;
    pgw_buf b = {0};
    pgw_buf_add(&b, "{");
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        const pgw_event *e = (const pgw_event *)evs[i]->pos.ptr;
        if (e->row_id < 0)
            continue; /* a logical message: no row */
        char num[32];
        snprintf(num, sizeof num, "%s%lld", rows++ ? "," : "",
                 (long long)e->row_id);
        pgw_buf_add(&b, num);
    }
    pgw_buf_add(&b, "}");
    char *ids = pgw_buf_take(&b);
    if (!ids)
        return OBX_NOMEM;
    obx_status st = OBX_OK;
    if (rows) {
        const char *p[1] = {ids};
        st = pgw_run(s,
                     s->conf->ack_mode == PGW_ACK_MARK ? pgw_ack_mark_sql
                                                       : pgw_ack_delete_sql,
                     1, p, "ack", errstr, errlen);
    }
    free(ids);
    return st;
}

/* ---- dead letters ---- */

static char *headers_json(const obx_event *ev)
{
    if (ev->n_headers == 0)
        return NULL;
    json_t *o = json_object();
    for (size_t i = 0; o && i < ev->n_headers; i++)
        json_object_set_new(o, ev->headers[i].name,
                            json_string(ev->headers[i].value));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static obx_status bury_one(pgw_store *s, const char *ins, const char *mark,
                           const obx_burial *b, char *errstr, size_t errlen)
{
    const obx_event *ev = b->event;
    const pgw_event *e = (const pgw_event *)ev->pos.ptr;
    char created[32], att[16], rowid[32];
    snprintf(created, sizeof created, "%lld", (long long)ev->created_at_us);
    snprintf(att, sizeof att, "%u", ev->attempts);
    snprintf(rowid, sizeof rowid, "%lld", (long long)e->row_id);
    char *hdrs = headers_json(ev);
    const char *p[11] = {ev->event_id,
                         ev->aggregate_type,
                         ev->aggregate_id,
                         ev->event_type,
                         ev->payload,
                         ev->topic,
                         hdrs,
                         created,
                         att,
                         b->reason,
                         b->destination};
    int lens[11] = {0, 0, 0, 0, (int)ev->payload_len};
    int fmts[11] = {0, 0, 0, 0, 1};
    PGresult *r = pgw_query(s, &s->sql, ins, 11, p, lens, fmts, false);
    free(hdrs);
    obx_status st = OBX_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pgw_fail(s, s->sql, r, "bury", errstr, errlen);
    PQclear(r);
    if (st == OBX_OK && mark && e->row_id >= 0) {
        const char *mp[4] = {rowid, b->reason, b->destination, att};
        int np = s->conf->ack_mode == PGW_ACK_MARK && s->mark_full ? 4 : 2;
        r = pgw_query(s, &s->sql, mark, np, mp, NULL, NULL, false);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            st = pgw_fail(s, s->sql, r, "bury: mark the row", errstr, errlen);
        PQclear(r);
    }
    return st;
}

obx_status pgw_sql_bury(pgw_store *s, const obx_burial *items, size_t n,
                        char *errstr, size_t errlen)
{
    obx_status st = pgw_sql_ensure(s, errstr, errlen);
    if (st != OBX_OK || n == 0)
        return st;
    char *ins = pgw_sql_expand(&s->names, pgw_bury_insert_sql);
    bool mark_mode = s->conf->ack_mode == PGW_ACK_MARK;
    const char *mark_tpl = mark_mode && s->mark_full ? pgw_bury_mark_full_sql
                           : mark_mode               ? pgw_bury_mark_sql
                           : s->conf->ack_mode == PGW_ACK_DELETE
                               ? pgw_bury_delete_sql
                               : NULL;
    char *mark = mark_tpl ? pgw_sql_expand(&s->names, mark_tpl) : NULL;
    if (!ins || (mark_tpl && !mark)) {
        free(ins);
        free(mark);
        return OBX_NOMEM;
    }
    PQclear(pgw_query(s, &s->sql, "BEGIN", 0, NULL, NULL, NULL, true));
    for (size_t i = 0; i < n && st == OBX_OK; i++)
        st = bury_one(s, ins, mark, &items[i], errstr, errlen);
    if (st == OBX_OK) {
        PGresult *r =
            pgw_query(s, &s->sql, "COMMIT", 0, NULL, NULL, NULL, true);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            st = pgw_fail(s, s->sql, r, "bury: commit", errstr, errlen);
        PQclear(r);
    } else if (s->sql) {
        PQclear(pgw_query(s, &s->sql, "ROLLBACK", 0, NULL, NULL, NULL, true));
    }
    free(ins);
    free(mark);
    return st;
}
