/* The operations endpoint: /metrics, /healthz, /readyz (libmicrohttpd). */
#ifndef OBX_CORE_HTTP_H
#define OBX_CORE_HTTP_H

#include <stdbool.h>

#include "buf.h"

typedef struct obx_http_handlers {
    void *ctx;
    /* Append the Prometheus page to out. Called on the HTTP thread. */
    void (*metrics)(void *ctx, obx_buf *out);
    /* True when ready; otherwise append the reasons to why. */
    bool (*ready)(void *ctx, obx_buf *why);
} obx_http_handlers;

typedef struct obx_http obx_http;

/* Listen on "HOST:PORT" ("127.0.0.1:9464", "[::1]:9464", port 0 picks
 * one). Returns NULL with err filled when the address is invalid or
 * cannot be bound. The handlers must outlive the server. */
obx_http *obx_http_start(const char *listen, const obx_http_handlers *h,
                         char *err, size_t errlen);
/* The bound port (useful with port 0). */
unsigned obx_http_port(const obx_http *s);
void obx_http_stop(obx_http *s);

#endif
