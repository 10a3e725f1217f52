/* plugins, help and schema: documentation generated from the plugins'
 * own descriptors and option tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <outbox/abi.h>
#include "cli.h"
#include "escape.h"

/* A loader with the config's plugin_path when -c was given. */
static int cli_loader(obx_cli *c, obx_loader *ld)
{
    const char *path = NULL;
    obx_conf_file cf;
    obx_relay_settings rs;
    memset(&rs, 0, sizeof rs);
    char err[1024];
    bool have = false;
    if (c->config) {
        if (obx_conf_load(c->config, &cf, err, sizeof err) != 0 ||
            obx_relay_settings_fill(cf.path, obx_conf_relay(&cf), &rs, err,
                                    sizeof err) != 0) {
            obx_eprintf(stderr, "outbox-relay: %s\n", err);
            return OBX_EXIT_USAGE;
        }
        have = true;
        path = rs.plugin_path;
    }
    int rc = obx_loader_init(ld, path, c->exe_dir);
    if (have) {
        obx_relay_settings_free(&rs);
        obx_conf_free(&cf);
    }
    return rc ? OBX_EXIT_RUNTIME : 0;
}

static void list_one(void *ctx, const obx_loaded *p)
{
    (void)ctx;
    printf("%-7s %-12s %-8s %s\n        %s\n",
           obx_plugin_kind_name(p->desc->kind), p->desc->name, p->desc->version,
           p->desc->description, p->path);
}

static void list_bad(void *ctx, const char *path, const char *err)
{
    int *bad = ctx;
    (*bad)++;
    obx_eprintf(stderr, "warning: %s: %s\n", path, err);
}

int obx_cmd_plugins(obx_cli *c)
{
    obx_loader ld;
    int rc = cli_loader(c, &ld);
    if (rc)
        return rc;
    int bad = 0;
    obx_loader_scan(&ld, list_one, list_bad, &bad);
    obx_loader_free(&ld);
    return OBX_EXIT_OK;
}

/* A store or broker plugin by name: stores first. */
static const obx_loaded *find_any(obx_loader *ld, const char *name, char *err,
                                  size_t errlen)
{
    const obx_loaded *p = NULL;
    char e2[1024];
    if (obx_loader_get(ld, name, OBX_PLUGIN_STORE, &p, err, errlen) == 0)
        return p;
    if (obx_loader_get(ld, name, OBX_PLUGIN_BROKER, &p, e2, sizeof e2) == 0)
        return p;
    return NULL;
}

int obx_cmd_help(obx_cli *c)
{
    if (c->nargs != 1) {
        obx_eprintf(stderr, "usage: outbox-relay help PLUGIN|relay|pipeline\n");
        return OBX_EXIT_USAGE;
    }
    const char *what = c->args[0];
    if (strcmp(what, "relay") == 0) {
        printf("[relay] keys:\n\n");
        obx_options_help(stdout, obx_relay_optable(), "");
        return OBX_EXIT_OK;
    }
    if (strcmp(what, "pipeline") == 0) {
        printf("[pipeline NAME] keys (store.* and broker.* go to the "
               "plugins: see 'outbox-relay help PLUGIN'):\n\n");
        obx_options_help(stdout, obx_pipeline_optable(), "");
        return OBX_EXIT_OK;
    }
    obx_loader ld;
    int rc = cli_loader(c, &ld);
    if (rc)
        return rc;
    char err[1024];
    const obx_loaded *p = find_any(&ld, what, err, sizeof err);
    if (!p) {
        obx_eprintf(stderr, "outbox-relay help: %s\n", err);
        obx_loader_free(&ld);
        return OBX_EXIT_USAGE;
    }
    const char *kind = obx_plugin_kind_name(p->desc->kind);
    printf("%s plugin '%s' %s: %s\n(%s)\n\nkeys, set as %s.KEY in a "
           "[pipeline] section:\n\n",
           kind, p->desc->name, p->desc->version, p->desc->description, p->path,
           kind);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", kind);
    obx_options_help(
        stdout, (obx_optable){p->desc->options, p->desc->option_size}, prefix);
    obx_loader_free(&ld);
    return OBX_EXIT_OK;
}

static void emit_stdout(void *ctx, const char *text)
{
    (void)ctx;
    fputs(text, stdout);
    size_t n = strlen(text);
    if (n && text[n - 1] != '\n')
        fputc('\n', stdout);
}

static bool has_schema(const obx_store_ops *ops)
{
    return OBX_HAS_OP(ops, obx_store_ops, schema_v2) ||
           OBX_HAS_OP(ops, obx_store_ops, schema);
}

/* schema_v2 when the store has it (it can say why it failed), else the
 * 1.0 schema. Exit 0, 2 for a config error, 1 for anything else. */
static int run_schema(const obx_store_ops *ops, const char *store,
                      const obx_host *h, const void *conf)
{
    char err[OBX_CORE_ERR_LEN] = "";
    obx_status st =
        OBX_HAS_OP(ops, obx_store_ops, schema_v2)
            ? ops->schema_v2(h, conf, emit_stdout, NULL, err, sizeof err)
            : ops->schema(h, conf, emit_stdout, NULL);
    if (st == OBX_OK)
        return OBX_EXIT_OK;
    obx_eprintf(stderr, "outbox-relay schema: store %s failed (%s)%s%s\n",
                store, obx_status_name(st), err[0] ? ": " : "", err);
    return st == OBX_CONFIG ? OBX_EXIT_USAGE : OBX_EXIT_RUNTIME;
}

/* With -c: the DDL for the configured pipeline using this store, so the
 * configured table and column names show. */
static int schema_from_config(obx_cli *c)
{
    obx_relay r;
    int rc = obx_cli_load(c, &r);
    if (rc)
        return rc;
    obx_pipeline *p = NULL;
    for (size_t i = 0; i < r.n_pipelines && !p; i++)
        if (strcmp(r.pipelines[i]->store_pl->desc->name, c->args[0]) == 0 &&
            (!c->pipeline || strcmp(r.pipelines[i]->name, c->pipeline) == 0))
            p = r.pipelines[i];
    rc = OBX_EXIT_USAGE;
    if (!p)
        obx_eprintf(stderr,
                    "outbox-relay schema: no pipeline in %s uses store "
                    "'%s'\n",
                    r.conf.path, c->args[0]);
    else if (!has_schema(p->sops))
        obx_eprintf(stderr, "outbox-relay schema: store %s has no schema\n",
                    c->args[0]);
    else
        rc = run_schema(p->sops, c->args[0], &p->store_host, p->store_conf);
    obx_relay_free(&r);
    return rc;
}

/* schema STORE: DDL for the store's defaults, or for the pipeline that
 * uses it when -c is given. */
int obx_cmd_schema(obx_cli *c)
{
    if (c->nargs != 1) {
        obx_eprintf(stderr, "usage: outbox-relay schema STORE [-c FILE]\n");
        return OBX_EXIT_USAGE;
    }
    if (c->config)
        return schema_from_config(c);
    obx_loader ld;
    int rc = cli_loader(c, &ld);
    if (rc)
        return rc;
    char err[2048];
    const obx_loaded *p;
    if (obx_loader_get(&ld, c->args[0], OBX_PLUGIN_STORE, &p, err,
                       sizeof err) != 0) {
        obx_eprintf(stderr, "outbox-relay schema: %s\n", err);
        obx_loader_free(&ld);
        return OBX_EXIT_USAGE;
    }
    const obx_store_ops *ops = p->desc->ops;
    if (!has_schema(ops)) {
        obx_eprintf(stderr, "outbox-relay schema: store %s has no schema\n",
                    p->desc->name);
        obx_loader_free(&ld);
        return OBX_EXIT_USAGE;
    }
    obx_optable t = {p->desc->options, p->desc->option_size};
    void *conf = calloc(1, p->desc->config_size ? p->desc->config_size : 1);
    obx_conf_section empty = {OBX_SECTION_PIPELINE, "schema", 0, NULL, 0};
    rc = OBX_EXIT_USAGE;
    if (conf && obx_options_fill(t, "(defaults)", &empty, "store.", conf, err,
                                 sizeof err) == 0) {
        obx_logger *lg = c->lg;
        obx_host_ctx hc = {.lg = lg};
        snprintf(hc.component, sizeof hc.component, "%s", p->desc->name);
        obx_host h;
        obx_host_init(&h, &hc, "schema");
        rc = run_schema(ops, p->desc->name, &h, conf);
        obx_options_free(t, conf);
    } else if (conf) {
        obx_eprintf(stderr, "outbox-relay schema: %s\n", err);
    }
    free(conf);
    obx_loader_free(&ld);
    return rc;
}
