/* limits.h: the limits of a VM configuration, written once for cella-vm (its
 * flags and JSON file), cellad (VM definitions) and the cella CLI. */
#pragma once

#define CONF_MAX_CPUS      32
#define CONF_MIN_MEM_MIB   8
#define CONF_MAX_MEM_MIB   (1024 * 1024)     /* 1 TiB */
#define CONF_CMDLINE_MAX   2048              /* bytes of the user's command line */
#define CONF_MAX_DISKS     16
#define CONF_MAX_NICS      8
#define CONF_PATH_MAX      1024              /* a disk image's path */
#define CONF_DISK_ID_MAX   20                /* VIRTIO_BLK_ID_BYTES */
#define CONF_TAP_NAME_MAX  15                /* IFNAMSIZ - 1 */
#define CONF_QOS_MAX       (1ULL << 40)      /* upper bound of every QoS figure */
#define CONF_MAX_DEVICES   32                /* --device / "devices" entries */
#define CONF_VIRTIO_IRQS   19                /* interrupt lines for virtio devices (GSI 5-23) */
