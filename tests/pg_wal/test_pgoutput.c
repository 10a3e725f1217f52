/* The pgoutput decoder on byte fixtures: every message type the pg_wal
 * store reads, the replication frames, and truncated or malformed inputs,
 * which must be rejected with a clear error (and, under ASan, without an
 * over-read: every fixture is copied into an exactly-sized heap buffer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgoutput.h"

/* ---- a little encoder for fixtures ---- */

typedef struct fx {
    uint8_t b[4096];
    size_t n;
} fx;

static void u8(fx *f, uint8_t v)
{
    f->b[f->n++] = v;
}

static void be(fx *f, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        u8(f, (uint8_t)(v >> (8 * i)));
}

static void str(fx *f, const char *s)
{
    size_t len = strlen(s) + 1;
    memcpy(f->b + f->n, s, len);
    f->n += len;
}

static void text_val(fx *f, const char *s)
{
    u8(f, 't');
    be(f, strlen(s), 4);
    memcpy(f->b + f->n, s, strlen(s));
    f->n += strlen(s);
}

/* Decode a copy of the first len bytes on the heap, exactly sized. */
static int decode(pgo_msg *m, const fx *f, size_t len, char *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, f->b, len);
    int rc = pgo_decode(m, copy, len, err, 256);
    free(copy);
    return rc;
}

static fx begin_fx(void)
{
    fx f = {.n = 0};
    u8(&f, 'B');
    be(&f, 0x16B374D848ULL, 8);
    be(&f, 700000000000000ULL, 8);
    be(&f, 1234, 4);
    return f;
}

static fx commit_fx(void)
{
    fx f = {.n = 0};
    u8(&f, 'C');
    u8(&f, 0);
    be(&f, 0x16B374D848ULL, 8);
    be(&f, 0x16B374D878ULL, 8);
    be(&f, 700000000000000ULL, 8);
    return f;
}

static fx relation_fx(void)
{
    fx f = {.n = 0};
    u8(&f, 'R');
    be(&f, 16384, 4);
    str(&f, "app");
    str(&f, "outbox");
    u8(&f, 'd');
    be(&f, 3, 2);
    const char *names[] = {"id", "aggregate_id", "payload"};
    uint32_t types[] = {20, 25, 17};
    for (int i = 0; i < 3; i++) {
        u8(&f, i == 0);
        str(&f, names[i]);
        be(&f, types[i], 4);
        be(&f, 0xFFFFFFFF, 4);
    }
    return f;
}

static fx insert_fx(void)
{
    fx f = {.n = 0};
    u8(&f, 'I');
    be(&f, 16384, 4);
    u8(&f, 'N');
    be(&f, 4, 2);
    text_val(&f, "42");
    u8(&f, 'n');
    text_val(&f, "\\x414243");
    u8(&f, 'u');
    return f;
}

static fx message_fx(void)
{
    fx f = {.n = 0};
    u8(&f, 'M');
    u8(&f, PGO_MESSAGE_TRANSACTIONAL);
    be(&f, 0x2A0000001ULL, 8);
    str(&f, "outbox");
    be(&f, 5, 4);
    memcpy(f.b + f.n, "{\"a\"}", 5);
    f.n += 5;
    return f;
}

/* ---- every message type ---- */

static void test_begin_commit(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx b = begin_fx();
    assert_int_equal(decode(&m, &b, b.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_BEGIN);
    assert_true(m.lsn == 0x16B374D848ULL);
    assert_true(m.commit_ts == 700000000000000LL);
    assert_int_equal(m.xid, 1234);
    fx c = commit_fx();
    assert_int_equal(decode(&m, &c, c.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_COMMIT);
    assert_true(m.lsn == 0x16B374D848ULL && m.end_lsn == 0x16B374D878ULL);
    pgo_msg_free(&m);
}

static void test_relation(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx f = relation_fx();
    uint8_t *copy = malloc(f.n);
    memcpy(copy, f.b, f.n);
    assert_int_equal(pgo_decode(&m, copy, f.n, err, sizeof err), PGO_OK);
    assert_int_equal(m.kind, PGO_RELATION);
    assert_int_equal(m.relid, 16384);
    assert_string_equal(m.nspname, "app");
    assert_string_equal(m.relname, "outbox");
    assert_int_equal(m.ncols, 3);
    assert_string_equal(m.cols[1].name, "aggregate_id");
    assert_int_equal(m.cols[2].type_oid, 17);
    assert_int_equal(m.cols[0].flags, 1);
    assert_int_equal(m.cols[0].typmod, -1);
    free(copy);
    pgo_msg_free(&m);
}

static void test_insert(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx f = insert_fx();
    uint8_t *copy = malloc(f.n);
    memcpy(copy, f.b, f.n);
    assert_int_equal(pgo_decode(&m, copy, f.n, err, sizeof err), PGO_OK);
    assert_int_equal(m.kind, PGO_INSERT);
    assert_int_equal(m.nvals, 4);
    assert_int_equal(m.vals[0].kind, 't');
    assert_int_equal(m.vals[0].len, 2);
    assert_memory_equal(m.vals[0].data, "42", 2);
    assert_int_equal(m.vals[1].kind, 'n');
    assert_int_equal(m.vals[3].kind, 'u');
    free(copy);
    pgo_msg_free(&m);
}

static void test_message_type_origin(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx f = message_fx();
    uint8_t *copy = malloc(f.n);
    memcpy(copy, f.b, f.n);
    assert_int_equal(pgo_decode(&m, copy, f.n, err, sizeof err), PGO_OK);
    assert_int_equal(m.kind, PGO_MESSAGE);
    assert_true(m.flags & PGO_MESSAGE_TRANSACTIONAL);
    assert_string_equal(m.prefix, "outbox");
    assert_int_equal(m.content_len, 5);
    free(copy);

    fx y = {.n = 0};
    u8(&y, 'Y');
    be(&y, 99999, 4);
    str(&y, "public");
    str(&y, "mood");
    assert_int_equal(decode(&m, &y, y.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_TYPE);
    fx o = {.n = 0};
    u8(&o, 'O');
    be(&o, 77, 8);
    str(&o, "origin1");
    assert_int_equal(decode(&m, &o, o.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_ORIGIN);
    pgo_msg_free(&m);
}

static void test_update_delete_truncate(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx u = {.n = 0};
    u8(&u, 'U');
    be(&u, 5, 4);
    u8(&u, 'K');
    be(&u, 1, 2);
    text_val(&u, "1");
    u8(&u, 'N');
    be(&u, 1, 2);
    text_val(&u, "2");
    assert_int_equal(decode(&m, &u, u.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_UPDATE);
    fx d = {.n = 0};
    u8(&d, 'D');
    be(&d, 5, 4);
    u8(&d, 'O');
    be(&d, 1, 2);
    u8(&d, 'n');
    assert_int_equal(decode(&m, &d, d.n, err), PGO_OK);
    fx t = {.n = 0};
    u8(&t, 'T');
    be(&t, 2, 4);
    u8(&t, 0);
    be(&t, 5, 4);
    be(&t, 6, 4);
    assert_int_equal(decode(&m, &t, t.n, err), PGO_OK);
    assert_int_equal(m.kind, PGO_TRUNCATE);
    pgo_msg_free(&m);
}

/* ---- frames and status updates ---- */

static void test_frames(void **state)
{
    (void)state;
    char err[256];
    fx k = {.n = 0};
    u8(&k, 'k');
    be(&k, 0x1000, 8);
    be(&k, 5, 8);
    u8(&k, 1);
    pgo_frame f;
    assert_int_equal(pgo_frame_parse(k.b, k.n, &f, err, sizeof err), PGO_OK);
    assert_int_equal(f.kind, 'k');
    assert_true(f.wal_end == 0x1000 && f.reply_requested);
    assert_int_equal(pgo_frame_parse(k.b, k.n - 1, &f, err, sizeof err),
                     PGO_MALFORMED);
    assert_non_null(strstr(err, "keepalive"));

    fx w = {.n = 0};
    u8(&w, 'w');
    be(&w, 0x2000, 8);
    be(&w, 0x3000, 8);
    be(&w, 9, 8);
    fx b = begin_fx();
    memcpy(w.b + w.n, b.b, b.n);
    w.n += b.n;
    assert_int_equal(pgo_frame_parse(w.b, w.n, &f, err, sizeof err), PGO_OK);
    assert_true(f.wal_start == 0x2000 && f.len == b.n && f.data[0] == 'B');
    assert_int_equal(pgo_frame_parse(w.b, 10, &f, err, sizeof err),
                     PGO_MALFORMED);
    uint8_t bad[] = {'z', 0};
    assert_int_equal(pgo_frame_parse(bad, 2, &f, err, sizeof err),
                     PGO_MALFORMED);
    assert_non_null(strstr(err, "unknown type"));
    assert_int_equal(pgo_frame_parse(bad, 0, &f, err, sizeof err),
                     PGO_MALFORMED);

    uint8_t st[PGO_STATUS_LEN];
    assert_int_equal(pgo_status_update(st, 0x0102, 0x0304, 0x0506, 7, true),
                     34);
    assert_int_equal(st[0], 'r');
    assert_int_equal(st[15], 0x03);
    assert_int_equal(st[16], 0x04);
    assert_int_equal(st[33], 1);
}

static void test_lsn_text(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(pgo_lsn_str(0x16B374D848ULL, buf, sizeof buf),
                        "16/B374D848");
    uint64_t v = 0;
    assert_true(pgo_lsn_parse("16/B374D848", &v));
    assert_true(v == 0x16B374D848ULL);
    assert_false(pgo_lsn_parse("16B374D848", &v));
    assert_false(pgo_lsn_parse("/1", &v));
    assert_false(pgo_lsn_parse("1/G", &v));
    assert_false(pgo_lsn_parse("123456789/1", &v));
}

/* ---- malformed input ---- */

/* Every proper prefix of a valid message is rejected with a message that
 * names the message type. */
static void check_prefixes(fx f)
{
    pgo_msg m = {0};
    char err[256];
    for (size_t len = 0; len < f.n; len++) {
        err[0] = '\0';
        int rc = decode(&m, &f, len, err);
        if (rc != PGO_MALFORMED)
            fail_msg("prefix of %zu/%zu bytes of '%c' accepted", len, f.n,
                     f.b[0]);
        assert_non_null(strstr(err, "malformed"));
    }
    pgo_msg_free(&m);
}

static void test_truncated(void **state)
{
    (void)state;
    check_prefixes(begin_fx());
    check_prefixes(commit_fx());
    check_prefixes(relation_fx());
    check_prefixes(insert_fx());
    check_prefixes(message_fx());
}

static void expect_bad(fx f, const char *needle)
{
    pgo_msg m = {0};
    char err[256] = "";
    assert_int_equal(decode(&m, &f, f.n, err), PGO_MALFORMED);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    pgo_msg_free(&m);
}

static void test_malformed(void **state)
{
    (void)state;
    fx f = begin_fx();
    u8(&f, 0); /* trailing byte */
    expect_bad(f, "unexpected bytes");

    f = (fx){.n = 0};
    u8(&f, 'Q');
    expect_bad(f, "unknown type");

    f = insert_fx();
    f.b[5] = 'X'; /* not 'N' */
    expect_bad(f, "tuple marker");

    f = insert_fx();
    f.b[8] = 'q'; /* first value kind */
    expect_bad(f, "value kind");

    f = insert_fx();
    f.b[9] = 0x7f; /* value length far past the end */
    expect_bad(f, "truncated");

    f = insert_fx();
    f.b[9] = 0x80; /* negative length */
    expect_bad(f, "negative");

    f = relation_fx();
    f.n = 1 + 4 + 4; /* "app\0" then nothing */
    u8(&f, 'o');     /* relation name without its NUL */
    expect_bad(f, "unterminated string");

    f = relation_fx();
    f.b[1 + 4 + 4 + 7 + 1] = 0xff; /* column count 0xff03 */
    expect_bad(f, "column");

    f = (fx){.n = 0};
    u8(&f, 'I');
    be(&f, 1, 4);
    u8(&f, 'N');
    be(&f, 0xffff, 2); /* more columns than PostgreSQL allows */
    expect_bad(f, "1664");

    f = message_fx();
    f.b[f.n - 6] = 0x40; /* content length larger than what follows */
    expect_bad(f, "truncated");

    f = begin_fx();
    memset(f.b + 1, 0, 8); /* final LSN 0/0 */
    expect_bad(f, "invalid");

    f = commit_fx();
    memset(f.b + 10, 0, 8); /* end LSN before the commit LSN */
    expect_bad(f, "commit LSN");

    f = (fx){.n = 0};
    u8(&f, 'T');
    be(&f, 1000000, 4);
    u8(&f, 0);
    expect_bad(f, "count");
}

/* Reusing one pgo_msg across growing messages keeps earlier pointers
 * meaningless but never corrupts memory (ASan watches). */
static void test_reuse(void **state)
{
    (void)state;
    pgo_msg m = {0};
    char err[256];
    fx big = {.n = 0};
    u8(&big, 'I');
    be(&big, 1, 4);
    u8(&big, 'N');
    be(&big, 300, 2);
    for (int i = 0; i < 300; i++)
        u8(&big, 'n');
    for (int round = 0; round < 3; round++) {
        fx r = relation_fx();
        assert_int_equal(decode(&m, &r, r.n, err), PGO_OK);
        assert_int_equal(decode(&m, &big, big.n, err), PGO_OK);
        assert_int_equal(m.nvals, 300);
    }
    pgo_msg_free(&m);
    assert_int_equal(decode(&m, &big, big.n, err), PGO_OK);
    pgo_msg_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_commit),
        cmocka_unit_test(test_relation),
        cmocka_unit_test(test_insert),
        cmocka_unit_test(test_message_type_origin),
        cmocka_unit_test(test_update_delete_truncate),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_lsn_text),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
