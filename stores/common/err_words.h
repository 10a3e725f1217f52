/* Error text that fits the caller's buffer without cutting a word. */
#ifndef OSC_STORE_ERR_WORDS_H
#define OSC_STORE_ERR_WORDS_H

#include <stddef.h>

#include <outbox/host.h>

/* snprintf into err (errlen bytes, NUL-terminated when errlen > 0); when
 * the text is longer, it ends at the last whole word that leaves room for
 * " [...]", so a reader never gets half a word or half a UTF-8 character
 * and can tell the message was shortened. Returns err. Thread-safe. */
char *osc_errf_words(char *err, size_t errlen, const char *fmt, ...)
    OBX_PRINTF(3, 4);

#endif
