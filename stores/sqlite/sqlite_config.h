/* Configuration of the sqlite store plugin, filled by the core from the
 * option table in sqlite_store.c (store.* keys of a pipeline). Tests may
 * fill it directly. Every pointer is owned by whoever filled the struct and
 * must outlive the instances opened with it. */
#ifndef SQ_CONFIG_H
#define SQ_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

typedef enum sq_ack_mode {
    SQ_ACK_MARK = 0,   /* set published_at; retention deletes later */
    SQ_ACK_DELETE = 1, /* delete the row at once */
} sq_ack_mode;

typedef struct sq_config {
    char *path;              /* database file; NULL or "": "outbox.db" */
    char *table;             /* outbox table; NULL or "": "outbox" */
    int ack_mode;            /* sq_ack_mode */
    int64_t lease_ms;        /* how long a claim is owned */
    int64_t busy_timeout_ms; /* wait for the write lock this long */
    int64_t retention_ms;    /* mark mode: delete published rows older; 0 off */
    bool create_schema;      /* create table and indexes at open if missing */
    char *owner;       /* lease owner id; NULL or "": "<hostname>:<pid>" */
    obx_kvlist column; /* column.<logical> = <real column name> */
} sq_config;

#endif
