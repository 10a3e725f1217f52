/* The store contract suite (store.h, event.h), run against one plugin
 * through its harness. Each check opens its own instances on a fresh
 * backend (harness setup) and settles or closes everything it claimed. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit.h"

#define KS_MAX_INST 8
#define KS_WAIT_MS 5000 /* longest a check waits for a due event */
/* How far a time the store reports may stray from the one the kit gave
 * or read: a store may keep times on its backend's clock (pg_poll stores
 * a retry as a delay added to the database's now(), and reports the
 * oldest pending event as an age measured there, mapped back onto the
 * caller's clock), so they are off by the call's latency. */
#define KS_CLOCK_SLACK_US 50000

typedef struct ks {
    const obx_contract_store_harness *h;
    kit_plugin kp;
    const obx_store_ops *ops;
    bool ordered;
    void *conf[KS_MAX_INST]; /* outlive their instances: freed at teardown */
    size_t n_conf;
} ks;

/* ---- helpers: every failure fails the running check ---- */

static int ks_setup(void **state)
{
    ks *k = *state;
    KIT_ERR;
    if (k->h->setup(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness setup: %s", err);
    return 0;
}

static int ks_teardown(void **state)
{
    ks *k = *state;
    for (size_t i = 0; i < k->n_conf; i++)
        kit_conf_free(&k->kp, k->conf[i]);
    k->n_conf = 0;
    if (k->h->teardown)
        k->h->teardown(k->h->ctx);
    return 0;
}

static void *ks_open(ks *k, int instance, int64_t lease_ms)
{
    KIT_ERR;
    char text[4096] = "";
    obx_contract_conf req = {instance, lease_ms};
    if (k->h->config(k->h->ctx, &req, text, sizeof text, err, sizeof err) != 0)
        fail_msg("harness config: %s", err);
    assert_true(k->n_conf < KS_MAX_INST);
    void *conf = kit_conf(&k->kp, "store.", text);
    k->conf[k->n_conf++] = conf;
    void *inst = NULL;
    obx_status st = k->ops->open(k->kp.host, conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open (instance %d): %s: %s", instance, obx_status_name(st),
                 err);
    return inst;
}

static void ks_write(ks *k, const char *key, const char *payload)
{
    KIT_ERR;
    if (k->h->write(k->h->ctx, key, payload, err, sizeof err) != 0)
        fail_msg("harness write %s/%s: %s", key, payload, err);
}

/* The payload as a string (the kit writes short strings). */
static const char *ks_pl(const obx_event *e, char *buf, size_t len)
{
    size_t n = e->payload_len < len - 1 ? e->payload_len : len - 1;
    if (n)
        memcpy(buf, e->payload, n);
    buf[n] = '\0';
    return buf;
}

/* What event.h says a claimed event carries. */
static void ks_check_event(const obx_event *e)
{
    char pl[64];
    if (!e->event_id || !*e->event_id)
        fail_msg("claimed event without event_id (payload %s)",
                 ks_pl(e, pl, sizeof pl));
    if (!e->payload && e->payload_len)
        fail_msg("%s: payload NULL with payload_len %zu", e->event_id,
                 e->payload_len);
    if (!e->headers && e->n_headers)
        fail_msg("%s: headers NULL with n_headers %zu", e->event_id,
                 e->n_headers);
    for (size_t i = 0; i < e->n_headers; i++)
        if (!e->headers[i].name || !e->headers[i].value)
            fail_msg("%s: header %zu has a NULL name or value", e->event_id, i);
    if (e->destination)
        fail_msg("%s: destination set by the store", e->event_id);
}

/* One claim with wait_ms; asserts OK and what every event carries. */
static size_t ks_claim(ks *k, void *inst, obx_event **ev, size_t max,
                       int wait_ms)
{
    KIT_ERR;
    size_t n = 12345;
    obx_status st = k->ops->claim(inst, ev, max, &n, wait_ms, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("claim: %s: %s", obx_status_name(st), err);
    if (n > max)
        fail_msg("claim returned %zu events for max %zu", n, max);
    for (size_t i = 0; i < n; i++)
        ks_check_event(ev[i]);
    return n;
}

/* Claim until `want` events arrived (or KS_WAIT_MS passed); asserts that
 * exactly `want` came. For stores that hand out due events over more than
 * one claim (a WAL stream). */
static size_t ks_claim_n(ks *k, void *inst, obx_event **ev, size_t max,
                         size_t want)
{
    size_t got = 0;
    int64_t end = kit_mono_ms() + KS_WAIT_MS;
    while (got < want && kit_mono_ms() < end)
        got += ks_claim(k, inst, ev + got, max - got, 100);
    if (got != want)
        fail_msg("claimed %zu events, expected %zu", got, want);
    return got;
}

/* Payloads of ev[0..n) must be want[0..n), in that order. */
static void ks_expect(obx_event **ev, size_t n, const char *const *want,
                      size_t n_want)
{
    char pl[64];
    if (n != n_want)
        fail_msg("claimed %zu events, expected %zu (first: %s)", n, n_want,
                 n ? ks_pl(ev[0], pl, sizeof pl) : "none");
    for (size_t i = 0; i < n; i++)
        if (strcmp(ks_pl(ev[i], pl, sizeof pl), want[i]) != 0)
            fail_msg("claimed event %zu is %s, expected %s", i, pl, want[i]);
}

static void ks_ack(ks *k, void *inst, obx_event **ev, size_t n)
{
    KIT_ERR;
    obx_status st = k->ops->ack(inst, ev, n, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("ack: %s: %s", obx_status_name(st), err);
}

static void ks_release1(ks *k, void *inst, obx_event *e, int64_t at,
                        bool counts, const char *error)
{
    KIT_ERR;
    obx_release r = {e, at, error, counts};
    obx_status st = k->ops->release(inst, &r, 1, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("release: %s: %s", obx_status_name(st), err);
}

static bool ks_has_inspect(const ks *k)
{
    return k->h->inspect != NULL;
}

static void ks_inspect(ks *k, const char *id, obx_contract_record *rec)
{
    KIT_ERR;
    memset(rec, 0, sizeof *rec);
    if (k->h->inspect(k->h->ctx, id, rec, err, sizeof err) != 0)
        fail_msg("harness inspect %s: %s", id, err);
}

static const char *ks_state_name(obx_contract_state s)
{
    static const char *names[] = {"absent", "pending", "claimed", "published",
                                  "dead"};
    return (unsigned)s < 5 ? names[s] : "?";
}

/* With an inspect callback: the record of id is in state `want` (for
 * PUBLISHED, ABSENT counts too: an ack may delete). */
static void ks_expect_state(ks *k, const char *id, obx_contract_state want)
{
    if (!ks_has_inspect(k))
        return;
    obx_contract_record rec;
    ks_inspect(k, id, &rec);
    bool ok = rec.state == want || (want == OBX_CONTRACT_PUBLISHED &&
                                    rec.state == OBX_CONTRACT_ABSENT);
    if (!ok)
        fail_msg("event %s is %s in the store, expected %s", id,
                 ks_state_name(rec.state), ks_state_name(want));
}

typedef struct ks_ids {
    char id[16][128];
} ks_ids;

static void ks_save_ids(ks_ids *ids, obx_event **ev, size_t n)
{
    for (size_t i = 0; i < n && i < 16; i++)
        snprintf(ids->id[i], sizeof ids->id[i], "%s", ev[i]->event_id);
}

/* stats() into *ss (a fresh struct of the kit's size), asserting OK. A
 * store that reports lag (a WAL stream) may count one pending event while
 * its stream has not yet read up to the server's WAL (pg_wal does, so that
 * `run --once` does not stop before it read what was committed): when
 * the kit expects none, it asks again until the stream caught up (at most
 * KS_WAIT_MS); any other count must be right at once. */
static void ks_stats(ks *k, void *s, obx_store_stats *ss, uint64_t want)
{
    KIT_ERR;
    int64_t end = kit_mono_ms() + KS_WAIT_MS;
    for (;;) {
        *ss = (obx_store_stats){.struct_size = sizeof *ss, .lag_bytes = -1};
        obx_status st = k->ops->stats(s, ss, err, sizeof err);
        if (st != OBX_OK)
            fail_msg("stats: %s: %s", obx_status_name(st), err);
        bool catching_up = k->h->reports_lag && want == 0 && ss->pending == 1;
        if (!catching_up || kit_mono_ms() >= end)
            break;
        kit_sleep_ms(50);
    }
    if (ss->pending != want)
        fail_msg("stats: pending %llu, expected %llu",
                 (unsigned long long)ss->pending, (unsigned long long)want);
}

/* got is want within KS_CLOCK_SLACK_US. */
static void ks_assert_near(int64_t got, int64_t want, const char *what)
{
    if (got < want - KS_CLOCK_SLACK_US || got > want + KS_CLOCK_SLACK_US)
        fail_msg("%s: %lld, expected %lld (+-%d us)", what, (long long)got,
                 (long long)want, KS_CLOCK_SLACK_US);
}

/* ---- checks ---- */

/* claim returns at most max events, each once, with what event.h asks of
 * a store; ten due events come out over claims of 3, 4 and 16. Each round
 * may take several claims (ks_claim_n, at most max events in all): store.h
 * promises "up to max" due events, not min(max, due) from every call, and
 * a WAL store hands out what its stream has delivered so far. */
static void check_claim_max(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    char key[16], pl[16];
    const char *want[10];
    static char bufs[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i + 1);
        snprintf(bufs[i], sizeof bufs[i], "p%d", i + 1);
        want[i] = bufs[i];
        ks_write(k, key, bufs[i]);
    }
    obx_event *ev[16];
    ks_ids seen;
    size_t total = 0;
    const size_t maxes[] = {3, 4, 16}, expect[] = {3, 4, 3};
    for (int r = 0; r < 3; r++) {
        size_t n = ks_claim_n(k, s, ev, maxes[r], expect[r]);
        for (size_t i = 0; i < n; i++) {
            ks_pl(ev[i], pl, sizeof pl);
            snprintf(seen.id[total], sizeof seen.id[0], "%s", pl);
            for (size_t j = 0; j < total; j++)
                if (strcmp(seen.id[j], pl) == 0)
                    fail_msg("event %s claimed twice", pl);
            bool known = false;
            for (int w = 0; w < 10; w++)
                known |= strcmp(want[w], pl) == 0;
            if (!known)
                fail_msg("claimed an event that was never written: %s", pl);
            snprintf(key, sizeof key, "k%s", pl + 1);
            if (!ev[i]->key || strcmp(ev[i]->key, key) != 0)
                fail_msg("event %s: key %s, written as %s", pl,
                         ev[i]->key ? ev[i]->key : "(null)", key);
            if (ev[i]->attempts != 0)
                fail_msg("event %s: %u attempts before any", pl,
                         ev[i]->attempts);
            total++;
        }
        ks_ack(k, s, ev, n);
    }
    assert_int_equal(ks_claim(k, s, ev, 16, 0), 0);
    k->ops->close(s);
}

/* Events of one key come in commit order, across claims too, whatever
 * the batch size. */
static void check_claim_order(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    const char *keys[] = {"A", "B", "A", "B", "A", "C", "A"};
    const char *pls[] = {"A1", "B1", "A2", "B2", "A3", "C1", "A4"};
    for (int i = 0; i < 7; i++)
        ks_write(k, keys[i], pls[i]);
    int next[3] = {1, 1, 1}; /* next number expected per key */
    size_t got = 0;
    int64_t end = kit_mono_ms() + KS_WAIT_MS;
    obx_event *ev[2];
    char pl[16];
    while (got < 7 && kit_mono_ms() < end) {
        size_t n = ks_claim(k, s, ev, 2, 100);
        for (size_t i = 0; i < n; i++) {
            ks_pl(ev[i], pl, sizeof pl);
            int key = pl[0] - 'A';
            if (key < 0 || key > 2 || atoi(pl + 1) != next[key])
                fail_msg("claimed %s, expected %c%d next for its key", pl,
                         key >= 0 && key <= 2 ? pl[0] : '?',
                         key >= 0 && key <= 2 ? next[key] : 0);
            next[key]++;
        }
        got += n;
        if (n)
            ks_ack(k, s, ev, n);
    }
    if (got != 7)
        fail_msg("claimed %zu of 7 events", got);
    assert_int_equal(ks_claim(k, s, ev, 2, 0), 0);
    k->ops->close(s);
}

/* OBX_STORE_ORDERED_CLAIM: a key whose head is claimed or waiting for its
 * retry is held back; other keys flow; a dead head does not block. */
static void check_claim_holds_keys(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    const char *keys[] = {"A", "B", "A", "B", "A"};
    const char *pls[] = {"A1", "B1", "A2", "B2", "A3"};
    for (int i = 0; i < 5; i++)
        ks_write(k, keys[i], pls[i]);
    obx_event *ev[8], *a1, *b[2];
    ks_expect(ev, ks_claim(k, s, ev, 1, 0), (const char *[]){"A1"}, 1);
    a1 = ev[0];
    /* A1 claimed: A2, A3 held back; B free */
    ks_expect(ev, ks_claim(k, s, ev, 8, 0), (const char *[]){"B1", "B2"}, 2);
    b[0] = ev[0];
    b[1] = ev[1];
    int64_t due = kit_now_us() + 400 * 1000;
    ks_release1(k, s, a1, due, true, "nack");
    /* A1 waits for its retry: A2, A3 still held back */
    ks_expect(ev, ks_claim(k, s, ev, 8, 0), NULL, 0);
    ks_ack(k, s, b, 2);
    ks_write(k, "B", "B3");
    ks_write(k, "C", "C1");
    ks_expect(ev, ks_claim(k, s, ev, 8, 0), (const char *[]){"B3", "C1"}, 2);
    ks_ack(k, s, ev, 2);
    /* A1 due again: the whole key comes, in order */
    while (kit_now_us() < due + 20000)
        kit_sleep_ms(20);
    size_t n = ks_claim_n(k, s, ev, 8, 3);
    ks_expect(ev, n, (const char *[]){"A1", "A2", "A3"}, 3);
    assert_int_equal(ev[0]->attempts, 1);
    assert_int_equal(ev[1]->attempts, 0);
    ks_ack(k, s, ev, 3);
    /* a dead head does not hold back its key */
    ks_write(k, "D", "D1");
    ks_write(k, "D", "D2");
    ks_expect(ev, ks_claim(k, s, ev, 1, 0), (const char *[]){"D1"}, 1);
    ks_expect(ev + 1, ks_claim(k, s, ev + 1, 7, 0), NULL, 0);
    KIT_ERR;
    ev[0]->attempts = 1;
    obx_burial bu = {ev[0], "contract: dead head", NULL};
    assert_int_equal(k->ops->bury(s, &bu, 1, err, sizeof err), OBX_OK);
    ks_expect(ev, ks_claim(k, s, ev, 8, 0), (const char *[]){"D2"}, 1);
    ks_ack(k, s, ev, 1);
    k->ops->close(s);
}

/* One claim_ahead; asserts OK and what every event carries. */
static size_t ks_claim_ahead(ks *k, void *inst, obx_event **ev, size_t max)
{
    KIT_ERR;
    size_t n = 12345;
    obx_status st = k->ops->claim_ahead(inst, ev, max, &n, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("claim_ahead: %s: %s", obx_status_name(st), err);
    if (n > max)
        fail_msg("claim_ahead returned %zu events for max %zu", n, max);
    for (size_t i = 0; i < n; i++)
        ks_check_event(ev[i]);
    return n;
}

/* claim_ahead (since 1.3): the events behind this instance's unsettled
 * ones come out, per key in order, none of its own again; a key another
 * instance has claimed, and a key behind a retry, stay held. */
static void check_claim_ahead(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0), *t = ks_open(k, 1, 0);
    const char *keys[] = {"A", "B", "A", "C", "A", "B", "C"};
    const char *pls[] = {"A1", "B1", "A2", "C1", "A3", "B2", "C2"};
    for (int i = 0; i < 7; i++)
        ks_write(k, keys[i], pls[i]);
    obx_event *ev[16];
    ks_expect(ev, ks_claim(k, s, ev, 2, 0), (const char *[]){"A1", "B1"}, 2);
    ks_expect(ev + 2, ks_claim(k, t, ev + 2, 1, 0), (const char *[]){"C1"}, 1);
    /* behind s's A1 and B1; C is t's */
    ks_expect(ev + 3, ks_claim_ahead(k, s, ev + 3, 8),
              (const char *[]){"A2", "A3", "B2"}, 3);
    ks_expect(ev + 6, ks_claim_ahead(k, s, ev + 6, 8), NULL, 0);
    ks_expect(ev + 6, ks_claim(k, s, ev + 6, 8, 0), NULL, 0);
    ks_ack(k, s, ev, 2);
    ks_ack(k, s, ev + 3, 3);
    ks_ack(k, t, ev + 2, 1);
    ks_expect(ev, ks_claim(k, s, ev, 8, 0), (const char *[]){"C2"}, 1);
    ks_ack(k, s, ev, 1);
    /* a retry holds its key for claim_ahead too */
    ks_write(k, "E", "E1");
    ks_write(k, "E", "E2");
    ks_expect(ev, ks_claim(k, s, ev, 1, 0), (const char *[]){"E1"}, 1);
    int64_t due = kit_now_us() + 400 * 1000;
    ks_release1(k, s, ev[0], due, true, "nack");
    ks_expect(ev, ks_claim_ahead(k, s, ev, 8), NULL, 0);
    while (kit_now_us() < due + 20000)
        kit_sleep_ms(20);
    ks_expect(ev, ks_claim_n(k, s, ev, 8, 2), (const char *[]){"E1", "E2"}, 2);
    ks_ack(k, s, ev, 2);
    k->ops->close(t);
    k->ops->close(s);
}

typedef struct late_writer {
    ks *k;
    int delay_ms;
    char err[OBX_ERRSTR_LEN];
    int rc;
} late_writer;

static void *late_write(void *arg)
{
    late_writer *w = arg;
    kit_sleep_ms(w->delay_ms);
    w->rc = w->k->h->write(w->k->h->ctx, "late", "late", w->err, sizeof w->err);
    return NULL;
}

/* claim waits up to wait_ms when nothing is due, and a commit during the
 * wait wakes it well before the end. */
static void check_claim_wait(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    obx_event *ev[4];
    int64_t t0 = kit_mono_ms();
    assert_int_equal(ks_claim(k, s, ev, 4, 150), 0);
    int64_t took = kit_mono_ms() - t0;
    if (took < 145)
        fail_msg("an empty claim with wait 150 ms returned after %lld ms",
                 (long long)took);
    pthread_t th;
    late_writer w = {k, 150, "", 0};
    assert_int_equal(pthread_create(&th, NULL, late_write, &w), 0);
    t0 = kit_mono_ms();
    size_t n = ks_claim(k, s, ev, 4, 5000);
    took = kit_mono_ms() - t0;
    pthread_join(th, NULL);
    if (w.rc != 0)
        fail_msg("harness write (second thread): %s", w.err);
    ks_expect(ev, n, (const char *[]){"late"}, 1);
    /* woken by the commit, not by the end of the wait */
    if (took < 140 || took > 1500)
        fail_msg("claim returned after %lld ms", (long long)took);
    ks_ack(k, s, ev, 1);
    k->ops->close(s);
}

/* Acked and buried events never come back; released ones do, once; a
 * reopened instance finds nothing left. */
static void check_settle_once(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    char key[8], pl[8];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "s%d", i);
        snprintf(pl, sizeof pl, "e%d", i);
        ks_write(k, key, pl);
    }
    obx_event *ev[8];
    size_t n = ks_claim_n(k, s, ev, 8, 6);
    obx_event *by[6] = {0};
    char buf[16];
    for (size_t i = 0; i < n; i++)
        by[atoi(ks_pl(ev[i], buf, sizeof buf) + 1)] = ev[i];
    for (int i = 0; i < 6; i++)
        if (!by[i])
            fail_msg("event e%d not claimed", i);
    ks_ids ids;
    ks_save_ids(&ids, by, 6);
    KIT_ERR;
    ks_ack(k, s, by, 2);
    obx_release rel[2] = {{by[2], 0, NULL, false}, {by[3], 0, "x", true}};
    assert_int_equal(k->ops->release(s, rel, 2, err, sizeof err), OBX_OK);
    by[4]->attempts = 1;
    by[5]->attempts = 1;
    obx_burial bu[2] = {{by[4], "contract", NULL}, {by[5], "contract", "d"}};
    assert_int_equal(k->ops->bury(s, bu, 2, err, sizeof err), OBX_OK);
    for (int i = 0; i < 6; i++)
        ks_expect_state(k, ids.id[i],
                        i < 2   ? OBX_CONTRACT_PUBLISHED
                        : i < 4 ? OBX_CONTRACT_PENDING
                                : OBX_CONTRACT_DEAD);
    n = ks_claim_n(k, s, ev, 8, 2);
    bool seen[2] = {false, false};
    for (size_t i = 0; i < n; i++) {
        ks_pl(ev[i], buf, sizeof buf);
        int which = atoi(buf + 1);
        if (which != 2 && which != 3)
            fail_msg("%s came back after it was %s", buf,
                     which < 2 ? "acked" : "buried");
        if (seen[which - 2])
            fail_msg("%s came back twice", buf);
        seen[which - 2] = true;
        assert_string_equal(ev[i]->event_id, ids.id[which]);
        /* release counted e3's attempt, not e2's */
        assert_int_equal(ev[i]->attempts, which == 3 ? 1 : 0);
    }
    ks_ack(k, s, ev, n);
    assert_int_equal(ks_claim(k, s, ev, 8, 200), 0);
    k->ops->close(s);
    s = ks_open(k, 0, 0);
    assert_int_equal(ks_claim(k, s, ev, 8, 200), 0);
    k->ops->close(s);
}

/* close() with events still claimed: they come back, in order and with
 * no attempt counted: at once when the store says close returns them,
 * else when their (short) lease runs out. */
static void check_lease_after_close(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 300);
    ks_write(k, "k1", "c1");
    ks_write(k, "k2", "c2");
    ks_write(k, "k1", "c3");
    obx_event *ev[4];
    /* one claim may carry a key's events together (c1 and c3) */
    size_t n = ks_claim_n(k, s, ev, 4, 3);
    (void)n;
    k->ops->close(s);
    s = ks_open(k, 0, 300);
    size_t want = 3;
    if (k->h->close_returns_claims) {
        n = 0;
        for (int i = 0; i < 3 && n < want; i++)
            n += ks_claim(k, s, ev + n, 4 - n, 0);
        if (n != want)
            fail_msg("after close, %zu of %zu claimed events claimable at "
                     "once (the harness says close returns them)",
                     n, want);
    } else {
        n = ks_claim_n(k, s, ev, 4, want);
    }
    char pl[8];
    int c1 = -1, c3 = -1;
    for (size_t i = 0; i < n; i++) {
        ks_pl(ev[i], pl, sizeof pl);
        if (strcmp(pl, "c1") == 0)
            c1 = (int)i;
        if (strcmp(pl, "c3") == 0)
            c3 = (int)i;
        if (ev[i]->attempts != 0)
            fail_msg("%s: close counted an attempt (%u)", pl, ev[i]->attempts);
    }
    if (c1 < 0 || c3 < c1)
        fail_msg("after close: c1 at %d, c3 at %d (key order)", c1, c3);
    ks_ack(k, s, ev, n);
    k->ops->close(s);
}

/* A second instance (another relay) sees nothing while the first one's
 * lease runs, takes the events over when it ends, and the first one's
 * late release does not disturb the second one's claim. */
static void check_lease_expiry(void **state)
{
    ks *k = *state;
    /* long enough that a loaded machine still sees the lease hold: it
     * starts after t0 (inside a's claim), so before t0 + KS_LEASE_MS - 50
     * it certainly runs */
    enum { KS_LEASE_MS = 600 };
    void *a = ks_open(k, 0, KS_LEASE_MS);
    void *b = ks_open(k, 1, KS_LEASE_MS);
    ks_write(k, "k1", "l1");
    ks_write(k, "k1", "l2");
    ks_write(k, "k2", "l3");
    obx_event *ea[4], *eb[4];
    int64_t t0 = kit_mono_ms();
    size_t na = ks_claim_n(k, a, ea, 4, 3);
    for (int i = 0; i < 2; i++) {
        size_t got = ks_claim(k, b, eb, 4, 0);
        if (kit_mono_ms() - t0 >= KS_LEASE_MS - 50)
            fail_msg("the check took %lld ms to claim and look again: too "
                     "slow to tell a running lease",
                     (long long)(kit_mono_ms() - t0));
        if (got != 0)
            fail_msg("a second instance claimed %zu events %lld ms into "
                     "the first one's %d ms lease",
                     got, (long long)(kit_mono_ms() - t0), KS_LEASE_MS);
        if (i == 0)
            kit_sleep_ms(KS_LEASE_MS / 2);
    }
    /* taken over once the lease has run out */
    size_t nb = ks_claim_n(k, b, eb, 4, 3);
    /* (10 ms for a backend measuring on another clock source) */
    if (kit_mono_ms() - t0 < KS_LEASE_MS - 10)
        fail_msg("taken over after %lld ms, before the %d ms lease ended",
                 (long long)(kit_mono_ms() - t0), KS_LEASE_MS);
    for (size_t i = 0; i < nb; i++)
        assert_int_equal(eb[i]->attempts, 0);
    ks_ids ids;
    ks_save_ids(&ids, eb, nb);
    for (size_t i = 0; i < nb; i++)
        ks_expect_state(k, ids.id[i], OBX_CONTRACT_CLAIMED);
    /* a's late release (two events) and bury (the third) must not
     * disturb b's claim */
    KIT_ERR;
    obx_release rel[4];
    for (size_t i = 0; i + 1 < na; i++)
        rel[i] =
            (obx_release){ea[i], kit_now_us() + 3600LL * 1000000, "late", true};
    assert_int_equal(k->ops->release(a, rel, na - 1, err, sizeof err), OBX_OK);
    ea[na - 1]->attempts = 1;
    obx_burial late_bu = {ea[na - 1], "late", NULL};
    assert_int_equal(k->ops->bury(a, &late_bu, 1, err, sizeof err), OBX_OK);
    if (ks_has_inspect(k)) {
        for (size_t i = 0; i < nb; i++) {
            obx_contract_record rec;
            ks_inspect(k, ids.id[i], &rec);
            if (rec.state != OBX_CONTRACT_CLAIMED || rec.attempts != 0 ||
                rec.retry_at_us > kit_now_us() || rec.last_error[0])
                fail_msg("%s after the stale release and bury: %s, %u "
                         "attempts, "
                         "retry at %lld, error '%s'",
                         ids.id[i], ks_state_name(rec.state), rec.attempts,
                         (long long)rec.retry_at_us, rec.last_error);
        }
    }
    ks_ack(k, b, eb, nb);
    for (size_t i = 0; i < nb; i++)
        ks_expect_state(k, ids.id[i], OBX_CONTRACT_PUBLISHED);
    /* nothing came back: b's ack stands */
    assert_int_equal(ks_claim(k, b, eb, 4, 300), 0);
    assert_int_equal(ks_claim(k, a, ea, 4, 0), 0);
    k->ops->close(a);
    k->ops->close(b);
}

/* release records attempts (or not), retry time and last error as each
 * item says; an event released for later is not claimed before then. */
static void check_release(void **state)
{
    ks *k = *state;
    void *s = ks_open(k, 0, 0);
    ks_write(k, "k1", "r1");
    ks_write(k, "k2", "r2");
    obx_event *ev[4];
    size_t n = ks_claim_n(k, s, ev, 4, 2);
    char pl[8];
    if (strcmp(ks_pl(ev[0], pl, sizeof pl), "r1") != 0) {
        obx_event *t = ev[0];
        ev[0] = ev[1];
        ev[1] = t;
    }
    ks_ids ids;
    ks_save_ids(&ids, ev, n);
    int64_t later = kit_now_us() + 400 * 1000;
    KIT_ERR;
    obx_release r[2] = {{ev[0], later, "boom", true}, {ev[1], 0, NULL, false}};
    assert_int_equal(k->ops->release(s, r, 2, err, sizeof err), OBX_OK);
    obx_contract_record rec;
    if (ks_has_inspect(k)) {
        ks_inspect(k, ids.id[0], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_PENDING);
        assert_int_equal(rec.attempts, 1);
        assert_string_equal(rec.last_error, "boom");
        /* never before the time asked for (store.h: "not before which
         * to offer it again"); a store on its backend's clock may put it
         * a little later */
        if (rec.retry_at_us < later ||
            rec.retry_at_us > later + KS_CLOCK_SLACK_US)
            fail_msg("r1 recorded for retry at %lld, released for %lld",
                     (long long)rec.retry_at_us, (long long)later);
        ks_inspect(k, ids.id[1], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_PENDING);
        assert_int_equal(rec.attempts, 0);
        assert_string_equal(rec.last_error, "");
    }
    /* r1 is not due yet; r2 is */
    n = ks_claim(k, s, ev, 4, 0);
    ks_expect(ev, n, (const char *[]){"r2"}, 1);
    assert_int_equal(ev[0]->attempts, 0);
    /* released again, not counted, then counted without an error */
    r[0] = (obx_release){ev[0], 0, "held back", false};
    assert_int_equal(k->ops->release(s, r, 1, err, sizeof err), OBX_OK);
    ks_expect(ev, ks_claim(k, s, ev, 4, 0), (const char *[]){"r2"}, 1);
    assert_int_equal(ev[0]->attempts, 0);
    r[0] = (obx_release){ev[0], 0, NULL, true};
    assert_int_equal(k->ops->release(s, r, 1, err, sizeof err), OBX_OK);
    if (ks_has_inspect(k)) {
        /* a release without an error keeps the last one (store.h) */
        ks_inspect(k, ids.id[1], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_PENDING);
        assert_int_equal(rec.attempts, 1);
        assert_string_equal(rec.last_error, "held back");
    }
    ks_expect(ev, ks_claim(k, s, ev, 4, 0), (const char *[]){"r2"}, 1);
    assert_int_equal(ev[0]->attempts, 1);
    ks_ack(k, s, ev, 1);
    if (kit_now_us() >= later)
        fail_msg("the check ran past r1's retry time: too slow to tell");
    while (kit_now_us() < later)
        kit_sleep_ms(20);
    n = ks_claim_n(k, s, ev, 4, 1);
    ks_expect(ev, n, (const char *[]){"r1"}, 1);
    assert_int_equal(ev[0]->attempts, 1);
    ks_ack(k, s, ev, 1);
    k->ops->close(s);
}

/* Two of three events buried (b1 with a destination, b2 without); b3, of
 * b1's key, is not held back by the dead head. Returns the instance; ids
 * of b1, b2 in ids; *t0 just before the burial. */
static void *ks_bury_two(ks *k, ks_ids *ids, int64_t *t0)
{
    void *s = ks_open(k, 0, 0);
    ks_write(k, "k1", "b1");
    ks_write(k, "k2", "b2");
    ks_write(k, "k1", "b3");
    obx_event *ev[4], *pair[2] = {NULL, NULL};
    size_t n = ks_claim_n(k, s, ev, 2, 2);
    char pl[8];
    for (size_t i = 0; i < n; i++) {
        ks_pl(ev[i], pl, sizeof pl);
        if (strcmp(pl, "b1") == 0)
            pair[0] = ev[i];
        else if (strcmp(pl, "b2") == 0)
            pair[1] = ev[i];
        else
            fail_msg("claimed %s before b1 and b2", pl);
    }
    ks_save_ids(ids, pair, 2);
    KIT_ERR;
    pair[0]->attempts = 3; /* the engine counts the final attempt */
    pair[1]->attempts = 1;
    obx_burial bu[2] = {{pair[0], "too large", "orders.big"},
                        {pair[1], "rejected", NULL}};
    *t0 = kit_now_us();
    assert_int_equal(k->ops->bury(s, bu, 2, err, sizeof err), OBX_OK);
    /* a dead head does not hold back its key */
    ks_expect(ev, ks_claim_n(k, s, ev, 4, 1), (const char *[]){"b3"}, 1);
    ks_ack(k, s, ev, 1);
    return s;
}

/* bury keeps reason, destination and attempts; buried events never come
 * back. */
static void check_bury(void **state)
{
    ks *k = *state;
    ks_ids ids;
    int64_t t0;
    void *s = ks_bury_two(k, &ids, &t0);
    obx_event *ev[4];
    assert_int_equal(ks_claim(k, s, ev, 4, 200), 0);
    if (ks_has_inspect(k)) {
        obx_contract_record rec;
        ks_inspect(k, ids.id[0], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_DEAD);
        assert_int_equal(rec.attempts, 3);
        assert_string_equal(rec.dead_reason, "too large");
        assert_string_equal(rec.dead_destination, "orders.big");
        ks_inspect(k, ids.id[1], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_DEAD);
        assert_int_equal(rec.attempts, 1);
        assert_string_equal(rec.dead_reason, "rejected");
        assert_string_equal(rec.dead_destination, "");
    }
    k->ops->close(s);
}

typedef struct dead_seen {
    int n;
    char id[8][128];
    char reason[8][64];
    char dest[8][64];
    int64_t dead_at[8];
    uint32_t attempts[8];
    int stop_after;
} dead_seen;

static int dead_cb(void *ctx, const obx_dead_letter *dl)
{
    dead_seen *d = ctx;
    if (d->n >= 8)
        fail_msg("dead_list called back more than 8 times");
    if (!dl->event || !dl->event->event_id || !dl->reason)
        fail_msg("dead letter without event, event_id or reason");
    snprintf(d->id[d->n], sizeof d->id[0], "%s", dl->event->event_id);
    snprintf(d->reason[d->n], 64, "%s", dl->reason);
    snprintf(d->dest[d->n], 64, "%s",
             dl->destination ? dl->destination : "(null)");
    d->dead_at[d->n] = dl->dead_at_us;
    d->attempts[d->n] = dl->event->attempts;
    d->n++;
    return d->stop_after && d->n >= d->stop_after;
}

/* dead_list, dead_requeue, dead_purge: all or one id, unknown ids,
 * counts, the callback's stop, stats' dead count. */
static void check_dead_ops(void **state)
{
    ks *k = *state;
    if (!k->ops->dead_list || !k->ops->dead_requeue || !k->ops->dead_purge)
        fail_msg("dead_list, dead_requeue or dead_purge is NULL: declare "
                 "dead_ops not applicable");
    ks_ids ids;
    int64_t t0;
    void *s = ks_bury_two(k, &ids, &t0);
    KIT_ERR;
    dead_seen d = {0};
    assert_int_equal(k->ops->dead_list(s, NULL, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.id[0], ids.id[0]);
    assert_string_equal(d.id[1], ids.id[1]);
    assert_string_equal(d.reason[0], "too large");
    assert_string_equal(d.reason[1], "rejected");
    assert_string_equal(d.dest[0], "orders.big");
    if (strcmp(d.dest[1], "(null)") != 0 && strcmp(d.dest[1], "") != 0)
        fail_msg("destination of a burial without one: '%s'", d.dest[1]);
    assert_int_equal(d.attempts[0], 3);
    assert_int_equal(d.attempts[1], 1);
    for (int i = 0; i < 2; i++)
        if (d.dead_at[i] < t0 - 1000 || d.dead_at[i] > kit_now_us() + 1000)
            fail_msg("dead_at %lld outside the burial [%lld, now]",
                     (long long)d.dead_at[i], (long long)t0);
    d = (dead_seen){.stop_after = 1};
    assert_int_equal(k->ops->dead_list(s, NULL, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 1);
    d = (dead_seen){0};
    assert_int_equal(
        k->ops->dead_list(s, ids.id[1], dead_cb, &d, err, sizeof err), OBX_OK);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.id[0], ids.id[1]);
    d = (dead_seen){0};
    assert_int_equal(k->ops->dead_list(s, "contract-no-such-id", dead_cb, &d,
                                       err, sizeof err),
                     OBX_NOT_FOUND);
    assert_int_equal(d.n, 0);
    if (k->ops->stats) {
        obx_store_stats ss;
        ks_stats(k, s, &ss, 0);
        assert_int_equal(ss.dead, 2);
    }
    uint64_t count = 99;
    assert_int_equal(
        k->ops->dead_requeue(s, "contract-no-such-id", &count, err, sizeof err),
        OBX_NOT_FOUND);
    assert_int_equal(
        k->ops->dead_requeue(s, ids.id[1], &count, err, sizeof err), OBX_OK);
    assert_int_equal(count, 1);
    if (ks_has_inspect(k)) {
        obx_contract_record rec;
        ks_inspect(k, ids.id[1], &rec);
        assert_int_equal(rec.state, OBX_CONTRACT_PENDING);
        assert_int_equal(rec.attempts, 0);
        assert_string_equal(rec.dead_reason, "");
        if (rec.retry_at_us > kit_now_us())
            fail_msg("a requeued event is not due now");
    }
    obx_event *ev[4];
    ks_expect(ev, ks_claim_n(k, s, ev, 4, 1), (const char *[]){"b2"}, 1);
    assert_int_equal(ev[0]->attempts, 0);
    ks_ack(k, s, ev, 1);
    /* a store that keeps acked events keeps them through a purge: it
     * deletes dead letters only */
    bool kept = false;
    if (ks_has_inspect(k)) {
        obx_contract_record rec;
        ks_inspect(k, ids.id[1], &rec);
        kept = rec.state == OBX_CONTRACT_PUBLISHED;
    }
    assert_int_equal(
        k->ops->dead_purge(s, "contract-no-such-id", &count, err, sizeof err),
        OBX_NOT_FOUND);
    assert_int_equal(k->ops->dead_purge(s, NULL, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    ks_expect_state(k, ids.id[0], OBX_CONTRACT_ABSENT);
    ks_expect_state(k, ids.id[1], OBX_CONTRACT_PUBLISHED);
    if (kept) {
        obx_contract_record rec;
        ks_inspect(k, ids.id[1], &rec);
        if (rec.state != OBX_CONTRACT_PUBLISHED)
            fail_msg("dead_purge removed %s, a published event", ids.id[1]);
    }
    d = (dead_seen){0};
    assert_int_equal(k->ops->dead_list(s, NULL, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 0);
    assert_int_equal(k->ops->dead_purge(s, NULL, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 0);
    k->ops->close(s);
}

/* stats: pending counts claimed-but-unsettled events, oldest_pending_us is
 * the oldest pending event's created_at_us, lag_bytes stays -1 unless the
 * store reports lag, and nothing is written past a smaller struct_size. */
static void check_stats(void **state)
{
    ks *k = *state;
    if (!k->ops->stats)
        fail_msg("stats is NULL: declare stats not applicable");
    void *s = ks_open(k, 0, 0);
    KIT_ERR;
    obx_store_stats ss;
    ks_stats(k, s, &ss, 0);
    assert_int_equal(ss.dead, 0);
    assert_int_equal(ss.oldest_pending_us, 0);
    if (!k->h->reports_lag)
        assert_int_equal(ss.lag_bytes, -1);
    else if (ss.lag_bytes < 0)
        fail_msg("lag_bytes %lld from a store that reports lag",
                 (long long)ss.lag_bytes);
    for (int i = 1; i <= 3; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        ks_write(k, key, key);
        /* created_at far enough apart to tell them within the slack */
        kit_sleep_ms(3 * KS_CLOCK_SLACK_US / 1000);
    }
    obx_event *ev[4];
    /* the WAL stores learn of events by claiming: claim all, then ask */
    size_t n = ks_claim_n(k, s, ev, 4, 3);
    /* oldest first: ev[0] the oldest, ev[1] the next */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ev[j]->created_at_us < ev[i]->created_at_us) {
                obx_event *t = ev[i];
                ev[i] = ev[j];
                ev[j] = t;
            }
    if (ev[0]->created_at_us == 0)
        fail_msg("created_at_us 0: the store cannot tell (stats needs it)");
    ss = (obx_store_stats){.struct_size = sizeof ss, .lag_bytes = -1};
    assert_int_equal(k->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    /* claimed but unsettled events are still pending */
    assert_int_equal(ss.pending, 3);
    assert_int_equal(ss.dead, 0);
    ks_assert_near(ss.oldest_pending_us, ev[0]->created_at_us,
                   "oldest_pending_us, the oldest event's created_at_us");
    int64_t second = ev[1]->created_at_us;
    ks_ack(k, s, ev, 1);
    ss = (obx_store_stats){.struct_size = sizeof ss, .lag_bytes = -1};
    assert_int_equal(k->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.pending, 2);
    ks_assert_near(ss.oldest_pending_us, second,
                   "oldest_pending_us after the oldest was acked, the next "
                   "one's created_at_us");
    /* an older caller's smaller struct: nothing written past its size */
    obx_store_stats small;
    memset(&small, 0x5a, sizeof small);
    small.struct_size = offsetof(obx_store_stats, lag_bytes);
    assert_int_equal(k->ops->stats(s, &small, err, sizeof err), OBX_OK);
    assert_int_equal(small.pending, 2);
    assert_int_equal(small.lag_bytes, 0x5a5a5a5a5a5a5a5aLL);
    assert_int_equal(small.standby, 0x5a5a5a5aU);
    ks_ack(k, s, ev + 1, 2);
    ks_stats(k, s, &ss, 0);
    assert_int_equal(ss.oldest_pending_us, 0);
    k->ops->close(s);
}

/* With the backend down, claim reports UNAVAILABLE (never another status:
 * the engine would stop the pipeline), and once it is back the same
 * instance claims the event written before the outage. */
static void check_backend_down(void **state)
{
    ks *k = *state;
    if (!k->h->backend_stop || !k->h->backend_start)
        fail_msg("no backend_stop/backend_start: declare backend_down not "
                 "applicable");
    void *s = ks_open(k, 0, 0);
    ks_write(k, "k1", "d1");
    KIT_ERR;
    if (k->h->backend_stop(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness backend_stop: %s", err);
    obx_event *ev[4];
    size_t n = 99;
    obx_status st = k->ops->claim(s, ev, 4, &n, 0, err, sizeof err);
    if (st != OBX_UNAVAILABLE)
        fail_msg("claim with the backend down: %s (%s), expected "
                 "unavailable",
                 obx_status_name(st), err);
    if (!err[0])
        fail_msg("claim UNAVAILABLE without a reason in errstr");
    if (k->h->backend_start(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness backend_start: %s", err);
    int64_t end = kit_mono_ms() + 30000;
    n = 0;
    do {
        st = k->ops->claim(s, ev, 4, &n, 100, err, sizeof err);
        if (st != OBX_OK && st != OBX_UNAVAILABLE)
            fail_msg("claim after the outage: %s (%s)", obx_status_name(st),
                     err);
        if (st != OBX_OK || n == 0)
            kit_sleep_ms(100);
    } while ((st != OBX_OK || n == 0) && kit_mono_ms() < end);
    if (st != OBX_OK)
        fail_msg("claim still %s 30 s after the backend came back: %s",
                 obx_status_name(st), err);
    ks_expect(ev, n, (const char *[]){"d1"}, 1);
    ks_ack(k, s, ev, 1);
    k->ops->close(s);
}

static const char *const store_checks[] = {
    "claim_max",    "claim_order", "claim_holds_keys",
    "claim_wait",   "settle_once", "lease_after_close",
    "lease_expiry", "release",     "bury",
    "dead_ops",     "stats",       "backend_down",
    "inspect",      "claim_ahead", NULL};

int obx_contract_store_run(const obx_contract_store_harness *h)
{
    char group[160];
    snprintf(group, sizeof group, "contract_store(%s)",
             h && h->name ? h->name : "?");
    if (!h ||
        h->struct_size < offsetof(obx_contract_store_harness, not_applicable) +
                             sizeof h->not_applicable ||
        !h->setup || !h->config || !h->write) {
        printf("[  ERROR   ] %s: harness without struct_size, setup, config "
               "or write\n",
               group);
        return 1;
    }
    int bad = kit_na_valid(h->not_applicable, store_checks, group);
    ks *k = calloc(1, sizeof *k);
    KIT_ERR;
    if (!k || kit_load(&k->kp, OBX_PLUGIN_STORE, h->plugin, h->plugin_dir, err,
                       sizeof err) != 0) {
        printf("[  ERROR   ] %s: %s\n", group, err);
        free(k);
        return bad + 1;
    }
    k->h = h;
    k->ops = k->kp.desc->ops;
    k->ordered = (k->ops->flags & OBX_STORE_ORDERED_CLAIM) != 0;
    const obx_contract_na *na = h->not_applicable;
    if (!h->inspect && !kit_na(na, "inspect")) {
        printf("[  ERROR   ] %s: no inspect callback and \"inspect\" not "
               "declared not applicable\n",
               group);
        bad++;
    }
    kit_check checks[] = {
        {"claim_max", check_claim_max, kit_na(na, "claim_max")},
        {"claim_order", check_claim_order, kit_na(na, "claim_order")},
        {"claim_holds_keys", check_claim_holds_keys,
         k->ordered ? kit_na(na, "claim_holds_keys")
                    : "the store does not set OBX_STORE_ORDERED_CLAIM (the "
                      "engine holds keys)"},
        {"claim_ahead", check_claim_ahead,
         !k->ordered ? "the store does not set OBX_STORE_ORDERED_CLAIM"
         : !OBX_HAS_OP(k->ops, obx_store_ops, claim_ahead)
             ? "the store has no claim_ahead (ABI 1.3)"
             : kit_na(na, "claim_ahead")},
        {"claim_wait", check_claim_wait, kit_na(na, "claim_wait")},
        {"settle_once", check_settle_once, kit_na(na, "settle_once")},
        {"lease_after_close", check_lease_after_close,
         kit_na(na, "lease_after_close")},
        {"lease_expiry", check_lease_expiry, kit_na(na, "lease_expiry")},
        {"release", check_release, kit_na(na, "release")},
        {"bury", check_bury, kit_na(na, "bury")},
        {"dead_ops", check_dead_ops, kit_na(na, "dead_ops")},
        {"stats", check_stats, kit_na(na, "stats")},
        {"backend_down", check_backend_down, kit_na(na, "backend_down")},
    };
    if (!h->inspect)
        printf("[   N/A    ] %s inspect: %s (release, bury, dead_ops and "
               "lease_expiry do not check the store's records)\n",
               group, kit_na(na, "inspect") ? kit_na(na, "inspect") : "");
    int failed = kit_run(group, checks, sizeof checks / sizeof checks[0],
                         ks_setup, ks_teardown, k);
    kit_unload(&k->kp);
    free(k);
    return failed + bad;
}
