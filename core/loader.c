/* Plugin loader: search path, dlopen, descriptor checks.
 *
 * A descriptor that passes every check is copied into loader-owned memory
 * laid out at this build's struct sizes: fields past the plugin's
 * struct_size read as zero/NULL and the option table is re-laid at
 * sizeof(obx_option). The rest of the core can then use desc, ops and
 * options directly, whatever ABI minor the plugin was built for.
 */
#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef OBX_PLUGIN_REL_DIR
#define OBX_PLUGIN_REL_DIR "lib/outbox-relay"
#endif
#ifndef OBX_PLUGIN_INSTALL_DIR
#define OBX_PLUGIN_INSTALL_DIR ""
#endif

/* Callers keep obx_loaded pointers for the process lifetime, so the table
 * must never move: it is allocated once at this capacity, never realloc'd. */
#define LOADER_CAPACITY 128
/* Stops the walk over an option table that lacks its NULL terminator. */
#define MAX_OPTION_ROWS 1024

/* End offset of `field` in `type`; a plugin struct has the field when this
 * is <= its struct_size (the ABI grows by appending). */
#define FIELD_END(type, field)                                                 \
    (offsetof(type, field) + sizeof(((type *)0)->field))
#define HAS_FIELD(type, field, size) (FIELD_END(type, field) <= (size))

typedef struct plugin_copy {
    obx_plugin desc; /* first member: entry->desc is the block to free */
    union {
        obx_store_ops store;
        obx_broker_ops broker;
    } ops;
    obx_option options[]; /* the plugin's rows, then a zeroed terminator */
} plugin_copy;

/* A mandatory op: name for messages, offset in its ops struct. */
typedef struct op_req {
    const char *name;
    size_t off;
} op_req;

/* clang-format off */
#define OP_REQ(type, f) {#f, offsetof(type, f)}
/* clang-format on */
static const op_req store_required[] = {
    OP_REQ(obx_store_ops, open),
    OP_REQ(obx_store_ops, close),
    OP_REQ(obx_store_ops, claim),
    OP_REQ(obx_store_ops, ack),
    OP_REQ(obx_store_ops, release),
    OP_REQ(obx_store_ops, bury),
    {NULL, 0},
};
static const op_req broker_required[] = {
    OP_REQ(obx_broker_ops, open),
    OP_REQ(obx_broker_ops, close),
    OP_REQ(obx_broker_ops, publish),
    {NULL, 0},
};

/* Where messages go, and the file they are about (as found, not resolved,
 * so users see the path they wrote or the search path produced). */
typedef struct load_ctx {
    const char *file;
    char *err;
    size_t errlen;
} load_ctx;

static int fail(const load_ctx *lc, const char *fmt, ...) OBX_PRINTF(2, 3);

static int fail(const load_ctx *lc, const char *fmt, ...)
{
    if (lc->err && lc->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lc->err, lc->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Append to a NUL-terminated buffer, truncating silently. */
static void appendf(char *buf, size_t len, const char *fmt, ...)
    OBX_PRINTF(3, 4);

static void appendf(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strnlen(buf, len);
    if (used + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

const char *obx_plugin_kind_name(obx_plugin_kind kind)
{
    switch (kind) {
    case OBX_PLUGIN_STORE: return "store";
    case OBX_PLUGIN_BROKER: return "broker";
    }
    return "unknown";
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* "dir/name", malloc'd; NULL on no memory. */
static char *join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", dir, name);
    return p;
}

/* ---- search path ---------------------------------------------------- */

/* dir[0..len) made absolute against the working directory at init time,
 * so a later chdir (daemonising) does not change what the path means. */
static char *absolute_dir(const char *dir, size_t len)
{
    while (len > 1 && dir[len - 1] == '/')
        len--;
    char *rel = strndup(dir, len);
    if (!rel || dir[0] == '/')
        return rel;
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return rel; /* cwd unknown (deleted): keep it relative */
    char *abs = join(cwd, rel);
    free(cwd);
    free(rel);
    return abs;
}

/* Append a directory unless empty or already listed. 0, -1 on no memory. */
static int add_dir(obx_loader *ld, const char *dir, size_t len)
{
    if (len == 0)
        return 0;
    char *abs = absolute_dir(dir, len);
    if (!abs)
        return -1;
    for (size_t i = 0; i < ld->n_dirs; i++) {
        if (strcmp(ld->dirs[i], abs) == 0) {
            free(abs);
            return 0;
        }
    }
    char **dirs = realloc(ld->dirs, (ld->n_dirs + 1) * sizeof *dirs);
    if (!dirs) {
        free(abs);
        return -1;
    }
    ld->dirs = dirs;
    ld->dirs[ld->n_dirs++] = abs;
    return 0;
}

static int add_path_list(obx_loader *ld, const char *list)
{
    while (list && *list) {
        size_t len = strcspn(list, ":");
        if (add_dir(ld, list, len) < 0)
            return -1;
        list += len + (list[len] == ':');
    }
    return 0;
}

/* Beside the binary: ../lib/outbox-relay (an install moved to another
 * prefix still finds its plugins), the binary's own directory and its
 * plugins/ (the build tree). */
static int add_exe_dirs(obx_loader *ld, const char *exe_dir)
{
    if (!exe_dir || !*exe_dir)
        return 0;
    char *rel = join(exe_dir, "../" OBX_PLUGIN_REL_DIR);
    char *sub = join(exe_dir, "plugins");
    int rc = rel && sub && add_dir(ld, rel, strlen(rel)) == 0 &&
                     add_dir(ld, exe_dir, strlen(exe_dir)) == 0 &&
                     add_dir(ld, sub, strlen(sub)) == 0
                 ? 0
                 : -1;
    free(rel);
    free(sub);
    return rc;
}

int obx_loader_init(obx_loader *ld, const char *plugin_path,
                    const char *exe_dir)
{
    static const char install_dir[] = OBX_PLUGIN_INSTALL_DIR;
    memset(ld, 0, sizeof *ld);
    ld->loaded = calloc(LOADER_CAPACITY, sizeof *ld->loaded);
    if (!ld->loaded || add_path_list(ld, plugin_path) < 0 ||
        add_dir(ld, install_dir, strlen(install_dir)) < 0 ||
        add_exe_dirs(ld, exe_dir) < 0) {
        obx_loader_free(ld);
        return -1;
    }
    return 0;
}

static void unload(obx_loaded *e)
{
    if (e->handle)
        dlclose(e->handle);
    free(e->path);
    /* desc is the plugin_copy block this loader allocated, not plugin
     * memory, hence the cast away from const. */
    free((void *)e->desc);
    memset(e, 0, sizeof *e);
}

void obx_loader_free(obx_loader *ld)
{
    for (size_t i = 0; i < ld->n_loaded; i++)
        unload(&ld->loaded[i]);
    free(ld->loaded);
    for (size_t i = 0; i < ld->n_dirs; i++)
        free(ld->dirs[i]);
    free(ld->dirs);
    memset(ld, 0, sizeof *ld);
}

/* ---- descriptor checks ---------------------------------------------- */

/* Copy the plugin's descriptor into d, reading no byte past its
 * struct_size. Checks abi_major first: another major may lay out
 * everything after the common header differently. */
static int read_desc(const load_ctx *lc, const obx_plugin *raw, obx_plugin *d)
{
    memset(d, 0, sizeof *d);
    memcpy(d, raw, offsetof(obx_plugin, kind));
    if (d->abi_major != OBX_ABI_MAJOR)
        return fail(lc,
                    "plugin %s was built for plugin ABI %u.%u, this relay "
                    "speaks ABI %d.%d",
                    lc->file, (unsigned)d->abi_major, (unsigned)d->abi_minor,
                    OBX_ABI_MAJOR, OBX_ABI_MINOR);
    if (!HAS_FIELD(obx_plugin, ops, d->struct_size))
        return fail(lc,
                    "plugin %s: descriptor struct_size %u is too small "
                    "(ABI %d.x needs at least %zu bytes)",
                    lc->file, (unsigned)d->struct_size, OBX_ABI_MAJOR,
                    FIELD_END(obx_plugin, ops));
    size_t n = d->struct_size < sizeof *d ? d->struct_size : sizeof *d;
    memcpy(d, raw, n);
    return 0;
}

static int check_kind(const load_ctx *lc, const obx_plugin *d,
                      obx_plugin_kind kind)
{
    if (d->kind != OBX_PLUGIN_STORE && d->kind != OBX_PLUGIN_BROKER)
        return fail(lc, "plugin %s declares unknown plugin kind %d", lc->file,
                    (int)d->kind);
    if (d->kind != kind)
        return fail(lc, "%s is a %s plugin, but it is used as a %s", lc->file,
                    obx_plugin_kind_name(d->kind), obx_plugin_kind_name(kind));
    return 0;
}

/* The file name is how users and the search path find a plugin, so it
 * must agree with what the descriptor says. */
static int check_name(const load_ctx *lc, const obx_plugin *d)
{
    if (!d->name || !*d->name)
        return fail(lc, "plugin %s declares no name", lc->file);
    char want[512];
    snprintf(want, sizeof want, "obx_%s_%s.so", obx_plugin_kind_name(d->kind),
             d->name);
    if (strcmp(base_name(lc->file), want) != 0)
        return fail(lc,
                    "plugin %s declares the name '%s', which differs from "
                    "its file name (expected %s)",
                    lc->file, d->name, want);
    return 0;
}

static size_t ops_min_size(const op_req *req)
{
    size_t need = 0;
    for (; req->name; req++)
        if (req->off + sizeof(void (*)(void)) > need)
            need = req->off + sizeof(void (*)(void));
    return need;
}

static bool op_is_null(const void *ops, size_t off)
{
    void (*fn)(void);
    memcpy(&fn, (const char *)ops + off, sizeof fn);
    return fn == NULL;
}

/* A flag the core does not know changes what the plugin expects of the
 * engine, so it is refused rather than ignored. 0x2 was
 * OBX_STORE_DURABLE_RETRY, which no core ever read: plugins built before
 * 1.2 may still set it. Both ops structs have flags second. */
#define OBX_STORE_FLAG_RETIRED 0x2u
static int check_flags(const load_ctx *lc, const plugin_copy *c)
{
    bool store = c->desc.kind == OBX_PLUGIN_STORE;
    uint32_t flags = store ? c->ops.store.flags : c->ops.broker.flags;
    uint32_t known = store ? OBX_STORE_FLAGS_KNOWN : OBX_BROKER_FLAGS_KNOWN;
    if (store && c->desc.abi_minor < 2)
        known |= OBX_STORE_FLAG_RETIRED;
    if ((flags & ~known) == 0)
        return 0;
    return fail(
        lc,
        "plugin %s: %s ops flags 0x%x has bits this relay does not "
        "know (0x%x; ABI %d.%d defines 0x%x)",
        lc->file, obx_plugin_kind_name(c->desc.kind), (unsigned)flags,
        (unsigned)(flags & ~known), OBX_ABI_MAJOR, OBX_ABI_MINOR,
        (unsigned)(store ? OBX_STORE_FLAGS_KNOWN : OBX_BROKER_FLAGS_KNOWN));
}

/* Check the plugin's ops struct and copy it into c->ops, zero-padded to
 * this build's size so optional ops the plugin predates read as NULL. */
static int copy_ops(const load_ctx *lc, plugin_copy *c)
{
    const char *kind = obx_plugin_kind_name(c->desc.kind);
    bool store = c->desc.kind == OBX_PLUGIN_STORE;
    const op_req *req = store ? store_required : broker_required;
    size_t full = store ? sizeof c->ops.store : sizeof c->ops.broker;
    if (!c->desc.ops)
        return fail(lc, "plugin %s has no %s ops table (ops is NULL)", lc->file,
                    kind);
    uint32_t size;
    memcpy(&size, c->desc.ops, sizeof size);
    if (size < ops_min_size(req))
        return fail(lc,
                    "plugin %s: %s ops struct_size %u is too small (the "
                    "mandatory ops need at least %zu bytes)",
                    lc->file, kind, (unsigned)size, ops_min_size(req));
    memcpy(&c->ops, c->desc.ops, size < full ? size : full);
    for (; req->name; req++)
        if (op_is_null(&c->ops, req->off))
            return fail(lc, "plugin %s: mandatory %s op '%s' is NULL", lc->file,
                        kind, req->name);
    if (check_flags(lc, c) < 0)
        return -1;
    c->ops.store.struct_size = (uint32_t)full; /* first member of both */
    c->desc.ops = &c->ops;
    return 0;
}

static const char *option_name_at(const obx_plugin *d, size_t i)
{
    const char *name;
    const char *row = (const char *)d->options + i * d->option_size;
    memcpy(&name, row + offsetof(obx_option, name), sizeof name);
    return name;
}

/* Number of rows before the terminator; the table's stride is the
 * plugin's option_size, not ours. */
static int count_options(const load_ctx *lc, const obx_plugin *d, size_t *n)
{
    *n = 0;
    if (!d->options)
        return 0; /* no options: an empty table */
    if (!HAS_FIELD(obx_option, description, d->option_size))
        return fail(lc,
                    "plugin %s: option_size %u is smaller than an option "
                    "row (at least %zu bytes)",
                    lc->file, (unsigned)d->option_size,
                    FIELD_END(obx_option, description));
    while (option_name_at(d, *n))
        if (++*n == MAX_OPTION_ROWS)
            return fail(lc,
                        "plugin %s: option table has no terminator "
                        "(more than %d rows)",
                        lc->file, MAX_OPTION_ROWS);
    return 0;
}

static void copy_options(plugin_copy *c, size_t n)
{
    size_t stride = c->desc.option_size;
    size_t take = stride < sizeof(obx_option) ? stride : sizeof(obx_option);
    for (size_t i = 0; i < n; i++)
        memcpy(&c->options[i], (const char *)c->desc.options + i * stride,
               take);
    c->desc.options = c->options;
    c->desc.option_size = sizeof(obx_option);
}

/* Bytes an option of `type` fills in the config struct; 0: unknown type. */
static size_t option_value_size(obx_opt_type type)
{
    switch (type) {
    case OBX_OPT_STRING: return sizeof(char *);
    case OBX_OPT_INT:
    case OBX_OPT_DURATION:
    case OBX_OPT_SIZE: return sizeof(int64_t);
    case OBX_OPT_BOOL: return sizeof(bool);
    case OBX_OPT_ENUM: return sizeof(int);
    case OBX_OPT_LIST: return sizeof(obx_list);
    case OBX_OPT_PREFIX: return sizeof(obx_kvlist);
    case OBX_OPT_RANGE: return sizeof(obx_range);
    }
    return 0;
}

/* The core writes config values at these offsets, so a bad row would be
 * memory corruption later: refuse it now, naming the option. */
static int check_option(const load_ctx *lc, const obx_plugin *d,
                        const obx_option *o)
{
    size_t size = option_value_size(o->type);
    if (size == 0)
        return fail(lc, "plugin %s: option '%s' has unknown type %d", lc->file,
                    o->name, (int)o->type);
    if (o->offset > d->config_size || size > d->config_size - o->offset)
        return fail(lc,
                    "plugin %s: option '%s' at offset %zu does not fit "
                    "its %zu-byte config struct",
                    lc->file, o->name, o->offset, d->config_size);
    if (o->type == OBX_OPT_ENUM && !o->enum_values)
        return fail(lc, "plugin %s: enum option '%s' has no values", lc->file,
                    o->name);
    return 0;
}

static int check_options(const load_ctx *lc, const plugin_copy *c)
{
    for (const obx_option *o = c->options; o->name; o++)
        if (check_option(lc, &c->desc, o) < 0)
            return -1;
    return 0;
}

/* Validate the plugin's descriptor and return the loader-owned copy, or
 * NULL with the error filled. */
static plugin_copy *validate(const load_ctx *lc, const obx_plugin *raw,
                             obx_plugin_kind kind)
{
    obx_plugin d;
    size_t n;
    if (read_desc(lc, raw, &d) < 0 || check_kind(lc, &d, kind) < 0 ||
        check_name(lc, &d) < 0 || count_options(lc, &d, &n) < 0)
        return NULL;
    plugin_copy *c = calloc(1, sizeof *c + (n + 1) * sizeof(obx_option));
    if (!c) {
        fail(lc, "plugin %s: out of memory", lc->file);
        return NULL;
    }
    c->desc = d;
    c->desc.struct_size = sizeof c->desc; /* the copy has every field */
    copy_options(c, n);
    if (copy_ops(lc, c) < 0 || check_options(lc, c) < 0) {
        free(c);
        return NULL;
    }
    if (!c->desc.description)
        c->desc.description = "";
    if (!c->desc.version)
        c->desc.version = "";
    return c;
}

/* ---- loading -------------------------------------------------------- */

static const obx_plugin *call_entry(const load_ctx *lc, void *handle)
{
    dlerror();
    void *sym = dlsym(handle, OBX_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        fail(lc,
             "plugin %s has no %s symbol (not an outbox-relay plugin, or "
             "built without OBX_STORE_PLUGIN/OBX_BROKER_PLUGIN)",
             lc->file, OBX_PLUGIN_ENTRY_SYMBOL);
        return NULL;
    }
    obx_plugin_entry_fn fn = (obx_plugin_entry_fn)(uintptr_t)sym;
    const obx_plugin *raw = fn();
    if (!raw)
        fail(lc, "plugin %s: %s() returned NULL", lc->file,
             OBX_PLUGIN_ENTRY_SYMBOL);
    return raw;
}

static int fail_dlopen(const load_ctx *lc, const char *resolved)
{
    const char *msg = dlerror();
    size_t n = strlen(resolved);
    if (!msg)
        msg = "unknown error";
    /* dlerror usually starts with "path: "; don't name the file twice. */
    if (strncmp(msg, resolved, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
        msg += n + 2;
    return fail(lc, "cannot load plugin %s: %s", lc->file, msg);
}

static const obx_loaded *find_path(const obx_loader *ld, const char *path)
{
    for (size_t i = 0; i < ld->n_loaded; i++)
        if (strcmp(ld->loaded[i].path, path) == 0)
            return &ld->loaded[i];
    return NULL;
}

/* dlopen returns the same handle for another path to one file (a hard
 * link, a bind mount): that is the same plugin, not a duplicate. */
static const obx_loaded *find_handle(const obx_loader *ld, void *handle)
{
    for (size_t i = 0; i < ld->n_loaded; i++)
        if (ld->loaded[i].handle == handle)
            return &ld->loaded[i];
    return NULL;
}

static int check_unique(const obx_loader *ld, const load_ctx *lc,
                        const obx_plugin *d)
{
    for (size_t i = 0; i < ld->n_loaded; i++) {
        const obx_plugin *o = ld->loaded[i].desc;
        if (o->kind == d->kind && strcmp(o->name, d->name) == 0)
            return fail(lc, "two plugins named '%s': %s and %s", d->name,
                        ld->loaded[i].path, lc->file);
    }
    return 0;
}

/* Validate a freshly dlopen'ed file into e->desc. */
static int admit(const obx_loader *ld, const load_ctx *lc, obx_loaded *e,
                 obx_plugin_kind kind)
{
    const obx_plugin *raw = call_entry(lc, e->handle);
    if (!raw)
        return -1;
    plugin_copy *c = validate(lc, raw, kind);
    if (!c)
        return -1;
    e->desc = &c->desc;
    return check_unique(ld, lc, e->desc);
}

static int reuse(const load_ctx *lc, const obx_loaded *hit,
                 obx_plugin_kind kind, const obx_loaded **out)
{
    if (hit->desc->kind != kind)
        return fail(lc, "%s is a %s plugin, but it is used as a %s", lc->file,
                    obx_plugin_kind_name(hit->desc->kind),
                    obx_plugin_kind_name(kind));
    *out = hit;
    return 0;
}

static int load_file(obx_loader *ld, const load_ctx *lc, obx_plugin_kind kind,
                     const obx_loaded **out)
{
    obx_loaded e = {0};
    if (!(e.path = realpath(lc->file, NULL)))
        return fail(lc, "plugin file %s: %s", lc->file, strerror(errno));
    const obx_loaded *hit = find_path(ld, e.path);
    if (!hit && !(e.handle = dlopen(e.path, RTLD_NOW | RTLD_LOCAL))) {
        int rc = fail_dlopen(lc, e.path);
        free(e.path);
        return rc;
    }
    if (!hit)
        hit = find_handle(ld, e.handle);
    if (hit) {
        unload(&e); /* drops only our extra reference */
        return reuse(lc, hit, kind, out);
    }
    if (ld->n_loaded == LOADER_CAPACITY) {
        unload(&e);
        return fail(lc, "plugin %s: too many plugins loaded (at most %d)",
                    lc->file, LOADER_CAPACITY);
    }
    if (admit(ld, lc, &e, kind) < 0) {
        unload(&e);
        return -1;
    }
    ld->loaded[ld->n_loaded] = e;
    *out = &ld->loaded[ld->n_loaded++];
    return 0;
}

static void not_found(const obx_loader *ld, const char *name, const char *fname,
                      obx_plugin_kind kind, char *err, size_t errlen)
{
    if (!err || errlen == 0)
        return;
    snprintf(err, errlen, "%s plugin '%s' not found: no %s in ",
             obx_plugin_kind_name(kind), name, fname);
    if (ld->n_dirs == 0)
        appendf(err, errlen, "(the plugin search path is empty)");
    for (size_t i = 0; i < ld->n_dirs; i++)
        appendf(err, errlen, "%s%s", i ? ", " : "", ld->dirs[i]);
}

/* The file to load for name_or_path (malloc'd), or NULL with err. */
static char *locate(const obx_loader *ld, const char *name,
                    obx_plugin_kind kind, char *err, size_t errlen)
{
    load_ctx lc = {name, err, errlen};
    if (strchr(name, '/') || has_suffix(name, ".so")) {
        char *p = strdup(name);
        if (!p)
            fail(&lc, "plugin %s: out of memory", name);
        return p;
    }
    char fname[512];
    snprintf(fname, sizeof fname, "obx_%s_%s.so", obx_plugin_kind_name(kind),
             name);
    for (size_t i = 0; i < ld->n_dirs; i++) {
        char *p = join(ld->dirs[i], fname);
        if (!p || access(p, F_OK) == 0) {
            if (!p)
                fail(&lc, "plugin %s: out of memory", name);
            return p;
        }
        free(p);
    }
    not_found(ld, name, fname, kind, err, errlen);
    return NULL;
}

int obx_loader_get(obx_loader *ld, const char *name_or_path,
                   obx_plugin_kind kind, const obx_loaded **out, char *err,
                   size_t errlen)
{
    load_ctx lc = {name_or_path, err, errlen};
    if (!name_or_path || !*name_or_path)
        return fail(&lc, "empty %s plugin name", obx_plugin_kind_name(kind));
    if (kind != OBX_PLUGIN_STORE && kind != OBX_PLUGIN_BROKER)
        return fail(&lc, "plugin %s: unknown plugin kind %d", name_or_path,
                    (int)kind);
    char *file = locate(ld, name_or_path, kind, err, errlen);
    if (!file)
        return -1;
    lc.file = file;
    int rc = load_file(ld, &lc, kind, out);
    free(file);
    return rc;
}

/* ---- scan ----------------------------------------------------------- */

typedef struct scan_state {
    obx_loader *ld;
    void (*cb)(void *ctx, const obx_loaded *p);
    void (*bad)(void *ctx, const char *path, const char *err);
    void *ctx;
    char **names; /* file names met so far, and the path that won each */
    char **paths;
    size_t n;
} scan_state;

static void report(const scan_state *st, const char *path, const char *err)
{
    if (st->bad)
        st->bad(st->ctx, path, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int push_str(char ***v, size_t n, const char *s)
{
    char *copy = strdup(s);
    char **grown = copy ? realloc(*v, (n + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return -1;
    }
    grown[n] = copy;
    *v = grown;
    return 0;
}

/* The obx_*.so names in dir, sorted so output is stable. A directory that
 * cannot be opened (e.g. no install dir in a build tree) has none. */
static int list_plugin_files(const char *dir, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)))
        if (strncmp(de->d_name, "obx_", 4) == 0 &&
            has_suffix(de->d_name, ".so") &&
            (rc = push_str(out, *n, de->d_name)) == 0)
            ++*n;
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_str);
    return rc;
}

static const char *winner_of(const scan_state *st, const char *fname)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->names[i], fname) == 0)
            return st->paths[i];
    return NULL;
}

static int remember(scan_state *st, const char *fname, const char *path)
{
    if (push_str(&st->names, st->n, fname) < 0)
        return -1;
    if (push_str(&st->paths, st->n, path) < 0) {
        free(st->names[st->n]);
        return -1;
    }
    st->n++;
    return 0;
}

static bool same_file(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb && strcmp(ra, rb) == 0;
    free(ra);
    free(rb);
    return same;
}

static void report_shadowed(const scan_state *st, const char *path,
                            const char *winner)
{
    if (same_file(path, winner))
        return; /* one directory reached twice, e.g. through a symlink */
    char err[1024];
    snprintf(err, sizeof err,
             "%s is shadowed by %s, which comes first in the plugin path", path,
             winner);
    report(st, path, err);
}

static void scan_load(scan_state *st, const char *path, const char *fname)
{
    char err[1024];
    load_ctx lc = {path, err, sizeof err};
    obx_plugin_kind kind;
    if (strncmp(fname, "obx_store_", 10) == 0)
        kind = OBX_PLUGIN_STORE;
    else if (strncmp(fname, "obx_broker_", 11) == 0)
        kind = OBX_PLUGIN_BROKER;
    else {
        fail(&lc,
             "%s is not named obx_store_<name>.so or "
             "obx_broker_<name>.so",
             path);
        report(st, path, err);
        return;
    }
    const obx_loaded *e;
    if (load_file(st->ld, &lc, kind, &e) < 0)
        report(st, path, err);
    else if (st->cb)
        st->cb(st->ctx, e);
}

static void scan_file(scan_state *st, const char *dir, const char *fname)
{
    char *path = join(dir, fname);
    if (!path) {
        report(st, dir, "out of memory");
        return;
    }
    const char *winner = winner_of(st, fname);
    if (winner)
        report_shadowed(st, path, winner);
    else if (remember(st, fname, path) < 0)
        report(st, path, "out of memory");
    else
        scan_load(st, path, fname);
    free(path);
}

static void scan_dir(scan_state *st, const char *dir)
{
    char **names;
    size_t n;
    if (list_plugin_files(dir, &names, &n) < 0)
        report(st, dir, "out of memory");
    for (size_t i = 0; i < n; i++)
        scan_file(st, dir, names[i]);
    free_strs(names, n);
}

void obx_loader_scan(obx_loader *ld, void (*cb)(void *ctx, const obx_loaded *p),
                     void (*bad)(void *ctx, const char *path, const char *err),
                     void *ctx)
{
    scan_state st = {.ld = ld, .cb = cb, .bad = bad, .ctx = ctx};
    for (size_t i = 0; i < ld->n_dirs; i++)
        scan_dir(&st, ld->dirs[i]);
    free_strs(st.names, st.n);
    free_strs(st.paths, st.n);
}
