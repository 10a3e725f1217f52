/* Events as the pg_poll store hands them out: one malloc block per event
 * holding the obx_event, its header array and every string. */
#ifndef OBX_PG_EVENT_H
#define OBX_PG_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <outbox/event.h>
#include <outbox/status.h>

#include "claimed.h"

/* The block: a claimed event of the shared list (claimed.h), whose
 * lease_token is the id of the claim that leased it (its claims row). */
typedef osc_claimed pgp_event;

/* Read a big-endian int8 column of a binary-format result (0 for NULL). */
int64_t pgp_get_i64(const PGresult *res, int row, int col);

/* Build an event from row `row` of a binary-format result whose columns
 * are in PGP_EVENT_COLUMNS order (see pg_sql.h). `strict` (a claim): a
 * NULL id/key/type (osc_event_fields_check) and headers that are not a
 * JSON object fail with OBX_PERMANENT (reason in err); otherwise bad
 * headers are dropped. Header values travel as written
 * (osc_event_headers_parse). On OBX_OK *out is a new block the caller frees
 * with free(). */
obx_status pgp_event_read(const PGresult *res, int row, bool strict,
                          pgp_event **out, char *err, size_t errlen);

#endif
