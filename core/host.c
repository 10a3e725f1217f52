#include "host.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "template.h"

int64_t obx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t obx_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static obx_host_ctx *ctx_of(const obx_host *h)
{
    return (obx_host_ctx *)h->core;
}

static void host_log(const obx_host *h, obx_log_level level, const char *fmt,
                     ...)
{
    obx_host_ctx *c = ctx_of(h);
    va_list ap;
    va_start(ap, fmt);
    obx_vlog(c->lg, level, c->component, fmt, ap);
    va_end(ap);
}

static int host_log_enabled(const obx_host *h, obx_log_level level)
{
    return level <= ctx_of(h)->lg->level;
}

static size_t host_expand(const obx_host *h, const char *tpl,
                          const obx_event *ev, char *buf, size_t len)
{
    (void)h;
    return obx_template_expand(tpl, ev, buf, len);
}

static void host_gauge_set(const obx_host *h, const char *name, double value)
{
    obx_host_ctx *c = ctx_of(h);
    if (c->gauge)
        c->gauge(c->gauge_sink, h->pipeline, name, value);
}

static int is_secret_key(const char *k, size_t n)
{
    static const char *const words[] = {"password", "passwd", "secret", "token",
                                        NULL};
    char low[64];
    if (n >= sizeof low)
        n = sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)k[i]);
    low[n] = '\0';
    for (size_t i = 0; words[i]; i++)
        if (strstr(low, words[i]))
            return 1;
    return 0;
}

/* Masks "key=value" pairs whose key looks secret, and the password part of
 * URLs ("scheme://user:pass@host"). */
void obx_mask_secrets(const char *in, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t o = 0;
    const char *p = in;
    while (*p && o + 1 < outlen) {
        const char *scheme = strstr(p, "://");
        const char *eq = strchr(p, '=');
        if (scheme && (!eq || scheme < eq)) {
            const char *auth = scheme + 3;
            const char *at = strpbrk(auth, "@/ ");
            const char *colon = strchr(auth, ':');
            if (at && *at == '@' && colon && colon < at) {
                size_t keep = (size_t)(colon + 1 - p);
                for (size_t i = 0; i < keep && o + 1 < outlen; i++)
                    out[o++] = p[i];
                for (const char *m = "***"; *m && o + 1 < outlen; m++)
                    out[o++] = *m;
                p = at;
                continue;
            }
        }
        if (eq) {
            const char *ks = eq;
            while (ks > p && !isspace((unsigned char)ks[-1]) && ks[-1] != '&' &&
                   ks[-1] != '?' && ks[-1] != ';')
                ks--;
            if (is_secret_key(ks, (size_t)(eq - ks))) {
                for (const char *c = p; c <= eq && o + 1 < outlen; c++)
                    out[o++] = *c;
                for (const char *m = "***"; *m && o + 1 < outlen; m++)
                    out[o++] = *m;
                p = eq + 1;
                if (*p == '\'') {
                    const char *q = strchr(p + 1, '\'');
                    p = q ? q + 1 : p + strlen(p);
                } else {
                    while (*p && !isspace((unsigned char)*p) && *p != '&' &&
                           *p != ';')
                        p++;
                }
                continue;
            }
            for (const char *c = p; c <= eq && o + 1 < outlen; c++)
                out[o++] = *c;
            p = eq + 1;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
}

void obx_host_init(obx_host *h, obx_host_ctx *ctx, const char *pipeline)
{
    memset(h, 0, sizeof *h);
    h->abi_major = OBX_ABI_MAJOR;
    h->abi_minor = OBX_ABI_MINOR;
    h->struct_size = sizeof *h;
    h->pipeline = pipeline;
    h->log = host_log;
    h->log_enabled = host_log_enabled;
    h->now_us = obx_now_us;
    h->mono_us = obx_mono_us;
    h->expand = host_expand;
    h->mask = obx_mask_secrets;
    h->gauge_set = host_gauge_set;
    h->core = ctx;
}
