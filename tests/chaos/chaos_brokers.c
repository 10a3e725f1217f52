/* Broker adapters for the chaos suite. Each reads back from the broker
 * itself (the stdout broker's output file; the Kafka mock cluster, the
 * RabbitMQ queue, the JetStream stream through a consumer), never from the
 * relay's logs. RabbitMQ and NATS use the ctest fixture's server, or one
 * of the run's own when the run stops it; the Kafka mock is always the
 * run's own process. */
#include "chaos.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kafka_testlib.h"
#include "nats_testlib.h"
#include "proc.h"
#include "rmq_testlib.h"

#define CHAOS_TOPIC "outbox.chaos"

/* ---- stdout: one file every relay appends whole lines to --------------- */

typedef struct out_state {
    char path[4300];
} out_state;

static void out_setup(chaos_ctx *c)
{
    out_state *s = calloc(1, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s/out.jsonl", c->dir);
    c->broker->state = s;
}

static void out_config(chaos_ctx *c, FILE *fp)
{
    out_state *s = c->broker->state;
    fprintf(fp, "broker = stdout\nbroker.output = %s\n", s->path);
}

static void out_read_back(chaos_ctx *c, size_t want, chaos_seen *out)
{
    out_state *s = c->broker->state;
    FILE *fp = fopen(s->path, "r");
    if (!fp)
        return;
    char line[8192];
    while (fgets(line, sizeof line, fp)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o)
            fail_msg("%s: a line that is not JSON (%s): %s", s->path, je.text,
                     line);
        json_t *p = json_object_get(o, "payload");
        json_t *w = json_object_get(p, "w"), *q = json_object_get(p, "seq"),
               *k = json_object_get(p, "k");
        if (!json_is_integer(w) || !json_is_integer(q) || !json_is_integer(k))
            fail_msg("%s: not a chaos event: %s", s->path, line);
        chaos_seen_add(out, (int)json_integer_value(w),
                       (long)json_integer_value(q), (int)json_integer_value(k));
        json_decref(o);
    }
    fclose(fp);
}

static void out_teardown(chaos_ctx *c)
{
    free(c->broker->state);
    c->broker->state = NULL;
}

/* ---- kafka: librdkafka's mock cluster as a process of its own ---------- */

typedef struct kafka_state {
    pid_t mock;
    char out[4300];
    char bootstraps[512];
    kt_reader *reader; /* open across read-backs: each reads what is new */
    kt_msgs got;       /* everything read so far */
} kafka_state;

static void kafka_setup(chaos_ctx *c)
{
    kafka_state *s = calloc(1, sizeof *s);
    snprintf(s->out, sizeof s->out, "%s/mock.out", c->dir);
    char *argv[] = {OBX_BUILD_DIR "/tests/kafka/mock_cluster",
                    "-b",
                    "3",
                    "-t",
                    CHAOS_TOPIC ":4",
                    NULL};
    s->mock = proc_start(argv, s->out, NULL);
    for (int i = 0; i < 500 && !s->bootstraps[0]; i++) {
        char *t = slurp(s->out);
        char *nl = t ? strchr(t, '\n') : NULL;
        if (nl) {
            *nl = '\0';
            snprintf(s->bootstraps, sizeof s->bootstraps, "%s", t);
        }
        free(t);
        if (!s->bootstraps[0])
            chaos_sleep_ms(10);
    }
    if (!s->bootstraps[0])
        fail_msg("mock_cluster printed no bootstrap address");
    c->broker->state = s;
}

static void kafka_config(chaos_ctx *c, FILE *fp)
{
    kafka_state *s = c->broker->state;
    fprintf(fp, "broker = kafka\nbroker.brokers = %s\n", s->bootstraps);
}

static void kafka_read_back(chaos_ctx *c, size_t want, chaos_seen *out)
{
    kafka_state *s = c->broker->state;
    /* a soak reads back hundreds of thousands: allow 2,000 a second */
    int timeout_ms = 20000 + (int)(want / 2);
    if (!s->reader)
        s->reader = kt_reader_new(s->bootstraps, CHAOS_TOPIC);
    kt_reader_read(s->reader, &s->got, want, 1000, timeout_ms);
    for (size_t i = 0; i < s->got.n; i++)
        chaos_seen_add_payload(out, s->got.items[i].value,
                               s->got.items[i].value_len);
}

static void kafka_read_ahead(chaos_ctx *c, int ms)
{
    kafka_state *s = c->broker->state;
    if (!s->reader)
        s->reader = kt_reader_new(s->bootstraps, CHAOS_TOPIC);
    kt_reader_read(s->reader, &s->got, SIZE_MAX, 0, ms);
}

/* SIGUSR1 / SIGUSR2 to the mock (mock_cluster.c): every broker down or
 * up; it says "down" or "up" on its output once done. */
static void kafka_signal(chaos_ctx *c, int sig, const char *said)
{
    kafka_state *s = c->broker->state;
    char line[16];
    snprintf(line, sizeof line, "\n%s\n", said);
    size_t before = count_in_file(s->out, line);
    kill(s->mock, sig);
    for (int i = 0; i < 500; i++) {
        if (count_in_file(s->out, line) > before)
            return;
        chaos_sleep_ms(10);
    }
    fail_msg("mock_cluster did not say '%s'", said);
}

static void kafka_stop(chaos_ctx *c)
{
    kafka_signal(c, SIGUSR1, "down");
}

static void kafka_start(chaos_ctx *c)
{
    kafka_signal(c, SIGUSR2, "up");
}

static void kafka_teardown(chaos_ctx *c)
{
    kafka_state *s = c->broker->state;
    kt_reader_free(s->reader);
    kt_msgs_free(&s->got);
    kill(s->mock, SIGTERM);
    proc_wait(s->mock, 10000);
    free(s);
    c->broker->state = NULL;
}

/* ---- rabbitmq: a queue of the run's own -------------------------------- */

/* Consuming takes messages off the queue: what came earlier is kept here
 * and every read_back returns all of it. */
typedef struct rmq_state {
    char queue[64];
    char url[512];
    char own[4300]; /* the state dir of the run's own server, or "" */
    chaos_seen got;
} rmq_state;

static void rmq_setup(chaos_ctx *c)
{
    rmq_state *s = calloc(1, sizeof *s);
    c->broker->state = s;
    if (c->own_broker_server) {
        snprintf(s->own, sizeof s->own, "%s/rmq", c->dir);
        snprintf(s->url, sizeof s->url, "%s", rmqt_server_start(s->own));
    } else {
        snprintf(s->url, sizeof s->url, "%s", rmqt_url());
    }
    snprintf(s->queue, sizeof s->queue, "chaos.q%u", c->id);
    rmqt_queue(s->url, s->queue);
}

/* amqp://obx:PASSWORD@127.0.0.1:PORT/: where PORT begins. */
static const char *rmq_port_at(const char *url)
{
    const char *at = strrchr(url, '@');
    const char *colon = at ? strchr(at, ':') : NULL;
    if (!colon)
        fail_msg("no port in %s", url);
    return colon + 1;
}

static void rmq_config(chaos_ctx *c, FILE *fp)
{
    rmq_state *s = c->broker->state;
    char url[600];
    if (c->broker_port) {
        const char *port = rmq_port_at(s->url);
        snprintf(url, sizeof url, "%.*s%d%s", (int)(port - s->url), s->url,
                 c->broker_port, port + strspn(port, "0123456789"));
    } else {
        snprintf(url, sizeof url, "%s", s->url);
    }
    /* the default exchange routes the destination to the queue of that
     * name; two channels, as operators run it; heartbeats every 5 s (not
     * 30): two missed ones are noticed within a 20 s stall */
    fprintf(fp,
            "broker = rabbitmq\nbroker.url = %s\nbroker.channels = 2\n"
            "broker.heartbeat = 5s\ntopic = %s\n",
            url, s->queue);
}

static void rmq_read_back(chaos_ctx *c, size_t want, chaos_seen *out)
{
    rmq_state *s = c->broker->state;
    size_t more = want > s->got.n ? want - s->got.n : 0;
    rmqt_msgs m = rmqt_consume(s->url, s->queue, more, 1000, 20000);
    for (size_t i = 0; i < m.n; i++)
        chaos_seen_add_payload(&s->got, m.items[i].body, m.items[i].body_len);
    rmqt_msgs_free(&m);
    for (size_t i = 0; i < s->got.n; i++)
        chaos_seen_add(out, s->got.items[i].w, s->got.items[i].seq,
                       s->got.items[i].key);
}

/* rabbitmqctl stop_app / start_app: RabbitMQ stops (its listeners close,
 * every connection with them; queues and messages are kept) and starts
 * again on the same ports, as an operator's maintenance does, while the
 * Erlang VM stays (a halt and boot of the VM took 20 s more). */
static void rmq_stop(chaos_ctx *c)
{
    rmq_state *s = c->broker->state;
    if (rmqt_ctl(s->own, "stop_app") != 0)
        fail_msg("rabbitmq: the node did not stop");
}

static void rmq_start(chaos_ctx *c)
{
    rmq_state *s = c->broker->state;
    if (rmqt_ctl(s->own, "start_app") != 0)
        fail_msg("rabbitmq: the node did not start again");
}

static int rmq_server_port(chaos_ctx *c)
{
    rmq_state *s = c->broker->state;
    return atoi(rmq_port_at(s->url));
}

static void rmq_teardown(chaos_ctx *c)
{
    rmq_state *s = c->broker->state;
    if (!s)
        return;
    if (s->own[0])
        rmqt_server_stop(s->own);
    chaos_seen_free(&s->got);
    free(s);
    c->broker->state = NULL;
}

/* ---- nats: a JetStream stream of the run's own -------------------------- */

typedef struct nats_state {
    char stream[64], subject[64];
    char url[256];
    char own[4300]; /* the state dir of the run's own server, or "" */
} nats_state;

static void nats_setup(chaos_ctx *c)
{
    nats_state *s = calloc(1, sizeof *s);
    c->broker->state = s;
    if (c->own_broker_server) {
        snprintf(s->own, sizeof s->own, "%s/nats", c->dir);
        snprintf(s->url, sizeof s->url, "%s", nt_server_start(s->own, NULL));
    } else {
        snprintf(s->url, sizeof s->url, "%s", nt_fixture_url());
    }
    snprintf(s->stream, sizeof s->stream, "CHAOS%u", c->id);
    snprintf(s->subject, sizeof s->subject, "chaos.s%u", c->id);
    nt_stream_create(s->url, s->stream, s->subject, 120000);
}

static void nats_config(chaos_ctx *c, FILE *fp)
{
    nats_state *s = c->broker->state;
    char url[256];
    if (c->broker_port)
        snprintf(url, sizeof url, "nats://127.0.0.1:%d", c->broker_port);
    else
        snprintf(url, sizeof url, "%s", s->url);
    fprintf(fp,
            "broker = nats\nbroker.servers = %s\nbroker.stream = %s\n"
            "topic = %s\n",
            url, s->stream, s->subject);
}

static void nats_read_back(chaos_ctx *c, size_t want, chaos_seen *out)
{
    (void)want;
    nats_state *s = c->broker->state;
    nt_msgs m = nt_read_stream(s->url, s->stream, 1000);
    for (size_t i = 0; i < m.n; i++)
        chaos_seen_add_payload(out, m.items[i].data, (size_t)m.items[i].len);
    nt_msgs_free(&m);
}

/* SIGKILL, as a crash; the stream's store and the port stay, and the
 * server starts on them again. */
static void nats_stop(chaos_ctx *c)
{
    nats_state *s = c->broker->state;
    nt_server_kill(s->own);
}

static void nats_start(chaos_ctx *c)
{
    nats_state *s = c->broker->state;
    nt_server_restart(s->own);
}

static int nats_server_port(chaos_ctx *c)
{
    nats_state *s = c->broker->state;
    const char *colon = strrchr(s->url, ':');
    if (!colon)
        fail_msg("no port in %s", s->url);
    return atoi(colon + 1);
}

static void nats_teardown(chaos_ctx *c)
{
    nats_state *s = c->broker->state;
    if (!s)
        return;
    if (s->own[0]) {
        nt_server_stop(s->own);
    } else {
        nt_stream_delete(s->url, s->stream);
    }
    free(s);
    c->broker->state = NULL;
}

chaos_broker *chaos_broker_named(const char *name)
{
    static const chaos_broker out = {.name = "stdout",
                                     .setup = out_setup,
                                     .config = out_config,
                                     .read_back = out_read_back,
                                     .teardown = out_teardown};
    /* no server_port: see check_adapters in chaos.c */
    static const chaos_broker kafka = {.name = "kafka",
                                       .setup = kafka_setup,
                                       .config = kafka_config,
                                       .read_back = kafka_read_back,
                                       .read_ahead = kafka_read_ahead,
                                       .stop = kafka_stop,
                                       .start = kafka_start,
                                       .teardown = kafka_teardown};
    static const chaos_broker rabbitmq = {.name = "rabbitmq",
                                          .setup = rmq_setup,
                                          .config = rmq_config,
                                          .read_back = rmq_read_back,
                                          .stop = rmq_stop,
                                          .start = rmq_start,
                                          .server_port = rmq_server_port,
                                          .teardown = rmq_teardown};
    static const chaos_broker nats = {.name = "nats",
                                      .setup = nats_setup,
                                      .config = nats_config,
                                      .read_back = nats_read_back,
                                      .stop = nats_stop,
                                      .start = nats_start,
                                      .server_port = nats_server_port,
                                      .teardown = nats_teardown};
    const chaos_broker *proto = !strcmp(name, "stdout")     ? &out
                                : !strcmp(name, "kafka")    ? &kafka
                                : !strcmp(name, "rabbitmq") ? &rabbitmq
                                : !strcmp(name, "nats")     ? &nats
                                                            : NULL;
    if (!proto)
        fail_msg("no chaos broker adapter named '%s'", name);
    chaos_broker *b = malloc(sizeof *b);
    *b = *proto;
    return b;
}

pid_t chaos_kafka_mock(chaos_ctx *c)
{
    if (strcmp(c->broker->name, "kafka") != 0 || !c->broker->state)
        fail_msg("%s: no Kafka mock cluster in this run", c->name);
    return ((kafka_state *)c->broker->state)->mock;
}
