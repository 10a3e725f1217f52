/* run and check: the relay itself, and its config validation. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "host.h"

int obx_cli_load(obx_cli *c, obx_relay *r)
{
    char err[2048];
    const char *path = c->config ? c->config : "plugins.conf";
    if (obx_relay_load(r, path, c->exe_dir, c->lg, err, sizeof err) != 0) {
        fprintf(stderr, "outbox-relay: %s\n", err);
        return OBX_EXIT_USAGE;
    }
    return 0;
}

int obx_cmd_run(obx_cli *c)
{
    if (c->nargs > 0) {
        fprintf(stderr, "outbox-relay run: unexpected argument '%s'\n",
                c->args[0]);
        return OBX_EXIT_USAGE;
    }
    obx_relay r;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    rc = obx_relay_run(&r, c->once);
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
    printf("[pipeline %s]\n", p->name);
    printf("  store  = %s (%s %s, %s)\n", p->store_pl->desc->name,
           p->store_pl->desc->version, p->store_pl->desc->description,
           p->store_pl->path);
    printf("  broker = %s (%s %s, %s)\n", p->broker_pl->desc->name,
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
         * (nats://user:pass@host, password=... in a conninfo). */
        char shown[1024];
        obx_mask_secrets(e->value, shown, sizeof shown);
        printf("  %s = %s\n", e->key, secret ? "***" : shown);
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
            print_section(&r.pipelines[k++], &r.conf.sections[i]);
    int problems = obx_relay_validate(&r, c->connect, stderr);
    if (problems == 0)
        printf("%s: ok (%zu pipeline%s%s)\n", r.conf.path, r.n_pipelines,
               r.n_pipelines == 1 ? "" : "s",
               c->connect ? ", connections checked" : "");
    obx_relay_free(&r);
    return problems ? OBX_EXIT_USAGE : OBX_EXIT_OK;
}
