/* The nats broker plugin, loaded with dlopen as the core loads it, against
 * the real nats-server of the ctest fixture `nats` (tests with faults
 * start a server of their own). Every test reads the stream back with a
 * cnats JetStream consumer. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nats_config.h"
#include "nats_testlib.h"
#include "support.h"

/* ---- a host that keeps every log line --------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;
static obx_host cap_host;

static void cap_log(const obx_host *h, obx_log_level level, const char *fmt,
                    ...)
{
    (void)h;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    int w = snprintf(log_buf + log_len, sizeof log_buf - log_len, "%d %s\n",
                     (int)level, line);
    if (w > 0 && log_len + (size_t)w < sizeof log_buf)
        log_len += (size_t)w;
    pthread_mutex_unlock(&log_mu);
    const obx_host *t = obx_test_host();
    t->log(t, level, "%s", line);
}

static int cap_enabled(const obx_host *h, obx_log_level level)
{
    (void)h;
    (void)level;
    return 1;
}

static const obx_host *host_with_retry(int64_t retry_max_ms)
{
    cap_host = *obx_test_host();
    cap_host.log = cap_log;
    cap_host.log_enabled = cap_enabled;
    cap_host.retry_max_delay_ms = retry_max_ms;
    pthread_mutex_lock(&log_mu);
    log_len = 0;
    log_buf[0] = '\0';
    pthread_mutex_unlock(&log_mu);
    return &cap_host;
}

static bool logged(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    bool yes = strstr(log_buf, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return yes;
}

/* ---- fixture ------------------------------------------------------------ */

typedef struct fixture {
    const obx_plugin *plugin;
    const obx_broker_ops *ops;
    const char *url;
    char url_buf[256];
    char stream[64], subject[64], wild[64];
    char *servers[2];
    char *subjects[2];
    natsb_config conf;
    const obx_host *host;
    void *inst;
    char *own_dir; /* a server of the test's own, or NULL */
} fixture;

static int tests_run;

static void use_url(fixture *f, const char *url)
{
    snprintf(f->url_buf, sizeof f->url_buf, "%s", url);
    f->url = f->url_buf;
    f->servers[0] = f->url_buf;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->plugin = obx_test_plugin("broker", "nats");
    f->ops = f->plugin->ops;
    use_url(f, nt_fixture_url());
    int t = ++tests_run;
    snprintf(f->stream, sizeof f->stream, "T%d", t);
    snprintf(f->subject, sizeof f->subject, "t%d.order", t);
    snprintf(f->wild, sizeof f->wild, "t%d.>", t);
    f->subjects[0] = f->wild;
    f->conf.servers = (obx_list){f->servers, 1};
    f->conf.mode = NATSB_JETSTREAM;
    f->conf.stream = f->stream;
    f->conf.subjects = (obx_list){f->subjects, 1};
    f->conf.duplicate_window_ms = 120000;
    f->conf.max_in_flight = 4096;
    f->conf.connect_timeout_ms = 2000;
    f->conf.reconnect_wait_ms = 100;
    f->conf.api_timeout_ms = 2000;
    f->host = host_with_retry(0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->inst)
        f->ops->close(f->inst);
    if (f->own_dir) {
        nt_server_thaw(f->own_dir);
        nt_server_stop(f->own_dir);
        obx_test_rmtree(f->own_dir);
        free(f->own_dir);
    } else {
        nt_stream_delete(f->url, f->stream);
    }
    free(f);
    return 0;
}

static void own_server(fixture *f, const char *extra)
{
    f->own_dir = obx_test_tmpdir();
    use_url(f, nt_server_start(f->own_dir, extra));
}

static obx_status try_open(fixture *f, char *err, size_t len)
{
    err[0] = '\0';
    return f->ops->open(f->host, &f->conf, &f->inst, err, len);
}

static void open_inst(fixture *f)
{
    char err[512];
    obx_status st = try_open(f, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
}

/* n events numbered from.., `keys` keys, to subject (the fixture's when
 * NULL), payload {"seq":i} padded to pad bytes, one user header. */
typedef struct batch {
    size_t n;
    obx_event *ev;
    obx_event **ptrs;
    obx_result *res;
    obx_header *hdr;
    char (*id)[96];
    char (*key)[32];
    char (*trace)[32];
    char **payload;
} batch;

static batch mk_batch(const fixture *f, long from, size_t n, int keys,
                      size_t pad)
{
    batch b = {.n = n};
    b.ev = calloc(n, sizeof *b.ev);
    b.ptrs = calloc(n, sizeof *b.ptrs);
    b.res = calloc(n, sizeof *b.res);
    b.hdr = calloc(n, sizeof *b.hdr);
    b.id = calloc(n, sizeof *b.id);
    b.key = calloc(n, sizeof *b.key);
    b.trace = calloc(n, sizeof *b.trace);
    b.payload = calloc(n, sizeof *b.payload);
    for (size_t i = 0; i < n; i++) {
        long seq = from + (long)i;
        obx_event *e = &b.ev[i];
        snprintf(b.id[i], sizeof b.id[i], "%s-e%ld", f->stream, seq);
        snprintf(b.key[i], sizeof b.key[i], "k%ld", seq % keys);
        snprintf(b.trace[i], sizeof b.trace[i], "t-%ld", seq);
        b.payload[i] = calloc(1, pad + 64);
        int len =
            snprintf(b.payload[i], pad + 64, "{\"seq\":%ld,\"pad\":\"", seq);
        while ((size_t)len + 2 < pad)
            b.payload[i][len++] = 'x';
        len += snprintf(b.payload[i] + len, 3, "\"}");
        b.hdr[i] = (obx_header){"trace-id", b.trace[i]};
        e->event_id = b.id[i];
        e->key = b.key[i];
        e->aggregate_id = b.key[i];
        e->event_type = "OrderCreated";
        e->aggregate_type = "order";
        e->payload = b.payload[i];
        e->payload_len = (size_t)len;
        e->headers = &b.hdr[i];
        e->n_headers = 1;
        e->destination = f->subject;
        b.ptrs[i] = e;
    }
    return b;
}

static void free_batch(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->payload[i]);
    free(b->ev);
    free(b->ptrs);
    free(b->res);
    free(b->hdr);
    free(b->id);
    free(b->key);
    free(b->trace);
    free(b->payload);
}

static obx_status publish(fixture *f, batch *b, int timeout_ms)
{
    memset(b->res, 0xa5, b->n * sizeof *b->res); /* catch unfilled results */
    return f->ops->publish(f->inst, b->ptrs, b->n, b->res, timeout_ms);
}

static void assert_all_ok(const batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->res[i].status != OBX_OK)
            fail_msg("event %zu: %s: %s", i, obx_status_name(b->res[i].status),
                     b->res[i].errstr);
}

/* Every seq in [0, n) exactly once (skip: one seq that must be absent, or
 * -1), headers as written, order per key. */
static void assert_stream_once(fixture *f, long n, int keys, long skip)
{
    nt_msgs m = nt_read_stream(f->url, f->stream, 3000);
    int *seen = calloc((size_t)n, sizeof *seen);
    for (size_t i = 0; i < m.n; i++) {
        const nt_msg *x = &m.items[i];
        long seq = nt_seq(x);
        assert_true(seq >= 0 && seq < n && seq != skip);
        seen[seq]++;
        char want[128];
        snprintf(want, sizeof want, "k%ld", seq % keys);
        assert_string_equal(x->agg_id, want);
        snprintf(want, sizeof want, "%s-e%ld", f->stream, seq);
        assert_string_equal(x->msg_id, want);
        assert_string_equal(x->event_id, want);
        assert_string_equal(x->event_type, "OrderCreated");
        assert_string_equal(x->agg_type, "order");
        snprintf(want, sizeof want, "t-%ld", seq);
        assert_string_equal(x->trace, want);
    }
    for (long s = 0; s < n; s++)
        if (s != skip && seen[s] != 1)
            fail_msg("seq %ld in the stream %d times", s, seen[s]);
    assert_int_equal(m.n, (size_t)(skip >= 0 ? n - 1 : n));
    assert_int_equal(nt_assert_key_order(&m), (size_t)keys);
    free(seen);
    nt_msgs_free(&m);
}

/* ---- tests -------------------------------------------------------------- */

static void test_batch_lands_once_with_headers_and_key_order(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    open_inst(f);
    batch b = mk_batch(f, 0, 3000, 17, 256);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    assert_stream_once(f, 3000, 17, -1);
    free_batch(&b);
}

/* A relay killed before its ack publishes the same events again: the
 * stream keeps one copy, and the PubAcks say duplicate (still success). */
static void test_republished_events_are_deduplicated(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    open_inst(f);
    batch b = mk_batch(f, 0, 500, 7, 64);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    for (size_t i = 0; i < b.n; i++)
        assert_string_equal(b.res[i].errstr, "");
    /* The same events from a second instance (a restarted relay). */
    f->ops->close(f->inst);
    f->inst = NULL;
    open_inst(f);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    for (size_t i = 0; i < b.n; i++)
        assert_string_equal(b.res[i].errstr, "duplicate");
    assert_int_equal(nt_stream_count(f->url, f->stream), 500);
    assert_stream_once(f, 500, 7, -1);
    free_batch(&b);
}

/* A subject no stream captures: that event (the last of its key here)
 * PERMANENT naming the subject, the others stored. */
static void test_uncaptured_subject_is_permanent_others_land(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    open_inst(f);
    batch b = mk_batch(f, 0, 200, 10, 64);
    b.ev[197].destination = "nowhere.order";
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    for (size_t i = 0; i < b.n; i++) {
        if (i == 197) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
            if (!strstr(b.res[i].errstr, "nowhere.order"))
                fail_msg("reason: %s", b.res[i].errstr);
            continue;
        }
        if (b.res[i].status != OBX_OK)
            fail_msg("event %zu: %s", i, b.res[i].errstr);
    }
    assert_stream_once(f, 200, 10, 197);
    free_batch(&b);
}

/* Once "no responders" came back for an event, the later events of its
 * key are held back ("not attempted"), as after any failure: the event
 * may be retried (a missing stream), and they must not land before it.
 * A window of 1 makes the answer come before the next event is sent. */
static void test_no_responders_holds_its_key(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    f->conf.max_in_flight = 1;
    open_inst(f);
    batch b = mk_batch(f, 0, 12, 4, 32);
    b.ev[1].destination = "nowhere.order"; /* key k1: 5 and 9 after it */
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    for (size_t i = 0; i < b.n; i++) {
        if (i == 1) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
        } else if (i % 4 == 1) {
            assert_int_equal(b.res[i].status, OBX_RETRY);
            assert_string_equal(b.res[i].errstr, "not attempted");
        } else if (b.res[i].status != OBX_OK) {
            fail_msg("event %zu: %s", i, b.res[i].errstr);
        }
    }
    assert_int_equal(nt_stream_count(f->url, f->stream), 9);
    free_batch(&b);
}

/* The stream deleted under a relay with create_stream: the events that
 * met no responders go again (the stream is back), they are not dead
 * letters. */
static void test_stream_recreated_events_go_again(void **state)
{
    fixture *f = *state;
    f->conf.create_stream = true;
    open_inst(f);
    nt_stream_delete(f->url, f->stream);
    batch b = mk_batch(f, 0, 10, 3, 32);
    publish(f, &b, 20000);
    size_t unavailable = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.res[i].status == OBX_UNAVAILABLE)
            unavailable++;
        else if (b.res[i].status != OBX_RETRY)
            fail_msg("event %zu: %s: %s", i, obx_status_name(b.res[i].status),
                     b.res[i].errstr);
    }
    assert_true(unavailable > 0);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    assert_stream_once(f, 10, 3, -1);
    free_batch(&b);
}

/* A subject with white space or a control character would make the
 * server drop the connection (and every retry the same), a line break in
 * one of the relay's own headers would forge one: PERMANENT before it is
 * sent, later events of the key held back, the connection still up. */
static void test_unsendable_subject_and_fields_are_permanent(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    open_inst(f);
    batch b = mk_batch(f, 0, 40, 4, 64);
    char subj[128];
    snprintf(subj, sizeof subj, "%s bad", f->subject);
    b.ev[6].destination = subj;                                 /* key k2 */
    b.ev[9].event_type = "OrderCreated\r\nNats-Msg-Id: forged"; /* k1 */
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    size_t ok = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (i == 6) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
            if (!strstr(b.res[i].errstr, "white space"))
                fail_msg("reason: %s", b.res[i].errstr);
        } else if (i == 9) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
            if (!strstr(b.res[i].errstr, "outbox-event-type"))
                fail_msg("reason: %s", b.res[i].errstr);
        } else if ((i > 6 && i % 4 == 2) || (i > 9 && i % 4 == 1)) {
            assert_int_equal(b.res[i].status, OBX_RETRY);
            assert_string_equal(b.res[i].errstr, "not attempted");
        } else {
            assert_int_equal(b.res[i].status, OBX_OK);
            ok++;
        }
    }
    assert_int_equal(nt_stream_count(f->url, f->stream), (int64_t)ok);
    batch c = mk_batch(f, 40, 10, 4, 64);
    assert_int_equal(publish(f, &c, 20000), OBX_OK);
    assert_all_ok(&c);
    assert_int_equal(nt_stream_count(f->url, f->stream), (int64_t)ok + 10);
    free_batch(&c);
    free_batch(&b);
}

/* Over the server's max_payload, or a header NATS cannot carry:
 * PERMANENT before it is sent; the later events of its key are held back
 * ("not attempted"), the rest lands. */
static void test_oversize_is_permanent_and_holds_its_key(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    open_inst(f);
    batch b = mk_batch(f, 0, 40, 4, 64);
    size_t big = 2u << 20; /* nats-server's default max_payload is 1 MiB */
    char *huge = malloc(big);
    memset(huge, 'x', big);
    b.ev[10].payload = huge; /* key k2 */
    b.ev[10].payload_len = big;
    /* A header value with a line break would split the header block. */
    obx_header evil = {"trace-id", "t\r\nNats-Msg-Id: forged"};
    b.ev[13].headers = &evil; /* key k1 */
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    size_t ok = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (i == 10) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
            if (!strstr(b.res[i].errstr, "max_payload"))
                fail_msg("reason: %s", b.res[i].errstr);
        } else if (i == 13) {
            assert_int_equal(b.res[i].status, OBX_PERMANENT);
            if (!strstr(b.res[i].errstr, "line break"))
                fail_msg("reason: %s", b.res[i].errstr);
        } else if ((i > 10 && i % 4 == 2) || (i > 13 && i % 4 == 1)) {
            assert_int_equal(b.res[i].status, OBX_RETRY);
            assert_string_equal(b.res[i].errstr, "not attempted");
        } else {
            assert_int_equal(b.res[i].status, OBX_OK);
            ok++;
        }
    }
    assert_int_equal(nt_stream_count(f->url, f->stream), (int64_t)ok);
    free(huge);
    free_batch(&b);
}

/* expect_stream: a subject another stream captures fails instead of
 * landing there. */
static void test_wrong_expected_stream_is_permanent(void **state)
{
    fixture *f = *state;
    nt_stream_create(f->url, f->stream, f->wild, 120000);
    f->conf.expect_stream = "SOMEWHERE_ELSE";
    open_inst(f);
    batch b = mk_batch(f, 0, 5, 5, 64);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.res[i].status, OBX_PERMANENT);
        if (!strstr(b.res[i].errstr, "expect_stream"))
            fail_msg("reason: %s", b.res[i].errstr);
    }
    assert_int_equal(nt_stream_count(f->url, f->stream), 0);
    f->conf.expect_stream = f->stream; /* the right one: lands */
    f->ops->close(f->inst);
    f->inst = NULL;
    open_inst(f);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    assert_int_equal(nt_stream_count(f->url, f->stream), 5);
    free_batch(&b);
}

/* The stream is looked up at open: missing -> UNAVAILABLE (the engine
 * retries; nothing is dead-lettered), not capturing -> CONFIG; both say
 * so clearly. validate(connect) says the same. */
static void test_stream_checked_at_open_and_validate(void **state)
{
    fixture *f = *state;
    char err[512];
    assert_int_equal(try_open(f, err, sizeof err), OBX_UNAVAILABLE);
    if (!strstr(err, f->stream) || !strstr(err, "does not exist"))
        fail_msg("open said: %s", err);
    assert_int_equal(f->ops->validate(f->host, &f->conf, true, err, sizeof err),
                     OBX_UNAVAILABLE);
    if (!strstr(err, "does not exist"))
        fail_msg("validate said: %s", err);
    assert_int_equal(
        f->ops->validate(f->host, &f->conf, false, err, sizeof err), OBX_OK);
    nt_stream_create(f->url, f->stream, "other.>", 120000);
    assert_int_equal(try_open(f, err, sizeof err), OBX_CONFIG);
    if (!strstr(err, "does not capture subject") || !strstr(err, f->wild) ||
        !strstr(err, "other.>"))
        fail_msg("open said: %s", err);
    assert_int_equal(f->ops->validate(f->host, &f->conf, true, err, sizeof err),
                     OBX_CONFIG);
}

/* create_stream makes it (file storage, the subjects, duplicate_window);
 * a window shorter than the longest retry wait draws a warning. */
static void test_create_stream_and_duplicate_window_warning(void **state)
{
    fixture *f = *state;
    f->host = host_with_retry(300000); /* retry.backoff up to 5m */
    f->conf.create_stream = true;
    f->conf.duplicate_window_ms = 60000;
    open_inst(f);
    assert_int_equal(nt_stream_dup_ms(f->url, f->stream), 60000);
    assert_true(logged("created stream"));
    assert_true(logged("keeps message ids for 1m"));
    assert_true(logged("wait up to 5m"));
    f->ops->close(f->inst);
    f->inst = NULL;
    /* A window that covers the retry wait: no warning. */
    f->host = host_with_retry(60000);
    open_inst(f);
    assert_false(logged("keeps message ids"));
    batch b = mk_batch(f, 0, 10, 3, 32);
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    free_batch(&b);
}

/* No server at open: open succeeds, publish and health say UNAVAILABLE;
 * once the server is up, delivery resumes by itself. */
static void test_server_down_at_open_then_up(void **state)
{
    fixture *f = *state;
    own_server(f, NULL);
    nt_server_kill(f->own_dir);
    f->conf.create_stream = true;
    open_inst(f);
    batch b = mk_batch(f, 0, 50, 5, 64);
    assert_int_equal(publish(f, &b, 2000), OBX_UNAVAILABLE);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.res[i].status, OBX_UNAVAILABLE);
    char err[512];
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_UNAVAILABLE);
    nt_server_restart(f->own_dir);
    int64_t end = nt_now_ms() + 15000;
    while (f->ops->health(f->inst, err, sizeof err) != OBX_OK) {
        if (nt_now_ms() > end)
            fail_msg("still unavailable: %s", err);
        nt_sleep_ms(50);
    }
    assert_int_equal(publish(f, &b, 20000), OBX_OK);
    assert_all_ok(&b);
    assert_stream_once(f, 50, 5, -1);
    free_batch(&b);
}

/* A server that stops answering (SIGSTOP) mid-call: nothing answered ->
 * UNAVAILABLE (an outage burns no attempts), never PERMANENT; after
 * SIGCONT the same events land once. */
static void test_unresponsive_server_is_unavailable(void **state)
{
    fixture *f = *state;
    own_server(f, NULL);
    f->conf.create_stream = true;
    open_inst(f);
    batch b = mk_batch(f, 0, 300, 9, 64);
    nt_server_freeze(f->own_dir);
    obx_status st = publish(f, &b, 700);
    nt_server_thaw(f->own_dir);
    if (st != OBX_UNAVAILABLE)
        fail_msg("publish: %s; event 0: %s: %s", obx_status_name(st),
                 obx_status_name(b.res[0].status), b.res[0].errstr);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.res[i].status, OBX_UNAVAILABLE);
    int64_t end = nt_now_ms() + 15000;
    for (;;) {
        st = publish(f, &b, 5000);
        bool all = st == OBX_OK;
        for (size_t i = 0; all && i < b.n; i++)
            all = b.res[i].status == OBX_OK;
        if (all)
            break;
        for (size_t i = 0; i < b.n; i++)
            assert_int_not_equal(b.res[i].status, OBX_PERMANENT);
        if (nt_now_ms() > end)
            fail_msg("not delivered after SIGCONT");
        nt_sleep_ms(100);
    }
    assert_stream_once(f, 300, 9, -1);
    free_batch(&b);
}

/* Freezes the server once `after` messages are in the stream. */
typedef struct freezer {
    fixture *f;
    int64_t after;
    pthread_t thread;
} freezer;

static void *freeze_after(void *arg)
{
    freezer *z = arg;
    int64_t end = nt_now_ms() + 20000;
    while (nt_stream_count(z->f->url, z->f->stream) < z->after &&
           nt_now_ms() < end)
        nt_sleep_ms(2);
    nt_server_freeze(z->f->own_dir);
    return NULL;
}

/* The server stops answering in the middle of a call that it was
 * answering: what was acknowledged is OK, the rest timed out -> RETRY
 * (counts an attempt: the server did answer, so it is not an outage);
 * republished after SIGCONT, every event is in the stream once. */
static void test_puback_timeout_is_retry(void **state)
{
    fixture *f = *state;
    own_server(f, NULL);
    f->conf.create_stream = true;
    f->conf.max_in_flight = 64;
    open_inst(f);
    batch b = mk_batch(f, 0, 20000, 16, 64);
    freezer z = {.f = f, .after = 500};
    assert_int_equal(pthread_create(&z.thread, NULL, freeze_after, &z), 0);
    obx_status st = publish(f, &b, 1500);
    pthread_join(z.thread, NULL);
    nt_server_thaw(f->own_dir);
    assert_int_equal(st, OBX_OK);
    size_t ok = 0, retry = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.res[i].status == OBX_OK) {
            ok++;
        } else if (b.res[i].status == OBX_RETRY) {
            retry++;
            if (!strstr(b.res[i].errstr, "no PubAck within") &&
                !strstr(b.res[i].errstr, "before it was sent"))
                fail_msg("event %zu: %s", i, b.res[i].errstr);
        } else {
            fail_msg("event %zu: %s: %s", i, obx_status_name(b.res[i].status),
                     b.res[i].errstr);
        }
    }
    /* Stored is not yet acknowledged: the PubAcks of the last few stored
     * may still sit in the frozen server. */
    assert_true(ok >= 100);
    assert_true(retry > 0);
    int64_t end = nt_now_ms() + 15000;
    for (;;) {
        st = publish(f, &b, 5000);
        bool all = st == OBX_OK;
        for (size_t i = 0; all && i < b.n; i++)
            all = b.res[i].status == OBX_OK;
        if (all)
            break;
        if (nt_now_ms() > end)
            fail_msg("not delivered after SIGCONT");
        nt_sleep_ms(100);
    }
    assert_stream_once(f, 20000, 16, -1);
    free_batch(&b);
}

/* Core NATS: a plain subscriber gets every event with its headers. */
static void test_core_mode_reaches_a_plain_subscriber(void **state)
{
    fixture *f = *state;
    f->conf.mode = NATSB_CORE;
    f->conf.stream = NULL;
    f->conf.subjects.n = 0;
    open_inst(f);
    assert_true(logged("NOT at-least-once"));
    nt_conn c = nt_connect(f->url);
    natsSubscription *sub = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&sub, c.nc, f->wild),
                     NATS_OK);
    natsSubscription_SetPendingLimits(sub, -1, -1);
    assert_int_equal(natsConnection_Flush(c.nc), NATS_OK);
    batch b = mk_batch(f, 0, 1000, 11, 64);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    for (long i = 0; i < 1000; i++) {
        natsMsg *m = NULL;
        assert_int_equal(natsSubscription_NextMsg(&m, sub, 5000), NATS_OK);
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%ld,", i);
        assert_memory_equal(natsMsg_GetData(m), want, strlen(want));
        const char *v = NULL;
        assert_int_equal(natsMsgHeader_Get(m, "outbox-event-type", &v),
                         NATS_OK);
        assert_string_equal(v, "OrderCreated");
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    nt_close(&c);
    free_batch(&b);
}

/* Authentication: the right password works; a wrong one leaves the
 * broker unavailable; the password is in no log line nor error. */
static void test_auth_and_secrets_never_shown(void **state)
{
    fixture *f = *state;
    char *pw = "Sup3rS3cretPw";
    own_server(f, "--user relay --pass Sup3rS3cretPw");
    f->conf.create_stream = true;
    f->conf.user = "relay";
    f->conf.password = "wrong-Sup3rS3cretPw-wrong";
    char err[512];
    assert_int_not_equal(
        f->ops->validate(f->host, &f->conf, true, err, sizeof err), OBX_OK);
    if (strstr(err, "Sup3rS3cret"))
        fail_msg("secret in: %s", err);
    open_inst(f);
    batch b = mk_batch(f, 0, 20, 3, 32);
    /* The reason says what the server said, once cnats read it: the
     * server writes -ERR 'Authorization Violation' and closes, and on a
     * loaded machine the reset can reach the client before it read the
     * line ("No server available for connection"; 3 of 7 runs under
     * ThreadSanitizer). The background reconnects try again. */
    for (int64_t end = nt_now_ms() + 30000;;) {
        assert_int_equal(publish(f, &b, 1500), OBX_UNAVAILABLE);
        for (size_t i = 0; i < b.n; i++)
            if (strstr(b.res[i].errstr, "Sup3rS3cret"))
                fail_msg("secret in: %s", b.res[i].errstr);
        if (strcasestr(b.res[0].errstr, "authorization"))
            break;
        if (nt_now_ms() > end)
            fail_msg("reason: %s", b.res[0].errstr);
    }
    assert_int_equal(f->ops->health(f->inst, err, sizeof err), OBX_UNAVAILABLE);
    f->ops->close(f->inst);
    f->inst = NULL;
    f->conf.password = pw;
    assert_int_equal(f->ops->validate(f->host, &f->conf, true, err, sizeof err),
                     OBX_OK);
    open_inst(f);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    assert_false(logged("Sup3rS3cret"));
    free_batch(&b);
}

/* A password the server refuses, until the server is changed to accept
 * it: the broker recovers by itself (cnats closes a connection after
 * repeated authorization violations; the plugin then makes a new one). */
static void test_auth_fixed_on_server_recovers(void **state)
{
    fixture *f = *state;
    own_server(f, "--user relay --pass old-one");
    f->conf.create_stream = true;
    f->conf.user = "relay";
    f->conf.password = "new-one";
    open_inst(f);
    batch b = mk_batch(f, 0, 20, 3, 32);
    assert_int_equal(publish(f, &b, 1000), OBX_UNAVAILABLE);
    char err[512];
    for (int i = 0; i < 10; i++) { /* long enough for cnats to give up */
        assert_int_equal(f->ops->health(f->inst, err, sizeof err),
                         OBX_UNAVAILABLE);
        nt_sleep_ms(300);
    }
    nt_server_kill(f->own_dir);
    nt_server_restart_with(f->own_dir, "--user relay --pass new-one");
    int64_t end = nt_now_ms() + 20000;
    while (f->ops->health(f->inst, err, sizeof err) != OBX_OK) {
        if (nt_now_ms() > end)
            fail_msg("still unavailable: %s", err);
        nt_sleep_ms(100);
    }
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    char url[512];
    snprintf(url, sizeof url, "nats://relay:new-one@%s",
             f->url + strlen("nats://"));
    assert_int_equal(nt_stream_count(url, f->stream), 20);
    free_batch(&b);
}

/* A token instead of user and password: works, a wrong one is
 * unavailable, and never shown. */
static void test_token_auth(void **state)
{
    fixture *f = *state;
    own_server(f, "--auth T0kenS3cr3tValue");
    f->conf.create_stream = true;
    f->conf.token = "T0kenS3cr3tValue-but-wrong";
    char err[512];
    assert_int_not_equal(
        f->ops->validate(f->host, &f->conf, true, err, sizeof err), OBX_OK);
    if (strstr(err, "T0kenS3cr3t"))
        fail_msg("secret in: %s", err);
    f->conf.token = "T0kenS3cr3tValue";
    open_inst(f);
    batch b = mk_batch(f, 0, 20, 3, 32);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    assert_false(logged("T0kenS3cr3t"));
    f->ops->close(f->inst);
    f->inst = NULL;
    /* the token in the URL instead (nats://TOKEN@host): masked as well */
    char url[256];
    const char *hp = strstr(f->url, "://");
    assert_non_null(hp);
    snprintf(url, sizeof url, "nats://T0kenS3cr3tValue@%s", hp + 3);
    f->servers[0] = url;
    f->conf.token = NULL;
    open_inst(f);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    assert_true(logged("nats://***@"));
    assert_false(logged("T0kenS3cr3t"));
    free_batch(&b);
}

/* A subject the user may not publish to: the server refuses it with a
 * permissions violation; the events are UNAVAILABLE (an ACL mistake must
 * not dead-letter a backlog), never PERMANENT. */
static void test_permissions_violation_is_unavailable(void **state)
{
    fixture *f = *state;
    char *dir = obx_test_tmpdir(), conf[4200], extra[4400];
    snprintf(conf, sizeof conf, "%s/server.conf", dir);
    FILE *fp = fopen(conf, "w");
    assert_non_null(fp);
    fprintf(fp,
            "authorization { users = [ { user: relay, password: pw, "
            "permissions: { publish: { deny: [\"%s\"] } } } ] }\n",
            f->subject);
    fclose(fp);
    snprintf(extra, sizeof extra, "-c '%s'", conf);
    own_server(f, extra);
    f->conf.create_stream = true;
    f->conf.user = "relay";
    f->conf.password = "pw";
    open_inst(f);
    batch b = mk_batch(f, 0, 10, 3, 32);
    assert_int_equal(publish(f, &b, 3000), OBX_UNAVAILABLE);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.res[i].status, OBX_UNAVAILABLE);
        if (!strstr(b.res[i].errstr, "permissions"))
            fail_msg("reason: %s", b.res[i].errstr);
    }
    assert_int_equal(nt_stream_count(nt_fixture_url(), f->stream), -1);
    free_batch(&b);
    obx_test_rmtree(dir);
    free(dir);
}

/* An NKey user: the server knows the public key, the relay signs the
 * server's nonce with the seed from nkey_seed_file (a pair generated here
 * from an openssl ed25519 key, tests/nats/nkey_gen.py). */
static void test_nkey_auth(void **state)
{
    fixture *f = *state;
    char *dir = obx_test_tmpdir(), cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl genpkey -algorithm ed25519 -outform DER "
             "-out k.der && openssl pkey -inform DER -in k.der -pubout "
             "-outform DER -out p.der && python3 '%s/tests/nats/nkey_gen.py' "
             "k.der p.der >keys && head -1 keys >user.pub && tail -1 keys "
             ">user.nk && printf 'authorization { users = [ { nkey: %%s } ] "
             "}\\n' \"$(cat user.pub)\" >server.conf",
             dir, OBX_SOURCE_DIR);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " 2>/dev/null");
    assert_int_equal(system(cmd), 0);
    char path[4200], pub[128] = "", seed_file[4200], extra[4400];
    snprintf(path, sizeof path, "%s/user.pub", dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(pub, sizeof pub, fp));
    fclose(fp);
    pub[strcspn(pub, "\n")] = '\0';
    assert_int_equal(pub[0], 'U');
    snprintf(seed_file, sizeof seed_file, "%s/user.nk", dir);
    snprintf(extra, sizeof extra, "-c '%s/server.conf'", dir);
    own_server(f, extra);
    f->conf.create_stream = true;
    f->conf.nkey = pub;
    f->conf.nkey_seed_file = seed_file;
    char err[512];
    if (f->ops->validate(f->host, &f->conf, true, err, sizeof err) != OBX_OK) {
        snprintf(cmd, sizeof cmd,
                 "cat '%s/server.conf' '%s/user.nk' '%s/nats_state' >&2; "
                 "tail -n 20 \"$(sed -n \"s/^ROOT='\\(.*\\)'/\\1/p\" "
                 "'%s/nats_state')/server.log\" >&2",
                 dir, dir, f->own_dir, f->own_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no diagnostics)\n");
        fail_msg("validate with the nkey %s: %s", pub, err);
    }
    open_inst(f);
    batch b = mk_batch(f, 0, 10, 3, 32);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    free_batch(&b);
    f->ops->close(f->inst);
    f->inst = NULL;
    /* A public key the server does not know: refused. */
    f->conf.nkey = "UCAWV4BB6Q3OABFEJIHAPNTK45ZC73Q5PC5SB7CVAVDDWCKXUBPWUNHL";
    assert_int_not_equal(
        f->ops->validate(f->host, &f->conf, true, err, sizeof err), OBX_OK);
    obx_test_rmtree(dir);
    free(dir);
}

/* TLS: a server with a certificate of a test CA; with tls_ca the relay
 * connects (tls:// URL), without it the certificate is refused. */
static void test_tls_with_ca(void **state)
{
    fixture *f = *state;
    char *dir = obx_test_tmpdir(), cmd[8192], extra[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem "
             "-days 2 -subj /CN=obx-test-ca && openssl req -newkey ec "
             "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN=localhost && printf "
             "'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >ext.cnf && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
             "-CAcreateserial -out srv.pem -days 2 -extfile ext.cnf",
             dir);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " >/dev/null 2>&1");
    assert_int_equal(system(cmd), 0);
    snprintf(extra, sizeof extra,
             "--tls --tlscert '%s/srv.pem' --tlskey '%s/srv.key'", dir, dir);
    own_server(f, extra);
    char tls_url[300], ca[4200];
    snprintf(tls_url, sizeof tls_url, "tls://%s", f->url + strlen("nats://"));
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    f->servers[0] = tls_url;
    f->conf.create_stream = true;
    f->conf.tls_hostname = "localhost";
    char err[512];
    /* The server's certificate is not trusted without the CA. */
    assert_int_not_equal(
        f->ops->validate(f->host, &f->conf, true, err, sizeof err), OBX_OK);
    f->conf.tls_ca = ca;
    if (f->ops->validate(f->host, &f->conf, true, err, sizeof err) != OBX_OK)
        fail_msg("validate over TLS: %s", err);
    open_inst(f);
    batch b = mk_batch(f, 0, 30, 3, 32);
    assert_int_equal(publish(f, &b, 10000), OBX_OK);
    assert_all_ok(&b);
    free_batch(&b);
    f->ops->close(f->inst);
    f->inst = NULL;
    f->servers[0] = f->url_buf;
    obx_test_rmtree(dir);
    free(dir);
}

/* Config checks the option table cannot express. */
static void test_config_combinations_refused(void **state)
{
    fixture *f = *state;
    char err[512];
    f->conf.token = "tok";
    f->conf.user = "u";
    assert_int_equal(
        f->ops->validate(f->host, &f->conf, false, err, sizeof err),
        OBX_CONFIG);
    assert_non_null(strstr(err, "one way to authenticate"));
    f->conf.token = NULL;
    f->conf.user = NULL;
    f->servers[0] = "127.0.0.1:4222";
    assert_int_equal(
        f->ops->validate(f->host, &f->conf, false, err, sizeof err),
        OBX_CONFIG);
    assert_non_null(strstr(err, "nats:// or tls://"));
    f->servers[0] = f->url_buf;
    f->conf.create_stream = true;
    f->conf.subjects.n = 0;
    assert_int_equal(
        f->ops->validate(f->host, &f->conf, false, err, sizeof err),
        OBX_CONFIG);
    f->conf.subjects.n = 1;
    f->conf.tls_cert = "c.pem";
    assert_int_equal(
        f->ops->validate(f->host, &f->conf, false, err, sizeof err),
        OBX_CONFIG);
    assert_non_null(strstr(err, "tls_key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_batch_lands_once_with_headers_and_key_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_republished_events_are_deduplicated, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_uncaptured_subject_is_permanent_others_land, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_oversize_is_permanent_and_holds_its_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_responders_holds_its_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stream_recreated_events_go_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_unsendable_subject_and_fields_are_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_expected_stream_is_permanent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_stream_checked_at_open_and_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_create_stream_and_duplicate_window_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_down_at_open_then_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unresponsive_server_is_unavailable,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_puback_timeout_is_retry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_core_mode_reaches_a_plain_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_and_secrets_never_shown,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_fixed_on_server_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nkey_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_with_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_permissions_violation_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_combinations_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
