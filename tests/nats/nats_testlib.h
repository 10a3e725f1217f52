/* Helpers for the nats tests: the private nats-server of the ctest
 * fixture `nats` (tests/nats/nats_start.sh) or a server of a test's own
 * (for kill and restart), streams, and a cnats JetStream consumer that
 * reads a stream back. Failures abort the test. */
#ifndef OBX_NATS_TESTLIB_H
#define OBX_NATS_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

/* Where the fixture writes the server's URL and state. */
#define NT_STATE_DIR OBX_BUILD_DIR "/tests/nats"

/* The fixture server's URL; fails the test (never skips) when it is not
 * there. Static buffer. */
const char *nt_fixture_url(void);

/* A server of the test's own in state_dir (nats_start.sh; extra: more
 * nats-server arguments, or NULL). Returns its URL (static buffer). */
const char *nt_server_start(const char *state_dir, const char *extra);
/* SIGKILL it, keeping port and store. */
void nt_server_kill(const char *state_dir);
/* Start it again on the same port and store directory. */
void nt_server_restart(const char *state_dir);
/* The same with other nats-server arguments. */
void nt_server_restart_with(const char *state_dir, const char *extra);
/* Kill it and remove its directory. */
void nt_server_stop(const char *state_dir);
/* SIGSTOP it and wait until every thread of it is stopped; SIGCONT. */
void nt_server_freeze(const char *state_dir);
void nt_server_thaw(const char *state_dir);
/* The pid of the server in state_dir. */
int nt_server_pid(const char *state_dir);

/* A connection with a JetStream context (api wait 5 s). */
typedef struct nt_conn {
    natsConnection *nc;
    jsCtx *js;
} nt_conn;

nt_conn nt_connect(const char *url);
void nt_close(nt_conn *c);

/* Create (file storage) or replace stream `name` capturing the
 * comma-separated `subjects`, with a duplicate window of dup_ms. */
void nt_stream_create(const char *url, const char *name, const char *subjects,
                      int64_t dup_ms);
void nt_stream_delete(const char *url, const char *name);
/* Messages in the stream, -1 when it does not exist. */
int64_t nt_stream_count(const char *url, const char *name);
/* The stream's duplicate window in ms, -1 when it does not exist. */
int64_t nt_stream_dup_ms(const char *url, const char *name);

/* One message read back. */
typedef struct nt_msg {
    char *subject;
    char *data; /* NUL-terminated copy */
    int len;
    uint64_t seq; /* stream sequence */
    char *msg_id, *event_id, *event_type, *agg_type, *agg_id, *trace;
} nt_msg;

typedef struct nt_msgs {
    nt_msg *items;
    size_t n;
} nt_msgs;

/* Every message of stream `name`, in stream order, through an ephemeral
 * push consumer (deliver all, no acks); stops once the stream's count is
 * read or after idle_ms without a message. */
nt_msgs nt_read_stream(const char *url, const char *name, int idle_ms);
void nt_msgs_free(nt_msgs *m);

/* The number after "seq": in a payload, -1 when none. */
long nt_seq(const nt_msg *m);

/* Assert that for every aggregate id, "seq" values grow in stream order;
 * returns the number of ids. */
size_t nt_assert_key_order(const nt_msgs *m);

int64_t nt_now_ms(void);
void nt_sleep_ms(int ms);

#endif
