/* Secret masking for everything the relay prints: conninfo strings,
 * URLs and "key=value" lists.
 *
 * Values are skipped the way libpq's conninfo parser reads them (spaces
 * around '=', single quotes with backslash escapes, backslash escapes in
 * unquoted values), so a password that libpq accepts is masked whole: a
 * masker that ends a value earlier than the parser does prints the rest
 * of the secret. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include <outbox/secret.h>

#include "host.h"

typedef struct mask_out {
    char *s;
    size_t len, cap; /* cap includes the NUL */
} mask_out;

static void put(mask_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->len + 1 < o->cap; i++)
        o->s[o->len++] = s[i];
}

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

/* End of the value starting at v, read as libpq reads it. In a URL query
 * (after '?' or '&') an unquoted value also ends at '&'. */
static const char *value_end(const char *v, bool in_query)
{
    if (*v == '\'') {
        for (v++; *v && *v != '\''; v++)
            if (*v == '\\' && v[1])
                v++;
        return *v ? v + 1 : v;
    }
    for (; *v && !isspace((unsigned char)*v); v++) {
        if (in_query && *v == '&')
            break;
        if (*v == '\\' && v[1])
            v++;
    }
    return v;
}

/* "scheme://user:pass@" or "scheme://token@": returns the '@' when p
 * starts such a URL's user info, with *secret at the first byte to mask:
 * after the ':' before the password, or the whole user info when there
 * is no ':' (nats://TOKEN@host is cnats' token form; a bare user name
 * masked too is the safe side). */
static const char *url_secret(const char *p, const char **secret)
{
    if (strncmp(p, "://", 3) != 0)
        return NULL;
    const char *auth = p + 3;
    const char *at = strpbrk(auth, "@/ \t\n");
    if (!at || *at != '@' || at == auth)
        return NULL;
    const char *c = memchr(auth, ':', (size_t)(at - auth));
    *secret = c ? c + 1 : auth;
    return at;
}

void obx_mask_secrets(const char *in, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    mask_out o = {out, 0, outlen};
    const char *p = in ? in : "";
    const char *key = NULL; /* start of the word before p, if any */
    while (*p) {
        const char *secret, *at = url_secret(p, &secret);
        if (at) {
            put(&o, p, (size_t)(secret - p));
            put(&o, "***", 3);
            p = at;
            key = NULL;
            continue;
        }
        if (key_char(*p)) {
            if (!key)
                key = p;
            put(&o, p++, 1);
            continue;
        }
        const char *q = p;
        while (*q == ' ' || *q == '\t')
            q++;
        if (key && *q == '=' && obx_secret_name(key, (size_t)(p - key))) {
            bool in_query = key > in && (key[-1] == '?' || key[-1] == '&');
            const char *v = q + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            put(&o, p, (size_t)(v - p));
            put(&o, "***", 3);
            p = value_end(v, in_query);
            key = NULL;
            continue;
        }
        key = NULL;
        put(&o, p++, 1);
    }
    o.s[o.len] = '\0';
}
