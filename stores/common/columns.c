#include "columns.h"

#include <string.h>
#include <strings.h>

#include "store_err.h"

int osc_columns_lookup(const char *const *defaults, int limit, const char *name)
{
    for (int c = 0; c < limit; c++)
        if (strcmp(defaults[c], name) == 0)
            return c;
    return -1;
}

static int osc_columns_apply(const char **col, const char *const *defaults,
                             const obx_kv *kv, const osc_columns_rules *rules,
                             char *err, size_t errlen)
{
    int c = osc_columns_lookup(defaults, rules->n_mappable, kv->name);
    if (c < 0) {
        osc_store_errf(
            err, errlen, kv->line,
            "store.column.%s: unknown column '%s'; valid: id, event_id, "
            "aggregate_type, aggregate_id, event_type, payload, topic, "
            "headers, created_at (bookkeeping columns keep their names)",
            kv->name, kv->name);
        return -1;
    }
    /* Still pointing at the default string means not yet renamed: a second
     * entry for one column is a config mistake, not an override. */
    if (col[c] != defaults[c]) {
        osc_store_errf(err, errlen, kv->line, "store.column.%s: set twice",
                       kv->name);
        return -1;
    }
    if (!kv->value || !kv->value[0]) {
        osc_store_errf(err, errlen, kv->line,
                       "store.column.%s: empty column name", kv->name);
        return -1;
    }
    if (rules->name_max && strlen(kv->value) > rules->name_max) {
        osc_store_errf(err, errlen, kv->line,
                       "store.column.%s: '%s' is longer than %zu bytes (%s "
                       "would cut it)",
                       kv->name, kv->value, rules->name_max,
                       rules->name_max_db);
        return -1;
    }
    col[c] = kv->value;
    return 0;
}

static int osc_columns_distinct(const char **col, const char *const *defaults,
                                int n_cols, bool fold_case, char *err,
                                size_t errlen)
{
    for (int a = 0; a < n_cols; a++)
        for (int b = a + 1; b < n_cols; b++) {
            int same = fold_case ? strcasecmp(col[a], col[b]) == 0
                                 : strcmp(col[a], col[b]) == 0;
            if (same) {
                osc_store_errf(
                    err, errlen, 0,
                    "store.column: columns '%s' and '%s' both map to '%s'",
                    defaults[a], defaults[b], col[a]);
                return -1;
            }
        }
    return 0;
}

int osc_columns_map(const char **col, const char *const *defaults, int n_cols,
                    const obx_kvlist *map, const osc_columns_rules *rules,
                    char *err, size_t errlen)
{
    for (int c = 0; c < n_cols; c++)
        col[c] = defaults[c];
    for (size_t i = 0; i < map->n; i++)
        if (osc_columns_apply(col, defaults, &map->items[i], rules, err,
                              errlen) != 0)
            return -1;
    return osc_columns_distinct(col, defaults, n_cols, rules->fold_case, err,
                                errlen);
}
