/* Table, column and channel names of one outbox table, and the SQL text
 * built from them. Identifiers are always quoted ("..." with embedded
 * quotes doubled, as PQescapeIdentifier does), never pasted raw. No libpq
 * here: the benchmark in bench/ reuses these statements as they are. */
#ifndef OBX_PG_SQL_H
#define OBX_PG_SQL_H

#include <stdbool.h>
#include <stddef.h>

#include "pg_poll_config.h"

/* PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently cut. */
#define PGP_NAME_MAX 63

/* The claims table, "<table>_claims": one row per batch in flight, the
 * lease (pgp_claim_sql). pg_poll's alone. */
#define PGP_SFX_CLAIMS "claims"

/* Logical columns. The writer-facing ones (and id) may be renamed with
 * column.<name>; the bookkeeping ones belong to the relay and keep theirs.
 * The same names as the sqlite store's. */
typedef enum pgp_col {
    PGP_C_ID,
    PGP_C_EVENT_ID,
    PGP_C_AGGREGATE_TYPE,
    PGP_C_AGGREGATE_ID,
    PGP_C_EVENT_TYPE,
    PGP_C_PAYLOAD,
    PGP_C_TOPIC,
    PGP_C_HEADERS,
    PGP_C_CREATED_AT,
    PGP_C_N_MAPPABLE,
    PGP_C_ATTEMPTS = PGP_C_N_MAPPABLE,
    PGP_C_NEXT_ATTEMPT_AT,
    PGP_C_LOCKED_BY,
    PGP_C_LOCKED_UNTIL,
    PGP_C_PUBLISHED_AT,
    PGP_C_DEAD_AT,
    PGP_C_LAST_ERROR,
    PGP_C_DEAD_REASON,
    PGP_C_DEAD_DESTINATION,
    PGP_C_CLAIM_SEQ,
    PGP_C_COUNT
} pgp_col;

/* Resolved names, borrowed from the config (or static). */
typedef struct pgp_names {
    const char *schema; /* NULL: the connection's search_path */
    const char *table;
    const char *channel;
    const char *col[PGP_C_COUNT];
} pgp_names;

/* Resolve names from `conf`, applying defaults. Rejects unknown or
 * repeated column.* keys, empty names, names longer than PGP_NAME_MAX and
 * two logical columns mapped to one real name, with a message naming the
 * option. Returns 0, or -1 with err filled. */
int pgp_names_init(pgp_names *n, const pgp_config *conf, char *err,
                   size_t errlen);

/* Expand an SQL template: {T} the quoted (schema-qualified) table, {S} the
 * quoted schema, {I:sfx} the quoted name "<table>_<sfx>", {F:sfx} the same
 * qualified with the schema, {CH} the channel as a string literal, {col}
 * the quoted real name of a logical column. Returns a string to free(), or
 * NULL (no memory, or an unknown placeholder: a bug). */
char *pgp_sql_expand(const pgp_names *n, const char *tpl);

/* Prepared statements; each has a fixed name on the connection. */
typedef enum pgp_stmt {
    PGP_S_CLAIM_LOCK, /* these three run in this order, in one transaction */
    PGP_S_EXPIRE,
    PGP_S_CLAIM,
    PGP_S_ACK,
    PGP_S_RELEASE,
    PGP_S_BURY,
    PGP_S_UNLEASE,
    PGP_S_POISON,
    PGP_S_RETENTION,
    PGP_S_STATS,
    PGP_S_NEXT_DUE,
    PGP_S_DEAD_LIST,
    PGP_S_REQUEUE,
    PGP_S_PURGE,
    PGP_S_COUNT
} pgp_stmt;

/* The template of a statement (the ack depends on ack_mode), and the name
 * it is prepared under. Static strings. */
const char *pgp_stmt_template(pgp_stmt s, int ack_mode);
const char *pgp_stmt_name(pgp_stmt s);

/* Run once on each of the store's connections, before anything else
 * (see pg_sql.c). */
extern const char pgp_session_sql[];

/* Number of columns of an event row (claim, dead list) and their order:
 * id, event_id, aggregate_type, aggregate_id, event_type, payload, topic,
 * headers, created_at (unix us), attempts, then per statement: the lease
 * token and claim_seq (claim) or dead_reason, dead_destination, dead_at
 * (dead list). */
#define PGP_EVENT_COLUMNS 10

/* Call emit(ctx, sql) for each DDL statement that `conf` asks for, in
 * order (schema, table, indexes, claims table, trigger function, trigger);
 * sql is only
 * valid during the call. Returns 0, -1 when out of memory, or the first
 * non-zero value emit returned. */
typedef int (*pgp_ddl_fn)(void *ctx, const char *sql);
/* The NOTIFY trigger's function and trigger (templates for
 * pgp_sql_expand), for the warning that names them when missing. */
extern const char pgp_ddl_notify_fn[];
extern const char pgp_ddl_notify_trigger[];
int pgp_ddl_each(const pgp_names *n, const pgp_config *conf, pgp_ddl_fn emit,
                 void *ctx);
/* The same for the claims table alone (a table made before it existed, or
 * by pg_wal, gets it at open). */
int pgp_ddl_claims_each(const pgp_names *n, pgp_ddl_fn emit, void *ctx);

#endif
