/* An event as an AMQP message: basic properties and the headers table.
 *
 *   delivery_mode  2 (persistent)
 *   message_id     event id          type       event type
 *   timestamp      created_at (s)    app_id     broker.app_id
 *   content_type   broker.content_type, else application/json when the
 *                  payload is valid JSON, else application/octet-stream
 *   headers        outbox-event-id, outbox-event-type,
 *                  outbox-aggregate-type, outbox-aggregate-id, then the
 *                  event's own headers (the kafka broker's names)
 *
 * The properties point into the event (borrowed) and into the builder's
 * own table storage, reused from message to message. One thread.
 */
#ifndef RMQ_MESSAGE_H
#define RMQ_MESSAGE_H

#include <stddef.h>

#include <amqp.h>
#include <outbox/event.h>

#define RMQ_H_EVENT_ID "outbox-event-id"
#define RMQ_H_EVENT_TYPE "outbox-event-type"
#define RMQ_H_AGG_TYPE "outbox-aggregate-type"
#define RMQ_H_AGG_ID "outbox-aggregate-id"

typedef struct rmq_message {
    amqp_basic_properties_t props;
    amqp_table_entry_t *entries; /* storage for props.headers */
    size_t cap;
} rmq_message;

/* Fill m->props for ev. content_type "" picks by payload; app_id "" sets
 * none. Returns 0; -1 with errstr when the event cannot be expressed in
 * AMQP (a short string over 255 bytes: id, type, header name), -2 when out
 * of memory. m borrows from ev until the next build. */
int rmq_message_build(rmq_message *m, const obx_event *ev,
                      const char *content_type, const char *app_id,
                      char *errstr, size_t errlen);

/* The encoded size of the content-header frame's payload for m->props
 * (what must fit into frame_max), in bytes. */
size_t rmq_message_header_size(const rmq_message *m);

/* Release the table storage. */
void rmq_message_free(rmq_message *m);

#endif
