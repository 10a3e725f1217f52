/* A set of ordering keys, each with the event holding it back and until
 * when: the engine's per-key hold for stores that do not order claims
 * themselves, and its per-batch "a key failed" set. Open addressing;
 * grows as needed; owns copies of the strings. */
#ifndef OBX_CORE_KEYSET_H
#define OBX_CORE_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct obx_keyset_entry {
    char *key;        /* NULL: empty slot */
    char *holder;     /* event id holding the key back */
    int64_t until_us; /* the holder's retry time */
    int tomb;         /* deleted slot */
} obx_keyset_entry;

typedef struct obx_keyset {
    obx_keyset_entry *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones */
    size_t live;
} obx_keyset;

void obx_keyset_init(obx_keyset *ks);
void obx_keyset_free(obx_keyset *ks);
/* Remove everything, keep the memory. */
void obx_keyset_clear(obx_keyset *ks);
/* Entry for key, or NULL. Valid until the next put/del. */
obx_keyset_entry *obx_keyset_get(obx_keyset *ks, const char *key);
/* Insert or update; returns 0, or -1 on no memory. */
int obx_keyset_put(obx_keyset *ks, const char *key, const char *holder,
                   int64_t until_us);
/* Remove key if present. */
void obx_keyset_del(obx_keyset *ks, const char *key);

#endif
