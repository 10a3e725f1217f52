/* Table and column names of one outbox table, and the SQL text built from
 * them. Identifiers are always quoted ("..." with embedded quotes doubled),
 * never pasted raw. */
#ifndef SQ_SQL_H
#define SQ_SQL_H

#include <stddef.h>

#include "sqlite_config.h"

/* Logical columns. The writer-facing ones (and id) may be renamed with
 * column.<name>; the bookkeeping ones belong to the relay and keep theirs. */
typedef enum sq_col {
    SQ_C_ID,
    SQ_C_EVENT_ID,
    SQ_C_AGGREGATE_TYPE,
    SQ_C_AGGREGATE_ID,
    SQ_C_EVENT_TYPE,
    SQ_C_PAYLOAD,
    SQ_C_TOPIC,
    SQ_C_HEADERS,
    SQ_C_CREATED_AT,
    SQ_C_N_MAPPABLE,
    SQ_C_ATTEMPTS = SQ_C_N_MAPPABLE,
    SQ_C_NEXT_ATTEMPT_AT,
    SQ_C_LOCKED_BY,
    SQ_C_LOCKED_UNTIL,
    SQ_C_PUBLISHED_AT,
    SQ_C_DEAD_AT,
    SQ_C_LAST_ERROR,
    SQ_C_DEAD_REASON,
    SQ_C_DEAD_DESTINATION,
    SQ_C_COUNT
} sq_col;

/* Resolved names. The strings are borrowed from the config (or static). */
typedef struct sq_names {
    const char *table;
    const char *col[SQ_C_COUNT];
} sq_names;

/* Resolve table and column names from `conf`, applying defaults.
 * Rejects an empty table name, unknown or repeated column.* keys, empty
 * real names, and two logical columns mapped to one real name, with a
 * message naming the option. Returns 0, or -1 with err filled. */
int sq_names_init(sq_names *n, const sq_config *conf, char *err, size_t errlen);

/* The relay's own (logical) name of column c, e.g. "payload": what
 * store.column.<name> calls it. */
const char *sq_col_logical(sq_col c);

/* Expand an SQL template: {T} is the quoted table, {I:sfx} the quoted
 * name "<table>_<sfx>" (its indexes, the claims table), {col} the quoted real
 * name of a logical column. Returns a string to free with sqlite3_free(), or
 * NULL (no memory, or an unknown placeholder: a bug). */
char *sq_sql_expand(const sq_names *n, const char *tpl);

/* The DDL statements (the outbox table, its indexes, the claims table and
 * the trigger that turns away relays leasing in the rows), NULL-terminated
 * templates. */
extern const char *const sq_ddl_templates[];

/* The claims table as a TEMP table of the same name, which the relay's
 * unqualified statements resolve to first: what `check --connect` tries
 * them against on a file that does not have the table yet. */
extern const char sq_claims_temp_template[];

#endif
