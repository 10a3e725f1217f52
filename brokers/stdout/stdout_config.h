/* Config struct of the stdout broker, filled by the core from the option
 * table in stdout.c (tests fill it directly). */
#ifndef STDOUT_CONFIG_H
#define STDOUT_CONFIG_H

#include "jsonl.h"

typedef struct stdout_config {
    obc_jsonl_config out; /* output, pretty, fsync */
} stdout_config;

#endif
