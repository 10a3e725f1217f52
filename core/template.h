/* Route templates: "outbox.${aggregate_type}" expanded per event. */
#ifndef OBX_CORE_TEMPLATE_H
#define OBX_CORE_TEMPLATE_H

#include <stddef.h>

#include <outbox/event.h>

/* Expand tpl for ev into buf (always NUL-terminated when len > 0).
 * Fields: aggregate_type, aggregate_id, event_type, event_id, key, topic;
 * a NULL field expands to "". Returns the full length needed. */
size_t obx_template_expand(const char *tpl, const obx_event *ev, char *buf,
                           size_t len);

/* Check every ${...} names a known field and is closed. Returns 0, or -1
 * with err naming the offending field. */
int obx_template_check(const char *tpl, char *err, size_t errlen);

#endif
