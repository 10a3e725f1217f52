/* A strict JSON scanner (RFC 8259) that reads values where they are
 * written instead of rebuilding them. A relay must not rewrite what it
 * carries: a parser that converts numbers to doubles and prints them again
 * turns 19.99 into 19.989999999999998 and refuses integers beyond 64 bits.
 * Here a value is a span of the input, so a payload or a header number
 * travels byte for byte.
 *
 * Strict: one value, optionally surrounded by whitespace; no comments, no
 * trailing commas, no leading zeros, no NaN; strings are valid UTF-8
 * (no overlong forms, no surrogates, nothing past U+10FFFF) with no raw
 * control characters, and \u escapes pair their surrogates. Nesting is
 * limited to OSC_JSON_MAX_DEPTH. The scanner never recurses and allocates
 * nothing; it is pure and thread-safe. */
#ifndef OSC_STORE_JSON_SCAN_H
#define OSC_STORE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The nesting jansson allowed before (JSON_PARSER_MAX_DEPTH), so nothing
 * that passed through the relay earlier is refused now. */
#define OSC_JSON_MAX_DEPTH 2048

typedef enum osc_json_kind {
    OSC_JSON_NULL,
    OSC_JSON_FALSE,
    OSC_JSON_TRUE,
    OSC_JSON_NUMBER,
    OSC_JSON_STRING,
    OSC_JSON_ARRAY,
    OSC_JSON_OBJECT,
} osc_json_kind;

/* A value exactly as written: s[0..len), a string with its quotes.
 * Borrowed from the text that was checked. */
typedef struct osc_json_span {
    const char *s;
    size_t len;
    osc_json_kind kind;
} osc_json_span;

/* Check that s[0..len) is one JSON value, optionally surrounded by
 * whitespace, and return its span in *value. Returns 0, or -1 with the
 * byte offset and the reason in err ("at byte 12: ..."). Any bytes are
 * safe input, including NULs. */
int osc_json_check(const char *s, size_t len, osc_json_span *value, char *err,
                   size_t errlen);

/* Walks the members of an object, in the order they are written. */
typedef struct osc_json_iter {
    const char *s;
    size_t len;
    size_t pos;
} osc_json_iter;

/* Start at the members of `obj`, an OSC_JSON_OBJECT span that came from
 * osc_json_check (directly or as a member or element of one): the walk
 * does not check again. */
void osc_json_members(osc_json_iter *it, osc_json_span obj);

/* The next member: its name as a string span (quotes included; see
 * osc_json_unescape) and its value. Returns false after the last one.
 * Names are not made unique: a name written twice is returned twice. */
bool osc_json_next(osc_json_iter *it, osc_json_span *name,
                   osc_json_span *value);

/* Write the content of the checked string span `str` to out (room for
 * str.len - 2 bytes is always enough) with its escapes decoded as UTF-8,
 * and return its length. The result is not NUL-terminated and holds a NUL
 * byte where the text has \u0000: callers that need C strings must check
 * (memchr). */
size_t osc_json_unescape(osc_json_span str, char *out);

/* Copy the checked value `v` to out without the whitespace between its
 * tokens (strings and numbers stay byte for byte); out needs v.len bytes.
 * Returns the length written. */
size_t osc_json_compact(osc_json_span v, char *out);

#endif
