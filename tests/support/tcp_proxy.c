#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define TP_MAX_CONNS 64
#define TP_CHUNK 4096

typedef struct tp_conn {
    int down, up; /* client side, server side; -1 when unused */
    bool dead;    /* abandoned: never forwards again (tp_abandon) */
} tp_conn;

struct tp_proxy {
    int listen_fd;
    int port;
    struct sockaddr_in upstream;
    pthread_t thread;
    pthread_mutex_t mu;
    tp_conn conns[TP_MAX_CONNS];
    atomic_int mode, delay_ms, stop, accepted;
    /* client-to-server bytes forwarded so far; bytes still allowed before
     * the proxy stalls (tp_stall_after), -1: no limit. Changed under mu. */
    long up_bytes, up_budget;
    int wake[2]; /* self-pipe: mode changes and cuts wake the poll */
};

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void drop(tp_conn *c, bool rst)
{
    if (c->down >= 0)
        rst ? reset_close(c->down) : (void)close(c->down);
    if (c->up >= 0)
        rst ? reset_close(c->up) : (void)close(c->up);
    c->down = c->up = -1;
    c->dead = false;
}

static void accept_one(tp_proxy *p)
{
    int fd = accept(p->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    if (atomic_load(&p->mode) == TP_DOWN) {
        reset_close(fd);
        return;
    }
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up < 0 ||
        connect(up, (struct sockaddr *)&p->upstream, sizeof p->upstream) != 0) {
        if (up >= 0)
            close(up);
        reset_close(fd); /* upstream down: the client sees it refused */
        return;
    }
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < TP_MAX_CONNS; i++)
        if (p->conns[i].down < 0) {
            p->conns[i] = (tp_conn){fd, up, false};
            atomic_fetch_add(&p->accepted, 1);
            pthread_mutex_unlock(&p->mu);
            return;
        }
    pthread_mutex_unlock(&p->mu);
    close(up);
    reset_close(fd);
}

/* Forward one chunk from -> to (up: client to server); false when the
 * connection is over. Called under mu. */
static bool pump(tp_proxy *p, int from, int to, bool up)
{
    char buf[TP_CHUNK];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    if (up && p->up_budget >= 0) {
        /* the link dies here: the rest of the chunk never arrives */
        if (n >= p->up_budget) {
            n = p->up_budget;
            atomic_store(&p->mode, TP_STALL);
        }
        p->up_budget -= n;
    }
    if (up)
        p->up_bytes += n;
    int delay =
        atomic_load(&p->mode) == TP_SLOW ? atomic_load(&p->delay_ms) : 0;
    if (delay > 0) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *proxy_main(void *arg)
{
    tp_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[2 + 2 * TP_MAX_CONNS];
        int idx[2 + 2 * TP_MAX_CONNS];
        int n = 0;
        fds[n++] = (struct pollfd){p->listen_fd, POLLIN, 0};
        fds[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
        bool stalled = atomic_load(&p->mode) == TP_STALL;
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < TP_MAX_CONNS; i++) {
            if (p->conns[i].down < 0)
                continue;
            if (p->conns[i].dead) {
                /* read nothing; only notice the client giving up (its FIN
                 * or RST), to free the slot */
                idx[n] = i;
                fds[n++] = (struct pollfd){p->conns[i].down, POLLRDHUP, 0};
                continue;
            }
            if (stalled)
                continue;
            idx[n] = i;
            fds[n++] = (struct pollfd){p->conns[i].down, POLLIN, 0};
            idx[n] = i;
            fds[n++] = (struct pollfd){p->conns[i].up, POLLIN, 0};
        }
        pthread_mutex_unlock(&p->mu);
        if (poll(fds, (nfds_t)n, 200) <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            accept_one(p);
        if (fds[1].revents & POLLIN) {
            char b[64];
            (void)!read(p->wake[0], b, sizeof b);
        }
        for (int k = 2; k < n; k++) {
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)))
                continue;
            pthread_mutex_lock(&p->mu);
            tp_conn *c = &p->conns[idx[k]];
            if (c->dead && c->down == fds[k].fd) {
                drop(c, false);
            } else if (!c->dead && atomic_load(&p->mode) != TP_STALL &&
                       (c->down == fds[k].fd || c->up == fds[k].fd)) {
                bool up = fds[k].fd == c->down;
                if (!pump(p, fds[k].fd, up ? c->up : c->down, up))
                    drop(c, false);
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

tp_proxy *tp_start(const char *upstream_host, int upstream_port)
{
    tp_proxy *p = calloc(1, sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < TP_MAX_CONNS; i++)
        p->conns[i].down = p->conns[i].up = -1;
    p->up_budget = -1;
    pthread_mutex_init(&p->mu, NULL);
    p->upstream.sin_family = AF_INET;
    p->upstream.sin_port = htons((uint16_t)upstream_port);
    if (inet_pton(AF_INET, upstream_host, &p->upstream.sin_addr) != 1)
        fail_msg("tp_start: '%s' is not an IPv4 address", upstream_host);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, len) ||
        listen(p->listen_fd, 64) ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &len))
        fail_msg("tp_start: cannot listen: %s", strerror(errno));
    p->port = ntohs(a.sin_port);
    if (pipe(p->wake) != 0)
        fail_msg("tp_start: pipe: %s", strerror(errno));
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0)
        fail_msg("tp_start: no thread");
    return p;
}

int tp_port(const tp_proxy *p)
{
    return p->port;
}

static void wake(tp_proxy *p)
{
    (void)!write(p->wake[1], "x", 1);
}

void tp_set_mode(tp_proxy *p, tp_mode mode, int delay_ms)
{
    atomic_store(&p->delay_ms, delay_ms);
    atomic_store(&p->mode, (int)mode);
    if (mode == TP_DOWN)
        tp_cut(p);
    wake(p);
}

int tp_cut(tp_proxy *p)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < TP_MAX_CONNS; i++)
        if (p->conns[i].down >= 0) {
            drop(&p->conns[i], true);
            n++;
        }
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return n;
}

int tp_abandon(tp_proxy *p)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < TP_MAX_CONNS; i++)
        if (p->conns[i].down >= 0 && !p->conns[i].dead) {
            p->conns[i].dead = true;
            n++;
        }
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return n;
}

void tp_stall_after(tp_proxy *p, long up_bytes)
{
    pthread_mutex_lock(&p->mu);
    p->up_budget = up_bytes;
    pthread_mutex_unlock(&p->mu);
}

long tp_bytes_up(tp_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    long n = p->up_bytes;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int tp_accepted(const tp_proxy *p)
{
    return atomic_load(&p->accepted);
}

void tp_stop(tp_proxy *p)
{
    atomic_store(&p->stop, 1);
    wake(p);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < TP_MAX_CONNS; i++)
        drop(&p->conns[i], false);
    close(p->listen_fd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
