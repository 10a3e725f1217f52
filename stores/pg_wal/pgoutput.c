#include "pgoutput.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bounds-checked big-endian reader. The first failure sticks: later
 * reads return zeros and NULLs, so a decoder checks once at the end and
 * reports the first field that did not fit. */
typedef struct pgo_rd {
    const uint8_t *p;
    size_t len, off;
    const char *bad; /* field that failed, NULL while fine */
    size_t bad_off;  /* where it failed */
    const char *why; /* "truncated", "unterminated string", ... */
} pgo_rd;

static void rd_fail(pgo_rd *r, const char *field, const char *why)
{
    if (r->bad)
        return;
    r->bad = field;
    r->bad_off = r->off;
    r->why = why;
}

static bool rd_need(pgo_rd *r, size_t n, const char *field)
{
    if (r->bad)
        return false;
    if (n > r->len - r->off) {
        rd_fail(r, field, "truncated");
        return false;
    }
    return true;
}

static uint64_t rd_be(pgo_rd *r, size_t n, const char *field)
{
    if (!rd_need(r, n, field))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->p[r->off + i];
    r->off += n;
    return v;
}

static uint8_t rd_u8(pgo_rd *r, const char *f)
{
    return (uint8_t)rd_be(r, 1, f);
}

static uint16_t rd_u16(pgo_rd *r, const char *f)
{
    return (uint16_t)rd_be(r, 2, f);
}

static uint32_t rd_u32(pgo_rd *r, const char *f)
{
    return (uint32_t)rd_be(r, 4, f);
}

static uint64_t rd_u64(pgo_rd *r, const char *f)
{
    return rd_be(r, 8, f);
}

/* A NUL-terminated string inside the message. */
static const char *rd_str(pgo_rd *r, const char *field)
{
    if (!rd_need(r, 1, field))
        return NULL;
    const uint8_t *s = r->p + r->off;
    const uint8_t *nul = memchr(s, 0, r->len - r->off);
    if (!nul) {
        rd_fail(r, field, "unterminated string");
        return NULL;
    }
    r->off += (size_t)(nul - s) + 1;
    return (const char *)s;
}

static const uint8_t *rd_bytes(pgo_rd *r, size_t n, const char *field)
{
    if (!rd_need(r, n, field))
        return NULL;
    const uint8_t *s = r->p + r->off;
    r->off += n;
    return s;
}

static const char *pgo_kind_name(int tag)
{
    switch (tag) {
    case PGO_BEGIN: return "Begin";
    case PGO_COMMIT: return "Commit";
    case PGO_ORIGIN: return "Origin";
    case PGO_RELATION: return "Relation";
    case PGO_TYPE: return "Type";
    case PGO_INSERT: return "Insert";
    case PGO_UPDATE: return "Update";
    case PGO_DELETE: return "Delete";
    case PGO_TRUNCATE: return "Truncate";
    case PGO_MESSAGE: return "Message";
    }
    return "unknown";
}

/* Report the reader's state: the first failure, or bytes left over. */
static int rd_finish(pgo_rd *r, const char *what, char *err, size_t errlen)
{
    if (r->bad) {
        snprintf(err, errlen,
                 "malformed pgoutput %s message: %s at byte %zu reading %s "
                 "(message is %zu bytes)",
                 what, r->why, r->bad_off, r->bad, r->len);
        return PGO_MALFORMED;
    }
    if (r->off != r->len) {
        snprintf(err, errlen,
                 "malformed pgoutput %s message: %zu unexpected bytes after "
                 "byte %zu",
                 what, r->len - r->off, r->off);
        return PGO_MALFORMED;
    }
    return PGO_OK;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return PGO_OK;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return PGO_NOMEM;
    *arr = p;
    *cap = n;
    return PGO_OK;
}

/* ---- framing ---- */

int pgo_frame_parse(const uint8_t *buf, size_t len, pgo_frame *f, char *err,
                    size_t errlen)
{
    memset(f, 0, sizeof *f);
    pgo_rd r = {buf, len, 0, NULL, 0, NULL};
    f->kind = (char)rd_u8(&r, "frame type");
    if (f->kind == 'w') {
        f->wal_start = rd_u64(&r, "XLogData start");
        f->wal_end = rd_u64(&r, "XLogData end");
        f->send_time = (int64_t)rd_u64(&r, "XLogData send time");
        if (!r.bad) {
            f->data = buf + r.off;
            f->len = len - r.off;
            r.off = len;
        }
        return rd_finish(&r, "XLogData", err, errlen);
    }
    if (f->kind == 'k') {
        f->wal_end = rd_u64(&r, "keepalive WAL end");
        f->send_time = (int64_t)rd_u64(&r, "keepalive send time");
        f->reply_requested = rd_u8(&r, "keepalive reply flag") != 0;
        return rd_finish(&r, "keepalive", err, errlen);
    }
    if (r.bad)
        return rd_finish(&r, "CopyData", err, errlen);
    snprintf(err, errlen,
             "malformed replication frame: unknown type 0x%02x (%zu bytes)",
             (unsigned)(uint8_t)f->kind, len);
    return PGO_MALFORMED;
}

/* ---- messages ---- */

static void dec_begin(pgo_msg *m, pgo_rd *r)
{
    m->lsn = rd_u64(r, "final LSN");
    m->commit_ts = (int64_t)rd_u64(r, "commit timestamp");
    m->xid = rd_u32(r, "xid");
    if (!r->bad && m->lsn == 0)
        rd_fail(r, "final LSN", "invalid (0/0)");
}

static void dec_commit(pgo_msg *m, pgo_rd *r)
{
    m->flags = rd_u8(r, "flags");
    m->lsn = rd_u64(r, "commit LSN");
    m->end_lsn = rd_u64(r, "end LSN");
    m->commit_ts = (int64_t)rd_u64(r, "commit timestamp");
    if (!r->bad && (m->lsn == 0 || m->end_lsn < m->lsn))
        rd_fail(r, "commit LSN", "invalid (0/0 or past the end LSN)");
}

static void dec_origin(pgo_msg *m, pgo_rd *r)
{
    m->lsn = rd_u64(r, "origin LSN");
    m->relname = rd_str(r, "origin name");
}

static int dec_relation(pgo_msg *m, pgo_rd *r)
{
    m->relid = rd_u32(r, "relation oid");
    m->nspname = rd_str(r, "namespace");
    m->relname = rd_str(r, "relation name");
    m->replident = rd_u8(r, "replica identity");
    uint16_t n = rd_u16(r, "column count");
    if (r->bad)
        return PGO_OK;
    if (n > PGO_MAX_COLUMNS) {
        rd_fail(r, "column count", "more than 1664 columns");
        return PGO_OK;
    }
    /* each column needs at least 10 bytes: refuse a count the message
     * cannot hold before allocating for it */
    if ((size_t)n * 10 > r->len - r->off) {
        rd_fail(r, "columns", "truncated");
        return PGO_OK;
    }
    if (grow((void **)&m->cols, &m->cap_cols, n, sizeof *m->cols) != PGO_OK)
        return PGO_NOMEM;
    for (uint16_t i = 0; i < n && !r->bad; i++) {
        pgo_column *c = &m->cols[i];
        c->flags = rd_u8(r, "column flags");
        c->name = rd_str(r, "column name");
        c->type_oid = rd_u32(r, "column type oid");
        c->typmod = (int32_t)rd_u32(r, "column type modifier");
    }
    m->ncols = r->bad ? 0 : n;
    return PGO_OK;
}

static void dec_type(pgo_msg *m, pgo_rd *r)
{
    m->relid = rd_u32(r, "type oid");
    m->nspname = rd_str(r, "namespace");
    m->relname = rd_str(r, "type name");
}

/* TupleData: a count, then per column a kind byte and, for text and
 * binary values, a length and the bytes. With `keep` the values land in
 * m->vals; otherwise they are only validated. */
static int dec_tuple(pgo_msg *m, pgo_rd *r, bool keep)
{
    uint16_t n = rd_u16(r, "tuple column count");
    if (r->bad)
        return PGO_OK;
    if (n > PGO_MAX_COLUMNS) {
        rd_fail(r, "tuple column count", "more than 1664 columns");
        return PGO_OK;
    }
    if ((size_t)n > r->len - r->off) { /* at least one byte per column */
        rd_fail(r, "tuple columns", "truncated");
        return PGO_OK;
    }
    if (keep &&
        grow((void **)&m->vals, &m->cap_vals, n, sizeof *m->vals) != PGO_OK)
        return PGO_NOMEM;
    for (uint16_t i = 0; i < n && !r->bad; i++) {
        pgo_value v = {(char)rd_u8(r, "value kind"), NULL, 0};
        if (v.kind == 't' || v.kind == 'b') {
            uint32_t len = rd_u32(r, "value length");
            if (!r->bad && len > INT32_MAX)
                rd_fail(r, "value length", "negative");
            v.data = rd_bytes(r, len, "value bytes");
            v.len = len;
        } else if (!r->bad && v.kind != 'n' && v.kind != 'u') {
            r->off--;
            rd_fail(r, "value kind", "unknown kind (not n, u, t or b)");
        }
        if (keep)
            m->vals[i] = v;
    }
    if (keep)
        m->nvals = r->bad ? 0 : n;
    return PGO_OK;
}

static int dec_insert(pgo_msg *m, pgo_rd *r)
{
    m->relid = rd_u32(r, "relation oid");
    uint8_t action = rd_u8(r, "tuple marker");
    if (!r->bad && action != 'N') {
        r->off--;
        rd_fail(r, "tuple marker", "not 'N'");
    }
    return dec_tuple(m, r, true);
}

/* Update: optional old tuple ('K' key or 'O' old), then 'N' new tuple. */
static int dec_update(pgo_msg *m, pgo_rd *r)
{
    m->relid = rd_u32(r, "relation oid");
    uint8_t action = rd_u8(r, "tuple marker");
    if (!r->bad && (action == 'K' || action == 'O')) {
        int rc = dec_tuple(m, r, false);
        if (rc != PGO_OK)
            return rc;
        action = rd_u8(r, "new tuple marker");
    }
    if (!r->bad && action != 'N') {
        r->off--;
        rd_fail(r, "tuple marker", "not 'N', 'K' or 'O'");
    }
    return dec_tuple(m, r, false);
}

static int dec_delete(pgo_msg *m, pgo_rd *r)
{
    m->relid = rd_u32(r, "relation oid");
    uint8_t action = rd_u8(r, "tuple marker");
    if (!r->bad && action != 'K' && action != 'O') {
        r->off--;
        rd_fail(r, "tuple marker", "not 'K' or 'O'");
    }
    return dec_tuple(m, r, false);
}

static void dec_truncate(pgo_msg *m, pgo_rd *r)
{
    uint32_t n = rd_u32(r, "relation count");
    m->flags = rd_u8(r, "flags");
    if (!r->bad && (uint64_t)n * 4 != r->len - r->off) {
        rd_fail(r, "relation oids", "count does not match the length");
        return;
    }
    for (uint32_t i = 0; i < n && !r->bad; i++)
        m->relid = rd_u32(r, "relation oid");
}

static void dec_message(pgo_msg *m, pgo_rd *r)
{
    m->flags = rd_u8(r, "flags");
    m->lsn = rd_u64(r, "message LSN");
    m->prefix = rd_str(r, "prefix");
    m->content_len = rd_u32(r, "content length");
    if (!r->bad && m->content_len > INT32_MAX)
        rd_fail(r, "content length", "negative");
    m->content = rd_bytes(r, m->content_len, "content");
    if (!m->content)
        m->content_len = 0;
}

static int dec_body(pgo_msg *m, pgo_rd *r)
{
    switch (m->kind) {
    case PGO_BEGIN: dec_begin(m, r); return PGO_OK;
    case PGO_COMMIT: dec_commit(m, r); return PGO_OK;
    case PGO_ORIGIN: dec_origin(m, r); return PGO_OK;
    case PGO_RELATION: return dec_relation(m, r);
    case PGO_TYPE: dec_type(m, r); return PGO_OK;
    case PGO_INSERT: return dec_insert(m, r);
    case PGO_UPDATE: return dec_update(m, r);
    case PGO_DELETE: return dec_delete(m, r);
    case PGO_TRUNCATE: dec_truncate(m, r); return PGO_OK;
    case PGO_MESSAGE: dec_message(m, r); return PGO_OK;
    }
    return PGO_MALFORMED;
}

static void pgo_msg_clear(pgo_msg *m)
{
    pgo_column *cols = m->cols;
    pgo_value *vals = m->vals;
    size_t cc = m->cap_cols, cv = m->cap_vals;
    memset(m, 0, sizeof *m);
    m->cols = cols;
    m->vals = vals;
    m->cap_cols = cc;
    m->cap_vals = cv;
}

int pgo_decode(pgo_msg *m, const uint8_t *buf, size_t len, char *err,
               size_t errlen)
{
    pgo_msg_clear(m);
    if (len == 0 || !buf) {
        snprintf(err, errlen, "malformed pgoutput message: empty");
        return PGO_MALFORMED;
    }
    pgo_rd r = {buf, len, 1, NULL, 0, NULL};
    m->kind = (pgo_kind)buf[0];
    if (strcmp(pgo_kind_name(buf[0]), "unknown") == 0) {
        snprintf(err, errlen,
                 "malformed pgoutput message: unknown type 0x%02x (%zu bytes; "
                 "streaming and two-phase messages are not requested)",
                 (unsigned)buf[0], len);
        return PGO_MALFORMED;
    }
    if (dec_body(m, &r) == PGO_NOMEM) {
        snprintf(err, errlen, "out of memory decoding a pgoutput message");
        return PGO_NOMEM;
    }
    return rd_finish(&r, pgo_kind_name(buf[0]), err, errlen);
}

void pgo_msg_free(pgo_msg *m)
{
    free(m->cols);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- status updates and LSNs ---- */

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

size_t pgo_status_update(uint8_t out[PGO_STATUS_LEN], uint64_t write_lsn,
                         uint64_t flush_lsn, uint64_t apply_lsn,
                         int64_t now_pg_us, bool reply)
{
    out[0] = 'r';
    put_be(out + 1, write_lsn, 8);
    put_be(out + 9, flush_lsn, 8);
    put_be(out + 17, apply_lsn, 8);
    put_be(out + 25, (uint64_t)now_pg_us, 8);
    out[33] = reply ? 1 : 0;
    return PGO_STATUS_LEN;
}

char *pgo_lsn_str(uint64_t lsn, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32),
             (uint32_t)lsn);
    return buf;
}

static bool hex_u32(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 8)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return true;
}

bool pgo_lsn_parse(const char *s, uint64_t *lsn)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    uint32_t hi, lo;
    if (!slash || !hex_u32(s, (size_t)(slash - s), &hi) ||
        !hex_u32(slash + 1, strlen(slash + 1), &lo))
        return false;
    *lsn = ((uint64_t)hi << 32) | lo;
    return true;
}
