/* Backoff schedule and jitter bounds; the key set behind per-key holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "backoff.h"
#include "keyset.h"

static void test_backoff_bounds_per_attempt(void **state)
{
    obx_range r = {100, 60000}; /* 100ms..60s */
    obx_rng rng;
    obx_rng_seed(&rng, 42);
    for (uint32_t attempt = 0; attempt < 20; attempt++) {
        int64_t ceil = 100000;
        for (uint32_t i = 0; i < attempt && ceil < 60000000; i++)
            ceil *= 2;
        if (ceil > 60000000)
            ceil = 60000000;
        int64_t lo = INT64_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            int64_t d = obx_backoff_us(r, attempt, &rng);
            assert_true(d >= 100000);
            assert_true(d <= ceil);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Full jitter: the draws spread over the window, not a fixed step. */
        if (ceil > 100000) {
            assert_true(lo < 100000 + (ceil - 100000) / 10);
            assert_true(hi > ceil - (ceil - 100000) / 10);
        }
    }
}

static void test_backoff_mean_grows_then_caps(void **state)
{
    obx_range r = {10, 1000};
    obx_rng rng;
    obx_rng_seed(&rng, 7);
    double prev = 0;
    for (uint32_t attempt = 0; attempt < 12; attempt++) {
        double sum = 0;
        for (int i = 0; i < 4000; i++)
            sum += (double)obx_backoff_us(r, attempt, &rng);
        double mean = sum / 4000;
        if (attempt > 0 && attempt < 7)
            assert_true(mean > prev * 1.3); /* exponential below the cap */
        if (attempt >= 8)
            assert_true(mean > 450000 && mean < 550000); /* U[10ms,1s] */
        prev = mean;
    }
}

static void test_backoff_same_seed_same_schedule(void **state)
{
    obx_range r = {100, 60000};
    obx_rng a, b;
    obx_rng_seed(&a, 99);
    obx_rng_seed(&b, 99);
    for (uint32_t i = 0; i < 50; i++)
        assert_int_equal(obx_backoff_us(r, i, &a), obx_backoff_us(r, i, &b));
}

static void test_keyset_put_get_del_grow(void **state)
{
    obx_keyset ks;
    obx_keyset_init(&ks);
    char k[32], h[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        snprintf(h, sizeof h, "ev-%d", i);
        assert_int_equal(obx_keyset_put(&ks, k, h, i), 0);
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(k, sizeof k, "key-%d", i);
        obx_keyset_del(&ks, k);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        obx_keyset_entry *e = obx_keyset_get(&ks, k);
        if (i % 2 == 0) {
            assert_null(e);
        } else {
            assert_non_null(e);
            snprintf(h, sizeof h, "ev-%d", i);
            assert_string_equal(e->holder, h);
            assert_int_equal(e->until_us, i);
        }
    }
    assert_int_equal(ks.live, 2500);
    obx_keyset_put(&ks, "key-1", "other", 5);
    assert_string_equal(obx_keyset_get(&ks, "key-1")->holder, "other");
    assert_int_equal(ks.live, 2500);
    obx_keyset_clear(&ks);
    assert_null(obx_keyset_get(&ks, "key-1"));
    obx_keyset_free(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds_per_attempt),
        cmocka_unit_test(test_backoff_mean_grows_then_caps),
        cmocka_unit_test(test_backoff_same_seed_same_schedule),
        cmocka_unit_test(test_keyset_put_get_del_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
