#include "support.h"

#include <dlfcn.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"
#include "log.h"

static obx_logger test_logger;
static obx_host_ctx test_ctx;
static obx_host test_host;

const obx_host *obx_test_host(void)
{
    if (test_host.struct_size == 0) {
        obx_logger_init(&test_logger);
        test_logger.level = OBX_LOG_WARN;
        const char *lv = getenv("OBX_TEST_LOG");
        for (int l = OBX_LOG_ERROR; lv && l <= OBX_LOG_TRACE; l++)
            if (strcmp(lv, obx_log_level_name((obx_log_level)l)) == 0)
                test_logger.level = (obx_log_level)l;
        test_ctx.lg = &test_logger;
        snprintf(test_ctx.component, sizeof test_ctx.component, "test");
        obx_host_init(&test_host, &test_ctx, "test");
    }
    return &test_host;
}

const obx_plugin *obx_test_plugin(const char *kind, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/obx_%s_%s.so", OBX_PLUGIN_DIR, kind, name);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        fail_msg("dlopen %s: %s", path, dlerror());
    obx_plugin_entry_fn fn =
        (obx_plugin_entry_fn)(uintptr_t)dlsym(h, OBX_PLUGIN_ENTRY_SYMBOL);
    if (!fn)
        fail_msg("%s: no %s", path, OBX_PLUGIN_ENTRY_SYMBOL);
    return fn();
}

char *obx_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/obx-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        fail_msg("mkdtemp %s failed", tmpl);
    return strdup(tmpl);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void obx_test_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
