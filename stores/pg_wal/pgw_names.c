/* The pg_wal store's names (table, dead-letter table, publication, slot,
 * columns) and the SQL templates written with them: {T} and the other
 * placeholders expanded to quoted identifiers and literals. Identifiers
 * are always quoted ("..." with quotes doubled, as PQescapeIdentifier
 * does). No connection here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err_words.h"
#include "pg_schema.h"
#include "pgw_store.h"

static const char *const pgw_col_default[PGW_C_COUNT] = {
    "id",         "event_id",     "aggregate_type", "aggregate_id",
    "event_type", "payload",      "topic",          "headers",
    "created_at", "published_at", "dead_at",        "dead_reason"};

/* ---- a small string buffer (sticky out-of-memory) ---- */

void pgw_buf_addn(pgw_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void pgw_buf_add(pgw_buf *b, const char *s)
{
    pgw_buf_addn(b, s, strlen(s));
}

void pgw_buf_ident(pgw_buf *b, const char *name)
{
    pgw_buf_add(b, "\"");
    for (const char *p = name; *p; p++)
        pgw_buf_add(b, *p == '"' ? "\"\"" : (char[]){*p, '\0'});
    pgw_buf_add(b, "\"");
}

void pgw_buf_literal(pgw_buf *b, const char *text)
{
    pgw_buf_add(b, "'");
    for (const char *p = text; *p; p++)
        pgw_buf_add(b, *p == '\'' ? "''" : (char[]){*p, '\0'});
    pgw_buf_add(b, "'");
}

char *pgw_buf_take(pgw_buf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p ? b->p : calloc(1, 1);
}

/* ---- names ---- */

static int name_err(char *err, size_t errlen, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static int name_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int apply_mapping(pgw_names *n, const obx_kv *kv, char *err,
                         size_t errlen)
{
    int c = -1;
    for (int i = 0; i < PGW_C_N_MAPPABLE && c < 0; i++)
        if (strcmp(pgw_col_default[i], kv->name) == 0)
            c = i;
    if (c < 0)
        return name_err(err, errlen,
                        "line %d: store.column.%s: unknown column; valid: "
                        "id, event_id, aggregate_type, aggregate_id, "
                        "event_type, payload, topic, headers, created_at",
                        kv->line, kv->name);
    if (!kv->value || !kv->value[0] || strlen(kv->value) > PGW_NAME_MAX)
        return name_err(err, errlen,
                        "line %d: store.column.%s: empty or longer than %d "
                        "bytes",
                        kv->line, kv->name, PGW_NAME_MAX);
    if (n->col[c] != pgw_col_default[c])
        return name_err(err, errlen, "line %d: store.column.%s: set twice",
                        kv->line, kv->name);
    n->col[c] = kv->value;
    return 0;
}

bool pgw_names_mapped(const pgw_names *n, int c)
{
    return c >= 0 && c < PGW_C_N_MAPPABLE && n->col[c] != pgw_col_default[c];
}

/* Slot names: lower-case letters, digits and underscores (PostgreSQL's
 * rule), at most 63 bytes. */
static int check_slot(const char *slot, char *err, size_t errlen)
{
    size_t len = strlen(slot);
    bool ok = len > 0 && len <= PGW_NAME_MAX;
    for (const char *p = slot; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (ok)
        return 0;
    return name_err(err, errlen,
                    "store.slot: '%s' is not a valid replication slot name "
                    "(lower-case letters, digits and '_', at most 63 bytes)",
                    slot);
}

static const char *or_default(const char *v, const char *def)
{
    return v && v[0] ? v : def;
}

int pgw_names_init(pgw_names *n, const pgw_config *conf, char *err,
                   size_t errlen)
{
    memset(n, 0, sizeof *n);
    n->table = or_default(conf->table, "outbox");
    n->schema = conf->schema && conf->schema[0] ? conf->schema : NULL;
    n->publication = or_default(conf->publication, "outbox_relay");
    n->prefix = or_default(conf->message_prefix, "outbox");
    const char *names[] = {n->table, n->schema, conf->dead_table,
                           n->publication};
    for (size_t i = 0; i < 4; i++)
        if (names[i] && strlen(names[i]) > PGW_NAME_MAX)
            return name_err(err, errlen,
                            "store: name '%s' is longer than %d bytes "
                            "(PostgreSQL would cut it)",
                            names[i], PGW_NAME_MAX);
    /* the name pg_poll's DDL does not use for anything (its dead-letter
     * index is <table>_dead), so the two stores can share one table */
    osc_pg_object_name(n->table, OSC_PG_SFX_DEAD_LETTERS, n->dead_buf);
    n->dead_table = conf->dead_table && conf->dead_table[0] ? conf->dead_table
                                                            : n->dead_buf;
    if (conf->slot && conf->slot[0]) {
        if (check_slot(conf->slot, err, errlen) != 0)
            return -1;
        n->slot = conf->slot;
    }
    for (int c = 0; c < PGW_C_COUNT; c++)
        n->col[c] = pgw_col_default[c];
    for (size_t i = 0; i < conf->column.n; i++)
        if (apply_mapping(n, &conf->column.items[i], err, errlen) != 0)
            return -1;
    return 0;
}

void pgw_names_slot(pgw_names *n, const pgw_config *conf, const char *db)
{
    if (n->slot)
        return;
    const char *what =
        conf->source == PGW_SOURCE_MESSAGES ? n->prefix : n->table;
    osc_pg_default_slot(db, n->schema, what, n->slot_buf);
    n->slot = n->slot_buf;
}

obx_status pgw_check_recover(const pgw_config *conf, char *errstr,
                             size_t errlen)
{
    if (!conf->recover)
        return OBX_OK;
    if (conf->source == PGW_SOURCE_MESSAGES) {
        osc_errf_words(errstr, errlen,
                       "store.recover = true needs the outbox table as a "
                       "source: with source = messages the events exist only "
                       "in the WAL, and a lost slot leaves nothing to re-read");
        return OBX_CONFIG;
    }
    if (conf->ack_mode != PGW_ACK_MARK) {
        osc_errf_words(errstr, errlen,
                       "store.recover = true needs store.ack_mode = mark: "
                       "recovery re-reads the rows not marked published, and "
                       "only ack_mode = mark marks them");
        return OBX_CONFIG;
    }
    return OBX_OK;
}

/* ---- templates: {T} table, {D} dead table, {R} recovery list, {S}
 * schema, {P} publication, {SLOT} slot literal, {PFX} prefix literal,
 * {I:sfx} index name "<table>_<sfx>", {col} a column ---- */

/* name, or the object `sfx` of it (osc_pg_object_name), quoted and
 * qualified with the schema when there is one. */
static void qualified(pgw_buf *b, const pgw_names *n, const char *name,
                      const char *sfx)
{
    if (n->schema) {
        pgw_buf_ident(b, n->schema);
        pgw_buf_add(b, ".");
    }
    char obj[OSC_PG_NAME_MAX + 1];
    if (sfx)
        osc_pg_object_name(name, sfx, obj);
    pgw_buf_ident(b, sfx ? obj : name);
}

static int placeholder(pgw_buf *b, const pgw_names *n, const char *key)
{
    if (strcmp(key, "T") == 0)
        qualified(b, n, n->table, NULL);
    else if (strcmp(key, "D") == 0)
        qualified(b, n, n->dead_table, NULL);
    else if (strcmp(key, "R") == 0)
        qualified(b, n, n->table, OSC_PG_SFX_RECOVER);
    else if (strcmp(key, "S") == 0)
        pgw_buf_ident(b, n->schema ? n->schema : "public");
    else if (strcmp(key, "P") == 0)
        pgw_buf_ident(b, n->publication);
    else if (strcmp(key, "SLOT") == 0)
        pgw_buf_literal(b, n->slot ? n->slot : "");
    else if (strcmp(key, "PFX") == 0)
        pgw_buf_literal(b, n->prefix);
    else if (strncmp(key, "I:", 2) == 0) {
        char obj[OSC_PG_NAME_MAX + 1];
        osc_pg_object_name(n->table, key + 2, obj);
        pgw_buf_ident(b, obj);
    } else {
        for (int c = 0; c < PGW_C_COUNT; c++)
            if (strcmp(pgw_col_default[c], key) == 0) {
                pgw_buf_ident(b, n->col[c]);
                return 0;
            }
        /* the shared table's bookkeeping columns keep their names */
        if (!osc_pg_fixed_column(key))
            return -1;
        pgw_buf_ident(b, key);
    }
    return 0;
}

char *pgw_sql_expand(const pgw_names *n, const char *tpl)
{
    pgw_buf b = {0};
    const char *p = tpl;
    while (*p) {
        const char *open = strchr(p, '{');
        if (!open) {
            pgw_buf_add(&b, p);
            break;
        }
        pgw_buf_addn(&b, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        char key[32];
        size_t len = close ? (size_t)(close - open - 1) : 0;
        if (!close || len == 0 || len >= sizeof key) {
            free(b.p);
            return NULL;
        }
        memcpy(key, open + 1, len);
        key[len] = '\0';
        if (placeholder(&b, n, key) != 0) {
            free(b.p);
            return NULL;
        }
        p = close + 1;
    }
    return pgw_buf_take(&b);
}
