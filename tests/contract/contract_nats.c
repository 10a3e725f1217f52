/* The nats broker's contract harness, against the `nats` fixture's
 * nats-server (tests/nats/nats_testlib): a JetStream stream per check,
 * read back with a consumer; the failing event goes to a subject no
 * stream captures. The plugin connects through harness_proxy:
 * `unavailable` is the server gone as when nats-server is killed, without
 * killing the server the other nats tests share. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "nats_testlib.h"
#include "harness_proxy.h"

static int port;
static char stream[64], subject[64], wild[64], outside[64];

static int h_setup(void *ctx, char *err, size_t errlen)
{
    static unsigned serial;
    const char *url = nt_fixture_url();
    int server = hp_port_in(url, ":", err, errlen);
    if (server < 0)
        return -1;
    port = hp_pass(server);
    /* names of this process: the fixture's server is shared, and two
     * streams may not capture the same subjects */
    unsigned n = ++serial;
    long pid = (long)getpid();
    snprintf(stream, sizeof stream, "CONTRACT_%ld_%u", pid, n);
    snprintf(subject, sizeof subject, "contract%ld_%u.order", pid, n);
    snprintf(wild, sizeof wild, "contract%ld_%u.>", pid, n);
    snprintf(outside, sizeof outside, "contract%ld_%u_nowhere.order", pid, n);
    nt_stream_create(url, stream, wild, 120000);
    return 0;
}

static void h_teardown(void *ctx)
{
    nt_stream_delete(nt_fixture_url(), stream);
}

static int h_config(void *ctx, char *text, size_t len, char *err, size_t errlen)
{
    snprintf(text, len,
             "servers = nats://127.0.0.1:%d\nstream = %s\nsubjects = %s\n"
             "connect_timeout = 1s\nreconnect_wait = 100ms\n"
             "api_timeout = 2s\n",
             port, stream, wild);
    return 0;
}

static const char *h_destination(void *ctx)
{
    return subject;
}

/* The whole stream, again until it holds `want` messages or wait_ms
 * passed (nt_read_stream reads what is there). */
static int h_read_back(void *ctx, size_t want, int wait_ms,
                       obx_contract_msg *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    int64_t end = nt_now_ms() + wait_ms;
    for (;;) {
        nt_msgs m = nt_read_stream(nt_fixture_url(), stream, 300);
        *n = 0;
        for (size_t i = 0; i < m.n && *n < max; i++) {
            const nt_msg *x = &m.items[i];
            obx_contract_msg *o = &out[(*n)++];
            snprintf(o->event_id, sizeof o->event_id, "%s",
                     x->event_id ? x->event_id : "");
            o->key[0] = '\0'; /* carried as outbox-aggregate-id only */
            snprintf(o->payload, sizeof o->payload, "%.*s", x->len,
                     x->data ? x->data : "");
        }
        nt_msgs_free(&m);
        if (*n >= want || nt_now_ms() >= end)
            return 0;
        nt_sleep_ms(100);
    }
}

static int h_poison(void *ctx, obx_event *ev, char *err, size_t errlen)
{
    ev->destination = outside;
    return 0;
}

int main(void)
{
    obx_contract_broker_harness h = {
        .struct_size = sizeof h,
        .name = "nats",
        .plugin = "nats",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .teardown = h_teardown,
        .config = h_config,
        .destination = h_destination,
        .read_back = h_read_back,
        .poison = h_poison,
        .backend_stop = hp_backend_stop,
        .backend_start = hp_backend_start,
    };
    return hp_exit(obx_contract_broker_run(&h));
}
