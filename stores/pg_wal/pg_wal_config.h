/* Configuration of the pg_wal store plugin, filled by the core from the
 * option table in pgw_store.c (store.* keys of a pipeline). Tests may fill
 * it directly. Every pointer is owned by whoever filled the struct and must
 * outlive the instances opened with it. */
#ifndef PGW_CONFIG_H
#define PGW_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <outbox/options.h>

/* Where events come from. */
typedef enum pgw_source {
    PGW_SOURCE_TABLE = 0,    /* INSERTs into the outbox table */
    PGW_SOURCE_MESSAGES = 1, /* pg_logical_emit_message(true, prefix, ...) */
    PGW_SOURCE_BOTH = 2,
} pgw_source;

/* What an ack does besides confirming the WAL position. */
typedef enum pgw_ack_mode {
    PGW_ACK_NONE = 0,   /* nothing: the slot is the only bookkeeping */
    PGW_ACK_MARK = 1,   /* set published_at (enables recovery) */
    PGW_ACK_DELETE = 2, /* delete the row */
} pgw_ack_mode;

typedef struct pgw_config {
    char *conninfo;       /* libpq conninfo or URI (secret); "": defaults */
    char *table;          /* outbox table; NULL or "": "outbox" */
    char *schema;         /* schema of the table; NULL or "": search_path */
    obx_kvlist column;    /* column.<logical> = <real column name> */
    int source;           /* pgw_source */
    char *message_prefix; /* logical message prefix; NULL/"": "outbox" */
    char *publication;    /* NULL or "": "outbox_relay" */
    char *slot;           /* NULL or "": derived, see pgw_names_slot */
    char *dead_table;     /* NULL or "": "<table>_dead_letters" */
    bool create_schema;   /* create tables and publication when missing */
    bool create_slot;     /* create the slot on first start */
    int ack_mode;         /* pgw_ack_mode */
    int64_t status_interval_ms; /* standby status updates at least this often */
    int64_t query_timeout_ms;   /* an unanswered query or silent stream: lost */
    int64_t max_buffered; /* events held in memory before reading pauses */
    bool recover;         /* re-read unpublished rows after losing the slot */
} pgw_config;

#endif
