#include "nats_stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nats_conn.h"
#include "nats_errors.h"

/* The next token of *s (dot-separated) into [tok, len); false at end. */
static bool next_token(const char **s, const char **tok, size_t *len)
{
    if (!*s)
        return false;
    const char *dot = strchr(*s, '.');
    *tok = *s;
    *len = dot ? (size_t)(dot - *s) : strlen(*s);
    *s = dot ? dot + 1 : NULL;
    return true;
}

static bool tok_is(const char *tok, size_t len, const char *what)
{
    return len == strlen(what) && strncmp(tok, what, len) == 0;
}

bool natsb_subject_covers(const char *pattern, const char *subject)
{
    const char *p = pattern, *s = subject, *pt, *st;
    size_t pl, sl;
    for (;;) {
        bool hp = next_token(&p, &pt, &pl);
        bool hs = next_token(&s, &st, &sl);
        if (!hp || !hs)
            return !hp && !hs;
        if (tok_is(pt, pl, ">"))
            return true; /* the rest, whatever it is */
        if (tok_is(st, sl, ">"))
            return false; /* only > covers > */
        if (tok_is(pt, pl, "*"))
            continue; /* one token, a literal or * */
        if (tok_is(st, sl, "*") || pl != sl || strncmp(pt, st, pl) != 0)
            return false;
    }
}

bool natsb_js_answers(jsCtx *js)
{
    jsAccountInfo *ai = NULL;
    jsErrCode code = 0;
    natsStatus s = js_GetAccountInfo(&ai, js, NULL, &code);
    if (ai)
        jsAccountInfo_Destroy(ai);
    return s == NATS_OK;
}

static void fmt_ms(int64_t ms, char *out, size_t len)
{
    if (ms % 60000 == 0 && ms >= 60000)
        snprintf(out, len, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(out, len, "%" PRId64 "s", ms / 1000);
    else
        snprintf(out, len, "%" PRId64 "ms", ms);
}

static void warn_window(const obx_host *host, const char *stream,
                        int64_t window_ms)
{
    if (host->struct_size <
        offsetof(obx_host, retry_max_delay_ms) + sizeof(int64_t))
        return; /* a core older than ABI 1.1 does not say */
    int64_t wait = host->retry_max_delay_ms;
    if (wait <= 0 || window_ms >= wait)
        return;
    char a[32], b[32];
    fmt_ms(window_ms, a, sizeof a);
    fmt_ms(wait, b, sizeof b);
    host->log(host, OBX_LOG_WARN,
              "nats: stream %s keeps message ids for %s (its duplicate "
              "window) but an event may wait up to %s for a retry "
              "(retry.backoff): an event republished after the window is "
              "stored twice; raise the stream's duplicate window (nats "
              "stream edit %s --dupe-window %s) or lower retry.backoff",
              stream, a, b, stream, b);
}

static obx_status create(const obx_host *host, const natsb_config *c, jsCtx *js,
                         jsStreamInfo **si, char *errstr, size_t errlen)
{
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = (const char **)c->subjects.items;
    sc.SubjectsLen = (int)c->subjects.n;
    sc.Storage = js_FileStorage;
    sc.Duplicates = c->duplicate_window_ms * 1000000; /* nanoseconds */
    jsErrCode code = 0;
    natsStatus s = js_AddStream(si, js, &sc, NULL, &code);
    if (s == NATS_OK) {
        host->log(host, OBX_LOG_INFO,
                  "nats: created stream %s (file storage, %zu subject(s), "
                  "duplicate window %lld ms)",
                  c->stream, c->subjects.n, (long long)c->duplicate_window_ms);
        return OBX_OK;
    }
    char why[512];
    natsb_last_error(host, c, s, why, sizeof why);
    snprintf(errstr, errlen, "nats: cannot create stream %s: %s (code %d)",
             c->stream, why, (int)code);
    return natsb_is_server_wide(s) ? OBX_UNAVAILABLE : OBX_CONFIG;
}

/* Whether the stream's subjects capture every configured subject; names
 * the first one that is not in errstr. */
static bool captures(const natsb_config *c, const jsStreamConfig *sc,
                     char *errstr, size_t errlen)
{
    for (size_t i = 0; i < c->subjects.n; i++) {
        bool ok = false;
        for (int j = 0; j < sc->SubjectsLen && !ok; j++)
            ok = natsb_subject_covers(sc->Subjects[j], c->subjects.items[i]);
        if (ok)
            continue;
        char have[512] = "";
        size_t o = 0;
        for (int j = 0; j < sc->SubjectsLen && o < sizeof have; j++) {
            int w = snprintf(have + o, sizeof have - o, "%s%s", j ? ", " : "",
                             sc->Subjects[j]);
            o += w > 0 ? (size_t)w : 0;
        }
        snprintf(errstr, errlen,
                 "nats: stream %s does not capture subject %s (broker."
                 "subjects); it captures: %s",
                 c->stream, c->subjects.items[i], o ? have : "(nothing)");
        return false;
    }
    return true;
}

obx_status natsb_stream_check(const obx_host *host, const natsb_config *c,
                              jsCtx *js, bool warn, natsb_stream_state *st,
                              char *errstr, size_t errlen)
{
    *st = (natsb_stream_state){0};
    if (!c->stream || !*c->stream) {
        st->js_answers = natsb_js_answers(js);
        if (st->js_answers)
            return OBX_OK;
        snprintf(errstr, errlen,
                 "nats: JetStream does not answer (is nats-server running "
                 "with -js? for plain subjects set broker.mode = core)");
        return OBX_UNAVAILABLE;
    }
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_GetStreamInfo(&si, js, c->stream, NULL, &code);
    if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
        st->js_answers = true;
        if (c->create_stream) {
            obx_status cs = create(host, c, js, &si, errstr, errlen);
            if (cs != OBX_OK)
                return cs;
            st->created = true;
        } else {
            st->missing = true;
            snprintf(errstr, errlen,
                     "nats: stream %s does not exist: create it (nats stream "
                     "add %s --subjects '<subjects>' --storage file "
                     "--dupe-window 2m) or set broker.create_stream = true",
                     c->stream, c->stream);
            return OBX_UNAVAILABLE;
        }
    } else if (s != NATS_OK) {
        char why[512];
        natsb_last_error(host, c, s, why, sizeof why);
        snprintf(errstr, errlen,
                 "nats: cannot look up stream %s: %s (is JetStream enabled?)",
                 c->stream, why);
        return OBX_UNAVAILABLE;
    }
    st->js_answers = true;
    obx_status ret = OBX_OK;
    if (!captures(c, si->Config, errstr, errlen))
        ret = OBX_CONFIG;
    else if (warn)
        warn_window(host, c->stream, si->Config->Duplicates / 1000000);
    jsStreamInfo_Destroy(si);
    return ret;
}
