/* The raw ceiling of the pg_poll store: the store's own claim statement
 * (pg_sql.c, byte for byte) and its ack_mode=mark statement, run in a
 * loop with libpq and nothing else, until the table has nothing left to
 * claim. Prints "rows seconds rows_per_second".
 *
 *   obx_bench_pg_poll_raw CONNINFO [BATCH] [LEASE_MS]
 *
 * Built by stores/pg_poll/CMakeLists.txt; run by bench/pg_poll_drain.sh. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <endian.h>
#include <libpq-fe.h>

#include "pg_buf.h"
#include "pg_sql.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(PGconn *c, const char *what)
{
    fprintf(stderr, "pg_poll_raw: %s: %s", what, PQerrorMessage(c));
    exit(1);
}

static void prepare(PGconn *c, const pgp_names *n, pgp_stmt st)
{
    char *sql = pgp_sql_expand(n, pgp_stmt_template(st, 0));
    PGresult *r = PQprepare(c, pgp_stmt_name(st), sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die(c, "prepare");
    PQclear(r);
    free(sql);
}

/* One claim-and-mark round; returns the rows it moved. */
static int round_trip(PGconn *c, const char *batch, const char *lease,
                      pgp_buf *ids)
{
    const char *cp[3] = {"bench", batch, lease};
    PGresult *r =
        PQexecPrepared(c, pgp_stmt_name(PGP_S_CLAIM), 3, cp, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die(c, "claim");
    int rows = PQntuples(r);
    pgp_buf_reset(ids);
    pgp_buf_addc(ids, '{');
    for (int i = 0; i < rows; i++) {
        uint64_t be;
        memcpy(&be, PQgetvalue(r, i, 0), 8);
        pgp_buf_array_i64(ids, (int64_t)be64toh(be));
    }
    pgp_buf_addc(ids, '}');
    PQclear(r);
    if (rows == 0)
        return 0;
    const char *ap[1] = {ids->p};
    r = PQexecPrepared(c, pgp_stmt_name(PGP_S_ACK), 1, ap, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die(c, "mark");
    PQclear(r);
    return rows;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONNINFO [BATCH] [LEASE_MS]\n", argv[0]);
        return 2;
    }
    const char *batch = argc > 2 ? argv[2] : "1000";
    const char *lease = argc > 3 ? argv[3] : "60000";
    PGconn *c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK)
        die(c, "connect");
    obx_pg_poll_config conf;
    memset(&conf, 0, sizeof conf);
    pgp_names names;
    char err[256];
    if (pgp_names_init(&names, &conf, err, sizeof err) != 0) {
        fprintf(stderr, "pg_poll_raw: %s\n", err);
        return 1;
    }
    prepare(c, &names, PGP_S_CLAIM);
    prepare(c, &names, PGP_S_ACK);
    pgp_buf ids = {0};
    long total = 0;
    double t0 = now_s();
    int n;
    while ((n = round_trip(c, batch, lease, &ids)) > 0)
        total += n;
    double secs = now_s() - t0;
    printf("%ld %.3f %.0f\n", total, secs, secs > 0 ? (double)total / secs : 0);
    pgp_buf_free(&ids);
    PQfinish(c);
    return 0;
}
