/* The kill loop on one store x broker pair, named on the command line:
 *
 *   chaos_kill STORE RELAYS BROKER      (e.g. chaos_kill pg_poll 3 kafka)
 *
 * OBX_CHAOS_KILLS sets the number of SIGKILLs (default 20; the long form
 * is 100), OBX_CHAOS_SEED repeats a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "chaos.h"

static const char *store_name, *broker_name;
static int relays;

static void test_kill_loop(void **state)
{
    (void)state;
    const char *k = getenv("OBX_CHAOS_KILLS");
    int kills = k && *k ? atoi(k) : 20;
    chaos_store *s = chaos_store_named(store_name, relays);
    chaos_broker *b = chaos_broker_named(broker_name);
    chaos_kill_loop(s, b, kills);
    free(s);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s STORE RELAYS BROKER\n", argv[0]);
        return 2;
    }
    store_name = argv[1];
    relays = atoi(argv[2]);
    broker_name = argv[3];
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill_loop)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
