/* The pg_poll store plugin, loaded from the build tree as the core loads
 * it, driven through its ops against the private test PostgreSQL. A raw
 * libpq connection plays the application that writes the outbox; a second
 * one plays another relay where a test needs it. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <cmocka.h>

#include "pg_sql.h"
#include "pg_testlib.h"
#include "support.h"
#include "tcp_proxy.h"

#define ERRBUF char err[OBX_ERRSTR_LEN] = ""
#define HOUR_US (3600LL * 1000000)

static int setup(void **state)
{
    *state = pgt_new();
    return 0;
}

static int teardown(void **state)
{
    pgt_free(*state);
    return 0;
}

static int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdef", s[i])) {
            return 0;
        }
    }
    return s[14] == '4';
}

static const obx_header *find_header(const obx_event *e, const char *name)
{
    for (size_t i = 0; i < e->n_headers; i++)
        if (strcmp(e->headers[i].name, name) == 0)
            return &e->headers[i];
    return NULL;
}

static void claim_ids(pgt *t, void *s, size_t max, const int64_t *want,
                      size_t n_want, obx_event **ev)
{
    size_t n = pgt_claim(t, s, ev, max);
    if (n != n_want)
        fail_msg("claimed %zu events, expected %zu", n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ev[i]->pos.seq, want[i]);
}

/* The event rows a claim holds (one claims row per batch, pgp_claim_sql)
 * as "o", with their claim's owner and expiry: append a WHERE. */
#define LEASED                                                                 \
    "FROM outbox AS o JOIN (SELECT unnest(ids) AS id, owner, expires_at "      \
    "FROM outbox_claims) AS l ON l.id = o.id "

/* Nothing left to publish. */
static void assert_all_published(pgt *t)
{
    assert_int_equal(
        pgt_int(t, -1,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"),
        0);
}

static void release_one(pgt *t, void *s, obx_event *e, int64_t at, bool counts,
                        const char *error)
{
    ERRBUF;
    obx_release r = {e, at, error, counts};
    obx_status st = t->ops->release(s, &r, 1, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("release: %s", err);
}

/* ---- descriptor and options ---- */

static const obx_option *find_opt(const obx_plugin *p, const char *name)
{
    for (const obx_option *o = p->options; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void test_descriptor(void **state)
{
    pgt *t = *state;
    const obx_plugin *p = t->plugin;
    assert_int_equal(p->kind, OBX_PLUGIN_STORE);
    assert_string_equal(p->name, "pg_poll");
    assert_int_equal(p->config_size, sizeof(pgp_config));
    assert_int_equal(t->ops->flags, OBX_STORE_ORDERED_CLAIM);
    struct {
        const char *name;
        obx_opt_type type;
        const char *def;
        size_t off;
    } want[] = {
        {"conninfo", OBX_OPT_STRING, "", offsetof(pgp_config, conninfo)},
        {"table", OBX_OPT_STRING, "outbox", offsetof(pgp_config, table)},
        {"schema", OBX_OPT_STRING, "", offsetof(pgp_config, schema)},
        {"ack_mode", OBX_OPT_ENUM, "mark", offsetof(pgp_config, ack_mode)},
        {"lease", OBX_OPT_DURATION, "60s", offsetof(pgp_config, lease_ms)},
        {"retention", OBX_OPT_DURATION, "7d",
         offsetof(pgp_config, retention_ms)},
        {"create_schema", OBX_OPT_BOOL, "true",
         offsetof(pgp_config, create_schema)},
        {"owner", OBX_OPT_STRING, NULL, offsetof(pgp_config, owner)},
        {"listen", OBX_OPT_BOOL, "true", offsetof(pgp_config, listen)},
        {"channel", OBX_OPT_STRING, NULL, offsetof(pgp_config, channel)},
        {"notify_trigger", OBX_OPT_BOOL, "true",
         offsetof(pgp_config, notify_trigger)},
        {"column", OBX_OPT_PREFIX, NULL, offsetof(pgp_config, column)},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const obx_option *o = find_opt(p, want[i].name);
        assert_non_null(o);
        assert_int_equal(o->type, want[i].type);
        assert_int_equal(o->offset, want[i].off);
        if (want[i].def)
            assert_string_equal(o->def, want[i].def);
        assert_non_null(o->description);
    }
    assert_true(find_opt(p, "conninfo")->flags & OBX_OPT_SECRET);
    const obx_option *am = find_opt(p, "ack_mode");
    assert_string_equal(am->enum_values[0], "mark");
    assert_string_equal(am->enum_values[1], "delete");
    assert_null(am->enum_values[2]);
}

/* ---- the writer's side ---- */

static void test_plain_insert(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) SELECT 'order', g::text, 'Created', "
                "'{}' FROM generate_series(1, 200) g");
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(DISTINCT event_id) FROM "
                             "outbox"),
                     200);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "abs(extract(epoch FROM now() - "
                             "created_at)) < 60 AND attempts = 0 AND "
                             "next_attempt_at = '-infinity' AND "
                             "locked_by IS NULL AND locked_until IS "
                             "NULL AND published_at IS NULL AND "
                             "dead_at IS NULL AND payload = '{}'"),
                     200);
    PGresult *r = PQexec(pgt_db(t), "SELECT event_id FROM outbox LIMIT 5");
    for (int i = 0; i < PQntuples(r); i++)
        if (!is_uuid(PQgetvalue(r, i, 0)))
            fail_msg("not a uuid v4: %s", PQgetvalue(r, i, 0));
    PQclear(r);
    /* headers must be a JSON object: a bad write fails in the writer's own
     * transaction instead of poisoning the relay later */
    r = PQexec(pgt_db(t), "INSERT INTO outbox (aggregate_type, aggregate_id, "
                          "event_type, payload, headers) VALUES "
                          "('o', '1', 'X', 'p', '[1,2]')");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    t->ops->close(s);
}

/* The writer's INSERT of one event with its own event_id: "" when it
 * committed, else the SQLSTATE that refused it. */
static const char *insert_event_id(pgt *t, const char *event_id, char state[6])
{
    const char *p[1] = {event_id};
    PGresult *r = PQexecParams(pgt_db(t),
                               "INSERT INTO outbox (event_id, aggregate_type, "
                               "aggregate_id, event_type, payload) VALUES "
                               "($1, 'order', 'k', 'Created', 'p')",
                               1, NULL, p, NULL, NULL, 0);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s",
             PQresultStatus(r) == PGRES_COMMAND_OK ? ""
             : code                                ? code
                                                   : "?");
    PQclear(r);
    return state;
}

/* event_id is unique among the events not yet published: a writer's
 * duplicate of a pending or dead event is refused in its own
 * transaction. A published row leaves the unique index (so the ack
 * writes no entry into it), and its id may come again, as it may after
 * retention or with ack_mode = delete. */
static void test_event_id_unique_until_published(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    char st[6];
    assert_string_equal(insert_event_id(t, "e-1", st), "");
    assert_string_equal(insert_event_id(t, "e-1", st), "23505");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    ERRBUF;
    obx_burial bu = {ev[0], "rejected", NULL};
    assert_int_equal(t->ops->bury(s, &bu, 1, err, sizeof err), OBX_OK);
    assert_string_equal(insert_event_id(t, "e-1", st), "23505"); /* dead */
    uint64_t count = 0;
    assert_int_equal(t->ops->dead_requeue(s, "e-1", &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    assert_string_equal(ev[0]->event_id, "e-1");
    pgt_ack(t, s, ev, 1);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL"),
                     1);
    assert_string_equal(insert_event_id(t, "e-1", st), "");
    assert_string_equal(insert_event_id(t, "e-1", st), "23505");
    t->ops->close(s);
}

/* ---- claim ---- */

static void test_claim_fields(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_exec(t, "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, "
                "event_type, payload, topic, headers, created_at) VALUES "
                "('ev-1', 'order', 'o-7', 'OrderPaid', '\\x00010203ff00', "
                "'orders.paid', '{\"trace\":\"abc\",\"tenant\":\"t1\","
                "\"n\":5,\"ok\":true}', to_timestamp(1.234567))");
    int64_t t0 = pgt_now_us();
    int64_t id2 = pgt_insert(t, "o-8", "{\"a\":1}");
    obx_event *ev[8];
    assert_int_equal(pgt_claim(t, s, ev, 8), 2);

    obx_event *a = ev[0];
    assert_string_equal(a->event_id, "ev-1");
    assert_string_equal(a->aggregate_type, "order");
    assert_string_equal(a->aggregate_id, "o-7");
    assert_string_equal(a->key, "o-7");
    assert_string_equal(a->event_type, "OrderPaid");
    assert_string_equal(a->topic, "orders.paid");
    assert_int_equal(a->payload_len, 6);
    assert_memory_equal(a->payload, "\x00\x01\x02\x03\xff\x00", 6);
    assert_int_equal(a->created_at_us, 1234567);
    assert_int_equal(a->attempts, 0);
    assert_int_equal(a->n_headers, 4);
    assert_string_equal(find_header(a, "trace")->value, "abc");
    assert_string_equal(find_header(a, "tenant")->value, "t1");
    assert_string_equal(find_header(a, "n")->value, "5");
    assert_string_equal(find_header(a, "ok")->value, "true");

    obx_event *b = ev[1];
    assert_int_equal(b->pos.seq, (uint64_t)id2);
    assert_true(a->pos.seq < b->pos.seq);
    assert_true(is_uuid(b->event_id));
    assert_null(b->topic);
    assert_int_equal(b->n_headers, 0);
    assert_int_equal(b->payload_len, 7);
    assert_memory_equal(b->payload, "{\"a\":1}", 7);
    assert_true(b->created_at_us >= t0 - 1000000 &&
                b->created_at_us <= pgt_now_us() + 1000000);
    /* the rows are leased to us, for `lease` by the database's clock */
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) " LEASED
                             "WHERE l.owner LIKE '%%:%d' AND l.expires_at "
                             "BETWEEN now() + interval '59 s' AND "
                             "now() + interval '61 s'",
                             (int)getpid()),
                     2);
    /* and claimed once only */
    assert_int_equal(pgt_claim(t, s, ev, 8), 0);
    pgt_ack(t, s, ev, 2);
    t->ops->close(s);
}

static void test_claim_max(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    int64_t id[11];
    char key[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        id[i] = pgt_insert(t, key, "x");
    }
    obx_event *ev[16];
    claim_ids(t, s, 3, (int64_t[]){id[1], id[2], id[3]}, 3, ev);
    pgt_ack(t, s, ev, 3);
    claim_ids(t, s, 4, (int64_t[]){id[4], id[5], id[6], id[7]}, 4, ev);
    pgt_ack(t, s, ev, 4);
    claim_ids(t, s, 16, (int64_t[]){id[8], id[9], id[10]}, 3, ev);
    pgt_ack(t, s, ev, 3);
    t->ops->close(s);
}

/* Per-key hold-back (A1 B1 A2 B2 A3, a released head waiting for its
 * retry, a dead head): tests/contract, check claim_holds_keys. */

/* Another relay's batch in flight: its claims row holds A1, so neither
 * A1 nor the later rows of key A may be taken, while B and C flow. A head
 * leased in the row by a relay of an earlier version (locked_until) holds
 * its key back as well; a dead head does not. (A claim in progress at
 * another relay holds the claim lock, so ours waits for it:
 * test_late_commit_during_claim.) */
static void test_claim_key_order_across_relays(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    int64_t a1 = pgt_insert(t, "A", "x"), b1 = pgt_insert(t, "B", "x");
    int64_t a2 = pgt_insert(t, "A", "x"), c1 = pgt_insert(t, "C", "x");
    int64_t a3 = pgt_insert(t, "A", "x");
    pgt_exec(t,
             "INSERT INTO outbox_claims VALUES (1, 'other', now() + "
             "interval '1 hour', '{%lld}', '{A}')",
             (long long)a1);
    obx_event *ev[8];
    claim_ids(t, s, 8, (int64_t[]){b1, c1}, 2, ev);
    pgt_ack(t, s, ev, 2);
    /* the same lease, as a relay of an earlier version wrote it */
    pgt_exec(t, "DELETE FROM outbox_claims");
    pgt_exec(t,
             "UPDATE outbox SET locked_by = 'other', locked_until "
             "= now() + interval '1 hour' WHERE id = %lld",
             (long long)a1);
    claim_ids(t, s, 8, NULL, 0, ev);
    /* A1 is dead-lettered: a dead head no longer holds its key back */
    pgt_exec(t,
             "UPDATE outbox SET dead_at = now(), locked_by = NULL, "
             "locked_until = NULL WHERE id = %lld",
             (long long)a1);
    claim_ids(t, s, 8, (int64_t[]){a2, a3}, 2, ev);
    pgt_ack(t, s, ev, 2);
    t->ops->close(s);
}

/* A transaction on a connection of its own that inserts n events of key
 * K (event_type 'Late') and stays open: its rows take ids now and commit
 * when the test says (COMMIT on the returned connection). */
static PGconn *late_events(pgt *t, int n)
{
    PGconn *late = pgt_connect(t);
    pgt_exec_on(late, "BEGIN");
    pgt_exec_on(late,
                "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) SELECT 'o', 'K', 'Late', 'l' FROM "
                "generate_series(1, %d)",
                n);
    return late;
}

/* A transaction takes a lower id but commits after a higher one of the
 * same key was claimed: it is still published, and not before the event
 * in flight (commit order). */
static void test_late_commit(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    PGconn *late = pgt_connect(t);
    pgt_exec_on(late, "BEGIN");
    pgt_exec_on(late, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                      "event_type, payload) VALUES ('o', 'K', 'Late', 'l'), "
                      "('o', 'L', 'Late', 'l')");
    int64_t k2 = pgt_insert(t, "K", "x");
    obx_event *ev[8], *inflight;
    claim_ids(t, s, 8, (int64_t[]){k2}, 1, ev);
    inflight = ev[0];
    pgt_exec_on(late, "COMMIT");
    int64_t k1 = pgt_int(t, -1,
                         "SELECT id FROM outbox WHERE aggregate_id = "
                         "'K' AND event_type = 'Late'");
    int64_t l1 = pgt_int(t, -1,
                         "SELECT id FROM outbox WHERE aggregate_id = "
                         "'L'");
    assert_true(k1 < k2);
    /* L flows at once; K's late event waits for the one in flight */
    claim_ids(t, s, 8, (int64_t[]){l1}, 1, ev);
    pgt_ack(t, s, ev, 1);
    pgt_ack(t, s, &inflight, 1);
    claim_ids(t, s, 8, (int64_t[]){k1}, 1, ev);
    pgt_ack(t, s, ev, 1);
    assert_all_published(t);
    PQfinish(late);
    t->ops->close(s);
}

/* A claim runs in a thread so that the test can hold it inside the
 * database at a chosen point. */
typedef struct claim_job {
    pgt *t;
    void *inst;
    obx_event *ev[8];
    size_t n;
    obx_status st;
    char err[OBX_ERRSTR_LEN];
    atomic_bool done;
} claim_job;

static void *claim_job_run(void *arg)
{
    claim_job *j = arg;
    j->n = 0;
    j->st =
        j->t->ops->claim(j->inst, j->ev, 8, &j->n, 0, j->err, sizeof j->err);
    atomic_store(&j->done, true);
    return NULL;
}

/* Sessions of this test waiting for an advisory lock. */
static int64_t advisory_waiters(pgt *t)
{
    return pgt_int(t, -1,
                   "SELECT count(*) FROM pg_stat_activity WHERE "
                   "application_name = current_setting('application_name') "
                   "AND wait_event_type = 'Lock' AND wait_event = 'advisory'");
}

/* The interleaving that used to publish a late event alongside its
 * successor: relay 1's claim has leased K2 but not committed when K1 (a
 * lower id of the same key, committed late) becomes visible and relay 2
 * claims. Relay 2's snapshot cannot see relay 1's lease and SKIP LOCKED
 * hides K2, so nothing in that statement alone tells it K1 has a
 * successor in flight. A trigger holds relay 1's claim open inside its
 * statement (as it writes its claims row, after it chose K2) until the
 * test lets it go. */
static void test_late_commit_during_claim(void **state)
{
    pgt *t = *state;
    pgp_config c1 = t->conf, c2 = t->conf;
    c1.owner = (char *)"relay1";
    c2.owner = (char *)"relay2";
    void *s1 = pgt_open(t, &c1), *s2 = pgt_open(t, &c2);
    pgt_exec(t, "CREATE FUNCTION hold_relay1() RETURNS trigger LANGUAGE "
                "plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4242); "
                "PERFORM pg_advisory_unlock(4242); RETURN NEW; END $$");
    pgt_exec(t, "CREATE TRIGGER hold_relay1 BEFORE INSERT ON outbox_claims "
                "FOR EACH ROW WHEN (NEW.owner = 'relay1') EXECUTE FUNCTION "
                "hold_relay1()");
    PGconn *late = pgt_connect(t), *gate = pgt_connect(t);
    pgt_exec_on(late, "BEGIN");
    pgt_exec_on(late, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                      "event_type, payload) VALUES ('o', 'K', 'Late', 'l')");
    int64_t k2 = pgt_insert(t, "K", "x");
    pgt_exec_on(gate, "SELECT pg_advisory_lock(4242)");

    claim_job j1 = {.t = t, .inst = s1}, j2 = {.t = t, .inst = s2};
    pthread_t th1, th2;
    assert_int_equal(pthread_create(&th1, NULL, claim_job_run, &j1), 0);
    for (int i = 0; i < 500 && advisory_waiters(t) < 1; i++)
        pgt_sleep_ms(10);
    assert_int_equal(advisory_waiters(t), 1); /* relay 1 holds K2 */
    pgt_exec_on(late, "COMMIT");
    assert_int_equal(pthread_create(&th2, NULL, claim_job_run, &j2), 0);
    /* relay 2 either finishes (the old behaviour) or queues behind
     * relay 1's claim */
    for (int i = 0;
         i < 500 && !atomic_load(&j2.done) && advisory_waiters(t) < 2; i++)
        pgt_sleep_ms(10);
    pgt_exec_on(gate, "SELECT pg_advisory_unlock(4242)");
    pthread_join(th1, NULL);
    pthread_join(th2, NULL);
    if (j1.st != OBX_OK || j2.st != OBX_OK)
        fail_msg("claims: %s / %s", j1.err, j2.err);
    assert_int_equal(j1.n, 1);
    assert_int_equal(j1.ev[0]->pos.seq, k2);
    /* K1 must wait until K2 is settled */
    if (j2.n != 0)
        fail_msg("relay 2 claimed id %lld (key %s) while K2 (id %lld) was "
                 "in flight at relay 1",
                 (long long)j2.ev[0]->pos.seq, j2.ev[0]->key, (long long)k2);
    pgt_ack(t, s1, j1.ev, 1);
    obx_event *ev[8];
    int64_t k1 =
        pgt_int(t, -1, "SELECT id FROM outbox WHERE event_type = 'Late'");
    claim_ids(t, s2, 8, (int64_t[]){k1}, 1, ev);
    pgt_ack(t, s2, ev, 1);
    PQfinish(late);
    PQfinish(gate);
    t->ops->close(s1);
    t->ops->close(s2);
}

typedef struct ack_job {
    pgt *t;
    void *inst;
    obx_event **ev;
    size_t n;
    obx_status st;
    char err[OBX_ERRSTR_LEN];
} ack_job;

static void *ack_job_run(void *arg)
{
    ack_job *j = arg;
    j->st = j->t->ops->ack(j->inst, j->ev, j->n, j->err, sizeof j->err);
    return NULL;
}

/* Sessions of this test waiting for a row or transaction lock. */
static int64_t row_lock_waiters(pgt *t)
{
    return pgt_int(t, -1,
                   "SELECT count(*) FROM pg_stat_activity WHERE "
                   "application_name = current_setting('application_name') "
                   "AND wait_event_type = 'Lock' AND wait_event IN "
                   "('transactionid', 'tuple')");
}

/* A relay acks a batch whose claim has just expired while another relay
 * takes the claim over: the takeover deletes the claims row and then
 * updates the rows; the ack must take its locks in that order too (the
 * claims row first), or each waits for the other until the server's
 * deadlock check (1 s) aborts one of them. A trigger holds the ack after
 * its first row until the takeover is waiting. */
static void test_ack_during_takeover(void **state)
{
    pgt *t = *state;
    pgp_config slow = t->conf;
    slow.owner = (char *)"slow";
    slow.lease_ms = 100;
    void *sa = pgt_open(t, &slow), *sb = pgt_open(t, NULL);
    pgt_insert(t, "k1", "x");
    int64_t second = pgt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(pgt_claim(t, sa, ev, 4), 2);
    pgt_exec(t, "CREATE FUNCTION hold_ack() RETURNS trigger LANGUAGE "
                "plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4243); "
                "PERFORM pg_advisory_unlock(4243); RETURN NEW; END $$");
    pgt_exec(t,
             "CREATE TRIGGER hold_ack BEFORE UPDATE ON outbox FOR EACH ROW "
             "WHEN (OLD.published_at IS NULL AND NEW.published_at IS NOT "
             "NULL AND NEW.id = %lld) EXECUTE FUNCTION hold_ack()",
             (long long)second);
    PGconn *gate = pgt_connect(t);
    pgt_exec_on(gate, "SELECT pg_advisory_lock(4243)");
    pgt_sleep_ms(150); /* the slow relay's claim has expired */
    ack_job a = {.t = t, .inst = sa, .ev = ev, .n = 2};
    claim_job b = {.t = t, .inst = sb};
    pthread_t tha, thb;
    assert_int_equal(pthread_create(&tha, NULL, ack_job_run, &a), 0);
    for (int i = 0; i < 500 && advisory_waiters(t) < 1; i++)
        pgt_sleep_ms(10);
    assert_int_equal(advisory_waiters(t), 1); /* the ack holds k1's row */
    assert_int_equal(pthread_create(&thb, NULL, claim_job_run, &b), 0);
    for (int i = 0; i < 500 && row_lock_waiters(t) < 1; i++)
        pgt_sleep_ms(10);
    assert_int_equal(row_lock_waiters(t), 1); /* the takeover waits */
    pgt_exec_on(gate, "SELECT pg_advisory_unlock(4243)");
    pthread_join(tha, NULL);
    pthread_join(thb, NULL);
    if (a.st != OBX_OK || b.st != OBX_OK)
        fail_msg("ack: %s %s / claim: %s %s", obx_status_name(a.st), a.err,
                 obx_status_name(b.st), b.err);
    for (size_t i = 0; i < b.n; i++) /* taken over before the ack landed */
        pgt_ack(t, sb, &b.ev[i], 1);
    assert_all_published(t);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    PQfinish(gate);
    t->ops->close(sb);
    t->ops->close(sa);
}

/* Claim order outlives a lease: K2 is claimed and its relay dies (the
 * lease runs out unpublished); K1, a lower id of the same key, commits
 * only then. K2 was visible to a claim K1 was not, so K2 committed first
 * and must go out first, although both are pending and K1's id is lower.
 * The same after a retry: a row that came back precedes a row of its key
 * that no claim has seen. */
static void test_claim_order_survives_expired_lease(void **state)
{
    pgt *t = *state;
    pgp_config dead = t->conf, live = t->conf;
    dead.owner = (char *)"dead-relay";
    dead.lease_ms = 200;
    live.owner = (char *)"live-relay";
    void *s1 = pgt_open(t, &dead), *s2 = pgt_open(t, &live);
    PGconn *late = late_events(t, 1);
    int64_t k2 = pgt_insert(t, "K", "x");
    obx_event *ev[8];
    claim_ids(t, s1, 8, (int64_t[]){k2}, 1, ev);
    /* the relay that holds K2 is gone; K1 commits while K2 is leased */
    pgt_exec_on(late, "COMMIT");
    int64_t k1 =
        pgt_int(t, -1, "SELECT id FROM outbox WHERE event_type = 'Late'");
    assert_true(k1 < k2);
    claim_ids(t, s2, 8, NULL, 0, ev); /* K2's lease holds the key */
    pgt_sleep_ms(300);
    /* both pending now: K2 first, in one batch, although k1 < k2 */
    claim_ids(t, s2, 8, (int64_t[]){k2, k1}, 2, ev);
    /* K2 fails and is retried: it still goes before K1 */
    release_one(t, s2, ev[0], pgt_now_us(), true, "nack");
    release_one(t, s2, ev[1], pgt_now_us(), false, "held");
    claim_ids(t, s2, 8, (int64_t[]){k2, k1}, 2, ev);
    pgt_ack(t, s2, ev, 2);
    assert_all_published(t);
    PQfinish(late);
    t->ops->close(s2);
    t->ops->close(s1);
}

/* The claim order of a key whose rows came back, when a batch in id
 * order would end between them: K1 (never claimed, committed late) has a
 * lower id than K2 (claimed before, then released or its claim expired,
 * due again), and a batch of two in id order ends at X. K1 must wait for
 * K2: the rows that came back (both ways back mark them) go first. */
static void history_outside_batch(pgt *t, bool expire)
{
    pgp_config first = t->conf;
    first.owner = (char *)"first";
    first.lease_ms = 100;
    void *s1 = pgt_open(t, &first), *s = pgt_open(t, NULL);
    PGconn *late = late_events(t, 1);
    int64_t x = pgt_insert(t, "X", "x"), k2 = pgt_insert(t, "K", "x");
    obx_event *ev[8];
    claim_ids(t, s1, 8, (int64_t[]){x, k2}, 2, ev);
    if (expire) {
        pgt_sleep_ms(150); /* the first relay is gone */
    } else {
        release_one(t, s1, ev[0], pgt_now_us(), false, "back");
        release_one(t, s1, ev[1], pgt_now_us(), false, "back");
    }
    pgt_exec_on(late, "COMMIT");
    int64_t k1 =
        pgt_int(t, -1, "SELECT id FROM outbox WHERE event_type = 'Late'");
    assert_true(k1 < x && x < k2);
    /* the rows that came back first, in claim order; K1 after K2 */
    claim_ids(t, s, 2, (int64_t[]){x, k2}, 2, ev);
    pgt_ack(t, s, ev, 2);
    claim_ids(t, s, 2, &k1, 1, ev);
    pgt_ack(t, s, ev, 1);
    assert_all_published(t);
    PQfinish(late);
    t->ops->close(s);
    t->ops->close(s1);
}

static void test_claim_order_history_outside_batch(void **state)
{
    history_outside_batch(*state, false);
}

static void test_claim_order_expired_outside_batch(void **state)
{
    history_outside_batch(*state, true);
}

/* A late commit of more than a batch of one key's events, all below a
 * row of that key that came back: a scan in id order finds only rows
 * whose predecessor (the row that came back) lies outside it, and claimed
 * nothing, every time, while the rest of the table waited behind them.
 * The rows that came back are candidates whatever their id. */
static void test_claim_not_stuck_behind_late_batch(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    PGconn *late = late_events(t, 3);
    int64_t k2 = pgt_insert(t, "K", "x");
    obx_event *ev[8];
    claim_ids(t, s, 8, &k2, 1, ev);
    release_one(t, s, ev[0], pgt_now_us(), false, "back");
    pgt_exec_on(late, "COMMIT");
    int64_t k1 =
        pgt_int(t, -1, "SELECT min(id) FROM outbox WHERE event_type = 'Late'");
    claim_ids(t, s, 2, (int64_t[]){k2, k1}, 2, ev);
    pgt_ack(t, s, ev, 2);
    claim_ids(t, s, 8, (int64_t[]){k1 + 1, k1 + 2}, 2, ev);
    pgt_ack(t, s, ev, 2);
    assert_all_published(t);
    PQfinish(late);
    t->ops->close(s);
}

/* The buffers one claim of 50 touches, from EXPLAIN (ANALYZE, BUFFERS)
 * of the store's own claim statement as a generic plan prepared while
 * the table was empty: a relay that keeps up plans with a tiny pending
 * set, and its plan must stay good when an outage leaves a backlog. */
static long claim_buffers(pgt *t, PGconn *db)
{
    pgt_exec_on(db, "BEGIN");
    PGresult *r = PQexec(db, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                             "EXECUTE claim('test-owner', 50, 60000, '{}')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("explain: %s", PQerrorMessage(db));
    /* the first "Shared Hit Blocks" is the top node's: the whole claim */
    const char *j = PQgetvalue(r, 0, 0),
               *hit = strstr(j, "\"Shared Hit Blocks\": ");
    const char *read = strstr(j, "\"Shared Read Blocks\": ");
    assert_non_null(hit);
    assert_non_null(read);
    long n = atol(hit + 21) + atol(read + 22);
    PQclear(r);
    pgt_exec_on(db, "ROLLBACK");
    (void)t;
    return n;
}

/* Prepare the store's claim statement on db under plan_cache_mode mode. */
static void prepare_claim(pgt *t, PGconn *db, const char *mode)
{
    pgp_names names;
    ERRBUF;
    assert_int_equal(pgp_names_init(&names, &t->conf, err, sizeof err), 0);
    char *sql = pgp_sql_expand(&names, pgp_stmt_template(PGP_S_CLAIM, 0));
    assert_non_null(sql);
    pgt_exec_on(db, "SET plan_cache_mode = %s", mode);
    pgt_exec_on(db, "%s", pgp_session_sql); /* as the store's connection */
    PGresult *r = PQprepare(db, "claim", sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("prepare: %s", PQerrorMessage(db));
    PQclear(r);
    free(sql);
}

/* After an outage: 20,000 pending over 400 keys, 5,000 of them released
 * once (due again, but in the maybe-blocked index), 50 leased by the
 * batch in flight. Then one claim of 50 must stay a few probes per row
 * it takes (measured: about 2,000 buffers). */
static void assert_backlog_claim_bounded(pgt *t, PGconn *db, const char *what)
{
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) SELECT 'o', 'k' || (g %% 400), 'E', "
                "'x' FROM generate_series(1, 20000) AS g");
    pgt_exec(t, "UPDATE outbox SET next_attempt_at = now() - interval '1 s', "
                "claim_seq = 1 WHERE id IN (SELECT id FROM outbox WHERE "
                "published_at IS NULL ORDER BY id LIMIT 5000)");
    pgt_exec(t, "UPDATE outbox SET locked_by = 'other', locked_until = now() "
                "+ interval '1 h', claim_seq = 2 WHERE id IN (SELECT id FROM "
                "outbox ORDER BY id DESC LIMIT 50)");
    long n = claim_buffers(t, db);
    printf("%s: one claim of 50 with a backlog of 20,000: %ld buffers\n", what,
           n);
    if (n > 100 * 50)
        fail_msg("%s: one claim of 50 touched %ld buffers (bound %d): its "
                 "plan scales with the backlog",
                 what, n, 100 * 50);
}

/* The plans a relay that keeps up ends with, then a backlog. 1: a generic
 * plan made on the empty table (a prepared statement's after five runs):
 * as NOT EXISTS the blocked test became an anti join against a full index
 * scan per candidate (254,000 buffers). 2: statistics from a vacuum while
 * nothing was pending: the per-key probes scanned "the empty" pending
 * index (35,000 rows per candidate in the soak) until the pending index
 * was spelled apart from the key indexes (pg_schema.h), and then the
 * candidates were read with a bitmap scan and sorted, each tested against
 * its key (276,000) until the session turned bitmap scans off
 * (pgp_session_sql). */
static void test_claim_work_bounded_with_backlog(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL); /* creates the table */
    PGconn *db = pgt_connect(t);
    prepare_claim(t, db, "force_generic_plan");
    claim_buffers(t, db); /* plans on the empty table, and keeps the plan */
    assert_backlog_claim_bounded(t, db, "generic plan of the empty table");
    PQfinish(db);

    /* Rows that were never pending, not the first backlog marked
     * published: a snapshot of a test running beside this one in the
     * same database would keep those versions from the vacuum, and the
     * claim would then also read their dead index entries (7,400 buffers
     * where the plan takes 540). */
    pgt_exec(t, "TRUNCATE outbox");
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload, published_at) SELECT 'o', 'k' || "
                "(g %% 400), 'E', 'x', now() FROM generate_series(1, 20000) "
                "AS g");
    pgt_exec(t, "VACUUM ANALYZE outbox");
    db = pgt_connect(t);
    prepare_claim(t, db, "force_custom_plan");
    assert_backlog_claim_bounded(t, db, "statistics of an empty pending set");
    PQfinish(db);
    t->ops->close(s);
}

/* Every key has an event in flight (two relays, or claim_ahead, with
 * as many keys as a batch holds): the claim finds nothing, and must find
 * that out without an index probe for each pending row it passes, since
 * it holds the claim lock meanwhile and the relay whose batch is out
 * waits for it to claim its next one. With a probe of the key per
 * candidate this claim read about 3 buffers per pending row (609,000 for
 * a backlog of 200,000, 512 ms); with the blocked keys hashed once per
 * claim, one heap page per 20-odd rows. */
static void test_claim_with_every_key_in_flight_bounded(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) SELECT 'o', 'k' || (g %% 100), 'E', "
                "'x' FROM generate_series(1, 20000) AS g");
    pgt_exec(t, "UPDATE outbox SET locked_by = 'other', locked_until = now() "
                "+ interval '1 h', claim_seq = 1 WHERE id IN (SELECT min(id) "
                "FROM outbox GROUP BY aggregate_id)");
    pgt_exec(t, "VACUUM ANALYZE outbox");
    obx_event *ev[8];
    assert_int_equal(pgt_claim(t, s, ev, 8), 0); /* the store agrees */
    PGconn *db = pgt_connect(t);
    prepare_claim(t, db, "force_generic_plan");
    long n = claim_buffers(t, db);
    printf("an empty claim past 20,000 blocked rows: %ld buffers\n", n);
    if (n > 10000)
        fail_msg("an empty claim past 20,000 pending rows of blocked keys "
                 "touched %ld buffers (bound 10,000): it probes each row's key",
                 n);
    PQfinish(db);
    t->ops->close(s);
}

/* Another relay taking over expired leases, and the first one's late
 * release and bury leaving its claim alone: tests/contract, check
 * lease_expiry (the columns of a stale release: test_lease_token). */

/* The same relay re-claims an event whose lease ran out while its first
 * claim was still in flight: the stale copy's release must not touch the
 * new claim (the claim's id is the token), whose row keeps the owner's
 * lease and no retry columns. */
static void test_lease_token(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    c.lease_ms = 100;
    c.owner = (char *)"relay-t";
    void *s = pgt_open(t, &c);
    pgt_insert(t, "k", "x");
    obx_event *first[2], *second[2];
    assert_int_equal(pgt_claim(t, s, first, 2), 1);
    pgt_sleep_ms(150);
    assert_int_equal(pgt_claim(t, s, second, 2), 1);
    release_one(t, s, first[0], pgt_now_us() + HOUR_US, true, "stale");
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) " LEASED
                             "WHERE l.owner = 'relay-t' AND attempts = 0 "
                             "AND next_attempt_at <= now() AND "
                             "last_error IS NULL AND dead_at IS NULL"),
                     1);
    pgt_ack(t, s, second, 1);
    t->ops->close(s);
}

/* A batch settled in parts: a release of some of its events lets go of
 * their rows (the claims row keeps what it still holds), and the settle
 * of the last event deletes the claims row. */
static void test_settle_batch_in_parts(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    int64_t a = pgt_insert(t, "ka", "x"), b = pgt_insert(t, "kb", "x");
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){a, b}, 2, ev);
    release_one(t, s, ev[0], pgt_now_us() + HOUR_US, true, "later");
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 1);
    assert_int_equal(pgt_int(t, -1, "SELECT o.id " LEASED), b);
    pgt_ack(t, s, ev + 1, 1);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    t->ops->close(s);
}

/* A release whose reply is lost after it committed (here: the claims row
 * is locked, the store gives up after query_timeout and drops the
 * connection, the lock goes and the orphaned statement commits) is sent
 * again, as the engine does while its claim still holds other rows: the
 * attempt counts once. */
static void test_release_sent_twice_counts_once(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    c.query_timeout_ms = 300;
    void *s = pgt_open(t, &c);
    int64_t a = pgt_insert(t, "ka", "x"), b = pgt_insert(t, "kb", "x");
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){a, b}, 2, ev);
    PGconn *lk = pgt_connect(t);
    pgt_exec_on(lk, "BEGIN");
    pgt_exec_on(lk, "SELECT 1 FROM outbox_claims FOR UPDATE");
    ERRBUF;
    obx_release r = {ev[0], 0, "first", true};
    assert_int_equal(t->ops->release(s, &r, 1, err, sizeof err),
                     OBX_UNAVAILABLE);
    pgt_exec_on(lk, "COMMIT");
    PQfinish(lk);
    for (int i = 0; i < 200 && pgt_int(t, -1,
                                       "SELECT attempts FROM outbox WHERE "
                                       "id = %lld",
                                       (long long)a) == 0;
         i++)
        pgt_sleep_ms(10);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT attempts FROM outbox WHERE id = %lld",
                             (long long)a),
                     1);
    release_one(t, s, ev[0], 0, true, "again");
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = %lld "
                             "AND attempts = 1 AND last_error = 'first' "
                             "AND locked_by IS NULL",
                             (long long)a),
                     1);
    pgt_ack(t, s, ev + 1, 1);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    t->ops->close(s);
}

static void ack_mode_case(pgt *t, int mode)
{
    pgp_config c = t->conf;
    c.ack_mode = mode;
    void *s = pgt_open(t, &c);
    int64_t id1 = pgt_insert(t, "k1", "x"), id2 = pgt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(pgt_claim(t, s, ev, 4), 2);
    pgt_ack(t, s, ev, 1);
    if (mode == PGP_ACK_MARK) {
        assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 2);
        assert_int_equal(pgt_int(t, -1,
                                 "SELECT count(*) FROM outbox WHERE "
                                 "id = %lld AND locked_by IS NULL "
                                 "AND locked_until IS NULL AND "
                                 "published_at BETWEEN now() - "
                                 "interval '10 s' AND now()",
                                 (long long)id1),
                         1);
    } else {
        assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 1);
        assert_int_equal(pgt_int(t, -1, "SELECT id FROM outbox"), id2);
    }
    assert_int_equal(pgt_int(t, -1,
                             "SELECT (published_at IS NULL)::int "
                             "FROM outbox WHERE id = %lld",
                             (long long)id2),
                     1);
    t->ops->close(s);
    /* close returned the unsettled lease at once */
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    s = pgt_open(t, &c);
    assert_int_equal(pgt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, id2);
    pgt_ack(t, s, ev, 1);
    assert_int_equal(pgt_claim(t, s, ev, 4), 0);
    t->ops->close(s);
}

static void test_ack_mark(void **state)
{
    ack_mode_case(*state, PGP_ACK_MARK);
}

static void test_ack_delete(void **state)
{
    ack_mode_case(*state, PGP_ACK_DELETE);
}

/* Attempts, retry time and last error as each release asks, a release
 * without an error keeping the last one: tests/contract, check release.
 * Here: error text that is not UTF-8 or holds quotes still lands (the
 * invalid byte replaced). */
static void test_release_error_text(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    int64_t id = pgt_insert(t, "k1", "x");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    ERRBUF;
    obx_release r = {ev[0], 0, "bad \xff byte, \"quote\" \\ {x,y}", true};
    assert_int_equal(t->ops->release(s, &r, 1, err, sizeof err), OBX_OK);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = %lld "
                             "AND last_error = 'bad ? byte, \"quote\" \\ "
                             "{x,y}' AND attempts = 1 AND locked_by IS NULL",
                             (long long)id),
                     1);
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* The engine releases a retry for later; an idle claim wakes up when it is
 * due, without waiting the whole poll interval (no NOTIFY announces it). */
static void test_claim_wakes_for_retry(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_insert(t, "k", "x");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    release_one(t, s, ev[0], pgt_now_us() + 300 * 1000, true, "later");
    ERRBUF;
    size_t n = 0;
    int64_t t0 = pgt_mono_ms();
    assert_int_equal(t->ops->claim(s, ev, 2, &n, 5000, err, sizeof err),
                     OBX_OK);
    int64_t took = pgt_mono_ms() - t0;
    assert_int_equal(n, 1);
    if (took < 200 || took > 1500)
        fail_msg("claim returned after %lld ms", (long long)took);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* ---- dead letters ---- */

/* dead_list, dead_requeue and dead_purge: tests/contract, check dead_ops.
 * Here: the columns: a burial without a destination leaves it NULL, and a
 * requeue clears every dead column and makes the row due at once. */
static void test_dead_letter_columns(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    int64_t id = pgt_insert(t, "k1", "x");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    ERRBUF;
    char eid[64]; /* bury settles (and frees) the event */
    snprintf(eid, sizeof eid, "%s", ev[0]->event_id);
    ev[0]->attempts = 2;
    obx_burial bu = {ev[0], "rejected", NULL};
    assert_int_equal(t->ops->bury(s, &bu, 1, err, sizeof err), OBX_OK);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = %lld "
                             "AND dead_at IS NOT NULL AND dead_reason = "
                             "'rejected' AND dead_destination IS NULL AND "
                             "attempts = 2 AND locked_by IS NULL AND "
                             "locked_until IS NULL",
                             (long long)id),
                     1);
    uint64_t count = 0;
    assert_int_equal(t->ops->dead_requeue(s, eid, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = %lld "
                             "AND dead_at IS NULL AND dead_reason IS NULL "
                             "AND dead_destination IS NULL AND attempts = 0 "
                             "AND next_attempt_at = '-infinity'",
                             (long long)id),
                     1);
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* An outbox table made by hand: no NOT NULL on the writer's columns, no
 * CHECK on headers. `event_id_col` is pasted as SQL (quote it yourself). */
static void hand_made_table(pgt *t, const char *event_id_col,
                            const char *payload_type, const char *headers_type)
{
    pgt_exec(t,
             "CREATE TABLE outbox (id bigserial PRIMARY KEY, %s text, "
             "aggregate_type text, aggregate_id text, event_type text, "
             "payload %s, topic text, headers %s, created_at timestamptz "
             "DEFAULT now(), attempts int NOT NULL DEFAULT 0, "
             "next_attempt_at timestamptz NOT NULL DEFAULT '-infinity', "
             "locked_by text, locked_until timestamptz, published_at "
             "timestamptz, dead_at timestamptz, last_error text, "
             "dead_reason text, dead_destination text, claim_seq bigint)",
             event_id_col, payload_type, headers_type);
    pgt_exec(t, "CREATE TABLE outbox_claims (claim_id bigint PRIMARY KEY, "
                "owner text NOT NULL, expires_at timestamptz NOT NULL, ids "
                "bigint[] NOT NULL, keys text[] NOT NULL)");
}

/* Rows of a hand-made table (text headers, no CHECK) with unparsable
 * headers are dead-lettered at claim, not handed out half-filled; the
 * other rows flow. The payload may be a text column, too. */
static void test_poison_headers_text_payload(void **state)
{
    pgt *t = *state;
    hand_made_table(t, "event_id", "text", "text");
    pgt_exec(t, "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, "
                "event_type, payload, headers) VALUES "
                "('e1', 'o', 'k', 'T', 'p', 'not json'), "
                "('e2', 'o', 'k', 'T', 'p', '[1]'), "
                "('e3', 'o', 'k', 'T', 'plain \\ text', '{\"h\":\"v\"}')");
    pgp_config c = t->conf;
    c.create_schema = false;
    void *s = pgt_open(t, &c);
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){3}, 1, ev);
    assert_string_equal(ev[0]->headers[0].value, "v");
    assert_int_equal(ev[0]->payload_len, 12);
    assert_memory_equal(ev[0]->payload, "plain \\ text", 12);
    pgt_ack(t, s, ev, 1);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "dead_at IS NOT NULL AND dead_reason "
                             "LIKE '%%headers%%' AND locked_by IS "
                             "NULL"),
                     2);
    t->ops->close(s);
}

/* Issue 15 item 3: jsonb prints 1e-300 with 300 decimals and keeps
 * integers of any size; header values are carried as that text, not
 * parsed into doubles (which dead-lettered them, or printed 19.99 as
 * 19.989999999999998). Objects and arrays travel as compact JSON. */
static void test_header_numbers_as_written(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload, headers) VALUES ('o', 'k', 'T', 'p', "
                "'{\"d\": 1e-300, \"big\": 123456789012345678901234567890, "
                "\"p\": 19.99, \"t\": 42.00, \"o\": {\"a\": [1, 2.50]}, "
                "\"s\": \"caf\\u00e9\"}')");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    char tiny[320] = "0.";
    memset(tiny + 2, '0', 299);
    tiny[301] = '1';
    tiny[302] = '\0';
    assert_int_equal(ev[0]->n_headers, 6);
    assert_string_equal(find_header(ev[0], "d")->value, tiny);
    assert_string_equal(find_header(ev[0], "big")->value,
                        "123456789012345678901234567890");
    assert_string_equal(find_header(ev[0], "p")->value, "19.99");
    assert_string_equal(find_header(ev[0], "t")->value, "42.00");
    assert_string_equal(find_header(ev[0], "o")->value, "{\"a\":[1,2.50]}");
    assert_string_equal(find_header(ev[0], "s")->value, "caf\xc3\xa9");
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* Issue 15 item 5, pg_poll side: PostgreSQL text cannot hold a NUL, but
 * a hand-made table may allow NULL ids, keys and types. They used to
 * become "" (every NULL-id event the same id to a consumer that dedups):
 * now the row is dead-lettered at claim with the column named. */
static void test_null_text_columns(void **state)
{
    pgt *t = *state;
    hand_made_table(t, "\"the id\"", "bytea", "jsonb");
    pgt_exec(t, "INSERT INTO outbox (\"the id\", aggregate_type, "
                "aggregate_id, event_type, payload) VALUES "
                "(NULL, 'o', 'k1', 'T', 'p'), ('e2', 'o', NULL, 'T', 'p'), "
                "('e3', NULL, 'k3', 'T', 'p'), ('e4', 'o', 'k4', NULL, 'p'), "
                "('ok', 'o', 'k5', 'T', 'p')");
    /* another relay has a key in flight: a row without a key is still
     * taken (and dead-lettered), though NULL NOT IN a list is not true */
    pgt_exec(t, "INSERT INTO outbox_claims VALUES (1, 'other', now() + "
                "interval '1 hour', '{}', '{elsewhere}')");
    obx_kv cols[] = {{"event_id", "the id", 3}};
    pgp_config c = t->conf;
    c.create_schema = false;
    c.column = (obx_kvlist){cols, 1};
    void *s = pgt_open(t, &c);
    obx_event *ev[8];
    claim_ids(t, s, 8, (int64_t[]){5}, 1, ev);
    assert_string_equal(ev[0]->event_id, "ok");
    pgt_ack(t, s, ev, 1);
    static const char *const why[] = {
        "column \"the id\" is NULL", "column \"aggregate_id\" is NULL",
        "column \"aggregate_type\" is NULL", "column \"event_type\" is NULL"};
    for (int i = 0; i < 4; i++)
        if (pgt_int(t, -1,
                    "SELECT count(*) FROM outbox WHERE id = %d AND dead_at IS "
                    "NOT NULL AND locked_by IS NULL AND dead_reason = '%s'",
                    i + 1, why[i]) != 1)
            fail_msg("row %d is not dead with reason '%s'", i + 1, why[i]);
    t->ops->close(s);
}

static void test_jsonb_payload(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    pgt_exec(t, "ALTER TABLE outbox ALTER payload TYPE jsonb USING "
                "convert_from(payload, 'UTF8')::jsonb");
    t->ops->close(s);
    s = pgt_open(t, NULL); /* statements prepared for the new type */
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) VALUES ('o', 'k', 'T', "
                "'{\"a\": [1, 2]}')");
    obx_event *ev[2];
    assert_int_equal(pgt_claim(t, s, ev, 2), 1);
    assert_int_equal(ev[0]->payload_len, strlen("{\"a\": [1, 2]}"));
    assert_memory_equal(ev[0]->payload, "{\"a\": [1, 2]}", ev[0]->payload_len);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* ---- stats, retention ---- */

static void test_stats(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    ERRBUF;
    obx_store_stats ss = {.struct_size = sizeof ss};
    assert_int_equal(t->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.pending, 0);
    assert_int_equal(ss.oldest_pending_us, 0);
    assert_int_equal(ss.lag_bytes, -1);
    for (int i = 1; i <= 3; i++)
        pgt_exec(t,
                 "INSERT INTO outbox (aggregate_type, aggregate_id, "
                 "event_type, payload, created_at) VALUES "
                 "('o', 'k%d', 'T', 'p', now() - interval '%d min')",
                 i, 10 * (4 - i));
    assert_int_equal(t->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.pending, 3);
    assert_int_equal(ss.dead, 0);
    /* the oldest pending age, as the database sees it, on our clock */
    int64_t age = pgt_now_us() - ss.oldest_pending_us;
    assert_true(age >= 30LL * 60 * 1000000 - 5000000 &&
                age <= 30LL * 60 * 1000000 + 5000000);
    obx_event *ev[4];
    assert_int_equal(pgt_claim(t, s, ev, 1), 1);
    /* claimed but unsettled events are still pending */
    assert_int_equal(t->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.pending, 3);
    pgt_ack(t, s, ev, 1);
    assert_int_equal(t->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.pending, 2);
    age = pgt_now_us() - ss.oldest_pending_us;
    assert_true(age >= 20LL * 60 * 1000000 - 5000000 &&
                age <= 20LL * 60 * 1000000 + 5000000);
    /* an older caller's smaller struct: nothing written past its size */
    obx_store_stats small;
    memset(&small, 0x5a, sizeof small);
    small.struct_size = offsetof(obx_store_stats, lag_bytes);
    assert_int_equal(t->ops->stats(s, &small, err, sizeof err), OBX_OK);
    assert_int_equal(small.pending, 2);
    assert_int_equal(small.lag_bytes, 0x5a5a5a5a5a5a5a5aLL);
    t->ops->close(s);
}

static void test_retention(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    c.retention_ms = 3600 * 1000;
    /* 2300 old published, 300 recent published, 1 old dead, 1 pending */
    void *s = pgt_open(t, &c);
    pgt_exec(t, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                "event_type, payload) SELECT 'o', 'k', 'T', 'x' FROM "
                "generate_series(1, 2602)");
    int64_t base = pgt_int(t, -1, "SELECT min(id) - 1 FROM outbox");
    pgt_exec(t,
             "UPDATE outbox SET published_at = now() - interval '2 h' "
             "WHERE id <= %lld",
             (long long)base + 2300);
    pgt_exec(t,
             "UPDATE outbox SET published_at = now() WHERE id > %lld AND "
             "id <= %lld",
             (long long)base + 2300, (long long)base + 2600);
    pgt_exec(t,
             "UPDATE outbox SET dead_at = now() - interval '2 h' WHERE "
             "id = %lld",
             (long long)base + 2601);
    obx_event *ev[4];
    /* the first claim after open runs one batch of 1000 */
    assert_int_equal(pgt_claim(t, s, ev, 1), 1);
    assert_int_equal(ev[0]->pos.seq, base + 2602);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 1602);
    /* a full batch means more may be waiting: the next run comes soon */
    pgt_sleep_ms(80);
    assert_int_equal(pgt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 602);
    pgt_sleep_ms(80);
    assert_int_equal(pgt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    assert_int_equal(pgt_int(t, -1, "SELECT min(id) FROM outbox"), base + 2301);
    /* then it rests for seconds */
    pgt_exec(t,
             "UPDATE outbox SET published_at = now() - interval '2 h' "
             "WHERE id <= %lld",
             (long long)base + 2310);
    pgt_sleep_ms(80);
    assert_int_equal(pgt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);

    /* retention 0 and ack_mode=delete never delete published rows */
    c.retention_ms = 0;
    s = pgt_open(t, &c);
    assert_int_equal(pgt_claim(t, s, ev, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    t->ops->close(s);
    pgt_exec(t, "UPDATE outbox SET published_at = now() - interval '2 h' "
                "WHERE published_at IS NOT NULL");
    c.retention_ms = 3600 * 1000;
    c.ack_mode = PGP_ACK_DELETE;
    s = pgt_open(t, &c);
    assert_int_equal(pgt_claim(t, s, ev, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    t->ops->close(s);
    c.ack_mode = PGP_ACK_MARK;
    s = pgt_open(t, &c);
    assert_int_equal(pgt_claim(t, s, ev, 1), 0);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 1);
    t->ops->close(s);
}

/* ---- schema, identifiers, config errors ---- */

typedef struct sbuf {
    char text[32768];
    size_t len;
    int calls;
} sbuf;

static void emit_cb(void *ctx, const char *text)
{
    sbuf *b = ctx;
    size_t n = strlen(text);
    assert_true(b->len + n < sizeof b->text);
    memcpy(b->text + b->len, text, n + 1);
    b->len += n;
    b->calls++;
}

/* SQL without comments, whitespace collapsed. */
static char *normalize_sql(const char *in)
{
    char *out = malloc(strlen(in) + 1);
    size_t o = 0;
    int space = 0;
    for (const char *p = in; *p; p++) {
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
            if (!*p)
                break;
        }
        if (*p == ' ' || *p == '\n' || *p == '\t') {
            space = o > 0;
            continue;
        }
        if (space)
            out[o++] = ' ';
        space = 0;
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    char *buf = calloc(1, 1 << 17);
    size_t n = fread(buf, 1, (1 << 17) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_schema_default(void **state)
{
    pgt *t = *state;
    sbuf b = {0};
    pgp_config dc = t->conf;
    dc.channel = NULL; /* the default: the table name */
    assert_int_equal(t->ops->schema(t->host, &dc, emit_cb, &b), OBX_OK);
    assert_non_null(strstr(b.text, "CREATE TABLE IF NOT EXISTS \"outbox\""));
    assert_non_null(strstr(b.text, "\"payload\" bytea NOT NULL"));
    assert_non_null(strstr(b.text, "gen_random_uuid()"));
    assert_non_null(strstr(b.text, "\"outbox_key_rank\" ON \"outbox\"\n"
                                   "    (\"aggregate_id\", (coalesce("
                                   "\"claim_seq\", 9223372036854775807)), "
                                   "\"id\")"));
    assert_non_null(strstr(b.text, "pg_notify"));
    assert_non_null(strstr(b.text, "EXECUTE FUNCTION \"outbox_notify\"(E'"
                                   "outbox')"));
    /* the shipped schema.sql is this output */
    char *file = read_text(OBX_SOURCE_DIR "/stores/pg_poll/schema.sql");
    char *a = normalize_sql(file), *c = normalize_sql(b.text);
    assert_string_equal(a, c);
    free(a);
    free(c);
    free(file);
    /* the DDL runs as emitted, twice (IF NOT EXISTS, OR REPLACE) */
    pgt_exec(t, "%s", b.text);
    pgt_exec(t, "%s", b.text);
    pgt_insert(t, "1", "x");
    /* without the trigger */
    pgp_config nc = t->conf;
    nc.notify_trigger = false;
    b = (sbuf){0};
    assert_int_equal(t->ops->schema(t->host, &nc, emit_cb, &b), OBX_OK);
    assert_null(strstr(b.text, "TRIGGER"));
}

static void test_quoted_identifiers(void **state)
{
    pgt *t = *state;
    obx_kv cols[] = {{"aggregate_id", "order \"id\"", 3},
                     {"payload", "Body", 4}};
    char schema[128];
    snprintf(schema, sizeof schema, "%s Other\"s", t->schema);
    pgp_config c = t->conf;
    c.table = (char *)"out\"box; DROP TABLE x";
    c.schema = schema;
    c.column = (obx_kvlist){cols, 2};
    sbuf b = {0};
    assert_int_equal(t->ops->schema(t->host, &c, emit_cb, &b), OBX_OK);
    assert_non_null(strstr(b.text, "Other\"\"s\".\"out\"\"box; DROP "
                                   "TABLE x\""));
    assert_non_null(strstr(b.text, "\"order \"\"id\"\"\" text NOT NULL"));
    assert_non_null(strstr(b.text, "\"out\"\"box; DROP TABLE x_key_rank\""));
    assert_null(strstr(b.text, "\"payload\""));

    void *s = pgt_open(t, &c);
    pgt_exec(t,
             "INSERT INTO \"%s Other\"\"s\".\"out\"\"box; DROP TABLE x\" "
             "(aggregate_type, \"order \"\"id\"\"\", event_type, \"Body\") "
             "VALUES ('order', 'o1', 'Created', 'hello')",
             t->schema);
    obx_event *ev[2];
    size_t n = 0;
    ERRBUF;
    /* woken by the trigger's NOTIFY */
    assert_int_equal(t->ops->claim(s, ev, 2, &n, 2000, err, sizeof err),
                     OBX_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->key, "o1");
    assert_int_equal(ev[0]->payload_len, 5);
    assert_memory_equal(ev[0]->payload, "hello", 5);
    pgt_ack(t, s, ev, 1);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM \"%s Other\"\"s\"."
                             "\"out\"\"box; DROP TABLE x\" WHERE "
                             "published_at IS NOT NULL",
                             t->schema),
                     1);
    t->ops->close(s);
    pgt_exec(t, "DROP SCHEMA \"%s Other\"\"s\" CASCADE", t->schema);
}

static void expect_config_error(pgt *t, const pgp_config *c, const char *needle)
{
    ERRBUF;
    void *inst = NULL;
    assert_int_equal(t->ops->open(t->host, c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_null(inst);
    if (!strstr(err, needle))
        fail_msg("open error '%s' lacks '%s'", err, needle);
    err[0] = '\0';
    assert_int_equal(t->ops->validate(t->host, c, false, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, needle))
        fail_msg("validate error '%s' lacks '%s'", err, needle);
}

static void test_config_errors(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    obx_kv unknown[] = {{"aggregateid", "x", 12}};
    c.column = (obx_kvlist){unknown, 1};
    expect_config_error(t, &c, "line 12: store.column.aggregateid: unknown");
    sbuf b = {0};
    assert_int_equal(t->ops->schema(t->host, &c, emit_cb, &b), OBX_CONFIG);
    assert_int_equal(b.calls, 0);
    obx_kv book[] = {{"attempts", "tries", 5}};
    c.column = (obx_kvlist){book, 1};
    expect_config_error(t, &c, "unknown column 'attempts'");
    obx_kv clash[] = {{"topic", "headers", 7}};
    c.column = (obx_kvlist){clash, 1};
    expect_config_error(t, &c, "'topic' and 'headers' both map");
    obx_kv empty[] = {{"topic", "", 8}};
    c.column = (obx_kvlist){empty, 1};
    expect_config_error(t, &c, "empty column name");
    obx_kv twice[] = {{"topic", "a", 8}, {"topic", "b", 9}};
    c.column = (obx_kvlist){twice, 2};
    expect_config_error(t, &c, "set twice");
    c.column = (obx_kvlist){NULL, 0};
    c.table = (char *)"a_table_name_that_is_far_too_long_for_postgresql_"
                      "identifiers_xyz";
    expect_config_error(t, &c, "longer than 63");
    /* a conninfo libpq cannot parse: the message keeps no piece of it */
    c = t->conf;
    c.conninfo = (char *)"host=x password=hunter2 secretword";
    expect_config_error(t, &c, "store.conninfo");
    ERRBUF;
    void *inst = NULL;
    t->ops->open(t->host, &c, &inst, err, sizeof err);
    assert_null(strstr(err, "hunter2"));
    assert_null(strstr(err, "secretword"));
    /* a misspelt key is named (it is what the user must fix), its value
     * is not */
    c.conninfo = (char *)"host=x pasword=hunter2";
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "\"pasword\""));
    assert_null(strstr(err, "hunter2"));
    /* the rest of an unquoted password with a space stays hidden */
    c.conninfo = (char *)"host=x password=a hunter2=x";
    t->ops->open(t->host, &c, &inst, err, sizeof err);
    assert_null(strstr(err, "hunter2"));
}

static void test_open_errors(void **state)
{
    pgt *t = *state;
    /* the size the core passes for store errors */
    char err[1024] = "";
    void *inst = NULL;
    pgp_config c = t->conf;
    /* nobody listens there: unavailable (the engine retries open), and
     * the password never shows */
    c.conninfo = (char *)"host=127.0.0.1 port=1 user=relay "
                         "password=s3cr3t-pw connect_timeout=2";
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_null(inst);
    assert_null(strstr(err, "s3cr3t-pw"));
    assert_non_null(strstr(err, "password=***"));
    assert_non_null(strstr(err, "port=1"));
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_null(strstr(err, "s3cr3t-pw"));
    c.conninfo = (char *)"postgresql://relay:s3cr3t-pw@127.0.0.1:1/app"
                         "?connect_timeout=2";
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_null(strstr(err, "s3cr3t-pw"));
    assert_non_null(strstr(err, "relay:***@"));
    /* an escaped quote inside a quoted password, as libpq reads it */
    c.conninfo = (char *)"host=127.0.0.1 port=1 password='a\\'hunter2' "
                         "connect_timeout=2";
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "password=***"));
    /* without the table and create_schema=false */
    c = t->conf;
    c.create_schema = false;
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "create_schema"));
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "\"outbox\""));
    c.create_schema = true;
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_OK);
    /* validate creates nothing */
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM pg_tables WHERE "
                             "schemaname = '%s'",
                             t->schema),
                     0);
    /* a table that lacks our columns */
    pgt_exec(t, "CREATE TABLE outbox (id bigint PRIMARY KEY, payload bytea)");
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    /* every missing column named at once, not the first the SQL hit */
    assert_non_null(strstr(err, "lacks column(s) event_id, aggregate_type"));
    assert_non_null(strstr(err, "dead_destination"));
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
}

/* ---- waiting, connections ---- */

typedef struct writer_arg {
    pgt *t;
    int delay_ms;
    bool notify_by_hand;
} writer_arg;

static void *late_writer(void *p)
{
    writer_arg *w = p;
    pgt_sleep_ms(w->delay_ms);
    PGconn *c = pgt_connect(w->t);
    PQclear(PQexec(c, "INSERT INTO outbox (aggregate_type, aggregate_id, "
                      "event_type, payload) VALUES ('o', 'k', 'T', 'late')"));
    if (w->notify_by_hand) {
        char sql[128];
        snprintf(sql, sizeof sql, "NOTIFY \"%s\"", w->t->schema);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
    return NULL;
}

static int64_t timed_claim(pgt *t, void *s, obx_event **ev, size_t *n,
                           int wait_ms)
{
    ERRBUF;
    int64_t t0 = pgt_mono_ms();
    assert_int_equal(t->ops->claim(s, ev, 4, n, wait_ms, err, sizeof err),
                     OBX_OK);
    return pgt_mono_ms() - t0;
}

static void test_claim_wait(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    obx_event *ev[4];
    size_t n = 9;
    assert_true(timed_claim(t, s, ev, &n, 150) >= 145);
    assert_int_equal(n, 0);

    /* woken by the trigger's NOTIFY, not by the end of the wait */
    pthread_t th;
    writer_arg w = {t, 150, false};
    pthread_create(&th, NULL, late_writer, &w);
    int64_t took = timed_claim(t, s, ev, &n, 5000);
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    assert_memory_equal(ev[0]->payload, "late", 4);
    if (took < 140 || took > 1500)
        fail_msg("claim returned after %lld ms", (long long)took);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);

    /* no trigger: the writer's own NOTIFY wakes us */
    pgt_exec(t, "DROP TRIGGER outbox_notify ON outbox");
    s = pgt_open(t, NULL);
    w.notify_by_hand = true;
    pthread_create(&th, NULL, late_writer, &w);
    took = timed_claim(t, s, ev, &n, 5000);
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    if (took < 140 || took > 1500)
        fail_msg("claim returned after %lld ms", (long long)took);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);

    /* listen = false: the claim sleeps its wait, then looks again */
    pgp_config c = t->conf;
    c.listen = false;
    s = pgt_open(t, &c);
    pthread_create(&th, NULL, late_writer, &w);
    took = timed_claim(t, s, ev, &n, 600);
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    if (took < 590)
        fail_msg("claim returned after %lld ms", (long long)took);
    pgt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* Our backend is killed (a database restart, a failover, an idle-session
 * killer): the next call reports UNAVAILABLE for the circuit breaker and
 * settles nothing; called again, it reconnects by itself and the events
 * it still holds are acked, not published twice. */
static void test_connection_loss(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    c.owner = (char *)"victim";
    void *s = pgt_open(t, &c);
    pgt_insert(t, "k1", "x");
    pgt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(pgt_claim(t, s, ev, 4), 2);
    /* every connection of this test but ours is the store's */
    pgt_exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = current_setting('application_name') "
                "AND pid <> pg_backend_pid()");
    pgt_sleep_ms(100);
    ERRBUF;
    assert_int_equal(t->ops->ack(s, ev, 1, err, sizeof err), OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "ack"));
    /* nothing settled: the rows are still leased to us, the events valid */
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) " LEASED
                             "WHERE l.owner = 'victim' AND published_at "
                             "IS NULL"),
                     2);
    assert_string_equal(ev[0]->key, "k1");
    obx_status st = OBX_UNAVAILABLE;
    for (int i = 0; i < 50 && st == OBX_UNAVAILABLE; i++) {
        st = t->ops->ack(s, ev, 1, err, sizeof err);
        if (st == OBX_UNAVAILABLE)
            pgt_sleep_ms(50);
    }
    assert_int_equal(st, OBX_OK);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL AND "
                             "aggregate_id = 'k1'"),
                     1);
    /* the reconnected instance claims, waits and settles as before */
    size_t n = 9;
    assert_int_equal(t->ops->claim(s, ev + 2, 2, &n, 50, err, sizeof err),
                     OBX_OK);
    assert_int_equal(n, 0);
    pgt_ack(t, s, ev + 1, 1);
    t->ops->close(s);
    /* an event left unsettled at close is handed back (and freed) */
    s = pgt_open(t, &c);
    pgt_insert(t, "k3", "x");
    assert_int_equal(pgt_claim(t, s, ev, 4), 1);
    pgt_exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = current_setting('application_name') "
                "AND pid <> pg_backend_pid()");
    pgt_sleep_ms(100);
    assert_int_equal(t->ops->ack(s, ev, 1, err, sizeof err), OBX_UNAVAILABLE);
    t->ops->close(s);
}

/* The store's connections through a TCP proxy of the test's own: the
 * fixture server's port, read from its conninfo. */
static tp_proxy *proxy_to_server(pgt *t, pgp_config *c, char *ci, size_t cilen)
{
    const char *p = strstr(t->server, "port=");
    assert_non_null(p);
    tp_proxy *px = tp_start("127.0.0.1", atoi(p + 5));
    snprintf(ci, cilen, "%s host=127.0.0.1 port=%d", t->conninfo, tp_port(px));
    c->conninfo = ci;
    return px;
}

/* A link that stops forwarding without a reset (a dead middlebox): the
 * kernel keeps answering keepalives, so only the store's own deadline
 * notices. Every call returns UNAVAILABLE within query_timeout (plus
 * the reconnect's connect timeout), nothing is settled or lost, and once
 * the link works again the store reconnects by itself. */
static void test_stalled_link(void **state)
{
    pgt *t = *state;
    pgp_config c = t->conf;
    char ci[1536];
    tp_proxy *px = proxy_to_server(t, &c, ci, sizeof ci);
    c.query_timeout_ms = 1000;
    c.owner = (char *)"stalled";
    void *s = pgt_open(t, &c);
    int64_t k1 = pgt_insert(t, "k1", "x");
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){k1}, 1, ev);

    tp_set_mode(px, TP_STALL, 0);
    int64_t k2 = pgt_insert(t, "k2", "x");
    ERRBUF;
    int64_t t0 = pgt_mono_ms();
    assert_int_equal(t->ops->ack(s, ev, 1, err, sizeof err), OBX_UNAVAILABLE);
    int64_t took = pgt_mono_ms() - t0;
    assert_non_null(strstr(err, "query_timeout"));
    assert_true(took >= 900 && took < 4000);
    /* reconnecting through the stalled link gives up too, and the claim
     * reports it instead of hanging */
    size_t n = 9;
    t0 = pgt_mono_ms();
    obx_status st = t->ops->claim(s, ev + 1, 3, &n, 0, err, sizeof err);
    took = pgt_mono_ms() - t0;
    assert_int_equal(st, OBX_UNAVAILABLE);
    assert_true(took < 4000);
    /* the row is still leased to us, unpublished */
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) " LEASED
                             "WHERE l.owner = 'stalled' AND published_at "
                             "IS NULL"),
                     1);

    tp_set_mode(px, TP_PASS, 0);
    st = OBX_UNAVAILABLE;
    for (int i = 0; i < 100 && st != OBX_OK; i++) {
        st = t->ops->ack(s, ev, 1, err, sizeof err);
        if (st != OBX_OK)
            pgt_sleep_ms(100);
    }
    if (st != OBX_OK)
        fail_msg("ack after the stall: %s", err);
    claim_ids(t, s, 4, (int64_t[]){k2}, 1, ev);
    pgt_ack(t, s, ev, 1);
    assert_all_published(t);
    t->ops->close(s);
    tp_stop(px);
}

/* ---- demo ---- */

static void test_demo(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    ERRBUF;
    assert_int_equal(t->ops->demo(s, 5, err, sizeof err), OBX_OK);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM orders"), 5);
    assert_int_equal(pgt_int(t, -1,
                             "SELECT count(*) FROM outbox o JOIN "
                             "orders r ON o.aggregate_id = "
                             "r.id::text AND (convert_from(o.payload, "
                             "'UTF8')::jsonb ->> 'order_id')::bigint "
                             "= r.id AND (convert_from(o.payload, "
                             "'UTF8')::jsonb ->> 'amount_cents')"
                             "::bigint = r.amount_cents WHERE "
                             "o.aggregate_type = 'order' AND "
                             "o.event_type = 'OrderCreated'"),
                     5);
    obx_event *ev[8];
    assert_int_equal(pgt_claim(t, s, ev, 8), 5);
    pgt_ack(t, s, ev, 5);
    assert_int_equal(t->ops->demo(s, 2, err, sizeof err), OBX_OK);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM orders"), 7);
    t->ops->close(s);
}

/* ---- a table made elsewhere (by pg_wal, or by hand) ---- */

/* Open with t->host (which may capture the log); asserts OBX_OK. */
static void *pgp_open_logged(pgt *t)
{
    char err[1024] = "";
    void *s = NULL;
    obx_status st = t->ops->open(t->host, &t->conf, &s, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    return s;
}

/* A host that keeps every log line (and passes it on to the test host). */
static char captured_log[16384];

static void capture_log(const obx_host *h, obx_log_level level, const char *fmt,
                        ...)
{
    (void)h;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t len = strlen(captured_log);
    snprintf(captured_log + len, sizeof captured_log - len, "%d %s\n",
             (int)level, line);
}

static const obx_host *capturing_host(void)
{
    static obx_host h;
    h = *obx_test_host();
    h.log = capture_log;
    captured_log[0] = '\0';
    return &h;
}

/* Only the table of `schema pg_poll` (as pg_wal made it before the shared
 * schema, or a DBA by hand): pg_poll opens, and its log names every
 * missing index and the NOTIFY trigger with the DDL that adds them. Once
 * that DDL ran, the same open says nothing. */
static void test_open_warns_missing_objects(void **state)
{
    pgt *t = *state;
    sbuf b = {0};
    assert_int_equal(t->ops->schema(t->host, &t->conf, emit_cb, &b), OBX_OK);
    char *end = strstr(b.text, "\n);\n");
    assert_non_null(end);
    end[3] = '\0';
    pgt_exec(t, "%s", strstr(b.text, "CREATE TABLE"));
    const obx_host *saved = t->host;
    t->host = capturing_host();
    void *s = pgp_open_logged(t);
    t->ops->close(s);
    const char *want[] = {
        "no index \"outbox_pending_ids\"",
        "no index \"outbox_key_rank\"",
        "no index \"outbox_blocked_until\"",
        "no index \"outbox_dead\"",
        "no index \"outbox_published\"",
        "CREATE INDEX IF NOT EXISTS \"outbox_key_rank\" ON \"outbox\" "
        "(\"aggregate_id\", (coalesce(\"claim_seq\", 9223372036854775807)), "
        "\"id\") WHERE",
        "no NOTIFY trigger \"outbox_notify\"",
        "CREATE OR REPLACE TRIGGER \"outbox_notify\" AFTER INSERT ON",
        "polling every poll_interval",
        NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(captured_log, want[i]))
            fail_msg("the log has no '%s':\n%s", want[i], captured_log);
    /* the DDL the warnings gave (as `schema` prints it) adds what was
     * missing; then there is nothing to warn about */
    b = (sbuf){0};
    assert_int_equal(t->ops->schema(t->host, &t->conf, emit_cb, &b), OBX_OK);
    pgt_exec(t, "%s", b.text);
    t->host = capturing_host();
    s = pgp_open_logged(t);
    t->ops->close(s);
    assert_null(strstr(captured_log, "no index"));
    assert_null(strstr(captured_log, "trigger"));
    assert_non_null(strstr(captured_log, ", LISTEN \""));
    /* a trigger that signals another channel wakes nobody */
    pgt_exec(t, "CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON "
                "outbox FOR EACH STATEMENT EXECUTE FUNCTION "
                "outbox_notify('elsewhere')");
    t->host = capturing_host();
    s = pgp_open_logged(t);
    t->ops->close(s);
    assert_non_null(strstr(captured_log, "'elsewhere'"));
    t->host = saved;
}

/* A table without the relay's bookkeeping columns cannot be claimed
 * from: refused, naming every missing column. */
static void test_open_refuses_missing_columns(void **state)
{
    pgt *t = *state;
    pgt_exec(t, "CREATE TABLE outbox (id bigint GENERATED BY DEFAULT AS "
                "IDENTITY PRIMARY KEY, event_id text NOT NULL DEFAULT "
                "gen_random_uuid()::text, aggregate_type text NOT NULL, "
                "aggregate_id text NOT NULL, event_type text NOT NULL, "
                "payload bytea NOT NULL, topic text, headers jsonb, "
                "created_at timestamptz NOT NULL DEFAULT now(), "
                "published_at timestamptz, dead_at timestamptz, "
                "dead_reason text)");
    char err[1024] = "";
    void *s = NULL;
    obx_status st = t->ops->open(t->host, &t->conf, &s, err, sizeof err);
    assert_int_equal(st, OBX_CONFIG);
    const char *want[] = {
        "attempts",   "next_attempt_at",  "locked_by",   "locked_until",
        "last_error", "dead_destination", "ALTER TABLE", NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(err, want[i]))
            fail_msg("the error has no '%s': %s", want[i], err);
}

/* A table made before claims had a table of their own (or by pg_wal, or
 * by hand): without create_schema the relay refuses it and gives the
 * DDL; with it, the relay adds the claims table and runs. */
static void test_open_adds_claims_table(void **state)
{
    pgt *t = *state;
    void *s = pgt_open(t, NULL);
    t->ops->close(s);
    pgt_exec(t, "DROP TABLE outbox_claims");
    pgp_config c = t->conf;
    c.create_schema = false;
    char err[1024] = "";
    s = NULL;
    assert_int_equal(t->ops->open(t->host, &c, &s, err, sizeof err),
                     OBX_CONFIG);
    const char *want[] = {"\"outbox_claims\"",
                          "create_schema is false",
                          "CREATE TABLE IF NOT EXISTS \"outbox_claims\" (",
                          "keys text[] NOT NULL );",
                          "SET STORAGE EXTERNAL",
                          NULL};
    for (int i = 0; want[i]; i++)
        if (!strstr(err, want[i]))
            fail_msg("the error has no '%s': %s", want[i], err);
    s = pgt_open(t, NULL);
    int64_t id = pgt_insert(t, "k", "x");
    obx_event *ev[2];
    claim_ids(t, s, 2, &id, 1, ev);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) " LEASED), 1);
    pgt_ack(t, s, ev, 1);
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    t->ops->close(s);
}

/* `demo` beside an `orders` table of another shape says which table and
 * what shape it needs, instead of a bare SQL error. */
static void test_demo_other_orders_table(void **state)
{
    pgt *t = *state;
    pgt_exec(t, "CREATE TABLE orders (order_no int PRIMARY KEY, total "
                "numeric NOT NULL)");
    void *s = pgt_open(t, NULL);
    char err[1024] = "";
    assert_int_not_equal(t->ops->demo(s, 1, err, sizeof err), OBX_OK);
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
    assert_int_equal(pgt_int(t, -1, "SELECT count(*) FROM outbox"), 0);
    t->ops->close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_descriptor),
        T(test_plain_insert),
        T(test_event_id_unique_until_published),
        T(test_claim_fields),
        T(test_claim_max),
        T(test_claim_key_order_across_relays),
        T(test_late_commit),
        T(test_late_commit_during_claim),
        T(test_ack_during_takeover),
        T(test_claim_order_survives_expired_lease),
        T(test_claim_order_history_outside_batch),
        T(test_claim_order_expired_outside_batch),
        T(test_claim_not_stuck_behind_late_batch),
        T(test_claim_work_bounded_with_backlog),
        T(test_claim_with_every_key_in_flight_bounded),
        T(test_lease_token),
        T(test_release_sent_twice_counts_once),
        T(test_settle_batch_in_parts),
        T(test_ack_mark),
        T(test_ack_delete),
        T(test_release_error_text),
        T(test_claim_wakes_for_retry),
        T(test_dead_letter_columns),
        T(test_poison_headers_text_payload),
        T(test_header_numbers_as_written),
        T(test_null_text_columns),
        T(test_jsonb_payload),
        T(test_stats),
        T(test_retention),
        T(test_schema_default),
        T(test_quoted_identifiers),
        T(test_config_errors),
        T(test_open_errors),
        T(test_claim_wait),
        T(test_connection_loss),
        T(test_stalled_link),
        T(test_demo),
        T(test_open_warns_missing_objects),
        T(test_open_refuses_missing_columns),
        T(test_open_adds_claims_table),
        T(test_demo_other_orders_table),
#undef T
    };
    /* PGT_FILTER=test_demo runs just that test */
    if (getenv("PGT_FILTER"))
        cmocka_set_test_filter(getenv("PGT_FILTER"));
    return cmocka_run_group_tests_name("pg_store", tests, NULL, NULL);
}
