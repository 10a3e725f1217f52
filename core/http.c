#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct obx_http {
    struct MHD_Daemon *d;
    obx_http_handlers h;
    unsigned port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
                             const char *type, const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    struct obx_http *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, "text/plain", "method not allowed\n", 19);
    obx_buf b = {0};
    unsigned code = 200;
    const char *type = "text/plain; charset=utf-8";
    if (strcmp(url, "/metrics") == 0) {
        s->h.metrics(s->h.ctx, &b);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (strcmp(url, "/healthz") == 0) {
        obx_buf_printf(&b, "ok\n");
    } else if (strcmp(url, "/readyz") == 0) {
        if (s->h.ready(s->h.ctx, &b))
            obx_buf_printf(&b, "ready\n");
        else
            code = 503;
    } else {
        code = 404;
        obx_buf_printf(&b, "not found; try /metrics, /healthz, /readyz\n");
    }
    if (b.oom) {
        obx_buf_free(&b);
        return reply(c, 500, "text/plain", "out of memory\n", 14);
    }
    enum MHD_Result ret = reply(c, code, type, b.data ? b.data : "", b.len);
    obx_buf_free(&b);
    return ret;
}

/* Parse "host:port" or "[v6]:port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss,
                        char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) {
        snprintf(err, errlen, "metrics_listen '%s': expected HOST:PORT",
                 listen);
        return -1;
    }
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && colon[-1] == ']') {
        listen++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || end == colon + 1) {
        snprintf(err, errlen, "metrics_listen: bad port '%s'", colon + 1);
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        snprintf(err, errlen,
                 "metrics_listen: '%s' is not an IP address (use 127.0.0.1 "
                 "for loopback, 0.0.0.0 to expose on every interface)",
                 host);
        return -1;
    }
    return 0;
}

/* Why MHD could not listen: bind the address ourselves and keep errno
 * (MHD does not report it). 0 when our own bind works. */
static int bind_errno(const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    int e = bind(fd, (const struct sockaddr *)ss, len) == 0 ? 0 : errno;
    close(fd);
    return e;
}

obx_http *obx_http_start(const char *listen, const obx_http_handlers *h,
                         char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (parse_listen(listen, &ss, err, errlen) != 0)
        return NULL;
    obx_http *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->h = *h;
    /* MHD_USE_AUTO: epoll (or poll) rather than select(), which fails
     * once any descriptor of the process is past FD_SETSIZE (a relay with
     * many pipelines and broker connections gets there). In libmicrohttpd
     * since 0.9.52; Debian 12 has 0.9.75. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                            MHD_OPTION_END);
    if (!s->d) {
        int e = bind_errno(&ss);
        snprintf(err, errlen, "metrics_listen %s: cannot listen: %s%s", listen,
                 e ? strerror(e) : "libmicrohttpd refused to start",
                 e == EADDRINUSE
                     ? " (another relay on this host? give each its own: "
                       "metrics_listen = 127.0.0.1:PORT in [relay], :0 for "
                       "any free port, or off)"
                     : "");
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    return s;
}

unsigned obx_http_port(const obx_http *s)
{
    return s->port;
}

void obx_http_stop(obx_http *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}
