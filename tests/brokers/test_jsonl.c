/* The shared JSON-lines writer on its own: layout, and a randomized check
 * that any bytes in any field give one valid JSON line with the payload
 * embedded exactly when jansson accepts it. */
#include "broker_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

static void test_reindent(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"{}", "{}\n"},
        {"[ ]", "[]\n"},
        {"42", "42\n"},
        {"{\"a\":1}", "{\n  \"a\": 1\n}\n"},
        {"{\"a\":[1,{\"b\":\"x, {y}: [z] \\\" q\"}],\"c\":{}}",
         "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x, {y}: [z] \\\" q\"\n"
         "    }\n  ],\n  \"c\": {}\n}\n"},
        {" [ \"\\\\\" , 2 ] \n", "[\n  \"\\\\\",\n  2\n]\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        obc_jbuf b = {0};
        assert_int_equal(
            obc_jsonl_reindent(&b, cases[i].in, strlen(cases[i].in)), 0);
        assert_int_equal(b.len, strlen(cases[i].out));
        assert_memory_equal(b.data, cases[i].out, b.len);
        obc_jbuf_free(&b);
    }
}

/* Appends to one buffer keep earlier lines intact. */
static void test_format_appends(void **state)
{
    obc_jbuf b = {0};
    obx_event ev = obx_tb_event("a", "k", "T");
    assert_int_equal(obc_jsonl_format(&b, &ev), 0);
    size_t first = b.len;
    ev.event_id = "b";
    assert_int_equal(obc_jsonl_format(&b, &ev), 0);
    assert_int_equal(b.len, 2 * first);
    assert_memory_equal(b.data, "{\"event_id\":\"a\"", 15);
    assert_memory_equal(b.data + first, "{\"event_id\":\"b\"", 15);
    obc_jbuf_free(&b);
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Bytes biased towards JSON syntax, escapes and UTF-8 edge cases. */
static size_t random_bytes(uint64_t *s, char *out, size_t max)
{
    static const char alphabet[] = "{}[]\",:\\ \n\r\t0123456789.-+eEtruefalsn"
                                   "abc/u\x01\x1f\x7f\xc3\xa9\xe2\x82\xac"
                                   "\xed\xa0\x80\xf0\x9f\x98\x80\xff\xc0";
    size_t n = rng(s) % max;
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[rng(s) % (sizeof alphabet - 1)];
    return n;
}

static json_t *random_value(uint64_t *s, int depth)
{
    static const char *const strs[] = {"",
                                       "plain",
                                       "quote \" back \\ slash /",
                                       "line\nbreak\ttab\x01",
                                       "caf\xc3\xa9 \xe2\x82\xac",
                                       "emoji \xf0\x9f\x98\x80",
                                       "\x7f del"};
    switch (rng(s) % (depth > 3 ? 5 : 7)) {
    case 0: return json_integer((json_int_t)(rng(s) >> (rng(s) % 64)));
    case 1: return json_real((double)(int64_t)rng(s) / (double)(rng(s) | 1));
    case 2: return json_string(strs[rng(s) % (sizeof strs / sizeof strs[0])]);
    case 3: return rng(s) % 2 ? json_true() : json_false();
    case 4: return json_null();
    case 5: {
        json_t *a = json_array();
        for (uint64_t i = rng(s) % 4; i > 0; i--)
            json_array_append_new(a, random_value(s, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        char key[8];
        for (uint64_t i = rng(s) % 4; i > 0; i--) {
            snprintf(key, sizeof key, "k%u", (unsigned)(rng(s) % 100));
            json_object_set_new(o, key, random_value(s, depth + 1));
        }
        return o;
    }
    }
}

/* A random valid JSON value (any type at top level), dumped with random
 * indentation, sometimes ASCII-only (\u escapes, surrogate pairs). */
static size_t random_json(uint64_t *s, char *out, size_t max)
{
    for (;;) {
        json_t *v = random_value(s, 0);
        size_t flags = JSON_INDENT(rng(s) % 4) | JSON_ENCODE_ANY |
                       (rng(s) % 3 == 0 ? JSON_ENSURE_ASCII : 0) |
                       (rng(s) % 2 ? JSON_COMPACT : 0);
        size_t n = json_dumpb(v, out, max, flags);
        json_decref(v);
        if (n > 0 && n <= max)
            return n;
    }
}

static bool jansson_accepts(const void *p, size_t n)
{
    json_t *v = json_loadb(p, n, JSON_DECODE_ANY, NULL);
    json_decref(v);
    return v != NULL;
}

/* The quick check never contradicts jansson: it answers the same or asks. */
static void assert_agrees(const char *p, size_t n)
{
    bool want = jansson_accepts(p, n);
    obc_json_verdict v = obc_json_quick_check(p, n);
    if (v != OBC_JSON_ASK_JANSSON && (v == OBC_JSON_YES) != want)
        fail_msg("quick check says %d, jansson %d: %.*s", v, want, (int)n, p);
    assert_int_equal(obc_json_valid(p, n), want);
}

static void test_quick_check_edges(void **state)
{
    static const struct {
        const char *in;
        int jansson;   /* what jansson decides */
        int needs_ask; /* the quick check must defer */
    } cases[] = {
        {"0", 1, 0},
        {"-0", 1, 0},
        {"01", 0, 0},
        {"1.", 0, 0},
        {"1.5", 1, 0},
        {".5", 0, 0},
        {"1e5", 1, 0},
        {"1E+05", 1, 0},
        {"1e", 0, 0},
        {"-", 0, 0},
        {"+1", 0, 0},
        {"- 1", 0, 0},
        {"123456789012345678", 1, 0},
        {"12345678901234567890123", 0, 1},
        {"1e400", 0, 1},
        {"1e-400", 1, 1},
        {"\"\\u0000\"", 0, 1},
        {"\"\\ud83d\\ude00\"", 1, 1},
        {"\"\\ud83d\"", 0, 1},
        {"\"\\u00e9\\/\"", 1, 0},
        {"\"\\x\"", 0, 0},
        {"\"\\u12g4\"", 0, 0},
        {"\"a\tb\"", 0, 0},
        {"[1,]", 0, 0},
        {"[,1]", 0, 0},
        {"{\"a\"}", 0, 0},
        {"{\"a\":1,}", 0, 0},
        {"{1:2}", 0, 0},
        {"[] []", 0, 0},
        {"", 0, 0},
        {"  \n ", 0, 0},
        {"nul", 0, 0},
        {"nulll", 0, 0},
        {"true false", 0, 0},
        {"[true,false,null]", 1, 0},
        {"[truex]", 0, 0},
        {"\xef\xbb\xbf{}", 0, 0},
        {"\"\xc3\xa9\"", 1, 0},
        {"\"\xc3\"", 0, 0},
        {"\"\xed\xa0\x80\"", 0, 0},
        {"{\"a\":{\"b\":[1,{\"c\":\"d\"}]},\"e\":\"\"}", 1, 0},
        {"{\"a\":1}{", 0, 0},
        {"{\"a\":1]", 0, 0},
        {"[1}", 0, 0},
        {"\"unterminated", 0, 0},
        {"{\"dup\":1,\"dup\":2}", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        obc_json_verdict v = obc_json_quick_check(cases[i].in, n);
        if (jansson_accepts(cases[i].in, n) != cases[i].jansson)
            fail_msg("case %zu: jansson disagrees with the table", i);
        if ((v == OBC_JSON_ASK_JANSSON) != cases[i].needs_ask)
            fail_msg("case %zu (%s): verdict %d", i, cases[i].in, v);
        assert_agrees(cases[i].in, n);
    }
    /* A NUL byte in the middle, and nesting deep enough to ask jansson. */
    assert_agrees("{\"a\":1}\0", 8);
    assert_agrees("\"a\0b\"", 5);
    for (size_t depth = 500; depth <= 3000; depth += 500) {
        char *deep = malloc(2 * depth);
        memset(deep, '[', depth);
        memset(deep + depth, ']', depth);
        assert_agrees(deep, 2 * depth);
        free(deep);
    }
}

/* Valid JSON with a few random byte edits: mostly near-misses, the inputs
 * where a hand-written scanner and jansson could part ways. */
static void test_quick_check_differential(void **state)
{
    static const char edits[] =
        "{}[]\",:\\ \n0123456789.-+eEtfnulrsa\x01\xc3\xa9";
    uint64_t seed = 0x2545f4914f6cdd1du;
    char buf[600];
    size_t asked = 0, total = 50000;
    for (size_t i = 0; i < total; i++) {
        size_t n = random_json(&seed, buf, 500);
        for (uint64_t e = rng(&seed) % 4; e > 0 && n > 0; e--) {
            size_t at = rng(&seed) % n;
            char c = edits[rng(&seed) % (sizeof edits - 1)];
            switch (rng(&seed) % 3) {
            case 0: buf[at] = c; break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default:
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
            }
        }
        asked += obc_json_quick_check(buf, n) == OBC_JSON_ASK_JANSSON;
        assert_agrees(buf, n);
    }
    /* The generator leans on jansson's limits (big integers, unicode escapes),
     * so it asks far more often than real payloads would; still, most
     * inputs must be decided without jansson. */
    print_message("quick check deferred to jansson for %zu of %zu\n", asked,
                  total);
    assert_true(asked < total / 2);
}

static void check_line(const char *line, size_t len, const char *payload,
                       size_t plen, const char *key)
{
    assert_true(len > 0 && line[len - 1] == '\n');
    assert_null(memchr(line, '\n', len - 1));
    json_error_t jerr;
    json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
    if (!o)
        fail_msg("invalid line (%s): %.*s", jerr.text, (int)len, line);
    assert_int_equal(json_object_size(o), 7);
    json_t *got = json_object_get(o, "payload");
    json_t *as_json = json_loadb(payload, plen, JSON_DECODE_ANY, NULL);
    if (as_json) {
        assert_true(json_equal(got, as_json));
    } else {
        assert_true(json_is_string(got));
        json_t *as_str = json_stringn(payload, plen); /* NULL: bad UTF-8 */
        assert_true(!as_str || json_equal(got, as_str));
        json_decref(as_str);
    }
    json_t *k = json_object_get(o, "key");
    assert_true(json_is_string(k));
    json_t *kexp = json_string(key);
    assert_true(!kexp || json_equal(k, kexp));
    json_decref(kexp);
    json_decref(as_json);
    json_decref(o);
}

static void test_random_fields(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;
    char payload[512], key[64];
    obc_jbuf b = {0};
    for (int i = 0; i < 20000; i++) {
        size_t plen = (i % 3 == 0) ? random_json(&seed, payload, sizeof payload)
                                   : random_bytes(&seed, payload, 64);
        size_t klen = random_bytes(&seed, key, sizeof key - 1);
        key[klen] = '\0';
        klen = strlen(key); /* a C string ends at its first NUL */
        obx_event ev = obx_tb_event("id", key, "T");
        ev.payload = payload;
        ev.payload_len = plen;
        b.len = 0;
        assert_int_equal(obc_jsonl_format(&b, &ev), 0);
        check_line(b.data, b.len, payload, plen, key);
    }
    obc_jbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reindent),
        cmocka_unit_test(test_format_appends),
        cmocka_unit_test(test_quick_check_edges),
        cmocka_unit_test(test_quick_check_differential),
        cmocka_unit_test(test_random_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
