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
    int64_t lease_token; /* what proves the lease is ours: the id of the
                            claim (its row in <table>_claims) that took
                            the event */
} osc_claimed;

/* The i-th of the n events a settle call names (they come in arrays of
 * obx_event pointers, obx_release or obx_burial). */
typedef osc_claimed *(*osc_claimed_item_fn)(const void *items, size_t i);

/* Put e (just claimed) at the head of *list. */
void osc_claimed_add(osc_claimed **list, osc_claimed *e);

/* Take e off *list and free it (settled: acked, released or buried). */
void osc_claimed_settle(osc_claimed **list, osc_claimed *e);

/* The claims that settling item(items, 0..n) ends: the lease tokens whose
 * every event still on `live` is among those n, written to done[] (room
 * for n) in the order first seen. Call before the events are settled
 * off the list. Returns how many, or -1 when out of memory. A batch has
 * one token and a settle call rarely spans more than two, so the lists
 * are searched linearly. */
long osc_claimed_ended(const osc_claimed *live, const void *items, size_t n,
                       osc_claimed_item_fn item, int64_t *done);

/* An instance's unsettled claims are rarely more than the one batch out
 * at the broker; past this many, claim_ahead goes past none of them (and
 * claims as claim does). */
#define OSC_AHEAD_MAX_CLAIMS 16

/* The distinct lease tokens of the events on `live` (this instance's
 * unsettled claims) in out[], and how many; 0 when there are more than
 * cap. For claim_ahead, which goes past exactly these claims. */
size_t osc_claimed_tokens(const osc_claimed *live, int64_t *out, size_t cap);

/* Free every event on *list, which becomes empty (at close, after the
 * leases were handed back or left to run out). */
void osc_claimed_settle_all(osc_claimed **list);

/* The owner written with each claim: `configured` when set and not
 * empty, else "<hostname>:<pid>" ("localhost" when the host name cannot
 * be read), so two relays on one table never share a name. Into out
 * (outlen bytes, cut when longer, NUL-terminated when outlen > 0). */
void osc_lease_owner(const char *configured, char *out, size_t outlen);

#endif
