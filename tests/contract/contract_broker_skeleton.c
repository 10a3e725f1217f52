/* The broker skeleton's contract harness, written as an out-of-tree author
 * writes one: <outbox/contract.h> and libc only (the install test builds
 * it against the installed kit). The backend is the file the skeleton
 * appends "DESTINATION KEY EVENT_ID PAYLOAD" lines to; read_back parses
 * it, poison makes a payload larger than broker.max_payload.
 *
 *     contract_broker_skeleton [PATH/obx_broker_skeleton.so]
 */
#define _POSIX_C_SOURCE 200809L
#include <outbox/contract.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CONTRACT_PLUGIN
#define CONTRACT_PLUGIN "./obx_broker_skeleton.so"
#endif

typedef struct skel_h {
    char dir[512];
    char path[600];
    char dest[64];
} skel_h;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    skel_h *h = ctx;
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/contract-bskel-XXXXXX",
             tmp ? tmp : "/tmp");
    if (!mkdtemp(h->dir)) {
        snprintf(err, errlen, "mkdtemp %s failed", h->dir);
        return -1;
    }
    snprintf(h->path, sizeof h->path, "%s/out.txt", h->dir);
    snprintf(h->dest, sizeof h->dest, "contract.%ld", (long)time(NULL));
    return 0;
}

static void h_teardown(void *ctx)
{
    skel_h *h = ctx;
    unlink(h->path);
    rmdir(h->dir);
}

static int h_config(void *ctx, char *text, size_t len, char *err, size_t errlen)
{
    /* the kit's payloads are short: 100 bytes leave room to poison one */
    snprintf(text, len, "path = %s\nmax_payload = 100\n",
             ((skel_h *)ctx)->path);
    return 0;
}

static const char *h_destination(void *ctx)
{
    return ((skel_h *)ctx)->dest;
}

static int h_read_back(void *ctx, size_t want, int wait_ms,
                       obx_contract_msg *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    skel_h *h = ctx;
    for (int waited = 0;; waited += 20) {
        *n = 0;
        FILE *f = fopen(h->path, "r");
        char line[1024];
        while (f && *n < max && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            char *dest = strtok(line, " "), *key = strtok(NULL, " "),
                 *id = strtok(NULL, " "), *pl = strtok(NULL, "");
            if (!dest || !key || !id || strcmp(dest, h->dest) != 0)
                continue;
            obx_contract_msg *m = &out[(*n)++];
            snprintf(m->event_id, sizeof m->event_id, "%s", id);
            snprintf(m->key, sizeof m->key, "%s", strcmp(key, "-") ? key : "");
            snprintf(m->payload, sizeof m->payload, "%s", pl ? pl : "");
        }
        if (f)
            fclose(f);
        if (*n >= want || waited >= wait_ms)
            return 0;
        nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
    }
}

static int h_poison(void *ctx, obx_event *ev, char *err, size_t errlen)
{
    static char big[200];
    memset(big, 'x', sizeof big);
    ev->payload = big;
    ev->payload_len = sizeof big;
    return 0;
}

int main(int argc, char **argv)
{
    static skel_h ctx;
    static const obx_contract_na na[] = {
        {"unavailable", "the skeleton keeps its file open once it could "
                        "open it: nothing outside the process can take the "
                        "open file away"},
        {NULL, NULL}};
    obx_contract_broker_harness h = {
        .struct_size = sizeof h,
        .name = "broker_skeleton",
        .plugin = argc > 1 ? argv[1] : CONTRACT_PLUGIN,
        .ctx = &ctx,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .destination = h_destination,
        .read_back = h_read_back,
        .poison = h_poison,
        .not_applicable = na,
    };
    return obx_contract_broker_run(&h) ? 1 : 0;
}
