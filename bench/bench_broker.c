/* Broker ceilings: a->n messages shaped as the plugin sends them (key,
 * 256-byte payload, the outbox-* headers), pipelined with the plugin's
 * default window (a->window unconfirmed at most), every one confirmed;
 * the library and settings of the plugin, no relay. Prints msgs/s.
 *
 *   stdout:   the stdout plugin's own publish() writing /dev/null, in
 *             batches of a->batch (it has no confirmations to wait for);
 *   kafka:    librdkafka idempotent producer (acks=all, murmur2_random:
 *             brokers/kafka/kafka_conf.c), window 10000 (max_in_flight);
 *   rabbitmq: librabbitmq-c, persistent, mandatory, publisher confirms on
 *             a->channels channels, window 1000 per channel;
 *   nats:     cnats js_PublishMsgAsync with Nats-Msg-Id, window 4096,
 *             every PubAck awaited.
 * Also the RabbitMQ queue and NATS stream set-up bench/run needs. */
#include "bench.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <librdkafka/rdkafka.h>
#include <nats/nats.h>

#include <outbox/plugin.h>

#include "host.h"
#include "log.h"
#include "options.h"

/* ---- stdout ----------------------------------------------------------- */

void bench_broker_stdout(const bench_args *a)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/obx_broker_stdout.so",
             a->extra ? a->extra : ".");
    void *h = dlopen(path, RTLD_NOW);
    if (!h)
        bench_die(path, dlerror());
    obx_plugin_entry_fn entry =
        (obx_plugin_entry_fn)(uintptr_t)dlsym(h, OBX_PLUGIN_ENTRY_SYMBOL);
    if (!entry)
        bench_die(path, "no plugin entry");
    const obx_plugin *p = entry();
    const obx_broker_ops *ops = p->ops;
    void *conf = calloc(1, p->config_size);
    obx_conf_entry out = {"broker.output", "/dev/null", 1};
    obx_conf_section sec = {OBX_SECTION_PIPELINE, "bench", 1, &out, 1};
    char err[512];
    if (obx_options_fill((obx_optable){p->options, p->option_size}, "bench",
                         &sec, "broker.", conf, err, sizeof err) != 0)
        bench_die("stdout options", err);
    obx_logger lg;
    obx_logger_init(&lg);
    obx_host_ctx ctx = {.lg = &lg};
    obx_host host;
    obx_host_init(&host, &ctx, "bench");
    void *inst;
    if (ops->open(&host, conf, &inst, err, sizeof err) != OBX_OK)
        bench_die("stdout open", err);
    long b = a->batch;
    obx_event *evs = calloc((size_t)b, sizeof *evs);
    obx_event **ptrs = calloc((size_t)b, sizeof *ptrs);
    obx_result *res = calloc((size_t)b, sizeof *res);
    char(*ids)[48] = calloc((size_t)b, 48);
    char(*keys)[24] = calloc((size_t)b, 24);
    char(*pay)[BENCH_PAYLOAD + 1] = calloc((size_t)b, BENCH_PAYLOAD + 1);
    for (long i = 0; i < b; i++) {
        snprintf(ids[i], sizeof ids[i], "00000000-0000-4000-8000-%012ld", i);
        snprintf(keys[i], sizeof keys[i], "o%ld", i % a->keys);
        bench_payload(pay[i], i, a->keys);
        evs[i] = (obx_event){.event_id = ids[i],
                             .key = keys[i],
                             .event_type = "OrderCreated",
                             .aggregate_type = "order",
                             .aggregate_id = keys[i],
                             .payload = pay[i],
                             .payload_len = BENCH_PAYLOAD,
                             .destination = "outbox.order"};
        ptrs[i] = &evs[i];
    }
    bench_clock clk = bench_clock_start();
    for (long done = 0; done < a->n; done += b) {
        size_t k = (size_t)(a->n - done < b ? a->n - done : b);
        ops->publish(inst, ptrs, k, res, 30000);
        for (size_t i = 0; i < k; i++)
            if (res[i].status != OBX_OK)
                bench_die("stdout publish", "an event failed");
    }
    bench_clock_stop(&clk);
    bench_clock_print(&clk, a->n);
    ops->close(inst);
    free(evs);
    free(ptrs);
    free(res);
    free(ids);
    free(keys);
    free(pay);
    obx_options_free((obx_optable){p->options, p->option_size}, conf);
    free(conf);
    obx_logger_destroy(&lg);
}

/* ---- kafka ------------------------------------------------------------ */

typedef struct kfk_state {
    long delivered, failed;
} kfk_state;

static void kfk_log(const rd_kafka_t *rk, int level, const char *fac,
                    const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "obx_bench: librdkafka %s: %s\n", fac, buf);
}

static void kfk_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kfk_state *s = opaque;
    if (m->err)
        s->failed++;
    else
        s->delivered++;
}

static void kfk_produce(rd_kafka_t *rk, const char *topic, long seq, long keys)
{
    char key[32], id[48], val[BENCH_PAYLOAD + 1];
    snprintf(key, sizeof key, "o%ld", seq % keys);
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012ld", seq);
    bench_payload(val, seq, keys);
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        rd_kafka_header_add(h, "outbox-event-id", -1, id, -1);
        rd_kafka_header_add(h, "outbox-event-type", -1, "OrderCreated", -1);
        rd_kafka_header_add(h, "outbox-aggregate-type", -1, "order", -1);
        rd_kafka_header_add(h, "outbox-aggregate-id", -1, key, -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, BENCH_PAYLOAD),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_END);
        if (!err)
            return;
        rd_kafka_headers_destroy(h);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            bench_die("produce", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 1);
    }
}

void bench_broker_kafka(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("broker-kafka", "-t BOOTSTRAP -d TOPIC are required");
    char err[512];
    kfk_state s = {0, 0};
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    /* The plugin's defaults (brokers/kafka/kafka_conf.c), nothing else. */
    const char *props[][2] = {{"bootstrap.servers", a->target},
                              {"enable.idempotence", "true"},
                              {"acks", "all"},
                              {"partitioner", "murmur2_random"},
                              {"client.id", "obx_bench"}};
    for (size_t i = 0; i < sizeof props / sizeof *props; i++)
        if (rd_kafka_conf_set(c, props[i][0], props[i][1], err, sizeof err))
            bench_die(props[i][0], err);
    rd_kafka_conf_set_opaque(c, &s);
    rd_kafka_conf_set_dr_msg_cb(c, kfk_dr);
    rd_kafka_conf_set_log_cb(c, kfk_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk)
        bench_die("producer", err);
    /* connection, producer id and metadata before the clock starts, as a
     * running relay has them */
    kfk_produce(rk, a->dest, 0, a->keys);
    if (rd_kafka_flush(rk, 30000) || s.delivered != 1)
        bench_die("kafka", "the first message was not delivered");
    s.delivered = 0;
    bench_clock clk = bench_clock_start();
    for (long i = 0; i < a->n; i++) {
        while (i - s.delivered - s.failed >= a->window)
            rd_kafka_poll(rk, 1);
        kfk_produce(rk, a->dest, i, a->keys);
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 60000))
        bench_die("kafka", "flush timed out");
    bench_clock_stop(&clk);
    rd_kafka_destroy(rk);
    if (s.delivered != a->n || s.failed)
        bench_die("kafka", "not every message was confirmed");
    bench_clock_print(&clk, a->n);
}

/* ---- rabbitmq --------------------------------------------------------- */

#define RMQ_MAX_CH 64

static void rmq_check(amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    bench_die(what, r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                        ? amqp_error_string2(r.library_error)
                        : "the server refused");
}

amqp_connection_state_t bench_rmq_connect(const char *url);
amqp_connection_state_t bench_rmq_connect(const char *url)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", url);
    struct amqp_connection_info ci;
    if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK)
        bench_die(url, "not an AMQP URL");
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (!s || amqp_socket_open(s, ci.host, ci.port) != AMQP_STATUS_OK)
        bench_die("connect", ci.host);
    if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user,
                   ci.password)
            .reply_type != AMQP_RESPONSE_NORMAL)
        bench_die("login", "refused");
    amqp_channel_open(c, 1);
    rmq_check(c, "channel.open");
    return c;
}

void bench_rabbitmq_queue(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("rabbitmq-queue", "-t URL -d QUEUE are required");
    amqp_connection_state_t c = bench_rmq_connect(a->target);
    amqp_queue_declare(c, 1, amqp_cstring_bytes(a->dest), 0, 1, 0, 0,
                       amqp_empty_table);
    rmq_check(c, "queue.declare");
    amqp_queue_purge(c, 1, amqp_cstring_bytes(a->dest));
    rmq_check(c, "queue.purge");
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static amqp_table_entry_t rmq_header(const char *k, const char *v)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(k);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(v);
    return e;
}

/* Read one frame (wait: up to 1 s; else a poll, as the plugin does) and
 * count the confirms in it; -1 when none was there. Dies on a nack or a
 * return. */
static long rmq_confirms(amqp_connection_state_t c, bool wait, uint64_t *acked)
{
    amqp_frame_t f;
    struct timeval tv = {wait ? 1 : 0, 0};
    int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return -1;
    if (rc != AMQP_STATUS_OK)
        bench_die("reading confirms", amqp_error_string2(rc));
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
        bench_die("rabbitmq publish", "not an ack (nack or return)");
    const amqp_basic_ack_t *ack = f.payload.method.decoded;
    uint64_t *last = &acked[f.channel];
    /* RabbitMQ confirms in order on a channel */
    long n = ack->multiple ? (long)(ack->delivery_tag - *last) : 1;
    *last = ack->delivery_tag;
    amqp_maybe_release_buffers(c);
    return n;
}

void bench_broker_rabbitmq(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("broker-rabbitmq", "-t URL -d QUEUE are required");
    if (a->channels > RMQ_MAX_CH)
        bench_die("broker-rabbitmq", "at most 64 channels");
    bench_rabbitmq_queue(a);
    amqp_connection_state_t c = bench_rmq_connect(a->target);
    for (int ch = 1; ch <= a->channels; ch++) {
        if (ch > 1) {
            amqp_channel_open(c, (amqp_channel_t)ch);
            rmq_check(c, "channel.open");
        }
        amqp_confirm_select(c, (amqp_channel_t)ch);
        rmq_check(c, "confirm.select");
    }
    uint64_t sent[RMQ_MAX_CH + 1] = {0}, acked[RMQ_MAX_CH + 1] = {0};
    long confirmed = 0, got;
    char key[32], id[48], val[BENCH_PAYLOAD + 1];
    bench_clock clk = bench_clock_start();
    for (long i = 0; i < a->n; i++) {
        snprintf(key, sizeof key, "o%ld", i % a->keys);
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012ld", i);
        bench_payload(val, i, a->keys);
        int ch = 1 + (int)((i % a->keys) % a->channels);
        while ((long)(sent[ch] - acked[ch]) >= a->window)
            if ((got = rmq_confirms(c, true, acked)) > 0)
                confirmed += got;
        amqp_table_entry_t h[4] = {
            rmq_header("outbox-event-id", id),
            rmq_header("outbox-event-type", "OrderCreated"),
            rmq_header("outbox-aggregate-type", "order"),
            rmq_header("outbox-aggregate-id", key)};
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
        amqp_bytes_t body = {BENCH_PAYLOAD, val};
        int rc =
            amqp_basic_publish(c, (amqp_channel_t)ch, amqp_empty_bytes,
                               amqp_cstring_bytes(a->dest), 1, 0, &p, body);
        if (rc != AMQP_STATUS_OK)
            bench_die("publish", amqp_error_string2(rc));
        sent[ch]++;
        if (i % 64 == 0) /* the plugin's RMQ_POLL_EVERY */
            while ((got = rmq_confirms(c, false, acked)) >= 0)
                confirmed += got;
    }
    while (confirmed < a->n)
        if ((got = rmq_confirms(c, true, acked)) > 0)
            confirmed += got;
    bench_clock_stop(&clk);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    bench_rabbitmq_queue(a); /* purge: the next run starts empty */
    bench_clock_print(&clk, a->n);
}

/* ---- nats ------------------------------------------------------------- */

typedef struct nats_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long acked, failed, inflight;
} nats_state;

static void nats_on_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae,
                        void *closure)
{
    (void)js;
    (void)pa;
    nats_state *s = closure;
    pthread_mutex_lock(&s->mu);
    if (pae)
        s->failed++;
    else
        s->acked++;
    s->inflight--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    natsMsg_Destroy(m); /* the handler owns it */
}

static void nats_connect(const char *url, natsConnection **nc, jsCtx **js,
                         nats_state *s, long window)
{
    natsStatus st = natsConnection_ConnectTo(nc, url);
    if (st != NATS_OK)
        bench_die(url, natsStatus_GetText(st));
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 10000;
    if (s) {
        o.PublishAsync.AckHandler = nats_on_ack;
        o.PublishAsync.AckHandlerClosure = s;
        o.PublishAsync.MaxPending = 2 * window + 16;
    }
    if (natsConnection_JetStream(js, *nc, &o) != NATS_OK)
        bench_die("jetstream", "no context");
}

void bench_nats_stream(const bench_args *a)
{
    if (!a->target || !a->dest || !a->extra)
        bench_die("nats-stream", "-t URL -d STREAM -x SUBJECTS are required");
    natsConnection *nc;
    jsCtx *js;
    nats_connect(a->target, &nc, &js, NULL, 0);
    js_DeleteStream(js, a->dest, NULL, NULL);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[] = {a->extra};
    sc.Name = a->dest;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 120 * 1000000000LL; /* the plugin's default window */
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    if (js_AddStream(&si, js, &sc, NULL, &code) != NATS_OK)
        bench_die("add stream", a->dest);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

void bench_broker_nats(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("broker-nats", "-t URL -d SUBJECT are required");
    nats_state s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
                    0};
    natsConnection *nc;
    jsCtx *js;
    nats_connect(a->target, &nc, &js, &s, a->window);
    /* a run id in the message ids: JetStream would drop a second run's
     * messages as duplicates of the first's */
    long run = (long)(bench_wall_us() % 1000000000);
    char key[32], id[64], val[BENCH_PAYLOAD + 1];
    bench_clock clk = bench_clock_start();
    for (long i = 0; i < a->n; i++) {
        snprintf(key, sizeof key, "o%ld", i % a->keys);
        snprintf(id, sizeof id, "r%ld-%ld", run, i);
        bench_payload(val, i, a->keys);
        natsMsg *m = NULL;
        natsMsg_Create(&m, a->dest, NULL, val, BENCH_PAYLOAD);
        natsMsgHeader_Set(m, "Nats-Msg-Id", id);
        natsMsgHeader_Set(m, "outbox-event-id", id);
        natsMsgHeader_Set(m, "outbox-event-type", "OrderCreated");
        natsMsgHeader_Set(m, "outbox-aggregate-type", "order");
        natsMsgHeader_Set(m, "outbox-aggregate-id", key);
        pthread_mutex_lock(&s.mu);
        while (s.inflight >= a->window)
            pthread_cond_wait(&s.cv, &s.mu);
        s.inflight++;
        pthread_mutex_unlock(&s.mu);
        natsStatus st = js_PublishMsgAsync(js, &m, NULL);
        natsMsg_Destroy(m);
        if (st != NATS_OK)
            bench_die("publish", natsStatus_GetText(st));
    }
    pthread_mutex_lock(&s.mu);
    while (s.inflight > 0)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    bench_clock_stop(&clk);
    if (s.acked != a->n || s.failed)
        bench_die("nats", "not every message was acknowledged");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    bench_clock_print(&clk, a->n);
}
