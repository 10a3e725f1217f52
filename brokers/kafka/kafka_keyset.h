/* A map from borrowed strings to pointers, emptied in O(1): the keys whose
 * event failed earlier in the current publish call (broker.h: later events
 * of such a key must not be sent), and the producer's topic handles by
 * name. */
#ifndef KFK_KEYSET_H
#define KFK_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kfk_keyslot {
    const char *key; /* borrowed; valid while gen matches the set's */
    void *value;
    uint64_t hash;
    uint32_t gen;
} kfk_keyslot;

typedef struct kfk_keyset {
    kfk_keyslot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;   /* live entries of the current generation */
    uint32_t gen;
} kfk_keyset;

/* Forget every key (the strings may be freed after this). */
void kfk_keyset_clear(kfk_keyset *s);

/* Whether key is in the set. */
bool kfk_keyset_has(const kfk_keyset *s, const char *key);

/* Add key (borrowed until the next clear). 0, or -1 when out of memory. */
int kfk_keyset_add(kfk_keyset *s, const char *key);

/* The value stored with key, or NULL when key is absent. */
void *kfk_keyset_get(const kfk_keyset *s, const char *key);

/* Add key with value, or replace its value. Both borrowed. 0, or -1 when
 * out of memory. */
int kfk_keyset_put(kfk_keyset *s, const char *key, void *value);

/* Call fn on the value of every entry, in no particular order. */
void kfk_keyset_each(const kfk_keyset *s, void (*fn)(void *));

/* Release the memory; the set is then empty and reusable. */
void kfk_keyset_free(kfk_keyset *s);

#endif
