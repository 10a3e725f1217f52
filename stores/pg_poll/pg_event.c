#include "pg_event.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_block.h"

/* Type oids of the payload column we treat specially (pg_type.h). */
#define PGP_JSONBOID 3802

enum {
    PGP_R_ID,
    PGP_R_EVENT_ID,
    PGP_R_AGGREGATE_TYPE,
    PGP_R_AGGREGATE_ID,
    PGP_R_EVENT_TYPE,
    PGP_R_PAYLOAD,
    PGP_R_TOPIC,
    PGP_R_HEADERS,
    PGP_R_CREATED_AT,
    PGP_R_ATTEMPTS,
    PGP_R_COUNT
};

int64_t pgp_get_i64(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
        return 0;
    uint64_t be;
    memcpy(&be, PQgetvalue(res, row, col), 8);
    return (int64_t)be64toh(be);
}

static osc_col_text pgp_col(const PGresult *res, int row, int col)
{
    osc_col_text t = {NULL, 0};
    if (PQgetisnull(res, row, col))
        return t;
    t.s = PQgetvalue(res, row, col);
    t.len = (size_t)PQgetlength(res, row, col);
    return t;
}

/* bytea, text, varchar and json send their bytes as they are in binary
 * format; jsonb prefixes a version byte (1). */
static osc_col_text pgp_payload(const PGresult *res, int row)
{
    osc_col_text t = pgp_col(res, row, PGP_R_PAYLOAD);
    if (t.s && PQftype(res, PGP_R_PAYLOAD) == PGP_JSONBOID && t.len > 0 &&
        t.s[0] == 1) {
        t.s++;
        t.len--;
    }
    if (!t.s)
        t.s = "";
    return t;
}

obx_status pgp_event_read(const PGresult *res, int row, bool strict,
                          pgp_event **out, char *err, size_t errlen)
{
    *out = NULL;
    if (PQnfields(res) < PGP_R_COUNT) {
        snprintf(err, errlen, "result has %d columns, expected %d",
                 PQnfields(res), PGP_R_COUNT);
        return OBX_FATAL;
    }
    osc_col_text tx[PGP_R_COUNT];
    for (int c = PGP_R_EVENT_ID; c <= PGP_R_HEADERS; c++)
        tx[c] = pgp_col(res, row, c);
    tx[PGP_R_PAYLOAD] = pgp_payload(res, row);

    const osc_event_fields f = {
        .event_id = tx[PGP_R_EVENT_ID],
        .aggregate_type = tx[PGP_R_AGGREGATE_TYPE],
        .aggregate_id = tx[PGP_R_AGGREGATE_ID],
        .event_type = tx[PGP_R_EVENT_TYPE],
        .payload = tx[PGP_R_PAYLOAD],
        .topic = tx[PGP_R_TOPIC],
        .created_at_us = pgp_get_i64(res, row, PGP_R_CREATED_AT),
        .attempts = pgp_get_i64(res, row, PGP_R_ATTEMPTS),
        .seq = (uint64_t)pgp_get_i64(res, row, PGP_R_ID),
    };
    /* PostgreSQL names "o.col::text" after the column: the real names */
    const char *names[OSC_EVENT_TEXT_FIELDS] = {
        PQfname(res, PGP_R_EVENT_ID), PQfname(res, PGP_R_AGGREGATE_TYPE),
        PQfname(res, PGP_R_AGGREGATE_ID), PQfname(res, PGP_R_EVENT_TYPE),
        PQfname(res, PGP_R_TOPIC)};
    obx_status rc =
        strict ? osc_event_fields_check(&f, names, err, errlen) : OBX_OK;
    osc_event_headers h;
    if (rc == OBX_OK)
        rc =
            osc_event_headers_parse(tx[PGP_R_HEADERS], strict, &h, err, errlen);
    if (rc != OBX_OK)
        return rc;
    pgp_event *e = osc_event_block_new(sizeof *e, &f, &h);
    osc_event_headers_free(&h);
    *out = e;
    if (!e)
        snprintf(err, errlen, "out of memory");
    return e ? OBX_OK : OBX_NOMEM;
}
