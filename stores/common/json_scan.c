#include "json_scan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- checking ---- */

typedef struct osc_scan {
    const unsigned char *s;
    size_t len, pos;
    const char *why; /* the reason of the first failure */
} osc_scan;

static bool osc_scan_fail(osc_scan *sc, const char *why)
{
    sc->why = why;
    return false;
}

static bool osc_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool osc_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void osc_skip_ws(osc_scan *sc)
{
    while (sc->pos < sc->len && osc_is_ws(sc->s[sc->pos]))
        sc->pos++;
}

static bool osc_scan_at(const osc_scan *sc, unsigned char c)
{
    return sc->pos < sc->len && sc->s[sc->pos] == c;
}

static bool osc_scan_literal(osc_scan *sc, const char *word)
{
    size_t n = strlen(word);
    if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
        return osc_scan_fail(sc, "invalid literal (true, false, null)");
    sc->pos += n;
    return true;
}

static bool osc_scan_digits(osc_scan *sc)
{
    size_t start = sc->pos;
    while (sc->pos < sc->len && osc_is_digit(sc->s[sc->pos]))
        sc->pos++;
    return sc->pos > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : a leading zero ends the
 * integer part, so "01" fails at the '1' as data after a value. */
static bool osc_scan_number(osc_scan *sc)
{
    if (osc_scan_at(sc, '-'))
        sc->pos++;
    if (osc_scan_at(sc, '0'))
        sc->pos++;
    else if (!osc_scan_digits(sc))
        return osc_scan_fail(sc, "invalid number");
    if (osc_scan_at(sc, '.')) {
        sc->pos++;
        if (!osc_scan_digits(sc))
            return osc_scan_fail(sc, "invalid number: no digit after '.'");
    }
    if (osc_scan_at(sc, 'e') || osc_scan_at(sc, 'E')) {
        sc->pos++;
        if (osc_scan_at(sc, '+') || osc_scan_at(sc, '-'))
            sc->pos++;
        if (!osc_scan_digits(sc))
            return osc_scan_fail(sc, "invalid number: no digit in exponent");
    }
    return true;
}

static int osc_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (the caller made sure they are there). */
static long osc_hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = osc_hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* "\uXXXX" at sc->pos (the backslash); the code unit in *cu. */
static bool osc_scan_u(osc_scan *sc, long *cu)
{
    if (sc->len - sc->pos < 6 || sc->s[sc->pos] != '\\' ||
        sc->s[sc->pos + 1] != 'u')
        return false;
    *cu = osc_hex4(sc->s + sc->pos + 2);
    if (*cu < 0)
        return false;
    sc->pos += 6;
    return true;
}

static bool osc_scan_escape(osc_scan *sc)
{
    if (sc->pos + 1 >= sc->len)
        return osc_scan_fail(sc, "unterminated string");
    unsigned char c = sc->s[sc->pos + 1];
    if (c != 'u') {
        if (!strchr("\"\\/bfnrt", c) || c == '\0')
            return osc_scan_fail(sc, "invalid escape in string");
        sc->pos += 2;
        return true;
    }
    long cu;
    if (!osc_scan_u(sc, &cu))
        return osc_scan_fail(sc, "invalid \\u escape (four hex digits)");
    if (cu >= 0xDC00 && cu <= 0xDFFF)
        return osc_scan_fail(sc, "unpaired surrogate in \\u escape");
    if (cu >= 0xD800 && cu <= 0xDBFF) {
        long lo;
        if (!osc_scan_u(sc, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return osc_scan_fail(sc, "unpaired surrogate in \\u escape");
    }
    return true;
}

/* The length of the UTF-8 sequence at p (n bytes left), 0 if invalid:
 * RFC 3629, so no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t osc_utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n < need || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return need;
}

/* A string at sc->pos (its opening quote). */
static bool osc_scan_string(osc_scan *sc)
{
    sc->pos++;
    for (;;) {
        if (sc->pos >= sc->len)
            return osc_scan_fail(sc, "unterminated string");
        unsigned char c = sc->s[sc->pos];
        if (c == '"') {
            sc->pos++;
            return true;
        }
        if (c == '\\') {
            if (!osc_scan_escape(sc))
                return false;
        } else if (c < 0x20) {
            return osc_scan_fail(sc, "control character in string");
        } else {
            size_t n = osc_utf8_len(sc->s + sc->pos, sc->len - sc->pos);
            if (n == 0)
                return osc_scan_fail(sc, "invalid UTF-8 in string");
            sc->pos += n;
        }
    }
}

/* `"name" :` at sc->pos, after '{' or ','. */
static bool osc_scan_name(osc_scan *sc)
{
    osc_skip_ws(sc);
    if (!osc_scan_at(sc, '"'))
        return osc_scan_fail(sc, "expected a member name (a string)");
    if (!osc_scan_string(sc))
        return false;
    osc_skip_ws(sc);
    if (!osc_scan_at(sc, ':'))
        return osc_scan_fail(sc, "expected ':' after member name");
    sc->pos++;
    return true;
}

static bool osc_scan_scalar(osc_scan *sc, unsigned char c)
{
    switch (c) {
    case '"': return osc_scan_string(sc);
    case 't': return osc_scan_literal(sc, "true");
    case 'f': return osc_scan_literal(sc, "false");
    case 'n': return osc_scan_literal(sc, "null");
    default:
        if (c == '-' || osc_is_digit(c))
            return osc_scan_number(sc);
        return osc_scan_fail(sc, "expected a value");
    }
}

/* The open containers, one bit each: set for an object. An explicit stack
 * instead of recursion, so no input can exhaust the thread's stack. */
typedef struct osc_nest {
    unsigned char obj[OSC_JSON_MAX_DEPTH / 8];
    int depth;
} osc_nest;

static bool osc_nest_obj(const osc_nest *n)
{
    int d = n->depth - 1;
    return n->obj[d / 8] >> (d % 8) & 1;
}

static bool osc_nest_push(osc_scan *sc, osc_nest *n, bool obj)
{
    if (n->depth == OSC_JSON_MAX_DEPTH)
        return osc_scan_fail(sc, "nested deeper than 2048 levels");
    int d = n->depth++;
    unsigned char bit = (unsigned char)(1u << (d % 8));
    n->obj[d / 8] = obj ? n->obj[d / 8] | bit : n->obj[d / 8] & ~bit;
    return true;
}

/* After a value: close containers until one takes a further element.
 * *more is set when a further value is expected, clear when done. */
static bool osc_scan_after(osc_scan *sc, osc_nest *n, bool *more)
{
    *more = false;
    while (n->depth > 0) {
        osc_skip_ws(sc);
        bool obj = osc_nest_obj(n);
        if (osc_scan_at(sc, ',')) {
            sc->pos++;
            *more = true;
            return !obj || osc_scan_name(sc);
        }
        if (!osc_scan_at(sc, obj ? '}' : ']'))
            return osc_scan_fail(sc, sc->pos >= sc->len ? "unexpected end"
                                     : obj              ? "expected ',' or '}'"
                                           : "expected ',' or ']'");
        sc->pos++;
        n->depth--;
    }
    return true;
}

static bool osc_scan_value(osc_scan *sc)
{
    osc_nest n = {.depth = 0};
    for (bool more = true; more;) {
        osc_skip_ws(sc);
        if (sc->pos >= sc->len)
            return osc_scan_fail(sc, "unexpected end, a value was expected");
        unsigned char c = sc->s[sc->pos];
        if (c == '{' || c == '[') {
            if (!osc_nest_push(sc, &n, c == '{'))
                return false;
            sc->pos++;
            osc_skip_ws(sc);
            if (!osc_scan_at(sc, c == '{' ? '}' : ']')) {
                /* a first element (or member) follows */
                if (c == '{' && !osc_scan_name(sc))
                    return false;
                continue;
            }
            sc->pos++;
            n.depth--;
        } else if (!osc_scan_scalar(sc, c)) {
            return false;
        }
        if (!osc_scan_after(sc, &n, &more))
            return false;
    }
    return true;
}

static osc_json_kind osc_kind_of(char c)
{
    switch (c) {
    case '{': return OSC_JSON_OBJECT;
    case '[': return OSC_JSON_ARRAY;
    case '"': return OSC_JSON_STRING;
    case 't': return OSC_JSON_TRUE;
    case 'f': return OSC_JSON_FALSE;
    case 'n': return OSC_JSON_NULL;
    default: return OSC_JSON_NUMBER;
    }
}

int osc_json_check(const char *s, size_t len, osc_json_span *value, char *err,
                   size_t errlen)
{
    osc_scan sc = {(const unsigned char *)s, len, 0, NULL};
    osc_skip_ws(&sc);
    size_t start = sc.pos;
    bool ok = osc_scan_value(&sc);
    size_t end = sc.pos;
    if (ok) {
        osc_skip_ws(&sc);
        if (sc.pos != len)
            ok = osc_scan_fail(&sc, "data after the value");
    }
    if (!ok) {
        if (err && errlen)
            snprintf(err, errlen, "at byte %zu: %s", sc.pos, sc.why);
        return -1;
    }
    *value = (osc_json_span){s + start, end - start, osc_kind_of(s[start])};
    return 0;
}

/* ---- walking checked text ---- */

/* The end of the string whose opening quote is at pos. */
static size_t osc_skip_string(const char *s, size_t len, size_t pos)
{
    for (pos++; pos < len && s[pos] != '"'; pos++)
        if (s[pos] == '\\')
            pos++;
    return pos + 1;
}

/* The end of the checked value that starts at pos. */
static size_t osc_skip_value(const char *s, size_t len, size_t pos)
{
    char c = s[pos];
    if (c == '"')
        return osc_skip_string(s, len, pos);
    if (c != '{' && c != '[') {
        while (pos < len &&
               (strchr("+-.eE", s[pos]) || (s[pos] >= '0' && s[pos] <= '9') ||
                (s[pos] >= 'a' && s[pos] <= 'z')))
            pos++;
        return pos;
    }
    size_t depth = 0;
    while (pos < len) {
        c = s[pos];
        if (c == '"') {
            pos = osc_skip_string(s, len, pos);
            continue;
        }
        depth += c == '{' || c == '[';
        depth -= c == '}' || c == ']';
        pos++;
        if (depth == 0)
            break;
    }
    return pos;
}

static size_t osc_skip_ws_at(const char *s, size_t len, size_t pos)
{
    while (pos < len && osc_is_ws((unsigned char)s[pos]))
        pos++;
    return pos;
}

void osc_json_members(osc_json_iter *it, osc_json_span obj)
{
    it->s = obj.s;
    it->len = obj.len;
    it->pos = obj.kind == OSC_JSON_OBJECT ? 1 : obj.len;
}

bool osc_json_next(osc_json_iter *it, osc_json_span *name, osc_json_span *value)
{
    const char *s = it->s;
    size_t pos = osc_skip_ws_at(s, it->len, it->pos);
    if (pos < it->len && s[pos] == ',')
        pos = osc_skip_ws_at(s, it->len, pos + 1);
    if (pos >= it->len || s[pos] != '"') {
        it->pos = it->len;
        return false;
    }
    size_t end = osc_skip_string(s, it->len, pos);
    *name = (osc_json_span){s + pos, end - pos, OSC_JSON_STRING};
    pos = osc_skip_ws_at(s, it->len, end);
    pos = osc_skip_ws_at(s, it->len, pos + 1); /* the ':' */
    end = osc_skip_value(s, it->len, pos);
    *value = (osc_json_span){s + pos, end - pos, osc_kind_of(s[pos])};
    it->pos = end;
    return true;
}

/* ---- copying ---- */

static size_t osc_put_utf8(char *out, unsigned long cp)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static char osc_simple_escape(char c)
{
    switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return c; /* " \ / */
    }
}

/* Every escape decodes to fewer bytes than it is written with (\uXXXX is
 * six bytes for at most three, a surrogate pair twelve for four), so the
 * output never outgrows str.len - 2. */
size_t osc_json_unescape(osc_json_span str, char *out)
{
    const unsigned char *p = (const unsigned char *)str.s + 1;
    const unsigned char *end = (const unsigned char *)str.s + str.len - 1;
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            out[o++] = (char)*p++;
            continue;
        }
        if (p[1] != 'u') {
            out[o++] = osc_simple_escape((char)p[1]);
            p += 2;
            continue;
        }
        unsigned long cp = (unsigned long)osc_hex4(p + 2);
        p += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6) {
            unsigned long lo = (unsigned long)osc_hex4(p + 2);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        o += osc_put_utf8(out + o, cp);
    }
    return o;
}

size_t osc_json_compact(osc_json_span v, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < v.len;) {
        char c = v.s[i];
        if (c == '"') {
            size_t end = osc_skip_string(v.s, v.len, i);
            memcpy(out + o, v.s + i, end - i);
            o += end - i;
            i = end;
        } else {
            if (!osc_is_ws((unsigned char)c))
                out[o++] = c;
            i++;
        }
    }
    return o;
}
