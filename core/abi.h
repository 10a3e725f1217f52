/* Reading plugin structs that may be older (smaller) than ours: a field
 * past the plugin's struct_size is absent, as with sqlite3_vfs.iVersion. */
#ifndef OBX_CORE_ABI_H
#define OBX_CORE_ABI_H

#include <stddef.h>

/* True when `field` lies inside the struct the plugin declared. */
#define OBX_HAS_FIELD(ptr, type, field)                                        \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

/* True when the optional op exists and is set. */
#define OBX_HAS_OP(ptr, type, field)                                           \
    (OBX_HAS_FIELD(ptr, type, field) && (ptr)->field != NULL)

#endif
