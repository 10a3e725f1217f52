/* systemd's notify protocol (sd_notify(3)), spoken directly: one datagram
 * per state change to $NOTIFY_SOCKET, so the relay can run as
 * Type=notify with a watchdog without linking libsystemd. Without
 * NOTIFY_SOCKET every call is a no-op. */
#ifndef OBX_CORE_NOTIFY_H
#define OBX_CORE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct obx_notify {
    int fd; /* -1 when not under a notify-aware supervisor */
    char path[108];
    unsigned path_len;   /* with a leading NUL for an abstract socket */
    int64_t watchdog_us; /* WATCHDOG_USEC for this process, 0: none */
} obx_notify;

/* Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID. Never fails: a bad
 * socket path just leaves notification off (and says why in *why). */
void obx_notify_init(obx_notify *n, const char **why);

/* Send one message ("READY=1", "STATUS=...\nWATCHDOG=1"). Best effort:
 * the supervisor may be gone. Main thread only. */
void obx_notify_send(obx_notify *n, const char *msg);

bool obx_notify_enabled(const obx_notify *n);
void obx_notify_close(obx_notify *n);

#endif
