/* run and check: the relay itself, and its config validation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "escape.h"
#include "host.h"

int obx_cli_load(obx_cli *c, obx_relay *r)
{
    char err[2048];
    const char *path = c->config ? c->config : "plugins.conf";
    if (obx_relay_load(r, path, c->exe_dir, c->lg, err, sizeof err) != 0) {
        obx_eprintf(stderr, "outbox-relay: %s\n", err);
        return OBX_EXIT_USAGE;
    }
    return 0;
}

int obx_cmd_run(obx_cli *c)
{
    if (c->nargs > 0) {
        obx_eprintf(stderr, "outbox-relay run: unexpected argument '%s'\n",
                    c->args[0]);
        return OBX_EXIT_USAGE;
    }
    obx_relay r;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    rc = obx_relay_run(&r, c->once);
    if (obx_relay_busy(&r)) {
        /* The grace ran out with a thread inside a plugin's publish or
         * settle: exit now, without the exit handlers and unloading that
         * would run under it. The leases bring its events back. */
        fflush(NULL);
        _exit(rc);
    }
    obx_relay_free(&r);
    return rc;
}

/* Print the section's keys as the relay sees them, secrets masked. */
static void print_section(obx_pipeline *p, const obx_conf_section *sec)
{
    obx_optable st = {p->store_pl->desc->options,
                      p->store_pl->desc->option_size};
    obx_optable bt = {p->broker_pl->desc->options,
                      p->broker_pl->desc->option_size};
    obx_eprintf(stdout, "[pipeline %s]\n", p->name);
    obx_eprintf(stdout, "  store  = %s (%s %s, %s)\n", p->store_pl->desc->name,
                p->store_pl->desc->version, p->store_pl->desc->description,
                p->store_pl->path);
    obx_eprintf(stdout, "  broker = %s (%s %s, %s)\n", p->broker_pl->desc->name,
                p->broker_pl->desc->version, p->broker_pl->desc->description,
                p->broker_pl->path);
    for (size_t i = 0; i < sec->n_entries; i++) {
        const obx_conf_entry *e = &sec->entries[i];
        bool secret = false;
        if (strncmp(e->key, "store.", 6) == 0)
            secret = obx_options_is_secret(st, e->key + 6);
        else if (strncmp(e->key, "broker.", 7) == 0)
            secret = obx_options_is_secret(bt, e->key + 7);
        if (!strcmp(e->key, "store") || !strcmp(e->key, "broker"))
            continue;
        /* Not secret as a whole, but it may carry credentials
         * (nats://user:pass@host, password=... in a conninfo). Masking
         * adds at most 3 bytes per 2 of input. */
        size_t cap = 2 * strlen(e->value) + 16;
        char *shown = malloc(cap);
        if (shown)
            obx_mask_secrets(e->value, shown, cap);
        obx_eprintf(stdout, "  %s = %s\n", e->key,
                    secret || !shown ? "***" : shown);
        free(shown);
    }
}

int obx_cmd_check(obx_cli *c)
{
    obx_relay r;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < r.conf.n_sections; i++)
        if (r.conf.sections[i].kind == OBX_SECTION_PIPELINE)
            print_section(r.pipelines[k++], &r.conf.sections[i]);
    obx_validation v = obx_relay_validate(&r, c->connect, stderr);
    if (v.config_errors == 0 && v.unreachable == 0)
        printf("%s: ok (%zu pipeline%s%s)\n", r.conf.path, r.n_pipelines,
               r.n_pipelines == 1 ? "" : "s",
               c->connect ? ", connections checked" : "");
    obx_relay_free(&r);
    if (v.config_errors)
        return OBX_EXIT_USAGE;
    return v.unreachable ? OBX_EXIT_RUNTIME : OBX_EXIT_OK;
}
