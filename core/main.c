/* outbox-relay: command-line entry point. */
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <outbox/version.h>

#include "cli.h"
#include "escape.h"

/* README.md quotes this text from "commands:" on (tests/e2e keeps the
 * two in sync). */
static const char usage_text[] =
    "usage: outbox-relay [COMMAND] [OPTIONS]\n"
    "\n"
    "Moves events from a transactional outbox to a message broker,\n"
    "at least once, in per-key order.\n"
    "\n"
    "commands:\n"
    "  run -c FILE [--once]      relay events (the default command); --once\n"
    "                            drains what is pending and exits\n"
    "  check -c FILE [--connect] validate the config, plugins and options\n"
    "                            (--connect: reach the stores and brokers)\n"
    "  plugins [-c FILE]         list the plugins found in the plugin path\n"
    "  help PLUGIN|relay|pipeline  every key, with defaults and descriptions\n"
    "  schema STORE [-c FILE]    print the DDL the store needs\n"
    "  demo -c FILE -n N         write N demo orders, each with its event in\n"
    "                            one transaction (creates table 'orders')\n"
    "  stats -c FILE             pending, oldest pending, dead letters (and\n"
    "                            WAL lag) per pipeline\n"
    "  dead list|show ID|requeue ID|--all|purge ID|--all -c FILE\n"
    "                            inspect and replay dead letters; ID is the\n"
    "                            event id ('dead list' shows them)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   config file (default: plugins.conf)\n"
    "  -p, --pipeline NAME pipeline for demo, dead, schema (default: first)\n"
    "      --once          drain what is pending, then exit (gives up after\n"
    "                      the pipeline's once_timeout without progress)\n"
    "      --connect       (check) also connect to stores and brokers\n"
    "  -n N                (demo) number of orders\n"
    "      --all           (dead requeue|purge) every dead letter\n"
    "      --json          (stats, dead list|show) one JSON document on\n"
    "                      stdout, field names as in docs/operations.md\n"
    "  -V, --version       print the version and plugin ABI\n"
    "  -h, --help          this text\n"
    "\n"
    "exit codes: 0 ok, 1 runtime failure (a server unreachable, --once gave\n"
    "up, a pipeline stopped), 2 usage or config error\n"
    "signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGPIPE stop the relay\n"
    "cleanly: in-flight batches finish and settle within shutdown_grace\n";

static void exe_dir(char *out, size_t len)
{
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) {
        snprintf(out, len, ".");
        return;
    }
    path[n] = '\0';
    snprintf(out, len, "%s", dirname(path));
}

typedef int (*cmd_fn)(obx_cli *c);

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"run", obx_cmd_run},         {"check", obx_cmd_check},
    {"plugins", obx_cmd_plugins}, {"help", obx_cmd_help},
    {"schema", obx_cmd_schema},   {"demo", obx_cmd_demo},
    {"dead", obx_cmd_dead},       {"stats", obx_cmd_stats},
};

static int parse_options(int argc, char **argv, obx_cli *c)
{
    enum { OPT_ONCE = 256, OPT_CONNECT, OPT_ALL, OPT_JSON };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"connect", no_argument, NULL, OPT_CONNECT},
        {"all", no_argument, NULL, OPT_ALL},
        {"json", no_argument, NULL, OPT_JSON},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "+c:p:n:Vh", longopts, NULL)) != -1) {
        switch (o) {
        case 'c': c->config = optarg; break;
        case 'p': c->pipeline = optarg; break;
        case 'n': {
            char *end;
            c->count = strtoll(optarg, &end, 10);
            if (*end || c->count < 0) {
                obx_eprintf(stderr,
                            "outbox-relay: -n wants a count, not '%s'\n",
                            optarg);
                return OBX_EXIT_USAGE;
            }
            break;
        }
        case OPT_ONCE: c->once = true; break;
        case OPT_CONNECT: c->connect = true; break;
        case OPT_ALL: c->all = true; break;
        case OPT_JSON: c->json = true; break;
        case 'V':
            printf("outbox-relay %s (plugin ABI %d.%d)\n", OBX_RELAY_VERSION,
                   OBX_ABI_MAJOR, OBX_ABI_MINOR);
            exit(0);
        case 'h': fputs(usage_text, stdout); exit(0);
        default:
            fputs("try 'outbox-relay --help'\n", stderr);
            return OBX_EXIT_USAGE;
        }
    }
    return 0;
}

/* Options may come before or after the subcommand and its arguments:
 * parse, take one positional, repeat. */
static int parse_args(int argc, char **argv, obx_cli *c, const char **cmd)
{
    static char *pos[64];
    int np = 0;
    optind = 1;
    while (optind < argc) {
        int rc = parse_options(argc, argv, c);
        if (rc)
            return rc;
        if (optind < argc) {
            if (np == 64)
                return OBX_EXIT_USAGE;
            pos[np++] = argv[optind++];
        }
    }
    *cmd = np > 0 ? pos[0] : "run";
    c->args = np > 0 ? pos + 1 : pos;
    c->nargs = np > 0 ? np - 1 : 0;
    return 0;
}

int main(int argc, char **argv)
{
    obx_logger lg;
    obx_logger_init(&lg);
    obx_cli c = {.config = NULL, .lg = &lg, .count = -1};
    exe_dir(c.exe_dir, sizeof c.exe_dir);
    const char *cmd;
    int rc = parse_args(argc, argv, &c, &cmd);
    if (rc)
        return rc;
    /* Every signal a supervisor may send to end us is taken synchronously
     * by the relay's main loop (a clean stop: leases released), never by
     * its default action. SIGPIPE too: blocked, a write to a closed pipe
     * fails with EPIPE instead of killing the process. */
    sigset_t set;
    obx_stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            rc = commands[i].fn(&c);
            obx_logger_destroy(&lg);
            return rc;
        }
    obx_eprintf(stderr, "outbox-relay: unknown command '%s'; try --help\n",
                cmd);
    return OBX_EXIT_USAGE;
}
