#include "sqlite_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_block.h"

enum {
    SQ_R_ID,
    SQ_R_EVENT_ID,
    SQ_R_AGGREGATE_TYPE,
    SQ_R_AGGREGATE_ID,
    SQ_R_EVENT_TYPE,
    SQ_R_PAYLOAD,
    SQ_R_TOPIC,
    SQ_R_HEADERS,
    SQ_R_CREATED_AT,
    SQ_R_ATTEMPTS,
};

static osc_col_text sq_col_text(sqlite3_stmt *st, int col)
{
    osc_col_text t = {NULL, 0};
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return t;
    /* text first, then bytes: the documented safe order */
    t.s = (const char *)sqlite3_column_text(st, col);
    t.len = (size_t)sqlite3_column_bytes(st, col);
    return t;
}

/* What osc_event_fields_check refuses, named by the real columns (the
 * store.column.* names, as the statement returns them). */
static obx_status sq_fields_check(sqlite3_stmt *st, int first,
                                  const osc_event_fields *f, char *err,
                                  size_t errlen)
{
    static const int cols[OSC_EVENT_TEXT_FIELDS] = {
        SQ_R_EVENT_ID, SQ_R_AGGREGATE_TYPE, SQ_R_AGGREGATE_ID, SQ_R_EVENT_TYPE,
        SQ_R_TOPIC};
    const char *names[OSC_EVENT_TEXT_FIELDS];
    for (int i = 0; i < OSC_EVENT_TEXT_FIELDS; i++)
        if (!(names[i] = sqlite3_column_name(st, first + cols[i])))
            return OBX_NOMEM;
    return osc_event_fields_check(f, names, err, errlen);
}

obx_status sq_event_read(sqlite3_stmt *st, int first, bool strict,
                         sq_event **out, char *err, size_t errlen)
{
    osc_col_text tx[SQ_EVENT_COLUMNS];
    for (int c = SQ_R_EVENT_ID; c <= SQ_R_HEADERS; c++)
        if (c != SQ_R_PAYLOAD)
            tx[c] = sq_col_text(st, first + c);
    /* the payload may be a BLOB or TEXT: read it as bytes either way */
    tx[SQ_R_PAYLOAD].s =
        (const char *)sqlite3_column_blob(st, first + SQ_R_PAYLOAD);
    tx[SQ_R_PAYLOAD].len =
        (size_t)sqlite3_column_bytes(st, first + SQ_R_PAYLOAD);

    const osc_event_fields f = {
        .event_id = tx[SQ_R_EVENT_ID],
        .aggregate_type = tx[SQ_R_AGGREGATE_TYPE],
        .aggregate_id = tx[SQ_R_AGGREGATE_ID],
        .event_type = tx[SQ_R_EVENT_TYPE],
        .payload = tx[SQ_R_PAYLOAD],
        .topic = tx[SQ_R_TOPIC],
        .created_at_us = sqlite3_column_int64(st, first + SQ_R_CREATED_AT),
        .attempts = sqlite3_column_int64(st, first + SQ_R_ATTEMPTS),
        .seq = (uint64_t)sqlite3_column_int64(st, first + SQ_R_ID),
    };
    obx_status rc =
        strict ? sq_fields_check(st, first, &f, err, errlen) : OBX_OK;
    osc_event_headers h;
    if (rc == OBX_OK)
        rc = osc_event_headers_parse(tx[SQ_R_HEADERS], strict, &h, err, errlen);
    if (rc != OBX_OK)
        return rc;
    sq_event *e = osc_event_block_new(sizeof *e, &f, &h);
    osc_event_headers_free(&h);
    *out = e;
    return e ? OBX_OK : OBX_NOMEM;
}
