/* Exponential backoff with full jitter, and the small PRNG behind it. */
#ifndef OBX_CORE_BACKOFF_H
#define OBX_CORE_BACKOFF_H

#include <stdint.h>

#include <outbox/options.h>

/* xorshift64* state; seed with anything but 0. One per pipeline thread. */
typedef struct obx_rng {
    uint64_t s;
} obx_rng;

void obx_rng_seed(obx_rng *r, uint64_t seed);
uint64_t obx_rng_next(obx_rng *r);

/* Delay before retry number `attempt` (1 = first retry), in microseconds:
 * uniform in [min, ceil] where ceil = min(max, min * 2^attempt). Full jitter
 * spreads a herd of failed events; the floor keeps retries from spinning. */
int64_t obx_backoff_us(obx_range r, uint32_t attempt, obx_rng *rng);

#endif
