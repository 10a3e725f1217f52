#include "pg_buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool pgp_buf_grow(pgp_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pgp_buf_reset(pgp_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p)
        b->p[0] = '\0';
}

void pgp_buf_free(pgp_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *pgp_buf_take(pgp_buf *b)
{
    char *p = b->oom ? NULL : b->p;
    if (b->oom)
        free(b->p);
    else if (!p)
        p = calloc(1, 1);
    memset(b, 0, sizeof *b);
    return p;
}

void pgp_buf_addn(pgp_buf *b, const char *s, size_t n)
{
    if (!pgp_buf_grow(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void pgp_buf_add(pgp_buf *b, const char *s)
{
    pgp_buf_addn(b, s, strlen(s));
}

void pgp_buf_addc(pgp_buf *b, char c)
{
    pgp_buf_addn(b, &c, 1);
}

void pgp_buf_add_i64(pgp_buf *b, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    pgp_buf_addn(b, tmp, (size_t)n);
}

void pgp_buf_ident(pgp_buf *b, const char *name)
{
    pgp_buf_addc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            pgp_buf_addc(b, '"');
        pgp_buf_addc(b, *p);
    }
    pgp_buf_addc(b, '"');
}

void pgp_buf_literal(pgp_buf *b, const char *text)
{
    pgp_buf_add(b, "E'");
    for (const char *p = text; *p; p++) {
        if (*p == '\'' || *p == '\\')
            pgp_buf_addc(b, '\\');
        pgp_buf_addc(b, *p);
    }
    pgp_buf_addc(b, '\'');
}

void pgp_buf_array_sep(pgp_buf *b)
{
    if (b->len > 0 && b->p[b->len - 1] != '{')
        pgp_buf_addc(b, ',');
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when invalid. */
static size_t pgp_utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = 0;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

void pgp_buf_array_text(pgp_buf *b, const char *v)
{
    pgp_buf_array_sep(b);
    if (!v) {
        pgp_buf_add(b, "NULL");
        return;
    }
    pgp_buf_addc(b, '"');
    /* Error texts come from brokers and libraries: a stray byte that is
     * not UTF-8 must not make the server refuse the whole statement. */
    const unsigned char *p = (const unsigned char *)v;
    while (*p) {
        size_t n = pgp_utf8_len(p);
        if (n == 0) {
            pgp_buf_addc(b, '?');
            p++;
            continue;
        }
        if (*p == '"' || *p == '\\')
            pgp_buf_addc(b, '\\');
        pgp_buf_addn(b, (const char *)p, n);
        p += n;
    }
    pgp_buf_addc(b, '"');
}

void pgp_buf_array_i64(pgp_buf *b, int64_t v)
{
    pgp_buf_array_sep(b);
    pgp_buf_add_i64(b, v);
}
