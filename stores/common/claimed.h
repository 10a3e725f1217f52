/* The events a store has claimed and the engine has not yet settled, for
 * the stores that lease rows (sqlite, pg_poll): one list per instance,
 * so close() can hand their leases back and free them, and the owner
 * name written with each lease. Not thread-safe: a store instance is
 * called by one thread at a time (store.h), and so is its list. */
#ifndef OSC_CLAIMED_H
#define OSC_CLAIMED_H

#include <stddef.h>
#include <stdint.h>

#include <outbox/event.h>

/* A claimed event: the block osc_event_block_new builds with
 * sizeof(osc_claimed) as its head. `ev` comes first so the engine's
 * obx_event pointer is the block. */
typedef struct osc_claimed {
    obx_event ev;
    struct osc_claimed *prev, *next; /* the instance's claimed list */
    int64_t lease_token; /* what proves the lease is ours (sqlite: the
                            claim's locked_until, unix microseconds;
                            pg_poll: the claim's id) */
} osc_claimed;

/* Put e (just claimed) at the head of *list. */
void osc_claimed_add(osc_claimed **list, osc_claimed *e);

/* Take e off *list and free it (settled: acked, released or buried). */
void osc_claimed_settle(osc_claimed **list, osc_claimed *e);

/* Free every event on *list, which becomes empty (at close, after the
 * leases were handed back or left to run out). */
void osc_claimed_settle_all(osc_claimed **list);

/* The lease owner written to locked_by: `configured` when set and not
 * empty, else "<hostname>:<pid>" ("localhost" when the host name cannot
 * be read), so two relays on one table never share a name. Into out
 * (outlen bytes, cut when longer, NUL-terminated when outlen > 0). */
void osc_lease_owner(const char *configured, char *out, size_t outlen);

#endif
