/* TCP_NODELAY on the sockets librdkafka's mock cluster accepts.
 *
 * The mock (librdkafka 2.0.2) leaves Nagle's algorithm on for its broker
 * connections, so a response written in two pieces waits for the client's
 * delayed ACK: about 40 ms per request whenever only one request is in
 * flight, which is exactly what a synchronous publish(batch) does. Apache
 * Kafka sets TCP_NODELAY on every connection; this makes the mock do the
 * same. Linked into the programs that host a mock cluster (tests,
 * mock_cluster, used by bench/run too); these definitions take precedence over
 * the C library's for the whole process. The plugin has nothing like it. */
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static int with_nodelay(int fd)
{
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    accept_fn real = (accept_fn)dlsym(RTLD_NEXT, "accept");
    return real ? with_nodelay(real(fd, addr, len)) : -1;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    accept4_fn real = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
    return real ? with_nodelay(real(fd, addr, len, flags)) : -1;
}
