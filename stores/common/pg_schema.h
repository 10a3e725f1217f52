/* The PostgreSQL outbox table that pg_poll and pg_wal share: the names of
 * every object built around it and the DDL of the table and its indexes,
 * written once so that either store runs on a table the other created.
 *
 * The templates use the placeholders both stores expand: {T} the quoted,
 * schema-qualified table, {I:sfx} the quoted object name from
 * osc_pg_object_name(table, sfx), {col} the quoted real name of a logical
 * column (pg_poll's column names; the bookkeeping ones are never renamed).
 * No libpq here: the strings and name rules only. Thread-safe (no state). */
#ifndef OSC_STORE_PG_SCHEMA_H
#define OSC_STORE_PG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

/* PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently cut. */
#define OSC_PG_NAME_MAX 63

/* Suffixes of the objects named after the table ("<table>_<suffix>"). */
#define OSC_PG_SFX_EVENT_ID "event_id"
#define OSC_PG_SFX_PENDING "pending_ids"
#define OSC_PG_SFX_KEY "key_rank"
#define OSC_PG_SFX_BLOCKED "blocked_until"
#define OSC_PG_SFX_DEAD "dead"
#define OSC_PG_SFX_PUBLISHED "published"
#define OSC_PG_SFX_NOTIFY "notify" /* pg_poll's trigger + function */
#define OSC_PG_SFX_DEAD_LETTERS                                                \
    "dead_letters"                   /* pg_wal's dead-letter table             \
                                      */
#define OSC_PG_SFX_RECOVER "recover" /* pg_wal's recovery list */

/* Rows not yet published nor dead; `a` is a table alias with its dot
 * ("o.") or "". Written the same way in the index predicates and in the
 * queries, so the planner can prove the partial indexes usable. */
#define OSC_PG_PENDING(a) a "{published_at} IS NULL AND " a "{dead_at} IS NULL"
/* The same rows, spelled differently on purpose: the predicate of the
 * pending index, and of the queries that scan pending rows in id order
 * (claims, stats). The planner proves a partial index usable only from a
 * query's predicate, and neither spelling implies the other for it, so
 * the per-key probes (written with OSC_PG_PENDING) can only use the key
 * index, and the id-ordered scans only this one, whatever
 * the statistics say. They lie after an outage: a vacuum while the relay
 * kept up recorded the pending index as empty, and with both spellings
 * alike the planner probed each candidate's key by scanning "the empty"
 * pending index: 35,000 rows per candidate, 1.5 s per claim, for as long
 * as the backlog lasted. */
#define OSC_PG_PENDING_IDS(a)                                                  \
    "coalesce(" a "{published_at}, " a "{dead_at}) IS NULL"
/* The same rows a third way, for the blocked index and the queries that
 * read it: were it spelled as OSC_PG_PENDING, the key index would serve
 * them too, and a generic plan made on an empty table took it (a full
 * scan of every pending row per claim, where the blocked rows are one
 * range of the blocked index). */
#define OSC_PG_PENDING_BLOCKED(a)                                              \
    "num_nulls(" a "{published_at}, " a "{dead_at}) = 2"
/* Rows that may block their key: leased (now or in the past) or released
 * with a retry time. */
#define OSC_PG_MAYBE_BLOCKED(a)                                                \
    "(" a "{locked_until} IS NOT NULL OR " a "{next_attempt_at} > "            \
    "'-infinity')"
/* When a row stops blocking its key: the later of its lease end and its
 * retry time. The blocked index is ordered by it, so "the rows blocked
 * now" (UNTIL > now()) is a range of that index: the rows in flight or
 * waiting, never those whose lease or retry time has passed. */
#define OSC_PG_BLOCKED_UNTIL(a)                                                \
    "greatest(coalesce(" a "{locked_until}, '-infinity'), " a                  \
    "{next_attempt_at})"

/* A row's place in its key's claim order: rows some claim has taken
 * (claim_seq, the xid of the first claim that took them) before rows no
 * claim has seen; ties by id. Written the same way in the key index and
 * in pg_poll's claim, so the claim's "predecessor of this row" probe is
 * one backward index step. */
#define OSC_PG_CLAIM_RANK(a) "coalesce(" a "{claim_seq}, 9223372036854775807)"

/* One DDL statement of the shared table. `sfx` names the index it creates
 * that a store checks for at open (NULL: the table, or an index no
 * statement of a store reads); `why` says what a store loses without it, for
 * the warning a store logs when it finds the index missing. */
typedef struct osc_pg_ddl {
    const char *sfx;
    const char *why;
    const char *tpl;
} osc_pg_ddl;

/* The table, then its indexes, in the order to run them. */
extern const osc_pg_ddl osc_pg_outbox_ddl[];
extern const size_t osc_pg_outbox_ddl_n;

/* Whether `key` is a bookkeeping column of the shared table (attempts,
 * next_attempt_at, locked_by, locked_until, last_error, dead_destination
 * and the rest a store does not let the user rename). */
bool osc_pg_fixed_column(const char *key);

/* The name of the object `sfx` of `table` into out (OSC_PG_NAME_MAX + 1
 * bytes): "<table>_<sfx>" when it fits in 63 bytes; otherwise the table
 * part is cut (at a UTF-8 character boundary) and 8 hex digits of a hash
 * of the whole table name are added ("<cut>_<hash>_<sfx>"), so that long
 * names neither get cut by PostgreSQL nor collide. */
void osc_pg_object_name(const char *table, const char *sfx, char *out);

/* The default replication slot of a stream: "outbox_relay_<db>_<what>"
 * (<what> is the schema-qualified table, or the message prefix), folded
 * to PostgreSQL's slot alphabet [a-z0-9_]. When folding changed anything
 * or the name is longer than 63 bytes, it is cut and 8 hex digits of a
 * hash of the unfolded parts are appended, so two streams never share a
 * default. `schema` may be NULL. out has OSC_PG_NAME_MAX + 1 bytes. */
void osc_pg_default_slot(const char *db, const char *schema, const char *what,
                         char *out);

/* The demo's `orders` table (beside the outbox: {T} expanded with the
 * table name "orders"), the same for both stores. */
extern const char osc_pg_demo_orders_ddl[];
/* $1: the orders table as {T} expands it. One row, one column: what
 * keeps the demo from writing to it (columns it lacks, NOT NULL columns
 * without a default it would not fill), or NULL when it fits. */
extern const char osc_pg_demo_orders_check[];
/* The error for an orders table of another shape: which table, what is
 * wrong, the shape the demo needs and the way out. */
void osc_pg_demo_orders_err(char *err, size_t errlen, const char *store,
                            const char *table, const char *what);

#endif
