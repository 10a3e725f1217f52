/* Helpers for the broker plugin tests: events, opening a plugin with a
 * hand-filled config struct, reading back and parsing JSON lines. Every
 * failure fails the running cmocka test. */
#ifndef OBX_TEST_BROKER_H
#define OBX_TEST_BROKER_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <outbox/plugin.h>

#include "support.h"

/* An event with the usual fields set from id and key (event_type
 * "OrderCreated", aggregate_type "order", payload {"n":1}); the strings
 * are borrowed from the caller. */
obx_event obx_tb_event(const char *id, const char *key, const char *type);

/* The broker ops of a descriptor (asserting kind and struct sizes). */
const obx_broker_ops *obx_tb_ops(const obx_plugin *p);

/* open() that must succeed; returns the instance. */
void *obx_tb_open(const obx_plugin *p, const void *conf);

/* Publish events[0..n) (an array of events, not pointers); returns the
 * call's status, results in results[0..n). */
obx_status obx_tb_publish(const obx_plugin *p, void *inst, obx_event *events,
                          size_t n, obx_result *results);

/* Fill the plugin's config struct from `broker.`-prefixed (key, value)
 * pairs kv[0..2n) of a [pipeline t] section through the core's option
 * code, as the relay does (defaults, types, ranges). Returns
 * obx_options_fill's 0 / -1 with err filled. Free with obx_options_free. */
int obx_tb_fill(const obx_plugin *p, const char *const *kv, size_t n,
                void *conf, char *err, size_t errlen);

/* The whole file (NUL-terminated; *len without the NUL); caller frees. */
char *obx_tb_slurp(const char *path, size_t *len);

/* Split buf in place at '\n' into at most max lines; returns the count.
 * A final line without '\n' counts too. */
size_t obx_tb_lines(char *buf, char **lines, size_t max);

/* Parse one line that must be exactly one JSON object (jansson rejects
 * invalid UTF-8, so success also proves the line is valid UTF-8). */
json_t *obx_tb_parse(const char *line);

/* Assert obj[field] is the string want (NULL: JSON null). */
void obx_tb_assert_str(json_t *obj, const char *field, const char *want);

#endif
