/* The cnats connection of a relay publisher: the config checks the option
 * table cannot express, the natsOptions (servers, name, auth, TLS,
 * reconnect) and the masking of secrets in whatever we log or return.
 * Shared by validate and open so `outbox-relay check` refuses exactly
 * what `run` would. */
#ifndef NATSB_CONN_H
#define NATSB_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <nats/nats.h>
#include <outbox/plugin.h>

#include "nats_config.h"

/* Connection callbacks; closure is the same for all. Any may be NULL. They
 * run on cnats' own threads. */
typedef struct natsb_callbacks {
    natsConnectionHandler connected; /* first connect after open */
    natsConnectionHandler disconnected;
    natsConnectionHandler reconnected;
    natsConnectionHandler closed;
    natsErrHandler error; /* slow consumer and other async errors */
    void *closure;
} natsb_callbacks;

/* Check what the option table cannot: servers given as nats:// or tls://
 * URLs, one way to authenticate, a client certificate with its key, an
 * NKey with its seed file, create_stream with a stream and its subjects.
 * OBX_OK or OBX_CONFIG with errstr. */
obx_status natsb_conf_check(const natsb_config *c, char *errstr, size_t errlen);

/* Build the options into *out (caller-owned: natsOptions_Destroy). retry:
 * with true, a server that is down at connect leaves the connection
 * trying in the background (open); with false, connect fails at once
 * (check --connect). Connection name "outbox-relay/<pipeline>". Reconnect
 * forever every reconnect_wait. Errors (masked): OBX_CONFIG, OBX_NOMEM. */
obx_status natsb_opts_build(const obx_host *host, const natsb_config *c,
                            bool retry, const natsb_callbacks *cb,
                            natsOptions **out, char *errstr, size_t errlen);

/* Copy msg to out with the configured password and token replaced by
 * "<secret>" and URL credentials (user:pass@) masked by the host. Always
 * NUL-terminates when outlen > 0. */
void natsb_mask(const obx_host *host, const natsb_config *c, const char *msg,
                char *out, size_t outlen);

/* The servers as one string for messages, credentials masked. */
void natsb_servers_str(const obx_host *host, const natsb_config *c, char *out,
                       size_t outlen);

/* cnats' text for s plus the library's last error detail, masked. */
void natsb_last_error(const obx_host *host, const natsb_config *c, natsStatus s,
                      char *out, size_t outlen);

#endif
