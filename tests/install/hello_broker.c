/* An out-of-tree broker plugin, built by the install test with nothing but
 * `pkg-config --cflags outbox-plugin`: it counts what it is given. */
#include <outbox/plugin.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct hello_conf {
    char *greeting;
    int64_t times;
} hello_conf;

static const obx_option hello_options[] = {
    OBX_OPT_STRING(hello_conf, greeting, "greeting", "hello", "what to say"),
    OBX_OPT_INT(hello_conf, times, "times", "1", 1, 10, "how often"),
    OBX_OPTIONS_END};

static obx_status hello_open(const obx_host *host, const void *config,
                             void **inst, char *errstr, size_t errlen)
{
    *inst = (void *)config;
    return OBX_OK;
}

static void hello_close(void *inst)
{
}

static obx_status hello_publish(void *inst, obx_event *const *events, size_t n,
                                obx_result *results, int timeout_ms)
{
    const hello_conf *c = inst;
    for (size_t i = 0; i < n; i++) {
        printf("%s %s\n", c->greeting, events[i]->event_id);
        results[i].status = OBX_OK;
    }
    fflush(stdout);
    return OBX_OK;
}

static const obx_broker_ops hello_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .open = hello_open,
    .close = hello_close,
    .publish = hello_publish,
};

OBX_BROKER_PLUGIN("hello", "says hello to every event", "0.1.0", hello_options,
                  hello_conf, hello_ops)
