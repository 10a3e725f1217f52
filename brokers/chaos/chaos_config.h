/* Config struct of the chaos broker, filled by the core from the option
 * table in chaos.c (tests fill it directly). Strings and lists are owned
 * by the core and outlive the instance. */
#ifndef CHB_CONFIG_H
#define CHB_CONFIG_H

#include <stdint.h>

#include "jsonl.h"

typedef struct chb_config {
    obc_jsonl_config out;     /* output, pretty, fsync: as the stdout broker */
    obx_list permanent_types; /* these event types fail OBX_PERMANENT */
    obx_list flaky_types;     /* these fail OBX_RETRY flaky_times times */
    int64_t flaky_times;      /* per event id; 0 disables */
    int64_t down_for_ms;      /* broker-wide OBX_UNAVAILABLE after open */
    char *down_while_file;    /* OBX_UNAVAILABLE while it exists; NULL: off */
    int64_t fail_percent;     /* 0..100: random OBX_RETRY per event */
    int64_t seed;             /* for fail_percent */
    int64_t delay_ms;         /* added to each publish call */
} chb_config;

#endif
