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
/* Every column is sent as text or int8 so results can be read in binary
 * format whatever the column types are; payload stays as it is (bytea,
 * text, json or jsonb: see pgp_event_read). Each keeps its real name,
 * which messages about a row name. */
/* clang-format off */
#define PGP_EVENT_COLS(a)                                                      \
    a "{id}::int8 AS {id}, " a "{event_id}::text AS {event_id},\n"            \
    "    " a "{aggregate_type}::text AS {aggregate_type},\n"                  \
    "    " a "{aggregate_id}::text AS {aggregate_id},\n"                      \
    "    " a "{event_type}::text AS {event_type},\n"                          \
    "    " a "{payload} AS {payload}, " a "{topic}::text AS {topic},\n"       \
    "    " a "{headers}::text AS {headers},\n"                                \
    "    " PGP_US(a "{created_at}") " AS {created_at},\n"                     \
    "    " a "{attempts}::int8 AS {attempts}"
/* clang-format on */

/* Claim, in one statement (run after the claim lock and the expiry of
 * lapsed claims, see below). A claim writes no outbox row: it inserts one
 * row into the claims table, {F:claims}, holding the batch's ids and
 * keys, and that row is the lease. Writing the lease into the event rows
 * (what this store did before) made every claim a non-HOT update of
 * every claimed row with five index entries each, and the claim cost
 * more than the ack; the claims row costs one insert per batch.
 *  blocked - the keys that may not go out now: those of every claim
 *          (a batch in flight, here or at another relay) but the ones
 *          this claim goes past ($4: none for claim, the instance's own
 *          unsettled claims for claim_ahead), and those with
 *          a row waiting for its retry (or leased in the row by a relay
 *          of an earlier version), read once into a hash (NOT IN over a
 *          subquery: a hashed SubPlan, never turned into a join);
 *  hist  - the keys with a pending row some claim has handed back
 *          (released, returned at close, or expired: every one of those
 *          paths sets next_attempt_at, so they are the blocked index's
 *          rows). Only their rows can be out of id order (below);
 *  mine  - the rows of the claims gone past, never candidates again;
 *  scan  - pending, due rows of keys not blocked, in id order. No row
 *          locks: claims of a table take turns (the claim lock) and the
 *          snapshot of this statement, taken after that lock, sees every
 *          claim committed before it; rows of other claims are never
 *          candidates because their keys are blocked. Past a claim of
 *          its own, a key not in hist goes on with the rows after the
 *          prefix of its pending rows that claim took, and a row that
 *          committed since is later in commit order than all of those;
 *          a key in hist is taken only where its chain holds (below);
 *  back  - the rows that came back and are due, up to a batch, in claim
 *          order, whatever their id. They go first in their key (chain),
 *          and a key whose rows that came back lie above more than a
 *          batch of its rows that no claim took (a late commit) would
 *          otherwise fill the scan with rows whose predecessor is outside
 *          it: nothing claimed, every time;
 *  chain - per key, rows go out in claim order: the rows some claim took
 *          before (claim_seq, the xid of the first claim that took them)
 *          before the rows never claimed, each group in id order. A row
 *          that came back (lease expired, retry) precedes a never-claimed
 *          row of its key even at a higher id: that one was not visible
 *          to the first claim, so it committed later. For a key without
 *          such rows, id order is claim order and the scan takes a prefix
 *          of the key's pending rows (every one is due: a row with a retry
 *          time is in hist), so no probe is needed. For a key in hist, a
 *          candidate is kept only if its predecessor in claim order (one
 *          backward step on the key index, built on that order) is the
 *          previous candidate of its key;
 *  ok    - once a key's chain breaks, its later rows are dropped as well;
 *  pick  - at most a batch, rows that came back first (claim order is
 *          each key's order, so every key keeps a prefix of its chain).
 * The blocked keys are compared as text: the claims row holds text
 * whatever type the key column has. A NULL key (a hand-made table's
 * row, dead-lettered once claimed) is kept out of them: one NULL in a
 * NOT IN list makes it false for every row; and a row with a NULL key
 * is a candidate whatever is blocked (NULL NOT IN a list is not true).
 * The session's work_mem (pgp_session_sql) keeps the hashes within what
 * the planner allows whatever its estimate. $1 owner, $2 max rows, $3
 * lease in ms, $4 the claim ids to go past (int8[]). */
#define PGP_RANK(a) OSC_PG_CLAIM_RANK(a)
#define PGP_XID "pg_current_xact_id()::text::int8"
/* A candidate row: the batch's columns, then the claim's own (obx_*). */
/* clang-format off */
#define PGP_CAND_COLS                                                          \
    PGP_EVENT_COLS("o.") ", o.{aggregate_id} AS obx_k,\n"                      \
    "    " PGP_RANK("o.") " AS obx_r, o.{claim_seq} AS obx_seq"
static const char pgp_claim_sql[] =
    "WITH blocked AS (\n"
    "  SELECT unnest(c.keys) AS k FROM {F:" PGP_SFX_CLAIMS "} AS c\n"
    "  WHERE c.claim_id <> ALL ($4)\n"
    "  UNION ALL\n"
    "  SELECT b.{aggregate_id}::text FROM {T} AS b\n"
    "  WHERE " OSC_PG_PENDING_BLOCKED("b.") " AND b.{aggregate_id} IS NOT NULL\n"
    "    AND " PGP_MAYBE_BLOCKED("b.") "\n"
    "    AND " PGP_BLOCKED_NOW("b.") "\n"
    "), hist AS (\n"
    "  SELECT h.{aggregate_id}::text AS k FROM {T} AS h\n"
    "  WHERE " OSC_PG_PENDING_BLOCKED("h.") "\n"
    "    AND " PGP_MAYBE_BLOCKED("h.") "\n"
    "), mine AS (\n"
    "  SELECT unnest(c.ids) AS id FROM {F:" PGP_SFX_CLAIMS "} AS c\n"
    "  WHERE c.claim_id = ANY ($4)\n"
    "), scan AS (\n"
    "  SELECT " PGP_CAND_COLS "\n"
    "  FROM {T} AS o\n"
    "  WHERE " PGP_PENDING_IDS("o.") "\n"
    "    AND o.{next_attempt_at} <= now()\n"
    "    AND (o.{locked_until} IS NULL OR o.{locked_until} <= now())\n"
    "    AND (o.{aggregate_id} IS NULL\n"
    "      OR o.{aggregate_id}::text NOT IN (SELECT k FROM blocked))\n"
    "    AND o.{id} NOT IN (SELECT id FROM mine)\n"
    "  ORDER BY o.{id} LIMIT $2\n"
    "), back AS (\n"
    "  SELECT " PGP_CAND_COLS "\n"
    "  FROM {T} AS o\n"
    "  WHERE " OSC_PG_PENDING_BLOCKED("o.") "\n"
    "    AND " PGP_MAYBE_BLOCKED("o.") "\n"
    "    AND " OSC_PG_BLOCKED_UNTIL("o.") " <= now()\n"
    "    AND (o.{aggregate_id} IS NULL\n"
    "      OR o.{aggregate_id}::text NOT IN (SELECT k FROM blocked))\n"
    "    AND o.{id} NOT IN (SELECT {id} FROM scan)\n"
    "    AND o.{id} NOT IN (SELECT id FROM mine)\n"
    "  ORDER BY " PGP_RANK("o.") ", o.{id} LIMIT $2\n"
    "), cand AS (\n"
    "  SELECT * FROM scan UNION ALL SELECT * FROM back\n"
    "), chain AS (\n"
    "  SELECT c.*, CASE WHEN c.{aggregate_id} IN (SELECT k FROM hist) THEN\n"
    "    (SELECT p.{id} FROM {T} AS p\n"
    "     WHERE p.{aggregate_id} = c.obx_k AND " PGP_PENDING("p.") "\n"
    "       AND (" PGP_RANK("p.") ", p.{id}) < (c.obx_r, c.{id})\n"
    "     ORDER BY " PGP_RANK("p.") " DESC, p.{id} DESC LIMIT 1)\n"
    "    IS DISTINCT FROM\n"
    "      lag(c.{id}) OVER (PARTITION BY c.obx_k ORDER BY c.obx_r, c.{id})\n"
    "    ELSE false END AS obx_gap\n"
    "  FROM cand AS c\n"
    "), ok AS (\n"
    "  SELECT c.*, bool_or(c.obx_gap)\n"
    "    OVER (PARTITION BY c.obx_k ORDER BY c.obx_r, c.{id}) AS obx_broken\n"
    "  FROM chain AS c\n"
    "), pick AS (\n"
    "  SELECT * FROM ok WHERE NOT obx_broken ORDER BY obx_r, {id} LIMIT $2\n"
    "), lease AS (\n"
    "  INSERT INTO {F:" PGP_SFX_CLAIMS "} (claim_id, owner, expires_at, ids, keys)\n"
    "  SELECT " PGP_XID ", $1,\n"
    "    now() + $3::int8 * interval '1 millisecond', array_agg({id}),\n"
    "    coalesce(array_agg({aggregate_id})\n"
    "      FILTER (WHERE {aggregate_id} IS NOT NULL), ARRAY[]::text[])\n"
    "  FROM pick HAVING count(*) > 0\n"
    ")\n"
    "SELECT {id}, {event_id}, {aggregate_type}, {aggregate_id}, {event_type},\n"
    "  {payload}, {topic}, {headers}, {created_at}, {attempts},\n"
    "  " PGP_XID ", coalesce(obx_seq, " PGP_XID ")\n"
    "FROM pick";
/* clang-format on */

/* Claims whose lease ran out: their owner died or stalled. Run after the
 * claim lock, before the claim, in its transaction. The rows of such a
 * claim that are still pending get the claim's id as claim_seq, which
 * keeps them ahead of their key's rows that committed since, and a
 * next_attempt_at of now (unless a later retry time is set), which puts
 * them in the blocked index, where the claim looks for keys whose rows
 * are out of id order; then the claim row goes and its keys are free.
 * A relay still holding one of these claims finds its release and bury
 * no longer apply (pgp_release_sql) and its ack harmless. */
/* clang-format off */
static const char pgp_expire_sql[] =
    "WITH x AS (\n"
    "  DELETE FROM {F:" PGP_SFX_CLAIMS "} WHERE claim_id IN (\n"
    "    SELECT claim_id FROM {F:" PGP_SFX_CLAIMS "} WHERE expires_at <= now()\n"
    "    ORDER BY claim_id FOR UPDATE)\n"
    "  RETURNING claim_id, ids\n"
    ")\n"
    "UPDATE {T} AS o SET {claim_seq} = coalesce(o.{claim_seq}, x.claim_id),\n"
    "  {next_attempt_at} = greatest(o.{next_attempt_at}, now())\n"
    "FROM (SELECT claim_id, unnest(ids) AS id FROM x) AS x\n"
    "WHERE o.{id} = x.id AND " PGP_PENDING("o.");
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
 * snapshot, taken after the lock was granted, sees every claims row
 * committed by the claims before it. That is what keeps two relays from
 * taking rows of one key at once, and lets the claim read rows without
 * locking them. The key is (0x6f627872 "obxr", the table's oid folded to
 * int4); $1 is the quoted table name. */
static const char pgp_claim_lock_sql[] =
    "SELECT pg_advisory_xact_lock(1868724338, "
    "($1::regclass::oid::int8 & 2147483647)::int4)";

/* Settling deletes the claims that are done: $N holds the tokens whose
 * last event this statement settles (the store knows which of its events
 * are still out). Every statement that touches a claims row and its
 * event rows locks the claims rows first, in claim_id order (the
 * takeover in pgp_expire_sql does): in another order an ack and a
 * takeover of the same claim wait for each other until the server's
 * deadlock check aborts one, a second later. Release, bury and unlease
 * lock them in `mine`; the ack in `held` (FOR KEY SHARE: it conflicts
 * with the takeover's delete, not with a release's trim), evaluated with
 * `done` before the first row is updated (PGP_CLAIMS_FIRST: InitPlans of
 * the WHERE clause). The lease columns are cleared for rows a relay of
 * an earlier version leased in the row. */
/* clang-format off */
#define PGP_DONE(n)                                                            \
    "done AS (\n"                                                              \
    "  DELETE FROM {F:" PGP_SFX_CLAIMS "}\n"                                    \
    "  WHERE claim_id = ANY(" n "::int8[]) AND owner = $1 RETURNING 1)"
#define PGP_DONE_FIRST " AND (SELECT count(*) FROM done) >= 0"
#define PGP_HELD                                                               \
    "held AS (\n"                                                              \
    "  SELECT claim_id FROM {F:" PGP_SFX_CLAIMS "}\n"                          \
    "  WHERE claim_id = ANY($3::int8[]) ORDER BY claim_id FOR KEY SHARE)"
#define PGP_CLAIMS_FIRST                                                       \
    " AND (SELECT count(*) FROM held) + (SELECT count(*) FROM done) >= 0"
/* Release, bury and unlease touch a row only while the claim that leased
 * it is still ours and still holds it: once the claim expired and another
 * relay took the rows over (pgp_expire_sql deleted it), they are theirs;
 * once a release let go of the row (trim), it is free, and a release
 * sent again after its reply was lost (the first one committed) must not
 * count the attempt twice, nor free a lease another relay took since.
 * The claims row is locked first, so a takeover running at the same
 * moment waits for this statement or this statement for it. $3 holds
 * each row's token. */
#define PGP_MINE                                                               \
    "mine AS (\n"                                                              \
    "  SELECT claim_id, ids FROM {F:" PGP_SFX_CLAIMS "}\n"                     \
    "  WHERE claim_id = ANY($3::int8[]) AND owner = $1\n"                      \
    "  ORDER BY claim_id FOR UPDATE)"
#define PGP_OURS(a)                                                            \
    a "{id} = r.id AND EXISTS (SELECT 1 FROM mine AS m\n"                      \
    "    WHERE m.claim_id = r.token AND " a "{id} = ANY(m.ids))\n"             \
    "  AND " PGP_PENDING(a)
/* Where a row goes back to the table unpublished, its claim order stays
 * (claim_seq) and next_attempt_at is set, which puts it in the blocked
 * index where the claim looks for keys out of id order (pgp_claim_sql). */
#define PGP_KEEP_ORDER(a) "{claim_seq} = coalesce(" a "{claim_seq}, r.token)"

/* Acks whatever the lease says: the broker has the event either way.
 * $1 owner, $2 ids, $3 tokens, $4 claims done. */
static const char pgp_ack_mark_sql[] =
    "WITH " PGP_HELD ", " PGP_DONE("$4") "\n"
    "UPDATE {T} SET {published_at} = now(),\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "WHERE {id} = ANY($2::int8[]) AND {published_at} IS NULL" PGP_CLAIMS_FIRST;

static const char pgp_ack_delete_sql[] =
    "WITH " PGP_HELD ", " PGP_DONE("$4") "\n"
    "DELETE FROM {T} WHERE {id} = ANY($2::int8[])" PGP_CLAIMS_FIRST;

/* The retry time arrives as a delay and is added to the database's
 * clock, so clock skew between relays does not matter. A claim that is
 * not done yet lets go of the released rows (trim), so its row lists
 * what it still holds. $1 owner, $2 ids, $3 tokens, $4 delays, $5
 * counts, $6 errors, $7 claims done. */
static const char pgp_release_sql[] =
    "WITH " PGP_MINE ", " PGP_DONE("$7") ", trim AS (\n"
    "  UPDATE {F:" PGP_SFX_CLAIMS "} AS c SET ids = ARRAY(\n"
    "    SELECT unnest(c.ids) EXCEPT SELECT unnest($2::int8[]))\n"
    "  WHERE c.claim_id IN (SELECT claim_id FROM mine)\n"
    "    AND c.claim_id <> ALL($7::int8[]))\n"
    "UPDATE {T} AS o SET\n"
    "  {next_attempt_at} = now() + r.delay_us::float8 * interval '1 microsecond',\n"
    "  {attempts} = o.{attempts} + r.counts,\n"
    "  {last_error} = coalesce(r.err, o.{last_error}),\n"
    "  " PGP_KEEP_ORDER("o.") ", {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::text[])\n"
    "  AS r(id, token, delay_us, counts, err)\n"
    "WHERE " PGP_OURS("o.");

/* $1 owner, $2 ids, $3 tokens, $4 reasons, $5 destinations, $6 attempts,
 * $7 claims done. */
static const char pgp_bury_sql[] =
    "WITH " PGP_MINE ", " PGP_DONE("$7") "\n"
    "UPDATE {T} AS o SET {dead_at} = now(), {dead_reason} = r.reason,\n"
    "  {dead_destination} = r.dest, {attempts} = r.attempts,\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::int4[])\n"
    "  AS r(id, token, reason, dest, attempts)\n"
    "WHERE " PGP_OURS("o.");

/* At close: every claim of the events still out is handed back at once
 * (their rows are due now), rather than after the lease. $1 owner, $2
 * ids, $3 tokens. */
static const char pgp_unlease_sql[] =
    "WITH " PGP_MINE ", " PGP_DONE("$3") "\n"
    "UPDATE {T} AS o SET " PGP_KEEP_ORDER("o.") ",\n"
    "  {next_attempt_at} = greatest(o.{next_attempt_at}, now()),\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::int8[]) AS r(id, token)\n"
    "WHERE " PGP_OURS("o.");

/* Rows dead-lettered at claim (unreadable): $1 owner, $2 ids, $3
 * reasons, $4 claims done (a claim of nothing but such rows). */
static const char pgp_poison_sql[] =
    "WITH " PGP_DONE("$4") "\n"
    "UPDATE {T} AS o SET {dead_at} = now(), {dead_reason} = r.reason,\n"
    "  {locked_by} = NULL, {locked_until} = NULL\n"
    "FROM unnest($2::int8[], $3::text[]) AS r(id, reason)\n"
    "WHERE o.{id} = r.id" PGP_DONE_FIRST;
/* clang-format on */

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

/* Milliseconds until the first blocked row's retry time passes or the
 * first claim's lease runs out (a relay died holding it): how long an
 * idle claim may sleep without NOTIFY to wake it. */
/* clang-format off */
static const char pgp_next_due_sql[] =
    "SELECT " PGP_US("least((\n"
    "  SELECT min(" OSC_PG_BLOCKED_UNTIL("") ") FROM {T}\n"
    "  WHERE " OSC_PG_PENDING_BLOCKED("") "\n"
    "    AND " PGP_MAYBE_BLOCKED("") " AND " PGP_BLOCKED_NOW("") "),\n"
    "  (SELECT min(expires_at) FROM {F:" PGP_SFX_CLAIMS "})) - now()") " / 1000";
/* clang-format on */

/* clang-format off */
static const char pgp_dead_list_sql[] =
    "SELECT " PGP_EVENT_COLS("o.") ",\n"
    "  o.{dead_reason}::text, o.{dead_destination}::text,\n"
    "  " PGP_US("o.{dead_at}") "\n"
    "FROM {T} AS o WHERE o.{dead_at} IS NOT NULL\n"
    "  AND ($1::text IS NULL OR o.{event_id}::text = $1) ORDER BY o.{id}";
/* clang-format on */

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
    [PGP_S_EXPIRE] = pgp_expire_sql,
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
    [PGP_S_EXPIRE] = "obx_pgp_expire",
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
 * its indexes (pg_schema.h), then pg_poll's own objects: the claims table
 * and the NOTIFY trigger (pg_wal's writers do not pay for a wake-up
 * nobody listens to). */
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

/* The claims table (pgp_claim_sql): one row per batch in flight, deleted
 * when the batch is settled or its lease expired. ids and keys are stored
 * uncompressed: a batch's arrays are a few KB, written once and read by
 * every claim while the batch is out, and compressing them took half of
 * a claim of 1000 (1.6 of 3 ms). */
static const char *const pgp_ddl_claims[] = {
    "CREATE TABLE IF NOT EXISTS {F:" PGP_SFX_CLAIMS "} (\n"
    "    claim_id bigint PRIMARY KEY,\n"
    "    owner text NOT NULL,\n"
    "    expires_at timestamptz NOT NULL,\n"
    "    ids bigint[] NOT NULL,\n"
    "    keys text[] NOT NULL\n"
    ")",
    "ALTER TABLE {F:" PGP_SFX_CLAIMS "} ALTER ids SET STORAGE EXTERNAL,\n"
    "    ALTER keys SET STORAGE EXTERNAL",
};

int pgp_ddl_claims_each(const pgp_names *n, pgp_ddl_fn emit, void *ctx)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < 2; i++)
        rc = pgp_ddl_one(n, pgp_ddl_claims[i], emit, ctx);
    return rc;
}

int pgp_ddl_each(const pgp_names *n, const pgp_config *conf, pgp_ddl_fn emit,
                 void *ctx)
{
    int rc = n->schema ? pgp_ddl_one(n, pgp_ddl_schema, emit, ctx) : 0;
    for (size_t i = 0; rc == 0 && i < osc_pg_outbox_ddl_n; i++)
        rc = pgp_ddl_one(n, osc_pg_outbox_ddl[i].tpl, emit, ctx);
    if (rc == 0)
        rc = pgp_ddl_claims_each(n, emit, ctx);
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
