/* The config file as written: sections and key = value entries with their
 * line numbers, parsed by libinih. Typed validation happens later against
 * option tables (options.h, settings.h), so every error can name file:line.
 */
#ifndef OBX_CORE_CONFIG_H
#define OBX_CORE_CONFIG_H

#include <stddef.h>

typedef struct obx_conf_entry {
    char *key;   /* as written, lower-case not enforced */
    char *value; /* ${env:NAME} already expanded; ${field} kept */
    int line;
} obx_conf_entry;

typedef enum obx_section_kind {
    OBX_SECTION_RELAY = 1,    /* [relay] */
    OBX_SECTION_PIPELINE = 2, /* [pipeline NAME] */
} obx_section_kind;

typedef struct obx_conf_section {
    obx_section_kind kind;
    char *name; /* pipeline name; "relay" for [relay] */
    int line;
    obx_conf_entry *entries;
    size_t n_entries;
} obx_conf_section;

typedef struct obx_conf_file {
    char *path;
    obx_conf_section *sections; /* in file order; at most one relay section */
    size_t n_sections;
} obx_conf_file;

/* Parse `path` into *out. Rejects: unreadable file, syntax errors, unknown
 * section kinds, [pipeline] without a name or with a duplicate name, a key
 * set twice in one section, a key outside any section, ${env:NAME} for an
 * unset variable, an unterminated ${. Errors read "FILE:LINE: message".
 * Returns 0, or -1 with err filled; *out is then empty. Free with
 * obx_conf_free(). */
int obx_conf_load(const char *path, obx_conf_file *out, char *err,
                  size_t errlen);

/* As obx_conf_load, from a string; `name` is used as the file name in
 * errors (tests, fuzzing). */
int obx_conf_parse(const char *name, const char *text, obx_conf_file *out,
                   char *err, size_t errlen);

void obx_conf_free(obx_conf_file *cf);

/* First [relay] section, or NULL. */
const obx_conf_section *obx_conf_relay(const obx_conf_file *cf);

#endif
