#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void obx_notify_init(obx_notify *n, const char **why)
{
    memset(n, 0, sizeof *n);
    n->fd = -1;
    *why = NULL;
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return;
    size_t len = strlen(sock);
    if ((sock[0] != '/' && sock[0] != '@') || len >= sizeof n->path) {
        *why = "NOTIFY_SOCKET is not an absolute or abstract socket path";
        return;
    }
    memcpy(n->path, sock, len);
    if (sock[0] == '@')
        n->path[0] = '\0'; /* abstract namespace */
    n->path_len = (unsigned)len;
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        *why = "cannot create the notify socket";
        return;
    }
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    bool ours = !pid || !*pid || strtol(pid, NULL, 10) == (long)getpid();
    if (usec && *usec && ours)
        n->watchdog_us = strtoll(usec, NULL, 10);
}

bool obx_notify_enabled(const obx_notify *n)
{
    return n->fd >= 0;
}

void obx_notify_send(obx_notify *n, const char *msg)
{
    if (n->fd < 0)
        return;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, n->path, n->path_len);
    socklen_t alen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->path_len);
    while (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL,
                  (const struct sockaddr *)&a, alen) < 0 &&
           errno == EINTR)
        ;
}

void obx_notify_close(obx_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
