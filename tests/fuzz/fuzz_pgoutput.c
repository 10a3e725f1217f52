/* libFuzzer target: arbitrary bytes through the pg_wal store's decoder,
 * as the replication connection would hand them over: as a CopyData frame
 * (XLogData or keepalive) and as a bare pgoutput message, then split into
 * several length-prefixed messages decoded with one reused pgo_msg (the
 * store's steady state). Aborts when a decoded pointer or count leaves the
 * input, or an error comes back without a message. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"

static void check_in(const void *p, size_t len, const uint8_t *buf, size_t n)
{
    const uint8_t *q = p;
    if (len && (!q || q < buf || q + len > buf + n))
        abort();
}

static void check_str(const char *s, const uint8_t *buf, size_t n)
{
    if (!s)
        abort();
    check_in(s, strlen(s) + 1, buf, n);
}

/* Everything a successful decode points at lies inside the input. */
static void check_msg(const pgo_msg *m, const uint8_t *buf, size_t n)
{
    switch (m->kind) {
    case PGO_RELATION:
        check_str(m->nspname, buf, n);
        check_str(m->relname, buf, n);
        if (m->ncols > PGO_MAX_COLUMNS)
            abort();
        for (size_t i = 0; i < m->ncols; i++)
            check_str(m->cols[i].name, buf, n);
        break;
    case PGO_INSERT:
        if (m->nvals > PGO_MAX_COLUMNS)
            abort();
        for (size_t i = 0; i < m->nvals; i++)
            check_in(m->vals[i].data, m->vals[i].len, buf, n);
        break;
    case PGO_MESSAGE:
        check_str(m->prefix, buf, n);
        check_in(m->content, m->content_len, buf, n);
        break;
    default: break;
    }
}

static void decode_one(pgo_msg *m, const uint8_t *buf, size_t n)
{
    char err[256] = "";
    int rc = pgo_decode(m, buf, n, err, sizeof err);
    if (rc == PGO_OK)
        check_msg(m, buf, n);
    else if (rc == PGO_MALFORMED && !err[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exactly-sized copy, so ASan sees any over-read */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    pgo_msg m = {0};
    char err[256] = "";
    pgo_frame f;
    if (pgo_frame_parse(buf, size, &f, err, sizeof err) == PGO_OK) {
        if (f.kind == 'w') {
            check_in(f.data, f.len, buf, size);
            decode_one(&m, f.data, f.len);
        }
    } else if (!err[0]) {
        abort();
    }
    decode_one(&m, buf, size);
    /* a sequence of messages, each prefixed with a one-byte length */
    for (size_t off = 0; off < size;) {
        size_t len = buf[off++];
        if (len > size - off)
            len = size - off;
        decode_one(&m, buf + off, len);
        off += len;
    }
    char lsn[32];
    size_t l = size < sizeof lsn - 1 ? size : sizeof lsn - 1;
    memcpy(lsn, buf, l);
    lsn[l] = '\0';
    uint64_t v;
    if (pgo_lsn_parse(lsn, &v))
        pgo_lsn_str(v, lsn, sizeof lsn);
    pgo_msg_free(&m);
    free(buf);
    return 0;
}
