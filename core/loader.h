/* Plugin loader: find obx_store_<name>.so / obx_broker_<name>.so, dlopen,
 * check the ABI, keep one handle per plugin for the process lifetime. */
#ifndef OBX_CORE_LOADER_H
#define OBX_CORE_LOADER_H

#include <stddef.h>

#include <outbox/plugin.h>

typedef struct obx_loaded {
    /* A loader-owned copy laid out at this build's struct sizes: fields,
     * ops and option-row members past what the plugin declared read as
     * zero/NULL; options rows are sizeof(obx_option) apart (option_size
     * says so) and a NULL table becomes an empty one. Strings and enum
     * lists still point into the shared object. */
    const obx_plugin *desc;
    void *handle; /* dlopen handle */
    char *path;   /* resolved file path */
} obx_loaded;

typedef struct obx_loader {
    char **dirs; /* search order: plugin_path, install dir, beside binary */
    size_t n_dirs;
    obx_loaded *loaded;
    size_t n_loaded;
} obx_loader;

/* Build the search path: the colon-separated `plugin_path` (may be NULL or
 * empty), then OBX_PLUGIN_INSTALL_DIR, then `exe_dir`/../LIBDIR/outbox-relay
 * (a relocated install), `exe_dir` and `exe_dir`/plugins (the build tree).
 * Returns 0, -1 on no memory. */
int obx_loader_init(obx_loader *ld, const char *plugin_path,
                    const char *exe_dir);
/* dlclose everything; descriptors die with it. */
void obx_loader_free(obx_loader *ld);

/* Load the plugin `name_or_path` of `kind`: a bare name is looked up as
 * obx_<kind>_<name>.so along the search path; anything containing '/' or
 * ending in ".so" is a path. Loading the same file twice returns the same
 * entry. Errors name the file and say what is wrong: not found (listing
 * the directories searched), not a shared object (dlerror), no
 * obx_plugin_entry symbol, another abi_major (both versions), descriptor
 * too small, wrong kind, a name that differs from the file name, unknown
 * flag bits in the ops, two different files with one plugin name. Returns 0 and
 * sets *out (owned by the loader), or -1 with err filled. */
int obx_loader_get(obx_loader *ld, const char *name_or_path,
                   obx_plugin_kind kind, const obx_loaded **out, char *err,
                   size_t errlen);

/* Call cb for every loadable plugin in the search path (first directory
 * wins for a name); broken files, and files shadowed by one of the same
 * name earlier in the path, are reported through bad(). Plugins it loads
 * stay loaded, as with obx_loader_get. */
void obx_loader_scan(obx_loader *ld, void (*cb)(void *ctx, const obx_loaded *p),
                     void (*bad)(void *ctx, const char *path, const char *err),
                     void *ctx);

/* "store" / "broker". */
const char *obx_plugin_kind_name(obx_plugin_kind kind);

#endif
