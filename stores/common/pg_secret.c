#include "pg_secret.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <outbox/plugin.h>

#include "err_words.h"

/* Replace every occurrence of `secret` in buf with "***" (never longer
 * than the secret itself when it has 3 bytes or more). */
static void replace_secret(char *buf, const char *secret)
{
    size_t sl = strlen(secret);
    char *p = buf;
    while ((p = strstr(p, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, strlen(p + sl) + 1);
        p += 3;
    }
}

void osc_pg_scrub(const obx_host *host, const char *secret, const char *in,
                  char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    in = in ? in : "";
    /* Masked and scrubbed whole before it is cut to outlen: cut first, a
     * password at the cut would survive as its first bytes. Masking adds
     * at most 3 bytes per 2 of input. */
    size_t cap = 2 * strlen(in) + 16;
    char *full = malloc(cap);
    char *buf = full ? full : out;
    size_t buflen = full ? cap : outlen;
    host->mask(in, buf, buflen);
    /* Short passwords would mask half the message and protect nothing
     * that the conninfo masking above does not already. */
    if (secret && strlen(secret) >= 3)
        replace_secret(buf, secret);
    /* libpq messages span lines ("server closed the connection\n\tThis
     * probably means..."): one log line each */
    size_t o = 0;
    for (size_t i = 0; buf[i] && o + 1 < outlen; i++) {
        char c = buf[i] == '\n' || buf[i] == '\t' ? ' ' : buf[i];
        if (c == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        out[o++] = c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    free(full);
}

/* Whether word[0..len) stands in the masked conninfo as a key ("word=" or
 * "word ="): then it is outside every secret value and safe to print. A
 * key right after a masked value may be the rest of an unquoted password
 * with a space in it ("password=a b=c"), so it does not count. */
static bool is_plain_key(const char *masked, const char *word, size_t len)
{
    for (const char *m = masked; (m = strstr(m, "=")) != NULL; m++) {
        const char *e = m;
        while (e > masked && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *k = e;
        while (k > masked && !isspace((unsigned char)k[-1]))
            k--;
        const char *b = k;
        while (b > masked && isspace((unsigned char)b[-1]))
            b--;
        bool after_secret = b - masked >= 3 && strncmp(b - 3, "***", 3) == 0;
        if ((size_t)(e - k) == len && strncmp(k, word, len) == 0 &&
            !after_secret)
            return true;
    }
    return false;
}

/* libpq's conninfo parse errors quote pieces of the string, which may be
 * pieces of a password (an unquoted one with a space in it): keep a piece
 * only when it is a connection keyword or a key the user wrote outside any
 * secret ("invalid connection option "pasword"" must name the typo). */
static void scrub_parse_error(const obx_host *host, const char *ci,
                              const char *in, char *out, size_t outlen)
{
    char masked[2048];
    host->mask(ci, masked, sizeof masked);
    size_t o = 0;
    const char *p = in;
    while (*p && o + 4 < outlen) {
        const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (!q) {
            out[o++] = *p++;
            continue;
        }
        size_t len = (size_t)(q - p - 1);
        bool keep = len == 0 || is_plain_key(masked, p + 1, len);
        PQconninfoOption *defs = keep ? NULL : PQconndefaults();
        for (PQconninfoOption *d = defs; d && d->keyword && !keep; d++)
            keep = strlen(d->keyword) == len &&
                   strncmp(d->keyword, p + 1, len) == 0;
        PQconninfoFree(defs);
        const char *piece = keep ? p : "\"***\"";
        size_t plen = keep ? len + 2 : 5;
        for (size_t i = 0; i < plen && o + 1 < outlen; i++)
            out[o++] = piece[i];
        p = q + 1;
    }
    out[o] = '\0';
    while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' '))
        out[--o] = '\0';
}

obx_status osc_pg_conninfo(const obx_host *host, const char *conninfo,
                           char **secret, char *target, size_t targetlen,
                           char *errstr, size_t errlen)
{
    const char *ci = conninfo ? conninfo : "";
    *secret = NULL;
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(ci, &msg);
    if (!opts) {
        char clean[OBX_ERRSTR_LEN];
        scrub_parse_error(host, ci, msg ? msg : "out of memory", clean,
                          sizeof clean);
        osc_errf_words(errstr, errlen, "store.conninfo: %s", clean);
        obx_status st = msg ? OBX_CONFIG : OBX_NOMEM;
        PQfreemem(msg);
        return st;
    }
    obx_status st = OBX_OK;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0]) {
            osc_pg_secret_free(*secret);
            *secret = strdup(o->val);
            st = *secret ? OBX_OK : OBX_NOMEM;
        }
    PQconninfoFree(opts);
    if (st != OBX_OK) {
        snprintf(errstr, errlen, "out of memory");
        return st;
    }
    if (ci[0])
        osc_pg_scrub(host, *secret, ci, target, targetlen);
    else
        snprintf(target, targetlen, "(libpq defaults)");
    return OBX_OK;
}

void osc_pg_notice(const obx_host *host, const char *secret, const char *store,
                   const char *message)
{
    if (!host->log_enabled(host, OBX_LOG_DEBUG))
        return;
    char clean[OBX_ERRSTR_LEN];
    osc_pg_scrub(host, secret, message, clean, sizeof clean);
    host->log(host, OBX_LOG_DEBUG, "%s: server says: %s", store, clean);
}

void osc_pg_secret_free(char *secret)
{
    if (secret)
        memset(secret, 0, strlen(secret));
    free(secret);
}
