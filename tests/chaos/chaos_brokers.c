/* Broker adapters for the chaos suite. Each reads back from the broker
 * itself (the stdout broker's output file; the Kafka mock cluster through
 * a consumer), never from the relay's logs. */
#include "chaos.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kafka_testlib.h"
#include "proc.h"

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
    kt_msgs m = kt_consume(s->bootstraps, CHAOS_TOPIC, want, 1000, 20000);
    for (size_t i = 0; i < m.n; i++)
        chaos_seen_add_payload(out, m.items[i].value, m.items[i].value_len);
    kt_msgs_free(&m);
}

static void kafka_teardown(chaos_ctx *c)
{
    kafka_state *s = c->broker->state;
    kill(s->mock, SIGTERM);
    proc_wait(s->mock, 10000);
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
    static const chaos_broker kafka = {.name = "kafka",
                                       .setup = kafka_setup,
                                       .config = kafka_config,
                                       .read_back = kafka_read_back,
                                       .teardown = kafka_teardown};
    const chaos_broker *proto = !strcmp(name, "stdout")  ? &out
                                : !strcmp(name, "kafka") ? &kafka
                                                         : NULL;
    if (!proto)
        fail_msg("no chaos broker adapter named '%s'", name);
    chaos_broker *b = malloc(sizeof *b);
    *b = *proto;
    return b;
}
