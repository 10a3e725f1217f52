#include "keyset.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void obx_keyset_init(obx_keyset *ks)
{
    memset(ks, 0, sizeof *ks);
}

static void free_entry(obx_keyset_entry *e)
{
    free(e->key);
    free(e->holder);
    memset(e, 0, sizeof *e);
}

void obx_keyset_clear(obx_keyset *ks)
{
    for (size_t i = 0; i < ks->cap; i++)
        free_entry(&ks->slots[i]);
    ks->used = ks->live = 0;
}

void obx_keyset_free(obx_keyset *ks)
{
    obx_keyset_clear(ks);
    free(ks->slots);
    memset(ks, 0, sizeof *ks);
}

static obx_keyset_entry *find(obx_keyset *ks, const char *key, int for_insert)
{
    if (ks->cap == 0)
        return NULL;
    size_t mask = ks->cap - 1, i = hash_str(key) & mask;
    obx_keyset_entry *tomb = NULL;
    for (;; i = (i + 1) & mask) {
        obx_keyset_entry *e = &ks->slots[i];
        if (e->tomb) {
            if (!tomb)
                tomb = e;
            continue;
        }
        if (!e->key)
            return for_insert ? (tomb ? tomb : e) : NULL;
        if (strcmp(e->key, key) == 0)
            return e;
    }
}

static int grow(obx_keyset *ks)
{
    size_t ncap = ks->cap ? ks->cap * 2 : 64;
    if (ks->live * 4 < ks->cap)
        ncap = ks->cap; /* mostly tombstones: rehash in place size */
    obx_keyset_entry *old = ks->slots;
    size_t ocap = ks->cap;
    ks->slots = calloc(ncap, sizeof *ks->slots);
    if (!ks->slots) {
        ks->slots = old;
        return -1;
    }
    ks->cap = ncap;
    ks->used = ks->live = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].key || old[i].tomb)
            continue;
        obx_keyset_entry *e = find(ks, old[i].key, 1);
        *e = old[i];
        ks->used++;
        ks->live++;
    }
    free(old);
    return 0;
}

obx_keyset_entry *obx_keyset_get(obx_keyset *ks, const char *key)
{
    return find(ks, key, 0);
}

int obx_keyset_put(obx_keyset *ks, const char *key, const char *holder,
                   int64_t until_us)
{
    obx_keyset_entry *e = find(ks, key, 0);
    if (!e) {
        if ((ks->used + 1) * 4 >= ks->cap * 3 && grow(ks) != 0)
            return -1;
        e = find(ks, key, 1);
        int was_tomb = e->tomb;
        e->tomb = 0;
        e->key = strdup(key);
        if (!e->key)
            return -1;
        if (!was_tomb)
            ks->used++;
        ks->live++;
    }
    char *h = strdup(holder ? holder : "");
    if (!h)
        return -1;
    free(e->holder);
    e->holder = h;
    e->until_us = until_us;
    return 0;
}

void obx_keyset_del(obx_keyset *ks, const char *key)
{
    obx_keyset_entry *e = find(ks, key, 0);
    if (!e)
        return;
    free_entry(e);
    e->tomb = 1;
    ks->live--;
}
