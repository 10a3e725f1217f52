/* Config struct of the stdout broker, filled by the core from the option
 * table in stdout.c (tests fill it directly). */
#ifndef OBX_BROKER_STDOUT_CONFIG_H
#define OBX_BROKER_STDOUT_CONFIG_H

#include "jsonl.h"

typedef struct obx_stdout_config {
    obx_jsonl_config out; /* output, pretty, fsync */
} obx_stdout_config;

#endif
