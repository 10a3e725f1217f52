#include "keyset.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static bool live(const obc_keyset *s, const obc_keyslot *e)
{
    return e->key && e->gen == s->gen;
}

/* The slot holding key, or the free slot where it belongs. The table is
 * never full (at most half), so the probe ends. */
static obc_keyslot *probe(const obc_keyset *s, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (s->cap - 1);
    for (;; i = (i + 1) & (s->cap - 1)) {
        obc_keyslot *e = &s->slots[i];
        if (!live(s, e) || (e->hash == h && strcmp(e->key, key) == 0))
            return e;
    }
}

void obc_keyset_clear(obc_keyset *s)
{
    if (s->n == 0)
        return;
    s->n = 0;
    /* A new generation makes every slot free at once; on the rare wrap,
     * wipe the table so no stale slot looks live. */
    if (++s->gen == 0 && s->slots)
        memset(s->slots, 0, s->cap * sizeof *s->slots);
}

bool obc_keyset_has(const obc_keyset *s, const char *key)
{
    if (s->n == 0)
        return false;
    return live(s, probe(s, key, hash_str(key)));
}

static int grow(obc_keyset *s)
{
    obc_keyset bigger = {.cap = s->cap ? s->cap * 2 : 64, .gen = 1};
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (!bigger.slots)
        return -1;
    for (size_t i = 0; i < s->cap; i++) {
        obc_keyslot *e = &s->slots[i];
        if (!live(s, e))
            continue;
        obc_keyslot *d = probe(&bigger, e->key, e->hash);
        *d = *e;
        d->gen = bigger.gen;
        bigger.n++;
    }
    free(s->slots);
    *s = bigger;
    return 0;
}

int obc_keyset_put(obc_keyset *s, const char *key, void *value)
{
    if ((s->n + 1) * 2 > s->cap && grow(s) != 0)
        return -1;
    uint64_t h = hash_str(key);
    obc_keyslot *e = probe(s, key, h);
    if (live(s, e)) {
        e->value = value;
        return 0;
    }
    *e = (obc_keyslot){.key = key, .value = value, .hash = h, .gen = s->gen};
    s->n++;
    return 0;
}

int obc_keyset_add(obc_keyset *s, const char *key)
{
    return obc_keyset_put(s, key, NULL);
}

void *obc_keyset_get(const obc_keyset *s, const char *key)
{
    if (s->n == 0)
        return NULL;
    const obc_keyslot *e = probe(s, key, hash_str(key));
    return live(s, e) ? e->value : NULL;
}

void obc_keyset_each(const obc_keyset *s, void (*fn)(void *))
{
    for (size_t i = 0; i < s->cap; i++)
        if (live(s, &s->slots[i]))
            fn(s->slots[i].value);
}

void obc_keyset_free(obc_keyset *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}
