/* The strict JSON scanner of stores/common: what it accepts and refuses
 * (RFC 8259, UTF-8, nesting), the spans it hands out (byte for byte, so a
 * number is never rewritten), and unescaping and compacting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json_scan.h"

static osc_json_span check_ok(const char *s, size_t len)
{
    char err[256] = "";
    osc_json_span v = {NULL, 0, OSC_JSON_NULL};
    if (osc_json_check(s, len, &v, err, sizeof err) != 0)
        fail_msg("'%.*s' refused: %s", (int)len, s, err);
    return v;
}

static void check_bad(const char *s, size_t len, const char *why)
{
    char err[256] = "";
    osc_json_span v;
    if (osc_json_check(s, len, &v, err, sizeof err) == 0)
        fail_msg("'%.*s' (%zu bytes) accepted", (int)len, s, len);
    if (!strstr(err, "at byte ") || !strstr(err, why))
        fail_msg("'%.*s': error '%s' lacks '%s'", (int)len, s, err, why);
}

#define OK(lit) check_ok(lit, sizeof lit - 1)
#define BAD(lit, why) check_bad(lit, sizeof lit - 1, why)

static void test_values_and_spans(void **state)
{
    (void)state;
    static const struct {
        const char *text, *span;
        osc_json_kind kind;
    } cases[] = {
        {"  19.99 ", "19.99", OSC_JSON_NUMBER},
        {"42.00", "42.00", OSC_JSON_NUMBER},
        {"1e2", "1e2", OSC_JSON_NUMBER},
        {"-0.5E-10", "-0.5E-10", OSC_JSON_NUMBER},
        {"123456789012345678901234567890", "123456789012345678901234567890",
         OSC_JSON_NUMBER},
        {"-0", "-0", OSC_JSON_NUMBER},
        {"\n\"a\\\"b\"\t", "\"a\\\"b\"", OSC_JSON_STRING},
        {"true", "true", OSC_JSON_TRUE},
        {"false", "false", OSC_JSON_FALSE},
        {"null", "null", OSC_JSON_NULL},
        {"[ ]", "[ ]", OSC_JSON_ARRAY},
        {"\r\n{ \"a\" : [1, {\"b\": null}] }\r\n",
         "{ \"a\" : [1, {\"b\": null}] }", OSC_JSON_OBJECT},
        {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
         "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
         OSC_JSON_STRING},
        {"\"\\ud83d\\ude00 \\u0000 \\/\"", "\"\\ud83d\\ude00 \\u0000 \\/\"",
         OSC_JSON_STRING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        osc_json_span v = check_ok(cases[i].text, strlen(cases[i].text));
        assert_int_equal(v.kind, cases[i].kind);
        assert_int_equal(v.len, strlen(cases[i].span));
        assert_memory_equal(v.s, cases[i].span, v.len);
    }
}

static void test_refused(void **state)
{
    (void)state;
    BAD("", "unexpected end");
    BAD("   ", "unexpected end");
    BAD("01", "data after");
    BAD("1.", "no digit after");
    BAD(".5", "expected a value");
    BAD("1e", "exponent");
    BAD("1e+", "exponent");
    BAD("+1", "expected a value");
    BAD("-", "invalid number");
    BAD("NaN", "expected a value");
    BAD("Infinity", "expected a value");
    BAD("tru", "invalid literal");
    BAD("nul", "invalid literal");
    BAD("True", "expected a value");
    BAD("[1,]", "expected a value");
    BAD("[1 2]", "expected ',' or ']'");
    BAD("[1", "unexpected end");
    BAD("{\"a\":1,}", "member name");
    BAD("{'a':1}", "member name");
    BAD("{a:1}", "member name");
    BAD("{\"a\" 1}", "expected ':'");
    BAD("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    BAD("{\"a\":}", "expected a value");
    BAD("{\"a\":1", "unexpected end");
    BAD("{} {}", "data after");
    BAD("{}x", "data after");
    BAD("/* c */ {}", "expected a value");
    BAD("{} // c", "data after");
    BAD("\xef\xbb\xbf{}", "expected a value"); /* a BOM */
    BAD("{\"a\":1}\0", "data after");          /* a NUL after the value */
    BAD("\"abc", "unterminated");
    BAD("\"a\\", "unterminated");
    BAD("\"\\x\"", "invalid escape");
    BAD("\"\\\0\"", "invalid escape");
    BAD("\"\\u12\"", "\\u escape");
    BAD("\"\\u12g4\"", "\\u escape");
    BAD("\"\\ud800\"", "unpaired surrogate");
    BAD("\"\\udc00\"", "unpaired surrogate");
    BAD("\"\\ud800\\u0041\"", "unpaired surrogate");
    BAD("\"\\ud800\\n\"", "unpaired surrogate");
    BAD("\"a\x01\"", "control character");
    BAD("\"a\0b\"", "control character");
    BAD("\"tab\there\"", "control character");
    BAD("\"\x80\"", "UTF-8");
    BAD("\"\xc0\x80\"", "UTF-8");         /* overlong NUL */
    BAD("\"\xc1\xbf\"", "UTF-8");         /* overlong */
    BAD("\"\xe0\x80\xaf\"", "UTF-8");     /* overlong '/' */
    BAD("\"\xed\xa0\x80\"", "UTF-8");     /* a surrogate */
    BAD("\"\xf0\x80\x80\xaf\"", "UTF-8"); /* overlong */
    BAD("\"\xf4\x90\x80\x80\"", "UTF-8"); /* past U+10FFFF */
    BAD("\"\xf5\x80\x80\x80\"", "UTF-8");
    BAD("\"\xff\"", "UTF-8");
    BAD("\"\xe2\x82\"", "UTF-8"); /* cut short */
    BAD("\"\xe2\x82", "UTF-8");
    BAD("\xc3\xa9", "expected a value"); /* UTF-8 outside a string */
}

static void test_error_offset(void **state)
{
    (void)state;
    char err[128] = "";
    osc_json_span v;
    assert_int_equal(osc_json_check("{\"a\": tru}", 10, &v, err, sizeof err),
                     -1);
    assert_string_equal(err, "at byte 6: invalid literal (true, false, null)");
    /* no error buffer at all is fine */
    assert_int_equal(osc_json_check("[", 1, &v, NULL, 0), -1);
}

static char *nested(size_t depth, const char *inner)
{
    size_t n = strlen(inner);
    char *s = malloc(2 * depth + n + 1);
    assert_non_null(s);
    memset(s, '[', depth);
    memcpy(s + depth, inner, n);
    memset(s + depth + n, ']', depth);
    s[2 * depth + n] = '\0';
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    char *s = nested(OSC_JSON_MAX_DEPTH, "1");
    osc_json_span v = check_ok(s, strlen(s));
    assert_int_equal(v.len, strlen(s));
    free(s);
    s = nested(OSC_JSON_MAX_DEPTH + 1, "");
    check_bad(s, strlen(s), "nested deeper than 2048");
    free(s);
    /* objects count the same, mixed with arrays */
    size_t depth = OSC_JSON_MAX_DEPTH + 1;
    char *o = malloc(depth * 6 + 1);
    assert_non_null(o);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(o + n, i % 2 ? "[" : "{\"k\":");
    check_bad(o, n, "nested deeper");
    free(o);
}

static void test_members(void **state)
{
    (void)state;
    const char text[] = " { \"price\" : 19.99 , \"total\":42.00,\"e\":1e2,"
                        "\"big\":123456789012345678901234567890,"
                        "\"n\\u00e9\":{\"x\":\"}]\\\"\",\"y\":[{}]},"
                        "\"l\":[1, \"]\" ,null],\"t\":true,\"f\":false,"
                        "\"z\":null,\"s\":\"v\",\"price\":0 } ";
    osc_json_span obj = OK(text);
    assert_int_equal(obj.kind, OSC_JSON_OBJECT);
    static const struct {
        const char *name, *value;
        osc_json_kind kind;
    } want[] = {
        {"\"price\"", "19.99", OSC_JSON_NUMBER},
        {"\"total\"", "42.00", OSC_JSON_NUMBER},
        {"\"e\"", "1e2", OSC_JSON_NUMBER},
        {"\"big\"", "123456789012345678901234567890", OSC_JSON_NUMBER},
        {"\"n\\u00e9\"", "{\"x\":\"}]\\\"\",\"y\":[{}]}", OSC_JSON_OBJECT},
        {"\"l\"", "[1, \"]\" ,null]", OSC_JSON_ARRAY},
        {"\"t\"", "true", OSC_JSON_TRUE},
        {"\"f\"", "false", OSC_JSON_FALSE},
        {"\"z\"", "null", OSC_JSON_NULL},
        {"\"s\"", "\"v\"", OSC_JSON_STRING},
        {"\"price\"", "0", OSC_JSON_NUMBER}, /* twice: both are returned */
    };
    osc_json_iter it;
    osc_json_members(&it, obj);
    osc_json_span name, value;
    size_t i = 0;
    for (; osc_json_next(&it, &name, &value); i++) {
        assert_true(i < sizeof want / sizeof want[0]);
        assert_int_equal(name.kind, OSC_JSON_STRING);
        assert_int_equal(name.len, strlen(want[i].name));
        assert_memory_equal(name.s, want[i].name, name.len);
        assert_int_equal(value.kind, want[i].kind);
        assert_int_equal(value.len, strlen(want[i].value));
        assert_memory_equal(value.s, want[i].value, value.len);
    }
    assert_int_equal(i, sizeof want / sizeof want[0]);
    assert_false(osc_json_next(&it, &name, &value)); /* stays at the end */

    /* a nested object walks the same way */
    osc_json_members(&it, (osc_json_span){"{\"x\":\"}]\\\"\",\"y\":[{}]}", 22,
                                          OSC_JSON_OBJECT});
    assert_true(osc_json_next(&it, &name, &value));
    assert_memory_equal(value.s, "\"}]\\\"\"", value.len);
    assert_true(osc_json_next(&it, &name, &value));
    assert_int_equal(value.kind, OSC_JSON_ARRAY);
    assert_false(osc_json_next(&it, &name, &value));

    osc_json_span empty = OK("{ }");
    osc_json_members(&it, empty);
    assert_false(osc_json_next(&it, &name, &value));
    /* a non-object has no members */
    osc_json_members(&it, OK("[1]"));
    assert_false(osc_json_next(&it, &name, &value));
}

static void unescape_is(const char *json, const char *want, size_t want_len)
{
    osc_json_span v = check_ok(json, strlen(json));
    assert_int_equal(v.kind, OSC_JSON_STRING);
    char *out = malloc(v.len);
    assert_non_null(out);
    size_t n = osc_json_unescape(v, out);
    if (n != want_len || memcmp(out, want, n) != 0)
        fail_msg("%s unescaped to %zu bytes, want %zu", json, n, want_len);
    assert_true(n <= v.len - 2);
    free(out);
}

static void test_unescape(void **state)
{
    (void)state;
    unescape_is("\"\"", "", 0);
    unescape_is("\"plain\"", "plain", 5);
    unescape_is("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
    unescape_is("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6);
    unescape_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    unescape_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4);
    unescape_is("\"a\\u0000b\"", "a\0b", 3);
    unescape_is("\"\xc3\xa9\"", "\xc3\xa9", 2);
}

static void test_compact(void **state)
{
    (void)state;
    osc_json_span v =
        OK(" { \"a\" : [ 1.50 , 2e0 ] ,\n\t\"b\" : \" x  \\\" y \" } ");
    char out[64];
    size_t n = osc_json_compact(v, out);
    const char want[] = "{\"a\":[1.50,2e0],\"b\":\" x  \\\" y \"}";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    v = OK("12.340");
    assert_int_equal(osc_json_compact(v, out), 6);
    assert_memory_equal(out, "12.340", 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_spans),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_error_offset),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_compact),
    };
    return cmocka_run_group_tests_name("json_scan", tests, NULL, NULL);
}
