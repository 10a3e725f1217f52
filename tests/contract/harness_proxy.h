/* For the in-tree harnesses whose plugin talks to a server other tests
 * share (the pg, nats and rabbitmq fixtures): the plugin connects through
 * a TCP proxy of the harness process (tests/support/tcp_proxy.h), and
 * backend_stop/backend_start switch it to TP_DOWN and back, so the server
 * is gone for the plugin alone (every connection reset, new ones refused,
 * as when it crashes) while the server itself keeps running. */
#ifndef OBX_CONTRACT_HARNESS_PROXY_H
#define OBX_CONTRACT_HARNESS_PROXY_H

#include <stddef.h>

/* Start the proxy to 127.0.0.1:port the first time (later calls keep
 * it), and let traffic pass (a failed check may have left it down).
 * Returns the port the plugin should connect to. */
int hp_pass(int port);

/* The number after the last `marker` in s ("port=" in a conninfo, ":" in
 * a URL), or -1 with err filled. */
int hp_port_in(const char *s, const char *marker, char *err, size_t errlen);

/* backend_stop / backend_start of the harness structs. */
int hp_backend_stop(void *ctx, char *err, size_t errlen);
int hp_backend_start(void *ctx, char *err, size_t errlen);

/* Stop the proxy (if started) and turn the kit's count of failed checks
 * into main()'s exit code. */
int hp_exit(int failed);

#endif
