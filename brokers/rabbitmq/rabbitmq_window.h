/* The window of unconfirmed messages of one confirm-mode channel.
 *
 * After confirm.select the server numbers the messages of a channel 1, 2,
 * 3 ... (delivery tags) and answers each with basic.ack or basic.nack,
 * possibly for many at once (multiple = every tag up to this one). The
 * window maps the tags in flight to the index of their event in the
 * publish call, in a ring of fixed capacity (the max_in_flight option).
 * One thread (the pipeline's); no allocation after init.
 */
#ifndef RMQ_WINDOW_H
#define RMQ_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_NO_EVENT UINT32_MAX

typedef struct rmq_window {
    uint32_t *slot; /* event index per tag (tag % cap), or RMQ_NO_EVENT */
    size_t cap;
    uint64_t head;  /* oldest tag still in the ring */
    uint64_t next;  /* tag of the next message published */
    size_t pending; /* tags in [head, next) not yet answered */
} rmq_window;

/* Called for each event answered; ack false for a nack. */
typedef void (*rmq_window_fn)(void *ctx, uint32_t event, bool ack);

/* Allocate a window of cap tags, starting at tag 1. 0, or -1 when out of
 * memory. */
int rmq_window_init(rmq_window *w, size_t cap);

/* Release the ring; the window is then unusable until init. */
void rmq_window_free(rmq_window *w);

/* Forget everything and start again at tag 1 (a channel just opened and
 * put into confirm mode). */
void rmq_window_reset(rmq_window *w);

/* Whether one more message may be published: fewer than cap tags between
 * the oldest unanswered one and the next. */
bool rmq_window_has_room(const rmq_window *w);

/* Record that the next message carries event; returns its tag. Only when
 * has_room. */
uint64_t rmq_window_push(rmq_window *w, uint32_t event);

/* A basic.ack (ack true) or basic.nack for tag, multiple or not: calls fn
 * for every event it answers that was not answered before, in tag order.
 * Tags outside the window (stale, duplicate, from the future) answer
 * nothing. Returns how many events it answered. */
size_t rmq_window_answer(rmq_window *w, uint64_t tag, bool multiple, bool ack,
                         rmq_window_fn fn, void *ctx);

/* Take event out of the window without an answer (it was returned as
 * unroutable and has its result already; its ack, when it comes, answers
 * nothing). Returns its tag, or 0 when it is not in the window. */
uint64_t rmq_window_forget(rmq_window *w, uint32_t event);

/* Call fn(ctx, event, false) for every unanswered event and empty the
 * window (the channel closed: no answer will come). Returns how many. */
size_t rmq_window_drain(rmq_window *w, rmq_window_fn fn, void *ctx);

/* Each unanswered event in tag order: start with *pos = 0; false when
 * there is none left. */
bool rmq_window_next(const rmq_window *w, uint64_t *pos, uint32_t *event);

#endif
