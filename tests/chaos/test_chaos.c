/* One chaos run: a store x broker pair under a fault schedule, named on
 * the command line:
 *
 *   chaos STORE RELAYS BROKER [SCHEDULE]
 *   chaos pg_poll 3 kafka                      (the kill loop)
 *   chaos sqlite 1 rabbitmq cold-start,broker-down
 *   chaos pg_wal 2 nats cut:store,stall:broker:20s
 *
 * SCHEDULE is described in chaos.h (default "kill"). OBX_CHAOS_KILLS sets
 * the number of SIGKILLs of a kill step (default 20; the long form is
 * 100), OBX_CHAOS_OUTAGE the length of every outage (the long form: 30s),
 * OBX_CHAOS_SEED repeats a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "chaos.h"

static const char *store_name, *broker_name, *spec = "kill";
static int relays;
static chaos_store *store;
static chaos_broker *broker;

static void test_chaos(void **state)
{
    (void)state;
    chaos_schedule sch;
    chaos_schedule_parse(spec, &sch);
    store = chaos_store_named(store_name, relays);
    broker = chaos_broker_named(broker_name);
    chaos_run_schedule(store, broker, &sch);
}

/* A run that failed half-way (an adapter could not stop its server, say)
 * still stops its relays, proxies and servers. */
static int teardown(void **state)
{
    (void)state;
    chaos_cleanup();
    free(store);
    free(broker);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s STORE RELAYS BROKER [SCHEDULE]\n", argv[0]);
        return 2;
    }
    store_name = argv[1];
    relays = atoi(argv[2]);
    broker_name = argv[3];
    if (argc == 5)
        spec = argv[4];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_chaos, teardown)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
