/* The engine: claim -> publish -> settle for one pipeline.
 *
 * Guarantees enforced here (docs/architecture.md maps each to its code):
 *  - no loss: an event is acked only after the broker confirmed it; every
 *    other outcome releases or buries it, and a crash leaves it leased;
 *  - per-key order: within a batch, once an event of a key fails, later
 *    events of that key are released without counting an attempt and
 *    scheduled no earlier than it; stores without ordered claims get the
 *    same hold across batches from the `held` key set;
 *  - outages do not burn retries: UNAVAILABLE releases the batch uncounted
 *    and opens the circuit;
 *  - poison is quarantined: PERMANENT, or RETRY at max_attempts, buries.
 */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <outbox/abi.h>
#include "template.h"

#define ENGINE_LOG(p, lvl, ...)                                                \
    obx_log((p)->lg, lvl, (p)->component, __VA_ARGS__)

static bool update_stats(obx_pipeline *p, bool force);

static const char held_reason[] = "not attempted: an earlier event of its "
                                  "key is waiting for a retry";

static bool stopping(const obx_pipeline *p)
{
    return atomic_load(p->stop) != 0 || atomic_load(&p->halt) != 0;
}

/* The loop is alive: the main thread pings systemd's watchdog only while
 * every pipeline's heartbeat is fresh. */
static void beat(obx_pipeline *p)
{
    atomic_store(&p->heartbeat_us, obx_mono_us());
}

/* Sleep until the monotonic deadline or the stop flag, in short steps so
 * SIGTERM is honoured promptly (and the heartbeat stays fresh). */
static void sleep_until(obx_pipeline *p, int64_t deadline_us)
{
    for (;;) {
        beat(p);
        int64_t left = deadline_us - obx_mono_us();
        if (left <= 0 || stopping(p))
            return;
        if (left > 50000)
            left = 50000;
        struct timespec ts = {0, (long)left * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The per-batch buffers: allocated when the pipeline first opens, not
 * when it is built, so `check` of a config with thousands of pipelines
 * stays cheap. */
static int alloc_batch(obx_pipeline *p, obx_batch *b)
{
    if (b->claimed)
        return 0;
    size_t n = (size_t)p->set.batch_size;
    b->claimed = calloc(n, sizeof *b->claimed);
    b->pub = calloc(n, sizeof *b->pub);
    b->results = calloc(n, sizeof *b->results);
    b->acks = calloc(n, sizeof *b->acks);
    b->rels = calloc(n, sizeof *b->rels);
    b->burs = calloc(n, sizeof *b->burs);
    b->reasons = calloc(n, sizeof *b->reasons);
    b->dest_off = calloc(n, sizeof *b->dest_off);
    if (!b->dest_off || !b->claimed || !b->pub || !b->results || !b->acks ||
        !b->rels || !b->burs || !b->reasons)
        return -1;
    return 0;
}

/* --once must end: true when it has gone once_timeout without progress. */
static bool once_expired(const obx_pipeline *p)
{
    return p->once &&
           obx_mono_us() - p->last_progress_us > p->set.once_timeout_ms * 1000;
}

/* ---- circuit breaker ------------------------------------------------- */

static const char *circuit_side_name(obx_circuit_side side)
{
    return side == OBX_CIRCUIT_STORE ? "store" : "broker";
}

static void circuit_trip(obx_pipeline *p, obx_circuit_side side,
                         const char *why)
{
    const char *who = circuit_side_name(side);
    obx_circuit *c = &p->circuit;
    int64_t delay =
        obx_backoff_us(p->set.circuit_backoff, c->failures, &p->rng);
    c->failures++;
    c->health_ok = false;
    c->next_probe_us = obx_mono_us() + delay;
    if (!c->open) {
        c->open = true;
        c->opened_us = obx_mono_us();
        c->side = side;
        snprintf(c->reason, sizeof c->reason, "%s unavailable: %s", who, why);
        obx_pmetrics_circuit(&p->metrics, c->reason);
        atomic_store(&p->metrics.circuit_open, 1);
        ENGINE_LOG(p, OBX_LOG_WARN, "circuit open: %s; next probe in %.1fs",
                   c->reason, (double)delay / 1e6);
        if (side == OBX_CIRCUIT_BROKER)
            update_stats(p, true); /* the backlog starts to grow: show it */
    } else {
        ENGINE_LOG(p, OBX_LOG_DEBUG, "probe failed (%s: %s); next in %.1fs",
                   who, why, (double)delay / 1e6);
    }
    if (side == OBX_CIRCUIT_STORE)
        atomic_store(&p->metrics.store_up, 0);
    else
        atomic_store(&p->metrics.broker_up, 0);
}

static void circuit_close(obx_pipeline *p)
{
    obx_circuit *c = &p->circuit;
    atomic_store(&p->metrics.store_up, 1);
    atomic_store(&p->metrics.broker_up, 1);
    if (!c->open) {
        c->failures = 0;
        return;
    }
    ENGINE_LOG(p, OBX_LOG_INFO, "circuit closed after %.1fs (%s)",
               (double)(obx_mono_us() - c->opened_us) / 1e6, c->reason);
    c->open = false;
    c->failures = 0;
    obx_pmetrics_circuit(&p->metrics, NULL);
    atomic_store(&p->metrics.circuit_open, 0);
    update_stats(p, true);
}

/* While open: wait for the probe time, then ask the broker's health op if
 * it has one. Returns true when a batch may be tried (half-open). */
static bool circuit_allows(obx_pipeline *p)
{
    obx_circuit *c = &p->circuit;
    if (!c->open)
        return true;
    /* Keep the pending and oldest-age gauges current while waiting: an
     * outage is when backlog alerts must fire. */
    while (!stopping(p) && !once_expired(p) &&
           obx_mono_us() < c->next_probe_us) {
        int64_t next = obx_mono_us() + p->stats_interval_us;
        sleep_until(p, next < c->next_probe_us ? next : c->next_probe_us);
        update_stats(p, false);
    }
    if (stopping(p) || once_expired(p))
        return false;
    if (p->broker && OBX_HAS_OP(p->bops, obx_broker_ops, health) &&
        c->side == OBX_CIRCUIT_BROKER) {
        char err[OBX_CORE_ERR_LEN] = "";
        if (p->bops->health(p->broker, err, sizeof err) != OBX_OK) {
            circuit_trip(p, OBX_CIRCUIT_BROKER,
                         err[0] ? err : "health probe failed");
            return false;
        }
        c->health_ok = true;
    }
    return true;
}

/* ---- settling -------------------------------------------------------- */

static void add_release(obx_batch *b, obx_event *ev, int64_t at_us,
                        const char *why, bool counts)
{
    obx_release *r = &b->rels[b->n_rels++];
    r->event = ev;
    r->retry_at_us = at_us;
    r->error = why;
    r->counts_as_attempt = counts;
}

static void add_burial(obx_batch *b, obx_event *ev, const char *reason)
{
    size_t i = b->n_burs++;
    snprintf(b->reasons[i], sizeof b->reasons[i], "%s", reason);
    b->burs[i].event = ev;
    b->burs[i].reason = b->reasons[i];
    b->burs[i].destination = ev->destination;
}

/* Settling failed. While the store is merely unavailable, the events stay
 * claimed and we call again after the circuit's delay: the broker has them,
 * and acking late beats publishing twice. Returns true to try again. */
static bool settle_again(obx_pipeline *p, const char *what, obx_status st,
                         const char *err, size_t n)
{
    if (st == OBX_UNAVAILABLE && !stopping(p)) {
        circuit_trip(p, OBX_CIRCUIT_STORE, err);
        sleep_until(p, p->circuit.next_probe_us);
        return !stopping(p);
    }
    ENGINE_LOG(p, st == OBX_UNAVAILABLE ? OBX_LOG_WARN : OBX_LOG_ERROR,
               "store %s of %zu events failed (%s: %s); they return after "
               "their lease and may be published again",
               what, n, obx_status_name(st), err);
    return false;
}

typedef obx_status (*settle_fn)(obx_pipeline *p, obx_batch *b, char *err,
                                size_t len);

static obx_status do_ack(obx_pipeline *p, obx_batch *b, char *err, size_t len)
{
    return p->sops->ack(p->store, b->acks, b->n_acks, err, len);
}

static obx_status do_release(obx_pipeline *p, obx_batch *b, char *err,
                             size_t len)
{
    return p->sops->release(p->store, b->rels, b->n_rels, err, len);
}

static obx_status do_bury(obx_pipeline *p, obx_batch *b, char *err, size_t len)
{
    return p->sops->bury(p->store, b->burs, b->n_burs, err, len);
}

/* Call a settle op until it succeeds, the store fails for good, or we
 * stop. 1 settled, 0 given up (the leases return the events), -1 when the
 * pipeline cannot go on (neither OK nor merely unavailable). */
static int settle(obx_pipeline *p, obx_batch *b, settle_fn fn, const char *what,
                  size_t n)
{
    if (n == 0)
        return 1;
    for (;;) {
        char err[OBX_CORE_ERR_LEN] = "";
        obx_status st = fn(p, b, err, sizeof err);
        if (st == OBX_OK)
            return 1;
        if (!settle_again(p, what, st, err, n))
            return st == OBX_UNAVAILABLE ? 0 : -1;
    }
}

static int flush_acks(obx_pipeline *p, obx_batch *b)
{
    int rc = settle(p, b, do_ack, "ack", b->n_acks);
    if (rc == 1 && b->n_acks) {
        atomic_fetch_add(&p->metrics.published, b->n_acks - b->n_dlq_acks);
        atomic_store(&p->metrics.last_progress_us, obx_mono_us());
        p->last_progress_us = obx_mono_us();
    }
    b->n_acks = b->n_dlq_acks = 0;
    return rc < 0 ? -1 : 0;
}

static int flush_releases(obx_pipeline *p, obx_batch *b)
{
    int rc = settle(p, b, do_release, "release", b->n_rels);
    b->n_rels = 0;
    return rc < 0 ? -1 : 0;
}

/* One warn line per dead letter: each is an event someone must look at. */
static void log_dead_letter(obx_pipeline *p, const obx_event *ev,
                            const char *where, const char *reason)
{
    ENGINE_LOG(p, OBX_LOG_WARN,
               "dead letter (%s): event %s, key %s, type %s, %u attempt%s: %s",
               where, ev->event_id ? ev->event_id : "(none)",
               ev->key ? ev->key : "(none)",
               ev->event_type ? ev->event_type : "(none)", ev->attempts,
               ev->attempts == 1 ? "" : "s", reason);
}

static int flush_burials(obx_pipeline *p, obx_batch *b)
{
    /* Logged before bury: once it succeeds the store may free the events.
     * A failed bury logs its own error line right after. */
    for (size_t i = 0; i < b->n_burs; i++)
        log_dead_letter(p, b->burs[i].event, "store", b->burs[i].reason);
    int rc = settle(p, b, do_bury, "bury", b->n_burs);
    if (rc == 1 && b->n_burs) {
        atomic_fetch_add(&p->metrics.dead_lettered, b->n_burs);
        p->last_progress_us = obx_mono_us();
    }
    b->n_burs = 0;
    return rc < 0 ? -1 : 0;
}

/* ---- dead letters ---------------------------------------------------- */

/* A result the broker leaves unfilled must never read as OBX_OK. */
static void prefill_results(obx_result *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        res[i].status = OBX_FATAL;
        strcpy(res[i].errstr, "no result from broker");
    }
}

/* Copies of the buried events bound for the DLQ topic, each with the
 * failure added as headers. One allocation for the lot. */
typedef struct dlq_batch {
    obx_event *copies;
    obx_event **ptrs;
    obx_header *hdrs;
    obx_result *res;
    char (*attempts)[16];
} dlq_batch;

static void dlq_free(dlq_batch *d)
{
    free(d->copies);
    free(d->ptrs);
    free(d->hdrs);
    free(d->res);
    free(d->attempts);
}

static int dlq_build(obx_pipeline *p, obx_batch *b, dlq_batch *d)
{
    size_t n = b->n_burs, nh = 0;
    for (size_t i = 0; i < n; i++)
        nh += b->burs[i].event->n_headers + 3;
    d->copies = calloc(n, sizeof *d->copies);
    d->ptrs = calloc(n, sizeof *d->ptrs);
    d->hdrs = calloc(nh, sizeof *d->hdrs);
    d->res = calloc(n, sizeof *d->res);
    d->attempts = calloc(n, sizeof *d->attempts);
    if (!d->copies || !d->ptrs || !d->hdrs || !d->res || !d->attempts)
        return -1;
    obx_header *h = d->hdrs;
    for (size_t i = 0; i < n; i++) {
        const obx_burial *bu = &b->burs[i];
        const obx_event *ev = bu->event;
        if (ev->n_headers)
            memcpy(h, ev->headers, ev->n_headers * sizeof *h);
        snprintf(d->attempts[i], sizeof d->attempts[i], "%u", ev->attempts);
        h[ev->n_headers] = (obx_header){"outbox-original-topic",
                                        bu->destination ? bu->destination : ""};
        h[ev->n_headers + 1] = (obx_header){"outbox-error", bu->reason};
        h[ev->n_headers + 2] = (obx_header){"outbox-attempts", d->attempts[i]};
        d->copies[i] = *ev;
        d->copies[i].headers = h;
        d->copies[i].n_headers = ev->n_headers + 3;
        d->copies[i].destination = p->set.dlq_topic;
        d->ptrs[i] = &d->copies[i];
        h += ev->n_headers + 3;
    }
    return 0;
}

/* dlq = topic:NAME: publish the copies; what the broker confirms is acked
 * (it lives on in the DLQ topic), what it does not stays in the burial
 * list, so the store keeps it. */
static void dlq_publish(obx_pipeline *p, obx_batch *b)
{
    dlq_batch d = {0};
    if (dlq_build(p, b, &d) != 0) {
        ENGINE_LOG(p, OBX_LOG_ERROR,
                   "no memory for the DLQ topic; keeping "
                   "dead letters in the store");
        dlq_free(&d);
        return;
    }
    prefill_results(d.res, b->n_burs);
    obx_status st = p->bops->publish(p->broker, d.ptrs, b->n_burs, d.res,
                                     (int)p->set.publish_timeout_ms);
    size_t keep = 0;
    for (size_t i = 0; i < b->n_burs; i++) {
        obx_burial bu = b->burs[i];
        if (st == OBX_OK && d.res[i].status == OBX_OK) {
            b->acks[b->n_acks++] = bu.event;
            b->n_dlq_acks++;
            atomic_fetch_add(&p->metrics.dead_lettered, 1);
            log_dead_letter(p, bu.event, p->set.dlq_topic, bu.reason);
            continue;
        }
        /* Fall back to the store; keep the first reason, add the DLQ one. */
        size_t len = strlen(b->reasons[i]);
        const obx_result *r = &d.res[i];
        snprintf(b->reasons[i] + len, sizeof b->reasons[i] - len,
                 " (dlq topic failed: %s%s%s)",
                 obx_status_name(st == OBX_OK ? r->status : st),
                 r->errstr[0] ? ": " : "", r->errstr);
        memmove(b->reasons[keep], b->reasons[i], sizeof b->reasons[i]);
        bu.reason = b->reasons[keep];
        b->burs[keep++] = bu;
    }
    b->n_burs = keep;
    dlq_free(&d);
}

/* ---- one batch ------------------------------------------------------- */

/* Grow the destination buffer to hold at least `need` bytes. */
static int grow_dests(obx_batch *b, size_t need)
{
    if (need <= b->dest_cap)
        return 0;
    size_t cap = b->dest_cap ? b->dest_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *nb = realloc(b->dest_buf, cap);
    if (!nb)
        return -1;
    b->dest_buf = nb;
    b->dest_cap = cap;
    return 0;
}

/* Expand the route template for every event without a topic of its own
 * into one buffer, growing it when an expansion does not fit (then only
 * that one is expanded again): no destination is ever cut. Offsets, not
 * pointers, until the buffer stops moving. A row's own topic is used as
 * it is (store-owned, valid until settled). */
static int route_events(obx_pipeline *p, obx_batch *b)
{
    size_t used = 0;
    for (size_t i = 0; i < b->n_pub; i++) {
        const obx_event *ev = b->pub[i];
        if (ev->topic && ev->topic[0])
            continue;
        size_t left = b->dest_cap - used;
        size_t n = obx_template_expand(p->set.topic, ev,
                                       left ? b->dest_buf + used : NULL, left);
        if (n + 1 > left) {
            if (grow_dests(b, used + n + 1) != 0)
                return -1;
            obx_template_expand(p->set.topic, ev, b->dest_buf + used, n + 1);
        }
        b->dest_off[i] = used;
        used += n + 1;
    }
    for (size_t i = 0; i < b->n_pub; i++) {
        obx_event *ev = b->pub[i];
        bool own = ev->topic && ev->topic[0];
        ev->destination = own ? ev->topic : b->dest_buf + b->dest_off[i];
    }
    return 0;
}

/* Keys with an event in the other batch's release list: that batch was
 * published while this one was claimed ahead, and its released events
 * are still claimed, so a store that does not order claims (or an
 * ordered one's claim_ahead) handed out later events of their keys.
 * Those must wait for the released ones to come back (no earlier than
 * their retry time). */
static void note_returning(obx_pipeline *p, const obx_batch *other)
{
    obx_keyset_clear(&p->returning);
    for (size_t i = 0; i < other->n_rels; i++) {
        const obx_event *ev = other->rels[i].event;
        int64_t until = other->rels[i].retry_at_us;
        if (!ev->key)
            continue;
        obx_keyset_entry *e = obx_keyset_get(&p->returning, ev->key);
        if (!e || e->until_us < until)
            obx_keyset_put(&p->returning, ev->key, ev->event_id, until);
    }
}

/* Hold back events whose key waits for a retry or for an event that is
 * being released (only needed when the store does not order claims
 * itself, or claimed b past its own unsettled events), then route the
 * rest. An ordered store's keys are never in `held` (hold_key). */
static int prepare_publish(obx_pipeline *p, obx_batch *b,
                           const obx_batch *other)
{
    bool hold = p->set.ordering == OBX_ORDER_KEY &&
                (b->past_own || !(p->sops->flags & OBX_STORE_ORDERED_CLAIM));
    if (hold)
        note_returning(p, other);
    b->n_pub = 0;
    for (size_t i = 0; i < b->n_claimed; i++) {
        obx_event *ev = b->claimed[i];
        obx_keyset_entry *r =
            hold && ev->key ? obx_keyset_get(&p->returning, ev->key) : NULL;
        if (r) {
            add_release(b, ev, r->until_us, held_reason, false);
            continue;
        }
        obx_keyset_entry *e =
            hold && ev->key ? obx_keyset_get(&p->held, ev->key) : NULL;
        if (e && strcmp(e->holder, ev->event_id) != 0) {
            add_release(b, ev, e->until_us, held_reason, false);
            continue;
        }
        if (e)
            obx_keyset_del(&p->held, ev->key);
        b->pub[b->n_pub++] = ev;
    }
    return route_events(p, b);
}

/* Hold the key of a failed event so later events of it wait behind it:
 * in this batch always, and in later batches when the event comes back
 * (a retry) and the store does not order claims itself. A dead event
 * never comes back, so it holds its key for this batch only. */
static void hold_key(obx_pipeline *p, const obx_event *ev, int64_t until,
                     bool comes_back)
{
    if (p->set.ordering != OBX_ORDER_KEY || !ev->key)
        return;
    obx_keyset_put(&p->failed, ev->key, ev->event_id, until);
    if (comes_back && !(p->sops->flags & OBX_STORE_ORDERED_CLAIM))
        obx_keyset_put(&p->held, ev->key, ev->event_id, until);
}

/* Retries are routine: debug level, and at most a burst per second so a
 * broker hiccup does not flood the log. */
static void log_retry(obx_pipeline *p, const obx_event *ev, uint32_t attempts,
                      int64_t delay_us, const char *err)
{
    obx_ratelimit *rl = &p->retry_log;
    if (!obx_log_enabled(p->lg, OBX_LOG_DEBUG))
        return;
    int64_t now = obx_mono_us();
    if (now - rl->window_us >= 1000000) {
        if (rl->dropped)
            ENGINE_LOG(p, OBX_LOG_DEBUG, "%u more retries not logged",
                       rl->dropped);
        rl->window_us = now;
        rl->written = rl->dropped = 0;
    }
    if (rl->written >= rl->burst) {
        rl->dropped++;
        return;
    }
    rl->written++;
    ENGINE_LOG(p, OBX_LOG_DEBUG,
               "retry: event %s (key %s) failed attempt %u, next in %.1fs: %s",
               ev->event_id ? ev->event_id : "(none)",
               ev->key ? ev->key : "(none)", attempts, (double)delay_us / 1e6,
               err);
}

static void fail_event(obx_pipeline *p, obx_batch *b, obx_event *ev,
                       obx_status st, const char *err)
{
    int64_t now = obx_now_us();
    obx_pmetrics_error(&p->metrics, st);
    uint32_t attempts = ev->attempts + 1;
    /* Out of memory is transient: a counted retry, not a dead letter.
     * Every other failure but RETRY can never succeed (broker.h). */
    bool permanent = st != OBX_RETRY && st != OBX_NOMEM;
    if (p->set.dlq_kind != OBX_DLQ_NONE &&
        (permanent || attempts >= (uint32_t)p->set.max_attempts)) {
        char reason[OBX_REASON_LEN];
        if (permanent)
            snprintf(reason, sizeof reason, "%s: %s", obx_status_name(st), err);
        else
            snprintf(reason, sizeof reason, "max attempts (%u) reached: %s",
                     attempts, err);
        ev->attempts = attempts;
        add_burial(b, ev, reason);
        hold_key(p, ev, now, false); /* later events: right after it */
        return;
    }
    /* dlq = none never dead-letters: the event keeps retrying, capped. */
    int64_t at = now + obx_backoff_us(p->set.backoff, attempts, &p->rng);
    atomic_fetch_add(&p->metrics.retries, 1);
    log_retry(p, ev, attempts, at - now, err);
    add_release(b, ev, at, err, true);
    hold_key(p, ev, at, true);
}

/* Sort results into acks, releases and burials, in batch order. Returns
 * the broker's reason for the first event it reported unavailable (the
 * circuit's reason), or NULL. */
static const char *classify(obx_pipeline *p, obx_batch *b)
{
    const char *unavailable = NULL;
    int64_t now_wall = obx_now_us();
    obx_keyset_clear(&p->failed);
    for (size_t i = 0; i < b->n_pub; i++) {
        obx_event *ev = b->pub[i];
        obx_result *r = &b->results[i];
        obx_keyset_entry *f =
            ev->key ? obx_keyset_get(&p->failed, ev->key) : NULL;
        if (r->status == OBX_OK) {
            /* Confirmed even if an earlier event of its key failed: the
             * broker has it, and acking avoids a second copy. */
            b->acks[b->n_acks++] = ev;
            obx_hist_observe(&p->metrics.latency, now_wall - ev->created_at_us);
        } else if (f) {
            add_release(b, ev, f->until_us, held_reason, false);
        } else if (r->status == OBX_UNAVAILABLE) {
            obx_pmetrics_error(&p->metrics, r->status);
            add_release(b, ev, now_wall, r->errstr, false);
            hold_key(p, ev, now_wall, true);
            if (!unavailable)
                unavailable = r->errstr[0] ? r->errstr
                                           : "events reported "
                                             "unavailable";
        } else {
            fail_event(p, b, ev, r->status, r->errstr);
        }
    }
    return unavailable;
}

static void release_all(obx_batch *b, obx_event **evs, size_t n,
                        const char *why)
{
    int64_t now = obx_now_us();
    for (size_t i = 0; i < n; i++)
        add_release(b, evs[i], now, why, false);
}

/* Refuse events whose destination came out empty before the broker sees
 * them: that can never succeed. The later events of a refused event's
 * key go back behind it, as after any failure: with dlq = none it comes
 * back, and they must not go out first. */
static void refuse_bad_destinations(obx_pipeline *p, obx_batch *b)
{
    size_t keep = 0;
    obx_keyset_clear(&p->failed);
    for (size_t i = 0; i < b->n_pub; i++) {
        obx_event *ev = b->pub[i];
        obx_keyset_entry *f =
            ev->key ? obx_keyset_get(&p->failed, ev->key) : NULL;
        if (f) {
            add_release(b, ev, f->until_us, held_reason, false);
            continue;
        }
        if (ev->destination[0] == '\0') {
            char why[OBX_ERRSTR_LEN];
            snprintf(why, sizeof why,
                     "empty destination: the row has no topic and the "
                     "route template '%s' expanded to nothing",
                     p->set.topic);
            fail_event(p, b, ev, OBX_PERMANENT, why);
            continue;
        }
        b->pub[keep++] = ev;
    }
    b->n_pub = keep;
}

/* Route and check a claimed batch for publishing. False when nothing is
 * left to publish (all held back, refused, or no memory to route). */
static bool publish_prepare(obx_pipeline *p, obx_batch *b,
                            const obx_batch *other)
{
    if (prepare_publish(p, b, other) != 0) {
        release_all(b, b->pub, b->n_pub, "out of memory routing events");
        circuit_trip(p, OBX_CIRCUIT_BROKER, "out of memory routing events");
        return false;
    }
    refuse_bad_destinations(p, b);
    if (b->n_pub == 0)
        return false;
    prefill_results(b->results, b->n_pub);
    return true;
}

/* What publish returned for b: sort the results, or handle a batch-wide
 * failure. 0, or -1 when the pipeline must stop. */
static int publish_done(obx_pipeline *p, obx_batch *b, obx_status st)
{
    if (st == OBX_OK) {
        p->broker_fatal = false;
        const char *down = classify(p, b);
        if (down)
            circuit_trip(p, OBX_CIRCUIT_BROKER, down);
        else
            circuit_close(p);
        if (b->n_burs && p->set.dlq_kind == OBX_DLQ_TOPIC)
            dlq_publish(p, b);
        return 0;
    }
    obx_pmetrics_error(&p->metrics, st);
    const char *why =
        b->results[0].errstr[0] ? b->results[0].errstr : obx_status_name(st);
    char reason[OBX_ERRSTR_LEN];
    snprintf(reason, sizeof reason, "%s", why);
    release_all(b, b->pub, b->n_pub, why); /* kept until b is settled */
    circuit_trip(p, OBX_CIRCUIT_BROKER, reason);
    if (st == OBX_FATAL) {
        /* Reopening is the cure for a broken instance; when the fresh one
         * fails the same way before anything got through (stdout's reader
         * is gone), it is no cure, and the pipeline stops. */
        bool again = p->broker_fatal;
        p->broker_fatal = true;
        ENGINE_LOG(p, OBX_LOG_ERROR, "broker failed (%s); %s", reason,
                   again ? "it failed again after reopening: stopping"
                         : "reopening it");
        p->bops->close(p->broker);
        p->broker = NULL;
        return again ? -1 : 0;
    }
    return 0;
}

static int settle_batch(obx_pipeline *p, obx_batch *b)
{
    int rc = flush_acks(p, b);
    rc |= flush_releases(p, b);
    rc |= flush_burials(p, b);
    return rc;
}

/* Hand claimed events back unpublished, uncounted, and settle that. */
static int unclaim(obx_pipeline *p, obx_batch *b, const char *why)
{
    release_all(b, b->claimed, b->n_claimed, why);
    b->n_claimed = 0;
    return settle_batch(p, b);
}

/* ---- the publisher thread ------------------------------------------- */

static void *publisher_main(void *arg)
{
    obx_pipeline *p = arg;
    obx_publisher *w = &p->pub;
    pthread_mutex_lock(&w->mu);
    while (!w->quit) {
        if (!w->busy) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        obx_batch *b = w->batch;
        pthread_mutex_unlock(&w->mu);
        obx_status st =
            p->bops->publish(p->broker, b->pub, b->n_pub, b->results,
                             (int)p->set.publish_timeout_ms);
        pthread_mutex_lock(&w->mu);
        w->st = st;
        w->busy = false;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Start publishing b on the publisher thread (started on first use).
 * -1 when the thread cannot be started: the caller publishes itself. */
static int publisher_start(obx_pipeline *p, obx_batch *b)
{
    obx_publisher *w = &p->pub;
    if (!w->started) {
        w->quit = false;
        if (pthread_create(&w->thread, NULL, publisher_main, p) != 0)
            return -1;
        w->started = true;
    }
    pthread_mutex_lock(&w->mu);
    w->batch = b;
    w->busy = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static obx_status publisher_wait(obx_pipeline *p)
{
    obx_publisher *w = &p->pub;
    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    obx_status st = w->st;
    w->batch = NULL;
    pthread_mutex_unlock(&w->mu);
    return st;
}

static void publisher_stop(obx_pipeline *p)
{
    obx_publisher *w = &p->pub;
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = false;
}

/* ---- the loop -------------------------------------------------------- */

/* Refresh the store's gauges (at most every stats interval unless forced).
 * Returns whether the store answered; on failure the old values stay (the
 * oldest age keeps growing from the last known oldest event) and the
 * reason is kept for --once's give-up message. */
static bool update_stats(obx_pipeline *p, bool force)
{
    int64_t now = obx_mono_us();
    if (!OBX_HAS_OP(p->sops, obx_store_ops, stats) || !p->store)
        return false;
    if (!force && now < p->next_stats_us)
        return p->stats_ok;
    p->next_stats_us = now + p->stats_interval_us;
    obx_store_stats st = {.struct_size = sizeof st, .lag_bytes = -1};
    char err[OBX_CORE_ERR_LEN] = "";
    if (p->sops->stats(p->store, &st, err, sizeof err) != OBX_OK) {
        ENGINE_LOG(p, OBX_LOG_DEBUG, "stats failed: %s", err);
        snprintf(p->stats_err, sizeof p->stats_err, "%s",
                 err[0] ? err : "stats failed");
        p->stats_ok = false;
        return false;
    }
    p->stats_ok = true;
    p->standby = st.standby != 0;
    atomic_store(&p->metrics.pending, (int_fast64_t)st.pending);
    atomic_store(&p->metrics.oldest_pending_us,
                 st.pending ? st.oldest_pending_us : 0);
    if (st.lag_bytes >= 0)
        obx_pmetrics_gauge(&p->metrics, "wal_slot_lag_bytes",
                           (double)st.lag_bytes);
    if (st.pending == 0)
        atomic_store(&p->metrics.last_progress_us, obx_mono_us());
    return true;
}

/* Claim into b (emptied first). The claim's status, err filled.
 * past_own: with the store's claim_ahead (never waits), while the other
 * batch is out at the broker; b is then routed against that batch's
 * releases (prepare_publish). */
static obx_status claim_into(obx_pipeline *p, obx_batch *b, int wait_ms,
                             bool past_own, char *err, size_t errlen)
{
    size_t n = 0, max = (size_t)p->set.batch_size;
    b->n_claimed = b->n_pub = 0;
    b->past_own = past_own;
    obx_status st = past_own ? p->sops->claim_ahead(p->store, b->claimed, max,
                                                    &n, err, errlen)
                             : p->sops->claim(p->store, b->claimed, max, &n,
                                              wait_ms, err, errlen);
    if (st == OBX_OK)
        b->n_claimed = n;
    return st;
}

/* Whether the store can claim past its own unsettled events. An ordered
 * store's claim would skip every key of the batch out at the broker
 * (with as many keys as a batch holds, everything); its claim_ahead
 * takes the events behind them. */
static bool claims_past_own(const obx_pipeline *p)
{
    return (p->sops->flags & OBX_STORE_ORDERED_CLAIM) &&
           OBX_HAS_OP(p->sops, obx_store_ops, claim_ahead);
}

/* A claim's failure: UNAVAILABLE opens the circuit (0), anything else
 * stops the pipeline (-1). */
static int claim_failed(obx_pipeline *p, obx_status st, const char *err)
{
    if (st == OBX_UNAVAILABLE) {
        circuit_trip(p, OBX_CIRCUIT_STORE, err);
        return 0;
    }
    ENGINE_LOG(p, OBX_LOG_ERROR, "claim failed (%s): %s", obx_status_name(st),
               err);
    return -1;
}

/* A batch to publish in x: the one claimed ahead by the last step, or a
 * claim now (waiting up to poll_interval for events, after settling what
 * the last step left). Returns how many were claimed, or -1 (fatal). */
static long claim_batch(obx_pipeline *p, obx_batch *x, obx_batch *y)
{
    if (x->n_claimed)
        return (long)x->n_claimed;
    if (settle_batch(p, y) != 0)
        return -1;
    char err[OBX_CORE_ERR_LEN] = "";
    int wait = (int)p->set.poll_interval_ms;
    /* Draining: a claim that finds nothing first lets the loop ask whether
     * the store is drained (then --once ends at once); only the next one
     * waits, and not long. A store without stats is drained at its first
     * empty claim, so that one waits. */
    if (p->once)
        wait = p->once_idle || !OBX_HAS_OP(p->sops, obx_store_ops, stats)
                   ? (wait < 50 ? wait : 50)
                   : 0;
    obx_status st = claim_into(p, x, wait, false, err, sizeof err);
    if (st != OBX_OK)
        return claim_failed(p, st, err);
    p->once_idle = x->n_claimed == 0;
    if (x->n_claimed == 0 &&
        (p->circuit.side == OBX_CIRCUIT_STORE || p->circuit.health_ok))
        circuit_close(p);
    return (long)x->n_claimed;
}

/* A claim ahead can find nothing (an ordered store without claim_ahead
 * when the backlog holds no events of keys outside the batch out at the
 * broker: as many keys as a batch holds, or fewer), and a store may pay
 * a pass over its backlog to find that out: sqlite took 130 ms for each
 * at 200,000 pending, against 12 ms for the batch out, and the drain
 * fell from 75k to 7k events/s. So after an empty claim ahead the next
 * 1, 2, 4, ... (at most OBX_AHEAD_BACKOFF_MAX) full batches go out
 * without one; a claim ahead that finds events ends the pause. Whether
 * one is due; counts the pause down. */
#define OBX_AHEAD_BACKOFF_MAX 256
static bool ahead_due(obx_pipeline *p)
{
    if (p->ahead_skip == 0)
        return true;
    p->ahead_skip--;
    return false;
}

static void ahead_claimed(obx_pipeline *p, size_t n)
{
    if (n > 0) {
        p->ahead_backoff = 0;
        return;
    }
    p->ahead_backoff = p->ahead_backoff ? 2 * p->ahead_backoff : 1;
    if (p->ahead_backoff > OBX_AHEAD_BACKOFF_MAX)
        p->ahead_backoff = OBX_AHEAD_BACKOFF_MAX;
    p->ahead_skip = p->ahead_backoff;
}

/* Whether to claim ahead while x, a full batch, is out. Not when x
 * handed events back as it was routed (behind an earlier event of their
 * key being released): a claim past x could take that earlier event,
 * whose batch the routing would then hand back behind x's, and so on
 * for as long as batches are full; the key would never go out. Without
 * a claim ahead x is settled in this step, and the next claim takes
 * the key's events in order. */
static bool ahead_wanted(obx_pipeline *p, const obx_batch *x, long n)
{
    bool on = p->set.claim_ahead == OBX_AHEAD_ON ||
              (p->set.claim_ahead == OBX_AHEAD_AUTO && claims_past_own(p));
    return on && n == p->set.batch_size && x->n_rels == 0 && !stopping(p) &&
           ahead_due(p);
}

/* One cycle. x (bs[cur]) is published; while it is out at the broker
 * (on the publisher thread, for a full batch) the pipeline thread settles
 * y, the batch before, and claims the next batch into y without waiting.
 * The store sees x's events still leased during that claim: an ordered
 * store's claim holds their keys back, its claim_ahead hands out the
 * events behind them, as an unordered store does. y is only routed, and
 * checked against the held keys and x's releases, in the next step,
 * after x's results are in: per-key order is kept across the overlap.
 * x's results are then settled in the next step while y is out, or now
 * when nothing was claimed ahead. Store ops stay on the pipeline thread;
 * the broker is used by one thread at a time. */
long obx_pipeline_step(obx_pipeline *p)
{
    obx_batch *x = &p->bs[p->cur], *y = &p->bs[p->cur ^ 1];
    long n = claim_batch(p, x, y);
    if (n <= 0)
        return n;
    /* Stopped while the claim waited: nothing new goes out after SIGTERM
     * (a publish begun now could outlast the shutdown grace); the loop
     * ends and settle_pending hands the batch back unpublished. */
    if (stopping(p))
        return 0;
    int64_t t0 = obx_mono_us();
    x->n_acks = x->n_rels = x->n_burs = x->n_dlq_acks = 0;
    bool out = p->broker && publish_prepare(p, x, y);
    if (!p->broker)
        release_all(x, x->claimed, x->n_claimed, "broker not connected");
    x->n_claimed = 0; /* from here on its events are in x's settle lists */
    bool async = out && ahead_wanted(p, x, n) && publisher_start(p, x) == 0;
    obx_status pst = OBX_OK;
    if (out && !async)
        pst = p->bops->publish(p->broker, x->pub, x->n_pub, x->results,
                               (int)p->set.publish_timeout_ms);
    int rc = settle_batch(p, y);
    obx_status ast = OBX_OK;
    char aerr[OBX_CORE_ERR_LEN] = "";
    if (async) {
        if (rc == 0 && !stopping(p)) {
            ast = claim_into(p, y, 0, claims_past_own(p), aerr, sizeof aerr);
            if (ast == OBX_OK)
                ahead_claimed(p, y->n_claimed);
        }
        pst = publisher_wait(p);
    }
    if (out)
        rc |= publish_done(p, x, pst);
    if (ast != OBX_OK)
        rc |= claim_failed(p, ast, aerr);
    if (y->n_claimed && (rc || p->circuit.open || stopping(p) || !p->broker))
        rc |= unclaim(p, y, "not attempted: the pipeline paused");
    if (y->n_claimed)
        p->cur ^= 1; /* y goes out next; x is settled meanwhile */
    else
        rc |= settle_batch(p, x);
    obx_hist_observe(&p->metrics.batch, obx_mono_us() - t0);
    return rc ? -1 : n;
}

static int reopen_broker(obx_pipeline *p)
{
    char err[OBX_CORE_ERR_LEN] = "";
    obx_status st = p->bops->open(&p->broker_host, p->broker_conf, &p->broker,
                                  err, sizeof err);
    if (st == OBX_OK) {
        atomic_store(&p->metrics.broker_up, 1);
        return 0;
    }
    p->broker = NULL;
    if (st == OBX_UNAVAILABLE) {
        circuit_trip(p, OBX_CIRCUIT_BROKER, err);
        return 0;
    }
    ENGINE_LOG(p, OBX_LOG_ERROR, "cannot open broker %s: %s",
               p->broker_pl->desc->name, err);
    return -1;
}

static int open_store(obx_pipeline *p)
{
    while (!stopping(p)) {
        char err[OBX_CORE_ERR_LEN] = "";
        obx_status st = p->sops->open(&p->store_host, p->store_conf, &p->store,
                                      err, sizeof err);
        if (st == OBX_OK) {
            atomic_store(&p->metrics.store_up, 1);
            return 0;
        }
        p->store = NULL;
        if (st != OBX_UNAVAILABLE) {
            ENGINE_LOG(p, OBX_LOG_ERROR, "cannot open store %s: %s",
                       p->store_pl->desc->name, err);
            return -1;
        }
        circuit_trip(p, OBX_CIRCUIT_STORE, err);
        if (once_expired(p))
            return -1; /* the run loop says why */
        sleep_until(p, p->circuit.next_probe_us);
    }
    return 0;
}

int obx_pipeline_open(obx_pipeline *p)
{
    p->last_progress_us = obx_mono_us();
    if (alloc_batch(p, &p->bs[0]) != 0 || alloc_batch(p, &p->bs[1]) != 0) {
        ENGINE_LOG(p, OBX_LOG_ERROR, "out of memory for batches of %lld",
                   (long long)p->set.batch_size);
        return -1;
    }
    /* Idempotent: what is open already stays as it is (a caller that
     * opened first and then runs must not leak the first instances). */
    if (!p->store && open_store(p) != 0)
        return -1;
    if (stopping(p) || p->broker)
        return 0;
    return reopen_broker(p);
}

/* --once is done when a claim found nothing and the store has nothing
 * pending (retries that are not yet due still count as pending). A store
 * that cannot say is not drained: the run gives up after once_timeout. */
static bool drained(obx_pipeline *p)
{
    if (!OBX_HAS_OP(p->sops, obx_store_ops, stats))
        return true;
    return update_stats(p, true) && atomic_load(&p->metrics.pending) == 0;
}

/* Why --once stops without having drained the store, or NULL to go on. */
static const char *once_blocker(obx_pipeline *p, char *buf, size_t len)
{
    if (!once_expired(p))
        return NULL;
    int64_t pend = atomic_load(&p->metrics.pending);
    if (p->circuit.open)
        snprintf(buf, len, "%s", p->circuit.reason);
    else if (!p->stats_ok && OBX_HAS_OP(p->sops, obx_store_ops, stats))
        snprintf(buf, len, "the store cannot report what is pending: %s",
                 p->stats_err[0] ? p->stats_err : "store not open");
    else
        snprintf(buf, len,
                 "%lld event%s still pending that this relay could not "
                 "claim (held by another relay, or waiting for a retry)",
                 (long long)pend, pend == 1 ? "" : "s");
    return buf;
}

/* --once: give up loudly rather than run forever. */
static int once_give_up(obx_pipeline *p, const char *why)
{
    ENGINE_LOG(p, OBX_LOG_ERROR,
               "--once gave up after %.0fs without "
               "progress: %s",
               (double)(obx_mono_us() - p->last_progress_us) / 1e6, why);
    return 1;
}

/* Settle what a step left: results of the last batch, and a batch
 * claimed ahead (handed back unpublished). */
static void settle_pending(obx_pipeline *p)
{
    if (!p->store)
        return;
    for (int i = 0; i < 2; i++) {
        obx_batch *b = &p->bs[p->cur ^ 1 ^ i];
        if (b->claimed)
            unclaim(p, b, "not attempted: the relay is stopping");
    }
}

void obx_pipeline_close(obx_pipeline *p)
{
    publisher_stop(p);
    settle_pending(p);
    if (p->broker) {
        if (OBX_HAS_OP(p->bops, obx_broker_ops, flush))
            p->bops->flush(p->broker, (int)p->set.publish_timeout_ms);
        p->bops->close(p->broker);
        p->broker = NULL;
    }
    if (p->store) {
        p->sops->close(p->store);
        p->store = NULL;
    }
}

long obx_pipeline_tick(obx_pipeline *p)
{
    beat(p);
    if (!circuit_allows(p))
        return 0;
    if (!p->broker && reopen_broker(p) != 0)
        return -1;
    if (p->store && p->broker)
        atomic_store(&p->opened, 1);
    update_stats(p, false);
    return obx_pipeline_step(p);
}

int obx_pipeline_run(obx_pipeline *p)
{
    char why[OBX_CORE_ERR_LEN + 64];
    if (obx_pipeline_open(p) != 0) {
        if (once_expired(p))
            once_give_up(p, p->circuit.reason);
        obx_pipeline_close(p);
        return 1;
    }
    ENGINE_LOG(p, OBX_LOG_INFO, "running: store %s -> broker %s%s",
               p->store_pl->desc->name, p->broker_pl->desc->name,
               p->once ? " (once)" : "");
    int rc = 0;
    while (!stopping(p)) {
        long n = obx_pipeline_tick(p);
        if (n < 0) {
            rc = 1;
            break;
        }
        if (!p->once || stopping(p))
            continue;
        bool done = n == 0 && !p->circuit.open && drained(p);
        if (n == 0 && p->standby) {
            ENGINE_LOG(p, OBX_LOG_ERROR,
                       "--once did nothing: another relay holds what this "
                       "store needs exclusively (its WAL slot), so this "
                       "instance is a hot standby");
            rc = 1;
            break;
        }
        if (done)
            break;
        if (once_blocker(p, why, sizeof why)) {
            rc = once_give_up(p, why);
            break;
        }
    }
    update_stats(p, true);
    obx_pipeline_close(p);
    ENGINE_LOG(p, rc ? OBX_LOG_ERROR : OBX_LOG_INFO, "stopped%s",
               rc ? " after a fatal error" : "");
    return rc;
}

int obx_pipeline_prepare(obx_pipeline *p)
{
    obx_keyset_init(&p->held);
    obx_keyset_init(&p->failed);
    obx_keyset_init(&p->returning);
    pthread_mutex_init(&p->pub.mu, NULL);
    pthread_cond_init(&p->pub.cv, NULL);
    obx_rng_seed(&p->rng, (uint64_t)obx_mono_us() ^ (uint64_t)(uintptr_t)p);
    obx_pmetrics_init(&p->metrics, p->name);
    atomic_store(&p->metrics.last_progress_us, obx_mono_us());
    if (p->stats_interval_us == 0)
        p->stats_interval_us = 5 * 1000000;
    snprintf(p->component, sizeof p->component, "%s", p->name);
    p->retry_log.burst = 10;
    return 0;
}

static void free_batch(obx_batch *b)
{
    free(b->claimed);
    free(b->pub);
    free(b->results);
    free(b->dest_buf);
    free(b->dest_off);
    free(b->acks);
    free(b->rels);
    free(b->burs);
    free(b->reasons);
    memset(b, 0, sizeof *b);
}

void obx_pipeline_release(obx_pipeline *p)
{
    publisher_stop(p);
    free_batch(&p->bs[0]);
    free_batch(&p->bs[1]);
    pthread_cond_destroy(&p->pub.cv);
    pthread_mutex_destroy(&p->pub.mu);
    obx_keyset_free(&p->held);
    obx_keyset_free(&p->failed);
    obx_keyset_free(&p->returning);
    obx_pmetrics_destroy(&p->metrics);
}
