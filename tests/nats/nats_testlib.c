#include "nats_testlib.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SCRIPTS OBX_SOURCE_DIR "/tests/nats"

int64_t nt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *read_first_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *r = fgets(buf, (int)len, f);
    fclose(f);
    if (r)
        buf[strcspn(buf, "\r\n")] = '\0';
    return r;
}

const char *nt_fixture_url(void)
{
    static char url[256];
    if (!read_first_line(NT_STATE_DIR "/nats_url", url, sizeof url))
        fail_msg("no nats-server: %s/nats_url is missing (the ctest fixture "
                 "nats_server_start did not run or failed)",
                 NT_STATE_DIR);
    return url;
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("`%s` failed (%d)", cmd, rc);
}

const char *nt_server_start(const char *state_dir, const char *extra)
{
    static char url[256];
    char path[4200];
    run("bash " SCRIPTS "/nats_start.sh '%s' %s >/dev/null", state_dir,
        extra ? extra : "");
    snprintf(path, sizeof path, "%s/nats_url", state_dir);
    if (!read_first_line(path, url, sizeof url))
        fail_msg("nats_start.sh wrote no %s", path);
    return url;
}

void nt_server_kill(const char *state_dir)
{
    run("bash " SCRIPTS "/nats_kill.sh '%s'", state_dir);
}

void nt_server_restart(const char *state_dir)
{
    run("OBX_NATS_REUSE=1 bash " SCRIPTS "/nats_start.sh '%s' >/dev/null",
        state_dir);
}

void nt_server_restart_with(const char *state_dir, const char *extra)
{
    run("OBX_NATS_REUSE=1 bash " SCRIPTS "/nats_start.sh '%s' %s >/dev/null",
        state_dir, extra);
}

void nt_server_stop(const char *state_dir)
{
    /* A test's own server holds nothing worth a graceful shutdown (which
     * takes nats-server about two seconds): SIGKILL, then clean up. */
    run("{ bash " SCRIPTS "/nats_kill.sh '%s' 2>/dev/null || true; } && "
        "bash " SCRIPTS "/nats_stop.sh '%s'",
        state_dir, state_dir);
}

int nt_server_pid(const char *state_dir)
{
    char path[4200], line[256];
    snprintf(path, sizeof path, "%s/nats_state", state_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int pid = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "PID='", 5) == 0)
            pid = atoi(line + 5);
    fclose(f);
    assert_true(pid > 0);
    return pid;
}

/* Whether every thread of pid is in state T (stopped). */
static bool all_stopped(int pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool all = true;
    struct dirent *e;
    while (all && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512], buf[512];
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        all = rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
    }
    closedir(d);
    return all;
}

void nt_server_freeze(const char *state_dir)
{
    int pid = nt_server_pid(state_dir);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int64_t end = nt_now_ms() + 5000;
    while (!all_stopped(pid)) {
        if (nt_now_ms() > end)
            fail_msg("nats-server %d did not stop", pid);
        nt_sleep_ms(1);
    }
}

void nt_server_thaw(const char *state_dir)
{
    kill(nt_server_pid(state_dir), SIGCONT);
}

nt_conn nt_connect(const char *url)
{
    nt_conn c = {0};
    natsStatus s = natsConnection_ConnectTo(&c.nc, url);
    if (s != NATS_OK)
        fail_msg("connect %s: %s", url, natsStatus_GetText(s));
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 5000;
    assert_int_equal(natsConnection_JetStream(&c.js, c.nc, &o), NATS_OK);
    return c;
}

void nt_close(nt_conn *c)
{
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    memset(c, 0, sizeof *c);
}

void nt_stream_create(const char *url, const char *name, const char *subjects,
                      int64_t dup_ms)
{
    nt_conn c = nt_connect(url);
    js_DeleteStream(c.js, name, NULL, NULL);
    char *copy = strdup(subjects), *save = NULL;
    const char *subj[16];
    int n = 0;
    for (char *t = strtok_r(copy, ",", &save); t && n < 16;
         t = strtok_r(NULL, ",", &save))
        subj[n++] = t;
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subj;
    sc.SubjectsLen = n;
    sc.Storage = js_FileStorage;
    sc.Duplicates = dup_ms * 1000000;
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_AddStream(&si, c.js, &sc, NULL, &code);
    if (s != NATS_OK)
        fail_msg("add stream %s: %s (%d)", name, natsStatus_GetText(s),
                 (int)code);
    jsStreamInfo_Destroy(si);
    free(copy);
    nt_close(&c);
}

void nt_stream_delete(const char *url, const char *name)
{
    nt_conn c = nt_connect(url);
    js_DeleteStream(c.js, name, NULL, NULL);
    nt_close(&c);
}

static jsStreamInfo *info(nt_conn *c, const char *name)
{
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, c->js, name, NULL, NULL) != NATS_OK)
        return NULL;
    return si;
}

int64_t nt_stream_count(const char *url, const char *name)
{
    nt_conn c = nt_connect(url);
    jsStreamInfo *si = info(&c, name);
    int64_t n = si ? (int64_t)si->State.Msgs : -1;
    jsStreamInfo_Destroy(si);
    nt_close(&c);
    return n;
}

int64_t nt_stream_dup_ms(const char *url, const char *name)
{
    nt_conn c = nt_connect(url);
    jsStreamInfo *si = info(&c, name);
    int64_t n = si ? si->Config->Duplicates / 1000000 : -1;
    jsStreamInfo_Destroy(si);
    nt_close(&c);
    return n;
}

static char *hdr(natsMsg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, name, &v) != NATS_OK || !v)
        return NULL;
    return strdup(v);
}

nt_msgs nt_read_stream(const char *url, const char *name, int idle_ms)
{
    nt_msgs out = {0};
    int64_t want = nt_stream_count(url, name);
    assert_true(want >= 0);
    nt_conn c = nt_connect(url);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = name;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    jsErrCode code = 0;
    natsStatus s = js_SubscribeSync(&sub, c.js, ">", NULL, &so, &code);
    if (s != NATS_OK)
        fail_msg("subscribe to stream %s: %s (%d)", name, natsStatus_GetText(s),
                 (int)code);
    natsSubscription_SetPendingLimits(sub, -1, -1);
    size_t cap = (size_t)want + 16;
    out.items = calloc(cap, sizeof *out.items);
    while ((int64_t)out.n < want) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, idle_ms) != NATS_OK)
            break;
        if (out.n == cap) {
            cap *= 2;
            out.items = realloc(out.items, cap * sizeof *out.items);
        }
        nt_msg *x = &out.items[out.n++];
        memset(x, 0, sizeof *x);
        x->subject = strdup(natsMsg_GetSubject(m));
        x->len = natsMsg_GetDataLength(m);
        x->data = calloc(1, (size_t)x->len + 1);
        memcpy(x->data, natsMsg_GetData(m), (size_t)x->len);
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
            x->seq = md->Sequence.Stream;
            jsMsgMetaData_Destroy(md);
        }
        x->msg_id = hdr(m, "Nats-Msg-Id");
        x->event_id = hdr(m, "outbox-event-id");
        x->event_type = hdr(m, "outbox-event-type");
        x->agg_type = hdr(m, "outbox-aggregate-type");
        x->agg_id = hdr(m, "outbox-aggregate-id");
        x->trace = hdr(m, "trace-id");
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    nt_close(&c);
    return out;
}

void nt_msgs_free(nt_msgs *m)
{
    for (size_t i = 0; i < m->n; i++) {
        nt_msg *x = &m->items[i];
        free(x->subject);
        free(x->data);
        free(x->msg_id);
        free(x->event_id);
        free(x->event_type);
        free(x->agg_type);
        free(x->agg_id);
        free(x->trace);
    }
    free(m->items);
    memset(m, 0, sizeof *m);
}

long nt_seq(const nt_msg *m)
{
    const char *p = strstr(m->data, "\"seq\":");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

size_t nt_assert_key_order(const nt_msgs *m)
{
    /* A small linear map from aggregate id to the last seq seen. */
    size_t cap = 1024, n = 0;
    char **ids = calloc(cap, sizeof *ids);
    long *last = calloc(cap, sizeof *last);
    for (size_t i = 0; i < m->n; i++) {
        const nt_msg *x = &m->items[i];
        assert_non_null(x->agg_id);
        size_t j = 0;
        while (j < n && strcmp(ids[j], x->agg_id) != 0)
            j++;
        if (j == n) {
            assert_true(n < cap);
            ids[n] = x->agg_id;
            last[n++] = -1;
        }
        long seq = nt_seq(x);
        if (seq <= last[j])
            fail_msg("key %s: seq %ld after %ld (stream seq %llu)", x->agg_id,
                     seq, last[j], (unsigned long long)x->seq);
        last[j] = seq;
    }
    free(ids);
    free(last);
    return n;
}
