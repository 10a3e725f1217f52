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
