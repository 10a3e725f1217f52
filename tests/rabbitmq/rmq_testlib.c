/* See rmq_testlib.h. */
#include "rmq_testlib.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include <amqp_tcp_socket.h>
#include <cmocka.h>

#define SCRIPTS OBX_SOURCE_DIR "/tests/rabbitmq"

int64_t rmqt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rmqt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *rmqt_url_of(const char *state_dir)
{
    static char url[512];
    char path[1024];
    snprintf(path, sizeof path, "%s/rmq_url", state_dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_msg("no RabbitMQ: %s is missing (the rabbitmq fixture, "
                 "tests/rabbitmq/rmq_start.sh, did not start the server)",
                 path);
    if (!fgets(url, sizeof url, fp))
        url[0] = '\0';
    fclose(fp);
    url[strcspn(url, "\r\n")] = '\0';
    assert_true(strncmp(url, "amqp://", 7) == 0);
    return url;
}

const char *rmqt_url(void)
{
    return rmqt_url_of(RMQT_STATE_DIR);
}

const char *rmqt_password(const char *url)
{
    static char pw[128];
    const char *c = strchr(url + 7, ':');
    const char *at = strchr(url + 7, '@');
    assert_non_null(c);
    assert_non_null(at);
    snprintf(pw, sizeof pw, "%.*s", (int)(at - c - 1), c + 1);
    return pw;
}

const char *rmqt_server_start(const char *state_dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash %s/rmq_start.sh '%s' >&2", SCRIPTS,
             state_dir);
    if (system(cmd) != 0)
        fail_msg("rmq_start.sh %s failed", state_dir);
    return rmqt_url_of(state_dir);
}

void rmqt_server_stop(const char *state_dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash %s/rmq_stop.sh '%s' >&2", SCRIPTS,
             state_dir);
    if (system(cmd) != 0)
        fail_msg("rmq_stop.sh %s failed", state_dir);
}

int rmqt_ctl(const char *state_dir, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "bash %s/rmq_ctl.sh '%s' %s >&2", SCRIPTS,
             state_dir, args);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

char *rmqt_ctl_output(const char *state_dir, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "bash %s/rmq_ctl.sh '%s' %s", SCRIPTS, state_dir,
             args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int rc = pclose(p);
    if (rc != 0)
        fail_msg("rmq_ctl.sh %s failed (%d): %s", args, rc, out);
    return out;
}

static void check_reply(amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        fail_msg("%s: %s", what, amqp_error_string2(r.library_error));
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        fail_msg("%s: channel closed: %u %.*s", what, m->reply_code,
                 (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *m = r.reply.decoded;
        fail_msg("%s: connection closed: %u %.*s", what, m->reply_code,
                 (int)m->reply_text.len, (char *)m->reply_text.bytes);
    }
    fail_msg("%s: server exception %08x", what, r.reply.id);
}

amqp_connection_state_t rmqt_connect(const char *url)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", url);
    struct amqp_connection_info ci;
    assert_int_equal(amqp_parse_url(buf, &ci), AMQP_STATUS_OK);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    assert_non_null(s);
    int rc = amqp_socket_open(s, ci.host, ci.port);
    if (rc != AMQP_STATUS_OK)
        fail_msg("test connection to %s:%d: %s", ci.host, ci.port,
                 amqp_error_string2(rc));
    amqp_rpc_reply_t r = amqp_login(
        c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        fail_msg("test login failed");
    amqp_channel_open(c, 1);
    check_reply(c, "channel.open");
    return c;
}

void rmqt_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

void rmqt_queue(const char *url, const char *queue)
{
    amqp_connection_state_t c = rmqt_connect(url);
    amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0,
                       amqp_empty_table);
    check_reply(c, "queue.declare");
    amqp_queue_purge(c, 1, amqp_cstring_bytes(queue));
    check_reply(c, "queue.purge");
    rmqt_close(c);
}

void rmqt_bind(const char *url, const char *queue, const char *exchange,
               const char *type, const char *key)
{
    amqp_connection_state_t c = rmqt_connect(url);
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(exchange),
                          amqp_cstring_bytes(type), 0, 1, 0, 0,
                          amqp_empty_table);
    check_reply(c, "exchange.declare");
    amqp_queue_bind(c, 1, amqp_cstring_bytes(queue),
                    amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
                    amqp_empty_table);
    check_reply(c, "queue.bind");
    rmqt_close(c);
}

void rmqt_exchange_delete(const char *url, const char *exchange)
{
    amqp_connection_state_t c = rmqt_connect(url);
    amqp_exchange_delete(c, 1, amqp_cstring_bytes(exchange), 0);
    check_reply(c, "exchange.delete");
    rmqt_close(c);
}

uint32_t rmqt_queue_depth(const char *url, const char *queue)
{
    amqp_connection_state_t c = rmqt_connect(url);
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    check_reply(c, "queue.declare passive");
    uint32_t n = ok->message_count;
    rmqt_close(c);
    return n;
}

static char *dup_bytes(amqp_bytes_t b)
{
    char *s = malloc(b.len + 1);
    memcpy(s, b.bytes, b.len);
    s[b.len] = '\0';
    return s;
}

static char *prop(const amqp_basic_properties_t *p, amqp_flags_t flag,
                  amqp_bytes_t b)
{
    return p->_flags & flag ? dup_bytes(b) : NULL;
}

static void keep(rmqt_msgs *out, size_t *cap, const amqp_envelope_t *e)
{
    if (out->n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        out->items = realloc(out->items, *cap * sizeof *out->items);
    }
    rmqt_msg *m = &out->items[out->n++];
    memset(m, 0, sizeof *m);
    const amqp_basic_properties_t *p = &e->message.properties;
    m->exchange = dup_bytes(e->exchange);
    m->routing_key = dup_bytes(e->routing_key);
    m->message_id = prop(p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id);
    m->type = prop(p, AMQP_BASIC_TYPE_FLAG, p->type);
    m->app_id = prop(p, AMQP_BASIC_APP_ID_FLAG, p->app_id);
    m->content_type = prop(p, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type);
    m->timestamp = p->_flags & AMQP_BASIC_TIMESTAMP_FLAG ? p->timestamp : 0;
    m->delivery_mode =
        p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG ? p->delivery_mode : 0;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        m->n_headers = (size_t)p->headers.num_entries;
        m->headers = calloc(m->n_headers + 1, sizeof *m->headers);
        for (size_t i = 0; i < m->n_headers; i++) {
            const amqp_table_entry_t *h = &p->headers.entries[i];
            m->headers[i].name = dup_bytes(h->key);
            if (h->value.kind == AMQP_FIELD_KIND_UTF8 ||
                h->value.kind == AMQP_FIELD_KIND_BYTES)
                m->headers[i].value = dup_bytes(h->value.value.bytes);
        }
    }
    m->body = dup_bytes(e->message.body);
    m->body_len = e->message.body.len;
}

rmqt_msgs rmqt_consume(const char *url, const char *queue, size_t want,
                       int quiet_ms, int timeout_ms)
{
    rmqt_msgs out = {0};
    size_t cap = 0;
    amqp_connection_state_t c = rmqt_connect(url);
    amqp_basic_qos(c, 1, 0, 2000, 0);
    check_reply(c, "basic.qos");
    amqp_basic_consume(c, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1,
                       0, amqp_empty_table);
    check_reply(c, "basic.consume");
    int64_t end = rmqt_now_ms() + timeout_ms;
    int64_t last = rmqt_now_ms();
    for (;;) {
        int64_t now = rmqt_now_ms();
        if (now > end || (out.n >= want && now - last >= quiet_ms))
            break;
        struct timeval tv = {0, 50 * 1000};
        amqp_envelope_t e;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &e, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            continue;
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            fail_msg("consuming %s failed", queue);
        keep(&out, &cap, &e);
        amqp_destroy_envelope(&e);
        last = rmqt_now_ms();
    }
    rmqt_close(c);
    return out;
}

void rmqt_msgs_free(rmqt_msgs *m)
{
    for (size_t i = 0; i < m->n; i++) {
        rmqt_msg *x = &m->items[i];
        free(x->exchange);
        free(x->routing_key);
        free(x->message_id);
        free(x->type);
        free(x->app_id);
        free(x->content_type);
        for (size_t j = 0; j < x->n_headers; j++) {
            free(x->headers[j].name);
            free(x->headers[j].value);
        }
        free(x->headers);
        free(x->body);
    }
    free(m->items);
    m->items = NULL;
    m->n = 0;
}

const char *rmqt_header_value(const rmqt_msg *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (strcmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

long rmqt_seq(const rmqt_msg *m)
{
    const char *p = strstr(m->body, "\"seq\":");
    if (!p)
        fail_msg("no seq in message body %.80s", m->body);
    return strtol(p + 6, NULL, 10);
}

typedef struct key_last {
    char *key;
    long seq;
} key_last;

size_t rmqt_assert_key_order(const rmqt_msgs *m)
{
    key_last *k = NULL;
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *key =
            rmqt_header_value(&m->items[i], "outbox-aggregate-id");
        assert_non_null(key);
        long seq = rmqt_seq(&m->items[i]);
        size_t j = 0;
        while (j < n && strcmp(k[j].key, key) != 0)
            j++;
        if (j == n) {
            k = realloc(k, (n + 1) * sizeof *k);
            k[n].key = strdup(key);
            k[n].seq = seq;
            n++;
            continue;
        }
        if (seq <= k[j].seq)
            fail_msg("key %s: seq %ld arrived after %ld", key, seq, k[j].seq);
        k[j].seq = seq;
    }
    for (size_t j = 0; j < n; j++)
        free(k[j].key);
    free(k);
    return n;
}
