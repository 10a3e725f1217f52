/* The pg_wal store through its plugin API, on the real PostgreSQL of the
 * `pg` fixture: streaming, the watermark, in-memory retries, logical
 * messages, dead letters, idle-slot advance, hot standby, slot loss and
 * recovery, relays opening together, a server that stops answering. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgw_testlib.h"
#include "tcp_proxy.h"

#define MAXEV 64

static int setup(void **state)
{
    *state = wt_new();
    return 0;
}

static int teardown(void **state)
{
    wt_free(*state);
    return 0;
}

static void settle_all(wt *t, void *inst, obx_event **evs, size_t n)
{
    if (n)
        wt_ack(t, inst, evs, n);
}

/* End the walsender streaming `slot` (the stream breaks under the
 * relay) and wait until the server has let go of the slot. */
static void end_walsender(wt *t, const char *slot)
{
    wt_exec(t,
            "SELECT pg_terminate_backend(active_pid) FROM "
            "pg_replication_slots WHERE slot_name = '%s' AND active",
            slot);
    int64_t end = wt_mono_ms() + 10000;
    while (wt_int(t, 0,
                  "SELECT count(*) FROM pg_replication_slots WHERE "
                  "slot_name = '%s' AND active",
                  slot) > 0 &&
           wt_mono_ms() < end)
        wt_sleep_ms(20);
}

/* Committed events arrive with their fields; rolled-back ones never. */
static void test_stream_basic(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    wt_exec(t, "BEGIN; INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload, headers, topic) VALUES ('order', 'k1', "
               "'A', '\\x00ff41'::bytea, '{\"h\": \"v\", \"n\": 2}', "
               "'explicit'); INSERT INTO outbox (aggregate_type, "
               "aggregate_id, event_type, payload) VALUES ('order', 'k1', "
               "'B', 'b'); COMMIT");
    wt_exec(t, "BEGIN; INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload) VALUES ('order', 'k2', 'Phantom', 'x'); "
               "ROLLBACK");
    wt_insert(t, "k2", "C", "{\"c\": 1}");
    int64_t before = wt_now_us();
    obx_event *ev[MAXEV];
    size_t n = wt_claim(t, inst, ev, MAXEV, 3, 5000);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0]->event_type, "A");
    assert_int_equal(ev[0]->payload_len, 3);
    assert_memory_equal(ev[0]->payload,
                        "\x00\xff"
                        "A",
                        3);
    assert_string_equal(ev[0]->key, "k1");
    assert_string_equal(ev[0]->topic, "explicit");
    assert_int_equal(ev[0]->n_headers, 2);
    assert_true(ev[0]->created_at_us > before - 60000000 &&
                ev[0]->created_at_us <= wt_now_us());
    assert_string_equal(ev[1]->event_type, "B");
    assert_null(ev[1]->topic);
    assert_string_equal(ev[2]->event_type, "C");
    assert_memory_equal(ev[2]->payload, "{\"c\": 1}", 8);
    /* one transaction: same commit LSN, increasing index */
    assert_true(ev[0]->pos.seq == ev[1]->pos.seq);
    assert_true(ev[0]->pos.sub < ev[1]->pos.sub);
    assert_true(ev[2]->pos.seq > ev[1]->pos.seq);
    settle_all(t, inst, ev, n);
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 300), 0);
    t->ops->close(inst);
}

/* The confirmed position never passes an unsettled event, and a restart
 * replays it (and only what came after it). */
static void test_watermark(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    for (int i = 0; i < 4; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        wt_insert(t, p, "E", p);
    }
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 4, 5000), 4);
    uint64_t e1_lsn = ev[1]->pos.seq;
    char e1_id[64];
    snprintf(e1_id, sizeof e1_id, "%s", ev[1]->event_id);
    /* e0, e2, e3 published; e1 waits for a retry */
    obx_event *done[3] = {ev[0], ev[2], ev[3]};
    wt_ack(t, inst, done, 3);
    char err[OBX_ERRSTR_LEN];
    obx_release rel = {ev[1], wt_now_us() + 60000000, "boom", true};
    assert_int_equal(t->ops->release(inst, &rel, 1, err, sizeof err), OBX_OK);
    /* heavy unrelated WAL and keepalives must not move the slot past e1 */
    wt_exec(t, "CREATE TABLE other (v text)");
    wt_exec(t, "INSERT INTO other SELECT repeat('x', 1000) FROM "
               "generate_series(1, 5000)");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 1500), 0);
    uint64_t c = wt_confirmed(t);
    assert_true(c > 0);
    if (c > e1_lsn)
        fail_msg("confirmed %llx passed the unsettled event at %llx",
                 (unsigned long long)c, (unsigned long long)e1_lsn);
    t->ops->close(inst);
    /* a new instance gets e1 first; e2 and e3 again (the window) */
    inst = wt_open(t, NULL);
    size_t n = wt_claim(t, inst, ev, MAXEV, 3, 5000);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0]->event_id, e1_id);
    wt_ack(t, inst, ev, n);
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 1500), 0);
    assert_true(wt_confirmed(t) > e1_lsn);
    t->ops->close(inst);
}

/* Once close returns, the slot holds the last confirmed position: the
 * stream was ended after the server had read the final status update,
 * not dropped with the update still in the socket. Checked at once, with
 * no wait: a relay that exits (run --once, SIGTERM) leaves the slot
 * where it said. */
static void test_close_leaves_the_slot_confirmed(void **state)
{
    wt *t = *state;
    for (int round = 0; round < 5; round++) {
        void *inst = wt_open(t, NULL);
        for (int i = 0; i < 3; i++)
            wt_insert(t, "k", "E", "{}");
        obx_event *ev[MAXEV];
        /* the last round's window may come again (at-least-once) */
        size_t n = wt_claim(t, inst, ev, MAXEV, 3, 5000);
        assert_true(n >= 3);
        uint64_t last = 0;
        for (size_t i = 0; i < n; i++)
            last = ev[i]->pos.seq > last ? ev[i]->pos.seq : last;
        wt_ack(t, inst, ev, n);
        t->ops->close(inst);
        uint64_t c = wt_confirmed(t);
        if (c < last)
            fail_msg("round %d: closed with everything acked, but the slot "
                     "is at %llX, before the last event's commit at %llX",
                     round, (unsigned long long)c, (unsigned long long)last);
    }
}

/* A released event comes back from claim at its retry time, ties in
 * position order, before newer events. */
static void test_retry_order(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    wt_insert(t, "k", "A", "a");
    wt_insert(t, "k", "B", "b");
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 2, 5000), 2);
    /* Far enough out that inserting and claiming C always fits before it,
     * even on a loaded machine under ASan (300 ms did not). */
    int64_t at = wt_now_us() + 2000000;
    obx_release rel[2] = {{ev[1], at, "held", false}, {ev[0], at, "x", true}};
    char err[OBX_ERRSTR_LEN];
    assert_int_equal(t->ops->release(inst, rel, 2, err, sizeof err), OBX_OK);
    wt_insert(t, "j", "C", "c");
    size_t n = wt_claim(t, inst, ev, MAXEV, 1, 3000);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->event_type, "C"); /* A, B not due yet */
    assert_true(wt_now_us() < at);
    wt_ack(t, inst, ev, 1);
    n = wt_claim(t, inst, ev, MAXEV, 2, 5000);
    assert_true(wt_now_us() >= at);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0]->event_type, "A");
    assert_int_equal(ev[0]->attempts, 1);
    assert_string_equal(ev[1]->event_type, "B");
    assert_int_equal(ev[1]->attempts, 0);
    wt_ack(t, inst, ev, 2);
    t->ops->close(inst);
}

/* The stream breaks in the middle of a claim, after it took a released
 * event that fell due: the event still goes out (the engine ignores what
 * a failed claim took, and nothing would ever hand it out again), and the
 * break is the next claim's answer. */
static void test_claim_broken_after_taking(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    wt_insert(t, "k", "A", "a");
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    char err[OBX_ERRSTR_LEN];
    obx_release rel = {ev[0], wt_now_us(), "boom", true};
    assert_int_equal(t->ops->release(inst, &rel, 1, err, sizeof err), OBX_OK);
    end_walsender(t, t->name);
    size_t n = 0;
    obx_status st = t->ops->claim(inst, ev, MAXEV, &n, 100, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("the claim that took the retry failed (%s: %s): the "
                 "event it took would never go out",
                 obx_status_name(st), err);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->event_type, "A");
    assert_int_equal(ev[0]->attempts, 1);
    obx_event *a = ev[0];
    n = 0;
    assert_int_equal(t->ops->claim(inst, ev, MAXEV, &n, 100, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "replication"));
    wt_ack(t, inst, &a, 1);
    /* the next claim streams again */
    wt_insert(t, "k", "B", "b");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    assert_string_equal(ev[0]->event_type, "B");
    wt_ack(t, inst, ev, 1);
    t->ops->close(inst);
}

static void emit(wt *t, bool transactional, const char *prefix,
                 const char *body)
{
    const char *p[2] = {prefix, body};
    PGresult *r = PQexecParams(
        wt_db(t),
        transactional ? "SELECT pg_logical_emit_message(true, $1, $2)"
                      : "SELECT pg_logical_emit_message(false, $1, $2)",
        2, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
}

/* A table-less outbox: the JSON envelope of pg_logical_emit_message;
 * other prefixes, non-transactional and rolled-back messages are not
 * events, and an unreadable envelope is dead-lettered when read. */
static void test_messages(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.source = PGW_SOURCE_BOTH;
    void *inst = wt_open(t, &conf);
    emit(t, true, "outbox",
         "{\"aggregate_type\":\"cart\",\"aggregate_id\":\"c1\","
         "\"event_type\":\"Added\",\"payload\":{\"sku\":\"x\"},"
         "\"headers\":{\"trace\":\"t1\"},\"event_id\":\"m-1\","
         "\"topic\":\"carts\"}");
    emit(t, true, "other", "{}");
    emit(t, false, "outbox", "{\"aggregate_type\":\"x\"}");
    wt_exec(t, "BEGIN; SELECT pg_logical_emit_message(true, 'outbox', "
               "'{}'); ROLLBACK");
    emit(t, true, "outbox", "not json");
    emit(t, true, "outbox",
         "{\"aggregate_type\":\"cart\",\"aggregate_id\":\"c1\","
         "\"event_type\":\"Text\",\"payload\":\"plain\"}");
    wt_insert(t, "row", "Row", "r");
    obx_event *ev[MAXEV];
    size_t n = wt_claim(t, inst, ev, MAXEV, 3, 5000);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0]->event_id, "m-1");
    assert_string_equal(ev[0]->key, "c1");
    assert_string_equal(ev[0]->topic, "carts");
    assert_memory_equal(ev[0]->payload, "{\"sku\":\"x\"}", 11);
    assert_int_equal(ev[0]->n_headers, 1);
    assert_string_equal(ev[0]->headers[0].value, "t1");
    assert_string_equal(ev[1]->event_type, "Text");
    assert_memory_equal(ev[1]->payload, "plain", 5);
    assert_true(strncmp(ev[1]->event_id, "wal-", 4) == 0);
    assert_string_equal(ev[2]->event_type, "Row");
    wt_ack(t, inst, ev, n);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox_dead_letters WHERE "
                            "dead_reason LIKE 'envelope%%'"),
                     1);
    t->ops->close(inst);
}

static const char *header(const obx_event *e, const char *name)
{
    for (size_t i = 0; i < e->n_headers; i++)
        if (strcmp(e->headers[i].name, name) == 0)
            return e->headers[i].value;
    fail_msg("event %s has no header '%s'", e->event_id, name);
    return NULL;
}

/* Issue 15 item 2: a relay never rewrites a payload. The envelope's
 * payload used to go through jansson: 19.99 came out as
 * 19.989999999999998, 42.00 as 42.0, 1e2 as 100.0, and an integer past 64
 * bits dead-lettered the event. Now the payload's JSON text travels byte
 * for byte (whitespace included); a JSON string payload is its decoded
 * text, as documented. Header numbers keep their text in both modes. */
static void test_messages_as_written(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.source = PGW_SOURCE_BOTH;
    void *inst = wt_open(t, &conf);
    const char num_payload[] = "{\"price\":19.99,\"total\":42.00,"
                               "\"e\":1e2, \"big\":"
                               "123456789012345678901234567890,"
                               "\"s\":\"caf\\u00e9\"}";
    char env[512];
    snprintf(env, sizeof env,
             "{\"aggregate_type\":\"o\",\"aggregate_id\":\"k\","
             "\"event_type\":\"Num\",\"payload\": %s ,"
             "\"headers\":{\"n\":1.10,\"big\":"
             "123456789012345678901234567890,\"s\":\"caf\\u00e9\","
             "\"o\":{ \"a\" : [1, 2.50] }}}",
             num_payload);
    emit(t, true, "outbox", env);
    emit(t, true, "outbox",
         "{\"aggregate_type\":\"o\",\"aggregate_id\":\"k\","
         "\"event_type\":\"Str\","
         "\"payload\":\"line\\nnext \\u00e9 \\\"q\\\" \\ud83d\\ude00\"}");
    emit(t, true, "outbox",
         "{\"aggregate_type\":\"o\",\"aggregate_id\":\"k\","
         "\"event_typ\\u0065\":\"Esc\",\"payload\":1e2,"
         "\"event_id\":\"id-\\u00e9\",\"topic\":\"t\\/x\"}");
    emit(t, true, "outbox",
         "{\"aggregate_type\":\"o\",\"aggregate_id\":\"a\\u0000b\","
         "\"event_type\":\"Nul\",\"payload\":{}}");
    wt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload, headers) VALUES ('o', 'r', 'Row', 'x', "
               "'{\"p\": 19.99, \"big\": 123456789012345678901234567890}')");
    obx_event *ev[MAXEV];
    size_t n = wt_claim(t, inst, ev, MAXEV, 4, 5000);
    assert_int_equal(n, 4);

    assert_string_equal(ev[0]->event_type, "Num");
    assert_int_equal(ev[0]->payload_len, strlen(num_payload));
    assert_memory_equal(ev[0]->payload, num_payload, ev[0]->payload_len);
    assert_string_equal(header(ev[0], "n"), "1.10");
    assert_string_equal(header(ev[0], "big"), "123456789012345678901234567890");
    assert_string_equal(header(ev[0], "s"), "caf\xc3\xa9");
    assert_string_equal(header(ev[0], "o"), "{\"a\":[1,2.50]}");

    const char str_payload[] = "line\nnext \xc3\xa9 \"q\" \xf0\x9f\x98\x80";
    assert_string_equal(ev[1]->event_type, "Str");
    assert_int_equal(ev[1]->payload_len, sizeof str_payload - 1);
    assert_memory_equal(ev[1]->payload, str_payload, ev[1]->payload_len);

    /* member names and string fields are unescaped */
    assert_string_equal(ev[2]->event_type, "Esc");
    assert_string_equal(ev[2]->event_id, "id-\xc3\xa9");
    assert_string_equal(ev[2]->topic, "t/x");
    assert_int_equal(ev[2]->payload_len, 3);
    assert_memory_equal(ev[2]->payload, "1e2", 3);

    assert_string_equal(ev[3]->event_type, "Row");
    assert_string_equal(header(ev[3], "p"), "19.99");
    assert_string_equal(header(ev[3], "big"), "123456789012345678901234567890");
    wt_ack(t, inst, ev, n);
    /* a key holding a NUL cannot be carried: dead-lettered, with why */
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox_dead_letters WHERE "
                            "event_type = 'Nul' AND dead_reason LIKE "
                            "'%%aggregate_id%%NUL%%'"),
                     1);
    t->ops->close(inst);
}

/* The envelope example of docs/pg-wal.md, run as it is printed there,
 * publishes (it once held "-- optional" comments inside the JSON, so
 * pasting it made a dead letter). */
static void test_docs_envelope_example(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.source = PGW_SOURCE_MESSAGES;
    void *inst = wt_open(t, &conf);
    FILE *f = fopen(OBX_SOURCE_DIR "/docs/pg-wal.md", "rb");
    assert_non_null(f);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *sql = strstr(doc, "SELECT pg_logical_emit_message(true, 'outbox'");
    assert_non_null(sql);
    char *end = strstr(sql, "');");
    assert_non_null(end);
    end[2] = '\0';
    wt_exec(t, "%s", sql);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    assert_string_equal(ev[0]->aggregate_id, "42");
    assert_string_equal(ev[0]->topic, "orders");
    const char payload[] = "{\"id\": 42, \"total\": 19.99}";
    assert_int_equal(ev[0]->payload_len, sizeof payload - 1);
    assert_memory_equal(ev[0]->payload, payload, sizeof payload - 1);
    wt_ack(t, inst, ev, 1);
    t->ops->close(inst);
}

static int count_dead(void *ctx, const obx_dead_letter *dl)
{
    int *n = ctx;
    assert_non_null(strstr(dl->reason, "rejected"));
    assert_int_equal(dl->event->attempts, 3);
    (*n)++;
    return 0;
}

/* run --once stops when stats says nothing is pending. A transaction
 * committed with synchronous_commit = off (the test server's setting) is
 * visible before its WAL is flushed, and the walsender streams flushed
 * WAL only: stats must count it as pending until the stream has brought
 * it. (Measured against the server's flush position, stats said 0 with
 * nothing read, and bench/run's drain stopped with the backlog unread.) */
static void test_stats_counts_unflushed_commits(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 0, 100), 0); /* streams */
    wt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload) SELECT 'order', 'k' || g, 'E', 'p' "
               "FROM generate_series(1, 50) g");
    obx_store_stats sts = {.struct_size = sizeof sts};
    char err[OBX_ERRSTR_LEN] = "";
    assert_int_equal(t->ops->stats(inst, &sts, err, sizeof err), OBX_OK);
    if (sts.pending == 0)
        fail_msg("stats: nothing pending right after 50 events committed");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 50, 5000), 50);
    wt_ack(t, inst, ev, 50);
    assert_int_equal(t->ops->stats(inst, &sts, err, sizeof err), OBX_OK);
    assert_int_equal(sts.pending, 0);
    t->ops->close(inst);
}

/* bury -> dead table (and dead_at with ack_mode = mark); requeue puts the
 * event back in the stream with the same id; purge removes it. */
static void test_dead_letters(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.ack_mode = PGW_ACK_MARK;
    void *inst = wt_open(t, &conf);
    wt_insert(t, "k", "Bad", "payload");
    wt_insert(t, "k", "Good", "g");
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 2, 5000), 2);
    char id[64];
    snprintf(id, sizeof id, "%s", ev[0]->event_id);
    ev[0]->attempts = 3;
    obx_burial b = {ev[0], "permanent: rejected", "topic.x"};
    char err[OBX_ERRSTR_LEN] = "";
    obx_status st = t->ops->bury(inst, &b, 1, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("bury: %s", err);
    wt_ack(t, inst, &ev[1], 1);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE "
                            "published_at IS NOT NULL"),
                     1);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE "
                            "dead_at IS NOT NULL"),
                     1);
    int seen = 0;
    assert_int_equal(
        t->ops->dead_list(inst, NULL, count_dead, &seen, err, sizeof err),
        OBX_OK);
    assert_int_equal(seen, 1);
    obx_store_stats sts = {.struct_size = sizeof sts};
    assert_int_equal(t->ops->stats(inst, &sts, err, sizeof err), OBX_OK);
    assert_int_equal(sts.dead, 1);
    assert_true(sts.lag_bytes >= 0);
    /* A published row that carries the dead letter's id (a writer used it
     * again: event ids are unique among unpublished rows only) is not its
     * original: requeue leaves it. An UPDATE is not streamed. */
    wt_exec(t,
            "UPDATE outbox SET event_id = '%s' WHERE published_at IS NOT "
            "NULL",
            id);
    uint64_t count = 0;
    assert_int_equal(t->ops->dead_requeue(inst, id, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE event_id = "
                            "'%s' AND published_at IS NOT NULL",
                            id),
                     1);
    size_t n = wt_claim(t, inst, ev, MAXEV, 1, 5000);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->event_id, id);
    assert_memory_equal(ev[0]->payload, "payload", 7);
    b.event = ev[0];
    assert_int_equal(t->ops->bury(inst, &b, 1, err, sizeof err), OBX_OK);
    assert_int_equal(t->ops->dead_purge(inst, NULL, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(t->ops->dead_purge(inst, "nope", &count, err, sizeof err),
                     OBX_NOT_FOUND);
    t->ops->close(inst);
}

/* An idle outbox while another table takes heavy writes: the slot follows
 * the server (keepalives), so it never pins that WAL. */
static void test_idle_slot_advances(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    wt_exec(t, "CREATE TABLE busy (v text)");
    obx_event *ev[MAXEV];
    for (int round = 0; round < 5; round++) {
        wt_exec(t, "INSERT INTO busy SELECT repeat('y', 2000) FROM "
                   "generate_series(1, 2000)");
        assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 200), 0);
    }
    int64_t end = wt_mono_ms() + 5000;
    int64_t lag = 0;
    do {
        wt_claim(t, inst, ev, MAXEV, 1, 100);
        lag = (int64_t)(wt_current_lsn(t) - wt_confirmed(t));
    } while (lag > 64 * 1024 && wt_mono_ms() < end);
    if (lag > 64 * 1024)
        fail_msg("idle slot lags %lld bytes behind after ~20 MB of other "
                 "writes",
                 (long long)lag);
    t->ops->close(inst);
}

/* Only one process streams a slot: another instance's claims stand by
 * (OK, nothing claimed: a standby is healthy, not an outage) and it takes
 * over at its first claim after the slot is free. */
/* Instance *a streams the slot; the returned one stands by: it opens
 * (stats and dead letters need no slot) and its claims take nothing. */
static void *open_standby(wt *t, void **a)
{
    *a = wt_open(t, NULL);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, *a, ev, MAXEV, 1, 100), 0); /* streams */
    void *b = wt_open(t, NULL);
    char err[OBX_ERRSTR_LEN] = "";
    size_t n = 0;
    assert_int_equal(t->ops->claim(b, ev, MAXEV, &n, 0, err, sizeof err),
                     OBX_OK);
    assert_int_equal(n, 0);
    return b;
}

static void test_standby(void **state)
{
    wt *t = *state;
    void *a;
    void *b = open_standby(t, &a);
    obx_event *ev[MAXEV];
    char err[OBX_ERRSTR_LEN] = "";
    size_t n = 0;
    obx_store_stats st = {.struct_size = sizeof st};
    assert_int_equal(t->ops->stats(b, &st, err, sizeof err), OBX_OK);
    wt_insert(t, "k", "E", "1");
    t->ops->close(a);
    int64_t end = wt_mono_ms() + 5000;
    obx_status rc;
    n = 0;
    while ((rc = t->ops->claim(b, ev, MAXEV, &n, 100, err, sizeof err)) ==
               OBX_OK &&
           n == 0 && wt_mono_ms() < end)
        ;
    assert_int_equal(rc, OBX_OK);
    assert_int_equal(n, 1);
    wt_ack(t, b, ev, 1);
    t->ops->close(b);
}

/* Standing by is the answer of one attempt, not a state that sticks: once
 * the other relay is gone and the slot with it, the standby's claims fail
 * (an outage the circuit sees), not stand by quietly for ever. */
static void test_standby_then_slot_gone_fails(void **state)
{
    wt *t = *state;
    void *a;
    void *b = open_standby(t, &a);
    obx_event *ev[MAXEV];
    char err[OBX_ERRSTR_LEN] = "";
    size_t n = 0;
    t->ops->close(a);
    end_walsender(t, t->name);
    wt_exec(t, "SELECT pg_drop_replication_slot('%s')", t->name);
    assert_int_not_equal(t->ops->claim(b, ev, MAXEV, &n, 0, err, sizeof err),
                         OBX_OK);
    assert_non_null(strstr(err, "does not exist"));
    t->ops->close(b);
}

/* Lose the slot of a mark-mode relay: publish one row, close, drop the
 * slot; returns the configuration to open again with. */
static pgw_config lose_slot(wt *t)
{
    pgw_config conf = t->conf;
    conf.ack_mode = PGW_ACK_MARK;
    void *inst = wt_open(t, &conf);
    wt_insert(t, "k", "Published", "1");
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    wt_ack(t, inst, ev, 1);
    t->ops->close(inst);
    /* The walsender of the closed stream may outlive close() for a moment;
     * end it so the slot can be dropped. */
    end_walsender(t, t->name);
    wt_exec(t, "SELECT pg_drop_replication_slot('%s')", t->name);
    return conf;
}

/* A slot that disappears is a loud, fatal error, not a silent new slot;
 * with ack_mode = mark, recover = true re-reads unpublished rows. */
static void test_slot_lost_and_recover(void **state)
{
    wt *t = *state;
    pgw_config conf = lose_slot(t);
    obx_event *ev[MAXEV];
    wt_insert(t, "k", "Lost1", "2"); /* committed while there is no slot */
    wt_insert(t, "k", "Lost2", "3");
    void *x = NULL;
    char err[1024]; /* the size the core passes for store errors */
    assert_int_equal(wt_try_open(t, &conf, &x, err, sizeof err), OBX_FATAL);
    assert_non_null(strstr(err, "does not exist"));
    assert_non_null(strstr(err, "recover"));

    conf.recover = true;
    void *inst = wt_open(t, &conf);
    wt_insert(t, "k", "After", "4"); /* streamed by the new slot */
    size_t n = wt_claim(t, inst, ev, MAXEV, 2, 5000);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0]->event_type, "Lost1");
    assert_string_equal(ev[1]->event_type, "Lost2");
    wt_ack(t, inst, ev, n);
    n = wt_claim(t, inst, ev, MAXEV, 1, 5000);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->event_type, "After");
    wt_ack(t, inst, ev, n);
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 500), 0);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE "
                            "published_at IS NULL"),
                     0);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM pg_tables WHERE "
                            "tablename = 'outbox_recover'"),
                     0);
    t->ops->close(inst);
}

/* Claim until n events came or 5 s passed; acks them; returns how many,
 * their types joined by ',' in *types. */
static size_t claim_types(wt *t, void *inst, size_t n, char *types, size_t len)
{
    obx_event *ev[MAXEV];
    size_t got = 0;
    types[0] = '\0';
    int64_t end = wt_mono_ms() + 5000;
    while (got < n && wt_mono_ms() < end) {
        size_t k = wt_claim(t, inst, ev, MAXEV, 0, 200);
        for (size_t i = 0; i < k; i++) {
            size_t used = strlen(types);
            snprintf(types + used, len - used, "%s%s", used ? "," : "",
                     ev[i]->event_type);
        }
        wt_ack(t, inst, ev, k);
        got += k;
    }
    return got;
}

/* A recovery that fails after creating its slot and before its list of
 * unpublished rows is written leaves a healthy slot behind: here the
 * relay's role may create the list but not read the outbox table. The
 * next open must not stream that slot as if all were well: the rows
 * committed before it would never go out. It recovers again, and they
 * do. */
static void test_interrupted_recovery_is_redone(void **state)
{
    wt *t = *state;
    pgw_config conf = lose_slot(t);
    wt_insert(t, "k", "Lost1", "2");
    wt_insert(t, "k", "Lost2", "3");
    wt_exec(t, "CREATE ROLE %s_r LOGIN REPLICATION", t->name);
    wt_exec(t, "GRANT USAGE, CREATE ON SCHEMA %s TO %s_r", t->name, t->name);
    char ci[1400];
    snprintf(ci, sizeof ci, "%s user=%s_r", t->conninfo, t->name);
    pgw_config weak = conf;
    weak.conninfo = ci;
    weak.recover = true;
    void *x = NULL;
    char err[1024];
    assert_int_not_equal(wt_try_open(t, &weak, &x, err, sizeof err), OBX_OK);
    assert_non_null(strstr(err, "permission denied"));
    assert_int_equal(wt_int(t, 0,
                            "SELECT count(*) FROM pg_replication_slots "
                            "WHERE slot_name = '%s'",
                            t->name),
                     1); /* the half-done recovery's slot is there */
    /* without recover, the relay refuses rather than skip the rows */
    assert_int_equal(wt_try_open(t, &conf, &x, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "store.recover = true"));
    conf.recover = true;
    void *inst = wt_open(t, &conf);
    wt_insert(t, "k", "After", "4");
    char types[256];
    assert_int_equal(claim_types(t, inst, 3, types, sizeof types), 3);
    assert_string_equal(types, "Lost1,Lost2,After");
    t->ops->close(inst);
    wt_exec(t, "DROP OWNED BY %s_r", t->name);
    wt_exec(t, "DROP ROLE %s_r", t->name);
}

/* The slot is lost again while a recovery is under way: the rows
 * committed while there was no slot the second time are in neither the
 * first list nor the new slot. The second recovery lists again. */
static void test_second_slot_loss_lists_again(void **state)
{
    wt *t = *state;
    pgw_config conf = lose_slot(t);
    wt_insert(t, "k", "Lost1", "2");
    wt_insert(t, "k", "Lost2", "3");
    conf.recover = true;
    void *inst = wt_open(t, &conf);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, 1, 1, 5000), 1);
    assert_string_equal(ev[0]->event_type, "Lost1");
    wt_ack(t, inst, ev, 1);
    t->ops->close(inst); /* Lost2 still listed, the recovery not done */
    end_walsender(t, t->name);
    wt_exec(t, "SELECT pg_drop_replication_slot('%s')", t->name);
    wt_insert(t, "k", "Lost3", "5");
    inst = wt_open(t, &conf);
    char types[256];
    assert_int_equal(claim_types(t, inst, 2, types, sizeof types), 2);
    assert_string_equal(types, "Lost2,Lost3");
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE "
                            "published_at IS NULL"),
                     0);
    t->ops->close(inst);
}

/* A backlog goes out in full batches: a claim reads on past what one
 * read of the socket holds (a few dozen events), and past what libpq had
 * buffered when it began (nothing, after an idle wait). Batches of a few
 * events made every broker round trip carry a handful. */
static void test_claim_fills_batch(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    enum { BATCH = 1000 };
    obx_event *ev[BATCH];
    assert_int_equal(wt_claim(t, inst, ev, BATCH, 0, 100), 0); /* streaming */
    wt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload) SELECT 'o', (i %% 7)::text, 'E', "
               "convert_to(i::text, 'UTF8') FROM generate_series(1, 600) i");
    wt_sleep_ms(1000); /* the server has sent what the socket takes */
    char err[OBX_ERRSTR_LEN];
    size_t n = 0;
    assert_int_equal(t->ops->claim(inst, ev, BATCH, &n, 100, err, sizeof err),
                     OBX_OK);
    if (n < 300)
        fail_msg("one claim over a backlog of 600 took %zu", n);
    wt_ack(t, inst, ev, n);
    size_t total = n;
    while (total < 600 && (n = wt_claim(t, inst, ev, BATCH, 1, 5000)) > 0) {
        wt_ack(t, inst, ev, n);
        total += n;
    }
    assert_int_equal(total, 600);
    t->ops->close(inst);
}

/* The read-ahead stops at max_buffered, whatever the backlog. */
static void test_bounded_buffer(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.max_buffered = 100;
    void *inst = wt_open(t, &conf);
    wt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
               "event_type, payload) SELECT 'o', (i %% 7)::text, 'E', "
               "convert_to(i::text, 'UTF8') FROM generate_series(1, 5000) i");
    obx_event *ev[MAXEV];
    size_t total = 0;
    int64_t end = wt_mono_ms() + 20000;
    while (total < 5000 && wt_mono_ms() < end) {
        size_t n = wt_claim(t, inst, ev, MAXEV, 1, 200);
        char err[OBX_ERRSTR_LEN];
        obx_store_stats st = {.struct_size = sizeof st};
        assert_int_equal(t->ops->stats(inst, &st, err, sizeof err), OBX_OK);
        assert_true(st.pending <= 101 + n);
        wt_ack(t, inst, ev, n);
        total += n;
    }
    assert_int_equal(total, 5000);
    t->ops->close(inst);
}

/* ---- defaults, checks and messages ---- */

typedef struct ddl_text {
    char text[16384];
} ddl_text;

static void ddl_emit(void *ctx, const char *text)
{
    ddl_text *d = ctx;
    size_t len = strlen(d->text);
    snprintf(d->text + len, sizeof d->text - len, "%s", text);
}

/* The slot literal of `schema pg_wal` for conf (static buffer). */
static const char *schema_slot(wt *t, const pgw_config *conf)
{
    static ddl_text d;
    d.text[0] = '\0';
    assert_int_equal(t->ops->schema(t->host, conf, ddl_emit, &d), OBX_OK);
    char *p = strstr(d.text, "pg_create_logical_replication_slot('");
    assert_non_null(p);
    p += strlen("pg_create_logical_replication_slot('");
    static char slot[128];
    size_t n = strcspn(p, "'");
    assert_true(n < sizeof slot);
    memcpy(slot, p, n);
    slot[n] = '\0';
    return slot;
}

static void drop_slot(wt *t, const char *slot)
{
    for (int i = 0; i < 100; i++) {
        wt_exec(t,
                "SELECT pg_terminate_backend(active_pid) FROM "
                "pg_replication_slots WHERE slot_name = '%s' AND active",
                slot);
        if (wt_int(t, 0,
                   "SELECT count(*) FROM pg_replication_slots WHERE "
                   "slot_name = '%s' AND NOT active",
                   slot) == 1)
            break;
        wt_sleep_ms(50);
    }
    wt_exec(t,
            "SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE slot_name = '%s'",
            slot);
}

/* Slot names are cluster-wide: without store.slot the default is made of
 * the database, schema and table, so pipelines of other databases (or
 * tables) on one server never share one; names outside [a-z0-9_] or too
 * long get a hash instead of colliding. */
static void test_default_slot(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.slot = (char *)"";
    char want[128];
    snprintf(want, sizeof want, "outbox_relay_obx_%s_outbox", t->name);
    assert_string_equal(schema_slot(t, &conf), want);
    void *inst = wt_open(t, &conf);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 0, 100), 0);
    assert_int_equal(wt_int(t, 0,
                            "SELECT count(*) FROM pg_replication_slots "
                            "WHERE slot_name = '%s' AND database = "
                            "current_database()",
                            want),
                     1);
    t->ops->close(inst);
    drop_slot(t, want);
    /* another table, another slot */
    conf.table = (char *)"Orders Outbox";
    char other[128];
    snprintf(other, sizeof other, "%s", schema_slot(t, &conf));
    assert_string_not_equal(other, want);
    assert_true(strlen(other) <= 63);
    assert_int_equal(strspn(other, "abcdefghijklmnopqrstuvwxyz0123456789_"),
                     strlen(other));
    conf.table = (char *)"orders_outbox";
    assert_string_not_equal(schema_slot(t, &conf), other);
    /* a name past 63 bytes is cut, with a hash keeping it apart */
    conf.table = (char *)"a_rather_long_outbox_table_name_for_one_team";
    char cut[128];
    snprintf(cut, sizeof cut, "%s", schema_slot(t, &conf));
    assert_int_equal(strlen(cut), 63);
    conf.table = (char *)"a_rather_long_outbox_table_name_for_one_team2";
    assert_string_not_equal(schema_slot(t, &conf), cut);
}

/* `check` (validate) rejects what open would: recover without ack_mode =
 * mark, and recover with a table-less outbox. */
static void test_validate_recover(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.recover = true;
    char err[1024] = "";
    assert_int_equal(t->ops->validate(t->host, &conf, false, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "ack_mode = mark"));
    conf.ack_mode = PGW_ACK_MARK;
    conf.source = PGW_SOURCE_MESSAGES;
    assert_int_equal(t->ops->validate(t->host, &conf, false, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "source = messages"));
    conf.source = PGW_SOURCE_TABLE;
    assert_int_equal(t->ops->validate(t->host, &conf, false, err, sizeof err),
                     OBX_OK);
}

/* A message meant for the operator fits the buffer the core passes and
 * ends with its last sentence, not in the middle of a word. */
static void assert_whole(const char *err)
{
    size_t len = strlen(err);
    if (len == 0 || strstr(err, "[...]") || err[len - 1] != '.')
        fail_msg("message cut or unfinished (%zu bytes): %s", len, err);
}

/* create_slot = false without a slot, and a lost slot with ack_mode =
 * none: both say that events written while there is no slot are never
 * streamed, and what ack_mode = mark would give. */
static void test_slot_messages(void **state)
{
    wt *t = *state;
    pgw_config conf = t->conf;
    conf.create_slot = false;
    void *inst = NULL;
    char err[1024] = "";
    assert_int_equal(wt_try_open(t, &conf, &inst, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "never streamed"));
    assert_non_null(strstr(err, "ack_mode = mark"));
    assert_whole(err);
    /* a slot that existed and was lost, ack_mode = none */
    conf.create_slot = true;
    wt_exec(t, "DROP PUBLICATION %s", t->name);
    inst = wt_open(t, &conf);
    t->ops->close(inst);
    drop_slot(t, t->name);
    assert_int_equal(wt_try_open(t, &conf, &inst, err, sizeof err), OBX_FATAL);
    assert_non_null(strstr(err, "never streamed"));
    assert_non_null(strstr(err, "ack_mode = mark"));
    assert_non_null(strstr(err, "pg_create_logical_replication_slot"));
    assert_whole(err);
    /* a buffer too small for it: shortened at a word, and marked so */
    char small[120];
    assert_int_equal(wt_try_open(t, &conf, &inst, small, sizeof small),
                     OBX_FATAL);
    size_t len = strlen(small);
    assert_true(len < sizeof small && len > 20);
    assert_string_equal(small + len - 6, " [...]");
    size_t kept = len - 6;
    assert_memory_equal(small, err, kept);
    if (strchr(" ,;:.", err[kept]) == NULL)
        fail_msg("cut inside a word: '%s' of '%s'", small, err);
}

/* stats reports what the relay holds and how far the slot is behind;
 * WAL that carries none of our events (other tables, other databases)
 * never shows up as a pending event. */
static void test_stats_held_and_behind(void **state)
{
    wt *t = *state;
    void *inst = wt_open(t, NULL);
    obx_event *ev[MAXEV];
    wt_insert(t, "k", "E", "1");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    char err[1024] = "";
    obx_store_stats st = {.struct_size = sizeof st};
    assert_int_equal(t->ops->stats(inst, &st, err, sizeof err), OBX_OK);
    assert_int_equal(st.pending, 1); /* held: claimed, not yet acked */
    wt_ack(t, inst, ev, 1);
    wt_exec(t, "CREATE TABLE noise (n int)");
    /* the stream catches up once with what was there at its start */
    int64_t end = wt_mono_ms() + 10000;
    do {
        st = (obx_store_stats){.struct_size = sizeof st};
        assert_int_equal(t->ops->stats(inst, &st, err, sizeof err), OBX_OK);
    } while (st.pending != 0 && wt_mono_ms() < end);
    assert_int_equal(st.pending, 0);
    /* from then on, WAL that is not ours never counts */
    PGconn *w = PQconnectdb(t->conninfo);
    assert_int_equal(PQstatus(w), CONNECTION_OK);
    assert_int_equal(PQsendQuery(w, "DO $$ BEGIN FOR i IN 1..3000 LOOP "
                                    "INSERT INTO noise VALUES (i); COMMIT; "
                                    "END LOOP; END $$"),
                     1);
    for (int i = 0; i < 5; i++) {
        st = (obx_store_stats){.struct_size = sizeof st};
        assert_int_equal(t->ops->stats(inst, &st, err, sizeof err), OBX_OK);
        if (st.pending != 0 || st.oldest_pending_us != 0)
            fail_msg("nothing is held, yet stats says pending %llu",
                     (unsigned long long)st.pending);
        assert_true(st.lag_bytes >= 0);
        assert_int_equal(st.standby, 0);
        wt_sleep_ms(50);
    }
    PGresult *r;
    while ((r = PQgetResult(w)) != NULL)
        PQclear(r);
    PQfinish(w);
    /* a second instance on the slot is a hot standby, and says so */
    void *b = wt_open(t, NULL);
    size_t n = 0;
    assert_int_equal(t->ops->claim(b, ev, MAXEV, &n, 0, err, sizeof err),
                     OBX_OK);
    st = (obx_store_stats){.struct_size = sizeof st};
    assert_int_equal(t->ops->stats(b, &st, err, sizeof err), OBX_OK);
    assert_int_equal(st.standby, 1);
    t->ops->close(b);
    t->ops->close(inst);
}

/* `demo` beside an `orders` table of another shape says which table and
 * what shape it needs, instead of a bare SQL error. */
static void test_demo_other_orders_table(void **state)
{
    wt *t = *state;
    wt_exec(t, "CREATE TABLE orders (order_no int PRIMARY KEY, total "
               "numeric NOT NULL)");
    void *inst = wt_open(t, NULL);
    char err[1024] = "";
    assert_int_not_equal(t->ops->demo(inst, 1, err, sizeof err), OBX_OK);
    const char *want[] = {"\"orders\"",
                          "customer",
                          "amount_cents",
                          "order_no",
                          "GENERATED BY DEFAULT AS IDENTITY",
                          "store.schema",
                          NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(err, want[i]))
            fail_msg("the error has no '%s': %s", want[i], err);
    assert_int_equal(wt_int(t, -1, "SELECT count(*) FROM outbox"), 0);
    t->ops->close(inst);
}

/* On an outbox table that exists already, create_schema adds only what
 * is pg_wal's own (the dead-letter table): building indexes on a live
 * table would lock out the application's writers. */
static void test_existing_table_left_alone(void **state)
{
    wt *t = *state;
    wt_exec(t, "CREATE TABLE outbox (id bigint GENERATED BY DEFAULT AS "
               "IDENTITY PRIMARY KEY, event_id text NOT NULL DEFAULT "
               "gen_random_uuid()::text, aggregate_type text NOT NULL, "
               "aggregate_id text NOT NULL, event_type text NOT NULL, "
               "payload bytea NOT NULL, topic text, headers jsonb, "
               "created_at timestamptz NOT NULL DEFAULT now(), "
               "published_at timestamptz, dead_at timestamptz, "
               "dead_reason text)");
    pgw_config conf = t->conf;
    conf.ack_mode = PGW_ACK_MARK;
    void *inst = wt_open(t, &conf);
    /* and ack_mode = mark buries into it without the columns it lacks */
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 0, 100), 0); /* streams */
    wt_insert(t, "k", "E", "1");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    char err[1024] = "";
    obx_burial b = {ev[0], "rejected", "topic-x"};
    assert_int_equal(t->ops->bury(inst, &b, 1, err, sizeof err), OBX_OK);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM outbox WHERE dead_reason = "
                            "'rejected'"),
                     1);
    t->ops->close(inst);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM pg_indexes WHERE "
                            "schemaname = '%s' AND tablename = 'outbox'",
                            t->name),
                     1); /* the primary key only */
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM pg_tables WHERE "
                            "schemaname = '%s' AND tablename = "
                            "'outbox_dead_letters'",
                            t->name),
                     1);
}

/* A table made for another tool (Debezium's outbox: a uuid id, none of
 * our columns) streams with ack_mode = none and its columns mapped. A
 * mapped name the table lacks, or an ack_mode whose columns it lacks, is
 * refused at open with every missing column named, instead of each event
 * being dead-lettered at claim or the first ack failing. */
static void test_table_columns_checked_at_open(void **state)
{
    wt *t = *state;
    wt_exec(t, "CREATE TABLE outbox (id uuid PRIMARY KEY DEFAULT "
               "gen_random_uuid(), aggregatetype text NOT NULL, aggregateid "
               "text NOT NULL, type text NOT NULL, payload jsonb)");
    obx_kv cols[] = {{"aggregate_type", "aggregatetype", 3},
                     {"aggregate_id", "aggregateid", 4},
                     {"event_type", "type", 5}};
    pgw_config conf = t->conf;
    conf.column = (obx_kvlist){cols, 3};
    void *inst = wt_open(t, &conf);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 0, 100), 0); /* streams */
    wt_exec(t, "INSERT INTO outbox (aggregatetype, aggregateid, type, "
               "payload) VALUES ('order', 'o-1', 'OrderCreated', '{}')");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    assert_string_equal(ev[0]->aggregate_id, "o-1");
    assert_string_equal(ev[0]->event_type, "OrderCreated");
    assert_non_null(strstr(ev[0]->event_id, "wal-")); /* no event_id column */
    wt_ack(t, inst, ev, 1);
    t->ops->close(inst);

    char err[1024] = "";
    void *bad = NULL;
    cols[1].value = "aggregate";
    assert_int_equal(wt_try_open(t, &conf, &bad, err, sizeof err), OBX_CONFIG);
    if (!strstr(err, "lacks column(s) aggregate,") &&
        !strstr(err, "lacks column(s) aggregate "))
        fail_msg("the mapped name is not named: %s", err);
    cols[1].value = "aggregateid";
    conf.ack_mode = PGW_ACK_MARK;
    assert_int_equal(wt_try_open(t, &conf, &bad, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "lacks column(s) published_at, dead_at, "
                                "dead_reason"));
    conf.ack_mode = PGW_ACK_DELETE;
    assert_int_equal(wt_try_open(t, &conf, &bad, err, sizeof err), OBX_CONFIG);
    assert_non_null(strstr(err, "column \"id\" of table \"outbox\" is uuid"));
}

/* A relay upgraded over the old default dead-letter table (<table>_dead)
 * keeps its dead letters there instead of starting an empty new table. */
static char captured_log[8192];

static void capture_log(const obx_host *h, obx_log_level level, const char *fmt,
                        ...)
{
    (void)h;
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    size_t len = strlen(captured_log);
    vsnprintf(captured_log + len, sizeof captured_log - len, fmt, ap);
    va_end(ap);
}

static void test_old_dead_table_kept(void **state)
{
    wt *t = *state;
    static obx_host logging;
    logging = *t->host;
    logging.log = capture_log;
    captured_log[0] = '\0';
    void *inst = wt_open(t, NULL); /* today's schema */
    t->ops->close(inst);
    wt_exec(t, "ALTER TABLE outbox_dead_letters RENAME TO outbox_old");
    wt_exec(t, "DROP INDEX outbox_dead");
    wt_exec(t, "ALTER TABLE outbox_old RENAME TO outbox_dead");
    const obx_host *saved = t->host;
    t->host = &logging;
    inst = wt_open(t, NULL);
    t->host = saved;
    if (!strstr(captured_log, "ALTER TABLE \"outbox_dead\" RENAME TO "
                              "\"outbox_dead_letters\""))
        fail_msg("no RENAME advice in the log: %s", captured_log);
    obx_event *ev[MAXEV];
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 0, 100), 0); /* streams */
    wt_insert(t, "k", "E", "1");
    assert_int_equal(wt_claim(t, inst, ev, MAXEV, 1, 5000), 1);
    char err[1024] = "";
    obx_burial b = {ev[0], "rejected", NULL};
    assert_int_equal(t->ops->bury(inst, &b, 1, err, sizeof err), OBX_OK);
    t->ops->close(inst);
    assert_int_equal(wt_int(t, -1, "SELECT count(*) FROM outbox_dead"), 1);
    assert_int_equal(wt_int(t, -1,
                            "SELECT count(*) FROM pg_tables WHERE "
                            "schemaname = '%s' AND tablename = "
                            "'outbox_dead_letters'",
                            t->name),
                     0);
}

typedef struct open_job {
    wt *t;
    void *inst;
    obx_status st;
    char err[OBX_ERRSTR_LEN];
} open_job;

static void *open_main(void *arg)
{
    open_job *j = arg;
    j->st = wt_try_open(j->t, NULL, &j->inst, j->err, sizeof j->err);
    return NULL;
}

/* Whether a slot streams everything committed from now on: what a script
 * (or the chaos suite's pg_wal_ready, tests/chaos/chaos_stores.c) may wait
 * for before writing. Not the row's existence: pg_replication_slots lists
 * a slot as soon as its creation begins, and creation then waits for a
 * consistent point; confirmed_flush_lsn stays NULL until it has one. */
static bool slot_streams_from_now(wt *t)
{
    return wt_int(t, 0,
                  "SELECT count(*) FROM pg_replication_slots WHERE "
                  "slot_name = '%s' AND confirmed_flush_lsn IS NOT NULL",
                  t->name) == 1;
}

/* The chaos loss (issue: pg_wal lost the first ~35 committed events of 1
 * run in 6): the writers started when the slot's row appeared, while the
 * relay's pg_create_logical_replication_slot still waited for a
 * transaction of another session to end. What they committed meanwhile
 * lies before the slot's consistent point and is never streamed, by
 * PostgreSQL's design. The interleaving, made deterministic by holding a
 * transaction open across the slot's creation: an event committed then is
 * not streamed, the readiness check says so, and once it says ready every
 * commit is streamed. */
static void test_slot_ready_only_when_consistent(void **state)
{
    wt *t = *state;
    PGconn *blocker = PQconnectdb(t->conninfo);
    assert_int_equal(PQstatus(blocker), CONNECTION_OK);
    /* an xid the slot's snapshot must see finish */
    PGresult *r = PQexec(blocker, "BEGIN; SELECT pg_current_xact_id()");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    open_job job = {.t = t};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_main, &job), 0);
    int64_t end = wt_mono_ms() + 10000;
    while (wt_int(t, 0,
                  "SELECT count(*) FROM pg_replication_slots WHERE "
                  "slot_name = '%s'",
                  t->name) == 0) {
        if (wt_mono_ms() > end)
            fail_msg("the slot's creation did not begin in 10 s");
        wt_sleep_ms(10);
    }
    /* the row is there; creation waits for the blocker */
    bool ready_early = slot_streams_from_now(t);
    wt_insert(t, "k", "During", "d");
    r = PQexec(blocker, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(blocker);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (job.st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(job.st), job.err);
    assert_true(slot_streams_from_now(t));
    wt_insert(t, "k", "After", "a");
    obx_event *ev[MAXEV];
    bool during = false, after = false;
    end = wt_mono_ms() + 5000;
    while (!after && wt_mono_ms() < end) {
        size_t n = wt_claim(t, job.inst, ev, MAXEV, 1, 500);
        for (size_t i = 0; i < n; i++) {
            during |= strcmp(ev[i]->event_type, "During") == 0;
            after |= strcmp(ev[i]->event_type, "After") == 0;
        }
        settle_all(t, job.inst, ev, n);
    }
    assert_true(after);
    if (ready_early && !during)
        fail_msg("the slot looked ready while its creation still waited, "
                 "and an event committed then was never streamed");
    /* the window this test is about was really open */
    assert_false(ready_early);
    assert_false(during);
    t->ops->close(job.inst);
}

/* Relays that start together on a new database (a hot standby beside
 * its active relay, say): every one opens. The publication and the slot
 * are made once; before they were made under a lock, one relay failed on
 * the other's publication (duplicate key) or found it without its slot
 * yet and stopped, taking the slot for lost. */
typedef struct together {
    open_job job;
    pthread_barrier_t *go;
} together;

static void *open_together(void *arg)
{
    together *g = arg;
    pthread_barrier_wait(g->go);
    return open_main(&g->job);
}

static void open_together_once(wt *t)
{
    enum { N = 6 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    together g[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        g[i] = (together){.job = {.t = t}, .go = &go};
        assert_int_equal(pthread_create(&th[i], NULL, open_together, &g[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N; i++)
        if (g[i].job.st != OBX_OK)
            fail_msg("open %d of %d: %s: %s", i + 1, N,
                     obx_status_name(g[i].job.st), g[i].job.err);
    /* one of them streams what is written now */
    wt_insert(t, "k", "E", "1");
    obx_event *ev[MAXEV];
    size_t got = 0;
    int64_t end = wt_mono_ms() + 5000;
    while (got == 0 && wt_mono_ms() < end)
        for (int i = 0; i < N && got == 0; i++) {
            got = wt_claim(t, g[i].job.inst, ev, MAXEV, 0, 0);
            settle_all(t, g[i].job.inst, ev, got);
        }
    assert_int_equal(got, 1);
    for (int i = 0; i < N; i++)
        t->ops->close(g[i].job.inst);
}

/* A race: without the lock one round in five or so passed; three rounds
 * on fresh names make a miss unlikely. */
static void test_first_open_together(void **state)
{
    open_together_once(*state);
    for (int round = 0; round < 2; round++) {
        wt *u = wt_new();
        open_together_once(u);
        wt_free(u);
    }
}

/* A server that stops answering without closing anything (a hung
 * server, a dead middlebox: no FIN, no RST, TCP keepalives answered by
 * the box in between), played by tests/support/tcp_proxy: the stream and
 * the SQL session each notice within store.query_timeout and say
 * OBX_UNAVAILABLE instead of waiting forever; once the server answers
 * again (on new connections: the stalled ones stay dead), streaming goes
 * on where it was. */
static void test_stalled_server_noticed(void **state)
{
    wt *t = *state;
    const char *port = strstr(t->server, "port=");
    assert_non_null(port);
    tp_proxy *p = tp_start("127.0.0.1", atoi(port + 5));
    char ci[1400];
    snprintf(ci, sizeof ci, "%s host=127.0.0.1 port=%d", t->conninfo,
             tp_port(p));
    pgw_config conf = t->conf;
    conf.conninfo = ci;
    conf.query_timeout_ms = 2000;
    void *inst = wt_open(t, &conf);
    obx_event *ev[MAXEV];
    wt_insert(t, "k", "E", "1");
    size_t n = wt_claim(t, inst, ev, MAXEV, 1, 5000);
    assert_int_equal(n, 1);
    wt_ack(t, inst, ev, n);

    tp_set_mode(p, TP_STALL, 0);
    wt_insert(t, "k", "E", "2"); /* the writer's own connection */
    char err[OBX_ERRSTR_LEN] = "";
    int64_t t0 = wt_mono_ms();
    obx_status rc;
    do {
        rc = t->ops->claim(inst, ev, MAXEV, &n, 200, err, sizeof err);
        assert_int_equal(n, 0);
    } while (rc == OBX_OK && wt_mono_ms() - t0 < 10000);
    int64_t stream_ms = wt_mono_ms() - t0;
    if (rc != OBX_UNAVAILABLE)
        fail_msg("the stalled stream went unnoticed for %lld ms (%s: %s)",
                 (long long)stream_ms, obx_status_name(rc), err);
    assert_true(stream_ms <= conf.query_timeout_ms + 1000);
    assert_non_null(strstr(err, "sent nothing"));

    /* the SQL session is just as stalled */
    obx_store_stats st = {.struct_size = sizeof st};
    t0 = wt_mono_ms();
    rc = t->ops->stats(inst, &st, err, sizeof err);
    int64_t sql_ms = wt_mono_ms() - t0;
    assert_int_equal(rc, OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "no answer from the server"));
    assert_true(sql_ms >= conf.query_timeout_ms - 100 &&
                sql_ms <= conf.query_timeout_ms + 1000);

    tp_abandon(p);
    tp_set_mode(p, TP_PASS, 0);
    int64_t end = wt_mono_ms() + 15000;
    n = 0;
    while (n == 0 && wt_mono_ms() < end) {
        rc = t->ops->claim(inst, ev, MAXEV, &n, 200, err, sizeof err);
        if (rc != OBX_OK)
            wt_sleep_ms(100);
    }
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->payload_len, 1);
    assert_memory_equal(ev[0]->payload, "2", 1);
    wt_ack(t, inst, ev, n);
    t->ops->close(inst);
    tp_stop(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_ready_only_when_consistent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_watermark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_counts_unflushed_commits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_leaves_the_slot_confirmed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_broken_after_taking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_slot_advances, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_standby, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standby_then_slot_gone_fails,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_recovery_is_redone,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_slot_loss_lists_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_lost_and_recover, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bounded_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_fills_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_default_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_held_and_behind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_demo_other_orders_table, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_existing_table_left_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_table_columns_checked_at_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_dead_table_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_first_open_together, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_server_noticed, setup,
                                        teardown),
        /* last: the schema and slot names count the tests before them,
         * and a longer name pushed the slot-lost hint past the error
         * buffer (issue 15 item 4) */
        cmocka_unit_test_setup_teardown(test_messages_as_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_docs_envelope_example, setup,
                                        teardown),
    };
    /* WT_FILTER=test_default_slot runs just that test */
    if (getenv("WT_FILTER"))
        cmocka_set_test_filter(getenv("WT_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
