/* Helpers shared by the tests: a host for calling plugins directly, plugin
 * loading from the build tree, temp dirs. Failures abort the test. */
#ifndef OBX_TEST_SUPPORT_H
#define OBX_TEST_SUPPORT_H

#include <outbox/plugin.h>

/* A host that logs to stderr (level from OBX_TEST_LOG: error..trace,
 * default warn). The returned pointer is static; fine for tests. */
const obx_host *obx_test_host(void);

/* dlopen OBX_PLUGIN_DIR/obx_<kind>_<name>.so and return its descriptor;
 * fails the test with the dlerror when that is impossible. */
const obx_plugin *obx_test_plugin(const char *kind, const char *name);

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
char *obx_test_tmpdir(void);

/* Remove a directory tree created by obx_test_tmpdir (best effort). */
void obx_test_rmtree(const char *dir);

#endif
