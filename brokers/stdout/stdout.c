/* stdout broker: every event as one JSON object per line, to standard
 * output or a file. The quick-start default, a debugging aid, and the
 * broker of the throughput benchmark, so the hot path does not allocate
 * per event once its buffers have grown. */
#include <stdio.h>
#include <stdlib.h>

#include <outbox/plugin.h>

#include "jsonl.h"
#include "stdout_config.h"

typedef struct stdout_broker {
    obc_jsonl_sink sink;
} stdout_broker;

static const obx_option stdout_options[] = {
    OBC_JSONL_OPTIONS(stdout_config, out),
    OBX_OPTIONS_END,
};

static obx_status stdout_validate(const obx_host *host, const void *config,
                                  bool connect, char *errstr, size_t errlen)
{
    const stdout_config *c = config;
    return obc_jsonl_validate(&c->out, connect, errstr, errlen);
}

/* The instance owns the sink; the config is borrowed (owned by the core,
 * outlives the instance). OBX_CONFIG when the output cannot be opened. */
static obx_status stdout_open(const obx_host *host, const void *config,
                              void **inst, char *errstr, size_t errlen)
{
    const stdout_config *c = config;
    stdout_broker *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    obx_status st =
        obc_jsonl_sink_open(&s->sink, host, &c->out, errstr, errlen);
    if (st != OBX_OK) {
        obc_jsonl_sink_close(&s->sink);
        free(s);
        return st;
    }
    *inst = s;
    return OBX_OK;
}

static void stdout_close(void *inst)
{
    stdout_broker *s = inst;
    if (!s)
        return;
    obc_jsonl_sink_close(&s->sink);
    free(s);
}

/* Results on a batch-wide failure are ignored by the engine, but carry the
 * reason so whoever looks at them sees why. */
static void fill_results(obx_result *results, size_t n, obx_status st,
                         const char *why)
{
    for (size_t i = 0; i < n; i++) {
        results[i].status = st;
        snprintf(results[i].errstr, sizeof results[i].errstr, "%s", why);
    }
}

/* Written means published: the whole batch goes out with one fflush (and
 * fsync when asked); an I/O error fails the batch as OBX_UNAVAILABLE, as
 * nothing about it is specific to one event. */
static obx_status stdout_publish(void *inst, obx_event *const *events, size_t n,
                                 obx_result *results, int timeout_ms)
{
    stdout_broker *s = inst;
    char err[OBX_ERRSTR_LEN];
    obx_status st = OBX_OK;
    obc_jsonl_sink_begin(&s->sink);
    for (size_t i = 0; i < n && st == OBX_OK; i++)
        st = obc_jsonl_sink_add(&s->sink, events[i], err, sizeof err);
    if (st == OBX_OK)
        st = obc_jsonl_sink_commit(&s->sink, err, sizeof err);
    fill_results(results, n, st, st == OBX_OK ? "" : err);
    return st;
}

static obx_status stdout_flush(void *inst, int timeout_ms)
{
    stdout_broker *s = inst;
    return obc_jsonl_sink_flush(&s->sink);
}

static const obx_broker_ops stdout_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .validate = stdout_validate,
    .open = stdout_open,
    .close = stdout_close,
    .publish = stdout_publish,
    .flush = stdout_flush,
    /* No health op: a publish is as cheap a probe as any. */
};

OBX_BROKER_PLUGIN("stdout", "Events as JSON lines on standard output or a file",
                  "1.0.0", stdout_options, stdout_config, stdout_ops)
