/* chaos broker: the stdout broker (same writer, same output options) plus
 * failures on demand, to rehearse what a real broker does to a pipeline:
 * poison events, flaky events, outages, random errors, slowness.
 * Documented for users in docs/chaos-broker.md. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <outbox/plugin.h>

#include "chaos_config.h"
#include "jsonl.h"

/* ---- a small string-keyed hash table --------------------------------- */

typedef struct chaos_slot {
    const char *key; /* NULL: empty slot */
    uint64_t hash;
    uint32_t count;
} chaos_slot;

typedef struct chaos_map {
    chaos_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
    bool owns_keys; /* keys are copies (freed here) or borrowed */
} chaos_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The slot holding key, or the empty slot where it belongs (cap > 0 and
 * the table never full, so the probe ends). */
static chaos_slot *map_probe(const chaos_map *m, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        chaos_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0))
            return s;
    }
}

static int map_grow(chaos_map *m)
{
    chaos_map bigger = *m;
    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (!bigger.slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *map_probe(&bigger, m->slots[i].key, m->slots[i].hash) =
                m->slots[i];
    free(m->slots);
    *m = bigger;
    return 0;
}

/* The entry for key; with `create`, added (count 0) when absent. NULL when
 * absent and not created, or out of memory. */
static chaos_slot *map_get(chaos_map *m, const char *key, bool create)
{
    if (m->cap == 0 && !create)
        return NULL;
    if ((m->n + 1) * 2 > m->cap && create && map_grow(m) != 0)
        return NULL;
    uint64_t h = hash_str(key);
    chaos_slot *s = map_probe(m, key, h);
    if (s->key || !create)
        return s->key ? s : NULL;
    s->key = m->owns_keys ? strdup(key) : key;
    if (!s->key)
        return NULL;
    s->hash = h;
    s->count = 0;
    m->n++;
    return s;
}

static void map_clear(chaos_map *m)
{
    if (m->n == 0)
        return;
    for (size_t i = 0; m->owns_keys && i < m->cap; i++)
        free((void *)m->slots[i].key);
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

static void map_free(chaos_map *m)
{
    map_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

/* ---- instance -------------------------------------------------------- */

typedef struct chb_broker {
    const obx_host *host;
    const chb_config *conf; /* borrowed from the core */
    obc_jsonl_sink sink;
    int64_t opened_us; /* monotonic */
    uint64_t rng;      /* splitmix64 state, from seed */
    /* event_id -> flaky failures so far. Kept for the instance's life, so
     * a redelivered event does not fail again; grows with the number of
     * flaky-type events only. */
    chaos_map flaky;
    chaos_map failed_keys; /* keys failed in this publish call (borrowed) */
    bool down;             /* last reported state: log changes only */
} chb_broker;

static const obx_option chaos_options[] = {
    OBC_JSONL_OPTIONS(chb_config, out),
    OBX_OPT_LIST(chb_config, permanent_types, "permanent_types", NULL,
                 "Event types whose events always fail with 'permanent' (they "
                 "go straight to the dead-letter queue)."),
    OBX_OPT_LIST(chb_config, flaky_types, "flaky_types", NULL,
                 "Event types whose events each fail with 'retry' flaky_times "
                 "times (counted per event id), then succeed."),
    OBX_OPT_INT(
        chb_config, flaky_times, "flaky_times", "2", 0, 1000000,
        "How many times each event of flaky_types fails before it succeeds."),
    OBX_OPT_DURATION_ANY(
        chb_config, down_for_ms, "down_for", "0s",
        "Report the whole broker unavailable for this long after open (the "
        "circuit breaker opens; no attempt is counted)."),
    OBX_OPT_STRING(
        chb_config, down_while_file, "down_while_file", NULL,
        "Report the whole broker unavailable while this file exists: create it "
        "to start an outage, remove it to end it."),
    OBX_OPT_INT(chb_config, fail_percent, "fail_percent", "0", 0, 100,
                "Percentage of events that fail with 'retry' at random."),
    OBX_OPT_INT_ANY(chb_config, seed, "seed", "1",
                    "Seed of the random failures: the same seed and the same "
                    "sequence of publish calls fail the same events."),
    OBX_OPT_DURATION_ANY(
        chb_config, delay_ms, "delay", "0s",
        "Added to every publish call, to simulate a slow broker. When it "
        "exceeds the publish timeout, the call waits the timeout and every "
        "event fails with 'retry' (timed out)."),
    OBX_OPTIONS_END,
};

static void chaos_log(const chb_broker *c, obx_log_level lv, const char *what)
{
    if (c->host && c->host->log)
        c->host->log(c->host, lv, "%s", what);
}

static bool list_has(const obx_list *l, const char *s)
{
    for (size_t i = 0; s && l->items && i < l->n; i++)
        if (l->items[i] && strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static obx_status check_config(const chb_config *c, char *errstr, size_t errlen)
{
    const char *bad = NULL;
    if (c->fail_percent < 0 || c->fail_percent > 100)
        bad = "fail_percent must be within 0..100";
    else if (c->flaky_times < 0 || c->flaky_times > UINT32_MAX)
        bad = "flaky_times must be within 0..4294967295";
    else if (c->down_for_ms < 0)
        bad = "down_for must not be negative";
    else if (c->delay_ms < 0)
        bad = "delay must not be negative";
    if (bad) {
        snprintf(errstr, errlen, "%s", bad);
        return OBX_CONFIG;
    }
    return OBX_OK;
}

static obx_status chaos_validate(const obx_host *host, const void *config,
                                 bool connect, char *errstr, size_t errlen)
{
    const chb_config *c = config;
    obx_status st = check_config(c, errstr, errlen);
    return st != OBX_OK ? st
                        : obc_jsonl_validate(&c->out, connect, errstr, errlen);
}

static void log_setup(const chb_broker *c)
{
    const chb_config *k = c->conf;
    char line[512];
    snprintf(line, sizeof line,
             "chaos: %zu permanent type(s), %zu flaky type(s) x%lld, "
             "down_for %lld ms, down_while_file %s, fail_percent %lld "
             "(seed %lld), delay %lld ms",
             k->permanent_types.n, k->flaky_types.n, (long long)k->flaky_times,
             (long long)k->down_for_ms,
             k->down_while_file ? k->down_while_file : "-",
             (long long)k->fail_percent, (long long)k->seed,
             (long long)k->delay_ms);
    chaos_log(c, OBX_LOG_INFO, line);
}

/* The instance borrows config (owned by the core, outlives the instance)
 * and host. OBX_CONFIG for invalid values or an unopenable output. */
static obx_status chaos_open(const obx_host *host, const void *config,
                             void **inst, char *errstr, size_t errlen)
{
    const chb_config *conf = config;
    obx_status st = check_config(conf, errstr, errlen);
    if (st != OBX_OK)
        return st;
    chb_broker *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    c->host = host;
    c->conf = conf;
    c->opened_us = host->mono_us();
    c->rng = (uint64_t)conf->seed;
    c->flaky.owns_keys = true;
    st = obc_jsonl_sink_open(&c->sink, host, &conf->out, errstr, errlen);
    if (st != OBX_OK) {
        obc_jsonl_sink_close(&c->sink);
        free(c);
        return st;
    }
    log_setup(c);
    *inst = c;
    return OBX_OK;
}

static void chaos_close(void *inst)
{
    chb_broker *c = inst;
    if (!c)
        return;
    obc_jsonl_sink_close(&c->sink);
    map_free(&c->flaky);
    map_free(&c->failed_keys);
    free(c);
}

/* Whether the broker plays dead right now; the reason goes to why. */
static bool is_down(const chb_broker *c, char *why, size_t len)
{
    const chb_config *k = c->conf;
    int64_t up_at_us = c->opened_us + k->down_for_ms * 1000;
    int64_t now = c->host->mono_us();
    if (now < up_at_us) {
        snprintf(why, len,
                 "chaos: broker down for %lld ms after open (%lld ms left)",
                 (long long)k->down_for_ms,
                 (long long)((up_at_us - now + 999) / 1000));
        return true;
    }
    const char *f = k->down_while_file;
    if (f && *f && access(f, F_OK) == 0) {
        snprintf(why, len, "chaos: broker down while %s exists", f);
        return true;
    }
    return false;
}

/* is_down, logging each change of state once. */
static bool check_down(chb_broker *c, char *why, size_t len)
{
    bool down = is_down(c, why, len);
    if (down != c->down)
        chaos_log(c, down ? OBX_LOG_WARN : OBX_LOG_INFO,
                  down ? why : "chaos: broker up again");
    c->down = down;
    return down;
}

/* The injected outcome for one event, errstr filled on failure. */
static obx_status decide(chb_broker *c, const obx_event *ev, char *errstr,
                         size_t errlen)
{
    const chb_config *k = c->conf;
    const char *type = ev->event_type ? ev->event_type : "(null)";
    if (list_has(&k->permanent_types, ev->event_type)) {
        snprintf(errstr, errlen, "chaos: permanent failure for event type %s",
                 type);
        return OBX_PERMANENT;
    }
    if (k->flaky_times > 0 && list_has(&k->flaky_types, ev->event_type)) {
        chaos_slot *s =
            map_get(&c->flaky, ev->event_id ? ev->event_id : "", true);
        if (!s) {
            snprintf(errstr, errlen, "chaos: out of memory");
            return OBX_RETRY;
        }
        if (s->count < (uint64_t)k->flaky_times) {
            s->count++;
            snprintf(errstr, errlen,
                     "chaos: flaky failure %u of %lld for event type %s",
                     s->count, (long long)k->flaky_times, type);
            return OBX_RETRY;
        }
    }
    if (k->fail_percent > 0 &&
        rng_next(&c->rng) % 100 < (uint64_t)k->fail_percent) {
        snprintf(errstr, errlen, "chaos: random failure (fail_percent %lld)",
                 (long long)k->fail_percent);
        return OBX_RETRY;
    }
    return OBX_OK;
}

/* One event: held back when its key already failed in this call, else
 * failed on demand or written. Returns OBX_OK, or OBX_UNAVAILABLE when
 * the batch as a whole failed (err filled). */
static obx_status publish_one(chb_broker *c, const obx_event *ev, obx_result *r,
                              char *err, size_t errlen)
{
    r->errstr[0] = '\0';
    if (ev->key && map_get(&c->failed_keys, ev->key, false)) {
        r->status = OBX_RETRY;
        snprintf(r->errstr, sizeof r->errstr, "not attempted");
        return OBX_OK;
    }
    r->status = decide(c, ev, r->errstr, sizeof r->errstr);
    if (r->status == OBX_OK)
        return obc_jsonl_sink_add(&c->sink, ev, err, errlen);
    /* Without a record of the failed key, later events of it could
     * overtake this one: fail the batch rather than break the order. */
    if (ev->key && !map_get(&c->failed_keys, ev->key, true)) {
        snprintf(err, errlen, "chaos: out of memory");
        return OBX_UNAVAILABLE;
    }
    return OBX_OK;
}

static void fill_results(obx_result *results, size_t n, obx_status st,
                         const char *why)
{
    for (size_t i = 0; i < n; i++) {
        results[i].status = st;
        snprintf(results[i].errstr, sizeof results[i].errstr, "%s", why);
    }
}

/* Sleep the configured delay, capped by the caller's timeout. True when
 * the delay outlasted the timeout (why filled). */
static bool delay_timed_out(const chb_broker *c, int timeout_ms, char *why,
                            size_t len)
{
    int64_t delay = c->conf->delay_ms;
    if (delay <= 0)
        return false;
    if (timeout_ms > 0 && delay > timeout_ms) {
        sleep_ms(timeout_ms);
        snprintf(why, len, "chaos: timed out after %d ms (delay %lld ms)",
                 timeout_ms, (long long)delay);
        return true;
    }
    sleep_ms(delay);
    return false;
}

/* As the stdout broker's publish, with the injected failures: a down
 * broker fails the whole call with OBX_UNAVAILABLE; per-event failures
 * are reported in results and those events are not written. */
static obx_status chaos_publish(void *inst, obx_event *const *events, size_t n,
                                obx_result *results, int timeout_ms)
{
    chb_broker *c = inst;
    char err[OBX_ERRSTR_LEN];
    if (check_down(c, err, sizeof err)) {
        fill_results(results, n, OBX_UNAVAILABLE, err);
        return OBX_UNAVAILABLE;
    }
    if (delay_timed_out(c, timeout_ms, err, sizeof err)) {
        fill_results(results, n, OBX_RETRY, err);
        return OBX_OK;
    }
    map_clear(&c->failed_keys);
    obc_jsonl_sink_begin(&c->sink);
    obx_status st = OBX_OK;
    for (size_t i = 0; i < n && st == OBX_OK; i++)
        st = publish_one(c, events[i], &results[i], err, sizeof err);
    if (st == OBX_OK)
        st = obc_jsonl_sink_commit(&c->sink, err, sizeof err);
    map_clear(&c->failed_keys); /* its keys are borrowed from this batch */
    if (st != OBX_OK)
        fill_results(results, n, st, err);
    return st;
}

static obx_status chaos_flush(void *inst, int timeout_ms)
{
    chb_broker *c = inst;
    return obc_jsonl_sink_flush(&c->sink);
}

/* OBX_UNAVAILABLE while the simulated outage lasts, else OBX_OK. */
static obx_status chaos_health(void *inst, char *errstr, size_t errlen)
{
    chb_broker *c = inst;
    return check_down(c, errstr, errlen) ? OBX_UNAVAILABLE : OBX_OK;
}

static const obx_broker_ops chaos_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .validate = chaos_validate,
    .open = chaos_open,
    .close = chaos_close,
    .publish = chaos_publish,
    .flush = chaos_flush,
    .health = chaos_health,
};

OBX_BROKER_PLUGIN("chaos",
                  "JSON lines like stdout, with failures injected on demand",
                  "1.0.0", chaos_options, chb_config, chaos_ops)
