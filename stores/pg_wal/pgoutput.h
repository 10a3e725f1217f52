/* Decoder for PostgreSQL's logical replication stream as the pg_wal store
 * receives it: the CopyData frames of START_REPLICATION (XLogData 'w' and
 * primary keepalive 'k') and, inside XLogData, pgoutput messages of
 * protocol version 1 without streaming of in-progress transactions (so no
 * message carries an xid after its tag). See PostgreSQL's
 * src/backend/replication/logical/proto.c and the "Logical Replication
 * Message Formats" chapter.
 *
 * Every byte is untrusted: each read is bounds-checked, lengths and counts
 * are validated before use, strings must be NUL-terminated inside the
 * message, and a message must be consumed exactly (trailing bytes are an
 * error). A malformed input yields PGO_MALFORMED with a message naming the
 * message type, the field and the offset; never a crash or an over-read.
 *
 * Nothing here allocates per message in the steady state: decoded strings
 * and values point into the input buffer, which must outlive their use,
 * and the column/value arrays of a pgo_msg are reused across calls. No
 * libpq, no globals: the fuzz target and unit tests link this file alone.
 */
#ifndef PGO_PGOUTPUT_H
#define PGO_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest column count PostgreSQL allows (MaxTupleAttributeNumber). */
#define PGO_MAX_COLUMNS 1664

/* Results of the decode functions. */
#define PGO_OK 0
#define PGO_MALFORMED (-1)
#define PGO_NOMEM (-2)

/* PostgreSQL timestamps count microseconds from 2000-01-01 UTC. */
#define PGO_EPOCH_OFFSET_US 946684800000000LL

/* The message tags of pgoutput (the first byte of an XLogData payload). */
typedef enum pgo_kind {
    PGO_BEGIN = 'B',
    PGO_COMMIT = 'C',
    PGO_ORIGIN = 'O',
    PGO_RELATION = 'R',
    PGO_TYPE = 'Y',
    PGO_INSERT = 'I',
    PGO_UPDATE = 'U',
    PGO_DELETE = 'D',
    PGO_TRUNCATE = 'T',
    PGO_MESSAGE = 'M',
} pgo_kind;

/* Message flag: pg_logical_emit_message(transactional => true). */
#define PGO_MESSAGE_TRANSACTIONAL 0x1

/* One column of a Relation message; name points into the input. */
typedef struct pgo_column {
    uint8_t flags; /* 1: part of the replica identity key */
    const char *name;
    uint32_t type_oid;
    int32_t typmod;
} pgo_column;

/* One value of a TupleData: kind 'n' (NULL), 'u' (unchanged TOAST), 't'
 * (text) or 'b' (binary); data/len point into the input for 't' and 'b'
 * (not NUL-terminated). */
typedef struct pgo_value {
    char kind;
    const uint8_t *data;
    uint32_t len;
} pgo_value;

/* A decoded pgoutput message. Only the fields of `kind` are meaningful.
 * Reuse one pgo_msg for every message (its arrays grow once) and free it
 * with pgo_msg_free(). */
typedef struct pgo_msg {
    pgo_kind kind;
    /* Begin: final (commit) LSN; Commit: commit LSN; Message: its LSN;
     * Origin: the origin's LSN. */
    uint64_t lsn;
    uint64_t end_lsn;  /* Commit: end of the commit record */
    int64_t commit_ts; /* Begin, Commit: PostgreSQL epoch microseconds */
    uint32_t xid;      /* Begin */
    uint8_t flags;     /* Commit (0), Message (PGO_MESSAGE_TRANSACTIONAL) */
    /* Relation, Type, Insert, Update, Delete: the relation (or type) oid */
    uint32_t relid;
    const char *nspname; /* Relation, Type: "" means pg_catalog */
    const char *relname; /* Relation, Type: name; Origin: origin name */
    uint8_t replident;   /* Relation */
    uint16_t ncols;      /* Relation */
    pgo_column *cols;
    uint16_t nvals; /* Insert: the new tuple */
    pgo_value *vals;
    const char *prefix; /* Message */
    const uint8_t *content;
    uint32_t content_len;
    size_t cap_cols, cap_vals; /* allocated entries */
} pgo_msg;

/* A CopyData frame of the replication stream. */
typedef struct pgo_frame {
    char kind;            /* 'w' XLogData, 'k' primary keepalive */
    uint64_t wal_start;   /* 'w': LSN of the data */
    uint64_t wal_end;     /* 'w', 'k': the server's current end of WAL */
    int64_t send_time;    /* PostgreSQL epoch microseconds */
    bool reply_requested; /* 'k': answer at once */
    const uint8_t *data;  /* 'w': the pgoutput message (points into input) */
    size_t len;
} pgo_frame;

/* Parse one CopyData frame. PGO_OK, or PGO_MALFORMED with err filled
 * (unknown frame type, short header). `buf` must outlive frame->data. */
int pgo_frame_parse(const uint8_t *buf, size_t len, pgo_frame *frame, char *err,
                    size_t errlen);

/* Decode one pgoutput message into m (reused; see pgo_msg). PGO_OK,
 * PGO_MALFORMED with err filled, or PGO_NOMEM. Strings and values point
 * into buf, which must outlive their use. Update, Delete and Truncate are
 * validated and reported with their kind and relid only. */
int pgo_decode(pgo_msg *m, const uint8_t *buf, size_t len, char *err,
               size_t errlen);

/* Free the arrays of m; m may be reused afterwards (it is zeroed). */
void pgo_msg_free(pgo_msg *m);

/* Size of a Standby Status Update. */
#define PGO_STATUS_LEN 34

/* Encode a Standby Status Update ('r') into out: written, flushed and
 * applied positions, the client's clock (PostgreSQL epoch microseconds)
 * and whether the server should answer at once. Returns PGO_STATUS_LEN. */
size_t pgo_status_update(uint8_t out[PGO_STATUS_LEN], uint64_t write_lsn,
                         uint64_t flush_lsn, uint64_t apply_lsn,
                         int64_t now_pg_us, bool reply);

/* Format an LSN as PostgreSQL does ("16/B374D848") into buf (>= 18
 * bytes). Returns buf. */
char *pgo_lsn_str(uint64_t lsn, char *buf, size_t len);

/* Parse "X/Y" (hex); false when malformed. */
bool pgo_lsn_parse(const char *s, uint64_t *lsn);

#endif
