#include "template.h"

#include <stdio.h>
#include <string.h>

static const char *const fields[] = {"aggregate_type",
                                     "aggregate_id",
                                     "event_type",
                                     "event_id",
                                     "key",
                                     "topic",
                                     NULL};

static const char *field_value(const obx_event *ev, const char *name,
                               size_t len)
{
    const char *vals[] = {ev->aggregate_type, ev->aggregate_id, ev->event_type,
                          ev->event_id,       ev->key,          ev->topic};
    for (size_t i = 0; fields[i]; i++)
        if (strlen(fields[i]) == len && memcmp(fields[i], name, len) == 0)
            return vals[i] ? vals[i] : "";
    return NULL;
}

size_t obx_template_expand(const char *tpl, const obx_event *ev, char *buf,
                           size_t len)
{
    size_t out = 0;
    for (const char *p = tpl; *p;) {
        const char *val = NULL;
        size_t vlen = 1;
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end) {
                val = field_value(ev, p + 2, (size_t)(end - p - 2));
                if (val) {
                    vlen = strlen(val);
                    for (size_t i = 0; i < vlen; i++, out++)
                        if (out + 1 < len)
                            buf[out] = val[i];
                    p = end + 1;
                    continue;
                }
            }
        }
        if (out + 1 < len)
            buf[out] = *p;
        out++;
        p++;
    }
    if (len > 0)
        buf[out < len ? out : len - 1] = '\0';
    return out;
}

int obx_template_check(const char *tpl, char *err, size_t errlen)
{
    for (const char *p = strstr(tpl, "${"); p; p = strstr(p, "${")) {
        const char *end = strchr(p + 2, '}');
        if (!end) {
            snprintf(err, errlen, "unterminated '${' in template '%s'", tpl);
            return -1;
        }
        size_t n = (size_t)(end - p - 2);
        int known = 0;
        for (size_t i = 0; fields[i]; i++)
            if (strlen(fields[i]) == n && memcmp(fields[i], p + 2, n) == 0)
                known = 1;
        if (!known) {
            snprintf(err, errlen,
                     "unknown field '${%.*s}' in template '%s' (valid: "
                     "aggregate_type, aggregate_id, event_type, event_id, "
                     "key, topic)",
                     (int)n, p + 2, tpl);
            return -1;
        }
        p = end + 1;
    }
    return 0;
}
