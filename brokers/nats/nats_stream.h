/* The target stream: looked up (or created) at open and at
 * `check --connect`, compared with the subjects the relay publishes to and
 * with the longest retry wait. Pipeline thread only. */
#ifndef NATSB_STREAM_H
#define NATSB_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <nats/nats.h>
#include <outbox/plugin.h>

#include "nats_config.h"

/* Whether the stream subject pattern `pattern` captures every subject that
 * `subject` (itself possibly with * and > wildcards) can stand for. */
bool natsb_subject_covers(const char *pattern, const char *subject);

/* What natsb_stream_check found. */
typedef struct natsb_stream_state {
    bool js_answers; /* a JetStream API request was answered */
    bool missing;    /* broker.stream does not exist */
    bool created;    /* it did not; create_stream created it just now */
} natsb_stream_state;

/* Look up broker.stream (create it with create_stream), check it captures
 * every broker.subjects entry, and when warn is true log a warning if its
 * duplicate window is shorter than host->retry_max_delay_ms. Without
 * broker.stream, only checks that JetStream answers.
 * OBX_OK; OBX_UNAVAILABLE (JetStream not answering, the stream missing),
 * OBX_CONFIG (the stream does not capture a configured subject), with a
 * masked errstr. *st says which. */
obx_status natsb_stream_check(const obx_host *host, const natsb_config *c,
                              jsCtx *js, bool warn, natsb_stream_state *st,
                              char *errstr, size_t errlen);

/* Whether JetStream answers an account-info request within the context's
 * API timeout. */
bool natsb_js_answers(jsCtx *js);

#endif
