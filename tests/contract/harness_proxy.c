#include "harness_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcp_proxy.h"

static tp_proxy *proxy;

int hp_pass(int port)
{
    if (!proxy)
        proxy = tp_start("127.0.0.1", port);
    tp_set_mode(proxy, TP_PASS, 0);
    return tp_port(proxy);
}

int hp_port_in(const char *s, const char *marker, char *err, size_t errlen)
{
    const char *p = NULL;
    for (const char *q = strstr(s, marker); q; q = strstr(q + 1, marker))
        p = q;
    int port = p ? atoi(p + strlen(marker)) : 0;
    if (port <= 0) {
        snprintf(err, errlen, "no port after '%s' in %s", marker, s);
        return -1;
    }
    return port;
}

int hp_backend_stop(void *ctx, char *err, size_t errlen)
{
    tp_set_mode(proxy, TP_DOWN, 0);
    return 0;
}

int hp_backend_start(void *ctx, char *err, size_t errlen)
{
    tp_set_mode(proxy, TP_PASS, 0);
    return 0;
}

int hp_exit(int failed)
{
    if (proxy)
        tp_stop(proxy);
    proxy = NULL;
    return failed ? 1 : 0;
}
