#include "kafka_conf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <outbox/secret.h>

/* Set before the user's properties, so every one can be overridden. */
static const char *const kfk_defaults[][2] = {
    /* No duplicates or reordering from librdkafka's own retries. */
    {"enable.idempotence", "true"},
    /* Confirmed means written to every in-sync replica. */
    {"acks", "all"},
    /* The Java client's partitioner: the same key lands on the same
     * partition whichever client wrote it. */
    {"partitioner", "murmur2_random"},
    {"client.id", "outbox-relay"},
};

/* Properties the plugin owns, and why a user may not set them. */
static const char *const kfk_owned[][2] = {
    {"bootstrap.servers", "set broker.brokers instead"},
    {"metadata.broker.list", "set broker.brokers instead"},
    {"transactional.id",
     "the relay does not use Kafka transactions (the idempotent producer "
     "already avoids duplicates from its own retries)"},
    {"log.queue", "the plugin serves librdkafka's logs on its own thread"},
    {"delivery.report.only.error",
     "the relay needs a delivery report for every event"},
};

bool kfk_is_secret(const char *property)
{
    return obx_secret_name(property, strlen(property));
}

obx_status kfk_conf_check(const kfk_config *c, char *errstr, size_t errlen)
{
    if (!c->brokers || !*c->brokers) {
        snprintf(errstr, errlen,
                 "broker.brokers: bootstrap servers "
                 "(host:port[,host:port...]) are required");
        return OBX_CONFIG;
    }
    if (c->max_in_flight < 1) {
        snprintf(errstr, errlen, "broker.max_in_flight must be at least 1");
        return OBX_CONFIG;
    }
    for (size_t i = 0; i < c->kafka.n; i++) {
        const obx_kv *kv = &c->kafka.items[i];
        for (size_t j = 0; j < sizeof kfk_owned / sizeof *kfk_owned; j++) {
            if (strcmp(kv->name, kfk_owned[j][0]) != 0)
                continue;
            snprintf(errstr, errlen,
                     "broker.kafka.%s (line %d): not "
                     "allowed: %s",
                     kv->name, kv->line, kfk_owned[j][1]);
            return OBX_CONFIG;
        }
    }
    return OBX_OK;
}

void kfk_mask(const char *msg, const char *value, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t vlen = strlen(value), o = 0;
    while (*msg && o + 1 < outlen) {
        if (vlen && strncmp(msg, value, vlen) == 0) {
            int w = snprintf(out + o, outlen - o, "<secret>");
            o += w > 0 ? (size_t)w : 0;
            msg += vlen;
            continue;
        }
        out[o++] = *msg++;
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

static obx_status set_one(rd_kafka_conf_t *conf, const obx_kv *kv, char *errstr,
                          size_t errlen)
{
    char why[512] = "";
    if (rd_kafka_conf_set(conf, kv->name, kv->value, why, sizeof why) ==
        RD_KAFKA_CONF_OK)
        return OBX_OK;
    char shown[512];
    if (kfk_is_secret(kv->name))
        kfk_mask(why, kv->value, shown, sizeof shown);
    else
        snprintf(shown, sizeof shown, "%s", why);
    snprintf(errstr, errlen, "broker.kafka.%s (line %d): %s", kv->name,
             kv->line, shown);
    return OBX_CONFIG;
}

static obx_status set_fixed(rd_kafka_conf_t *conf, const char *name,
                            const char *value, char *errstr, size_t errlen)
{
    char why[512] = "";
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) ==
        RD_KAFKA_CONF_OK)
        return OBX_OK;
    snprintf(errstr, errlen, "%s = %s: %s", name, value, why);
    return OBX_CONFIG;
}

static obx_status apply_all(const kfk_config *c, bool bootstrap,
                            rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    obx_status st = OBX_OK;
    size_t nd = sizeof kfk_defaults / sizeof *kfk_defaults;
    for (size_t i = 0; i < nd && st == OBX_OK; i++)
        st = set_fixed(conf, kfk_defaults[i][0], kfk_defaults[i][1], errstr,
                       errlen);
    if (st == OBX_OK && bootstrap)
        st = set_fixed(conf, "bootstrap.servers", c->brokers, errstr, errlen);
    for (size_t i = 0; i < c->kafka.n && st == OBX_OK; i++)
        st = set_one(conf, &c->kafka.items[i], errstr, errlen);
    /* Logs are served by rd_kafka_poll() on the pipeline's thread, never
     * from librdkafka's threads (the host's log is not promised to be
     * thread-safe). Set last: the user cannot undo it. */
    if (st == OBX_OK)
        st = set_fixed(conf, "log.queue", "true", errstr, errlen);
    return st;
}

obx_status kfk_conf_build(const kfk_config *c, bool bootstrap,
                          rd_kafka_conf_t **out, char *errstr, size_t errlen)
{
    *out = NULL;
    obx_status st = kfk_conf_check(c, errstr, errlen);
    if (st != OBX_OK)
        return st;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errstr, errlen, "out of memory");
        return OBX_NOMEM;
    }
    st = apply_all(c, bootstrap, conf, errstr, errlen);
    if (st != OBX_OK) {
        rd_kafka_conf_destroy(conf);
        return st;
    }
    *out = conf;
    return OBX_OK;
}

/* The effective value of a global or default-topic property, or "". */
static void get_prop(const rd_kafka_conf_t *conf, const char *name, char *buf,
                     size_t len)
{
    size_t n = len;
    buf[0] = '\0';
    if (rd_kafka_conf_get(conf, name, buf, &n) == RD_KAFKA_CONF_OK)
        return;
    const rd_kafka_topic_conf_t *tc =
        rd_kafka_conf_get_default_topic_conf((rd_kafka_conf_t *)conf);
    n = len;
    if (!tc || rd_kafka_topic_conf_get(tc, name, buf, &n) != RD_KAFKA_CONF_OK)
        buf[0] = '\0';
}

void kfk_conf_warn(const obx_host *host, const rd_kafka_conf_t *conf)
{
    char v[64];
    get_prop(conf, "enable.idempotence", v, sizeof v);
    if (strcmp(v, "false") == 0)
        host->log(host, OBX_LOG_WARN,
                  "kafka: enable.idempotence is off: librdkafka's own "
                  "retries may now duplicate or reorder events of a key");
    get_prop(conf, "acks", v, sizeof v);
    if (v[0] && strcmp(v, "-1") != 0 && strcasecmp(v, "all") != 0)
        host->log(host, OBX_LOG_WARN,
                  "kafka: acks = %s: a confirmed event can be lost when the "
                  "partition leader fails (use acks = all)",
                  v);
}
