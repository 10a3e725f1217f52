/* What a PostgreSQL error tells a store to do, for pg_poll and pg_wal
 * alike: one mapping, so the two stores never disagree on which errors
 * the engine waits out. No libpq here (the SQLSTATE is a string).
 * Thread-safe (no state). */
#ifndef OSC_PG_STATUS_H
#define OSC_PG_STATUS_H

#include <outbox/status.h>

/* The status for a failed statement's SQLSTATE (five characters, as
 * PQresultErrorField(res, PG_DIAG_SQLSTATE) gives it). OBX_UNAVAILABLE,
 * for the circuit breaker to wait out: no SQLSTATE at all (the
 * connection failed before the server answered), the classes connection
 * (08), authorization (28), rollback (40: serialization, deadlock),
 * resources (53), operator intervention (57: shutdown, cancel) and system
 * (58), plus lock not available (55P03), object in use (55006: a
 * replication slot active elsewhere), read-only transaction (25006: a
 * failover replica) and invalid catalog name (3D000: the database is
 * being created or renamed). Anything else is OBX_FATAL: the statement
 * itself is wrong for this server or table. */
obx_status osc_pg_status_of(const char *sqlstate);

#endif
