/* broker_skeleton: a small, complete broker plugin that appends each event
 * as one line to a file. It shows the whole broker contract (broker.h):
 *  - OBX_OK only once the line is flushed (and fsync'ed with fsync = true),
 *    which is this broker's "confirmation";
 *  - a per-event failure (a payload over max_payload: PERMANENT) and
 *    "not attempted" for the later events of its key in the same call;
 *  - a broker that is down at open still opens, and publish reports the
 *    whole batch OBX_UNAVAILABLE, with the reason in results[0].errstr,
 *    until the file can be opened again; health() probes the same way.
 *
 * Line format: DESTINATION KEY EVENT_ID PAYLOAD (KEY "-" when the event has
 * none; the payload is written as it is, so keep it on one line).
 *
 * Build (docs/writing-plugins.md):
 *   cc -std=c11 -shared -fPIC $(pkg-config --cflags outbox-plugin) \
 *      -o obx_broker_skeleton.so broker_skeleton.c
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* fileno, fsync */
#endif
#include <outbox/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct skel_conf {
    char *path;
    bool fsync;
    int64_t max_payload;
} skel_conf;

static const obx_option skel_options[] = {
    OBX_OPT_STRING(skel_conf, path, "path", OBX_REQUIRED,
                   "File the events are appended to, one line each."),
    OBX_OPT_BOOL(skel_conf, fsync, "fsync", "false",
                 "fsync the file before a batch is reported published."),
    OBX_OPT_SIZE(skel_conf, max_payload, "max_payload", "1MiB", 1,
                 INT64_C(1) << 30,
                 "Larger payloads fail permanently (dead-lettered)."),
    OBX_OPTIONS_END,
};

/* One per pipeline; only the pipeline's thread touches it. */
typedef struct skel_broker {
    const obx_host *host;
    const skel_conf *conf; /* the core's, outlives us */
    FILE *fp;              /* NULL while the file cannot be opened */
} skel_broker;

/* Open the file if it is not open. 0, or -1 with why filled. */
static int skel_connect(skel_broker *b, char *why, size_t len)
{
    if (b->fp)
        return 0;
    b->fp = fopen(b->conf->path, "a");
    if (b->fp)
        return 0;
    snprintf(why, len, "cannot open %s: %s", b->conf->path, strerror(errno));
    return -1;
}

static obx_status skel_open(const obx_host *host, const void *config,
                            void **inst, char *errstr, size_t errlen)
{
    skel_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    b->host = host;
    b->conf = config;
    char why[256];
    if (skel_connect(b, why, sizeof why) != 0) /* down now: publish says */
        host->log(host, OBX_LOG_WARN, "skeleton: %s", why);
    *inst = b;
    return OBX_OK;
}

static void skel_close(void *inst)
{
    skel_broker *b = inst;
    if (b->fp)
        fclose(b->fp);
    free(b);
}

/* The whole batch failed: every result says so (the engine reads
 * results[0].errstr as the reason). */
static obx_status skel_fail_all(obx_result *res, size_t n, obx_status st,
                                const char *why)
{
    for (size_t i = 0; i < n; i++) {
        res[i].status = st;
        snprintf(res[i].errstr, sizeof res[i].errstr, "%s", why);
    }
    return st;
}

static bool skel_failed(const char *const *keys, size_t n, const char *key)
{
    for (size_t i = 0; key && i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

static obx_status skel_publish(void *inst, obx_event *const *events, size_t n,
                               obx_result *res, int timeout_ms)
{
    skel_broker *b = inst;
    char why[OBX_ERRSTR_LEN];
    if (skel_connect(b, why, sizeof why) != 0)
        return skel_fail_all(res, n, OBX_UNAVAILABLE, why);
    const char **failed = malloc(n * sizeof *failed); /* keys failed here */
    if (!failed)
        return skel_fail_all(res, n, OBX_UNAVAILABLE, "out of memory");
    size_t n_failed = 0;
    for (size_t i = 0; i < n; i++) {
        const obx_event *ev = events[i];
        res[i].errstr[0] = '\0';
        if (skel_failed(failed, n_failed, ev->key)) {
            res[i].status = OBX_RETRY;
            snprintf(res[i].errstr, sizeof res[i].errstr, "not attempted");
        } else if ((int64_t)ev->payload_len > b->conf->max_payload) {
            res[i].status = OBX_PERMANENT;
            snprintf(res[i].errstr, sizeof res[i].errstr,
                     "payload of %zu bytes is larger than max_payload (%lld)",
                     ev->payload_len, (long long)b->conf->max_payload);
            if (ev->key)
                failed[n_failed++] = ev->key;
        } else {
            fprintf(b->fp, "%s %s %s %.*s\n", ev->destination,
                    ev->key && *ev->key ? ev->key : "-", ev->event_id,
                    (int)ev->payload_len, (const char *)ev->payload);
            res[i].status = OBX_OK; /* confirmed below, or not at all */
        }
    }
    free(failed);
    /* Written is not confirmed: only a flush (and fsync) that succeeded is.
     * On failure nothing is known, so the batch goes back uncounted; what
     * did reach the file is published twice, with the same event ids. */
    if (fflush(b->fp) != 0 || ferror(b->fp) ||
        (b->conf->fsync && fsync(fileno(b->fp)) != 0)) {
        snprintf(why, sizeof why, "writing %s: %s", b->conf->path,
                 strerror(errno));
        fclose(b->fp);
        b->fp = NULL;
        return skel_fail_all(res, n, OBX_UNAVAILABLE, why);
    }
    return OBX_OK;
}

static obx_status skel_flush(void *inst, int timeout_ms)
{
    skel_broker *b = inst;
    return b->fp && fflush(b->fp) != 0 ? OBX_UNAVAILABLE : OBX_OK;
}

/* While the circuit is open: can the file be opened again? */
static obx_status skel_health(void *inst, char *errstr, size_t errlen)
{
    return skel_connect(inst, errstr, errlen) == 0 ? OBX_OK : OBX_UNAVAILABLE;
}

static const obx_broker_ops skel_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .flags = 0,
    .open = skel_open,
    .close = skel_close,
    .publish = skel_publish,
    .flush = skel_flush,
    .health = skel_health,
};

OBX_BROKER_PLUGIN("skeleton",
                  "example: appends events to a file, one line each", "1.0.0",
                  skel_options, skel_conf, skel_ops)
