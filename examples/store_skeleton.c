/* store_skeleton: a small, complete store plugin over a directory of event
 * files. It follows the whole store contract (store.h): per-key commit
 * order (OBX_STORE_ORDERED_CLAIM), a lease on every claimed event,
 * ack/release/bury that settle all or nothing and may be repeated,
 * attempts and retry times that survive a restart, dead letters, stats,
 * demo and schema_v2.
 *
 * Layout of store.dir:
 *   NAME.evt        a pending event. Writers create it under another name
 *                   and rename() it into place: the rename is the commit.
 *                   Names sort in commit order (e.g. a zero-padded
 *                   sequence or timestamp first).
 *   NAME.evt.retry  "ATTEMPTS RETRY_AT_US\nLAST_ERROR": written by release
 *   dead/NAME.evt   a dead letter, beside dead/NAME.evt.why
 *   .lock           flock()ed by the one instance that owns the directory
 * An event file is "name: value" lines, a blank line, then the payload:
 *   id: e-1               (default: NAME)
 *   key: order-1          (default: aggregate_id; none: no ordering)
 *   topic / type / aggregate_type / aggregate_id
 *   any-other: value      a user header
 *
 * Leases: the whole directory is leased to one instance (the flock), so a
 * claim lasts until it is settled or the instance closes; a second relay
 * is a hot standby whose open() reports UNAVAILABLE until the first one
 * exits. A claim reads every pending file in order until the batch is
 * full: fine for thousands of files, not for millions.
 *
 * Build (docs/writing-plugins.md):
 *   cc -std=c11 -shared -fPIC $(pkg-config --cflags outbox-plugin) \
 *      -o obx_store_skeleton.so store_skeleton.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* flock */
#endif
#include <outbox/plugin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct skel_conf {
    char *dir;
    int64_t poll_ms;
} skel_conf;

static const obx_option skel_options[] = {
    OBX_OPT_STRING(skel_conf, dir, "dir", OBX_REQUIRED,
                   "Directory of event files (created when missing)."),
    OBX_OPT_DURATION(skel_conf, poll_ms, "poll", "50ms", 1, 10000,
                     "How often a waiting claim looks for new files."),
    OBX_OPTIONS_END,
};

/* A claimed event; ev first, so the engine's obx_event * is ours. */
typedef struct skel_event {
    obx_event ev;
    char *file; /* "NAME.evt" */
    char *text; /* the file's bytes + NUL; the strings point into it */
    obx_header *hdrs;
} skel_event;

/* One per pipeline; only the pipeline's thread touches it. */
typedef struct skel_store {
    const obx_host *host;
    int64_t poll_us;
    int dir, dead, lock; /* directory fds and the lock file */
    skel_event **claimed;
    size_t n_claimed;
} skel_store;

static obx_status skel_err(obx_status st, char *errstr, size_t errlen,
                           const char *what, const char *name)
{
    snprintf(errstr, errlen, "skeleton: %s %s: %s", what, name,
             strerror(errno));
    return st;
}

static void skel_free(skel_event *e)
{
    if (e) {
        free(e->file);
        free(e->text);
        free(e->hdrs);
        free(e);
    }
}

/* Read NAME.evt and its .retry into a new event; NULL if it vanished or is
 * unreadable (errno set). */
static skel_event *skel_load(int dir, const char *name)
{
    skel_event *e = calloc(1, sizeof *e);
    int fd = openat(dir, name, O_RDONLY);
    struct stat sb;
    if (!e || fd < 0 || fstat(fd, &sb) != 0 ||
        !(e->text = malloc((size_t)sb.st_size + 1)) ||
        !(e->file = strdup(name)) ||
        !(e->hdrs = calloc((size_t)sb.st_size / 2 + 1, sizeof *e->hdrs)) ||
        read(fd, e->text, (size_t)sb.st_size) != sb.st_size) {
        if (fd >= 0)
            close(fd);
        skel_free(e);
        return NULL;
    }
    close(fd);
    e->text[sb.st_size] = '\0';
    obx_event *ev = &e->ev;
    ev->event_id = name;
    ev->created_at_us =
        (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000;
    char *p = e->text, *end = e->text + sb.st_size;
    while (p < end && *p != '\n') { /* header lines until the blank one */
        char *nl = memchr(p, '\n', (size_t)(end - p)), *colon = strchr(p, ':');
        if (!nl || !colon || colon > nl)
            break;
        *colon = *nl = '\0';
        char *v = colon + 1 + (colon[1] == ' ');
        if (!strcmp(p, "id"))
            ev->event_id = v;
        else if (!strcmp(p, "key"))
            ev->key = v;
        else if (!strcmp(p, "topic"))
            ev->topic = v;
        else if (!strcmp(p, "type"))
            ev->event_type = v;
        else if (!strcmp(p, "aggregate_type"))
            ev->aggregate_type = v;
        else if (!strcmp(p, "aggregate_id"))
            ev->aggregate_id = v;
        else
            e->hdrs[ev->n_headers++] = (obx_header){p, v};
        p = nl + 1;
    }
    if (p < end && *p == '\n')
        p++;
    ev->payload = p;
    ev->payload_len = (size_t)(end - p);
    ev->headers = ev->n_headers ? e->hdrs : NULL;
    if (!ev->key)
        ev->key = ev->aggregate_id;
    if (ev->event_id == name) /* the file name: it must outlive `name` */
        ev->event_id = e->file;
    return e;
}

/* Attempts and retry time from NAME.evt.retry (0, 0 when absent). */
static void skel_retry_state(int dir, const char *name, uint32_t *attempts,
                             int64_t *retry_at)
{
    char path[512], buf[64] = "";
    snprintf(path, sizeof path, "%s.retry", name);
    int fd = openat(dir, path, O_RDONLY);
    long long at = 0;
    unsigned n = 0;
    if (fd >= 0) {
        ssize_t got = read(fd, buf, sizeof buf - 1);
        buf[got > 0 ? got : 0] = '\0';
        close(fd);
        sscanf(buf, "%u %lld", &n, &at);
    }
    *attempts = n;
    *retry_at = at;
}

/* The last error line of NAME.retry into buf ("" when none). */
static void skel_last_error(int dir, const char *name, char *buf, size_t len)
{
    char text[1024] = "";
    int fd = openat(dir, name, O_RDONLY);
    if (fd >= 0) {
        ssize_t got = read(fd, text, sizeof text - 1);
        text[got > 0 ? got : 0] = '\0';
        close(fd);
    }
    const char *nl = strchr(text, '\n');
    snprintf(buf, len, "%.*s", nl ? (int)strcspn(nl + 1, "\n") : 0,
             nl ? nl + 1 : "");
}

static int skel_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.evt names in dir, sorted: commit order. NULL on error. */
static char **skel_list(int dir, size_t *n)
{
    int fd = dup(dir);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    char **names = NULL;
    *n = 0;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    rewinddir(d);
    size_t cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".evt") != 0)
            continue;
        if (*n == cap) {
            char **grown = realloc(names, (cap = cap * 2 + 64) * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        if (!(names[*n] = strdup(de->d_name)))
            break;
        ++*n;
    }
    closedir(d);
    if (!names)
        names = calloc(1, sizeof *names);
    if (names)
        qsort(names, *n, sizeof *names, skel_cmp);
    return names;
}

static void skel_free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static skel_event *skel_claimed(const skel_store *s, const char *name)
{
    for (size_t i = 0; i < s->n_claimed; i++)
        if (strcmp(s->claimed[i]->file, name) == 0)
            return s->claimed[i];
    return NULL;
}

/* One pass over the directory, in commit order. An event is due unless
 * an earlier event of its key is claimed (by an earlier call) or waits for
 * its retry time; later events of a key claimed in this pass come along,
 * in order, in the same batch. */
static obx_status skel_scan(skel_store *s, obx_event **out, size_t max,
                            size_t *n, char *errstr, size_t errlen)
{
    size_t n_names, n_blocked = 0, n_drop = 0;
    char **names = skel_list(s->dir, &n_names);
    /* blocked borrows keys from claimed events and from drop[], the events
     * read but not due, freed at the end. */
    const char **blocked = calloc(n_names + 1, sizeof *blocked);
    skel_event **drop = calloc(n_names + 1, sizeof *drop);
    skel_event **grown =
        realloc(s->claimed, (s->n_claimed + max) * sizeof *grown);
    if (grown)
        s->claimed = grown;
    obx_status st = OBX_OK;
    if (!names || !blocked || !drop || !grown)
        st = skel_err(OBX_UNAVAILABLE, errstr, errlen, "listing", "store.dir");
    int64_t now = s->host->now_us();
    for (size_t i = 0; st == OBX_OK && i < n_names && *n < max; i++) {
        skel_event *e = skel_claimed(s, names[i]);
        bool mine = e == NULL;
        if (mine && !(e = skel_load(s->dir, names[i])))
            continue; /* acked by a writer's cleanup, or unreadable */
        const char *key = e->ev.key && *e->ev.key ? e->ev.key : NULL;
        bool held = false;
        for (size_t k = 0; key && k < n_blocked && !held; k++)
            held = strcmp(blocked[k], key) == 0;
        int64_t at = 0;
        if (mine)
            skel_retry_state(s->dir, names[i], &e->ev.attempts, &at);
        if (!mine || held || at > now) {
            if (key && !held)
                blocked[n_blocked++] = key;
            if (mine)
                drop[n_drop++] = e;
            continue;
        }
        s->claimed[s->n_claimed++] = e;
        out[(*n)++] = &e->ev;
    }
    for (size_t i = 0; i < n_drop; i++)
        skel_free(drop[i]);
    skel_free_names(names, n_names);
    free(blocked);
    free(drop);
    return st;
}

static obx_status skel_claim(void *inst, obx_event **out, size_t max, size_t *n,
                             int wait_ms, char *errstr, size_t errlen)
{
    skel_store *s = inst;
    int64_t deadline = s->host->mono_us() + (int64_t)wait_ms * 1000;
    for (;;) {
        *n = 0;
        obx_status st = skel_scan(s, out, max, n, errstr, errlen);
        int64_t left = deadline - s->host->mono_us();
        if (st != OBX_OK || *n > 0 || left <= 0)
            return st;
        int64_t nap = s->poll_us < left ? s->poll_us : left;
        struct timespec ts = {(time_t)(nap / 1000000),
                              (long)(nap % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Write `text` to dir/name atomically (a temporary file, fsync, rename). */
static int skel_put(int dir, const char *name, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -1;
    close(fd);
    if (rc == 0 && renameat(dir, tmp, dir, name) == 0)
        return 0;
    unlinkat(dir, tmp, 0);
    return -1;
}

static int skel_unlink(int dir, const char *name)
{
    return unlinkat(dir, name, 0) == 0 || errno == ENOENT ? 0 : -1;
}

/* Drop settled events from the claimed list and free them. */
static void skel_forget(skel_store *s, obx_event *ev)
{
    for (size_t i = 0; i < s->n_claimed; i++)
        if (&s->claimed[i]->ev == ev) {
            skel_free(s->claimed[i]);
            s->claimed[i] = s->claimed[--s->n_claimed];
            return;
        }
}

/* Settle ops: do every file operation first, each one harmless when
 * repeated (ENOENT is done already), and free nothing unless all of them
 * worked: on an error the engine calls again with the same events. */
static obx_status skel_ack(void *inst, obx_event *const *events, size_t n,
                           char *errstr, size_t errlen)
{
    skel_store *s = inst;
    char retry[512];
    for (size_t i = 0; i < n; i++) {
        const char *file = ((skel_event *)events[i])->file;
        snprintf(retry, sizeof retry, "%s.retry", file);
        if (skel_unlink(s->dir, file) != 0 || skel_unlink(s->dir, retry) != 0)
            return skel_err(OBX_UNAVAILABLE, errstr, errlen, "ack", file);
    }
    for (size_t i = 0; i < n; i++)
        skel_forget(s, events[i]);
    return OBX_OK;
}

static obx_status skel_release(void *inst, const obx_release *items, size_t n,
                               char *errstr, size_t errlen)
{
    skel_store *s = inst;
    char name[512], text[1024], last[512];
    for (size_t i = 0; i < n; i++) {
        const obx_release *r = &items[i];
        /* From the claimed record, not the file: a repeated call must not
         * count the attempt twice. */
        uint32_t attempts = r->event->attempts + (r->counts_as_attempt ? 1 : 0);
        snprintf(name, sizeof name, "%s.retry", ((skel_event *)r->event)->file);
        /* no error given: the last one stays (store.h) */
        if (!r->error)
            skel_last_error(s->dir, name, last, sizeof last);
        snprintf(text, sizeof text, "%u %lld\n%s\n", attempts,
                 (long long)r->retry_at_us, r->error ? r->error : last);
        if (skel_put(s->dir, name, text) != 0)
            return skel_err(OBX_UNAVAILABLE, errstr, errlen, "release", name);
    }
    for (size_t i = 0; i < n; i++)
        skel_forget(s, items[i].event);
    return OBX_OK;
}

static obx_status skel_bury(void *inst, const obx_burial *items, size_t n,
                            char *errstr, size_t errlen)
{
    skel_store *s = inst;
    char why[512], retry[512], text[4096];
    for (size_t i = 0; i < n; i++) {
        const obx_burial *b = &items[i];
        const char *file = ((skel_event *)b->event)->file;
        snprintf(why, sizeof why, "%s.why", file);
        snprintf(retry, sizeof retry, "%s.retry", file);
        snprintf(text, sizeof text,
                 "attempts: %u\ndestination: %s\ndead_at: %lld\nreason: %s\n",
                 b->event->attempts, b->destination ? b->destination : "",
                 (long long)s->host->now_us(), b->reason);
        struct stat sb;
        /* The reason first, then the move (already moved: done). */
        if (skel_put(s->dead, why, text) != 0 ||
            (renameat(s->dir, file, s->dead, file) != 0 &&
             !(errno == ENOENT && fstatat(s->dead, file, &sb, 0) == 0)) ||
            skel_unlink(s->dir, retry) != 0)
            return skel_err(OBX_UNAVAILABLE, errstr, errlen, "bury", file);
    }
    for (size_t i = 0; i < n; i++)
        skel_forget(s, items[i].event);
    return OBX_OK;
}

/* Opens (creating) store.dir and dead/ and takes the directory's lease.
 * Errors: UNAVAILABLE while another instance holds it (the engine retries:
 * a hot standby), CONFIG when the directory cannot be used. */
static obx_status skel_open(const obx_host *host, const void *config,
                            void **inst, char *errstr, size_t errlen)
{
    const skel_conf *c = config;
    skel_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    s->host = host;
    s->poll_us = c->poll_ms * 1000;
    s->dead = s->lock = -1;
    obx_status st = OBX_CONFIG;
    mkdir(c->dir, 0777); /* EEXIST is fine; anything else fails below */
    if ((s->dir = open(c->dir, O_RDONLY | O_DIRECTORY)) < 0)
        skel_err(st, errstr, errlen, "opening", c->dir);
    else if (mkdirat(s->dir, "dead", 0777) != 0 && errno != EEXIST)
        skel_err(st, errstr, errlen, "creating dead/ in", c->dir);
    else if ((s->dead = openat(s->dir, "dead", O_RDONLY | O_DIRECTORY)) < 0 ||
             (s->lock = openat(s->dir, ".lock", O_RDWR | O_CREAT, 0644)) < 0)
        skel_err(st, errstr, errlen, "opening dead/ or .lock in", c->dir);
    else if (flock(s->lock, LOCK_EX | LOCK_NB) != 0)
        skel_err(st = errno == EWOULDBLOCK ? OBX_UNAVAILABLE : OBX_CONFIG,
                 errstr, errlen, "another instance holds", c->dir);
    else
        st = OBX_OK;
    if (st != OBX_OK) {
        if (s->dir >= 0)
            close(s->dir);
        if (s->dead >= 0)
            close(s->dead);
        if (s->lock >= 0)
            close(s->lock);
        free(s);
        return st;
    }
    *inst = s;
    return OBX_OK;
}

/* Unsettled claims are simply forgotten: their files are still pending,
 * and the next owner of the lock (closing it releases it) claims them. */
static void skel_close(void *inst)
{
    skel_store *s = inst;
    for (size_t i = 0; i < s->n_claimed; i++)
        skel_free(s->claimed[i]);
    free(s->claimed);
    close(s->dead);
    close(s->dir);
    close(s->lock);
    free(s);
}

static obx_status skel_stats(void *inst, obx_store_stats *st, char *errstr,
                             size_t errlen)
{
    skel_store *s = inst;
    size_t n, n_dead;
    char **names = skel_list(s->dir, &n), **dead = skel_list(s->dead, &n_dead);
    obx_status rc = OBX_OK;
    if (!names || !dead)
        rc = skel_err(OBX_UNAVAILABLE, errstr, errlen, "listing", "store.dir");
    else {
        st->pending = n;
        st->dead = n_dead;
        struct stat sb; /* names sort in commit order: the first is oldest */
        if (n && fstatat(s->dir, names[0], &sb, 0) == 0)
            st->oldest_pending_us = (int64_t)sb.st_mtim.tv_sec * 1000000 +
                                    sb.st_mtim.tv_nsec / 1000;
    }
    skel_free_names(names, n);
    skel_free_names(dead, n_dead);
    return rc;
}

/* There is no DDL: say what to create, and refuse a dir that is a file. */
static obx_status skel_schema(const obx_host *host, const void *config,
                              obx_emit_fn emit, void *ctx, char *errstr,
                              size_t errlen)
{
    const skel_conf *c = config;
    struct stat sb;
    if (stat(c->dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        snprintf(errstr, errlen, "store.dir '%s' exists and is not a directory",
                 c->dir);
        return OBX_CONFIG;
    }
    char line[4200];
    snprintf(line, sizeof line,
             "# store_skeleton keeps events as files; open() creates these:\n"
             "mkdir -p '%s/dead'",
             c->dir);
    emit(ctx, line);
    return OBX_OK;
}

/* n demo events, order-<i> each, committed one rename at a time. */
static obx_status skel_demo(void *inst, uint64_t n, char *errstr, size_t errlen)
{
    skel_store *s = inst;
    char name[128], text[256];
    long long t = (long long)s->host->now_us();
    for (uint64_t i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "%020lld-%06llu.evt", t,
                 (unsigned long long)i);
        snprintf(text, sizeof text,
                 "type: OrderCreated\naggregate_type: order\n"
                 "aggregate_id: order-%llu\n\n{\"order\":%llu}",
                 (unsigned long long)i, (unsigned long long)i);
        if (skel_put(s->dir, name, text) != 0)
            return skel_err(OBX_UNAVAILABLE, errstr, errlen, "writing", name);
    }
    return OBX_OK;
}

static const obx_store_ops skel_ops = {
    .struct_size = sizeof(obx_store_ops),
    .flags = OBX_STORE_ORDERED_CLAIM,
    .open = skel_open,
    .close = skel_close,
    .claim = skel_claim,
    .ack = skel_ack,
    .release = skel_release,
    .bury = skel_bury,
    .stats = skel_stats,
    .demo = skel_demo,
    .schema_v2 = skel_schema,
};

OBX_STORE_PLUGIN("skeleton", "example: a directory of event files", "1.0.0",
                 skel_options, skel_conf, skel_ops)
