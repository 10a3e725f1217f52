#include "sqlite_sql.h"

#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "columns.h"

static const char *const sq_col_default[SQ_C_COUNT] = {
    [SQ_C_ID] = "id",
    [SQ_C_EVENT_ID] = "event_id",
    [SQ_C_AGGREGATE_TYPE] = "aggregate_type",
    [SQ_C_AGGREGATE_ID] = "aggregate_id",
    [SQ_C_EVENT_TYPE] = "event_type",
    [SQ_C_PAYLOAD] = "payload",
    [SQ_C_TOPIC] = "topic",
    [SQ_C_HEADERS] = "headers",
    [SQ_C_CREATED_AT] = "created_at",
    [SQ_C_ATTEMPTS] = "attempts",
    [SQ_C_NEXT_ATTEMPT_AT] = "next_attempt_at",
    [SQ_C_LOCKED_BY] = "locked_by",
    [SQ_C_LOCKED_UNTIL] = "locked_until",
    [SQ_C_PUBLISHED_AT] = "published_at",
    [SQ_C_DEAD_AT] = "dead_at",
    [SQ_C_LAST_ERROR] = "last_error",
    [SQ_C_DEAD_REASON] = "dead_reason",
    [SQ_C_DEAD_DESTINATION] = "dead_destination",
};

/* A version 4 uuid from randomblob: version nibble 4, variant 8..b. The
 * DEFAULT runs inside the writer's INSERT, so rows written by any client
 * get an id without help from the relay. */
#define SQ_UUID_SQL                                                            \
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))\n"          \
    "        || '-4' || substr(lower(hex(randomblob(2))), 2)\n"                \
    "        || '-' || substr('89ab', 1 + (random() & 3), 1)\n"                \
    "        || substr(lower(hex(randomblob(2))), 2)\n"                        \
    "        || '-' || lower(hex(randomblob(6)))"

/* unixepoch('subsec') arrived in SQLite 3.42; julianday('now') has
 * millisecond resolution, so round to the millisecond, then scale. */
#define SQ_NOW_US_SQL                                                          \
    "CAST(round((julianday('now') - 2440587.5) * 86400000.0)\n"                \
    "        AS INTEGER) * 1000"

#define SQ_PENDING_WHERE "{published_at} IS NULL AND {dead_at} IS NULL"

/* clang-format off */
#define SQ_CLAIMS_TABLE \
    "{I:claims} (\n" \
    "    \"claim_id\" INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused\n" \
    "    \"owner\" TEXT NOT NULL, -- the relay (store.owner)\n" \
    "    \"expires_at\" INTEGER NOT NULL, -- lease end, unix us\n" \
    "    \"ids\" TEXT NOT NULL, -- JSON array: the events claimed\n" \
    "    \"keys\" TEXT NOT NULL -- JSON array: their aggregate_ids\n" \
    ")"

const char sq_claims_temp_template[] = "CREATE TEMP TABLE " SQ_CLAIMS_TABLE;

const char *const sq_ddl_templates[] = {
    "CREATE TABLE IF NOT EXISTS {T} (\n"
    "    -- written by the application\n"
    "    {id} INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order\n"
    "    {event_id} TEXT NOT NULL DEFAULT ( -- uuid v4\n"
    "        " SQ_UUID_SQL "),\n"
    "    {aggregate_type} TEXT NOT NULL,\n"
    "    {aggregate_id} TEXT NOT NULL, -- ordering and partition key\n"
    "    {event_type} TEXT NOT NULL,\n"
    "    {payload} BLOB NOT NULL, -- bytes or text\n"
    "    {topic} TEXT, -- explicit destination, wins over the template\n"
    "    {headers} TEXT -- JSON object of string values\n"
    "        CHECK ({headers} IS NULL OR json_type({headers}) = 'object'),\n"
    "    {created_at} INTEGER NOT NULL DEFAULT ( -- unix microseconds\n"
    "        " SQ_NOW_US_SQL "),\n"
    "    -- owned by the relay\n"
    "    {attempts} INTEGER NOT NULL DEFAULT 0, -- failed attempts\n"
    "    {next_attempt_at} INTEGER NOT NULL DEFAULT 0, -- unix us\n"
    "    {locked_by} TEXT, -- lease owner (earlier relays; now: claims)\n"
    "    {locked_until} INTEGER, -- their lease end, unix us\n"
    "    {published_at} INTEGER, -- unix us\n"
    "    {dead_at} INTEGER, -- unix us\n"
    "    {last_error} TEXT,\n"
    "    {dead_reason} TEXT,\n"
    "    {dead_destination} TEXT\n"
    ")",
    /* the claim scans pending rows in id order */
    "CREATE INDEX IF NOT EXISTS {I:pending} ON {T} ({id})\n"
    "    WHERE " SQ_PENDING_WHERE,
    /* the claim's per-key check looks for earlier rows of a key that hold
     * it back: released for a retry (or leased in the row by an
     * earlier relay). Only those rows are in this index, so it stays as small
     * as the retries waiting and an ack touches it only for such a row */
    "CREATE INDEX IF NOT EXISTS {I:key} ON {T} ({aggregate_id}, {id})\n"
    "    WHERE " SQ_PENDING_WHERE "\n"
    "    AND ({locked_until} IS NOT NULL OR {next_attempt_at} > 0)",
    "CREATE INDEX IF NOT EXISTS {I:dead} ON {T} ({id})\n"
    "    WHERE {dead_at} IS NOT NULL",
    /* retention: published rows by age */
    "CREATE INDEX IF NOT EXISTS {I:published} ON {T} ({published_at})\n"
    "    WHERE {published_at} IS NOT NULL",
    /* the leases: one row per claimed batch, written by the claim in
     * place of a lease in each of its rows (which cost the claim a row
     * write and an index entry per event, and the ack the same again);
     * the row goes when the batch is settled, handed back at close, or
     * its lease ran out and another claim took its events */
    "CREATE TABLE IF NOT EXISTS " SQ_CLAIMS_TABLE,
    /* a relay of an earlier version leases in the rows and does not see
     * the claims table: it would take events this one has out. Its claim
     * fails here, loudly, instead; this relay only ever clears the
     * column (and a downgrade needs the trigger dropped) */
    "CREATE TRIGGER IF NOT EXISTS {I:no_row_leases}\n"
    "    BEFORE UPDATE OF {locked_until} ON {T}\n"
    "    WHEN NEW.{locked_until} IS NOT NULL\n"
    "BEGIN\n"
    "    SELECT RAISE(ABORT, 'outbox-relay: leases live in the claims "
    "table now: upgrade this relay (docs/sqlite-schema.md, Upgrading)');\n"
    "END",
    NULL,
};
/* clang-format on */

static int sq_col_lookup(const char *name, int limit)
{
    return osc_columns_lookup(sq_col_default, limit, name);
}

int sq_names_init(sq_names *n, const sq_config *conf, char *err, size_t errlen)
{
    n->table = conf->table && conf->table[0] ? conf->table : "outbox";
    /* SQLite compares identifiers case-insensitively (ASCII) and keeps
     * names of any length. */
    static const osc_columns_rules rules = {
        .n_mappable = SQ_C_N_MAPPABLE,
        .name_max = 0,
        .name_max_db = NULL,
        .fold_case = true,
    };
    return osc_columns_map(n->col, sq_col_default, SQ_C_COUNT, &conf->column,
                           &rules, err, errlen);
}

const char *sq_col_logical(sq_col c)
{
    return sq_col_default[c];
}

static void sq_ident(sqlite3_str *s, const char *name)
{
    /* %w doubles embedded double quotes: SQLite's identifier quoting. */
    sqlite3_str_appendf(s, "\"%w\"", name);
}

/* Append the expansion of one placeholder body (between the braces). */
static int sq_placeholder(sqlite3_str *s, const sq_names *n, const char *p,
                          size_t len)
{
    char key[64];
    if (len == 0 || len >= sizeof key)
        return -1;
    memcpy(key, p, len);
    key[len] = '\0';
    if (strcmp(key, "T") == 0) {
        sq_ident(s, n->table);
        return 0;
    }
    if (strncmp(key, "I:", 2) == 0) {
        char *idx = sqlite3_mprintf("%s_%s", n->table, key + 2);
        if (!idx)
            return -1;
        sq_ident(s, idx);
        sqlite3_free(idx);
        return 0;
    }
    int c = sq_col_lookup(key, SQ_C_COUNT);
    if (c < 0)
        return -1;
    sq_ident(s, n->col[c]);
    return 0;
}

char *sq_sql_expand(const sq_names *n, const char *tpl)
{
    sqlite3_str *s = sqlite3_str_new(NULL);
    const char *p = tpl;
    int bad = 0;
    while (*p && !bad) {
        const char *open = strchr(p, '{');
        if (!open) {
            sqlite3_str_appendall(s, p);
            break;
        }
        sqlite3_str_append(s, p, (int)(open - p));
        const char *close = strchr(open, '}');
        bad = !close ||
              sq_placeholder(s, n, open + 1, (size_t)(close - open - 1)) != 0;
        p = close ? close + 1 : open + 1;
    }
    char *out = sqlite3_str_finish(s);
    if (bad) {
        sqlite3_free(out);
        return NULL;
    }
    return out;
}
