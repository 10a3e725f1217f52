/* The writer-facing column map of an outbox table: `store.column.<name> =
 * <real name>` renames a logical column. Shared by the SQL stores, which
 * keep their own table of logical names and their own identifier rules. */
#ifndef OSC_STORE_COLUMNS_H
#define OSC_STORE_COLUMNS_H

#include <stdbool.h>
#include <stddef.h>

#include <outbox/options.h>

/* The index of `name` among the first `limit` entries of `defaults`, or -1.
 * Exact (case-sensitive) match: these are the relay's logical names. */
int osc_columns_lookup(const char *const *defaults, int limit,
                       const char *name);

/* How one store checks real names. */
typedef struct osc_columns_rules {
    /* The first n_mappable logical columns may be renamed; the rest are
     * bookkeeping columns that belong to the relay. */
    int n_mappable;
    /* Longest real name the database keeps whole (0: no limit), and the
     * database named in the message when a name is longer. */
    size_t name_max;
    const char *name_max_db;
    /* Whether the database compares identifiers case-insensitively
     * (ASCII), so two names differing only in case would collide. */
    bool fold_case;
} osc_columns_rules;

/* Fill col[0..n_cols) with `defaults`, then apply every entry of `map`.
 * Rejects an unknown or repeated name, an empty real name, one longer than
 * rules->name_max, and two logical columns mapped to one real name, with a
 * message naming the option (and its config line). The pointers in col are
 * borrowed from `defaults` and `map`, which must outlive it. Returns 0, or
 * -1 with err filled (col is then partly filled and should be dropped). */
int osc_columns_map(const char **col, const char *const *defaults, int n_cols,
                    const obx_kvlist *map, const osc_columns_rules *rules,
                    char *err, size_t errlen);

#endif
