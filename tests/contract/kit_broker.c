/* The broker contract suite (broker.h), run against one plugin through
 * its harness: every result filled, OK only for what arrived, "not
 * attempted" after a key fails, UNAVAILABLE while the backend is down. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit.h"

#define KB_N 6
/* Not an obx_status: a result still holding it was never written. */
#define KB_UNFILLED ((obx_status)0x7eadbeef)

typedef struct kb {
    const obx_contract_broker_harness *h;
    kit_plugin kp;
    const obx_broker_ops *ops;
    void *conf;
    /* one batch: ids, keys, payloads the events point into */
    char id[KB_N][64], key[KB_N][16], pl[KB_N][64];
    obx_event ev[KB_N];
    obx_event *evp[KB_N];
    obx_result res[KB_N];
} kb;

static int kb_setup(void **state)
{
    kb *k = *state;
    KIT_ERR;
    if (k->h->setup(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness setup: %s", err);
    return 0;
}

static int kb_teardown(void **state)
{
    kb *k = *state;
    kit_conf_free(&k->kp, k->conf);
    k->conf = NULL;
    if (k->h->teardown)
        k->h->teardown(k->h->ctx);
    return 0;
}

static void *kb_open(kb *k)
{
    KIT_ERR;
    char text[4096] = "";
    if (k->h->config(k->h->ctx, text, sizeof text, err, sizeof err) != 0)
        fail_msg("harness config: %s", err);
    kit_conf_free(&k->kp, k->conf);
    k->conf = kit_conf(&k->kp, "broker.", text);
    void *inst = NULL;
    obx_status st = k->ops->open(k->kp.host, k->conf, &inst, err, sizeof err);
    if (st != OBX_OK)
        fail_msg("open: %s: %s", obx_status_name(st), err);
    return inst;
}

/* A batch of n events: keys[i], ids unique to the run. */
static void kb_batch(kb *k, const char *tag, const char *const *keys, size_t n)
{
    static unsigned serial;
    const char *dest = k->h->destination(k->h->ctx);
    if (!dest || !*dest)
        fail_msg("harness destination is empty");
    unsigned run = (unsigned)(kit_now_us() % 1000000) * 100 + (serial++ % 100);
    for (size_t i = 0; i < n; i++) {
        snprintf(k->id[i], sizeof k->id[i], "contract-%u-%s-%zu", run, tag, i);
        snprintf(k->key[i], sizeof k->key[i], "%s", keys[i]);
        snprintf(k->pl[i], sizeof k->pl[i], "{\"check\":\"%s\",\"n\":%zu}", tag,
                 i);
        k->ev[i] = (obx_event){
            .event_id = k->id[i],
            .key = k->key[i],
            .event_type = "ContractChecked",
            .aggregate_type = "contract",
            .aggregate_id = k->key[i],
            .payload = k->pl[i],
            .payload_len = strlen(k->pl[i]),
            .created_at_us = kit_now_us(),
            .destination = dest,
        };
        k->evp[i] = &k->ev[i];
    }
}

/* publish() with every result prefilled with a value no plugin writes. */
static obx_status kb_publish(kb *k, void *inst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        k->res[i].status = KB_UNFILLED;
        memset(k->res[i].errstr, 0x01, sizeof k->res[i].errstr);
    }
    int tmo = k->h->timeout_ms > 0 ? k->h->timeout_ms : 5000;
    return k->ops->publish(inst, k->evp, n, k->res, tmo);
}

static bool kb_status_valid(obx_status st)
{
    return (unsigned)st <= (unsigned)OBX_NOT_FOUND;
}

/* After an OK publish: every result a real status with a terminated
 * errstr. */
static void kb_assert_filled(kb *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (k->res[i].status == KB_UNFILLED)
            fail_msg("result %zu (%s) left unfilled", i, k->id[i]);
        if (!kb_status_valid(k->res[i].status))
            fail_msg("result %zu: %d is not an obx_status", i,
                     (int)k->res[i].status);
        if (!memchr(k->res[i].errstr, '\0', sizeof k->res[i].errstr))
            fail_msg("result %zu: errstr not NUL-terminated", i);
    }
}

/* What arrived at the destination since setup; waits for `want`. */
static size_t kb_read(kb *k, size_t want, int wait_ms, obx_contract_msg *out,
                      size_t max)
{
    KIT_ERR;
    size_t n = 0;
    if (k->h->read_back(k->h->ctx, want, wait_ms, out, max, &n, err,
                        sizeof err) != 0)
        fail_msg("harness read_back: %s", err);
    return n;
}

/* How often id arrived; its payload (and key, when carried) as sent. */
static int kb_arrived(kb *k, const obx_contract_msg *m, size_t n, size_t i)
{
    int c = 0;
    for (size_t j = 0; j < n; j++) {
        if (strcmp(m[j].event_id, k->id[i]) != 0)
            continue;
        c++;
        if (strcmp(m[j].payload, k->pl[i]) != 0)
            fail_msg("%s arrived with payload '%s', sent '%s'", k->id[i],
                     m[j].payload, k->pl[i]);
        if (m[j].key[0] && strcmp(m[j].key, k->key[i]) != 0)
            fail_msg("%s arrived with key '%s', sent '%s'", k->id[i], m[j].key,
                     k->key[i]);
    }
    return c;
}

/* Events of one key arrived in array order. `failed` (or -1): the event
 * made to fail, which must not arrive, while the later ones of its key may
 * (check_not_attempted): it is left out of the pairs. */
static void kb_assert_key_order(kb *k, const obx_contract_msg *m, size_t n,
                                size_t nev, long failed)
{
    for (size_t a = 0; a < nev; a++)
        for (size_t b = a + 1; b < nev; b++) {
            if (strcmp(k->key[a], k->key[b]) != 0 || (long)a == failed)
                continue;
            long pa = -1, pb = -1;
            for (size_t j = 0; j < n; j++) {
                if (strcmp(m[j].event_id, k->id[a]) == 0 && pa < 0)
                    pa = (long)j;
                if (strcmp(m[j].event_id, k->id[b]) == 0 && pb < 0)
                    pb = (long)j;
            }
            if (pa >= 0 && pb >= 0 && pb < pa)
                fail_msg("%s arrived before %s (same key, sent after)",
                         k->id[b], k->id[a]);
            if (pb >= 0 && pa < 0)
                fail_msg("%s arrived without %s before it (same key)", k->id[b],
                         k->id[a]);
        }
}

/* ---- checks ---- */

/* A batch over three keys: publish OK, every result filled with OK, and
 * each event arrived exactly once, as sent, in key order. */
static void check_results_filled(void **state)
{
    kb *k = *state;
    void *b = kb_open(k);
    const char *keys[KB_N] = {"A", "B", "A", "C", "A", "B"};
    kb_batch(k, "filled", keys, KB_N);
    obx_status st = kb_publish(k, b, KB_N);
    if (st != OBX_OK)
        fail_msg("publish: %s (%.200s)", obx_status_name(st), k->res[0].errstr);
    kb_assert_filled(k, KB_N);
    for (size_t i = 0; i < KB_N; i++)
        if (k->res[i].status != OBX_OK)
            fail_msg("result %zu: %s (%s)", i,
                     obx_status_name(k->res[i].status), k->res[i].errstr);
    obx_contract_msg m[32];
    size_t n = kb_read(k, KB_N, 10000, m, 32);
    for (size_t i = 0; i < KB_N; i++) {
        int c = kb_arrived(k, m, n, i);
        if (c != 1)
            fail_msg("%s acknowledged OK but arrived %d times", k->id[i], c);
    }
    kb_assert_key_order(k, m, n, KB_N, -1);
    if (k->ops->flush)
        k->ops->flush(b, 1000);
    k->ops->close(b);
}

/* One event made to fail (harness poison): its result is not OK and it
 * did not arrive; the later events of its key either did not arrive and
 * say "not attempted" (OBX_RETRY), or arrived and say OK; other keys
 * arrive OK. */
static void check_not_attempted(void **state)
{
    kb *k = *state;
    if (!k->h->poison)
        fail_msg("no poison callback: declare not_attempted not applicable");
    void *b = kb_open(k);
    const char *keys[KB_N] = {"A", "B", "A", "A", "B", "C"};
    kb_batch(k, "poison", keys, KB_N);
    KIT_ERR;
    if (k->h->poison(k->h->ctx, &k->ev[2], err, sizeof err) != 0)
        fail_msg("harness poison: %s", err);
    obx_status st = kb_publish(k, b, KB_N);
    if (st != OBX_OK)
        fail_msg("publish: %s (%.200s): one bad event is not an outage",
                 obx_status_name(st), k->res[0].errstr);
    kb_assert_filled(k, KB_N);
    if (k->res[2].status == OBX_OK)
        fail_msg("the poisoned event was confirmed OK");
    if (!k->res[2].errstr[0])
        fail_msg("the poisoned event failed without a reason");
    obx_contract_msg m[32];
    /* wait for the events that must arrive: A1, B*, C */
    size_t n = kb_read(k, 4, 10000, m, 32);
    size_t late = 0;
    for (size_t i = 0; i < KB_N; i++)
        late += k->res[i].status == OBX_OK;
    if (late > 4)
        n = kb_read(k, late, 5000, m, 32);
    if (kb_arrived(k, m, n, 2) != 0)
        fail_msg("the poisoned event arrived");
    for (size_t i = 0; i < KB_N; i++) {
        if (i == 2)
            continue;
        int c = kb_arrived(k, m, n, i);
        bool same_key_late = strcmp(k->key[i], "A") == 0 && i > 2;
        if (k->res[i].status == OBX_OK) {
            if (c != 1)
                fail_msg("%s: OK but arrived %d times", k->id[i], c);
        } else if (!same_key_late) {
            fail_msg("%s (key %s, not behind the failure): %s (%s)", k->id[i],
                     k->key[i], obx_status_name(k->res[i].status),
                     k->res[i].errstr);
        } else {
            if (k->res[i].status != OBX_RETRY ||
                !strstr(k->res[i].errstr, "not attempted"))
                fail_msg("%s behind the failure of its key: %s '%s', "
                         "expected retry \"not attempted\"",
                         k->id[i], obx_status_name(k->res[i].status),
                         k->res[i].errstr);
            if (c != 0)
                fail_msg("%s: \"not attempted\" but it arrived", k->id[i]);
        }
    }
    kb_assert_key_order(k, m, n, KB_N, 2);
    if (k->ops->flush)
        k->ops->flush(b, 1000);
    k->ops->close(b);
}

/* With the backend down: publish returns UNAVAILABLE (or a batch of
 * results none of which is OK) with a reason in results[0].errstr,
 * health (when there) is not OK, and nothing arrives twice; once it is
 * back the same instance publishes again. */
static void check_unavailable(void **state)
{
    kb *k = *state;
    if (!k->h->backend_stop || !k->h->backend_start)
        fail_msg("no backend_stop/backend_start: declare unavailable not "
                 "applicable");
    void *b = kb_open(k);
    const char *keys[2] = {"A", "B"};
    KIT_ERR;
    if (k->h->backend_stop(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness backend_stop: %s", err);
    kb_batch(k, "down", keys, 2);
    obx_status st = kb_publish(k, b, 2);
    if (st != OBX_UNAVAILABLE)
        fail_msg("publish with the backend down: %s (%s), expected "
                 "unavailable",
                 obx_status_name(st),
                 k->res[0].status == KB_UNFILLED ? "" : k->res[0].errstr);
    if (k->res[0].status == KB_UNFILLED ||
        !memchr(k->res[0].errstr, '\0', sizeof k->res[0].errstr) ||
        !k->res[0].errstr[0])
        fail_msg("UNAVAILABLE without a reason in results[0].errstr");
    if (k->ops->health) {
        char herr[OBX_ERRSTR_LEN] = "";
        obx_status hs = k->ops->health(b, herr, sizeof herr);
        if (hs == OBX_OK)
            fail_msg("health OK with the backend down");
    }
    char down_ids[2][64];
    memcpy(down_ids, k->id, sizeof down_ids);
    if (k->h->backend_start(k->h->ctx, err, sizeof err) != 0)
        fail_msg("harness backend_start: %s", err);
    /* the engine keeps the instance and probes: so does the kit */
    int64_t end = kit_mono_ms() + 30000;
    do {
        kb_batch(k, "back", keys, 2);
        st = kb_publish(k, b, 2);
        if (st == OBX_OK) {
            kb_assert_filled(k, 2);
            if (k->res[0].status != OBX_OK || k->res[1].status != OBX_OK)
                st = OBX_UNAVAILABLE; /* still reconnecting */
        }
        if (st != OBX_OK)
            kit_sleep_ms(200);
    } while (st != OBX_OK && kit_mono_ms() < end);
    if (st != OBX_OK)
        fail_msg("publish still failing 30 s after the backend came back: "
                 "%s",
                 k->res[0].errstr);
    obx_contract_msg m[32];
    size_t n = kb_read(k, 2, 10000, m, 32);
    for (size_t i = 0; i < 2; i++)
        if (kb_arrived(k, m, n, i) != 1)
            fail_msg("%s: OK after the outage but did not arrive once",
                     k->id[i]);
    /* UNAVAILABLE promises no confirmation, not that nothing was sent:
     * a message handed to the client library before it noticed the
     * outage may be stored once the link is back (nats: "sent, no PubAck:
     * it may have been stored"), and the engine's retry carries the same
     * event id (broker.h: only OK is a promise). More than once is a
     * duplicate the plugin made itself. */
    for (int i = 0; i < 2; i++) {
        int c = 0;
        for (size_t j = 0; j < n; j++)
            c += strcmp(m[j].event_id, down_ids[i]) == 0;
        if (c > 1)
            fail_msg("%s arrived %d times though publish said unavailable",
                     down_ids[i], c);
    }
    if (k->ops->flush)
        k->ops->flush(b, 1000);
    k->ops->close(b);
}

/* OK means confirmed: after a publish, every OK event can be read back at
 * once (no flush, no close in between) and nothing arrives twice. */
static void check_ok_after_confirm(void **state)
{
    kb *k = *state;
    void *b = kb_open(k);
    const char *keys[KB_N] = {"A", "A", "A", "B", "B", "C"};
    for (int round = 0; round < 3; round++) {
        char tag[16];
        snprintf(tag, sizeof tag, "confirm%d", round);
        kb_batch(k, tag, keys, KB_N);
        obx_status st = kb_publish(k, b, KB_N);
        if (st != OBX_OK)
            fail_msg("publish: %s (%.200s)", obx_status_name(st),
                     k->res[0].errstr);
        kb_assert_filled(k, KB_N);
        obx_contract_msg m[64];
        size_t n = kb_read(k, (size_t)(round + 1) * KB_N, 10000, m, 64);
        for (size_t i = 0; i < KB_N; i++) {
            if (k->res[i].status != OBX_OK)
                fail_msg("result %zu: %s (%s)", i,
                         obx_status_name(k->res[i].status), k->res[i].errstr);
            if (kb_arrived(k, m, n, i) != 1)
                fail_msg("%s confirmed OK but not readable once at the "
                         "broker",
                         k->id[i]);
        }
        kb_assert_key_order(k, m, n, KB_N, -1);
    }
    k->ops->close(b);
}

static const char *const broker_checks[] = {
    "results_filled", "not_attempted", "unavailable", "ok_after_confirm", NULL};

int obx_contract_broker_run(const obx_contract_broker_harness *h)
{
    char group[160];
    snprintf(group, sizeof group, "contract_broker(%s)",
             h && h->name ? h->name : "?");
    if (!h ||
        h->struct_size < offsetof(obx_contract_broker_harness, not_applicable) +
                             sizeof h->not_applicable ||
        !h->setup || !h->config || !h->destination || !h->read_back) {
        printf("[  ERROR   ] %s: harness without struct_size, setup, config, "
               "destination or read_back\n",
               group);
        return 1;
    }
    int bad = kit_na_valid(h->not_applicable, broker_checks, group);
    kb *k = calloc(1, sizeof *k);
    KIT_ERR;
    if (!k || kit_load(&k->kp, OBX_PLUGIN_BROKER, h->plugin, h->plugin_dir, err,
                       sizeof err) != 0) {
        printf("[  ERROR   ] %s: %s\n", group, err);
        free(k);
        return bad + 1;
    }
    k->h = h;
    k->ops = k->kp.desc->ops;
    const obx_contract_na *na = h->not_applicable;
    kit_check checks[] = {
        {"results_filled", check_results_filled, kit_na(na, "results_filled")},
        {"not_attempted", check_not_attempted, kit_na(na, "not_attempted")},
        {"unavailable", check_unavailable, kit_na(na, "unavailable")},
        {"ok_after_confirm", check_ok_after_confirm,
         kit_na(na, "ok_after_confirm")},
    };
    int failed = kit_run(group, checks, sizeof checks / sizeof checks[0],
                         kb_setup, kb_teardown, k);
    kit_unload(&k->kp);
    free(k);
    return failed + bad;
}
