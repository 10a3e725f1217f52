/* outbox-relay plugin ABI version.
 *
 * abi_major changes only when a released struct changes shape or meaning;
 * the core refuses a plugin built against another major. abi_minor grows
 * when fields are appended to a struct; every such struct starts with
 * struct_size so either side can tell which fields the other one has.
 */
#ifndef OUTBOX_VERSION_H
#define OUTBOX_VERSION_H

#define OBX_ABI_MAJOR 1
#define OBX_ABI_MINOR 1

#define OBX_RELAY_VERSION "0.1.0"

#endif
