/* The conninfo's password, for pg_poll and pg_wal alike: parsed out of
 * the connection string once, scrubbed from every message a store prints
 * (server errors quote what they like), and a masked copy of the
 * conninfo to name the server by. Thread-safe (no state; host->mask is
 * thread-safe). */
#ifndef OSC_PG_SECRET_H
#define OSC_PG_SECRET_H

#include <stddef.h>

#include <outbox/host.h>
#include <outbox/status.h>

/* Parse `conninfo` (NULL: "", libpq's defaults). On OBX_OK *secret is a
 * malloc'd copy of its password (NULL when it has none; free it with
 * osc_pg_secret_free) and target holds the conninfo with passwords
 * masked, or "(libpq defaults)". OBX_CONFIG when libpq cannot parse it:
 * errstr says why, prefixed "store.conninfo: ", with every quoted piece
 * of the string that may be a piece of a password masked. OBX_NOMEM when
 * memory runs out. */
obx_status osc_pg_conninfo(const obx_host *host, const char *conninfo,
                           char **secret, char *target, size_t targetlen,
                           char *errstr, size_t errlen);

/* Copy `in` (NULL: "") to out (outlen bytes, NUL-terminated when
 * outlen > 0) with passwords masked: host->mask's conninfo pairs and
 * URLs, and `secret` (may be NULL) wherever it appears when it has 3
 * bytes or more. Newlines and tabs become single spaces (libpq's
 * messages span lines; a log line is one line) and trailing spaces go. */
void osc_pg_scrub(const obx_host *host, const char *secret, const char *in,
                  char *out, size_t outlen);

/* A server notice ("relation ... already exists, skipping"), scrubbed,
 * to the debug log as "<store>: server says: ..." instead of libpq's
 * default, stderr. For a notice processor (PQsetNoticeProcessor); cheap
 * when debug logging is off. */
void osc_pg_notice(const obx_host *host, const char *secret, const char *store,
                   const char *message);

/* Wipe and free a secret from osc_pg_conninfo; NULL is fine. */
void osc_pg_secret_free(char *secret);

#endif
