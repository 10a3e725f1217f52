/* Faults of a real RabbitMQ under a running relay (sqlite -> rabbitmq):
 * the node stopped for 20 s and started again, every connection closed by
 * an operator, a memory alarm that blocks publishers. Each must end with
 * every event delivered (duplicates allowed: they carry their event id),
 * none dead-lettered, no attempt counted, the relay recovering by itself.
 *
 * These tests break the server for everyone on it, so the group starts a
 * RabbitMQ of its own (rmq_start.sh in a temp dir) instead of the
 * fixture's; it fails, never skips, when that server cannot start. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "rmq_relay.h"
#include "support.h"

#define KEYS 20

typedef struct server {
    char *dir;
    char url[512];
    int tests;
} server;

typedef struct fx {
    server *s;
    rmqr *r;
    int next; /* next seq to insert */
} fx;

static int group_setup(void **state)
{
    server *s = calloc(1, sizeof *s);
    s->dir = obx_test_tmpdir();
    snprintf(s->url, sizeof s->url, "%s", rmqt_server_start(s->dir));
    *state = s;
    return 0;
}

static int group_teardown(void **state)
{
    server *s = *state;
    rmqt_server_stop(s->dir);
    obx_test_rmtree(s->dir);
    free(s->dir);
    free(s);
    return 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->s = *state;
    char q[64];
    snprintf(q, sizeof q, "obx-fault-%d", ++f->s->tests);
    f->r = rmqr_new(f->s->url, q);
    rmqr_create_schema(f->r);
    /* probes often, so recovery is seen soon after the server is back */
    rmqr_write_conf(f->r, "broker.reconnect_backoff = 100ms..1s\n"
                          "broker.heartbeat = 5s\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rmqr_free(f->r);
    free(f);
    return 0;
}

static void insert(fx *f, int n)
{
    rmqr_insert(f->r, f->next, n, KEYS);
    f->next += n;
}

static long long published(fx *f)
{
    return rmqr_sql_int(f->r, "SELECT count(*) FROM outbox WHERE "
                              "published_at IS NOT NULL");
}

static void wait_published(fx *f, long long n, int timeout_ms)
{
    int64_t end = rmqt_now_ms() + timeout_ms;
    while (published(f) < n) {
        rmqr_assert_running(f->r);
        if (rmqt_now_ms() > end)
            rmqr_fail_with_log(f->r, "events not published in time");
        sleep_ms(50);
    }
}

/* Every seq 0..next-1 at least once in the queue, in key order for the
 * first copy of each; returns the number of duplicates. Nothing dead,
 * no attempt counted. */
static size_t check_no_loss(fx *f)
{
    rmqr *r = f->r;
    int n = f->next;
    assert_int_equal(rmqr_sql_int(r, "SELECT count(*) FROM outbox WHERE "
                                     "dead_at IS NOT NULL"),
                     0);
    rmqr_assert_no_attempts(r);
    assert_int_equal(published(f), n);
    rmqt_msgs m = rmqt_consume(r->url, r->queue, (size_t)n, 1000, 60000);
    int *seen = calloc((size_t)n, sizeof *seen);
    long last[KEYS];
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    size_t dups = 0;
    for (size_t i = 0; i < m.n; i++) {
        long seq = rmqt_seq(&m.items[i]);
        assert_true(seq >= 0 && seq < n);
        if (seen[seq]++) {
            dups++;
            continue;
        }
        /* a first copy never overtakes an earlier event of its key */
        if (seq < last[seq % KEYS])
            fail_msg("key o%ld: seq %ld first seen after %ld", seq % KEYS, seq,
                     last[seq % KEYS]);
        last[seq % KEYS] = seq;
    }
    for (int s = 0; s < n; s++)
        if (!seen[s])
            fail_msg("seq %d lost (%zu messages read)", s, m.n);
    free(seen);
    rmqt_msgs_free(&m);
    return dups;
}

/* Keep writing while fn's fault runs (a child process), until it ends. */
static void write_while(fx *f, pid_t child, int timeout_ms)
{
    int64_t end = rmqt_now_ms() + timeout_ms;
    for (;;) {
        insert(f, 50);
        sleep_ms(200);
        int rc = rmqr_exited(child);
        if (rc >= 0) {
            assert_int_equal(rc, 0);
            return;
        }
        if (rmqt_now_ms() > end)
            fail_msg("the fault did not end in time");
    }
}

static pid_t ctl_async(fx *f, const char *a, const char *b)
{
    char *argv[] = {"/bin/bash", OBX_SOURCE_DIR "/tests/rabbitmq/rmq_ctl.sh",
                    f->s->dir,   (char *)a,
                    (char *)b,   NULL};
    return proc_start(argv, NULL, NULL);
}

static void test_node_stopped_20s_then_back(void **state)
{
    fx *f = *state;
    insert(f, 2000);
    rmqr_start(f->r);
    wait_published(f, 500, 30000);
    pid_t child = ctl_async(f, "restart", "20");
    write_while(f, child, 120000);
    insert(f, 500);
    rmqr_wait_settled(f->r, 60000);
    rmqr_stop(f->r);
    if (!rmqr_file_has(f->r->err, "circuit open"))
        rmqr_fail_with_log(f->r, "no circuit opened while the node was down");
    size_t dups = check_no_loss(f);
    assert_true(dups <= 2 * 1000); /* at most the windows in flight */
}

static void test_close_all_connections_reconnects(void **state)
{
    fx *f = *state;
    insert(f, 2000);
    rmqr_start(f->r);
    wait_published(f, 300, 30000);
    /* the management UI's view: the connection name and capabilities */
    char *conns = rmqt_ctl_output(f->s->dir, "list_connections "
                                             "client_properties");
    if (!strstr(conns, "\"outbox-relay/p\"") ||
        !strstr(conns, "publisher_confirms") ||
        !strstr(conns, "connection.blocked") || !strstr(conns, "basic.nack"))
        fail_msg("list_connections: %s", conns);
    free(conns);
    pid_t child = ctl_async(f, "close_all_connections", "obx-test");
    write_while(f, child, 60000);
    insert(f, 500);
    rmqr_wait_settled(f->r, 60000);
    rmqr_stop(f->r);
    if (!rmqr_file_has(f->r->err, "CONNECTION_FORCED"))
        rmqr_fail_with_log(f->r, "the relay did not see its connection closed");
    if (!rmqr_file_has(f->r->err, "rabbitmq: connected to"))
        rmqr_fail_with_log(f->r, "no reconnect logged");
    size_t dups = check_no_loss(f);
    assert_true(dups <= 2 * 1000);
}

/* A memory alarm: the server blocks publishing connections. The relay
 * says so (log, /readyz), publishes nothing meanwhile and counts nothing
 * against the events; once the alarm clears it goes on by itself. */
static void test_memory_alarm_blocks_then_recovers(void **state)
{
    fx *f = *state;
    insert(f, 500);
    rmqr_start(f->r);
    wait_published(f, 500, 30000);
    assert_int_equal(
        rmqt_ctl(f->s->dir, "set_vm_memory_high_watermark 0.0000001"), 0);
    insert(f, 1000);
    rmqr_wait_readyz(f->r, "circuit open", 20000);
    int64_t end = rmqt_now_ms() + 10000;
    while (!rmqr_file_has(f->r->err, "blocked the connection")) {
        if (rmqt_now_ms() > end)
            rmqr_fail_with_log(f->r, "no blocked connection reported");
        sleep_ms(100);
    }
    long long during = published(f);
    sleep_ms(1500);
    /* at most what the server had read before blocking got confirmed */
    assert_true(published(f) - during <= 2 * 1000);
    assert_true(published(f) < f->next);
    rmqr_assert_no_attempts(f->r);
    assert_int_equal(rmqt_ctl(f->s->dir, "set_vm_memory_high_watermark 0.6"),
                     0);
    rmqr_wait_settled(f->r, 60000);
    rmqr_stop(f->r);
    check_no_loss(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_close_all_connections_reconnects,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_alarm_blocks_then_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_stopped_20s_then_back, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
