/* The parts of the conformance kit both suites share: loading a plugin the
 * way the relay does (the core's loader and option code, linked into the
 * kit), a host, n/a bookkeeping and the cmocka run. */
#define _POSIX_C_SOURCE 200809L
#include "kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "options.h"

static obx_logger kit_logger;
static obx_host_ctx kit_host_ctx;
static obx_host kit_host;

static const obx_host *kit_get_host(void)
{
    if (kit_host.struct_size == 0) {
        obx_logger_init(&kit_logger);
        kit_logger.level = OBX_LOG_WARN;
        const char *lv = getenv("OBX_CONTRACT_LOG");
        for (int l = OBX_LOG_ERROR; lv && l <= OBX_LOG_TRACE; l++)
            if (strcmp(lv, obx_log_level_name((obx_log_level)l)) == 0)
                kit_logger.level = (obx_log_level)l;
        kit_host_ctx.lg = &kit_logger;
        snprintf(kit_host_ctx.component, sizeof kit_host_ctx.component,
                 "contract");
        obx_host_init(&kit_host, &kit_host_ctx, "contract");
    }
    return &kit_host;
}

int kit_load(kit_plugin *kp, obx_plugin_kind kind, const char *plugin,
             const char *dir, char *err, size_t errlen)
{
    memset(kp, 0, sizeof *kp);
    if (!plugin || !*plugin) {
        snprintf(err, errlen, "harness names no plugin");
        return -1;
    }
    obx_loader *ld = calloc(1, sizeof *ld);
    if (!ld || obx_loader_init(ld, dir, ".") != 0) {
        free(ld);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const obx_loaded *l;
    if (obx_loader_get(ld, plugin, kind, &l, err, errlen) != 0) {
        obx_loader_free(ld);
        free(ld);
        return -1;
    }
    kp->desc = l->desc;
    kp->host = kit_get_host();
    kp->loader = ld; /* kept: the descriptor lives in it */
    return 0;
}

void kit_unload(kit_plugin *kp)
{
    if (kp->loader) {
        obx_loader_free(kp->loader);
        free(kp->loader);
    }
    memset(kp, 0, sizeof *kp);
}

void *kit_conf(const kit_plugin *kp, const char *prefix, const char *text)
{
    size_t len = strlen(text) + 64;
    char *buf = malloc(len * 2 + 64);
    assert_non_null(buf);
    /* prefix every non-empty line */
    size_t o = (size_t)snprintf(buf, 64, "[pipeline contract]\n");
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0)
            o += (size_t)sprintf(buf + o, "%s%.*s\n", prefix, (int)l, p);
        p += l + (e ? 1 : 0);
    }
    obx_conf_file cf;
    char err[512];
    if (obx_conf_parse("contract.conf", buf, &cf, err, sizeof err) != 0)
        fail_msg("harness config text: %s", err);
    free(buf);
    void *conf = calloc(1, kp->desc->config_size ? kp->desc->config_size : 1);
    assert_non_null(conf);
    obx_optable t = {kp->desc->options, kp->desc->option_size};
    const obx_conf_section *sec = &cf.sections[cf.n_sections - 1];
    int rc = obx_options_fill(t, "contract.conf", sec, prefix, conf, err,
                              sizeof err);
    obx_conf_free(&cf);
    if (rc != 0)
        fail_msg("harness config: %s", err);
    return conf;
}

void kit_conf_free(const kit_plugin *kp, void *conf)
{
    if (!conf)
        return;
    obx_optable t = {kp->desc->options, kp->desc->option_size};
    obx_options_free(t, conf);
    free(conf);
}

const char *kit_na(const obx_contract_na *na, const char *check)
{
    for (; na && na->check; na++)
        if (strcmp(na->check, check) == 0)
            return na->reason && *na->reason ? na->reason : "(no reason given)";
    return NULL;
}

int kit_na_valid(const obx_contract_na *na, const char *const *known,
                 const char *suite)
{
    int bad = 0;
    for (; na && na->check; na++) {
        int found = 0;
        for (const char *const *k = known; *k; k++)
            found |= strcmp(*k, na->check) == 0;
        if (!found) {
            printf("[  ERROR   ] %s: not_applicable names an unknown check "
                   "'%s'\n",
                   suite, na->check);
            bad++;
        }
        if (!na->reason || !*na->reason) {
            printf("[  ERROR   ] %s: not_applicable '%s' gives no reason\n",
                   suite, na->check);
            bad++;
        }
    }
    return bad;
}

int64_t kit_now_us(void)
{
    return obx_now_us();
}

int64_t kit_mono_ms(void)
{
    return obx_mono_us() / 1000;
}

void kit_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int kit_run(const char *group, kit_check *checks, size_t n,
            int (*setup)(void **), int (*teardown)(void **), void *state)
{
    struct CMUnitTest *tests = calloc(n ? n : 1, sizeof *tests);
    assert_non_null(tests);
    size_t k = 0, na = 0;
    for (size_t i = 0; i < n; i++) {
        if (checks[i].na) {
            na++;
            continue;
        }
        tests[k++] = (struct CMUnitTest){checks[i].name, checks[i].fn, setup,
                                         teardown, state};
    }
    int failed = k ? _cmocka_run_group_tests(group, tests, k, NULL, NULL) : 0;
    for (size_t i = 0; i < n; i++)
        if (checks[i].na)
            printf("[   N/A    ] %s %s: %s\n", group, checks[i].name,
                   checks[i].na);
    printf("[ CONTRACT ] %s: %zu checks run, %d failed, %zu not applicable\n",
           group, k, failed, na);
    fflush(stdout);
    free(tests);
    return failed;
}
