/* Journal of the fake store, read by engine tests through dlsym. */
#ifndef OBX_TEST_FAKE_STORE_H
#define OBX_TEST_FAKE_STORE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum fake_state {
    FAKE_PENDING = 0,
    FAKE_CLAIMED,
    FAKE_PUBLISHED,
    FAKE_DEAD
} fake_state;

typedef struct fake_row {
    fake_state state;
    uint32_t attempts;
    int64_t next_at_us;
    uint32_t counted_releases;
    uint32_t uncounted_releases;
    uint32_t publishes; /* acks */
    char reason[320];
} fake_row;

/* What the test can see of an open instance. */
typedef struct fake_view {
    fake_row *rows; /* index = event sequence number */
    uint64_t n;
    uint64_t claims, unavailable_claims, acks;
    uint64_t empty_nowait_claims; /* claims with wait_ms 0 that found none */
    uint64_t ahead_claims;        /* calls of claim_ahead (fake_ordered) */
    uint64_t max_claimed; /* most rows claimed and unsettled at once (set
                             and read with __atomic: the test polls it) */
} fake_view;

typedef const fake_view *(*fake_view_fn)(void *inst);
#define FAKE_VIEW_SYMBOL "obx_fake_store_view"
/* The journal of the instance closed last (no argument). */
typedef const fake_view *(*fake_closed_view_fn)(void);
#define FAKE_CLOSED_VIEW_SYMBOL "obx_fake_store_closed_view"

#endif
