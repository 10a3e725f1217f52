/* A broker for engine tests that breaks the publish contract on purpose:
 * it fills no result for events bound for a destination starting with
 * "dead." (the DLQ topic in the tests), fails events typed Poison with
 * broker.poison_status (permanent; nomem: a status that is transient
 * although it is not OBX_RETRY; or unavailable), and reports the rest OK
 * without publishing anything. The engine must never take an unfilled result
 * for a confirmation. */
#include <outbox/plugin.h>

#include <string.h>

typedef struct lazy_conf {
    int poison_status; /* index into lazy_statuses */
} lazy_conf;

static const char *const lazy_statuses[] = {"permanent", "nomem", "unavailable",
                                            NULL};

static const obx_option lazy_options[] = {
    OBX_OPT_ENUM(lazy_conf, poison_status, "poison_status", "permanent",
                 lazy_statuses, "the per-event status of Poison events"),
    OBX_OPTIONS_END,
};

static obx_status lazy_open(const obx_host *host, const void *config,
                            void **inst, char *errstr, size_t errlen)
{
    *inst = (void *)config;
    return OBX_OK;
}

static void lazy_close(void *inst)
{
}

static obx_status lazy_publish(void *inst, obx_event *const *events, size_t n,
                               obx_result *results, int timeout_ms)
{
    const lazy_conf *c = inst;
    static const obx_status st_of[] = {OBX_PERMANENT, OBX_NOMEM,
                                       OBX_UNAVAILABLE};
    obx_status poison_st = st_of[c->poison_status];
    for (size_t i = 0; i < n; i++) {
        if (strncmp(events[i]->destination, "dead.", 5) == 0)
            continue; /* the defect under test: no result at all */
        bool poison = strcmp(events[i]->event_type, "Poison") == 0;
        results[i].status = poison ? poison_st : OBX_OK;
        strcpy(results[i].errstr, poison ? "poison: node 7 is down" : "");
    }
    return OBX_OK;
}

static const obx_broker_ops lazy_ops = {
    .struct_size = sizeof(obx_broker_ops),
    .open = lazy_open,
    .close = lazy_close,
    .publish = lazy_publish,
};

OBX_BROKER_PLUGIN("lazy", "leaves DLQ results unfilled (engine tests)", "1.0.0",
                  lazy_options, lazy_conf, lazy_ops)
