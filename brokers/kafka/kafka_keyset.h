/* A map from borrowed strings to pointers, emptied in O(1): the keys whose
 * event failed earlier in the current publish call (broker.h: later events
 * of such a key must not be sent), and the producer's topic handles by
 * name. */
#ifndef OBX_BROKER_KAFKA_KEYSET_H
#define OBX_BROKER_KAFKA_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct obx_kafka_keyslot {
    const char *key; /* borrowed; valid while gen matches the set's */
    void *value;
    uint64_t hash;
    uint32_t gen;
} obx_kafka_keyslot;

typedef struct obx_kafka_keyset {
    obx_kafka_keyslot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;   /* live entries of the current generation */
    uint32_t gen;
} obx_kafka_keyset;

/* Forget every key (the strings may be freed after this). */
void obx_kafka_keyset_clear(obx_kafka_keyset *s);

/* Whether key is in the set. */
bool obx_kafka_keyset_has(const obx_kafka_keyset *s, const char *key);

/* Add key (borrowed until the next clear). 0, or -1 when out of memory. */
int obx_kafka_keyset_add(obx_kafka_keyset *s, const char *key);

/* The value stored with key, or NULL when key is absent. */
void *obx_kafka_keyset_get(const obx_kafka_keyset *s, const char *key);

/* Add key with value, or replace its value. Both borrowed. 0, or -1 when
 * out of memory. */
int obx_kafka_keyset_put(obx_kafka_keyset *s, const char *key, void *value);

/* Call fn on the value of every entry, in no particular order. */
void obx_kafka_keyset_each(const obx_kafka_keyset *s, void (*fn)(void *));

/* Release the memory; the set is then empty and reusable. */
void obx_kafka_keyset_free(obx_kafka_keyset *s);

#endif
