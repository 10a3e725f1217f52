#include "nats_conn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool set(const char *s)
{
    return s && *s;
}

static bool url_ok(const char *u)
{
    return strncmp(u, "nats://", 7) == 0 || strncmp(u, "tls://", 6) == 0;
}

obx_status natsb_conf_check(const natsb_config *c, char *errstr, size_t errlen)
{
    if (c->servers.n == 0) {
        snprintf(errstr, errlen,
                 "broker.servers: at least one nats://host:port or "
                 "tls://host:port is required");
        return OBX_CONFIG;
    }
    for (size_t i = 0; i < c->servers.n; i++)
        if (!url_ok(c->servers.items[i])) {
            snprintf(errstr, errlen,
                     "broker.servers: entry %zu is not a nats:// or tls:// "
                     "URL",
                     i + 1);
            return OBX_CONFIG;
        }
    int ways = (set(c->user) || set(c->password)) + set(c->token) +
               (set(c->nkey) || set(c->nkey_seed_file)) + set(c->creds_file);
    if (ways > 1) {
        snprintf(errstr, errlen,
                 "broker: set one way to authenticate: user + password, "
                 "token, nkey + nkey_seed_file, or creds_file");
        return OBX_CONFIG;
    }
    if (set(c->password) && !set(c->user)) {
        snprintf(errstr, errlen, "broker.password needs broker.user");
        return OBX_CONFIG;
    }
    if (set(c->nkey) != set(c->nkey_seed_file)) {
        snprintf(errstr, errlen,
                 "broker.nkey (the public key) and broker.nkey_seed_file go "
                 "together");
        return OBX_CONFIG;
    }
    if (set(c->tls_cert) != set(c->tls_key)) {
        snprintf(errstr, errlen,
                 "broker.tls_cert and broker.tls_key go together");
        return OBX_CONFIG;
    }
    if (c->max_in_flight < 1) {
        snprintf(errstr, errlen, "broker.max_in_flight must be at least 1");
        return OBX_CONFIG;
    }
    if (c->create_stream && (!set(c->stream) || c->subjects.n == 0)) {
        snprintf(errstr, errlen,
                 "broker.create_stream needs broker.stream and "
                 "broker.subjects (what the stream captures)");
        return OBX_CONFIG;
    }
    if (c->subjects.n > 0 && !set(c->stream)) {
        snprintf(errstr, errlen,
                 "broker.subjects names what broker.stream must capture: "
                 "set broker.stream too");
        return OBX_CONFIG;
    }
    return OBX_OK;
}

/* Replace every occurrence of secret in [in] by "<secret>". */
static void mask_value(const char *in, const char *secret, char *out,
                       size_t outlen)
{
    size_t vlen = secret ? strlen(secret) : 0, o = 0;
    while (*in && o + 1 < outlen) {
        if (vlen && strncmp(in, secret, vlen) == 0) {
            int w = snprintf(out + o, outlen - o, "<secret>");
            o += w > 0 ? (size_t)w : 0;
            in += vlen;
            continue;
        }
        out[o++] = *in++;
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

void natsb_mask(const obx_host *host, const natsb_config *c, const char *msg,
                char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    char a[1024], b[1024];
    mask_value(msg, c->password, a, sizeof a);
    mask_value(a, c->token, b, sizeof b);
    host->mask(b, out, outlen);
}

void natsb_servers_str(const obx_host *host, const natsb_config *c, char *out,
                       size_t outlen)
{
    char all[1024] = "";
    size_t o = 0;
    for (size_t i = 0; i < c->servers.n && o < sizeof all; i++) {
        int w = snprintf(all + o, sizeof all - o, "%s%s", i ? "," : "",
                         c->servers.items[i]);
        o += w > 0 ? (size_t)w : 0;
    }
    natsb_mask(host, c, all, out, outlen);
}

void natsb_last_error(const obx_host *host, const natsb_config *c, natsStatus s,
                      char *out, size_t outlen)
{
    natsStatus last = NATS_OK;
    const char *detail = nats_GetLastError(&last);
    char raw[1024];
    if (detail && *detail && last == s)
        snprintf(raw, sizeof raw, "%s (%s)", natsStatus_GetText(s), detail);
    else
        snprintf(raw, sizeof raw, "%s", natsStatus_GetText(s));
    natsb_mask(host, c, raw, out, outlen);
}

/* One natsOptions_* call; on failure, errstr names what was refused. */
#define TRY(what, call)                                                        \
    do {                                                                       \
        natsStatus s_ = (call);                                                \
        if (s_ != NATS_OK) {                                                   \
            char why_[512];                                                    \
            natsb_last_error(host, c, s_, why_, sizeof why_);                  \
            snprintf(errstr, errlen, "broker: %s: %s", what, why_);            \
            return s_ == NATS_NO_MEMORY ? OBX_NOMEM : OBX_CONFIG;              \
        }                                                                      \
    } while (0)

static bool any_tls(const natsb_config *c)
{
    if (set(c->tls_ca) || set(c->tls_cert) || set(c->tls_hostname))
        return true;
    for (size_t i = 0; i < c->servers.n; i++)
        if (strncmp(c->servers.items[i], "tls://", 6) == 0)
            return true;
    return false;
}

static obx_status apply_auth(const obx_host *host, const natsb_config *c,
                             natsOptions *o, char *errstr, size_t errlen)
{
    if (set(c->user))
        TRY("user/password", natsOptions_SetUserInfo(o, c->user, c->password));
    if (set(c->token))
        TRY("token", natsOptions_SetToken(o, c->token));
    if (set(c->nkey))
        TRY("nkey_seed_file",
            natsOptions_SetNKeyFromSeed(o, c->nkey, c->nkey_seed_file));
    if (set(c->creds_file))
        TRY("creds_file",
            natsOptions_SetUserCredentialsFromFiles(o, c->creds_file, NULL));
    return OBX_OK;
}

static obx_status apply_tls(const obx_host *host, const natsb_config *c,
                            natsOptions *o, char *errstr, size_t errlen)
{
    if (!any_tls(c))
        return OBX_OK;
    TRY("TLS", natsOptions_SetSecure(o, true));
    if (set(c->tls_ca))
        TRY("tls_ca", natsOptions_LoadCATrustedCertificates(o, c->tls_ca));
    if (set(c->tls_cert))
        TRY("tls_cert/tls_key",
            natsOptions_LoadCertificatesChain(o, c->tls_cert, c->tls_key));
    if (set(c->tls_hostname))
        TRY("tls_hostname",
            natsOptions_SetExpectedHostname(o, c->tls_hostname));
    return OBX_OK;
}

static obx_status apply_all(const obx_host *host, const natsb_config *c,
                            bool retry, const natsb_callbacks *cb,
                            natsOptions *o, char *errstr, size_t errlen)
{
    char name[256];
    snprintf(name, sizeof name, "outbox-relay/%s",
             host->pipeline ? host->pipeline : "-");
    TRY("servers", natsOptions_SetServers(o, (const char **)c->servers.items,
                                          (int)c->servers.n));
    TRY("name", natsOptions_SetName(o, name));
    TRY("connect_timeout", natsOptions_SetTimeout(o, c->connect_timeout_ms));
    TRY("reconnect", natsOptions_SetAllowReconnect(o, true));
    TRY("reconnect", natsOptions_SetMaxReconnect(o, -1)); /* forever */
    TRY("reconnect_wait",
        natsOptions_SetReconnectWait(o, c->reconnect_wait_ms));
    /* Try the servers in the order given; a server restart is noticed
     * within a few seconds. */
    TRY("servers", natsOptions_SetNoRandomize(o, true));
    TRY("ping", natsOptions_SetPingInterval(o, 2000));
    TRY("ping", natsOptions_SetMaxPingsOut(o, 2));
    /* PubAcks come on our own inbox: never let cnats drop them quietly. */
    TRY("pending", natsOptions_SetMaxPendingMsgs(o, 1 << 20));
    obx_status st = apply_auth(host, c, o, errstr, errlen);
    if (st == OBX_OK)
        st = apply_tls(host, c, o, errstr, errlen);
    if (st != OBX_OK)
        return st;
    if (retry)
        TRY("retry",
            natsOptions_SetRetryOnFailedConnect(
                o, true, cb ? cb->connected : NULL, cb ? cb->closure : NULL));
    if (!cb)
        return OBX_OK;
    if (cb->disconnected)
        TRY("callbacks",
            natsOptions_SetDisconnectedCB(o, cb->disconnected, cb->closure));
    if (cb->reconnected)
        TRY("callbacks",
            natsOptions_SetReconnectedCB(o, cb->reconnected, cb->closure));
    if (cb->closed)
        TRY("callbacks", natsOptions_SetClosedCB(o, cb->closed, cb->closure));
    if (cb->error)
        TRY("callbacks",
            natsOptions_SetErrorHandler(o, cb->error, cb->closure));
    return OBX_OK;
}

obx_status natsb_opts_build(const obx_host *host, const natsb_config *c,
                            bool retry, const natsb_callbacks *cb,
                            natsOptions **out, char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status st = natsb_conf_check(c, errstr, errlen);
    if (st != OBX_OK)
        return st;
    natsOptions *o = NULL;
    if (natsOptions_Create(&o) != NATS_OK) {
        snprintf(errstr, errlen, "nats: cannot create options (out of memory)");
        return OBX_NOMEM;
    }
    st = apply_all(host, c, retry, cb, o, errstr, errlen);
    if (st != OBX_OK) {
        natsOptions_Destroy(o);
        return st;
    }
    *out = o;
    return OBX_OK;
}
