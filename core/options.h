/* Typed options: validate entries against an obx_option table and fill a
 * config struct. Shared by the core's own settings and every plugin. */
#ifndef OBX_CORE_OPTIONS_H
#define OBX_CORE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <outbox/options.h>

#include "config.h"

/* A view of an option table: rows are `stride` bytes apart (the plugin's
 * sizeof(obx_option), so tables from other ABI minors still walk right). */
typedef struct obx_optable {
    const obx_option *rows;
    size_t stride;
} obx_optable;

/* Row i, or NULL past the end. */
const obx_option *obx_optable_row(obx_optable t, size_t i);

/* Fill `conf` (config_size bytes, zeroed by the caller) from entries whose
 * keys start with `keyprefix` ("store.", "broker.", or "" for all); the
 * prefix is stripped before matching the table and kept in messages.
 * Entries without the prefix are ignored. Defaults apply to absent keys.
 * Errors (first one wins): unknown key (with "did you mean 'x'?" when one
 * is close), bad value for the type, out of range, enum value not in the
 * list (the list is named), missing required key. Messages read
 * "FILE:LINE: [section] key 'K': problem" (missing keys name the section
 * line). On error everything allocated into conf is freed. Returns 0/-1. */
int obx_options_fill(obx_optable t, const char *file,
                     const obx_conf_section *sec, const char *keyprefix,
                     void *conf, char *err, size_t errlen);

/* Free what obx_options_fill allocated into conf (strings, lists). */
void obx_options_free(obx_optable t, void *conf);

/* Is `key` (prefix already stripped) a secret per the table? */
bool obx_options_is_secret(obx_optable t, const char *key);

/* Print one block per option: name, type, default, flags, range, enum
 * values, description; `keyprefix` is shown before each name. */
void obx_options_help(FILE *out, obx_optable t, const char *keyprefix);

/* Value parsers, exposed for the core's own use and tests. 0 or -1. */
int obx_parse_duration_ms(const char *s, int64_t *ms);
int obx_parse_size_bytes(const char *s, int64_t *bytes);
int obx_parse_bool(const char *s, bool *b);
int obx_parse_int(const char *s, int64_t *v);
int obx_parse_range_ms(const char *s, int64_t *min_ms, int64_t *max_ms);

/* The candidate closest to `word` by edit distance when it is close enough
 * to be a likely typo, else NULL. `cands` is NULL-terminated. */
const char *obx_did_you_mean(const char *word, const char *const *cands);

#endif
