/* A map from borrowed strings to pointers, emptied in O(1): the keys whose
 * event failed earlier in the current publish call (broker.h: later events
 * of such a key must not be sent), and the producer's topic handles by
 * name. */
#ifndef OBC_KEYSET_H
#define OBC_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct obc_keyslot {
    const char *key; /* borrowed; valid while gen matches the set's */
    void *value;
    uint64_t hash;
    uint32_t gen;
} obc_keyslot;

typedef struct obc_keyset {
    obc_keyslot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;   /* live entries of the current generation */
    uint32_t gen;
} obc_keyset;

/* Forget every key (the strings may be freed after this). */
void obc_keyset_clear(obc_keyset *s);

/* Whether key is in the set. */
bool obc_keyset_has(const obc_keyset *s, const char *key);

/* Add key (borrowed until the next clear). 0, or -1 when out of memory. */
int obc_keyset_add(obc_keyset *s, const char *key);

/* The value stored with key, or NULL when key is absent. */
void *obc_keyset_get(const obc_keyset *s, const char *key);

/* Add key with value, or replace its value. Both borrowed. 0, or -1 when
 * out of memory. */
int obc_keyset_put(obc_keyset *s, const char *key, void *value);

/* Call fn on the value of every entry, in no particular order. */
void obc_keyset_each(const obc_keyset *s, void (*fn)(void *));

/* Release the memory; the set is then empty and reusable. */
void obc_keyset_free(obc_keyset *s);

#endif
