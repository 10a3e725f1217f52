/* The one header a plugin includes.
 *
 * A plugin is a shared object named obx_store_<name>.so or
 * obx_broker_<name>.so that exports one symbol, obx_plugin_entry, returning
 * a static descriptor. The core refuses a descriptor of another abi_major
 * and treats fields beyond struct_size as absent, so the ABI grows by
 * appending fields (like sqlite3_vfs.iVersion) without breaking old plugins
 * (abi.h, version.h). The contract of every op is in store.h and broker.h;
 * docs/writing-plugins.md walks through a plugin from an empty file, and
 * examples/ holds a small store and broker that follow it.
 *
 *     typedef struct my_config { char *path; bool sync; } my_config;
 *     static const obx_option opts[] = {
 *         OBX_OPT_STRING(my_config, path, "path", OBX_REQUIRED, "file"),
 *         OBX_OPT_BOOL(my_config, sync, "sync", "false", "fsync each batch"),
 *         OBX_OPTIONS_END,
 *     };
 *     static const obx_broker_ops ops = {
 *         .struct_size = sizeof ops, .open = ..., .close = ..., .publish = ...,
 *     };
 *     OBX_BROKER_PLUGIN("mine", "one line", "1.0.0", opts, my_config, ops)
 *
 * The loader refuses, naming the file: another abi_major, a kind or name
 * that does not match the file name, a required op that is NULL, an ops or
 * option row smaller than ABI 1.0's, an option whose type is unknown or
 * whose member does not fit config_size, an enum without values, and
 * unknown flag bits (store.h, broker.h).
 */
#ifndef OUTBOX_PLUGIN_H
#define OUTBOX_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "broker.h"
#include "event.h"
#include "host.h"
#include "options.h"
#include "status.h"
#include "store.h"
#include "version.h"

typedef enum obx_plugin_kind {
    OBX_PLUGIN_STORE = 1,
    OBX_PLUGIN_BROKER = 2,
} obx_plugin_kind;

/* The descriptor (every member since 1.0; it can grow by appending). The
 * loader copies it and never calls obx_plugin_entry again, so all of it,
 * strings, option table and ops, must be static and live as long as the
 * shared object. */
typedef struct obx_plugin {
    uint32_t abi_major;   /* OBX_ABI_MAJOR at build time */
    uint32_t abi_minor;   /* OBX_ABI_MINOR at build time */
    uint32_t struct_size; /* sizeof(obx_plugin) at build time */
    obx_plugin_kind kind;
    const char *name;        /* "sqlite", "kafka": what users write in config */
    const char *description; /* one line */
    const char *version;     /* the plugin's own version */
    const obx_option *options;
    uint32_t option_size; /* sizeof(obx_option) at build time */
    size_t config_size;   /* size of the config struct the options fill */
    /* obx_store_ops or obx_broker_ops, by kind; both begin with struct_size */
    const void *ops;
} obx_plugin;

#define OBX_PLUGIN_ENTRY_SYMBOL "obx_plugin_entry"

typedef const obx_plugin *(*obx_plugin_entry_fn)(void);

#if defined(__GNUC__)
#define OBX_EXPORT __attribute__((visibility("default")))
#else
#define OBX_EXPORT
#endif

#define OBX_PLUGIN_(kind_, name_, desc_, ver_, opts_, conf_type_, ops_)        \
    OBX_EXPORT const obx_plugin *obx_plugin_entry(void);                       \
    const obx_plugin *obx_plugin_entry(void)                                   \
    {                                                                          \
        static const obx_plugin desc = {                                       \
            .abi_major = OBX_ABI_MAJOR,                                        \
            .abi_minor = OBX_ABI_MINOR,                                        \
            .struct_size = sizeof(obx_plugin),                                 \
            .kind = kind_,                                                     \
            .name = name_,                                                     \
            .description = desc_,                                              \
            .version = ver_,                                                   \
            .options = opts_,                                                  \
            .option_size = sizeof(obx_option),                                 \
            .config_size = sizeof(conf_type_),                                 \
            .ops = &ops_,                                                      \
        };                                                                     \
        return &desc;                                                          \
    }

/* Define obx_plugin_entry for a store plugin. The entry may be called from
 * any thread, before any other call; it must only return the descriptor. */
#define OBX_STORE_PLUGIN(name, desc, ver, opts, conf_type, ops)                \
    OBX_PLUGIN_(OBX_PLUGIN_STORE, name, desc, ver, opts, conf_type, ops)

/* Define obx_plugin_entry for a broker plugin. */
#define OBX_BROKER_PLUGIN(name, desc, ver, opts, conf_type, ops)               \
    OBX_PLUGIN_(OBX_PLUGIN_BROKER, name, desc, ver, opts, conf_type, ops)

#endif
