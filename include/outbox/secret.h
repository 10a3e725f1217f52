/* The words that make a name secret, written once for everything that
 * hides values: the core's masking of printed text (host->mask), the
 * OBX_OPT_SECRET prefix options (whose keys are masked in logs, `check`
 * and errors when their name holds one of the words) and a plugin's own
 * pass-through of library properties (the kafka broker's librdkafka
 * errors). Header-only: nothing here crosses the plugin ABI, and a plugin
 * built against an older copy keeps the list it was built with.
 * Thread-safe (no state). */
#ifndef OUTBOX_SECRET_H
#define OUTBOX_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* A name containing any of these, in any case, names a secret
 * ("sslpassword", "sasl.password", "ssl.key.pem", "client_secret",
 * "oauth.TOKEN"). "key" is broad on purpose: a key file's path or a
 * private key's PEM is better hidden than shown. */
#define OBX_SECRET_WORDS "password", "passwd", "secret", "token", "key"

/* Whether name[0..len) holds one of OBX_SECRET_WORDS, compared ASCII
 * case-insensitively. name need not be NUL-terminated. */
static inline bool obx_secret_name(const char *name, size_t len)
{
    static const char *const words[] = {OBX_SECRET_WORDS};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            size_t j = 0;
            while (j < wl) {
                char c = name[i + j];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (c != words[w][j])
                    break;
                j++;
            }
            if (j == wl)
                return true;
        }
    }
    return false;
}

#endif
