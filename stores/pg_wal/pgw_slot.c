/* The pg_wal store's replication slot seen from the SQL session: its
 * health (missing, lost, of another plugin or database), creating it, and
 * what to do at open when it is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pgw_store.h"

/* clang-format off */

/* $1 the slot: its plugin, database, health, confirmed position, our
 * database and the bytes it is behind (-1 unknown). */
static const char pgw_read_slot_sql[] =
    "SELECT plugin, database, coalesce(wal_status, ''),\n"
    "       coalesce(confirmed_flush_lsn::text, ''), current_database(),\n"
    "       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(),\n"
    "                                confirmed_flush_lsn)::int8, -1)\n"
    "  FROM pg_replication_slots\n"
    " WHERE slot_name = $1";

/* clang-format on */

typedef struct pgw_slot_info {
    bool found;
    char plugin[64], db[128], wal_status[32], confirmed[32];
    char curdb[128];
    int64_t lag;
} pgw_slot_info;

static obx_status read_slot(pgw_store *s, pgw_slot_info *si, char *errstr,
                            size_t errlen)
{
    memset(si, 0, sizeof *si);
    si->lag = -1;
    const char *p[1] = {s->names.slot};
    PGresult *r = NULL;
    obx_status st = pgw_exec(s, pgw_read_slot_sql, 1, p, &r,
                             "read the replication slot", errstr, errlen);
    if (st != OBX_OK)
        return st;
    si->found = PQntuples(r) == 1;
    if (si->found) {
        snprintf(si->plugin, sizeof si->plugin, "%s", PQgetvalue(r, 0, 0));
        snprintf(si->db, sizeof si->db, "%s", PQgetvalue(r, 0, 1));
        snprintf(si->wal_status, sizeof si->wal_status, "%s",
                 PQgetvalue(r, 0, 2));
        snprintf(si->confirmed, sizeof si->confirmed, "%s",
                 PQgetvalue(r, 0, 3));
        snprintf(si->curdb, sizeof si->curdb, "%s", PQgetvalue(r, 0, 4));
        si->lag = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    }
    PQclear(r);
    return OBX_OK;
}

static obx_status slot_lost(pgw_store *s, const char *what, char *errstr,
                            size_t errlen)
{
    if (s->conf->ack_mode == PGW_ACK_MARK)
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: replication slot \"%s\" %s: events "
                       "committed since its last confirmed position may "
                       "never be streamed. Restart with store.recover = true "
                       "to re-read every unpublished row of the table and "
                       "continue on a new slot.",
                       s->target, s->names.slot, what);
    else
        /* nothing says which rows were published: no way back by itself */
        osc_errf_words(
            errstr, errlen,
            "pg_wal %s: replication slot \"%s\" %s: events committed "
            "since its last confirmed position may never be streamed, and "
            "with ack_mode = %s nothing records which rows were published, "
            "so the relay cannot re-read them. To go on, create a new slot "
            "(SELECT pg_create_logical_replication_slot('%s', 'pgoutput')); "
            "it streams only what is committed after that, so events "
            "written while there was no slot are never streamed unless you "
            "insert them again. With ack_mode = mark the relay marks "
            "published rows, and store.recover = true then re-reads the "
            "unpublished ones onto a new slot.",
            s->target, s->names.slot, what,
            s->conf->ack_mode == PGW_ACK_DELETE ? "delete" : "none",
            s->names.slot);
    s->host->log(s->host, OBX_LOG_ERROR, "%s", errstr);
    return OBX_FATAL;
}

obx_status pgw_slot_check(pgw_store *s, int64_t *lag, char *errstr,
                          size_t errlen)
{
    pgw_slot_info si;
    obx_status st = read_slot(s, &si, errstr, errlen);
    *lag = si.lag;
    if (st != OBX_OK)
        return st;
    if (!si.found)
        return slot_lost(s, "does not exist (dropped?)", errstr, errlen);
    if (strcmp(si.wal_status, "lost") == 0)
        return slot_lost(s,
                         "was invalidated (wal_status = lost: it fell "
                         "behind max_slot_wal_keep_size)",
                         errstr, errlen);
    if (strcmp(si.plugin, "pgoutput") != 0 || strcmp(si.db, si.curdb) != 0) {
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: replication slot \"%s\" uses plugin '%s' in "
                       "database '%s'; pg_wal needs a pgoutput slot in '%s'",
                       s->target, s->names.slot, si.plugin, si.db, si.curdb);
        return OBX_CONFIG;
    }
    pgo_lsn_parse(si.confirmed, &s->start_lsn);
    return OBX_OK;
}

static obx_status create_slot(pgw_store *s, char *errstr, size_t errlen)
{
    /* creation waits for every transaction running now to end, however
     * long they take: no time limit */
    int64_t limit = s->query_timeout_ms;
    s->query_timeout_ms = 0;
    obx_status st = pgw_run(s, pgw_ddl_slot, 0, NULL,
                            "create the replication slot", errstr, errlen);
    s->query_timeout_ms = limit;
    if (st == OBX_OK)
        s->host->log(s->host, OBX_LOG_INFO,
                     "pg_wal %s: created replication slot \"%s\"; events "
                     "committed from now on are streamed",
                     s->target, s->names.slot);
    return st == OBX_FATAL ? OBX_CONFIG : st;
}

/* A recovery created its slot and stopped before its list was whole (an
 * error, a crash): the slot looks healthy but the rows committed before
 * it would never be streamed. Drop that slot and recover again; the new
 * list holds every row still unpublished, so nothing is lost. */
static obx_status redo_recovery(pgw_store *s, bool slot_found, char *errstr,
                                size_t errlen)
{
    if (!s->conf->recover) {
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: a recovery of slot \"%s\" stopped before "
                       "its list of unpublished rows was complete; streaming "
                       "now would skip those rows. Restart with "
                       "store.recover = true to redo the recovery.",
                       s->target, s->names.slot);
        return OBX_CONFIG;
    }
    s->host->log(s->host, OBX_LOG_WARN,
                 "pg_wal %s: the last recovery stopped before its list of "
                 "unpublished rows was complete; recovering again",
                 s->target);
    return pgw_recover_create(s, slot_found, errstr, errlen);
}

obx_status pgw_slot_ensure(pgw_store *s, bool pub_existed, char *errstr,
                           size_t errlen)
{
    pgw_slot_info si;
    obx_status st = read_slot(s, &si, errstr, errlen);
    if (st != OBX_OK)
        return st;
    bool lost = si.found && strcmp(si.wal_status, "lost") == 0;
    pgw_recover_list list = PGW_RECOVER_NONE;
    if (s->conf->source != PGW_SOURCE_MESSAGES)
        st = pgw_recover_state(s, &list, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (list == PGW_RECOVER_BUILDING)
        return redo_recovery(s, si.found, errstr, errlen);
    if (s->conf->recover && (!si.found || lost))
        return pgw_recover_create(s, lost, errstr, errlen);
    if (!si.found && !pub_existed && s->conf->create_slot)
        return create_slot(s, errstr, errlen);
    if (!si.found && !s->conf->create_slot) {
        osc_errf_words(errstr, errlen,
                       "pg_wal %s: no replication slot \"%s\" and "
                       "create_slot is false. Create it with `outbox-relay "
                       "schema pg_wal` or SELECT "
                       "pg_create_logical_replication_slot('%s', "
                       "'pgoutput'); a new slot streams only events "
                       "committed after it exists, so rows already in the "
                       "table are never streamed (with ack_mode = mark, "
                       "store.recover = true re-reads the unpublished ones "
                       "instead).",
                       s->target, s->names.slot, s->names.slot);
        return OBX_CONFIG;
    }
    int64_t lag;
    return pgw_slot_check(s, &lag, errstr, errlen);
}
