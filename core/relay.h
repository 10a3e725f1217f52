/* The relay process: the config file, the plugins it names, and one
 * pipeline per [pipeline] section, run on their own threads. */
#ifndef OBX_CORE_RELAY_H
#define OBX_CORE_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>

#include "config.h"
#include "http.h"
#include "loader.h"
#include "log.h"
#include "pipeline.h"
#include "settings.h"

typedef struct obx_relay {
    obx_logger *lg; /* borrowed */
    obx_conf_file conf;
    obx_relay_settings settings;
    obx_loader loader;
    /* Each pipeline on the heap: a reload keeps running ones where they
     * are (their threads hold them) while the array around them changes.
     * mu guards the array against the HTTP threads. */
    obx_pipeline **pipelines;
    size_t n_pipelines;
    pthread_mutex_t mu;
    atomic_int stop;
    obx_http *http;
    const char *exe_dir;
    /* Loaders of earlier configs: a pipeline carried over by a reload still
     * points at its plugins there. Freed with the relay. */
    obx_loader *retired;
    size_t n_retired;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    pthread_t main_thread; /* the one in obx_relay_run: pipelines wake it */
} obx_relay;

/* Parse and validate `path`, load every plugin it names and fill their
 * configs from the option tables. Connects to nothing. Returns 0, or -1
 * with err naming file:line (a config error: exit code 2). On error the
 * relay is freed already. */
int obx_relay_load(obx_relay *r, const char *path, const char *exe_dir,
                   obx_logger *lg, char *err, size_t errlen);

/* What `check` found: config errors (exit 2) and servers that could not
 * be reached (OBX_UNAVAILABLE from a validate op: exit 1). */
typedef struct obx_validation {
    unsigned config_errors;
    unsigned unreachable;
} obx_validation;

/* Run the plugins' validate ops (connecting when asked). Writes one line
 * per problem to out. */
obx_validation obx_relay_validate(obx_relay *r, bool connect, FILE *out);

/* The signals that stop the relay cleanly: SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT and SIGPIPE. The caller blocks them in every thread (before it
 * starts any) and obx_relay_run takes them with sigtimedwait. (It also
 * blocks SIGUSR2 itself, in the calling thread: a pipeline that ends sends it
 * to the main thread, so --once exits when the work is done, not at the next
 * tick.) */
void obx_stop_signals(sigset_t *set);

/* Start the metrics endpoint and a thread per pipeline, and wait for one
 * of obx_stop_signals (blocked by the caller) or, with once, for every
 * pipeline to drain. Stops cleanly within shutdown_grace. Returns the exit
 * code: 0 ok, 1 runtime failure. */
int obx_relay_run(obx_relay *r, bool once);

/* SIGHUP: read and validate the config file again (the plugins' validate
 * without connecting, for new and changed pipelines) and bind a changed
 * metrics_listen. Any of that fails: log the error (file:line), count it,
 * keep running as before, untouched. Valid: pipelines whose keys or
 * plugins changed finish their batch, settle it and restart with the new
 * settings; unchanged ones run on untouched; added ones start, removed
 * ones stop. A restarted pipeline that then cannot open runs its previous
 * settings again (an added one is dropped): the reload counts as failed,
 * the relay stays up. Blocks up to the in-flight batches' settling plus
 * 10 s for the new pipelines to open. Main thread only, while the relay
 * runs. */
void obx_relay_reload(obx_relay *r);

/* The pipeline named `name`, or the first one when name is NULL. */
obx_pipeline *obx_relay_pipeline(obx_relay *r, const char *name);

/* Readiness for /readyz; appends reasons to why when not ready. */
bool obx_relay_ready(obx_relay *r, obx_buf *why);

/* Whether a pipeline thread still runs: obx_relay_run returned because
 * the shutdown grace ran out (a publish or settle outlasted it). Main
 * thread, after obx_relay_run. */
bool obx_relay_busy(obx_relay *r);

/* Free what obx_relay_load built. Not while obx_relay_busy: a thread
 * still runs plugin code over the pipelines and their batches, so those
 * are left to the process's exit. Main thread. */
void obx_relay_free(obx_relay *r);

#endif
