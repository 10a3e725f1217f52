/* Error text for a store's config checks, in the form the core prints. */
#ifndef OSC_STORE_ERR_H
#define OSC_STORE_ERR_H

#include <stddef.h>

#include <outbox/host.h>

/* Format a message into err (errlen bytes, always NUL-terminated when
 * errlen > 0), prefixed with "line N: " when `line` > 0 so the user finds
 * the config line that caused it. Messages longer than the buffer are cut;
 * there is no failure. */
void osc_store_errf(char *err, size_t errlen, int line, const char *fmt, ...)
    OBX_PRINTF(4, 5);

#endif
