/* The end-to-end harness of the rabbitmq tests: the real outbox-relay
 * binary with the sqlite store (or pg_poll, in test_rabbitmq_e2e.c) and
 * the rabbitmq broker, rows written with plain SQL as an application
 * would, the queue read back with rmq_testlib's consumer. */
#ifndef OBX_TEST_RMQ_RELAY_H
#define OBX_TEST_RMQ_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rmq_testlib.h"

#define RMQR_BIN OBX_BUILD_DIR "/outbox-relay"

typedef struct rmqr {
    char *dir;
    char db[4200], conf[4200], out[4200], err[4200];
    char url[512];
    char queue[128];
    int port;              /* metrics_listen */
    const char *log_level; /* [relay] log_level, default info */
    pid_t relay;           /* a relay in run mode, 0 when none */
} rmqr;

/* A temp dir, paths, a free metrics port; url is the server's. */
rmqr *rmqr_new(const char *url, const char *queue);
/* Kill a relay still running, remove the temp dir, free. */
void rmqr_free(rmqr *r);

/* The config: `store` lines (store = ... and its keys), then the
 * broker.url and `extra` lines. topic (the routing key) is the queue
 * name unless extra sets it. */
void rmqr_write_conf_for(rmqr *r, const char *store, const char *extra);
/* The same with the sqlite store on r->db. */
void rmqr_write_conf(rmqr *r, const char *extra);

/* sqlite helpers on r->db. */
void rmqr_sql(rmqr *r, const char *q);
long long rmqr_sql_int(rmqr *r, const char *q);
/* The first column of the first row as a heap string, NULL if none. */
char *rmqr_sql_text(rmqr *r, const char *q);
/* No row has attempts > 0; else fail with its last_error and the log. */
void rmqr_assert_no_attempts(rmqr *r);
void rmqr_create_schema(rmqr *r);
/* Events from..from+n over `keys` keys (aggregate ids o0..), a trace-id
 * header each, one transaction; payload {"seq":i}. */
void rmqr_insert(rmqr *r, int from, int n, int keys);
/* seq -> event_id (n + 1 entries, heap). */
char **rmqr_event_ids(rmqr *r, int n);
void rmqr_free_ids(char **ids, int n);

/* Every event 0..n-1 exactly once in queue (but skip_seq, -1: none),
 * with message_id = outbox-event-id = ids[seq], type, app_id,
 * persistent, content_type application/json, headers; per-key order.
 * Consumes the queue. */
void rmqr_check_queue(rmqr *r, const char *queue, char **ids, int n, int keys,
                      int skip_seq);

/* Start `outbox-relay run -c conf` in the background; returns once its
 * pipeline runs (the log says so), fails when it does not. */
void rmqr_start(rmqr *r);
/* SIGTERM and wait; fails (with the relay's log) on a non-zero exit. */
void rmqr_stop(rmqr *r);
/* The exit code of child pid if it has exited (reaped now), else -1.
 * Never kills it (proc_wait does on timeout). */
int rmqr_exited(pid_t pid);
/* Fail (with the log) when a relay started by rmqr_start has exited. */
void rmqr_assert_running(rmqr *r);
/* Until no row is neither published nor dead (sqlite), or fail. */
void rmqr_wait_settled(rmqr *r, int timeout_ms);
/* Print the relay's log and fail with what. */
void rmqr_fail_with_log(rmqr *r, const char *what);
/* Poll /readyz until its body contains `want` (status 503) or fail after
 * timeout_ms; returns nothing, body checked. */
void rmqr_wait_readyz(rmqr *r, const char *want, int timeout_ms);
/* Whether the file contains s. */
bool rmqr_file_has(const char *path, const char *s);

#endif
