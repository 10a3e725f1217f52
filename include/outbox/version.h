/* outbox-relay plugin ABI version.
 *
 * abi_major changes only when a released struct changes shape or meaning;
 * the core refuses a plugin built against another major. abi_minor grows
 * when members are appended to a struct that starts with struct_size
 * (see abi.h); a core of minor N loads plugins of every minor, older ones
 * because it reads past their struct_size as absent, newer ones because it
 * reads only the members it knows.
 *
 * What each minor added (every member in the headers says "since 1.x"):
 *   1.0  the first release.
 *   1.1  obx_host.retry_max_delay_ms, obx_store_stats.standby.
 *   1.2  obx_store_ops.schema_v2 (schema with an error buffer); option
 *        bounds INT64_MIN..INT64_MAX read as "no bounds" (OBX_NO_BOUNDS);
 *        the loader refuses unknown bits in obx_store_ops.flags and any
 *        bit in obx_broker_ops.flags; OBX_STORE_DURABLE_RETRY (0x2, never
 *        read by any core) was removed, and is still accepted from 1.0 and
 *        1.1 plugins.
 *   1.3  obx_store_ops.claim_ahead (claim past this instance's own
 *        unsettled events, so claim_ahead pays with an ordered store).
 *
 * Structs passed as arrays, or embedded in one, cannot grow within ABI 1
 * (the stride is part of the contract and they carry no struct_size):
 * obx_event, obx_position, obx_header, obx_result, obx_release,
 * obx_burial, obx_dead_letter, obx_list, obx_kv, obx_kvlist, obx_range.
 * They change only with a new abi_major. obx_option is an array too, but
 * the descriptor carries its stride (option_size), so it can grow.
 */
#ifndef OUTBOX_VERSION_H
#define OUTBOX_VERSION_H

#define OBX_ABI_MAJOR 1
#define OBX_ABI_MINOR 3

#define OBX_RELAY_VERSION "0.1.0"

#endif
