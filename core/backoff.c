#include "backoff.h"

void obx_rng_seed(obx_rng *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t obx_rng_next(obx_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

int64_t obx_backoff_us(obx_range r, uint32_t attempt, obx_rng *rng)
{
    int64_t lo = r.min_ms * 1000, hi = r.max_ms * 1000;
    if (lo <= 0)
        lo = 1000;
    if (hi < lo)
        hi = lo;
    int64_t ceil = lo;
    for (uint32_t i = 0; i < attempt && ceil < hi; i++)
        ceil *= 2;
    if (ceil > hi)
        ceil = hi;
    uint64_t span = (uint64_t)(ceil - lo) + 1;
    return lo + (int64_t)(obx_rng_next(rng) % span);
}
