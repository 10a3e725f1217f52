/* Subcommands of the outbox-relay binary. Each returns the exit code:
 * 0 ok, 1 runtime failure, 2 usage or config error. */
#ifndef OBX_CORE_CLI_H
#define OBX_CORE_CLI_H

#include <stdbool.h>

#include "log.h"
#include "relay.h"

#define OBX_EXIT_OK 0
#define OBX_EXIT_RUNTIME 1
#define OBX_EXIT_USAGE 2

/* Options common to the subcommands, parsed by main. */
typedef struct obx_cli {
    const char *config;   /* -c FILE; default "plugins.conf" */
    const char *pipeline; /* --pipeline NAME */
    bool once;            /* --once */
    bool connect;         /* --connect */
    bool all;             /* --all */
    bool json;            /* --json: stats, dead list|show as JSON */
    long long count;      /* -n N */
    int nargs;            /* positional arguments after the subcommand */
    char **args;
    char exe_dir[4096];
    obx_logger *lg;
} obx_cli;

int obx_cmd_run(obx_cli *c);
int obx_cmd_check(obx_cli *c);
int obx_cmd_plugins(obx_cli *c);
int obx_cmd_help(obx_cli *c);
int obx_cmd_schema(obx_cli *c);
int obx_cmd_demo(obx_cli *c);
int obx_cmd_dead(obx_cli *c);
int obx_cmd_stats(obx_cli *c);

/* Load the config into r, printing the error to stderr. 0 or exit code. */
int obx_cli_load(obx_cli *c, obx_relay *r);

/* Open the store of the selected pipeline (--pipeline, else the first).
 * 0 with *p set, or an exit code after printing why. */
int obx_cli_open_store(obx_cli *c, obx_relay *r, obx_pipeline **p);

#endif
