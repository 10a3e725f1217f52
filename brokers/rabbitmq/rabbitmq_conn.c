/* Connection, login, channels: see the header. */
#include "rabbitmq_conn.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include "rabbitmq_errors.h"

obx_status rmq_target_parse(const rmq_config *c, rmq_target *t, char *errstr,
                            size_t errlen)
{
    memset(t, 0, sizeof *t);
    const char *url = c->url ? c->url : "";
    if (strlen(url) >= sizeof t->buf) {
        snprintf(errstr, errlen, "rabbitmq: broker.url is too long");
        return OBX_CONFIG;
    }
    memcpy(t->buf, url, strlen(url) + 1);
    struct amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (strncmp(url, "amqp://", 7) != 0 && strncmp(url, "amqps://", 8) != 0) {
        snprintf(errstr, errlen,
                 "rabbitmq: broker.url must start with amqp:// or amqps://");
        return OBX_CONFIG;
    }
    if (amqp_parse_url(t->buf, &info) != AMQP_STATUS_OK || !info.host ||
        !*info.host) {
        snprintf(errstr, errlen,
                 "rabbitmq: broker.url is not a valid AMQP URL "
                 "(amqp[s]://user:password@host:port/vhost)");
        return OBX_CONFIG;
    }
    t->user = info.user;
    t->password = c->password && *c->password ? c->password : info.password;
    t->host = info.host;
    t->vhost = info.vhost && *info.vhost ? info.vhost : "/";
    t->port = info.port;
    t->tls = info.ssl != 0;
    return OBX_OK;
}

void rmq_target_show(const rmq_target *t, char *buf, size_t len)
{
    const char *vhost = t->vhost && strcmp(t->vhost, "/") != 0 ? t->vhost : "";
    snprintf(buf, len, "%s://%s@%s:%d/%s", t->tls ? "amqps" : "amqp",
             t->user ? t->user : "", t->host ? t->host : "", t->port, vhost);
}

obx_status rmq_reply(amqp_rpc_reply_t r, const char *what, char *errstr,
                     size_t errlen)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return OBX_OK;
    case AMQP_RESPONSE_NONE:
        snprintf(errstr, errlen, "%s: no reply", what);
        return OBX_UNAVAILABLE;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(errstr, errlen, "%s: %s", what,
                 amqp_error_string2(r.library_error));
        return rmq_classify_library(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION: break;
    }
    bool channel = r.reply.id == AMQP_CHANNEL_CLOSE_METHOD;
    uint16_t code = 0;
    amqp_bytes_t text = {0, NULL};
    if (channel && r.reply.decoded) {
        const amqp_channel_close_t *m = r.reply.decoded;
        code = m->reply_code;
        text = m->reply_text;
    } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD && r.reply.decoded) {
        const amqp_connection_close_t *m = r.reply.decoded;
        code = m->reply_code;
        text = m->reply_text;
    }
    const char *hint = rmq_hint(channel, code, text.bytes, text.len);
    snprintf(errstr, errlen, "%s: server closed the %s: %u %.*s%s%s", what,
             channel ? "channel" : "connection", code, (int)text.len,
             (const char *)text.bytes, hint ? "; " : "", hint ? hint : "");
    return rmq_classify_close(channel, code, text.bytes, text.len);
}

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static obx_status tls_setup(const rmq_config *c, amqp_socket_t *s, char *errstr,
                            size_t errlen)
{
    if (c->tls_ca_file && *c->tls_ca_file &&
        amqp_ssl_socket_set_cacert(s, c->tls_ca_file) != AMQP_STATUS_OK) {
        snprintf(errstr, errlen,
                 "rabbitmq: cannot use broker.tls.ca_file %s (missing, "
                 "unreadable or not PEM)",
                 c->tls_ca_file);
        return OBX_CONFIG;
    }
    bool cert = c->tls_cert_file && *c->tls_cert_file;
    bool key = c->tls_key_file && *c->tls_key_file;
    if (cert != key) {
        snprintf(errstr, errlen,
                 "rabbitmq: broker.tls.cert_file and broker.tls.key_file "
                 "go together");
        return OBX_CONFIG;
    }
    if (cert && amqp_ssl_socket_set_key(s, c->tls_cert_file, c->tls_key_file) !=
                    AMQP_STATUS_OK) {
        snprintf(errstr, errlen,
                 "rabbitmq: cannot use the client certificate %s with the "
                 "key %s",
                 c->tls_cert_file, c->tls_key_file);
        return OBX_CONFIG;
    }
    amqp_ssl_socket_set_verify_peer(s, c->tls_verify_peer);
    amqp_ssl_socket_set_verify_hostname(s, c->tls_verify_hostname);
    return OBX_OK;
}

/* Client properties: the connection name the management UI shows, and
 * the capabilities this plugin relies on. librabbitmq merges its own
 * (product, version, authentication_failure_close ...) with these. */
static amqp_rpc_reply_t login(amqp_connection_state_t conn, const rmq_config *c,
                              const rmq_target *t, const char *conn_name)
{
    amqp_table_entry_t caps[3];
    const char *cap_names[] = {"publisher_confirms", "connection.blocked",
                               "basic.nack"};
    for (size_t i = 0; i < 3; i++) {
        caps[i].key = amqp_cstring_bytes(cap_names[i]);
        caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        caps[i].value.value.boolean = 1;
    }
    amqp_table_entry_t props[2];
    props[0].key = amqp_cstring_bytes("connection_name");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = amqp_cstring_bytes(conn_name);
    props[1].key = amqp_cstring_bytes("capabilities");
    props[1].value.kind = AMQP_FIELD_KIND_TABLE;
    props[1].value.value.table.num_entries = 3;
    props[1].value.value.table.entries = caps;
    amqp_table_t table = {2, props};
    int heartbeat_s = (int)((c->heartbeat_ms + 999) / 1000);
    return amqp_login_with_properties(
        conn, t->vhost, 0, (int)c->frame_max, heartbeat_s, &table,
        AMQP_SASL_METHOD_PLAIN, t->user ? t->user : "",
        t->password ? t->password : "");
}

obx_status rmq_conn_connect(const rmq_config *c, const rmq_target *t,
                            const char *conn_name, amqp_connection_state_t *out,
                            char *errstr, size_t errlen)
{
    *out = NULL;
    char shown[1024];
    rmq_target_show(t, shown, sizeof shown);
    amqp_connection_state_t conn = amqp_new_connection();
    if (!conn) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    amqp_socket_t *s =
        t->tls ? amqp_ssl_socket_new(conn) : amqp_tcp_socket_new(conn);
    if (!s) {
        amqp_destroy_connection(conn);
        snprintf(errstr, errlen, "rabbitmq: cannot create a %s socket",
                 t->tls ? "TLS" : "TCP");
        return t->tls ? OBX_CONFIG : OBX_NOMEM;
    }
    if (t->tls) {
        obx_status st = tls_setup(c, s, errstr, errlen);
        if (st != OBX_OK) {
            amqp_destroy_connection(conn);
            return st;
        }
    }
    struct timeval tv = tv_ms(c->connect_timeout_ms);
    amqp_set_handshake_timeout(conn, &tv);
    amqp_set_rpc_timeout(conn, &tv);
    int rc = amqp_socket_open_noblock(s, t->host, t->port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(errstr, errlen, "rabbitmq: cannot connect to %s: %s", shown,
                 amqp_error_string2(rc));
        amqp_destroy_connection(conn);
        return OBX_UNAVAILABLE;
    }
    char what[1100];
    snprintf(what, sizeof what, "rabbitmq: login to %s", shown);
    obx_status st =
        rmq_reply(login(conn, c, t, conn_name), what, errstr, errlen);
    if (st != OBX_OK) {
        amqp_destroy_connection(conn);
        return st == OBX_PERMANENT ? OBX_UNAVAILABLE : st;
    }
    *out = conn;
    return OBX_OK;
}

obx_status rmq_channel_open(amqp_connection_state_t conn, amqp_channel_t ch,
                            char *errstr, size_t errlen)
{
    char what[64];
    snprintf(what, sizeof what, "rabbitmq: opening channel %u", ch);
    amqp_channel_open(conn, ch);
    obx_status st = rmq_reply(amqp_get_rpc_reply(conn), what, errstr, errlen);
    if (st != OBX_OK)
        return OBX_UNAVAILABLE;
    snprintf(what, sizeof what, "rabbitmq: confirm.select on channel %u", ch);
    amqp_confirm_select(conn, ch);
    st = rmq_reply(amqp_get_rpc_reply(conn), what, errstr, errlen);
    return st == OBX_OK ? OBX_OK : OBX_UNAVAILABLE;
}

obx_status rmq_declare_exchange(amqp_connection_state_t conn, amqp_channel_t ch,
                                const char *name, const char *type,
                                bool passive, char *errstr, size_t errlen)
{
    char what[400];
    if (passive)
        snprintf(what, sizeof what, "rabbitmq: looking up exchange '%.255s'",
                 name);
    else
        snprintf(what, sizeof what, "rabbitmq: declaring %s exchange '%.255s'",
                 type, name);
    amqp_exchange_declare(conn, ch, amqp_cstring_bytes(name),
                          amqp_cstring_bytes(type), passive, 1, 0, 0,
                          amqp_empty_table);
    obx_status st = rmq_reply(amqp_get_rpc_reply(conn), what, errstr, errlen);
    return st == OBX_OK ? OBX_OK : OBX_UNAVAILABLE;
}

void rmq_disconnect(amqp_connection_state_t conn, bool graceful)
{
    if (!conn)
        return;
    if (graceful)
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}
