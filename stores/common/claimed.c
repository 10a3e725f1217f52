#include "claimed.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void osc_claimed_add(osc_claimed **list, osc_claimed *e)
{
    e->prev = NULL;
    e->next = *list;
    if (*list)
        (*list)->prev = e;
    *list = e;
}

void osc_claimed_settle(osc_claimed **list, osc_claimed *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        *list = e->next;
    if (e->next)
        e->next->prev = e->prev;
    free(e);
}

void osc_claimed_settle_all(osc_claimed **list)
{
    while (*list)
        osc_claimed_settle(list, *list);
}

typedef struct osc_claim_count {
    int64_t token;
    size_t settling, out; /* its events in this call; all still out */
} osc_claim_count;

long osc_claimed_ended(const osc_claimed *live, const void *items, size_t n,
                       osc_claimed_item_fn item, int64_t *done)
{
    osc_claim_count *c = calloc(n ? n : 1, sizeof *c);
    if (!c)
        return -1;
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t t = item(items, i)->lease_token;
        size_t j = 0;
        while (j < d && c[j].token != t)
            j++;
        c[j].token = t;
        c[j].settling++;
        d += j == d;
    }
    for (const osc_claimed *e = live; e; e = e->next)
        for (size_t j = 0; j < d; j++)
            if (c[j].token == e->lease_token) {
                c[j].out++;
                break;
            }
    long ended = 0;
    for (size_t j = 0; j < d; j++)
        if (c[j].out <= c[j].settling)
            done[ended++] = c[j].token;
    free(c);
    return ended;
}

size_t osc_claimed_tokens(const osc_claimed *live, int64_t *out, size_t cap)
{
    size_t d = 0;
    for (const osc_claimed *e = live; e; e = e->next) {
        size_t j = 0;
        while (j < d && out[j] != e->lease_token)
            j++;
        if (j < d)
            continue;
        if (d == cap)
            return 0;
        out[d++] = e->lease_token;
    }
    return d;
}

void osc_lease_owner(const char *configured, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (configured && configured[0]) {
        snprintf(out, outlen, "%s", configured);
        return;
    }
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(out, outlen, "%s:%ld", host, (long)getpid());
}
