/* The core's own option tables: [relay] and [pipeline NAME]. */
#include "settings.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

static const char *const log_levels[] = {"error", "warn",  "info",
                                         "debug", "trace", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const orderings[] = {"key", "none", NULL};
/* auto, then the spellings of a bool, true before false: claim_ahead
 * was a bool before auto (see ahead_mode) */
static const char *const aheads[] = {"auto", "true", "false", "yes", "no",
                                     "on",   "off",  "1",     "0",   NULL};

#define SECONDS(n) ((int64_t)(n)*1000)

static const obx_option relay_options[] = {
    OBX_OPT_STRING(
        obx_relay_settings, plugin_path, "plugin_path", "",
        "Colon-separated directories searched first for obx_store_NAME.so and "
        "obx_broker_NAME.so; the install directory and the binary's own "
        "directory are searched after them."),
    OBX_OPT_ENUM(
        obx_relay_settings, log_level, "log_level", "info", log_levels,
        "Least severe level written to the log; debug and trace are verbose."),
    OBX_OPT_ENUM(obx_relay_settings, log_format, "log_format", "text",
                 log_formats,
                 "Log line format on stderr: text for people, json (one object "
                 "per line) for log collectors."),
    OBX_OPT_STRING(obx_relay_settings, metrics_listen, "metrics_listen",
                   "127.0.0.1:9464",
                   "HOST:PORT (IP address, [v6]:PORT for IPv6) serving "
                   "/metrics, /healthz and /readyz; \"off\" or empty disables "
                   "it. Use 0.0.0.0 to expose it on every interface."),
    OBX_OPT_DURATION(
        obx_relay_settings, shutdown_grace_ms, "shutdown_grace", "30s", 0,
        SECONDS(86400),
        "On SIGTERM/SIGINT the relay stops claiming and gives in-flight "
        "publishes this long to finish; it then releases the rest (published "
        "again after restart) and exits."),
    OBX_OPT_DURATION(obx_relay_settings, ready_stall_ms, "ready_stall", "60s",
                     SECONDS(1), SECONDS(604800),
                     "/readyz fails when a pipeline has pending events and has "
                     "published nothing for this long."),
    OBX_OPTIONS_END,
};

static const obx_option pipeline_options[] = {
    OBX_OPT_STRING(
        obx_pipeline_settings, store, "store", OBX_REQUIRED,
        "Store plugin reading the outbox: a name (sqlite, pg_poll, pg_wal) or "
        "a path to a .so; its options are the store.* keys."),
    OBX_OPT_STRING(obx_pipeline_settings, broker, "broker", OBX_REQUIRED,
                   "Broker plugin publishing the events: a name (kafka, "
                   "rabbitmq, nats, stdout, chaos) or a path to a .so; its "
                   "options are the broker.* keys."),
    OBX_OPT_INT(
        obx_pipeline_settings, batch_size, "batch_size", "256", 1, 100000,
        "Most events claimed from the store and published in one cycle."),
    OBX_OPT_ENUM(obx_pipeline_settings, ordering, "ordering", "key", orderings,
                 "key: events with the same key are published in commit order, "
                 "and a failed event holds back the later events of its key; "
                 "none: no order at all, for more throughput."),
    OBX_OPT_INT(
        obx_pipeline_settings, max_attempts, "retry.max_attempts", "10", 1,
        1000000,
        "Publish attempts before an event is dead-lettered; only failures of "
        "the event itself count, broker or store outages never do."),
    OBX_OPT_RANGE(obx_pipeline_settings, backoff, "retry.backoff", "100ms..60s",
                  1, SECONDS(604800),
                  "MIN..MAX delay before retrying a failed event: exponential "
                  "from MIN, capped at MAX, with full jitter."),
    OBX_OPT_RANGE(obx_pipeline_settings, circuit_backoff, "circuit.backoff",
                  "1s..30s", 1, SECONDS(86400),
                  "MIN..MAX delay between probes while the store or broker is "
                  "down (circuit open): exponential, with jitter."),
    OBX_OPT_STRING(
        obx_pipeline_settings, dlq, "dlq", "store",
        "Where poison events go (retry.max_attempts used up, or a permanent "
        "failure): store (marked dead in the outbox, see 'outbox-relay dead'), "
        "topic:NAME (published to NAME on the same broker, falling back to "
        "store) or none (never dead-letter: a failing event is retried forever "
        "and holds back its key)."),
    OBX_OPT_STRING(obx_pipeline_settings, topic, "topic",
                   "outbox.${aggregate_type}",
                   "Destination template for events whose row has no topic; "
                   "fields: ${aggregate_type}, ${aggregate_id}, ${event_type}, "
                   "${event_id}, ${key}, ${topic}."),
    OBX_OPT_DURATION(obx_pipeline_settings, publish_timeout_ms,
                     "publish_timeout", "30s", 1, SECONDS(86400),
                     "How long a batch may wait for the broker's "
                     "confirmations; events without one by then are retried."),
    OBX_OPT_DURATION(
        obx_pipeline_settings, poll_interval_ms, "poll_interval", "1s", 1,
        SECONDS(3600),
        "How long one claim waits for new events before the engine checks "
        "again (stores with notifications return as soon as events arrive)."),
    OBX_OPT_ENUM(
        obx_pipeline_settings, claim_ahead, "claim_ahead", "auto", aheads,
        "While a full batch is out at the broker, settle the previous one "
        "and claim the next (at most one batch ahead). auto: where the store "
        "can claim past its own unsettled events (an ordered store with the "
        "claim_ahead op: sqlite, pg_poll), which was measured to pay with "
        "every broker; true (yes, on, 1): with every store (pg_wal -> kafka "
        "was measured slower with it against a local broker); false (no, "
        "off, 0): one batch at a time. Until store ABI 1.3 this was a bool, "
        "off by default."),
    OBX_OPT_DURATION(obx_pipeline_settings, once_timeout_ms, "once_timeout",
                     "60s", SECONDS(1), SECONDS(604800),
                     "run --once gives up (exit 1, with the reason) after this "
                     "long without progress: store or broker unreachable, or "
                     "events pending that this relay cannot publish (held by "
                     "another relay, or waiting for a retry later than this)."),
    OBX_OPTIONS_END,
};

obx_optable obx_relay_optable(void)
{
    return (obx_optable){relay_options, sizeof(obx_option)};
}

obx_optable obx_pipeline_optable(void)
{
    return (obx_optable){pipeline_options, sizeof(obx_option)};
}

static int entry_line(const obx_conf_section *sec, const char *key)
{
    for (size_t i = 0; sec && i < sec->n_entries; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return sec->entries[i].line;
    return sec ? sec->line : 0;
}

/* ---- relay ------------------------------------------------------------- */

/* "off", "", or HOST:PORT with an IP address, as the HTTP server wants
 * it; checked here so the error names file:line. */
static bool listen_ok(const char *l)
{
    if (!*l || strcmp(l, "off") == 0)
        return true;
    const char *colon = strrchr(l, ':');
    if (!colon || colon == l || !colon[1] || strlen(colon + 1) > 5)
        return false;
    int64_t port;
    if (obx_parse_int(colon + 1, &port) < 0 || port < 0 || port > 65535 ||
        colon[1] == '+' || colon[1] == '-')
        return false;
    char host[64];
    size_t n = (size_t)(colon - l);
    if (l[0] == '[' && colon[-1] == ']') {
        l++;
        n -= 2;
    }
    if (n >= sizeof host)
        return false;
    memcpy(host, l, n);
    host[n] = '\0';
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 ||
           inet_pton(AF_INET6, host, addr) == 1;
}

int obx_relay_settings_fill(const char *file, const obx_conf_section *sec,
                            obx_relay_settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (obx_options_fill(obx_relay_optable(), file, sec, "", s, err, errlen))
        return -1;
    if (!listen_ok(s->metrics_listen)) {
        snprintf(err, errlen,
                 "%s:%d: [relay] key 'metrics_listen': '%.80s' is not "
                 "HOST:PORT with an IP address (e.g. 127.0.0.1:9464, "
                 "0.0.0.0:9464, [::1]:9464) or off",
                 file, entry_line(sec, "metrics_listen"), s->metrics_listen);
        obx_relay_settings_free(s);
        return -1;
    }
    return 0;
}

void obx_relay_settings_free(obx_relay_settings *s)
{
    obx_options_free(obx_relay_optable(), s);
}

/* ---- pipeline ---------------------------------------------------------- */

static bool plugin_key(const char *key)
{
    return strncmp(key, "store.", 6) == 0 || strncmp(key, "broker.", 7) == 0;
}

/* A key such as "stor.path" is meant for a plugin: say so, rather than
 * "unknown key" against the core's table. 0 or -1 with err. */
static int check_plugin_typo(const char *file, const obx_conf_section *sec,
                             const obx_conf_entry *e, char *err, size_t errlen)
{
    static const char *const roles[] = {"store", "broker", NULL};
    const char *dot = strchr(e->key, '.');
    if (!dot || dot - e->key > 32)
        return 0;
    const obx_option *o;
    for (size_t i = 0; (o = obx_optable_row(obx_pipeline_optable(), i)); i++)
        if (strcmp(o->name, e->key) == 0)
            return 0;
    char head[40];
    snprintf(head, sizeof head, "%.*s", (int)(dot - e->key), e->key);
    const char *dym = obx_did_you_mean(head, roles);
    if (!dym)
        return 0;
    snprintf(err, errlen,
             "%s:%d: [pipeline %s] unknown key '%s'; did you mean '%s%s'?",
             file, e->line, sec->name, e->key, dym, dot);
    return -1;
}

/* sec without the plugins' keys; entries are borrowed. */
static int core_view(const char *file, const obx_conf_section *sec,
                     obx_conf_section *view, char *err, size_t errlen)
{
    *view = *sec;
    view->entries = calloc(sec->n_entries + 1, sizeof *view->entries);
    if (!view->entries) {
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    view->n_entries = 0;
    for (size_t i = 0; i < sec->n_entries; i++) {
        const obx_conf_entry *e = &sec->entries[i];
        if (plugin_key(e->key))
            continue;
        if (check_plugin_typo(file, sec, e, err, errlen) < 0) {
            free(view->entries);
            return -1;
        }
        view->entries[view->n_entries++] = *e;
    }
    return 0;
}

static int check_dlq(const char *file, const obx_conf_section *sec,
                     obx_pipeline_settings *s, char *err, size_t errlen)
{
    char why[512];
    const char *problem = NULL;
    if (strcmp(s->dlq, "store") == 0) {
        s->dlq_kind = OBX_DLQ_STORE;
    } else if (strcmp(s->dlq, "none") == 0) {
        s->dlq_kind = OBX_DLQ_NONE;
    } else if (strncmp(s->dlq, "topic:", 6) == 0) {
        s->dlq_kind = OBX_DLQ_TOPIC;
        s->dlq_topic = s->dlq + 6;
        if (!*s->dlq_topic)
            problem = "needs a topic name after 'topic:', e.g. "
                      "topic:outbox.dlq";
        else if (isspace((unsigned char)*s->dlq_topic))
            problem = "no space after 'topic:', e.g. topic:outbox.dlq";
        else if (obx_template_check(s->dlq_topic, why, sizeof why) < 0)
            problem = why;
    } else {
        problem = "expected store, none or topic:NAME";
    }
    if (!problem)
        return 0;
    snprintf(err, errlen, "%s:%d: [pipeline %s] key 'dlq': '%.80s': %s", file,
             entry_line(sec, "dlq"), sec->name, s->dlq, problem);
    return -1;
}

static int check_topic(const char *file, const obx_conf_section *sec,
                       const obx_pipeline_settings *s, char *err, size_t errlen)
{
    char why[512];
    const char *problem = NULL;
    if (!*s->topic)
        problem = "must not be empty: it routes every event whose row has "
                  "no topic of its own";
    else if (obx_template_check(s->topic, why, sizeof why) < 0)
        problem = why;
    if (!problem)
        return 0;
    snprintf(err, errlen, "%s:%d: [pipeline %s] key 'topic': %s", file,
             entry_line(sec, "topic"), sec->name, problem);
    return -1;
}

/* The obx_claim_ahead of an index into aheads[]. */
static int ahead_mode(int i)
{
    return i == 0 ? OBX_AHEAD_AUTO : i % 2 ? OBX_AHEAD_ON : OBX_AHEAD_OFF;
}

int obx_pipeline_settings_fill(const char *file, const obx_conf_section *sec,
                               obx_pipeline_settings *s, char *err,
                               size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!sec) {
        snprintf(err, errlen, "%s: no [pipeline NAME] section given", file);
        return -1;
    }
    obx_conf_section view;
    if (core_view(file, sec, &view, err, errlen) < 0)
        return -1;
    int rc = obx_options_fill(obx_pipeline_optable(), file, &view, "", s, err,
                              errlen);
    free(view.entries);
    s->claim_ahead = ahead_mode(s->claim_ahead);
    if (rc == 0 && (check_dlq(file, sec, s, err, errlen) < 0 ||
                    check_topic(file, sec, s, err, errlen) < 0)) {
        obx_pipeline_settings_free(s);
        rc = -1;
    }
    return rc;
}

void obx_pipeline_settings_free(obx_pipeline_settings *s)
{
    obx_options_free(obx_pipeline_optable(), s);
    s->dlq_topic = NULL;
    s->dlq_kind = OBX_DLQ_STORE;
}
