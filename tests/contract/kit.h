/* Internals shared by the two contract suites (not installed). */
#ifndef OBX_CONTRACT_KIT_H
#define OBX_CONTRACT_KIT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <outbox/contract.h>

#define KIT_ERR char err[OBX_ERRSTR_LEN] = ""

/* One loaded plugin and what an instance needs: the core's loader copy of
 * the descriptor, a host. */
typedef struct kit_plugin {
    const obx_plugin *desc;
    const obx_host *host;
    void *loader; /* obx_loader *, kept for the process */
} kit_plugin;

/* Load `plugin` (path or bare name in dir) of kind; 0, or -1 with err. */
int kit_load(kit_plugin *kp, obx_plugin_kind kind, const char *plugin,
             const char *dir, char *err, size_t errlen);

/* dlclose and free what kit_load made (after the last check). */
void kit_unload(kit_plugin *kp);

/* Fill a fresh config struct (calloc'ed, config_size) from text ("key =
 * value" lines, prefix "store." or "broker." added) through the core's
 * option code, as the relay does. Fails the running test on error. Free
 * with kit_conf_free. */
void *kit_conf(const kit_plugin *kp, const char *prefix, const char *text);
void kit_conf_free(const kit_plugin *kp, void *conf);

/* Is `check` in na (and its reason), and are all names in na known? */
const char *kit_na(const obx_contract_na *na, const char *check);
int kit_na_valid(const obx_contract_na *na, const char *const *known,
                 const char *suite);

int64_t kit_now_us(void);
int64_t kit_mono_ms(void);
void kit_sleep_ms(int ms);

/* A check: name, function; run by kit_run with per-check setup. */
typedef struct kit_check {
    const char *name;
    void (*fn)(void **state);
    /* non-NULL: why it does not apply (printed, not run) */
    const char *na;
} kit_check;

/* Run the applicable checks as one cmocka group; prints the n/a ones.
 * Returns the number of failed checks. */
int kit_run(const char *group, kit_check *checks, size_t n,
            int (*setup)(void **), int (*teardown)(void **), void *state);

#endif
