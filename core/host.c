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
