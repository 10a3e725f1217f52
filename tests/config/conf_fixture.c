#include "conf_fixture.h"

#include <stddef.h>
#include <string.h>

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

static const obx_option tstore_options[] = {
    OBX_OPT_STRING(tstore_conf, path, "path", OBX_REQUIRED, "Database file."),
    OBX_OPT_STRING(tstore_conf, password, "password", OBX_SECRET(NULL),
                   "Password for the database."),
    OBX_OPT_INT(tstore_conf, retries, "retries", "3", 0, 10,
                "Connection retries."),
    OBX_OPT_INT_ANY(tstore_conf, pin, "pin", OBX_SECRET(NULL),
                    "A secret number."),
    OBX_OPT_BOOL(tstore_conf, verbose, "verbose", "false", "Chatty logging."),
    OBX_OPT_DURATION(tstore_conf, timeout_ms, "timeout", "5s", 1, 3600000,
                     "Statement timeout."),
    OBX_OPT_SIZE(tstore_conf, max_bytes, "max_bytes", "1MiB", 1,
                 INT64_C(1) << 30, "Largest payload."),
    OBX_OPT_ENUM(tstore_conf, mode, "mode", "safe", modes, "Durability mode."),
    OBX_OPT_LIST(tstore_conf, hosts, "hosts", "localhost",
                 "Hosts to try, in order."),
    OBX_OPT_SECRET_PREFIX(tstore_conf, kafka, "kafka",
                          "Passed through to the client library."),
    OBX_OPT_RANGE(tstore_conf, window, "window", "1s..10s", 1, 86400000,
                  "Backoff window."),
    OBX_OPT_STRING(tstore_conf, label, "label", NULL, "Free-form label."),
    OBX_OPTIONS_END,
};

static const obx_option tbroker_options[] = {
    OBX_OPT_BOOL(tbroker_conf, pretty, "pretty", "false", "Indent JSON."),
    OBX_OPTIONS_END,
};

obx_optable tstore_optable(void)
{
    return (obx_optable){tstore_options, sizeof(obx_option)};
}

obx_optable tbroker_optable(void)
{
    return (obx_optable){tbroker_options, sizeof(obx_option)};
}

static int check_pipeline(const obx_conf_section *sec, char *err, size_t errlen)
{
    obx_pipeline_settings ps;
    tstore_conf sc;
    tbroker_conf bc;
    memset(&sc, 0, sizeof sc);
    memset(&bc, 0, sizeof bc);
    int rc = obx_pipeline_settings_fill("t.conf", sec, &ps, err, errlen);
    if (rc == 0) {
        rc = obx_options_fill(tstore_optable(), "t.conf", sec, "store.", &sc,
                              err, errlen);
        if (rc == 0)
            rc = obx_options_fill(tbroker_optable(), "t.conf", sec, "broker.",
                                  &bc, err, errlen);
        obx_options_free(tstore_optable(), &sc);
        obx_options_free(tbroker_optable(), &bc);
        obx_pipeline_settings_free(&ps);
    }
    return rc;
}

int conf_check_all(const char *text, char *err, size_t errlen)
{
    obx_conf_file cf;
    if (obx_conf_parse("t.conf", text, &cf, err, errlen) != 0)
        return -1;
    obx_relay_settings rs;
    int rc = obx_relay_settings_fill("t.conf", obx_conf_relay(&cf), &rs, err,
                                     errlen);
    if (rc == 0)
        obx_relay_settings_free(&rs);
    for (size_t i = 0; rc == 0 && i < cf.n_sections; i++)
        if (cf.sections[i].kind == OBX_SECTION_PIPELINE)
            rc = check_pipeline(&cf.sections[i], err, errlen);
    obx_conf_free(&cf);
    return rc;
}
