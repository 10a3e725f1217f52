#include "conf_fixture.h"

#include <stddef.h>
#include <string.h>

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

#define OFF(f) offsetof(tstore_conf, f)

static const obx_option tstore_options[] = {
    {"path", OBX_OPT_STRING, NULL, OBX_OPT_REQUIRED, 0, 0, NULL, OFF(path),
     "Database file."},
    {"password", OBX_OPT_STRING, NULL, OBX_OPT_SECRET, 0, 0, NULL,
     OFF(password), "Password for the database."},
    {"retries", OBX_OPT_INT, "3", 0, 0, 10, NULL, OFF(retries),
     "Connection retries."},
    {"pin", OBX_OPT_INT, NULL, OBX_OPT_SECRET, 0, 0, NULL, OFF(pin),
     "A secret number."},
    {"verbose", OBX_OPT_BOOL, "false", 0, 0, 0, NULL, OFF(verbose),
     "Chatty logging."},
    {"timeout", OBX_OPT_DURATION, "5s", 0, 1, 3600000, NULL, OFF(timeout_ms),
     "Statement timeout."},
    {"max_bytes", OBX_OPT_SIZE, "1MiB", 0, 1, INT64_C(1) << 30, NULL,
     OFF(max_bytes), "Largest payload."},
    {"mode", OBX_OPT_ENUM, "safe", 0, 0, 0, modes, OFF(mode),
     "Durability mode."},
    {"hosts", OBX_OPT_LIST, "localhost", 0, 0, 0, NULL, OFF(hosts),
     "Hosts to try, in order."},
    {"kafka", OBX_OPT_PREFIX, NULL, OBX_OPT_SECRET, 0, 0, NULL, OFF(kafka),
     "Passed through to the client library."},
    {"window", OBX_OPT_RANGE, "1s..10s", 0, 1, 86400000, NULL, OFF(window),
     "Backoff window."},
    {"label", OBX_OPT_STRING, NULL, 0, 0, 0, NULL, OFF(label),
     "Free-form label."},
    OBX_OPTIONS_END,
};

static const obx_option tbroker_options[] = {
    {"pretty", OBX_OPT_BOOL, "false", 0, 0, 0, NULL,
     offsetof(tbroker_conf, pretty), "Indent JSON."},
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
