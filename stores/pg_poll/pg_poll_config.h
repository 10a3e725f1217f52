/* Configuration of the pg_poll store plugin, filled by the core from the
 * option table in pg_store.c (store.* keys of a pipeline). Tests may fill
 * it directly. Every pointer is owned by whoever filled the struct and must
 * outlive the instances opened with it. */
#ifndef PGP_CONFIG_H
#define PGP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

typedef enum pgp_ack_mode {
    PGP_ACK_MARK = 0,   /* set published_at; retention deletes later */
    PGP_ACK_DELETE = 1, /* delete the row at once */
} pgp_ack_mode;

typedef struct pgp_config {
    char *conninfo;   /* libpq conninfo or URI (secret); "": libpq defaults */
    char *table;      /* outbox table; NULL or "": "outbox" */
    char *schema;     /* schema of table and trigger; NULL/"": search_path */
    int ack_mode;     /* pgp_ack_mode */
    int64_t lease_ms; /* how long a claim is owned */
    int64_t retention_ms; /* mark mode: delete published rows older; 0 off */
    bool create_schema;   /* create table, indexes, trigger when the table is
                             missing */
    char *owner;          /* lease owner id; NULL or "": "<hostname>:<pid>" */
    bool listen;          /* LISTEN on `channel` and wake on NOTIFY */
    char *channel;        /* NOTIFY channel; NULL or "": the table name */
    bool notify_trigger;  /* the schema has a trigger that sends NOTIFY */
    obx_kvlist column;    /* column.<logical> = <real column name> */
    int64_t query_timeout_ms; /* most time a statement may take; 0: 15 s */
} pgp_config;

#endif
