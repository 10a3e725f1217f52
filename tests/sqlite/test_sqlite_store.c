/* The sqlite store plugin, loaded from the build tree as the core loads
 * it, driven through its ops against a real database file. A raw SQLite
 * connection plays the application that writes the outbox. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "options.h"
#include "sqlite_testlib.h"
#include "support.h"

#define ERRBUF char err[OBX_ERRSTR_LEN] = ""

static int setup(void **state)
{
    *state = sqt_new();
    return 0;
}

static int teardown(void **state)
{
    sqt_free(*state);
    return 0;
}

static int is_uuid_v4(const char *s)
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
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static const obx_header *find_header(const obx_event *e, const char *name)
{
    for (size_t i = 0; i < e->n_headers; i++)
        if (strcmp(e->headers[i].name, name) == 0)
            return &e->headers[i];
    return NULL;
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
    sqt *t = *state;
    const obx_plugin *p = t->plugin;
    assert_int_equal(p->kind, OBX_PLUGIN_STORE);
    assert_string_equal(p->name, "sqlite");
    assert_int_equal(p->config_size, sizeof(sq_config));
    assert_int_equal(t->ops->flags, OBX_STORE_ORDERED_CLAIM);
    struct {
        const char *name;
        obx_opt_type type;
        const char *def;
        size_t off;
    } want[] = {
        {"path", OBX_OPT_STRING, "outbox.db", offsetof(sq_config, path)},
        {"table", OBX_OPT_STRING, "outbox", offsetof(sq_config, table)},
        {"ack_mode", OBX_OPT_ENUM, "mark", offsetof(sq_config, ack_mode)},
        {"lease", OBX_OPT_DURATION, "60s", offsetof(sq_config, lease_ms)},
        {"busy_timeout", OBX_OPT_DURATION, "5s",
         offsetof(sq_config, busy_timeout_ms)},
        {"retention", OBX_OPT_DURATION, "7d",
         offsetof(sq_config, retention_ms)},
        {"create_schema", OBX_OPT_BOOL, "true",
         offsetof(sq_config, create_schema)},
        {"owner", OBX_OPT_STRING, NULL, offsetof(sq_config, owner)},
        {"column", OBX_OPT_PREFIX, NULL, offsetof(sq_config, column)},
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
    const obx_option *am = find_opt(p, "ack_mode");
    assert_string_equal(am->enum_values[0], "mark");
    assert_string_equal(am->enum_values[1], "delete");
    assert_null(am->enum_values[2]);
}

typedef struct sbuf {
    char text[16384];
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

/* schema_v2 of `c` into b; fails the test with the store's reason. */
static void schema_ok(sqt *t, const sq_config *c, sbuf *b)
{
    ERRBUF;
    if (t->ops->schema_v2(t->host, c, emit_cb, b, err, sizeof err) != OBX_OK)
        fail_msg("schema: %s", err);
}

/* The core's options parser fills our struct from the table: defaults,
 * every type, and column.* pass-through. */
static void test_options_through_core(void **state)
{
    sqt *t = *state;
    obx_optable tab = {t->plugin->options, t->plugin->option_size};
    obx_conf_section sec = {OBX_SECTION_PIPELINE, (char *)"orders", 1, NULL, 0};
    sq_config c;
    char err[512] = "";
    memset(&c, 0, sizeof c);
    if (obx_options_fill(tab, "t.conf", &sec, "store.", &c, err, sizeof err))
        fail_msg("defaults: %s", err);
    assert_string_equal(c.path, "outbox.db");
    assert_string_equal(c.table, "outbox");
    assert_int_equal(c.ack_mode, SQ_ACK_MARK);
    assert_int_equal(c.lease_ms, 60000);
    assert_int_equal(c.busy_timeout_ms, 5000);
    assert_int_equal(c.retention_ms, 7LL * 86400 * 1000);
    assert_true(c.create_schema);
    assert_true(c.owner == NULL || c.owner[0] == '\0');
    assert_int_equal(c.column.n, 0);
    obx_options_free(tab, &c);

    obx_conf_entry e[] = {
        {(char *)"store.path", t->path, 2},
        {(char *)"store.ack_mode", (char *)"delete", 3},
        {(char *)"store.lease", (char *)"200ms", 4},
        {(char *)"store.retention", (char *)"0", 5},
        {(char *)"store.create_schema", (char *)"false", 6},
        {(char *)"store.column.aggregate_id", (char *)"order_id", 7},
        {(char *)"store.owner", (char *)"relay-1", 8},
    };
    sec.entries = e;
    sec.n_entries = sizeof e / sizeof e[0];
    memset(&c, 0, sizeof c);
    if (obx_options_fill(tab, "t.conf", &sec, "store.", &c, err, sizeof err))
        fail_msg("fill: %s", err);
    assert_string_equal(c.path, t->path);
    assert_int_equal(c.ack_mode, SQ_ACK_DELETE);
    assert_int_equal(c.lease_ms, 200);
    assert_int_equal(c.retention_ms, 0);
    assert_false(c.create_schema);
    assert_string_equal(c.owner, "relay-1");
    assert_int_equal(c.column.n, 1);
    assert_string_equal(c.column.items[0].name, "aggregate_id");
    assert_string_equal(c.column.items[0].value, "order_id");
    sbuf b = {0};
    schema_ok(t, &c, &b);
    assert_non_null(strstr(b.text, "\"order_id\" TEXT NOT NULL"));
    obx_options_free(tab, &c);

    obx_conf_entry bad[] = {{(char *)"store.lease", (char *)"1ms", 9}};
    sec.entries = bad;
    sec.n_entries = 1;
    memset(&c, 0, sizeof c);
    assert_int_not_equal(
        obx_options_fill(tab, "t.conf", &sec, "store.", &c, err, sizeof err),
        0);
    assert_non_null(strstr(err, "lease"));
}

/* ---- the writer's side ---- */

static void test_plain_insert(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    int64_t before = sqt_now_us();
    for (int i = 0; i < 200; i++)
        sqt_insert(t, "42", "{}");
    int64_t after = sqt_now_us();
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(DISTINCT event_id) FROM "
                             "outbox WHERE event_id IS NOT NULL"),
                     200);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(sqt_db(t),
                                        "SELECT event_id, created_at, "
                                        "attempts, next_attempt_at, "
                                        "locked_by, published_at, dead_at "
                                        "FROM outbox",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!is_uuid_v4(id))
            fail_msg("not a uuid v4: %s", id);
        int64_t c = sqlite3_column_int64(st, 1);
        /* julianday('now') has millisecond resolution */
        assert_true(c >= before - 1000 && c <= after + 1000);
        assert_int_equal(sqlite3_column_int64(st, 2), 0);
        assert_int_equal(sqlite3_column_int64(st, 3), 0);
        for (int k = 4; k <= 6; k++)
            assert_int_equal(sqlite3_column_type(st, k), SQLITE_NULL);
    }
    sqlite3_finalize(st);
    /* headers must be a JSON object: a bad write fails in the writer's own
     * transaction instead of poisoning the relay later */
    char *msg = NULL;
    assert_int_not_equal(
        sqlite3_exec(sqt_db(t),
                     "INSERT INTO outbox(aggregate_type, aggregate_id, "
                     "event_type, payload, headers) VALUES "
                     "('o', '1', 'X', 'p', '[1,2]')",
                     NULL, NULL, &msg),
        SQLITE_OK);
    sqlite3_free(msg);
    t->ops->close(s);
}

/* ---- claim ---- */

static void test_claim_fields(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_exec(t, "INSERT INTO outbox(event_id, aggregate_type, aggregate_id, "
                "event_type, payload, topic, headers, created_at) VALUES "
                "('ev-1', 'order', 'o-7', 'OrderPaid', x'00010203ff00', "
                "'orders.paid', '{\"trace\":\"abc\",\"tenant\":\"t1\","
                "\"n\":5,\"ok\":true}', 1234567)");
    int64_t t0 = sqt_now_us();
    int64_t id2 = sqt_insert(t, "o-8", "{\"a\":1}");
    obx_event *ev[8];
    assert_int_equal(sqt_claim(t, s, ev, 8), 2);

    obx_event *a = ev[0];
    assert_int_equal(a->pos.seq, 1);
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
    assert_true(is_uuid_v4(b->event_id));
    assert_null(b->topic);
    assert_int_equal(b->n_headers, 0);
    assert_int_equal(b->payload_len, 7);
    assert_memory_equal(b->payload, "{\"a\":1}", 7);
    assert_true(b->created_at_us >= t0 - 1000 &&
                b->created_at_us <= sqt_now_us() + 1000);
    /* the rows are leased to us, by one claims row, and not in the rows */
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM " SQT_CLAIMED
                             " WHERE id IN (1, %lld) AND expires_at > %lld",
                             (long long)id2, (long long)sqt_now_us()),
                     2);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "locked_by IS NOT NULL OR locked_until IS "
                             "NOT NULL"),
                     0);
    /* and claimed once only */
    assert_int_equal(sqt_claim(t, s, ev, 8), 0);
    sqt_ack(t, s, ev, 2);
    t->ops->close(s);
}

static void claim_ids(sqt *t, void *s, size_t max, const int64_t *want,
                      size_t n_want, obx_event **ev)
{
    size_t n = sqt_claim(t, s, ev, max);
    if (n != n_want)
        fail_msg("claimed %zu events, expected %zu", n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ev[i]->pos.seq, want[i]);
}

static void test_claim_max(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    char key[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        sqt_insert(t, key, "x");
    }
    obx_event *ev[16];
    claim_ids(t, s, 3, (int64_t[]){1, 2, 3}, 3, ev);
    sqt_ack(t, s, ev, 3);
    claim_ids(t, s, 4, (int64_t[]){4, 5, 6, 7}, 4, ev);
    sqt_ack(t, s, ev, 4);
    claim_ids(t, s, 16, (int64_t[]){8, 9, 10}, 3, ev);
    sqt_ack(t, s, ev, 3);
    t->ops->close(s);
}

/* Per-key claim order and hold-back (A1 B1 A2 B2 A3): tests/contract,
 * check claim_holds_keys. */

/* A key whose head is leased by another relay is held back too, and a
 * dead head does not block its key. */
static void test_claim_key_order_dead_head(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_insert(t, "A", "x");
    sqt_insert(t, "A", "x");
    /* a lease an earlier relay left before the upgrade (its trigger, which
     * turns such relays away now, did not exist then) */
    sqt_exec(t, "DROP TRIGGER outbox_no_row_leases");
    sqt_exec(t,
             "UPDATE outbox SET locked_by = 'other', locked_until = %lld "
             "WHERE id = 1",
             (long long)(sqt_now_us() + 3600LL * 1000000));
    obx_event *ev[4];
    claim_ids(t, s, 4, NULL, 0, ev);
    sqt_exec(t, "UPDATE outbox SET dead_at = 1, locked_by = NULL, "
                "locked_until = NULL WHERE id = 1");
    claim_ids(t, s, 4, (int64_t[]){2}, 1, ev);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* Two relays, relay-a and relay-b, on one table, with leases of 200 ms
 * (the configs must outlive the instances). */
static void two_relays(sqt *t, sq_config *ca, sq_config *cb, void **a, void **b)
{
    *ca = *cb = t->conf;
    ca->lease_ms = cb->lease_ms = 200;
    ca->owner = (char *)"relay-a";
    cb->owner = (char *)"relay-b";
    *a = sqt_open(t, ca);
    *b = sqt_open(t, cb);
}

static void test_lease_expiry(void **state)
{
    sqt *t = *state;
    sq_config ca, cb;
    void *a, *b;
    two_relays(t, &ca, &cb, &a, &b);
    for (int i = 0; i < 3; i++)
        sqt_insert(t, i == 2 ? "k2" : "k1", "x");
    obx_event *ea[4], *eb[4];
    assert_int_equal(sqt_claim(t, a, ea, 4), 3);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM " SQT_CLAIMED
                             " WHERE owner = 'relay-a'"),
                     3);
    assert_int_equal(sqt_claim(t, b, eb, 4), 0);
    sqt_sleep_ms(100);
    assert_int_equal(sqt_claim(t, b, eb, 4), 0);
    sqt_sleep_ms(150);
    assert_int_equal(sqt_claim(t, b, eb, 4), 3);
    assert_int_equal(eb[0]->attempts, 0);
    /* b's claim ended a's: one claims row, b's */
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM " SQT_CLAIMED
                             " WHERE owner = 'relay-b'"),
                     3);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 1);
    /* a's late release must not disturb b's claim */
    ERRBUF;
    obx_release rel[3];
    for (int i = 0; i < 3; i++)
        rel[i] =
            (obx_release){ea[i], sqt_now_us() + 3600LL * 1000000, "late", true};
    assert_int_equal(t->ops->release(a, rel, 3, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id IN "
                             "(SELECT id FROM " SQT_CLAIMED
                             " WHERE owner = 'relay-b') AND attempts = 0 "
                             "AND next_attempt_at = 0 AND "
                             "last_error IS NULL"),
                     3);
    sqt_ack(t, b, eb, 3);
    /* the ack of its last events ended b's claim */
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL"),
                     3);
    t->ops->close(a);
    t->ops->close(b);
}

static void ack_mode_case(sqt *t, int mode)
{
    sq_config c = t->conf;
    c.ack_mode = mode;
    void *s = sqt_open(t, &c);
    sqt_insert(t, "k1", "x");
    sqt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(sqt_claim(t, s, ev, 4), 2);
    int64_t t0 = sqt_now_us();
    sqt_ack(t, s, ev, 1);
    if (mode == SQ_ACK_MARK) {
        assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 2);
        int64_t pub = sqt_int(t, -1,
                              "SELECT published_at FROM outbox "
                              "WHERE id = 1 AND locked_by IS NULL "
                              "AND locked_until IS NULL");
        assert_true(pub >= t0 && pub <= sqt_now_us());
    } else {
        assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 1);
        assert_int_equal(sqt_int(t, -1, "SELECT id FROM outbox"), 2);
    }
    assert_int_equal(sqt_int(t, -1,
                             "SELECT published_at IS NULL FROM outbox "
                             "WHERE id = 2"),
                     1);
    t->ops->close(s);
    /* close returned the unsettled lease at once */
    s = sqt_open(t, &c);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 2);
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_claim(t, s, ev, 4), 0);
    t->ops->close(s);
}

static void test_ack_mark(void **state)
{
    ack_mode_case(*state, SQ_ACK_MARK);
}

static void test_ack_delete(void **state)
{
    ack_mode_case(*state, SQ_ACK_DELETE);
}

static void test_release(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_insert(t, "k1", "x");
    sqt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(sqt_claim(t, s, ev, 4), 2);
    int64_t later = sqt_now_us() + 400 * 1000;
    ERRBUF;
    obx_release r[2] = {{ev[0], later, "boom", true}, {ev[1], 0, NULL, false}};
    assert_int_equal(t->ops->release(s, r, 2, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = 1 "
                             "AND attempts = 1 AND last_error = 'boom' "
                             "AND next_attempt_at = %lld AND "
                             "locked_by IS NULL AND locked_until IS "
                             "NULL",
                             (long long)later),
                     1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = 2 "
                             "AND attempts = 0 AND last_error IS NULL "
                             "AND locked_by IS NULL"),
                     1);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    /* row 1 is not due yet; row 2 is */
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 2);
    assert_int_equal(ev[0]->attempts, 0);
    /* a second release of row 2 without an error keeps last_error */
    r[0] = (obx_release){ev[0], 0, "held back", false};
    assert_int_equal(t->ops->release(s, r, 1, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    r[0] = (obx_release){ev[0], 0, NULL, true};
    assert_int_equal(t->ops->release(s, r, 1, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = 2 "
                             "AND attempts = 1 AND last_error = "
                             "'held back'"),
                     1);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 2);
    assert_int_equal(ev[0]->attempts, 1);
    sqt_ack(t, s, ev, 1);
    while (sqt_now_us() < later)
        sqt_sleep_ms(20);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 1);
    assert_int_equal(ev[0]->attempts, 1);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* ---- dead letters ---- */

typedef struct dead_seen {
    int n;
    uint64_t seq[8];
    char reason[8][64];
    char dest[8][64];
    int64_t dead_at[8];
    uint32_t attempts[8];
    int stop_after;
} dead_seen;

static int dead_cb(void *ctx, const obx_dead_letter *dl)
{
    dead_seen *d = ctx;
    d->seq[d->n] = dl->event->pos.seq;
    snprintf(d->reason[d->n], 64, "%s", dl->reason ? dl->reason : "(null)");
    snprintf(d->dest[d->n], 64, "%s",
             dl->destination ? dl->destination : "(null)");
    d->dead_at[d->n] = dl->dead_at_us;
    d->attempts[d->n] = dl->event->attempts;
    d->n++;
    return d->stop_after && d->n >= d->stop_after;
}

static void bury_two(sqt *t, void *s, obx_event **ev)
{
    ERRBUF;
    ev[0]->attempts = 3; /* the engine counts the final attempt */
    ev[1]->attempts = 1;
    obx_burial bu[2] = {{ev[0], "too large", "orders.big"},
                        {ev[1], "rejected", NULL}};
    assert_int_equal(t->ops->bury(s, bu, 2, err, sizeof err), OBX_OK);
}

static void event_id_of(sqt *t, int64_t id, char *out, size_t len)
{
    sqlite3_stmt *st;
    sqlite3_prepare_v2(sqt_db(t), "SELECT event_id FROM outbox WHERE id = ?1",
                       -1, &st, NULL);
    sqlite3_bind_int64(st, 1, id);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, len, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Rows 1 and 2 buried, row 3 (same key as row 1) published. */
static void *dead_setup(sqt *t, int64_t *t0)
{
    void *s = sqt_open(t, NULL);
    for (int i = 0; i < 3; i++)
        sqt_insert(t, i == 1 ? "k2" : "k1", "x");
    obx_event *ev[4];
    claim_ids(t, s, 2, (int64_t[]){1, 2}, 2, ev);
    *t0 = sqt_now_us();
    bury_two(t, s, ev);
    /* a dead head does not hold back its key */
    claim_ids(t, s, 4, (int64_t[]){3}, 1, ev);
    sqt_ack(t, s, ev, 1);
    return s;
}

static void test_dead_list(void **state)
{
    sqt *t = *state;
    int64_t t0;
    void *s = dead_setup(t, &t0);
    dead_seen d = {0};
    ERRBUF;
    assert_int_equal(t->ops->dead_list(s, NULL, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.seq[0], 1);
    assert_int_equal(d.seq[1], 2);
    assert_string_equal(d.reason[0], "too large");
    assert_string_equal(d.dest[0], "orders.big");
    assert_string_equal(d.dest[1], "(null)");
    assert_int_equal(d.attempts[0], 3);
    assert_int_equal(d.attempts[1], 1);
    assert_true(d.dead_at[0] >= t0 && d.dead_at[0] <= sqt_now_us());
    d = (dead_seen){.stop_after = 1};
    assert_int_equal(t->ops->dead_list(s, NULL, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 1);
    char eid[64];
    event_id_of(t, 2, eid, sizeof eid);
    d = (dead_seen){0};
    assert_int_equal(t->ops->dead_list(s, eid, dead_cb, &d, err, sizeof err),
                     OBX_OK);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.seq[0], 2);
    assert_int_equal(
        t->ops->dead_list(s, "no-such-id", dead_cb, &d, err, sizeof err),
        OBX_NOT_FOUND);
    obx_store_stats ss = {.struct_size = sizeof ss};
    assert_int_equal(t->ops->stats(s, &ss, err, sizeof err), OBX_OK);
    assert_int_equal(ss.dead, 2);
    assert_int_equal(ss.pending, 0);
    t->ops->close(s);
}

static void test_dead_requeue_purge(void **state)
{
    sqt *t = *state;
    int64_t t0;
    void *s = dead_setup(t, &t0);
    char eid[64];
    event_id_of(t, 2, eid, sizeof eid);
    ERRBUF;
    uint64_t count = 99;
    assert_int_equal(
        t->ops->dead_requeue(s, "no-such-id", &count, err, sizeof err),
        OBX_NOT_FOUND);
    assert_int_equal(t->ops->dead_requeue(s, eid, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE id = 2 "
                             "AND dead_at IS NULL AND dead_reason IS "
                             "NULL AND attempts = 0 AND "
                             "next_attempt_at = 0"),
                     1);
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){2}, 1, ev);
    assert_int_equal(ev[0]->attempts, 0);
    sqt_ack(t, s, ev, 1);

    assert_int_equal(
        t->ops->dead_purge(s, "no-such-id", &count, err, sizeof err),
        OBX_NOT_FOUND);
    assert_int_equal(t->ops->dead_purge(s, NULL, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 1);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 2);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox WHERE id = 1"),
                     0);
    assert_int_equal(t->ops->dead_purge(s, NULL, &count, err, sizeof err),
                     OBX_OK);
    assert_int_equal(count, 0);
    t->ops->close(s);
}

/* claim_ahead goes past our own claims only, by id and owner: in a
 * claims table made by hand without AUTOINCREMENT another relay's claim
 * can take the id of ours once that expired, and then holds our key. */
static void test_claim_ahead_not_past_a_reused_claim_id(void **state)
{
    sqt *t = *state;
    sq_config ca, cb;
    void *a, *b;
    two_relays(t, &ca, &cb, &a, &b);
    sqt_exec(t, "DROP TABLE outbox_claims");
    sqt_exec(t, "CREATE TABLE outbox_claims (claim_id INTEGER PRIMARY KEY, "
                "owner TEXT NOT NULL, expires_at INTEGER NOT NULL, ids TEXT "
                "NOT NULL, keys TEXT NOT NULL)");
    for (int i = 0; i < 3; i++)
        sqt_insert(t, "k1", "x");
    obx_event *ea[4], *eb[4];
    assert_int_equal(sqt_claim(t, a, ea, 1), 1);
    int64_t ours = sqt_int(t, -1, "SELECT claim_id FROM outbox_claims");
    sqt_sleep_ms(250);
    assert_int_equal(sqt_claim(t, b, eb, 1), 1); /* took a's over */
    assert_int_equal(sqt_int(t, -1,
                             "SELECT claim_id FROM outbox_claims "
                             "WHERE owner = 'relay-b'"),
                     ours);
    ERRBUF;
    size_t n = 99;
    assert_int_equal(t->ops->claim_ahead(a, ea + 1, 3, &n, err, sizeof err),
                     OBX_OK);
    if (n != 0)
        fail_msg("claim_ahead went past another relay's claim of k1 (it "
                 "reused our claim's id): %zu events",
                 n);
    sqt_ack(t, b, eb, 1);
    t->ops->close(a);
    t->ops->close(b);
}

/* The claims table as `outbox-relay schema sqlite` gives it. */
static void claims_table(sqt *t)
{
    sqt_exec(t, "CREATE TABLE outbox_claims (claim_id INTEGER PRIMARY KEY "
                "AUTOINCREMENT, owner TEXT NOT NULL, expires_at INTEGER NOT "
                "NULL, ids TEXT NOT NULL, keys TEXT NOT NULL)");
}

/* A table of a relay that leased in the rows has no claims table: with
 * create_schema = false the relay refuses it and names the table and the
 * DDL, before touching a row; with create_schema = true it adds the table
 * and claims. */
static void test_open_adds_claims_table(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    t->ops->close(s);
    sqt_exec(t, "DROP TABLE outbox_claims");
    sqt_insert(t, "k", "x");
    sq_config c = t->conf;
    c.create_schema = false;
    ERRBUF;
    void *inst = NULL;
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, "no table \"outbox_claims\"") ||
        !strstr(err, "outbox-relay schema sqlite"))
        fail_msg("open error '%s' does not name the claims table", err);
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    /* check --connect with create_schema passes (open would add the
     * table) and leaves the file as it was */
    assert_int_equal(t->ops->validate(t->host, &t->conf, true, err, sizeof err),
                     OBX_OK);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM sqlite_schema WHERE name "
                             "= 'outbox_claims'"),
                     0);
    s = sqt_open(t, NULL);
    obx_event *ev[2];
    claim_ids(t, s, 2, (int64_t[]){1}, 1, ev);
    assert_int_equal(sqt_int(t, -1, "SELECT id FROM " SQT_CLAIMED), 1);
    /* a relay of the earlier version, still running, cannot lease the
     * event in its row as well: its claim fails and says why */
    char *msg = NULL;
    assert_int_not_equal(
        sqlite3_exec(sqt_db(t),
                     "UPDATE outbox SET locked_by = 'old', locked_until = "
                     "9000000000000000 WHERE id IN (SELECT id FROM outbox "
                     "WHERE published_at IS NULL LIMIT 10)",
                     NULL, NULL, &msg),
        SQLITE_OK);
    if (!msg || !strstr(msg, "leases live in the claims table"))
        fail_msg("old relay's claim failed with '%s'", msg ? msg : "");
    sqlite3_free(msg);
    sqt_ack(t, s, ev, 1);
    /* what this relay writes to the lease columns (clearing) still works */
    sqt_exec(t, "UPDATE outbox SET locked_by = NULL, locked_until = NULL");
    t->ops->close(s);
}

/* A claims row lives until every event of its batch is settled, whatever
 * the mix of settles; its keys are held until then, other keys are not. */
static void test_claim_ends_with_its_batch(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_insert(t, "A", "x");
    sqt_insert(t, "B", "x");
    sqt_insert(t, "C", "x");
    obx_event *ev[4], *more[4];
    claim_ids(t, s, 3, (int64_t[]){1, 2, 3}, 3, ev);
    sqt_insert(t, "A", "x"); /* 4 */
    sqt_insert(t, "D", "x"); /* 5 */
    sqt_ack(t, s, ev, 1);
    ERRBUF;
    obx_release r = {ev[1], 0, "again", true};
    assert_int_equal(t->ops->release(s, &r, 1, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 1);
    /* A's and B's rows wait for the batch (C is still out); D does not */
    claim_ids(t, s, 4, (int64_t[]){5}, 1, more);
    sqt_ack(t, s, more, 1);
    obx_burial bu = {ev[2], "no", "dlq"};
    assert_int_equal(t->ops->bury(s, &bu, 1, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    /* the batch is settled: B's retry and A's next row, in id order */
    claim_ids(t, s, 4, (int64_t[]){2, 4}, 2, more);
    sqt_ack(t, s, more, 2);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    t->ops->close(s);
}

/* An outbox table made by hand: no NOT NULL on the writer's columns, no
 * CHECK on headers; the event id column named `event_id_col`. */
static void hand_made_table(sqt *t, const char *event_id_col)
{
    sqt_exec(t,
             "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
             "\"%w\" TEXT, aggregate_type TEXT, aggregate_id TEXT, "
             "event_type TEXT, payload BLOB, topic TEXT, headers TEXT, "
             "created_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0, "
             "next_attempt_at INTEGER NOT NULL DEFAULT 0, locked_by TEXT, "
             "locked_until INTEGER, published_at INTEGER, dead_at INTEGER, "
             "last_error TEXT, dead_reason TEXT, dead_destination TEXT)",
             event_id_col);
    claims_table(t);
}

/* Rows written by a client that bypassed the CHECK (a table created by
 * hand) with unparsable headers are dead-lettered at claim, not handed
 * out half-filled; the other rows flow. */
static void test_poison_headers(void **state)
{
    sqt *t = *state;
    hand_made_table(t, "event_id");
    sqt_exec(t, "INSERT INTO outbox(event_id, aggregate_type, aggregate_id, "
                "event_type, payload, headers) VALUES "
                "('e1', 'o', 'k', 'T', 'p', 'not json'), "
                "('e2', 'o', 'k', 'T', 'p', '[1]'), "
                "('e3', 'o', 'k', 'T', 'p', '{\"h\":\"v\"}')");
    sq_config c = t->conf;
    c.create_schema = false;
    void *s = sqt_open(t, &c);
    obx_event *ev[4];
    claim_ids(t, s, 4, (int64_t[]){3}, 1, ev);
    assert_string_equal(ev[0]->headers[0].value, "v");
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "dead_at IS NOT NULL AND dead_reason "
                             "LIKE '%%headers%%' AND id NOT IN (SELECT id "
                             "FROM " SQT_CLAIMED ")"),
                     2);
    t->ops->close(s);
}

/* Issue 15 item 3: header values are carried as written. Numbers keep
 * their text (an integer past 64 bits was dead-lettered, 19.99 printed
 * as a double), strings are unescaped, objects and arrays travel as their
 * compact JSON text, and a name written twice keeps its last value. */
static void test_header_values(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_exec(t, "INSERT INTO outbox(aggregate_type, aggregate_id, "
                "event_type, payload, headers) VALUES ('o', 'k', 'T', 'p', "
                "'{\"big\":123456789012345678901234567890,"
                "\"neg\":-9223372036854775809,\"price\":19.99,"
                "\"total\":42.00,\"e\":1e2,\"t\":true,\"z\":null,"
                "\"o\":{ \"a\" : [1, 2.50] },"
                "\"s\":\"caf\\u00e9 \\\"q\\\"\",\"n\\u00e4me\":\"x\","
                "\"dup\":\"first\",\"dup\":\"last\"}')");
    obx_event *ev[2];
    assert_int_equal(sqt_claim(t, s, ev, 2), 1);
    static const char *const want[][2] = {
        {"big", "123456789012345678901234567890"},
        {"neg", "-9223372036854775809"},
        {"price", "19.99"},
        {"total", "42.00"},
        {"e", "1e2"},
        {"t", "true"},
        {"z", "null"},
        {"o", "{\"a\":[1,2.50]}"},
        {"s", "caf\xc3\xa9 \"q\""},
        {"n\xc3\xa4me", "x"},
        {"dup", "last"},
    };
    assert_int_equal(ev[0]->n_headers, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const obx_header *h = find_header(ev[0], want[i][0]);
        if (!h)
            fail_msg("no header '%s'", want[i][0]);
        assert_string_equal(h->value, want[i][1]);
    }
    /* in the order written; the repeated name where it first appeared */
    assert_string_equal(ev[0]->headers[0].name, "big");
    assert_string_equal(ev[0]->headers[10].name, "dup");
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* What a header cannot carry is dead-lettered with the reason, not cut:
 * a NUL (\u0000) in a name or value would end the C string early. */
static void test_header_nul(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_exec(t, "INSERT INTO outbox(aggregate_type, aggregate_id, "
                "event_type, payload, headers) VALUES "
                "('o', 'k1', 'T', 'p', '{\"a\":\"x\\u0000y\"}'), "
                "('o', 'k2', 'T', 'p', '{\"a\\u0000b\":\"x\"}'), "
                "('o', 'k3', 'T', 'p', '{\"ok\":\"\\u0001\"}')");
    obx_event *ev[4];
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_string_equal(ev[0]->key, "k3");
    assert_string_equal(find_header(ev[0], "ok")->value, "\x01");
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE dead_at IS "
                             "NOT NULL AND dead_reason LIKE '%%header \"a\"%%"
                             "NUL (\\u0000)%%cannot carry%%'"),
                     1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE dead_at IS "
                             "NOT NULL AND dead_reason LIKE '%%header name"
                             "%%NUL (\\u0000)%%'"),
                     1);
    t->ops->close(s);
}

/* Issue 15 item 5: SQLite TEXT may hold a NUL. Read as a C string, the
 * value was cut at it: a topic "orders\0x" went to "orders", a key or
 * event id lost its tail. A broker field cannot hold a NUL, so the row is
 * dead-lettered with the reason (nothing is lost: the row keeps its bytes
 * for `dead show`, fix it and requeue). A NULL event id or key in a
 * hand-made table used to become "" (every such event a duplicate of the
 * others for a consumer that dedups on the id): dead-lettered too. The
 * payload has a length, so a NUL in a TEXT payload is carried whole. */
static void test_text_nul_and_null(void **state)
{
    sqt *t = *state;
    hand_made_table(t, "the id");
#define NUL_TEXT(s) "CAST(x'" s "' AS TEXT)"
    /* 6f7264 00 6572 = "ord\0er" */
    sqt_exec(
        t,
        "INSERT INTO outbox (\"the id\", aggregate_type, "
        "aggregate_id, event_type, payload, topic) VALUES "
        "('e1', 'o', 'k1', 'T', 'p', " NUL_TEXT(
            "6f7264006572") "), "
                            "('e2', 'o', " NUL_TEXT(
                                "6f7264006572") ", 'T', 'p', NULL), "
                                                "(" NUL_TEXT(
                                                    "6f7264006572") ", 'o', "
                                                                    "'k3', "
                                                                    "'T', 'p', "
                                                                    "NULL), "
                                                                    "('e4', "
                                                                    "'o', "
                                                                    "'k4',"
                                                                    " " NUL_TEXT(
                                                                        "6f7264"
                                                                        "00657"
                                                                        "2") ","
                                                                             " "
                                                                             "'"
                                                                             "p"
                                                                             "'"
                                                                             ","
                                                                             " "
                                                                             "N"
                                                                             "U"
                                                                             "L"
                                                                             "L"
                                                                             ")"
                                                                             ","
                                                                             " "
                                                                             "("
                                                                             "'"
                                                                             "e"
                                                                             "5"
                                                                             "'"
                                                                             ","
                                                                             " " NUL_TEXT(
                                                                                 "6f7264006572") ", 'k5', 'T', 'p', NULL), "
                                                                                                 "(NULL, 'o', 'k6', 'T', 'p', NULL), "
                                                                                                 "('e7', 'o', NULL, 'T', 'p', NULL), "
                                                                                                 "('e8', NULL, 'k8', 'T', 'p', NULL), "
                                                                                                 "('e9', 'o', 'k9', NULL, 'p', NULL), "
                                                                                                 "('ok', 'o', 'k10', 'T', " NUL_TEXT(
                                                                                                     "610062") ", 'dest')");
#undef NUL_TEXT
    obx_kv cols[] = {{"event_id", "the id", 3}};
    sq_config c = t->conf;
    c.create_schema = false;
    c.column = (obx_kvlist){cols, 1};
    void *s = sqt_open(t, &c);
    obx_event *ev[16];
    assert_int_equal(sqt_claim(t, s, ev, 16), 1);
    assert_string_equal(ev[0]->event_id, "ok");
    assert_string_equal(ev[0]->topic, "dest");
    assert_int_equal(ev[0]->payload_len, 3);
    assert_memory_equal(ev[0]->payload, "a\0b", 3);
    sqt_ack(t, s, ev, 1);
    static const struct {
        int64_t id;
        const char *why;
    } want[] = {
        {1, "column \"topic\" holds a NUL byte at offset 3"},
        {2, "column \"aggregate_id\" holds a NUL byte at offset 3"},
        {3, "column \"the id\" holds a NUL byte at offset 3"},
        {4, "column \"event_type\" holds a NUL byte at offset 3"},
        {5, "column \"aggregate_type\" holds a NUL byte at offset 3"},
        {6, "column \"the id\" is NULL"},
        {7, "column \"aggregate_id\" is NULL"},
        {8, "column \"aggregate_type\" is NULL"},
        {9, "column \"event_type\" is NULL"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (sqt_int(t, -1,
                    "SELECT count(*) FROM outbox WHERE id = %lld AND dead_at "
                    "IS NOT NULL AND id NOT IN (SELECT id FROM " SQT_CLAIMED
                    ") AND instr(dead_reason, "
                    "%Q) > 0",
                    (long long)want[i].id, want[i].why) != 1)
            fail_msg("row %lld is not dead with reason '%s'",
                     (long long)want[i].id, want[i].why);
    /* each NUL reason says why the row was not published */
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE dead_reason "
                             "LIKE '%%cannot carry%%'"),
                     5);
    t->ops->close(s);
}

/* ---- retention (stats: tests/contract, check stats) ---- */

static void test_retention(void **state)
{
    sqt *t = *state;
    sq_config c = t->conf;
    c.retention_ms = 3600 * 1000;
    /* 2300 old published, 300 recent published, 1 old pending, 1 old dead */
    sqt_db(t);
    void *s = sqt_open(t, &c);
    sqt_exec(t, "BEGIN");
    for (int i = 0; i < 2602; i++)
        sqt_insert(t, "k", "x");
    sqt_exec(t, "COMMIT");
    int64_t now = sqt_now_us(), old = now - 2 * 3600LL * 1000000;
    sqt_exec(t, "UPDATE outbox SET published_at = %lld WHERE id <= 2300",
             (long long)old);
    sqt_exec(t,
             "UPDATE outbox SET published_at = %lld WHERE id > 2300 AND "
             "id <= 2600",
             (long long)now);
    sqt_exec(t,
             "UPDATE outbox SET created_at = %lld, dead_at = %lld WHERE "
             "id = 2601",
             (long long)old, (long long)old);
    sqt_exec(t, "UPDATE outbox SET created_at = %lld WHERE id = 2602",
             (long long)old);
    obx_event *ev[4];
    /* the first claim after open runs one batch of 1000 */
    assert_int_equal(sqt_claim(t, s, ev, 1), 1);
    assert_int_equal(ev[0]->pos.seq, 2602);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 1602);
    /* a full batch means more may be waiting: the next run comes soon */
    sqt_sleep_ms(80);
    assert_int_equal(sqt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 602);
    sqt_sleep_ms(80);
    assert_int_equal(sqt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    assert_int_equal(sqt_int(t, -1, "SELECT min(id) FROM outbox"), 2301);
    /* then it rests for seconds */
    sqt_exec(t, "UPDATE outbox SET published_at = %lld WHERE id <= 2310",
             (long long)old);
    sqt_sleep_ms(80);
    assert_int_equal(sqt_claim(t, s, ev + 1, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);

    /* retention 0 and ack_mode=delete never delete published rows */
    c.retention_ms = 0;
    s = sqt_open(t, &c);
    assert_int_equal(sqt_claim(t, s, ev, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    t->ops->close(s);
    sqt_exec(t, "UPDATE outbox SET published_at = %lld WHERE id <= 2600",
             (long long)old);
    c.retention_ms = 3600 * 1000;
    c.ack_mode = SQ_ACK_DELETE;
    s = sqt_open(t, &c);
    assert_int_equal(sqt_claim(t, s, ev, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 302);
    t->ops->close(s);
    c.ack_mode = SQ_ACK_MARK;
    s = sqt_open(t, &c);
    assert_int_equal(sqt_claim(t, s, ev, 1), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 2);
    t->ops->close(s);
}

/* ---- schema, identifiers, config errors ---- */

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

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_schema_default(void **state)
{
    sqt *t = *state;
    sbuf b = {0};
    schema_ok(t, &t->conf, &b);
    assert_int_equal(b.calls, 7);
    assert_non_null(strstr(b.text, "CREATE TABLE IF NOT EXISTS \"outbox\""));
    assert_non_null(strstr(b.text, "\"aggregate_id\" TEXT NOT NULL"));
    assert_non_null(strstr(b.text, "\"outbox_key\" ON \"outbox\" "
                                   "(\"aggregate_id\", \"id\")"));
    assert_non_null(strstr(b.text, "randomblob"));
    /* the shipped schema.sql is this output */
    char *file = read_file(OBX_SOURCE_DIR "/stores/sqlite/schema.sql");
    char *a = normalize_sql(file), *c = normalize_sql(b.text);
    assert_string_equal(a, c);
    free(a);
    free(c);
    free(file);
    /* and the docs show it too */
    file = read_file(OBX_SOURCE_DIR "/docs/sqlite-schema.md");
    assert_non_null(strstr(file, "CREATE TABLE IF NOT EXISTS \"outbox\""));
    assert_non_null(strstr(file, "INSERT INTO outbox"));
    free(file);
    /* the DDL runs as emitted, twice (IF NOT EXISTS) */
    sqt_exec(t, "%s", b.text);
    sqt_exec(t, "%s", b.text);
    sqt_insert(t, "1", "x");
}

static void test_quoted_identifiers(void **state)
{
    sqt *t = *state;
    obx_kv cols[] = {{"aggregate_id", "order \"id\"", 3},
                     {"payload", "body", 4}};
    sq_config c = t->conf;
    c.table = (char *)"out\"box; DROP TABLE x";
    c.column = (obx_kvlist){cols, 2};
    sbuf b = {0};
    schema_ok(t, &c, &b);
    assert_non_null(
        strstr(b.text, "CREATE TABLE IF NOT EXISTS \"out\"\"box; DROP TABLE "
                       "x\""));
    assert_non_null(strstr(b.text, "\"order \"\"id\"\"\" TEXT NOT NULL"));
    assert_non_null(strstr(b.text, "\"out\"\"box; DROP TABLE x_key\""));
    assert_null(strstr(b.text, "\"payload\""));

    void *s = sqt_open(t, &c);
    sqt_exec(t, "INSERT INTO \"out\"\"box; DROP TABLE x\" (aggregate_type, "
                "\"order \"\"id\"\"\", event_type, body) VALUES "
                "('order', 'o1', 'Created', 'hello')");
    obx_event *ev[2];
    assert_int_equal(sqt_claim(t, s, ev, 2), 1);
    assert_string_equal(ev[0]->key, "o1");
    assert_int_equal(ev[0]->payload_len, 5);
    assert_memory_equal(ev[0]->payload, "hello", 5);
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM \"out\"\"box; DROP "
                             "TABLE x\" WHERE published_at IS NOT "
                             "NULL"),
                     1);
    t->ops->close(s);
}

static void expect_config_error(sqt *t, const sq_config *c, const char *needle)
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
    sbuf b = {0};
    err[0] = '\0';
    assert_null(t->ops->schema); /* schema_v2 only: it can say why */
    assert_int_equal(
        t->ops->schema_v2(t->host, c, emit_cb, &b, err, sizeof err),
        OBX_CONFIG);
    assert_int_equal(b.calls, 0);
    if (!strstr(err, needle))
        fail_msg("schema error '%s' lacks '%s'", err, needle);
}

static void test_column_errors(void **state)
{
    sqt *t = *state;
    sq_config c = t->conf;
    obx_kv unknown[] = {{"aggregateid", "x", 12}};
    c.column = (obx_kvlist){unknown, 1};
    expect_config_error(t, &c, "line 12: store.column.aggregateid: unknown");
    obx_kv book[] = {{"attempts", "tries", 5}};
    c.column = (obx_kvlist){book, 1};
    expect_config_error(t, &c, "unknown column 'attempts'");
    obx_kv clash[] = {{"topic", "Headers", 7}};
    c.column = (obx_kvlist){clash, 1};
    expect_config_error(t, &c, "'topic' and 'headers' both map");
    obx_kv empty[] = {{"topic", "", 8}};
    c.column = (obx_kvlist){empty, 1};
    expect_config_error(t, &c, "empty column name");
    obx_kv twice[] = {{"topic", "a", 8}, {"topic", "b", 9}};
    c.column = (obx_kvlist){twice, 2};
    expect_config_error(t, &c, "set twice");
}

static void test_open_errors(void **state)
{
    sqt *t = *state;
    sq_config c = t->conf;
    char path[4200];
    ERRBUF;
    void *inst = NULL;

    snprintf(path, sizeof path, "%s/no/such/dir/x.db", t->dir);
    c.path = path;
    obx_status st = t->ops->open(t->host, &c, &inst, err, sizeof err);
    assert_true(st == OBX_CONFIG || st == OBX_UNAVAILABLE);
    assert_null(inst);
    assert_non_null(strstr(err, path));
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, path));
    c.create_schema = false;
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, path));

    snprintf(path, sizeof path, "%s/garbage.db", t->dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not a database file\n", f);
    fclose(f);
    c.create_schema = true;
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a database"));

    /* an existing file without the table and create_schema=false */
    c.path = t->path;
    c.create_schema = false;
    sqt_exec(t, "CREATE TABLE unrelated (x)");
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "outbox"));
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "create_schema"));
    /* a table that lacks our columns */
    sqt_exec(t, "CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload)");
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, "table \"outbox\" has no column \"event_id\""))
        fail_msg("open error '%s' does not name the missing column", err);
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, "table \"outbox\" has no column \"event_id\""))
        fail_msg("validate error '%s' does not name the missing column", err);
}

/* SQLite table names are case-insensitive: store.table = Outbox is the
 * table "outbox". check --connect with create_schema = false must find it
 * (it said "no table" while run worked), as open does. */
static void test_table_name_case(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL); /* creates "outbox" */
    t->ops->close(s);
    sq_config c = t->conf;
    c.table = "OutBox";
    c.create_schema = false;
    ERRBUF;
    err[0] = '\0';
    obx_status st = t->ops->validate(t->host, &c, true, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("validate of table \"OutBox\" (is \"outbox\"): %s: %s",
                 obx_status_name(st), err);
    void *inst = NULL;
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err), OBX_OK);
    t->ops->close(inst);
}

/* Issue 15 item 1: SQLite reads an unknown double-quoted identifier as a
 * string literal, so a store.column.* name that is not in the table used
 * to publish every event with the column's name as its payload (or id, or
 * type). open() and check --connect must refuse, naming table and column. */
static void test_mapped_column_missing(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL); /* the default table, with "payload" */
    t->ops->close(s);
    sqt_insert(t, "k1", "real payload");
    obx_kv cols[] = {{"payload", "body", 6}, {"event_type", "kind", 7}};
    sq_config c = t->conf;
    c.column = (obx_kvlist){cols, 2};
    const char *want[] = {
        "table \"outbox\" has no column \"kind\" (store.column.event_type)",
        "\"body\" (store.column.payload)"};
    ERRBUF;
    void *inst = NULL;
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_null(inst);
    for (size_t i = 0; i < 2; i++)
        if (!strstr(err, want[i]))
            fail_msg("open error '%s' lacks '%s'", err, want[i]);
    err[0] = '\0';
    assert_int_equal(t->ops->validate(t->host, &c, true, err, sizeof err),
                     OBX_CONFIG);
    for (size_t i = 0; i < 2; i++)
        if (!strstr(err, want[i]))
            fail_msg("validate error '%s' lacks '%s'", err, want[i]);
    /* nothing was claimed or marked on the way */
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE locked_by "
                             "IS NULL AND published_at IS NULL"),
                     1);
    /* a relay-owned column missing from a hand-made table is named too */
    sqt_exec(t, "ALTER TABLE outbox DROP COLUMN dead_reason");
    c.column = (obx_kvlist){NULL, 0};
    assert_int_equal(t->ops->open(t->host, &c, &inst, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, "has no column \"dead_reason\""))
        fail_msg("open error '%s' lacks the bookkeeping column", err);
}

/* The relay's connection turns SQLite's double-quoted string literals off,
 * so no statement it runs can take a name for a value. A trigger on the
 * table that relies on them fails at open, with a hint, not later. */
static void test_double_quoted_literal_refused(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    t->ops->close(s);
    sqt_exec(t, "CREATE TABLE audit (what TEXT)");
    sqt_exec(t, "CREATE TRIGGER outbox_audit AFTER UPDATE ON outbox BEGIN "
                "INSERT INTO audit VALUES (\"touched\"); END");
    ERRBUF;
    void *inst = NULL;
    assert_int_equal(t->ops->open(t->host, &t->conf, &inst, err, sizeof err),
                     OBX_CONFIG);
    if (!strstr(err, "no such column: touched") ||
        !strstr(err, "single quotes"))
        fail_msg("open error '%s' lacks the column or the hint", err);
}

/* ---- waiting, contention ---- */

typedef struct writer_arg {
    const char *path;
    int delay_ms;
} writer_arg;

static void *late_writer(void *p)
{
    writer_arg *w = p;
    sqt_sleep_ms(w->delay_ms);
    sqlite3 *db;
    sqlite3_open(w->path, &db);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db,
                 "INSERT INTO outbox(aggregate_type, aggregate_id, "
                 "event_type, payload) VALUES ('o', 'k', 'T', 'late')",
                 NULL, NULL, NULL);
    sqlite3_close(db);
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_claim_wait(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    obx_event *ev[4];
    size_t n = 9;
    ERRBUF;
    int64_t t0 = mono_ms();
    assert_int_equal(t->ops->claim(s, ev, 4, &n, 150, err, sizeof err), OBX_OK);
    assert_int_equal(n, 0);
    assert_true(mono_ms() - t0 >= 145);

    pthread_t th;
    writer_arg w = {t->path, 150};
    pthread_create(&th, NULL, late_writer, &w);
    t0 = mono_ms();
    assert_int_equal(t->ops->claim(s, ev, 4, &n, 5000, err, sizeof err),
                     OBX_OK);
    int64_t took = mono_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    assert_memory_equal(ev[0]->payload, "late", 4);
    /* woken by the commit, not by the end of the wait */
    if (took < 140 || took > 1500)
        fail_msg("claim returned after %lld ms", (long long)took);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

static void test_busy_unavailable(void **state)
{
    sqt *t = *state;
    sq_config c = t->conf;
    c.busy_timeout_ms = 100;
    void *s = sqt_open(t, &c);
    sqt_insert(t, "k", "x");
    sqt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(sqt_claim(t, s, ev, 1), 1);
    size_t n = 9;
    ERRBUF;
    sqt_exec(t, "BEGIN IMMEDIATE");
    assert_int_equal(t->ops->claim(s, ev + 1, 4, &n, 0, err, sizeof err),
                     OBX_UNAVAILABLE);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "busy_timeout"));
    assert_int_equal(t->ops->ack(s, ev, 1, err, sizeof err), OBX_UNAVAILABLE);
    sqt_exec(t, "COMMIT");
    /* no transaction was left open: the writer gets the lock at once */
    sqlite3_busy_timeout(sqt_db(t), 0);
    sqt_exec(t, "BEGIN IMMEDIATE");
    sqt_exec(t, "COMMIT");
    sqlite3_busy_timeout(sqt_db(t), 5000);
    /* the failed ack left the event claimed and valid */
    assert_int_equal(ev[0]->pos.seq, 1);
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 2);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* An error in the middle of a transaction (here a trigger raising ABORT,
 * which keeps the transaction open) must not leave the write lock held. */
static void test_error_rolls_back(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    sqt_insert(t, "k", "x");
    sqt_insert(t, "k2", "x");
    obx_event *ev[4];
    assert_int_equal(sqt_claim(t, s, ev, 1), 1);
    sqt_exec(t, "CREATE TRIGGER no_claims BEFORE INSERT ON outbox_claims "
                "BEGIN SELECT RAISE(ABORT, 'claims are off'); END;"
                "CREATE TRIGGER no_acks BEFORE UPDATE OF published_at ON "
                "outbox BEGIN SELECT RAISE(ABORT, 'acks are off'); END");
    size_t n = 9;
    ERRBUF;
    obx_status st = t->ops->claim(s, ev + 1, 4, &n, 0, err, sizeof err);
    assert_int_not_equal(st, OBX_OK);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "claims are off"));
    sqlite3_busy_timeout(sqt_db(t), 0);
    sqt_exec(t, "BEGIN IMMEDIATE; COMMIT");
    assert_int_not_equal(t->ops->ack(s, ev, 1, err, sizeof err), OBX_OK);
    assert_non_null(strstr(err, "acks are off"));
    sqt_exec(t, "BEGIN IMMEDIATE; COMMIT");
    sqlite3_busy_timeout(sqt_db(t), 5000);
    sqt_exec(t, "DROP TRIGGER no_claims; DROP TRIGGER no_acks");
    /* nothing was half-done: row 2 is still unclaimed, row 1 still ours */
    assert_int_equal(
        sqt_int(t, -1, "SELECT group_concat(id) FROM " SQT_CLAIMED), 1);
    sqt_ack(t, s, ev, 1);
    assert_int_equal(sqt_claim(t, s, ev, 4), 1);
    assert_int_equal(ev[0]->pos.seq, 2);
    sqt_ack(t, s, ev, 1);
    t->ops->close(s);
}

/* ---- demo ---- */

static void test_demo(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    ERRBUF;
    assert_int_equal(t->ops->demo(s, 5, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM orders"), 5);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox o JOIN "
                             "orders r ON o.aggregate_id = "
                             "CAST(r.id AS TEXT) AND "
                             "json_extract(o.payload, '$.order_id') "
                             "= r.id AND json_extract(o.payload, "
                             "'$.amount_cents') = r.amount_cents "
                             "WHERE o.aggregate_type = 'order' AND "
                             "o.event_type = 'OrderCreated'"),
                     5);
    obx_event *ev[8];
    assert_int_equal(sqt_claim(t, s, ev, 8), 5);
    sqt_ack(t, s, ev, 5);
    assert_int_equal(t->ops->demo(s, 2, err, sizeof err), OBX_OK);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM orders"), 7);
    t->ops->close(s);
}

/* demo writes its own "orders" table; one of another shape made it fail
 * with SQLite's bare complaint. The error names the table, what is
 * missing or refused, and the shape demo needs; nothing is written. */
static void test_demo_other_orders(void **state)
{
    sqt *t = *state;
    void *s = sqt_open(t, NULL);
    ERRBUF;
    sqt_exec(t, "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)");
    assert_int_equal(t->ops->demo(s, 3, err, sizeof err), OBX_CONFIG);
    static const char *const want[] = {
        "demo: \"orders\" exists with another shape",
        "no column customer, amount_cents, created_at",
        ("demo needs orders(id INTEGER PRIMARY KEY, customer TEXT, "
         "amount_cents INTEGER, created_at INTEGER)"),
        "store.path"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(err, want[i]))
            fail_msg("demo error '%s' lacks '%s'", err, want[i]);
    /* the columns are there, but a row as demo writes it is refused */
    sqt_exec(t, "DROP TABLE orders");
    sqt_exec(t, "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, "
                "amount_cents INTEGER, created_at INTEGER, region TEXT NOT "
                "NULL)");
    err[0] = '\0';
    assert_int_equal(t->ops->demo(s, 3, err, sizeof err), OBX_CONFIG);
    if (!strstr(err, "NOT NULL constraint failed: orders.region") ||
        !strstr(err, "\"orders\" exists with another shape"))
        fail_msg("demo error '%s' lacks the refusal or the shape", err);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM orders"), 0);
    t->ops->close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_descriptor),
        T(test_options_through_core),
        T(test_plain_insert),
        T(test_claim_fields),
        T(test_claim_max),
        T(test_claim_key_order_dead_head),
        T(test_lease_expiry),
        T(test_claim_ahead_not_past_a_reused_claim_id),
        T(test_ack_mark),
        T(test_ack_delete),
        T(test_release),
        T(test_dead_list),
        T(test_dead_requeue_purge),
        T(test_open_adds_claims_table),
        T(test_claim_ends_with_its_batch),
        T(test_poison_headers),
        T(test_header_values),
        T(test_header_nul),
        T(test_text_nul_and_null),
        T(test_retention),
        T(test_schema_default),
        T(test_quoted_identifiers),
        T(test_column_errors),
        T(test_open_errors),
        T(test_mapped_column_missing),
        T(test_table_name_case),
        T(test_double_quoted_literal_refused),
        T(test_claim_wait),
        T(test_busy_unavailable),
        T(test_error_rolls_back),
        T(test_demo),
        T(test_demo_other_orders),
#undef T
    };
    return cmocka_run_group_tests_name("sqlite_store", tests, NULL, NULL);
}
