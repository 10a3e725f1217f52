/* demo, stats and dead: operator commands that talk to a pipeline's store
 * directly, without running the relay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include <outbox/abi.h>
#include "cli.h"
#include "escape.h"

int obx_cli_open_store(obx_cli *c, obx_relay *r, obx_pipeline **pp)
{
    obx_pipeline *p = obx_relay_pipeline(r, c->pipeline);
    if (!p) {
        obx_eprintf(stderr, "outbox-relay: no pipeline '%s' in %s\n",
                    c->pipeline, r->conf.path);
        return OBX_EXIT_USAGE;
    }
    char err[OBX_CORE_ERR_LEN] = "";
    if (p->sops->open(&p->store_host, p->store_conf, &p->store, err,
                      sizeof err) != OBX_OK) {
        obx_eprintf(stderr,
                    "outbox-relay: [pipeline %s] cannot open store %s: "
                    "%s\n",
                    p->name, p->store_pl->desc->name, err);
        p->store = NULL;
        return OBX_EXIT_RUNTIME;
    }
    *pp = p;
    return 0;
}

static void close_store(obx_pipeline *p)
{
    if (p && p->store) {
        p->sops->close(p->store);
        p->store = NULL;
    }
}

#define NEED_OP(p, op, what)                                                   \
    if (!OBX_HAS_OP((p)->sops, obx_store_ops, op)) {                           \
        obx_eprintf(stderr, "outbox-relay: store %s does not support %s\n",    \
                    (p)->store_pl->desc->name, what);                          \
        rc = OBX_EXIT_USAGE;                                                   \
        goto out;                                                              \
    }

int obx_cmd_demo(obx_cli *c)
{
    if (c->count < 0) {
        obx_eprintf(stderr, "usage: outbox-relay demo -c FILE -n N\n");
        return OBX_EXIT_USAGE;
    }
    obx_relay r;
    obx_pipeline *p = NULL;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    if ((rc = obx_cli_open_store(c, &r, &p)) != 0)
        goto out;
    NEED_OP(p, demo, "demo");
    char err[OBX_CORE_ERR_LEN] = "";
    if (p->sops->demo(p->store, (uint64_t)c->count, err, sizeof err) !=
        OBX_OK) {
        obx_eprintf(stderr, "outbox-relay demo: %s\n", err);
        rc = OBX_EXIT_RUNTIME;
        goto out;
    }
    printf("wrote %lld orders, each with its OrderCreated event in the same "
           "transaction (pipeline %s, store %s)\n",
           c->count, p->name, p->store_pl->desc->name);
out:
    close_store(p);
    obx_relay_free(&r);
    return rc;
}

/* stats --json: {"pipelines":[{"pipeline","store","pending"|"held",...}]} */
static json_t *stats_json(const obx_pipeline *p, const obx_store_stats *st,
                          const char *err)
{
    json_t *o = json_object();
    json_object_set_new(o, "pipeline", json_string(p->name));
    json_object_set_new(o, "store", json_string(p->store_pl->desc->name));
    if (err) {
        json_object_set_new(o, "error", json_string(err));
        return o;
    }
    bool wal = st->lag_bytes >= 0;
    double age = st->oldest_pending_us
                     ? (double)(obx_now_us() - st->oldest_pending_us) / 1e6
                     : 0;
    json_object_set_new(o, wal ? "held" : "pending",
                        json_integer((json_int_t)st->pending));
    json_object_set_new(o, "oldest_pending_seconds", json_real(age));
    json_object_set_new(o, "dead", json_integer((json_int_t)st->dead));
    json_object_set_new(o, "lag_bytes",
                        wal ? json_integer(st->lag_bytes) : json_null());
    json_object_set_new(o, "standby", json_boolean(st->standby));
    return o;
}

static void print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(doc);
}

int obx_cmd_stats(obx_cli *c)
{
    obx_relay r;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    json_t *all = c->json ? json_array() : NULL;
    for (size_t i = 0; i < r.n_pipelines && (rc == 0 || c->json); i++) {
        obx_cli sub = *c;
        sub.pipeline = r.pipelines[i]->name;
        obx_pipeline *p = NULL;
        if ((rc = obx_cli_open_store(&sub, &r, &p)) != 0)
            break;
        obx_store_stats st = {.struct_size = sizeof st, .lag_bytes = -1};
        char err[OBX_CORE_ERR_LEN] = "";
        bool ok = OBX_HAS_OP(p->sops, obx_store_ops, stats) &&
                  p->sops->stats(p->store, &st, err, sizeof err) == OBX_OK;
        if (!ok)
            rc = OBX_EXIT_RUNTIME;
        if (all) {
            json_array_append_new(
                all,
                stats_json(p, &st, ok ? NULL : (err[0] ? err : "no stats")));
        } else if (!ok) {
            obx_eprintf(stderr, "[pipeline %s] stats unavailable: %s\n",
                        p->name, err);
        } else {
            double age =
                st.oldest_pending_us
                    ? (double)(obx_now_us() - st.oldest_pending_us) / 1e6
                    : 0;
            /* A WAL store (lag_bytes set) cannot count what it has not
             * read: it reports the events it holds and the bytes its slot
             * is behind, and says so. */
            bool wal = st.lag_bytes >= 0;
            printf("[pipeline %s] %s %llu, oldest %.1fs, dead %llu", p->name,
                   wal ? "held" : "pending", (unsigned long long)st.pending,
                   age, (unsigned long long)st.dead);
            if (wal)
                printf(", behind %lld bytes", (long long)st.lag_bytes);
            if (st.standby)
                printf(", standby (another relay holds the slot)");
            printf("\n");
        }
        close_store(p);
    }
    if (all) {
        json_t *doc = json_object();
        json_object_set_new(doc, "pipelines", all);
        print_json(doc);
    }
    obx_relay_free(&r);
    return rc;
}

static void fmt_time(int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* n bytes of s (NUL bytes included) made safe for a terminal, on the
 * heap (NULL only when out of memory): a dead letter's fields are event
 * data, and a control byte in them (an escape sequence) would drive the
 * terminal. Newlines come out as \x0a too, so a field cannot fake a row
 * or a field of its own. */
static char *shown_n(const char *s, size_t n)
{
    char *copy = malloc(n + 1), *out = NULL;
    size_t len = 0;
    FILE *mem = copy ? open_memstream(&out, &len) : NULL;
    if (!mem) {
        free(copy);
        return NULL;
    }
    memcpy(copy, s ? s : "", s ? n : 0);
    copy[s ? n : 0] = '\0';
    for (size_t i = 0; s && i < n;) {
        obx_put_text_escaped(mem, copy + i, false);
        i += strlen(copy + i);
        if (i < n) {
            fputs("\\x00", mem);
            i++;
        }
    }
    free(copy);
    if (fclose(mem) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static char *shown(const char *s)
{
    return shown_n(s, s ? strlen(s) : 0);
}

/* "?" for a field shown_n could not make (out of memory). */
#define SHOWN(s) ((s) ? (s) : "?")

static int print_row(void *ctx, const obx_dead_letter *d)
{
    (void)ctx;
    char when[32];
    fmt_time(d->dead_at_us, when, sizeof when);
    char *f[] = {shown(d->event->event_id), shown(d->event->key),
                 shown(d->event->event_type), shown(d->reason)};
    printf("%-36s  %-16s  %-20s  %3u  %s  %.80s\n", SHOWN(f[0]), SHOWN(f[1]),
           SHOWN(f[2]), d->event->attempts, when, SHOWN(f[3]));
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    return 0;
}

static int print_full(void *ctx, const obx_dead_letter *d)
{
    int *found = ctx;
    const obx_event *e = d->event;
    char when[32], made[32];
    fmt_time(d->dead_at_us, when, sizeof when);
    fmt_time(e->created_at_us, made, sizeof made);
    char *f[] = {shown(e->event_id),       shown(e->key),
                 shown(e->aggregate_type), shown(e->aggregate_id),
                 shown(e->event_type),     shown(e->topic),
                 shown(d->destination),    shown(d->reason)};
    printf("event_id:       %s\nkey:            %s\naggregate_type: %s\n"
           "aggregate_id:   %s\nevent_type:     %s\ntopic:          %s\n"
           "destination:    %s\ncreated_at:     %s\ndead_at:        %s\n"
           "attempts:       %u\nreason:         %s\n",
           SHOWN(f[0]), SHOWN(f[1]), SHOWN(f[2]), SHOWN(f[3]), SHOWN(f[4]),
           SHOWN(f[5]), SHOWN(f[6]), made, when, e->attempts, SHOWN(f[7]));
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    for (size_t i = 0; i < e->n_headers; i++) {
        char *name = shown(e->headers[i].name);
        char *value = shown(e->headers[i].value);
        printf("header:         %s: %s\n", SHOWN(name), SHOWN(value));
        free(name);
        free(value);
    }
    char *payload = shown_n((const char *)e->payload, e->payload_len);
    printf("payload:        %s\n", SHOWN(payload));
    free(payload);
    (*found)++;
    return 0;
}

/* RFC 4648 base64 of n bytes (heap), for payloads that are not UTF-8. */
static char *base64(const unsigned char *in, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* dead list|show --json: one object per dead letter; the payload is its
 * text when it is UTF-8, else base64 in payload_base64. */
static int json_row(void *ctx, const obx_dead_letter *d)
{
    json_t *arr = ctx;
    const obx_event *e = d->event;
    char when[32], made[32];
    fmt_time(d->dead_at_us, when, sizeof when);
    fmt_time(e->created_at_us, made, sizeof made);
    json_t *o = json_object();
    json_object_set_new(o, "event_id", json_string(e->event_id));
    json_object_set_new(o, "key", e->key ? json_string(e->key) : json_null());
    json_object_set_new(o, "aggregate_type", json_string(e->aggregate_type));
    json_object_set_new(o, "aggregate_id", json_string(e->aggregate_id));
    json_object_set_new(o, "event_type", json_string(e->event_type));
    json_object_set_new(o, "topic",
                        e->topic ? json_string(e->topic) : json_null());
    json_object_set_new(o, "destination",
                        d->destination ? json_string(d->destination)
                                       : json_null());
    json_object_set_new(o, "created_at", json_string(made));
    json_object_set_new(o, "dead_at", json_string(when));
    json_object_set_new(o, "attempts", json_integer(e->attempts));
    json_object_set_new(o, "reason", json_string(d->reason ? d->reason : ""));
    json_t *h = json_object();
    for (size_t i = 0; i < e->n_headers; i++)
        json_object_set_new(h, e->headers[i].name,
                            json_string(e->headers[i].value));
    json_object_set_new(o, "headers", h);
    json_t *pl = json_stringn(e->payload, e->payload_len);
    if (pl) {
        json_object_set_new(o, "payload", pl);
    } else {
        char *b = base64(e->payload, e->payload_len);
        json_object_set_new(o, "payload_base64",
                            b ? json_string(b) : json_null());
        free(b);
    }
    json_array_append_new(arr, o);
    return 0;
}

static int dead_list_json(obx_pipeline *p, const char *id)
{
    char err[OBX_CORE_ERR_LEN] = "";
    json_t *arr = json_array();
    obx_status st =
        p->sops->dead_list(p->store, id, json_row, arr, err, sizeof err);
    if (st != OBX_OK) {
        json_decref(arr);
        obx_eprintf(stderr, "outbox-relay dead: %s\n",
                    st == OBX_NOT_FOUND && !err[0] ? "no such dead letter"
                                                   : err);
        return OBX_EXIT_RUNTIME;
    }
    bool missing = id && json_array_size(arr) == 0;
    json_t *doc = json_object();
    json_object_set_new(doc, "pipeline", json_string(p->name));
    json_object_set_new(doc, "dead_letters", arr);
    print_json(doc);
    return missing ? OBX_EXIT_RUNTIME : OBX_EXIT_OK;
}

static int dead_list(obx_pipeline *p, const char *id, bool json)
{
    if (json)
        return dead_list_json(p, id);
    char err[OBX_CORE_ERR_LEN] = "";
    int found = 0;
    obx_status st;
    if (id)
        st = p->sops->dead_list(p->store, id, print_full, &found, err,
                                sizeof err);
    else {
        printf("%-36s  %-16s  %-20s  %3s  %-20s  %s\n", "EVENT_ID", "KEY",
               "EVENT_TYPE", "ATT", "DEAD_AT", "REASON");
        st = p->sops->dead_list(p->store, NULL, print_row, NULL, err,
                                sizeof err);
    }
    /* an unknown id: OBX_NOT_FOUND (store.h); a store built before 1.2
     * may instead return OK without calling back */
    if (st != OBX_OK) {
        obx_eprintf(stderr, "outbox-relay dead: %s\n",
                    st == OBX_NOT_FOUND && !err[0] ? "no such dead letter"
                                                   : err);
        return OBX_EXIT_RUNTIME;
    }
    if (id && !found) {
        obx_eprintf(stderr, "outbox-relay dead show: no dead letter '%s'\n",
                    id);
        return OBX_EXIT_RUNTIME;
    }
    return OBX_EXIT_OK;
}

static int dead_change(obx_cli *c, obx_pipeline *p, const char *verb)
{
    const char *id = c->nargs >= 2 ? c->args[1] : NULL;
    if (!id && !c->all) {
        obx_eprintf(stderr, "usage: outbox-relay dead %s ID|--all -c FILE\n",
                    verb);
        return OBX_EXIT_USAGE;
    }
    char err[OBX_CORE_ERR_LEN] = "";
    uint64_t n = 0;
    bool requeue = strcmp(verb, "requeue") == 0;
    obx_status st =
        requeue ? p->sops->dead_requeue(p->store, id, &n, err, sizeof err)
                : p->sops->dead_purge(p->store, id, &n, err, sizeof err);
    if (st != OBX_OK) {
        obx_eprintf(stderr, "outbox-relay dead %s: %s\n", verb,
                    st == OBX_NOT_FOUND && !err[0] ? "no such dead letter"
                                                   : err);
        return OBX_EXIT_RUNTIME;
    }
    printf("%s %llu dead letter%s\n", requeue ? "requeued" : "purged",
           (unsigned long long)n, n == 1 ? "" : "s");
    return OBX_EXIT_OK;
}

int obx_cmd_dead(obx_cli *c)
{
    const char *verb = c->nargs ? c->args[0] : "";
    bool list = !strcmp(verb, "list"), show = !strcmp(verb, "show");
    if (!list && !show && strcmp(verb, "requeue") && strcmp(verb, "purge")) {
        obx_eprintf(stderr, "usage: outbox-relay dead list|show ID|requeue "
                            "ID|--all|purge ID|--all -c FILE\n");
        return OBX_EXIT_USAGE;
    }
    if (show && c->nargs < 2) {
        obx_eprintf(stderr, "usage: outbox-relay dead show ID -c FILE\n");
        return OBX_EXIT_USAGE;
    }
    obx_relay r;
    obx_pipeline *p = NULL;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    if ((rc = obx_cli_open_store(c, &r, &p)) != 0)
        goto out;
    NEED_OP(p, dead_list, "dead letters");
    NEED_OP(p, dead_requeue, "dead requeue");
    NEED_OP(p, dead_purge, "dead purge");
    if (list || show)
        rc = dead_list(p, show ? c->args[1] : NULL, c->json);
    else
        rc = dead_change(c, p, verb);
out:
    close_store(p);
    obx_relay_free(&r);
    return rc;
}
