/* The window of unconfirmed messages of one confirm-mode channel.
 *
 * After confirm.select the server numbers the messages of a channel 1, 2,
 * 3 ... (delivery tags) and answers each with basic.ack or basic.nack,
 * possibly for many at once (multiple = every tag up to this one). The
 * window maps the tags in flight to the index of their event in the
 * publish call, in a ring of fixed capacity (the max_in_flight option).
 * One thread (the pipeline's); no allocation after init.
 */
#ifndef OBX_BROKER_RABBITMQ_WINDOW_H
#define OBX_BROKER_RABBITMQ_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBX_RMQ_NO_EVENT UINT32_MAX

typedef struct obx_rmq_window {
    uint32_t *slot; /* event index per tag (tag % cap), or OBX_RMQ_NO_EVENT */
    size_t cap;
    uint64_t head;  /* oldest tag still in the ring */
    uint64_t next;  /* tag of the next message published */
    size_t pending; /* tags in [head, next) not yet answered */
} obx_rmq_window;

/* Called for each event answered; ack false for a nack. */
typedef void (*obx_rmq_window_fn)(void *ctx, uint32_t event, bool ack);

/* Allocate a window of cap tags, starting at tag 1. 0, or -1 when out of
 * memory. */
int obx_rmq_window_init(obx_rmq_window *w, size_t cap);

/* Release the ring; the window is then unusable until init. */
void obx_rmq_window_free(obx_rmq_window *w);

/* Forget everything and start again at tag 1 (a channel just opened and
 * put into confirm mode). */
void obx_rmq_window_reset(obx_rmq_window *w);

/* Whether one more message may be published: fewer than cap tags between
 * the oldest unanswered one and the next. */
bool obx_rmq_window_has_room(const obx_rmq_window *w);

/* Record that the next message carries event; returns its tag. Only when
 * has_room. */
uint64_t obx_rmq_window_push(obx_rmq_window *w, uint32_t event);

/* A basic.ack (ack true) or basic.nack for tag, multiple or not: calls fn
 * for every event it answers that was not answered before, in tag order.
 * Tags outside the window (stale, duplicate, from the future) answer
 * nothing. Returns how many events it answered. */
size_t obx_rmq_window_answer(obx_rmq_window *w, uint64_t tag, bool multiple,
                             bool ack, obx_rmq_window_fn fn, void *ctx);

/* Take event out of the window without an answer (it was returned as
 * unroutable and has its result already; its ack, when it comes, answers
 * nothing). Returns its tag, or 0 when it is not in the window. */
uint64_t obx_rmq_window_forget(obx_rmq_window *w, uint32_t event);

/* Call fn(ctx, event, false) for every unanswered event and empty the
 * window (the channel closed: no answer will come). Returns how many. */
size_t obx_rmq_window_drain(obx_rmq_window *w, obx_rmq_window_fn fn, void *ctx);

/* Each unanswered event in tag order: start with *pos = 0; false when
 * there is none left. */
bool obx_rmq_window_next(const obx_rmq_window *w, uint64_t *pos,
                         uint32_t *event);

#endif
