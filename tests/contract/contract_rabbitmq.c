/* The rabbitmq broker's contract harness, against the `rabbitmq`
 * fixture's node (tests/rabbitmq/rmq_testlib): a queue per check behind
 * the default exchange (the destination is the routing key), read back
 * with a consumer; the failing event is unroutable (a routing key no
 * queue has, returned under the mandatory flag). The plugin connects
 * through harness_proxy: `unavailable` is the node gone as when it
 * crashes, without stopping the node the other rabbitmq tests share. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <outbox/contract.h>

#include "rmq_testlib.h"
#include "harness_proxy.h"

#define ACC_MAX 256

static char queue[64], unroutable[80], url[512];
/* consuming takes messages off the queue: what read_back saw so far */
static obx_contract_msg acc[ACC_MAX];
static size_t n_acc;

static int h_setup(void *ctx, char *err, size_t errlen)
{
    static unsigned serial;
    const char *fix = rmqt_url();
    int server = hp_port_in(fix, ":", err, errlen);
    if (server < 0)
        return -1;
    /* the same URL (user, password, vhost), the proxy's port */
    const char *colon = strrchr(fix, ':'), *rest = strchr(colon, '/');
    snprintf(url, sizeof url, "%.*s:%d%s", (int)(colon - fix), fix,
             hp_pass(server), rest ? rest : "/");
    long pid = (long)getpid();
    unsigned n = ++serial;
    snprintf(queue, sizeof queue, "contract-%ld-%u", pid, n);
    snprintf(unroutable, sizeof unroutable, "contract-%ld-%u-no-such-queue",
             pid, n);
    rmqt_queue(fix, queue);
    n_acc = 0;
    return 0;
}

static int h_config(void *ctx, char *text, size_t len, char *err, size_t errlen)
{
    snprintf(text, len,
             "url = %s\nmandatory = true\nconnect_timeout = 1s\n"
             "reconnect_backoff = 100ms..500ms\n",
             url);
    return 0;
}

static const char *h_destination(void *ctx)
{
    return queue;
}

static int h_read_back(void *ctx, size_t want, int wait_ms,
                       obx_contract_msg *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    /* quiet 300 ms: a duplicate still on its way is seen */
    rmqt_msgs m = rmqt_consume(rmqt_url(), queue,
                               want > n_acc ? want - n_acc : 0, 300, wait_ms);
    for (size_t i = 0; i < m.n && n_acc < ACC_MAX; i++) {
        const rmqt_msg *x = &m.items[i];
        obx_contract_msg *o = &acc[n_acc++];
        snprintf(o->event_id, sizeof o->event_id, "%s",
                 x->message_id ? x->message_id : "");
        o->key[0] = '\0'; /* carried as outbox-aggregate-id only */
        snprintf(o->payload, sizeof o->payload, "%.*s", (int)x->body_len,
                 x->body ? x->body : "");
    }
    rmqt_msgs_free(&m);
    *n = n_acc < max ? n_acc : max;
    memcpy(out, acc, *n * sizeof *out);
    return 0;
}

static int h_poison(void *ctx, obx_event *ev, char *err, size_t errlen)
{
    ev->destination = unroutable;
    return 0;
}

int main(void)
{
    obx_contract_broker_harness h = {
        .struct_size = sizeof h,
        .name = "rabbitmq",
        .plugin = "rabbitmq",
        .plugin_dir = OBX_PLUGIN_DIR,
        .setup = h_setup,
        .config = h_config,
        .destination = h_destination,
        .read_back = h_read_back,
        .poison = h_poison,
        .backend_stop = hp_backend_stop,
        .backend_start = hp_backend_start,
    };
    return hp_exit(obx_contract_broker_run(&h));
}
