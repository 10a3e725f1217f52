/* An in-memory store for engine tests. Unlike the SQL stores it does not
 * order claims by key (no OBX_STORE_ORDERED_CLAIM), as a WAL store, so the
 * engine's own per-key hold is exercised. Built with FAKE_ORDERED it is
 * "fake_ordered": an ordered store, as the SQL stores are (a claim skips
 * keys with an event claimed or waiting for its retry before it), with
 * claim_ahead (which skips only the latter). Events are generated at open:
 * event i has key "k<i % keys>", type "Poison" when i is listed in
 * poison, else "Tick". Faults: the first unavailable_claims claims fail
 * with OBX_UNAVAILABLE, and claims fail while down_while_file exists. */
#include <outbox/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_store.h"

typedef struct fake_conf {
    int64_t events;
    int64_t keys;
    int64_t unavailable_claims;
    int64_t unavailable_acks;
    char *down_while_file;
    obx_list poison;
    int64_t topic_len;
    bool standby;
    bool stats_fail;
    char *open_down_while_file;
    bool hold_keys;
    int64_t claim_delay_ms;
    bool poison_untyped;
} fake_conf;

static const obx_option fake_options[] = {
    OBX_OPT_INT(fake_conf, events, "events", "100", 0, 10000000,
                "events generated at open"),
    OBX_OPT_INT(fake_conf, keys, "keys", "10", 1, 1000000, "distinct keys"),
    OBX_OPT_INT(fake_conf, unavailable_claims, "unavailable_claims", "0", 0,
                1000000, "the first N claims fail as unavailable"),
    OBX_OPT_INT(fake_conf, unavailable_acks, "unavailable_acks", "0", 0,
                1000000,
                "the first N acks fail as unavailable (events stay claimed)"),
    OBX_OPT_STRING(fake_conf, down_while_file, "down_while_file", NULL,
                   "claims fail as unavailable while this file exists"),
    OBX_OPT_LIST(fake_conf, poison, "poison", NULL,
                 "sequence numbers of events typed Poison"),
    OBX_OPT_INT(
        fake_conf, topic_len, "topic_len", "0", 0, 100000,
        "odd events get a row topic this long (t.<seq>.xxx...), 0: none"),
    OBX_OPT_BOOL(fake_conf, standby, "standby", "false",
                 "stats report a hot standby"),
    OBX_OPT_BOOL(fake_conf, stats_fail, "stats_fail", "false",
                 "stats fail as unavailable"),
    OBX_OPT_STRING(fake_conf, open_down_while_file, "open_down_while_file",
                   NULL, "open fails as unavailable while this file exists"),
    OBX_OPT_BOOL(fake_conf, hold_keys, "hold_keys", "false",
                 "a claim skips the keys with an event claimed before it, "
                 "as an ordered store does"),
    OBX_OPT_DURATION(fake_conf, claim_delay_ms, "claim_delay", "0s", 0, 60000,
                     "a claim that may wait and finds events returns them "
                     "this much later, as one that waited for them"),
    OBX_OPT_BOOL(fake_conf, poison_untyped, "poison_untyped", "false",
                 "Poison events have an empty aggregate_type"),
    OBX_OPTIONS_END};

typedef struct fake_ev {
    obx_event ev;
    char *topic;
    char id[32], key[32], agg[32];
    const char *type;
    char payload[64];
} fake_ev;

typedef struct fake {
    const obx_host *host;
    const fake_conf *conf;
    fake_ev *evs;
    fake_view view;
} fake;

OBX_EXPORT const fake_view *obx_fake_store_view(void *inst);
const fake_view *obx_fake_store_view(void *inst)
{
    return &((fake *)inst)->view;
}

/* The journal of the instance closed last: tests that let the engine run
 * (and close the store) read what it left. Freed at the next close. */
static fake_view closed_view;

OBX_EXPORT const fake_view *obx_fake_store_closed_view(void);
const fake_view *obx_fake_store_closed_view(void)
{
    return &closed_view;
}

/* Unloading the plugin (dlclose) must not leak the last journal. */
__attribute__((destructor)) static void fake_unload(void)
{
    free(closed_view.rows);
    closed_view.rows = NULL;
}

static bool is_poison(const fake_conf *c, uint64_t i)
{
    for (size_t k = 0; k < c->poison.n; k++)
        if ((uint64_t)strtoull(c->poison.items[k], NULL, 10) == i)
            return true;
    return false;
}

static obx_status fake_open(const obx_host *host, const void *config,
                            void **inst, char *errstr, size_t errlen)
{
    const fake_conf *c = config;
    if (c->open_down_while_file && access(c->open_down_while_file, F_OK) == 0) {
        snprintf(errstr, errlen, "fake store: down (%s exists)",
                 c->open_down_while_file);
        return OBX_UNAVAILABLE;
    }
    fake *f = calloc(1, sizeof *f);
    uint64_t n = (uint64_t)c->events;
    if (!f || !(f->evs = calloc(n ? n : 1, sizeof *f->evs)) ||
        !(f->view.rows = calloc(n ? n : 1, sizeof *f->view.rows))) {
        snprintf(errstr, errlen, "no memory");
        return OBX_NOMEM;
    }
    f->host = host;
    f->conf = c;
    f->view.n = n;
    for (uint64_t i = 0; i < n; i++) {
        fake_ev *e = &f->evs[i];
        snprintf(e->id, sizeof e->id, "e%llu", (unsigned long long)i);
        snprintf(e->key, sizeof e->key, "k%llu",
                 (unsigned long long)(i % (uint64_t)c->keys));
        snprintf(e->agg, sizeof e->agg, "%s",
                 c->poison_untyped && is_poison(c, i) ? "" : "thing");
        int len = snprintf(e->payload, sizeof e->payload, "{\"seq\":%llu}",
                           (unsigned long long)i);
        e->ev = (obx_event){.event_id = e->id,
                            .key = e->key,
                            .event_type = is_poison(c, i) ? "Poison" : "Tick",
                            .aggregate_type = e->agg,
                            .aggregate_id = e->key,
                            .payload = e->payload,
                            .payload_len = (size_t)len,
                            .created_at_us = host->now_us(),
                            .pos = {.seq = i}};
        if (c->topic_len > 0 && i % 2 == 1) {
            size_t tl = (size_t)c->topic_len;
            e->topic = malloc(tl + 32);
            int h = snprintf(e->topic, 32, "t.%llu.", (unsigned long long)i);
            memset(e->topic + h, 'x', tl);
            e->topic[h + (int)tl] = '\0';
            e->ev.topic = e->topic;
        }
    }
    *inst = f;
    return OBX_OK;
}

static void fake_close(void *inst)
{
    fake *f = inst;
    for (uint64_t i = 0; i < f->view.n; i++)
        free(f->evs[i].topic);
    free(f->evs);
    free(closed_view.rows);
    closed_view = f->view;
    free(f);
}

static bool down(const fake *f)
{
    if (f->view.claims <= (uint64_t)f->conf->unavailable_claims)
        return true;
    return f->conf->down_while_file &&
           access(f->conf->down_while_file, F_OK) == 0;
}

#ifdef FAKE_ORDERED
/* Whether row i holds back the later events of its key: claimed (unless
 * the claim goes past our own, which are all this store's claims), or
 * pending and waiting for its retry. */
static bool fake_blocks(const fake_row *r, int64_t now, bool past_own)
{
    return (r->state == FAKE_CLAIMED && !past_own) ||
           (r->state == FAKE_PENDING && r->next_at_us > now);
}
#endif

static obx_status fake_take(fake *f, obx_event **out, size_t max, size_t *n,
                            bool past_own)
{
    int64_t now = f->host->now_us();
    uint64_t keys = (uint64_t)f->conf->keys;
#ifdef FAKE_ORDERED
    bool ordered = true;
#else
    bool ordered = false;
    (void)past_own;
#endif
    bool hold = ordered || f->conf->hold_keys;
    bool *held = hold ? calloc(keys, sizeof *held) : NULL;
    if (hold && !held)
        return OBX_NOMEM;
    for (uint64_t i = 0; !ordered && held && i < f->view.n; i++)
        held[i % keys] |= f->view.rows[i].state == FAKE_CLAIMED;
    for (uint64_t i = 0; i < f->view.n && *n < max; i++) {
        fake_row *r = &f->view.rows[i];
#ifdef FAKE_ORDERED
        if (fake_blocks(r, now, past_own))
            held[i % keys] = true;
#endif
        if (r->state != FAKE_PENDING || r->next_at_us > now ||
            (held && held[i % keys]))
            continue;
        r->state = FAKE_CLAIMED;
        f->evs[i].ev.attempts = r->attempts;
        out[(*n)++] = &f->evs[i].ev;
    }
    free(held);
    return OBX_OK;
}

static obx_status fake_claim_in(fake *f, obx_event **out, size_t max, size_t *n,
                                int wait_ms, bool past_own, char *errstr,
                                size_t errlen)
{
    f->view.claims++;
    *n = 0;
    if (down(f)) {
        f->view.unavailable_claims++;
        snprintf(errstr, errlen, "fake store is down");
        return OBX_UNAVAILABLE;
    }
    if (fake_take(f, out, max, n, past_own) != OBX_OK)
        return OBX_NOMEM;
    if (*n > 0 && wait_ms > 0 && f->conf->claim_delay_ms > 0)
        usleep((useconds_t)f->conf->claim_delay_ms * 1000);
    uint64_t claimed = 0;
    for (uint64_t i = 0; i < f->view.n; i++)
        claimed += f->view.rows[i].state == FAKE_CLAIMED;
    /* read by the test's thread while the pipeline runs */
    if (claimed > __atomic_load_n(&f->view.max_claimed, __ATOMIC_RELAXED))
        __atomic_store_n(&f->view.max_claimed, claimed, __ATOMIC_RELEASE);
    f->view.empty_nowait_claims += *n == 0 && wait_ms == 0;
    f->view.ahead_claims += past_own;
    if (*n == 0 && wait_ms > 0)
        usleep(1000); /* nothing due: a short nap, as a real store waits */
    return OBX_OK;
}

static obx_status fake_claim(void *inst, obx_event **out, size_t max, size_t *n,
                             int wait_ms, char *errstr, size_t errlen)
{
    return fake_claim_in(inst, out, max, n, wait_ms, false, errstr, errlen);
}

#ifdef FAKE_ORDERED
static obx_status fake_claim_ahead(void *inst, obx_event **out, size_t max,
                                   size_t *n, char *errstr, size_t errlen)
{
    return fake_claim_in(inst, out, max, n, 0, true, errstr, errlen);
}
#endif

static fake_row *row_of(fake *f, const obx_event *ev)
{
    return &f->view.rows[ev->pos.seq];
}

static obx_status fake_ack(void *inst, obx_event *const *evs, size_t n,
                           char *errstr, size_t errlen)
{
    fake *f = inst;
    if (++f->view.acks <= (uint64_t)f->conf->unavailable_acks) {
        snprintf(errstr, errlen, "fake store: ack failed");
        return OBX_UNAVAILABLE;
    }
    for (size_t i = 0; i < n; i++) {
        fake_row *r = row_of(inst, evs[i]);
        r->state = FAKE_PUBLISHED;
        r->publishes++;
    }
    return OBX_OK;
}

static obx_status fake_release(void *inst, const obx_release *items, size_t n,
                               char *errstr, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        fake_row *r = row_of(inst, items[i].event);
        r->state = FAKE_PENDING;
        r->next_at_us = items[i].retry_at_us;
        if (items[i].counts_as_attempt) {
            r->attempts++;
            r->counted_releases++;
        } else {
            r->uncounted_releases++;
        }
    }
    return OBX_OK;
}

static obx_status fake_bury(void *inst, const obx_burial *items, size_t n,
                            char *errstr, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        fake_row *r = row_of(inst, items[i].event);
        r->state = FAKE_DEAD;
        r->attempts = items[i].event->attempts;
        snprintf(r->reason, sizeof r->reason, "%s", items[i].reason);
    }
    return OBX_OK;
}

static obx_status fake_stats(void *inst, obx_store_stats *st, char *errstr,
                             size_t errlen)
{
    fake *f = inst;
    if (f->conf->stats_fail) {
        snprintf(errstr, errlen, "fake store: stats unavailable");
        return OBX_UNAVAILABLE;
    }
    st->pending = st->dead = 0;
    st->oldest_pending_us = 0;
    for (uint64_t i = 0; i < f->view.n; i++) {
        fake_state s = f->view.rows[i].state;
        bool pend = s == FAKE_PENDING || s == FAKE_CLAIMED;
        st->pending += pend;
        st->dead += s == FAKE_DEAD;
        int64_t t = f->evs[i].ev.created_at_us;
        if (pend && (!st->oldest_pending_us || t < st->oldest_pending_us))
            st->oldest_pending_us = t;
    }
    st->lag_bytes = -1;
    st->standby = f->conf->standby;
    return OBX_OK;
}

#ifdef FAKE_ORDERED
#define FAKE_NAME "fake_ordered"
#define FAKE_DESC "in-memory ordered store with fault injection (tests)"
#define FAKE_FLAGS OBX_STORE_ORDERED_CLAIM
#define FAKE_CLAIM_AHEAD fake_claim_ahead
#else
#define FAKE_NAME "fake"
#define FAKE_DESC "in-memory store with fault injection (tests)"
#define FAKE_FLAGS 0
#define FAKE_CLAIM_AHEAD NULL
#endif

static const obx_store_ops fake_ops = {
    .struct_size = sizeof(obx_store_ops),
    .flags = FAKE_FLAGS,
    .open = fake_open,
    .close = fake_close,
    .claim = fake_claim,
    .ack = fake_ack,
    .release = fake_release,
    .bury = fake_bury,
    .stats = fake_stats,
    .claim_ahead = FAKE_CLAIM_AHEAD,
};

OBX_STORE_PLUGIN(FAKE_NAME, FAKE_DESC, "1.0.0", fake_options, fake_conf,
                 fake_ops)
