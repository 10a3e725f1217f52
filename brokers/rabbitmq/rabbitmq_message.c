/* Events -> AMQP basic properties. See the header for the mapping. */
#include "rabbitmq_message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

#define RMQ_SHORTSTR_MAX 255

static amqp_bytes_t bytes_of(const char *s)
{
    amqp_bytes_t b = {s ? strlen(s) : 0, (void *)s};
    return b;
}

static int reserve(rmq_message *m, size_t n)
{
    if (n <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 8;
    while (cap < n)
        cap *= 2;
    amqp_table_entry_t *e = realloc(m->entries, cap * sizeof *e);
    if (!e)
        return -1;
    m->entries = e;
    m->cap = cap;
    return 0;
}

static int too_long(const char *what, const char *s, char *errstr,
                    size_t errlen)
{
    snprintf(errstr, errlen,
             "rabbitmq: %s is %zu bytes, AMQP allows at most %d: the event "
             "cannot be sent",
             what, strlen(s), RMQ_SHORTSTR_MAX);
    return -1;
}

static void add_str(rmq_message *m, const char *name, const char *value)
{
    amqp_table_entry_t *e = &m->entries[m->props.headers.num_entries++];
    e->key = bytes_of(name);
    if (value) {
        e->value.kind = AMQP_FIELD_KIND_UTF8;
        e->value.value.bytes = bytes_of(value);
    } else {
        e->value.kind = AMQP_FIELD_KIND_VOID;
    }
}

int rmq_message_build(rmq_message *m, const obx_event *ev,
                      const char *content_type, const char *app_id,
                      char *errstr, size_t errlen)
{
    if (reserve(m, ev->n_headers + 4) != 0) {
        snprintf(errstr, errlen, "out of memory");
        return -2;
    }
    amqp_basic_properties_t *p = &m->props;
    memset(p, 0, sizeof *p);
    p->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                AMQP_BASIC_CONTENT_TYPE_FLAG;
    p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    if (content_type && *content_type)
        p->content_type = bytes_of(content_type);
    else if (obc_json_valid(ev->payload, ev->payload_len))
        p->content_type = bytes_of("application/json");
    else
        p->content_type = bytes_of("application/octet-stream");
    if (ev->event_id) {
        if (strlen(ev->event_id) > RMQ_SHORTSTR_MAX)
            return too_long("the event id", ev->event_id, errstr, errlen);
        p->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p->message_id = bytes_of(ev->event_id);
    }
    if (ev->event_type) {
        if (strlen(ev->event_type) > RMQ_SHORTSTR_MAX)
            return too_long("the event type", ev->event_type, errstr, errlen);
        p->_flags |= AMQP_BASIC_TYPE_FLAG;
        p->type = bytes_of(ev->event_type);
    }
    if (app_id && *app_id) {
        p->_flags |= AMQP_BASIC_APP_ID_FLAG;
        p->app_id = bytes_of(app_id);
    }
    if (ev->created_at_us > 0) {
        p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p->timestamp = (uint64_t)(ev->created_at_us / 1000000);
    }
    p->headers.entries = m->entries;
    p->headers.num_entries = 0;
    const char *fixed[][2] = {{RMQ_H_EVENT_ID, ev->event_id},
                              {RMQ_H_EVENT_TYPE, ev->event_type},
                              {RMQ_H_AGG_TYPE, ev->aggregate_type},
                              {RMQ_H_AGG_ID, ev->aggregate_id}};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (fixed[i][1])
            add_str(m, fixed[i][0], fixed[i][1]);
    for (size_t i = 0; i < ev->n_headers; i++) {
        const obx_header *h = &ev->headers[i];
        if (!h->name)
            continue;
        if (strlen(h->name) > RMQ_SHORTSTR_MAX)
            return too_long("a header name", h->name, errstr, errlen);
        add_str(m, h->name, h->value);
    }
    return 0;
}

static size_t shortstr(amqp_bytes_t b)
{
    return 1 + b.len;
}

size_t rmq_message_header_size(const rmq_message *m)
{
    const amqp_basic_properties_t *p = &m->props;
    size_t n = 2 + 2 + 8 + 2; /* class, weight, body size, property flags */
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        n += shortstr(p->content_type);
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        n += 4;
        for (int i = 0; i < p->headers.num_entries; i++) {
            const amqp_table_entry_t *e = &p->headers.entries[i];
            n += shortstr(e->key) + 1;
            if (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
                e->value.kind == AMQP_FIELD_KIND_BYTES)
                n += 4 + e->value.value.bytes.len;
        }
    }
    if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        n += 1;
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        n += shortstr(p->message_id);
    if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
        n += 8;
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        n += shortstr(p->type);
    if (p->_flags & AMQP_BASIC_APP_ID_FLAG)
        n += shortstr(p->app_id);
    return n;
}

void rmq_message_free(rmq_message *m)
{
    free(m->entries);
    m->entries = NULL;
    m->cap = 0;
}
