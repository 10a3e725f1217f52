/* The consumer side of the latency and scale-out runs: read events back
 * from the broker, and tally them (bench.h): how many, per-key order,
 * duplicates, commit-to-arrival latency. Each subscribes first, then
 * touches a->ready, so bench/run starts the writers only when nothing
 * can be missed; it stops after a->n events, or a->idle_ms without one.
 *
 *   kafka:    librdkafka consumer, every partition of a->dest assigned
 *             from the beginning (a topic of its own per run), fetch wait
 *             1 ms: librdkafka's mock answers an empty fetch only once
 *             the wait is over, even when a message arrives meanwhile
 *             (Kafka answers at once), so the wait is latency the
 *             consumer adds (5 ms made p50 4-5 ms against 1 ms at the
 *             relay's end);
 *   rabbitmq: basic.consume (no-ack) on queue a->dest, declared and
 *             purged first (the relay publishes with mandatory set);
 *   nats:     a core subscription on subject a->dest: it sees each
 *             message as the server stores it in the stream. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <librdkafka/rdkafka.h>
#include <nats/nats.h>

amqp_connection_state_t bench_rmq_connect(const char *url);
void bench_rabbitmq_queue(const bench_args *a);

/* ---- kafka ------------------------------------------------------------ */

void bench_consume_kafka(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("consume-kafka", "-t BOOTSTRAP -d TOPIC are required");
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *props[][2] = {
        {"bootstrap.servers", a->target}, {"group.id", "obx_bench"},
        {"enable.auto.commit", "false"},  {"fetch.wait.max.ms", "1"},
        {"fetch.error.backoff.ms", "5"},  {"allow.auto.create.topics", "true"}};
    for (size_t i = 0; i < sizeof props / sizeof *props; i++)
        if (rd_kafka_conf_set(c, props[i][0], props[i][1], err, sizeof err))
            bench_die(props[i][0], err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk)
        bench_die("consumer", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, a->dest, NULL);
    const rd_kafka_metadata_t *md = NULL;
    int parts = 0;
    for (int tries = 0; tries < 50 && parts == 0; tries++) {
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1 && !md->topics[0].err)
            parts = md->topics[0].partition_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
    }
    if (parts == 0)
        bench_die(a->dest, "no such topic");
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, a->dest, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, l))
        bench_die("assign", a->dest);
    rd_kafka_topic_partition_list_destroy(l);
    bench_tally t;
    bench_tally_init(&t, a->keys);
    bench_signal_ready(a);
    double last = bench_now();
    while (t.count < a->n) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (t.count && (bench_now() - last) * 1000 > (double)a->idle_ms)
                break;
            if (!t.count && bench_now() - last > 600)
                break;
            continue;
        }
        if (!m->err) {
            bench_tally_add(&t, m->payload, m->len, a->skip);
            last = bench_now();
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    bench_tally_print(&t);
}

/* ---- rabbitmq --------------------------------------------------------- */

void bench_consume_rabbitmq(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("consume-rabbitmq", "-t URL -d QUEUE are required");
    bench_rabbitmq_queue(a);
    amqp_connection_state_t c = bench_rmq_connect(a->target);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(a->dest), amqp_empty_bytes, 0,
                       1, 0, amqp_empty_table);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL)
        bench_die("basic.consume", a->dest);
    bench_tally t;
    bench_tally_init(&t, a->keys);
    bench_signal_ready(a);
    while (t.count < a->n) {
        long ms = t.count ? a->idle_ms : 600000;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            break;
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            bench_die("consume", "the connection failed");
        bench_tally_add(&t, env.message.body.bytes, env.message.body.len,
                        a->skip);
        amqp_destroy_envelope(&env);
    }
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    bench_tally_print(&t);
}

/* ---- nats ------------------------------------------------------------- */

void bench_consume_nats(const bench_args *a)
{
    if (!a->target || !a->dest)
        bench_die("consume-nats", "-t URL -d SUBJECT are required");
    natsConnection *nc;
    natsStatus st = natsConnection_ConnectTo(&nc, a->target);
    if (st != NATS_OK)
        bench_die(a->target, natsStatus_GetText(st));
    natsSubscription *sub;
    if (natsConnection_SubscribeSync(&sub, nc, a->dest) != NATS_OK)
        bench_die("subscribe", a->dest);
    /* no slow-consumer drops: every message must be counted */
    natsSubscription_SetPendingLimits(sub, -1, -1);
    /* the subscription is known to the server once a round trip is done */
    natsConnection_Flush(nc);
    bench_tally t;
    bench_tally_init(&t, a->keys);
    bench_signal_ready(a);
    while (t.count < a->n) {
        natsMsg *m = NULL;
        st = natsSubscription_NextMsg(&m, sub,
                                      t.count ? (int64_t)a->idle_ms : 600000);
        if (st == NATS_TIMEOUT)
            break;
        if (st != NATS_OK)
            bench_die("next message", natsStatus_GetText(st));
        bench_tally_add(&t, natsMsg_GetData(m),
                        (size_t)natsMsg_GetDataLength(m), a->skip);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    bench_tally_print(&t);
}
