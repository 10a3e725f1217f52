/* The core's implementation of the obx_host API handed to plugins. */
#ifndef OBX_CORE_HOST_H
#define OBX_CORE_HOST_H

#include <outbox/host.h>
#include <outbox/version.h>

#include "log.h"

/* Where a plugin's gauges go (the metrics registry, or nothing). */
typedef void (*obx_gauge_sink)(void *sink, const char *pipeline,
                               const char *name, double value);

typedef struct obx_host_ctx {
    obx_logger *lg;
    char component[96]; /* "orders/sqlite": prefixes the plugin's log lines */
    obx_gauge_sink gauge;
    void *gauge_sink;
} obx_host_ctx;

/* Fill *h for one plugin instance. ctx and pipeline must outlive h. */
void obx_host_init(obx_host *h, obx_host_ctx *ctx, const char *pipeline);

/* Copy in to out masking secrets: password=..., pass in user:pass@host,
 * and values of keys named like secrets. Always NUL-terminates. */
void obx_mask_secrets(const char *in, char *out, size_t outlen);

int64_t obx_now_us(void);
int64_t obx_mono_us(void);

#endif
