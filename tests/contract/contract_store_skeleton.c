/* The store skeleton's contract harness, written as an out-of-tree author
 * writes one: <outbox/contract.h> and libc only (the install test builds
 * it against the installed kit). The backend is a directory: write is the
 * skeleton's rename commit, inspect reads the event, .retry and dead/
 * files.
 *
 *     contract_store_skeleton [PATH/obx_store_skeleton.so]
 */
#define _POSIX_C_SOURCE 200809L
#include <outbox/contract.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CONTRACT_PLUGIN
#define CONTRACT_PLUGIN "./obx_store_skeleton.so"
#endif

typedef struct skel_h {
    char dir[512];
    unsigned seq;
} skel_h;

static void rm_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static int h_setup(void *ctx, char *err, size_t errlen)
{
    skel_h *h = ctx;
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/contract-skel-XXXXXX",
             tmp ? tmp : "/tmp");
    h->seq = 0;
    if (!mkdtemp(h->dir)) {
        snprintf(err, errlen, "mkdtemp %s failed", h->dir);
        return -1;
    }
    return 0;
}

static void h_teardown(void *ctx)
{
    rm_dir(((skel_h *)ctx)->dir);
}

static int h_config(void *ctx, const obx_contract_conf *req, char *text,
                    size_t len, char *err, size_t errlen)
{
    snprintf(text, len, "dir = %s\npoll = 10ms\n", ((skel_h *)ctx)->dir);
    return 0;
}

/* NAME.evt with id ev-N: names sort in commit order. */
static int h_write(void *ctx, const char *key, const char *payload, char *err,
                   size_t errlen)
{
    skel_h *h = ctx;
    char tmp[600], final[600];
    unsigned n = __atomic_add_fetch(&h->seq, 1, __ATOMIC_SEQ_CST);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%010u", h->dir, n);
    snprintf(final, sizeof final, "%s/%010u.evt", h->dir, n);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "id: ev-%u\nkey: %s\n\n%s", n, key, payload) < 0 ||
        fclose(f) != 0 || rename(tmp, final) != 0) {
        snprintf(err, errlen, "cannot write %s", final);
        return -1;
    }
    return 0;
}

static int read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

/* "name: value" line of text into out ("" when absent). */
static void field(const char *text, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (!strncmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1 + (p[nl + 1] == ' ');
            size_t l = strcspn(v, "\n");
            snprintf(out, len, "%.*s", (int)l, v);
            return;
        }
}

static int h_inspect(void *ctx, const char *id, obx_contract_record *rec,
                     char *err, size_t errlen)
{
    skel_h *h = ctx;
    unsigned n;
    if (sscanf(id, "ev-%u", &n) != 1) {
        snprintf(err, errlen, "not an id this harness wrote: %s", id);
        return -1;
    }
    char path[700], text[4096];
    snprintf(path, sizeof path, "%s/dead/%010u.evt.why", h->dir, n);
    if (read_file(path, text, sizeof text) == 0) {
        char v[256];
        rec->state = OBX_CONTRACT_DEAD;
        field(text, "attempts", v, sizeof v);
        rec->attempts = (uint32_t)strtoul(v, NULL, 10);
        field(text, "reason", rec->dead_reason, sizeof rec->dead_reason);
        field(text, "destination", rec->dead_destination,
              sizeof rec->dead_destination);
        return 0;
    }
    snprintf(path, sizeof path, "%s/%010u.evt", h->dir, n);
    if (access(path, F_OK) != 0) {
        rec->state = OBX_CONTRACT_ABSENT; /* acked: the file is gone */
        return 0;
    }
    /* a claim is the instance's, in memory: pending and claimed look
     * alike from outside */
    rec->state = OBX_CONTRACT_PENDING;
    snprintf(path, sizeof path, "%s/%010u.evt.retry", h->dir, n);
    if (read_file(path, text, sizeof text) == 0) {
        unsigned a = 0;
        long long at = 0;
        sscanf(text, "%u %lld", &a, &at);
        rec->attempts = a;
        rec->retry_at_us = at;
        const char *nl = strchr(text, '\n');
        snprintf(rec->last_error, sizeof rec->last_error, "%.*s",
                 nl ? (int)strcspn(nl + 1, "\n") : 0, nl ? nl + 1 : "");
    }
    return 0;
}

int main(int argc, char **argv)
{
    static skel_h ctx;
    static const obx_contract_na na[] = {
        {"lease_expiry", "the skeleton leases the whole directory to one "
                         "instance (flock) until close: a second one is a "
                         "standby, and no lease expires"},
        {"dead_ops", "the skeleton keeps dead letters as files in dead/ and "
                     "implements no dead_list/requeue/purge"},
        {"backend_down", "a local directory has no server to stop"},
        {NULL, NULL}};
    obx_contract_store_harness h = {
        .struct_size = sizeof h,
        .name = "store_skeleton",
        .plugin = argc > 1 ? argv[1] : CONTRACT_PLUGIN,
        .ctx = &ctx,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .write = h_write,
        .inspect = h_inspect,
        .close_returns_claims = true,
        .not_applicable = na,
    };
    return obx_contract_store_run(&h) ? 1 : 0;
}
