/* A TCP proxy for fault tests: sits between the relay and a server
 * (PostgreSQL, RabbitMQ, NATS) on 127.0.0.1 and, on command, cuts every
 * connection (RST), stalls them (keeps the sockets open and forwards
 * nothing, as a half-open link or a dead middlebox does), or slows them.
 * It runs on its own thread in the test process; every function may be
 * called from any thread. */
#ifndef OBX_TEST_TCP_PROXY_H
#define OBX_TEST_TCP_PROXY_H

typedef struct tp_proxy tp_proxy;

typedef enum tp_mode {
    TP_PASS = 0,  /* forward both ways */
    TP_STALL = 1, /* accept, read nothing, forward nothing, close nothing */
    TP_SLOW = 2,  /* forward, with a delay before each chunk */
    /* the server is gone: every open connection is reset and new ones are
     * reset as soon as they are accepted (a crashed server or host, without
     * stopping a server other tests share) */
    TP_DOWN = 3,
} tp_mode;

/* Listen on a free port of 127.0.0.1, forwarding to upstream_host:port.
 * Fails the test when it cannot. */
tp_proxy *tp_start(const char *upstream_host, int upstream_port);

/* The port the relay should connect to. */
int tp_port(const tp_proxy *p);

/* Switch mode for every connection, open and future. For TP_SLOW,
 * delay_ms is the pause before each chunk (at most 4 KiB) forwarded. */
void tp_set_mode(tp_proxy *p, tp_mode mode, int delay_ms);

/* Reset every open connection (SO_LINGER 0: the peers see RST). New ones
 * are accepted as the mode says. Returns how many were cut. */
int tp_cut(tp_proxy *p);

/* Give up on every open connection as a dead link does: each stays open
 * and forwards nothing ever again, in either direction (its peers see no
 * FIN and no RST: only their own timeouts and heartbeats tell them), until
 * the client closes it. New connections are served as the mode says. After
 * a TP_STALL, this is what keeps a client that never noticed the stall
 * from carrying on as if nothing happened. Returns how many. */
int tp_abandon(tp_proxy *p);

/* Forward up_bytes more from the clients to the server (over every
 * connection, in TP_PASS mode), then switch to TP_STALL, dropping the
 * rest of the chunk at hand: a link that dies in the middle of a
 * stream. */
void tp_stall_after(tp_proxy *p, long up_bytes);

/* Bytes forwarded from the clients to the server so far. */
long tp_bytes_up(tp_proxy *p);

/* Connections accepted so far. */
int tp_accepted(const tp_proxy *p);

/* Close everything and join the thread. */
void tp_stop(tp_proxy *p);

#endif
