/* Error text for a store's config checks, in the form the core prints. */
#ifndef OSC_STORE_ERR_H
#define OSC_STORE_ERR_H

#include <stddef.h>

#include <outbox/host.h>

/* Format a message into err (errlen bytes, always NUL-terminated when
 * errlen > 0), prefixed with "line N: " when `line` > 0 so the user finds
 * the config line that caused it. A plugin never sees the file name: the
 * core turns a leading "line N: " into "FILE:N: " where it reports a
 * validate error (check, run, reload; core/relay.c locate_err), so keep
 * the prefix exactly so. Messages longer than the buffer are cut; there
 * is no failure. */
void osc_store_errf(char *err, size_t errlen, int line, const char *fmt, ...)
    OBX_PRINTF(4, 5);

#endif
