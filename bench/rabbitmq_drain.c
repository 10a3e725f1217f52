/* rabbitmq_drain: the relay's sqlite -> rabbitmq and pg_poll -> rabbitmq
 * drain rates next to the raw confirm-pipelined publish rate of the same
 * library (librabbitmq-c), in one run, against one RabbitMQ server.
 *
 *   rabbitmq_drain -u AMQP_URL [-n EVENTS] [-b BATCH] [-k KEYS]
 *                  [-w WINDOW] [-d PG_CONNINFO]
 *
 * bench/rabbitmq_drain.sh starts a private RabbitMQ (tests/rabbitmq/
 * rmq_start.sh) and PostgreSQL (tests/pg/pg_start.sh), runs this and
 * stops them. The URL may come from OBX_BENCH_RMQ, the conninfo from
 * OBX_BENCH_PG; without a conninfo the pg_poll steps are skipped (and say
 * so).
 *
 * Messages as the plugin sends them (persistent, message_id, type,
 * timestamp, app_id, content_type, the four outbox-* headers, mandatory,
 * 256-byte payloads) to the default exchange and a durable queue, purged
 * before each run. Measures:
 *  1. raw, 1 and 4 channels: confirm.select, up to WINDOW unconfirmed per
 *     channel (the plugin's max_in_flight), acks read as they come
 *     (multiple included); every message confirmed; once as one stream,
 *     once waiting for every confirm after each BATCH messages (the
 *     ceiling of a synchronous publish(batch) call, as the engine makes);
 *     the better of the two is "raw";
 *  2. relay sqlite -> rabbitmq with 1 and 4 channels (broker.channels,
 *     broker.max_in_flight = WINDOW), and sqlite -> /dev/null (the stdout
 *     broker: the store and engine without RabbitMQ);
 *  3. the same with pg_poll;
 * and prints events/s and relay / min(raw with as many channels, store +
 * engine) per store (DESIGN section 9 asks for >= 0.8).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "drain_common.h"

#define QUEUE "rabbitmq-drain"
#define MAX_CH 4

typedef struct bench {
    drain_bench d;
    const char *url;
    long window;
} bench;

static void die_reply(bench *b, amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    drain_die(&b->d, what,
              r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                  ? amqp_error_string2(r.library_error)
                  : "the server refused");
}

static amqp_connection_state_t connect_to(bench *b)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", b->url);
    struct amqp_connection_info ci;
    if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK)
        drain_die(&b->d, "url", "not an AMQP URL");
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (!s || amqp_socket_open(s, ci.host, ci.port) != AMQP_STATUS_OK)
        drain_die(&b->d, "connect", ci.host);
    if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user,
                   ci.password)
            .reply_type != AMQP_RESPONSE_NORMAL)
        drain_die(&b->d, "login", "refused");
    return c;
}

/* Declare and empty the queue. */
static void reset_queue(bench *b)
{
    amqp_connection_state_t c = connect_to(b);
    amqp_channel_open(c, 1);
    die_reply(b, c, "channel.open");
    amqp_queue_declare(c, 1, amqp_cstring_bytes(QUEUE), 0, 1, 0, 0,
                       amqp_empty_table);
    die_reply(b, c, "queue.declare");
    amqp_queue_purge(c, 1, amqp_cstring_bytes(QUEUE));
    die_reply(b, c, "queue.purge");
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static amqp_table_entry_t header(const char *k, const char *v)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(k);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(v);
    return e;
}

/* Read one frame (wait: block up to 1 s; else only what is there: a
 * poll of the socket, as the plugin does) and count the confirms in it.
 * Returns how many messages it confirmed, -1 when no frame was there;
 * dies on a nack or return. */
static long read_confirms(bench *b, amqp_connection_state_t c, bool wait,
                          uint64_t *acked)
{
    amqp_frame_t f;
    struct timeval tv = {wait ? 1 : 0, 0};
    int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return -1;
    if (rc != AMQP_STATUS_OK)
        drain_die(&b->d, "reading confirms", amqp_error_string2(rc));
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
        drain_die(&b->d, "raw publish", "not an ack (nack or return)");
    const amqp_basic_ack_t *a = f.payload.method.decoded;
    uint64_t *last = &acked[f.channel];
    long n = 0;
    if (a->multiple) {
        n = (long)(a->delivery_tag - *last);
        *last = a->delivery_tag;
    } else {
        /* RabbitMQ confirms in order on a channel: tag is *last + 1 */
        n = 1;
        *last = a->delivery_tag;
    }
    amqp_maybe_release_buffers(c);
    return n;
}

/* Events per second for b->d.n messages over `channels` channels; every
 * per_call messages, wait until all are confirmed (per_call = n: one
 * stream; = BATCH: what a synchronous publish(batch) call can reach). */
static double raw_run(bench *b, int channels, long per_call)
{
    reset_queue(b);
    amqp_connection_state_t c = connect_to(b);
    for (int ch = 1; ch <= channels; ch++) {
        amqp_channel_open(c, (amqp_channel_t)ch);
        die_reply(b, c, "channel.open");
        amqp_confirm_select(c, (amqp_channel_t)ch);
        die_reply(b, c, "confirm.select");
    }
    uint64_t sent[MAX_CH + 1] = {0}, acked[MAX_CH + 1] = {0};
    long confirmed = 0;
    char key[32], id[32], val[DRAIN_PAYLOAD + 1];
    double t0 = drain_now_s();
    for (long i = 0; i < b->d.n; i++) {
        snprintf(key, sizeof key, "o%ld", i % b->d.keys);
        snprintf(id, sizeof id, "e%ld", i);
        drain_payload(val, i);
        int ch = 1 + (int)((i % b->d.keys) % channels);
        while ((long)(sent[ch] - acked[ch]) >= b->window) {
            long got = read_confirms(b, c, true, acked);
            confirmed += got > 0 ? got : 0;
        }
        amqp_table_entry_t h[4] = {header("outbox-event-id", id),
                                   header("outbox-event-type", "OrderCreated"),
                                   header("outbox-aggregate-type", "order"),
                                   header("outbox-aggregate-id", key)};
        amqp_basic_properties_t p;
        memset(&p, 0, sizeof p);
        p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                   AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG |
                   AMQP_BASIC_TIMESTAMP_FLAG;
        p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
        p.content_type = amqp_cstring_bytes("application/json");
        p.message_id = amqp_cstring_bytes(id);
        p.type = amqp_cstring_bytes("OrderCreated");
        p.app_id = amqp_cstring_bytes("outbox-relay");
        p.timestamp = 1700000000;
        p.headers.num_entries = 4;
        p.headers.entries = h;
        amqp_bytes_t body = {DRAIN_PAYLOAD, val};
        int rc = amqp_basic_publish(c, (amqp_channel_t)ch, amqp_empty_bytes,
                                    amqp_cstring_bytes(QUEUE), 1, 0, &p, body);
        if (rc != AMQP_STATUS_OK)
            drain_die(&b->d, "publish", amqp_error_string2(rc));
        sent[ch]++;
        if ((i + 1) % per_call == 0) {
            while (confirmed < i + 1) {
                long got = read_confirms(b, c, true, acked);
                confirmed += got > 0 ? got : 0;
            }
        }
        if (i % 64 == 0) { /* the plugin's RMQ_POLL_EVERY */
            long got;
            while ((got = read_confirms(b, c, false, acked)) >= 0)
                confirmed += got;
        }
    }
    while (confirmed < b->d.n) {
        long got = read_confirms(b, c, true, acked);
        confirmed += got > 0 ? got : 0;
    }
    double secs = drain_now_s() - t0;
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return (double)b->d.n / secs;
}

static double relay_rmq(bench *b, const char *store, int channels)
{
    reset_queue(b);
    char keys[1024];
    snprintf(keys, sizeof keys,
             "topic = " QUEUE "\nbroker.url = %s\nbroker.channels = %d\n"
             "broker.max_in_flight = %ld",
             b->url, channels, b->window);
    return drain_relay_run(&b->d, store, "rabbitmq", keys);
}

/* raw[0], raw[1]: 1 and 4 channels, the better of stream and batches. */
static void measure(bench *b, const char *store, const double raw[2])
{
    double r1 = relay_rmq(b, store, 1);
    printf("relay %-7s -> rabbitmq, 1 channel   %10.0f events/s\n", store, r1);
    double r4 = relay_rmq(b, store, 4);
    printf("relay %-7s -> rabbitmq, 4 channels  %10.0f events/s\n", store, r4);
    double ref =
        drain_relay_run(&b->d, store, "stdout", "broker.output = /dev/null");
    printf("relay %-7s -> /dev/null             %10.0f events/s (store + "
           "engine)\n",
           store, ref);
    double f1 = raw[0] < ref ? raw[0] : ref;
    double f4 = raw[1] < ref ? raw[1] : ref;
    printf("%-7s 1 channel:  relay / raw = %.2f, relay / min(raw, "
           "store+engine) = %.2f (target >= 0.80)\n",
           store, r1 / raw[0], r1 / f1);
    printf("%-7s 4 channels: relay / raw = %.2f, relay / min(raw, "
           "store+engine) = %.2f (target >= 0.80)\n",
           store, r4 / raw[1], r4 / f4);
}

static void parse(bench *b, int argc, char **argv)
{
    int opt;
    b->d.pg_conninfo = getenv("OBX_BENCH_PG");
    b->url = getenv("OBX_BENCH_RMQ");
    while ((opt = getopt(argc, argv, "n:b:k:w:d:u:")) != -1) {
        if (opt == 'd' || opt == 'u') {
            *(opt == 'd' ? &b->d.pg_conninfo : &b->url) = optarg;
            continue;
        }
        long v = opt == '?' ? 0 : atol(optarg);
        if (opt == '?')
            drain_die(&b->d, "usage",
                      "rabbitmq_drain -u AMQP_URL [-n EVENTS] [-b BATCH] "
                      "[-k KEYS] [-w WINDOW] [-d PG_CONNINFO]");
        if (v < 1)
            drain_die(&b->d, "option", "values must be positive");
        if (opt == 'n')
            b->d.n = v;
        else if (opt == 'b')
            b->d.batch = v;
        else if (opt == 'k')
            b->d.keys = (int)v;
        else
            b->window = v;
    }
    if (!b->url || !*b->url)
        drain_die(&b->d, "usage", "-u AMQP_URL (or OBX_BENCH_RMQ) is needed");
    if (b->d.pg_conninfo && !b->d.pg_conninfo[0])
        b->d.pg_conninfo = NULL;
}

int main(int argc, char **argv)
{
    bench b = {.d = {.name = "rabbitmq_drain",
                     .n = 200000,
                     .batch = 1000,
                     .keys = 1000},
               .window = 1000};
    parse(&b, argc, argv);
    drain_make_dir(&b.d);
    if (b.d.pg_conninfo)
        drain_pg_connect(&b.d, "rabbitmq_drain");
    printf("rabbitmq_drain: %ld events of %d bytes, %d keys, batch %ld, "
           "window %ld per channel, librabbitmq %s\n",
           b.d.n, DRAIN_PAYLOAD, b.d.keys, b.d.batch, b.window, amqp_version());
    double raw[2];
    for (int k = 0; k < 2; k++) {
        int ch = k == 0 ? 1 : MAX_CH;
        double stream = raw_run(&b, ch, b.d.n);
        printf("raw publish, %d channel(s), stream   %10.0f events/s\n", ch,
               stream);
        double batches = raw_run(&b, ch, b.d.batch);
        printf("raw publish, %d channel(s), batches  %10.0f events/s "
               "(confirmed every %ld)\n",
               ch, batches, b.d.batch);
        raw[k] = stream > batches ? stream : batches;
    }
    measure(&b, "sqlite", raw);
    if (b.d.pg) {
        measure(&b, "pg_poll", raw);
        drain_pg_disconnect(&b.d);
    } else {
        printf("relay pg_poll: skipped, no PostgreSQL (-d CONNINFO, "
               "OBX_BENCH_PG, or bench/rabbitmq_drain.sh)\n");
    }
    reset_queue(&b);
    drain_remove_dir(&b.d);
    return 0;
}
