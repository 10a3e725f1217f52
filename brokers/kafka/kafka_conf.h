/* The librdkafka configuration of a relay producer: our defaults, then
 * every broker.kafka.<property> of the config file, validated by
 * librdkafka itself (rd_kafka_conf_set). Shared by validate and open so
 * `outbox-relay check` refuses exactly what `run` would. */
#ifndef KFK_CONF_H
#define KFK_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <outbox/plugin.h>

#include "kafka_config.h"

/* Whether a librdkafka property name looks secret (sasl.password,
 * ssl.key.password, sasl.oauthbearer.client.secret, ...): one of
 * OBX_SECRET_WORDS (<outbox/secret.h>), the words the core masks for
 * OBX_OPT_SECRET prefixes. */
bool kfk_is_secret(const char *property);

/* Copy msg to out with every occurrence of value replaced by "<secret>"
 * (librdkafka quotes the refused value in its messages). Always
 * NUL-terminates when outlen > 0. */
void kfk_mask(const char *msg, const char *value, char *out, size_t outlen);

/* Check what librdkafka cannot: brokers set, no pass-through property that
 * the plugin owns (bootstrap.servers, transactional.id, log.queue, ...),
 * sane limits. OBX_OK or OBX_CONFIG with errstr. */
obx_status kfk_conf_check(const kfk_config *c, char *errstr, size_t errlen);

/* Build the producer configuration into *out (caller-owned: give it to
 * rd_kafka_new or rd_kafka_conf_destroy it). With bootstrap false,
 * bootstrap.servers is left out so a producer created from it never
 * connects (validation without --connect). Errors: OBX_CONFIG naming the
 * property and its config line ("broker.kafka.acks (line 12): ..."), with
 * the value masked when the property looks secret; OBX_NOMEM. *out is
 * NULL on error. */
obx_status kfk_conf_build(const kfk_config *c, bool bootstrap,
                          rd_kafka_conf_t **out, char *errstr, size_t errlen);

/* Log a warning for each setting that weakens the relay's guarantees
 * (idempotence off, acks other than all), read back from the built conf. */
void kfk_conf_warn(const obx_host *host, const rd_kafka_conf_t *conf);

#endif
