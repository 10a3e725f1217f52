/* Reading a struct that the other side may have built against an older
 * (smaller) or newer (larger) ABI minor.
 *
 * Every struct that can grow within ABI 1 begins with uint32_t
 * struct_size, set by whoever allocated it to sizeof at *their* build, and
 * grows only by appending members (as sqlite3_vfs grows with iVersion). A
 * member lies past the end of an older struct when its end offset exceeds
 * struct_size; such a member is absent and must not be read.
 *
 * Who checks what:
 *  - the core checks every plugin struct it reads (obx_plugin, the ops,
 *    option rows): the loader copies them into structs of the core's size,
 *    zero-filled, so the engine never meets a short one;
 *  - a plugin checks what the core lends it: obx_host (the core may be
 *    older than the plugin's headers) and obx_store_stats (filled by the
 *    plugin, allocated by the core). Members marked "since 1.0" are always
 *    there: the core refuses nothing older.
 *
 *     if (OBX_HAS_FIELD(host, obx_host, retry_max_delay_ms))
 *         window_check(host->retry_max_delay_ms);
 */
#ifndef OUTBOX_ABI_H
#define OUTBOX_ABI_H

#include <stddef.h>

/* True when `field` lies inside the struct `ptr` points to, whose
 * struct_size was set by the side that allocated it. */
#define OBX_HAS_FIELD(ptr, type, field)                                        \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

/* True when the optional function pointer `field` exists and is set. */
#define OBX_HAS_OP(ptr, type, field)                                           \
    (OBX_HAS_FIELD(ptr, type, field) && (ptr)->field != NULL)

#endif
