/* The confirm window: a ring indexed by delivery tag. See the header. */
#include "rabbitmq_window.h"

#include <stdlib.h>

int rmq_window_init(rmq_window *w, size_t cap)
{
    w->slot = malloc((cap ? cap : 1) * sizeof *w->slot);
    if (!w->slot)
        return -1;
    w->cap = cap ? cap : 1;
    rmq_window_reset(w);
    return 0;
}

void rmq_window_free(rmq_window *w)
{
    free(w->slot);
    w->slot = NULL;
    w->cap = 0;
}

void rmq_window_reset(rmq_window *w)
{
    w->head = w->next = 1;
    w->pending = 0;
}

bool rmq_window_has_room(const rmq_window *w)
{
    return w->next - w->head < w->cap;
}

uint64_t rmq_window_push(rmq_window *w, uint32_t event)
{
    uint64_t tag = w->next++;
    w->slot[tag % w->cap] = event;
    w->pending++;
    return tag;
}

/* Drop answered tags from the front. */
static void advance(rmq_window *w)
{
    while (w->head < w->next && w->slot[w->head % w->cap] == RMQ_NO_EVENT)
        w->head++;
}

static bool answer_one(rmq_window *w, uint64_t tag, bool ack, rmq_window_fn fn,
                       void *ctx)
{
    uint32_t *s = &w->slot[tag % w->cap];
    if (*s == RMQ_NO_EVENT)
        return false;
    uint32_t ev = *s;
    *s = RMQ_NO_EVENT;
    w->pending--;
    if (fn)
        fn(ctx, ev, ack);
    return true;
}

size_t rmq_window_answer(rmq_window *w, uint64_t tag, bool multiple, bool ack,
                         rmq_window_fn fn, void *ctx)
{
    size_t n = 0;
    if (tag >= w->next)
        return 0; /* never published on this channel */
    if (multiple) {
        for (uint64_t t = w->head; t <= tag; t++)
            n += answer_one(w, t, ack, fn, ctx);
    } else if (tag >= w->head) {
        n += answer_one(w, tag, ack, fn, ctx);
    }
    advance(w);
    return n;
}

uint64_t rmq_window_forget(rmq_window *w, uint32_t event)
{
    for (uint64_t t = w->head; t < w->next; t++) {
        if (w->slot[t % w->cap] == event) {
            answer_one(w, t, false, NULL, NULL);
            advance(w);
            return t;
        }
    }
    return 0;
}

size_t rmq_window_drain(rmq_window *w, rmq_window_fn fn, void *ctx)
{
    size_t n = 0;
    for (uint64_t t = w->head; t < w->next; t++)
        n += answer_one(w, t, false, fn, ctx);
    w->head = w->next;
    return n;
}

bool rmq_window_next(const rmq_window *w, uint64_t *pos, uint32_t *event)
{
    uint64_t t = *pos < w->head ? w->head : *pos;
    for (; t < w->next; t++) {
        uint32_t ev = w->slot[t % w->cap];
        if (ev != RMQ_NO_EVENT) {
            *event = ev;
            *pos = t + 1;
            return true;
        }
    }
    *pos = t;
    return false;
}
