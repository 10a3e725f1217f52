#include "pg_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "columns.h"
#include "pg_buf.h"
#include "pg_schema.h"
#include "store_err.h"

static const char *const pgp_col_default[PGP_C_COUNT] = {
    [PGP_C_ID] = "id",
    [PGP_C_EVENT_ID] = "event_id",
    [PGP_C_AGGREGATE_TYPE] = "aggregate_type",
    [PGP_C_AGGREGATE_ID] = "aggregate_id",
    [PGP_C_EVENT_TYPE] = "event_type",
    [PGP_C_PAYLOAD] = "payload",
    [PGP_C_TOPIC] = "topic",
    [PGP_C_HEADERS] = "headers",
    [PGP_C_CREATED_AT] = "created_at",
    [PGP_C_ATTEMPTS] = "attempts",
    [PGP_C_NEXT_ATTEMPT_AT] = "next_attempt_at",
    [PGP_C_LOCKED_BY] = "locked_by",
    [PGP_C_LOCKED_UNTIL] = "locked_until",
    [PGP_C_PUBLISHED_AT] = "published_at",
    [PGP_C_DEAD_AT] = "dead_at",
    [PGP_C_LAST_ERROR] = "last_error",
    [PGP_C_DEAD_REASON] = "dead_reason",
    [PGP_C_DEAD_DESTINATION] = "dead_destination",
    [PGP_C_CLAIM_SEQ] = "claim_seq",
};

/* ---- statements ---- */

/* The pending and maybe-blocked predicates are the shared table's (the
 * partial indexes are built on them, see pg_schema.h). */
#define PGP_PENDING(a) OSC_PG_PENDING(a)
#define PGP_PENDING_IDS(a) OSC_PG_PENDING_IDS(a)
#define PGP_MAYBE_BLOCKED(a) OSC_PG_MAYBE_BLOCKED(a)
/* Blocked now: leased, or waiting for its retry. One range of the
 * blocked index (pg_schema.h). */
#define PGP_BLOCKED_NOW(a) OSC_PG_BLOCKED_UNTIL(a) " > now()"
/* Timestamps cross the ABI as unix microseconds; extract() is exact
 * (numeric) since PostgreSQL 14. */
#define PGP_US(expr) "(extract(epoch FROM " expr ") * 1000000)::int8"
/* The lease token: our claim's locked_until, to the microsecond. */
#define PGP_OURS(a)                                                            \
    a "{id} = r.id AND " a                                                     \
      "{locked_by} = $1 AND " PGP_US(a "{locked_until}") " = r.token"

/* Every column is sent as text or int8 so results can be read in binary
 * format whatever the column types are; payload stays as it is (bytea,
 * text, json or jsonb: see pgp_event_read). */
#define PGP_EVENT_COLS(a)                                                      \
    a "{id}::int8, " a "{event_id}::text, " a "{aggregate_type}::text, " a     \
      "{aggregate_id}::text, " a "{event_type}::text, " a "{payload}, " a      \
      "{topic}::text, " a                                                      \
      "{headers}::text, " PGP_US(a "{created_at}") ", " a "{attempts}::int8"

/* Claim, in one statement (run after the claim lock, see below):
 *  cand  - pending, due, unleased rows of keys with no blocked row (leased
 *          by anyone or waiting for a retry, at any id: a row that took a
 *          lower id but committed after a row of its key that is in flight
 *          waits for it), in id order, locked with SKIP LOCKED. The
 *          blocked keys are read once per claim from the blocked index
 *          (rows in flight or waiting: a few batches) into a hash table
 *          (NOT IN over a subquery: a hashed SubPlan, which the planner
 *          never turns into a join), so each candidate costs a hash
 *          lookup. A probe of the key's rows per candidate (what this
 *          was before) cost an index descent for every pending row the
 *          scan passes, and when every key has an event in flight (two
 *          relays, or claim_ahead, with as many keys as a batch holds)
 *          the scan passes the whole backlog: an empty claim of a 200,000
 *          backlog read 609,000 buffers in 512 ms, with the claim lock
 *          held, while the relay whose batch was out waited to claim its
 *          next one; hashed, 11,700 buffers in 81 ms. As NOT EXISTS, a
 *          generic plan made while the pending set was small joined each
 *          candidate against a full scan of the pending rows: after an
 *          outage, with a backlog of 20,000, every claim read 1.3M
 *          buffers (840 ms). The session's work_mem (pgp_session_sql)
 *          keeps the hash within what the planner allows whatever its
 *          estimate of the blocked rows;
 *  chain - per key, rows go out in claim order: the rows some claim has
 *          taken before (claim_seq, the xid of the first claim that took
 *          them) before the rows never claimed, each group in id order.
 *          A row that was claimed before and came back (its lease ran
 *          out, a retry) precedes a never-claimed row of its key even at
 *          a higher id: the never-claimed one was not visible to that
 *          first claim, so it committed later. A candidate is kept only
 *          if its predecessor in that order (one backward step on the
 *          key index, which is built on that order) is the
 *          previous candidate of its key: rows locked by someone else,
 *          outside the LIMIT, or not due break the chain;
 *  ok    - once a key's chain breaks, its later rows are dropped as well.
 * $1 owner, $2 max rows, $3 lease in ms. */
#define PGP_RANK(a) OSC_PG_CLAIM_RANK(a)
/* clang-format off */
static const char pgp_claim_sql[] =
    "WITH cand AS (\n"
    "  SELECT o.{id} AS id, o.{aggregate_id} AS k, " PGP_RANK("o.") " AS r\n"
    "  FROM {T} AS o\n"
    "  WHERE " PGP_PENDING_IDS("o.") "\n"
    "    AND o.{next_attempt_at} <= now()\n"
    "    AND (o.{locked_until} IS NULL OR o.{locked_until} <= now())\n"
    "    AND o.{aggregate_id} NOT IN (\n"
    "      SELECT b.{aggregate_id} FROM {T} AS b\n"
    "      WHERE " OSC_PG_PENDING_BLOCKED("b.") "\n"
    "        AND " PGP_MAYBE_BLOCKED("b.") "\n"
    "        AND " PGP_BLOCKED_NOW("b.") ")\n"
    "  ORDER BY o.{id} LIMIT $2\n"
    "  FOR UPDATE OF o SKIP LOCKED\n"
    "), chain AS (\n"
    "  SELECT c.id, c.k, c.r,\n"
    "    (SELECT p.{id} FROM {T} AS p\n"
    "     WHERE p.{aggregate_id} = c.k AND " PGP_PENDING("p.") "\n"
    "       AND (" PGP_RANK("p.") ", p.{id}) < (c.r, c.id)\n"
    "     ORDER BY " PGP_RANK("p.") " DESC, p.{id} DESC LIMIT 1)\n"
    "    IS DISTINCT FROM lag(c.id) OVER (PARTITION BY c.k ORDER BY c.r, c.id)\n"
    "    AS gap\n"
    "  FROM cand AS c\n"
    "), ok AS (\n"
    "  SELECT id, bool_or(gap) OVER (PARTITION BY k ORDER BY r, id) AS broken\n"
    "  FROM chain\n"
    ")\n"
    "UPDATE {T} AS o SET {locked_by} = $1,\n"
    "  {locked_until} = now() + $3::int8 * interval '1 millisecond',\n"
    "  {claim_seq} = coalesce(o.{claim_seq}, pg_current_xact_id()::text::int8)\n"
    "FROM ok WHERE o.{id} = ok.id AND NOT ok.broken\n"
    "RETURNING " PGP_EVENT_COLS("o.") ", " PGP_US("o.{locked_until}") ",\n"
    "  o.{claim_seq}";
/* clang-format on */

/* The session's planner settings. No bitmap scans: with statistics from
 * a moment nothing was pending (a vacuum while the relay kept up) the
 * planner takes the pending rows for a handful, reads them all with a
 * bitmap scan, sorts them by id and tests every one of them against its
 * key, where an index scan in id order stops after the batch: with a
 * backlog of 20,000 a claim of 50 touched 276,000 buffers instead of
 * 2,000. The store's other statements find their rows by id or in index
 * order and lose nothing without bitmaps. work_mem: a hashed SubPlan (the
 * claim's blocked keys) is planned only when the planner's estimate of
 * its rows fits work_mem x hash_mem_multiplier; otherwise the subquery
 * runs again for every candidate. 64 MB admits estimates up to about two
 * million blocked rows, far beyond what is ever in flight; the hash
 * itself holds only the keys really blocked. */
const char pgp_session_sql[] =
    "SELECT set_config('enable_bitmapscan', 'off', false), "
    "set_config('work_mem', '64MB', false)";

/* Claims of one table run one at a time, across relays: each claim
 * takes this transaction-scoped advisory lock in a statement of its own
 * before the claim statement (see pgp_exec_claim), so the claim's
 * snapshot, taken after the lock was granted, sees every lease committed
 * by the claims before it. Without it two claims can overlap so that
 * neither sees the other's lease: a late-committed event was claimed by
 * one relay while its successor, leased but not yet committed by another,
 * was hidden by SKIP LOCKED. The key is (0x6f627872 "obxr", the table's
 * oid folded to int4); $1 is the quoted table name. */
static const char pgp_claim_lock_sql[] =
    "SELECT pg_advisory_xact_lock(1868724338, "
    "($1::regclass::oid::int8 & 2147483647)::int4)";

/* Acks whatever the lease says: the broker has the event either way. */
static const char pgp_ack_mark_sql[] =
    "UPDATE {T} SET {published_at} = now(), {locked_by} = NULL, "
    "{locked_until} = NULL WHERE {id} = ANY($1::int8[]) "
    "AND {published_at} IS NULL";

static const char pgp_ack_delete_sql[] =
    "DELETE FROM {T} WHERE {id} = ANY($1::int8[])";

/* Release and bury touch a row only while our claim still holds it: once
 * the lease ran out and another relay took the event, it is theirs. The
 * retry time arrives as a delay and is added to the database's clock, so
 * clock skew between relays does not matter. */
static const char pgp_release_sql[] =
    "UPDATE {T} AS o SET\n"
    "  {next_attempt_at} = now() + r.delay_us::float8 * "
    "interval '1 microsecond',\n"
    "  {attempts} = o.{attempts} + r.counts,\n"
    "  {last_error} = coalesce(r.err, o.{last_error}),\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int4[], "
    "$6::text[])\n"
    "  AS r(id, token, delay_us, counts, err)\n"
    "WHERE " PGP_OURS("o.");

static const char pgp_bury_sql[] =
    "UPDATE {T} AS o SET {dead_at} = now(), {dead_reason} = r.reason,\n"
    "  {dead_destination} = r.dest, {attempts} = r.attempts,\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], "
    "$6::int4[])\n"
    "  AS r(id, token, reason, dest, attempts)\n"
    "WHERE " PGP_OURS("o.");

static const char pgp_unlease_sql[] =
    "UPDATE {T} AS o SET {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[]) AS r(id, token)\n"
    "WHERE " PGP_OURS("o.");

static const char pgp_poison_sql[] =
    "UPDATE {T} AS o SET {dead_at} = now(), {dead_reason} = r.reason,\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($1::int8[], $2::text[]) AS r(id, reason)\n"
    "WHERE o.{id} = r.id";

/* SKIP LOCKED: relays sharing the table never queue behind each other's
 * retention run. */
static const char pgp_retention_sql[] =
    "DELETE FROM {T} WHERE {id} IN (\n"
    "  SELECT {id} FROM {T} WHERE {published_at} IS NOT NULL\n"
    "    AND {published_at} < now() - $1::int8 * interval '1 millisecond'\n"
    "  ORDER BY {published_at} LIMIT $2 FOR UPDATE SKIP LOCKED)";

/* Pending count, dead count and the oldest pending row's age as the
 * database sees it (the caller turns it into a timestamp on its own
 * clock). Counting a backlog of millions every few seconds would stall
 * the pipeline, so the count is exact up to PGP_STATS_EXACT rows and
 * beyond that estimated from the id range of the pending rows (ids are
 * dense apart from rolled-back inserts). ids grow with insert time, so
 * the lowest pending id is the oldest: MIN(created_at) would read every
 * pending row. */
#define PGP_STATS_EXACT "100000"
/* clang-format off */
static const char pgp_stats_sql[] =
    "WITH c AS (SELECT count(*) AS n FROM (SELECT 1 FROM {T}\n"
    "  WHERE " PGP_PENDING_IDS("") " LIMIT " PGP_STATS_EXACT " + 1) AS s)\n"
    "SELECT CASE WHEN c.n <= " PGP_STATS_EXACT " THEN c.n ELSE greatest(c.n,\n"
    "    (SELECT max({id}) FROM {T} WHERE " PGP_PENDING_IDS("") ") -\n"
    "    (SELECT min({id}) FROM {T} WHERE " PGP_PENDING_IDS("") ") + 1) END::int8,\n"
    "  (SELECT count(*) FROM {T} WHERE {dead_at} IS NOT NULL)::int8,\n"
    "  (SELECT " PGP_US("now() - {created_at}") " FROM {T}\n"
    "   WHERE " PGP_PENDING_IDS("") " ORDER BY {id} LIMIT 1)\n"
    "FROM c";
/* clang-format on */

/* Milliseconds until the first blocked row's lease or retry time passes:
 * how long an idle claim may sleep without NOTIFY to wake it. */
/* clang-format off */
static const char pgp_next_due_sql[] =
    "SELECT " PGP_US("min(" OSC_PG_BLOCKED_UNTIL("") ") - now()") " / 1000\n"
    "FROM {T} WHERE " OSC_PG_PENDING_BLOCKED("") "\n"
    "  AND " PGP_MAYBE_BLOCKED("") " AND " PGP_BLOCKED_NOW("");
/* clang-format on */

static const char pgp_dead_list_sql[] = "SELECT " PGP_EVENT_COLS(
    "o.") ", o.{dead_reason}::text,\n"
          "  o.{dead_destination}::text, " PGP_US(
              "o.{dead_at}") "\n"
                             "FROM {T} AS o WHERE o.{dead_at} IS NOT NULL\n"
                             "  AND ($1::text IS NULL OR o.{event_id}::text = "
                             "$1) ORDER BY o.{id}";

/* A requeued event starts over: it is ordered as a new one. */
static const char pgp_requeue_sql[] =
    "UPDATE {T} SET {dead_at} = NULL, {dead_reason} = NULL,\n"
    "  {dead_destination} = NULL, {attempts} = 0, {claim_seq} = NULL,\n"
    "  {next_attempt_at} = '-infinity', {locked_by} = NULL,\n"
    "  {locked_until} = NULL\n"
    "WHERE {dead_at} IS NOT NULL AND ($1::text IS NULL OR "
    "{event_id}::text = $1)";

static const char pgp_purge_sql[] =
    "DELETE FROM {T} WHERE {dead_at} IS NOT NULL\n"
    "  AND ($1::text IS NULL OR {event_id}::text = $1)";

static const char *const pgp_stmt_sql[PGP_S_COUNT] = {
    [PGP_S_CLAIM_LOCK] = pgp_claim_lock_sql,
    [PGP_S_CLAIM] = pgp_claim_sql,
    [PGP_S_ACK] = NULL,
    [PGP_S_RELEASE] = pgp_release_sql,
    [PGP_S_BURY] = pgp_bury_sql,
    [PGP_S_UNLEASE] = pgp_unlease_sql,
    [PGP_S_POISON] = pgp_poison_sql,
    [PGP_S_RETENTION] = pgp_retention_sql,
    [PGP_S_STATS] = pgp_stats_sql,
    [PGP_S_NEXT_DUE] = pgp_next_due_sql,
    [PGP_S_DEAD_LIST] = pgp_dead_list_sql,
    [PGP_S_REQUEUE] = pgp_requeue_sql,
    [PGP_S_PURGE] = pgp_purge_sql,
};

static const char *const pgp_stmt_names[PGP_S_COUNT] = {
    [PGP_S_CLAIM_LOCK] = "obx_pgp_claim_lock",
    [PGP_S_CLAIM] = "obx_pgp_claim",
    [PGP_S_ACK] = "obx_pgp_ack",
    [PGP_S_RELEASE] = "obx_pgp_release",
    [PGP_S_BURY] = "obx_pgp_bury",
    [PGP_S_UNLEASE] = "obx_pgp_unlease",
    [PGP_S_POISON] = "obx_pgp_poison",
    [PGP_S_RETENTION] = "obx_pgp_retention",
    [PGP_S_STATS] = "obx_pgp_stats",
    [PGP_S_NEXT_DUE] = "obx_pgp_next_due",
    [PGP_S_DEAD_LIST] = "obx_pgp_dead_list",
    [PGP_S_REQUEUE] = "obx_pgp_requeue",
    [PGP_S_PURGE] = "obx_pgp_purge",
};

const char *pgp_stmt_template(pgp_stmt s, int ack_mode)
{
    if (s == PGP_S_ACK)
        return ack_mode == PGP_ACK_DELETE ? pgp_ack_delete_sql
                                          : pgp_ack_mark_sql;
    return pgp_stmt_sql[s];
}

const char *pgp_stmt_name(pgp_stmt s)
{
    return pgp_stmt_names[s];
}

/* ---- DDL ---- */

/* The schema (when the schema option names one), the shared table and
 * its indexes (pg_schema.h), then the NOTIFY trigger, which is pg_poll's
 * alone: pg_wal's writers do not pay for a wake-up nobody listens to. */
static const char pgp_ddl_schema[] = "CREATE SCHEMA IF NOT EXISTS {S}";

const char pgp_ddl_notify_fn[] =
    "CREATE OR REPLACE FUNCTION {F:" OSC_PG_SFX_NOTIFY "}() RETURNS trigger\n"
    "    LANGUAGE plpgsql AS $obx$\n"
    "BEGIN\n"
    "    PERFORM pg_notify(TG_ARGV[0], '');\n"
    "    RETURN NULL;\n"
    "END\n"
    "$obx$";

/* FOR EACH STATEMENT: one NOTIFY per INSERT statement, and PostgreSQL
 * folds repeats within a transaction into one. */
const char pgp_ddl_notify_trigger[] =
    "CREATE OR REPLACE TRIGGER {I:" OSC_PG_SFX_NOTIFY "} AFTER INSERT ON {T}\n"
    "    FOR EACH STATEMENT EXECUTE FUNCTION {F:" OSC_PG_SFX_NOTIFY "}({CH})";

/* Expand tpl and hand it to emit; 0, -1 (no memory) or emit's value. */
static int pgp_ddl_one(const pgp_names *n, const char *tpl, pgp_ddl_fn emit,
                       void *ctx)
{
    char *sql = pgp_sql_expand(n, tpl);
    if (!sql)
        return -1;
    int rc = emit(ctx, sql);
    free(sql);
    return rc;
}

int pgp_ddl_each(const pgp_names *n, const pgp_config *conf, pgp_ddl_fn emit,
                 void *ctx)
{
    int rc = n->schema ? pgp_ddl_one(n, pgp_ddl_schema, emit, ctx) : 0;
    for (size_t i = 0; rc == 0 && i < osc_pg_outbox_ddl_n; i++)
        rc = pgp_ddl_one(n, osc_pg_outbox_ddl[i].tpl, emit, ctx);
    if (rc == 0 && conf->notify_trigger)
        rc = pgp_ddl_one(n, pgp_ddl_notify_fn, emit, ctx);
    if (rc == 0 && conf->notify_trigger)
        rc = pgp_ddl_one(n, pgp_ddl_notify_trigger, emit, ctx);
    return rc;
}

/* ---- names ---- */

static int pgp_col_lookup(const char *name, int limit)
{
    return osc_columns_lookup(pgp_col_default, limit, name);
}

static int pgp_check_name(const char *opt, const char *v, char *err,
                          size_t errlen)
{
    if (strlen(v) <= PGP_NAME_MAX)
        return 0;
    osc_store_errf(err, errlen, 0,
                   "store.%s: '%s' is longer than %d bytes (PostgreSQL would "
                   "cut it)",
                   opt, v, PGP_NAME_MAX);
    return -1;
}

int pgp_names_init(pgp_names *n, const pgp_config *conf, char *err,
                   size_t errlen)
{
    memset(n, 0, sizeof *n);
    n->table = conf->table && conf->table[0] ? conf->table : "outbox";
    n->schema = conf->schema && conf->schema[0] ? conf->schema : NULL;
    n->channel = conf->channel && conf->channel[0] ? conf->channel : n->table;
    if (pgp_check_name("table", n->table, err, errlen) != 0 ||
        (n->schema && pgp_check_name("schema", n->schema, err, errlen)) ||
        pgp_check_name("channel", n->channel, err, errlen) != 0)
        return -1;
    /* Quoted identifiers are case-sensitive in PostgreSQL: compare
     * exactly. */
    static const osc_columns_rules rules = {
        .n_mappable = PGP_C_N_MAPPABLE,
        .name_max = PGP_NAME_MAX,
        .name_max_db = "PostgreSQL",
        .fold_case = false,
    };
    return osc_columns_map(n->col, pgp_col_default, PGP_C_COUNT, &conf->column,
                           &rules, err, errlen);
}

/* ---- template expansion ---- */

static void pgp_qualified(pgp_buf *b, const pgp_names *n, const char *name,
                          const char *sfx)
{
    if (n->schema) {
        pgp_buf_ident(b, n->schema);
        pgp_buf_addc(b, '.');
    }
    if (!sfx) {
        pgp_buf_ident(b, name);
        return;
    }
    char obj[OSC_PG_NAME_MAX + 1];
    osc_pg_object_name(name, sfx, obj);
    pgp_buf_ident(b, obj);
}

/* Append the expansion of one placeholder body (between the braces). */
static int pgp_placeholder(pgp_buf *b, const pgp_names *n, const char *key)
{
    if (strcmp(key, "T") == 0) {
        pgp_qualified(b, n, n->table, NULL);
    } else if (strcmp(key, "S") == 0) {
        pgp_buf_ident(b, n->schema ? n->schema : "public");
    } else if (strcmp(key, "CH") == 0) {
        pgp_buf_literal(b, n->channel);
    } else if (strncmp(key, "I:", 2) == 0) {
        pgp_names local = *n;
        local.schema = NULL;
        pgp_qualified(b, &local, n->table, key + 2);
    } else if (strncmp(key, "F:", 2) == 0) {
        pgp_qualified(b, n, n->table, key + 2);
    } else {
        int c = pgp_col_lookup(key, PGP_C_COUNT);
        if (c < 0)
            return -1;
        pgp_buf_ident(b, n->col[c]);
    }
    return 0;
}

char *pgp_sql_expand(const pgp_names *n, const char *tpl)
{
    pgp_buf b = {0};
    const char *p = tpl;
    int bad = 0;
    while (*p && !bad) {
        const char *open = strchr(p, '{');
        if (!open) {
            pgp_buf_add(&b, p);
            break;
        }
        pgp_buf_addn(&b, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        char key[64];
        size_t len = close ? (size_t)(close - open - 1) : 0;
        bad = !close || len == 0 || len >= sizeof key;
        if (!bad) {
            memcpy(key, open + 1, len);
            key[len] = '\0';
            bad = pgp_placeholder(&b, n, key) != 0;
        }
        p = close ? close + 1 : open + 1;
    }
    if (bad) {
        pgp_buf_free(&b);
        return NULL;
    }
    return pgp_buf_take(&b);
}
