/* The brokers' string map (brokers/common/keyset.c): keys held back
 * within a publish call, topic handles by name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "keyset.h"

static void test_add_has_clear(void **state)
{
    (void)state;
    obc_keyset s = {0};
    assert_false(obc_keyset_has(&s, "a"));
    obc_keyset_clear(&s); /* on an empty set: nothing to do */
    assert_int_equal(obc_keyset_add(&s, "a"), 0);
    assert_int_equal(obc_keyset_add(&s, "a"), 0);
    assert_int_equal(s.n, 1);
    assert_true(obc_keyset_has(&s, "a"));
    assert_false(obc_keyset_has(&s, "b"));
    obc_keyset_clear(&s);
    assert_false(obc_keyset_has(&s, "a"));
    assert_int_equal(obc_keyset_add(&s, "b"), 0);
    assert_true(obc_keyset_has(&s, "b"));
    assert_false(obc_keyset_has(&s, "a"));
    obc_keyset_free(&s);
}

/* Many keys across growth and many clears (generations). */
static void test_growth_and_generations(void **state)
{
    (void)state;
    static char keys[5000][16];
    obc_keyset s = {0};
    for (int round = 0; round < 50; round++) {
        int n = round % 2 ? 5000 : 37;
        for (int i = 0; i < n; i++) {
            snprintf(keys[i], sizeof keys[i], "k%d-%d", round, i);
            assert_int_equal(obc_keyset_put(&s, keys[i], keys[i]), 0);
        }
        assert_int_equal(s.n, (size_t)n);
        for (int i = 0; i < n; i++)
            assert_ptr_equal(obc_keyset_get(&s, keys[i]), keys[i]);
        assert_null(obc_keyset_get(&s, "absent"));
        obc_keyset_clear(&s);
        assert_int_equal(s.n, 0);
    }
    obc_keyset_free(&s);
}

/* Each value is a counter: count the visits. */
static void visit(void *v)
{
    ++*(int *)v;
}

static void test_put_replaces_and_each(void **state)
{
    (void)state;
    obc_keyset s = {0};
    int a = 0, b = 0, c = 0;
    assert_int_equal(obc_keyset_put(&s, "t", &a), 0);
    assert_int_equal(obc_keyset_put(&s, "t", &b), 0);
    assert_int_equal(obc_keyset_put(&s, "u", &c), 0);
    assert_ptr_equal(obc_keyset_get(&s, "t"), &b);
    obc_keyset_each(&s, visit);
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(c, 1);
    obc_keyset_free(&s);
    obc_keyset_each(&s, visit);
    assert_int_equal(b + c, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_has_clear),
        cmocka_unit_test(test_growth_and_generations),
        cmocka_unit_test(test_put_replaces_and_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
