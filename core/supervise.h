/* What the relay tells its supervisor (systemd, Type=notify): READY=1 once
 * every pipeline has opened its store and broker, a one-line STATUS=,
 * WATCHDOG=1 pings only while every pipeline's engine loop is alive, and
 * STOPPING=1 / RELOADING=1 around shutdown and reload. Main thread only. */
#ifndef OBX_CORE_SUPERVISE_H
#define OBX_CORE_SUPERVISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notify.h"

typedef struct obx_relay obx_relay;

typedef struct obx_supervisor {
    obx_notify n;
    bool ready_sent;
    bool wedged; /* pings withheld (logged once per episode) */
    int64_t next_status_us, next_ping_us, last_status_us;
    uint64_t *last_published; /* per pipeline, for the STATUS rate */
    size_t n_last;
} obx_supervisor;

/* Read the environment ($NOTIFY_SOCKET, $WATCHDOG_USEC); logs what it
 * found. Never fails. */
void obx_supervisor_init(obx_supervisor *sv, obx_relay *r);

/* Called every ~100 ms by the relay's main loop. */
void obx_supervisor_tick(obx_supervisor *sv, obx_relay *r);

/* RELOADING=1 before a reload, READY=1 (with a fresh STATUS) after it. */
void obx_supervisor_reloading(obx_supervisor *sv);
void obx_supervisor_ready(obx_supervisor *sv);

/* STOPPING=1. */
void obx_supervisor_stopping(obx_supervisor *sv);

void obx_supervisor_free(obx_supervisor *sv);

#endif
