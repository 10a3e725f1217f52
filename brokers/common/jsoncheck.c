/* Is a payload JSON? jansson (json_loadb, JSON_DECODE_ANY) is the judge,
 * but it builds a whole tree to answer, several allocations per event,
 * which was 90% of the stdout broker's time. A scan without allocation
 * answers first and defers to jansson whenever jansson's own limits could
 * make a difference (\u0000 and surrogate escapes, integers that may not
 * fit 64 bits, reals that may overflow, deep nesting), so the verdict is
 * always jansson's. test_jsonl checks the two against each other. */
#include "jsonl.h"

#include <jansson.h>
#include <string.h>

/* jansson refuses nesting past 2048; stay well inside it. */
#define MAX_DEPTH 512

typedef struct scan {
    const unsigned char *p, *end;
    obc_json_verdict verdict; /* YES, or ASK_JANSSON once unsure */
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* After a backslash in a string; false when the escape is invalid. */
static bool scan_escape(scan *s)
{
    if (s->p >= s->end)
        return false;
    if (*s->p != '\0' && strchr("\"\\/bfnrt", *s->p)) {
        s->p++;
        return true;
    }
    if (*s->p != 'u' || s->end - s->p < 5)
        return false;
    unsigned v = 0;
    for (int i = 1; i <= 4; i++) {
        int h = hexval(s->p[i]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    /* NUL needs JSON_ALLOW_NUL and surrogates must pair: jansson's call. */
    if (v == 0 || (v >= 0xd800 && v <= 0xdfff))
        s->verdict = OBC_JSON_ASK_JANSSON;
    s->p += 5;
    return true;
}

/* At the opening quote; false when the string is invalid. */
static bool scan_string(scan *s)
{
    for (s->p++; s->p < s->end;) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            s->p++;
            if (!scan_escape(s))
                return false;
        } else if (c >= 0x80) {
            size_t k = obc_utf8_len(s->p, (size_t)(s->end - s->p));
            if (k == 0)
                return false;
            s->p += k;
        } else {
            s->p++;
        }
    }
    return false;
}

static size_t scan_digits(scan *s)
{
    size_t n = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        s->p++;
        n++;
    }
    return n;
}

/* RFC 8259 number; false when invalid. */
static bool scan_number(scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
        return false;
    size_t digits = 1;
    if (*s->p == '0')
        s->p++; /* no leading zeros: a digit after it ends the number */
    else
        digits = scan_digits(s);
    size_t exp_digits = 0;
    bool real = false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        size_t frac = scan_digits(s);
        if (frac == 0)
            return false;
        digits += frac;
        real = true;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        exp_digits = scan_digits(s);
        if (exp_digits == 0)
            return false;
        real = true;
    }
    /* jansson rejects integers beyond 64 bits and reals beyond DBL_MAX;
     * below these bounds neither can happen (10^299 < DBL_MAX). */
    if ((!real && digits > 18) || (real && (digits > 200 || exp_digits > 2)))
        s->verdict = OBC_JSON_ASK_JANSSON;
    return true;
}

static bool scan_literal(scan *s)
{
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[i], n) == 0) {
            s->p += n;
            return true;
        }
    }
    return false;
}

/* A scalar at s->p (not an object or array); false when invalid. */
static bool scan_scalar(scan *s)
{
    unsigned char c = *s->p;
    if (c == '"')
        return scan_string(s);
    if (c == '-' || (c >= '0' && c <= '9'))
        return scan_number(s);
    return scan_literal(s);
}

/* `"key" :` inside an object, with the whitespace around it. */
static bool scan_key(scan *s)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"' || !scan_string(s))
        return false;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return false;
    s->p++;
    return true;
}

obc_json_verdict obc_json_quick_check(const void *data, size_t n)
{
    scan s = {data, (const unsigned char *)data + n, OBC_JSON_YES};
    char stack[MAX_DEPTH]; /* '{' or '[' per open container */
    size_t depth = 0;
    for (;;) {
        /* A value. */
        skip_ws(&s);
        if (s.p >= s.end)
            return OBC_JSON_NO;
        unsigned char c = *s.p;
        if (c == '{' || c == '[') {
            s.p++;
            skip_ws(&s);
            if (s.p < s.end && *s.p == (c == '{' ? '}' : ']')) {
                s.p++;
            } else if (depth == MAX_DEPTH) {
                return OBC_JSON_ASK_JANSSON;
            } else {
                stack[depth++] = (char)c;
                if (c == '{' && !scan_key(&s))
                    return OBC_JSON_NO;
                continue;
            }
        } else if (!scan_scalar(&s)) {
            return OBC_JSON_NO;
        }
        /* After a value: close containers, or a comma and the next one. */
        for (;;) {
            skip_ws(&s);
            if (depth == 0)
                return s.p == s.end ? s.verdict : OBC_JSON_NO;
            if (s.p >= s.end)
                return OBC_JSON_NO;
            char top = stack[depth - 1];
            if (*s.p == (top == '{' ? '}' : ']')) {
                s.p++;
                depth--;
                continue;
            }
            if (*s.p != ',')
                return OBC_JSON_NO;
            s.p++;
            if (top == '{' && !scan_key(&s))
                return OBC_JSON_NO;
            break;
        }
    }
}

bool obc_json_valid(const void *data, size_t n)
{
    obc_json_verdict v = obc_json_quick_check(data, n);
    if (v != OBC_JSON_ASK_JANSSON)
        return v == OBC_JSON_YES;
    json_error_t jerr;
    json_t *root = json_loadb(data, n, JSON_DECODE_ANY, &jerr);
    json_decref(root);
    return root != NULL;
}
