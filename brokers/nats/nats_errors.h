/* cnats statuses and JetStream error codes -> what the engine does with
 * the event.
 *
 * Kept apart from the plugin so the table has its own unit test
 * (tests/nats/test_nats_errors.c) and the reasoning sits in one place.
 * Compiled into the plugin with hidden visibility: not exported.
 */
#ifndef NATSB_ERRORS_H
#define NATSB_ERRORS_H

#include <stdbool.h>

#include <nats/nats.h>
#include <outbox/status.h>

/* The status for one event whose publish failed with s (and, for errors
 * the JetStream server answered, its error code; 0 when none):
 *  - OBX_OK for NATS_OK;
 *  - OBX_PERMANENT when the event can never succeed: larger than the
 *    server's max_payload or the stream's max_msg_size, an invalid
 *    subject, the subject captured by another stream than
 *    broker.expect_stream;
 *  - OBX_UNAVAILABLE when the server refuses us rather than the event:
 *    disconnected, unreachable, authentication or permissions, TLS, slow
 *    consumer on our connection, JetStream not enabled, the stream out of
 *    resources or offline, and no responders (see natsb_no_responders);
 *  - OBX_RETRY otherwise: a PubAck timeout (Nats-Msg-Id makes the
 *    republish safe) and any code not listed.
 * Never OBX_FATAL. */
obx_status natsb_classify(natsStatus s, jsErrCode code);

/* A publish answered "no responders": nothing subscribes to the subject,
 * which for JetStream means no stream captures it, or JetStream itself is
 * not there. js_answers: whether a JetStream API request (account info)
 * just succeeded; stream_missing: the configured broker.stream does not
 * exist. PERMANENT only when JetStream answers and the configured stream
 * (if any) exists: then this subject is the event's own problem; else
 * UNAVAILABLE (a missing stream would otherwise dead-letter everything). */
obx_status natsb_no_responders(bool js_answers, bool stream_missing);

/* Whether s on a connection-level call (connect, flush, a JetStream API
 * request) means the server cannot be used right now. */
bool natsb_is_server_wide(natsStatus s);

/* A short advice for the operator about s/code, or NULL. Static. */
const char *natsb_hint(natsStatus s, jsErrCode code);

#endif
