#include "err_words.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OSC_CUT_MARK " [...]"

char *osc_errf_words(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen == 0)
        return err;
    va_list ap;
    va_start(ap, fmt);
    char *full = NULL;
    int n = vasprintf(&full, fmt, ap);
    va_end(ap);
    if (n < 0) {
        snprintf(err, errlen, "%s", "out of memory formatting an error");
        return err;
    }
    if ((size_t)n < errlen) {
        memcpy(err, full, (size_t)n + 1);
        free(full);
        return err;
    }
    size_t mark = sizeof OSC_CUT_MARK - 1;
    size_t cut = errlen > mark + 1 ? errlen - mark - 1 : 0;
    size_t at = cut;
    while (at > 0 && full[at] != ' ')
        at--;
    if (at == 0) /* one long word: cut it, but not inside a character */
        for (at = cut; at > 0 && ((unsigned char)full[at] & 0xC0) == 0x80;)
            at--;
    while (at > 0 && strchr(" ,;:", full[at - 1]))
        at--;
    memcpy(err, full, at);
    snprintf(err + at, errlen - at, "%s",
             errlen > mark + 1 ? OSC_CUT_MARK : "");
    free(full);
    return err;
}
