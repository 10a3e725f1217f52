/* A growable string buffer for SQL text and array literals. Out of memory
 * is sticky: appends after a failed one do nothing and pgp_buf_take()
 * returns NULL, so callers check once at the end. */
#ifndef OBX_PG_BUF_H
#define OBX_PG_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pgp_buf {
    char *p; /* NUL-terminated while !oom; owned by the buffer */
    size_t len, cap;
    bool oom;
} pgp_buf;

/* Empty the buffer, keeping its memory (and clearing oom). */
void pgp_buf_reset(pgp_buf *b);
/* Free the memory. The buffer may be reused afterwards. */
void pgp_buf_free(pgp_buf *b);
/* Hand the string to the caller (free() it), or NULL after an allocation
 * failure; the buffer is empty afterwards either way. */
char *pgp_buf_take(pgp_buf *b);

void pgp_buf_addn(pgp_buf *b, const char *s, size_t n);
void pgp_buf_add(pgp_buf *b, const char *s);
void pgp_buf_addc(pgp_buf *b, char c);
void pgp_buf_add_i64(pgp_buf *b, int64_t v);

/* "name" with embedded double quotes doubled: PostgreSQL's identifier
 * quoting, as PQescapeIdentifier does, without needing a connection. */
void pgp_buf_ident(pgp_buf *b, const char *name);
/* E'text' with backslashes and quotes escaped: a string literal that
 * means the same whatever standard_conforming_strings says. */
void pgp_buf_literal(pgp_buf *b, const char *text);

/* Array literals ({a,b,NULL}) for unnest() parameters: open with '{',
 * add elements, close with '}'. Text elements are double-quoted with
 * backslash escapes; NULL text becomes an unquoted NULL element. */
void pgp_buf_array_text(pgp_buf *b, const char *v);
void pgp_buf_array_i64(pgp_buf *b, int64_t v);
/* Before every element but the first: a comma (call after '{'). */
void pgp_buf_array_sep(pgp_buf *b);

#endif
