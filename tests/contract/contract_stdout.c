/* The stdout broker's contract harness: output to a file of the check's
 * own (broker.output), read back as the JSON lines it holds. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <outbox/contract.h>

typedef struct out_h {
    char dir[512];
    char path[600];
    char dest[64];
} out_h;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    static unsigned serial;
    out_h *h = ctx;
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/contract-stdout-XXXXXX",
             tmp ? tmp : "/tmp");
    if (!mkdtemp(h->dir)) {
        snprintf(err, errlen, "mkdtemp %s failed", h->dir);
        return -1;
    }
    snprintf(h->path, sizeof h->path, "%s/out.jsonl", h->dir);
    snprintf(h->dest, sizeof h->dest, "contract.%u", ++serial);
    return 0;
}

static void h_teardown(void *ctx)
{
    out_h *h = ctx;
    unlink(h->path);
    rmdir(h->dir);
}

static int h_config(void *ctx, char *text, size_t len, char *err, size_t errlen)
{
    snprintf(text, len, "output = %s\n", ((out_h *)ctx)->path);
    return 0;
}

static const char *h_destination(void *ctx)
{
    return ((out_h *)ctx)->dest;
}

static void copy_str(char *dst, size_t len, json_t *v)
{
    snprintf(dst, len, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* One line: its topic must be the check's; the payload is embedded as
 * JSON (the kit's payloads are JSON objects) and compared compact. */
static int parse_line(const out_h *h, const char *line, obx_contract_msg *m,
                      char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: not a JSON object: %.80s (%s)", h->path,
                 line, je.text);
        json_decref(o);
        return -1;
    }
    int rc = 0;
    json_t *topic = json_object_get(o, "topic");
    if (json_is_string(topic) &&
        strcmp(json_string_value(topic), h->dest) == 0) {
        copy_str(m->event_id, sizeof m->event_id,
                 json_object_get(o, "event_id"));
        copy_str(m->key, sizeof m->key, json_object_get(o, "key"));
        char *pl = json_dumps(json_object_get(o, "payload"),
                              JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(m->payload, sizeof m->payload, "%s", pl ? pl : "");
        free(pl);
        rc = 1;
    }
    json_decref(o);
    return rc;
}

static int h_read_back(void *ctx, size_t want, int wait_ms,
                       obx_contract_msg *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    out_h *h = ctx;
    for (int waited = 0;; waited += 20) {
        *n = 0;
        FILE *f = fopen(h->path, "r");
        char line[8192];
        while (f && *n < max && fgets(line, sizeof line, f)) {
            int rc = parse_line(h, line, &out[*n], err, errlen);
            if (rc < 0) {
                fclose(f);
                return -1;
            }
            *n += (size_t)rc;
        }
        if (f)
            fclose(f);
        if (*n >= want || waited >= wait_ms)
            return 0;
        nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
    }
}

int main(void)
{
    static out_h ctx;
    static const obx_contract_na na[] = {
        {"not_attempted",
         "no event can fail alone: every event becomes a JSON line and the "
         "batch is written (or fails, as UNAVAILABLE) as a whole"},
        {"unavailable",
         "a file or standard output has no down state to switch from "
         "outside; a failing write (UNAVAILABLE) is brokers_stdout's "
         "test_full_device"},
        {NULL, NULL}};
    obx_contract_broker_harness h = {
        .struct_size = sizeof h,
        .name = "stdout",
        .plugin = "stdout",
        .plugin_dir = OBX_PLUGIN_DIR,
        .ctx = &ctx,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .destination = h_destination,
        .read_back = h_read_back,
        .not_applicable = na,
    };
    return obx_contract_broker_run(&h) ? 1 : 0;
}
