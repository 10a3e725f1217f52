#include "escape.h"

#include <stdarg.h>
#include <stdlib.h>

size_t obx_utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void obx_put_json_escaped(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (p[n])
        n++;
    while (n > 0) {
        unsigned char c = *p;
        size_t k = obx_utf8_seq_len(p, n);
        if (k == 0) {
            fprintf(f, "\\\\x%02x", c);
            k = 1;
        } else if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fwrite(p, 1, k, f);
        }
        p += k;
        n -= k;
    }
}

void obx_put_text_escaped(FILE *f, const char *s, bool keep_newlines)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (p[n])
        n++;
    while (n > 0) {
        unsigned char c = *p;
        size_t k = obx_utf8_seq_len(p, n);
        bool plain_ws = keep_newlines && (c == '\n' || c == '\t');
        if (k == 0 || ((c < 0x20 || c == 0x7f) && !plain_ws)) {
            fprintf(f, "\\x%02x", c);
            k = 1;
        } else {
            fwrite(p, 1, k, f);
        }
        p += k;
        n -= k;
    }
}

void obx_eprintf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("(out of memory formatting a message)\n", f);
        return;
    }
    /* escaped into memory first and written once: stderr is unbuffered,
     * and escaping straight into it wrote one byte per write(2) */
    char *line = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&line, &len);
    if (mem) {
        obx_put_text_escaped(mem, s, true);
        if (fclose(mem) != 0) {
            free(line);
            line = NULL;
        }
    }
    if (line)
        fwrite(line, 1, len, f);
    else
        obx_put_text_escaped(f, s, true); /* out of memory: straight out */
    free(line);
    free(s);
}
