/* The claimed-event list and the default lease owner that the sqlite and
 * pg_poll stores share (stores/common/claimed.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "claimed.h"

static osc_claimed *claimed(uint64_t seq)
{
    osc_claimed *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->ev.pos.seq = seq;
    return e;
}

static void assert_list(osc_claimed *list, const uint64_t *want, size_t n)
{
    size_t i = 0;
    osc_claimed *prev = NULL;
    for (osc_claimed *e = list; e; prev = e, e = e->next, i++) {
        assert_true(i < n);
        assert_int_equal(e->ev.pos.seq, want[i]);
        assert_ptr_equal(e->prev, prev);
    }
    assert_int_equal(i, n);
}

/* Settled from the head, the middle and the tail; the rest stays linked
 * both ways (ASan sees every block freed exactly once). */
static void test_add_and_settle(void **state)
{
    (void)state;
    osc_claimed *list = NULL, *e[5];
    for (uint64_t i = 0; i < 5; i++)
        osc_claimed_add(&list, e[i] = claimed(i));
    assert_null(list->prev);
    assert_list(list, (const uint64_t[]){4, 3, 2, 1, 0}, 5);
    osc_claimed_settle(&list, e[2]);
    assert_list(list, (const uint64_t[]){4, 3, 1, 0}, 4);
    osc_claimed_settle(&list, e[4]);
    assert_list(list, (const uint64_t[]){3, 1, 0}, 3);
    osc_claimed_settle(&list, e[0]);
    assert_list(list, (const uint64_t[]){3, 1}, 2);
    osc_claimed_settle_all(&list);
    assert_null(list);
    osc_claimed_settle_all(&list); /* empty: nothing to do */
    assert_null(list);
}

static void test_lease_owner(void **state)
{
    (void)state;
    char out[320];
    osc_lease_owner("relay-a", out, sizeof out);
    assert_string_equal(out, "relay-a");
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof host), 0);
    char want[320];
    snprintf(want, sizeof want, "%s:%ld", host, (long)getpid());
    osc_lease_owner(NULL, out, sizeof out);
    assert_string_equal(out, want);
    osc_lease_owner("", out, sizeof out);
    assert_string_equal(out, want);
    char small[4];
    osc_lease_owner("relay-a", small, sizeof small);
    assert_string_equal(small, "rel");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_settle),
        cmocka_unit_test(test_lease_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
