/* config.h: a VM's configuration, from a JSON file and/or command-line flags.
 * Everything is validated by config_validate() before any VM is created. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

#define CONFIG_MAX_DISKS 16
#define CONFIG_MAX_NETS  8
#define CONFIG_MAX_CPUS  32

/* Storage QoS of one disk (vmm/backend/qos.h); 0 = unlimited, a burst of 0
 * the default (100 ms worth of the rate). IOPS are normalized to 8 KiB. */
struct disk_qos_config {
	uint64_t iops, iops_burst;
	uint64_t bps, bps_burst;
};

#define CONFIG_QOS_MAX (1ULL << 48) /* upper bound of every QoS figure */

struct disk_config {
	char *path;
	bool readonly;
	char id[21]; /* VIRTIO_BLK_ID_BYTES; "" = derive from the index */
	char format[8]; /* "" = probe, "raw" or "qcow2" */
	struct disk_qos_config qos;
	bool cbt;       /* changed-block tracking in PATH.cbt (disk/cbt.h) */
};

struct net_config {
	char *tap;       /* host tap interface name */
	uint8_t mac[6];
	bool has_mac;    /* false: a stable MAC is derived from the tap name */
};

enum console_kind { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_UNIX, CONSOLE_NONE };

struct vm_config {
	char *kernel;
	char *initrd;
	char *cmdline;
	unsigned cpus;
	uint64_t mem_mib;
	struct disk_config disks[CONFIG_MAX_DISKS];
	unsigned nr_disks;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned nr_nets;
	bool rng;
	enum console_kind console;
	char *console_path; /* file or socket path */
	/* Carry out in the VMM the instructions KVM cannot emulate (hosts
	 * without hardware virtualization). Off: such an instruction stops the
	 * VM, and the decoder library is never loaded. */
	bool emulation_fallback;
	/* What an instruction neither KVM nor the VMM can carry out does: pause
	 * the VM (kept for inspection; cella-vm does this when a control socket
	 * serves it) or end it with status 10. Not a JSON key: set by the worker. */
	bool pause_on_unhandled;
};

void config_init(struct vm_config *c);
void config_free(struct vm_config *c);

/* Merge a JSON config file into c. On error returns -EINVAL and writes
 * "key: reason" into err. */
int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen) __must_check;
/* Same for an in-memory JSON document (used by the fuzzer and unit tests). */
int config_load_json_text(struct vm_config *c, const char *text, size_t len, char *err,
			  size_t errlen) __must_check;

/* Parse "PATH[,ro][,id=ID][,format=raw|qcow2][,iops=N][,iops_burst=N][,bps=N]
 * [,bps_burst=N][,cbt=on|off]" and "tap=NAME[,mac=aa:bb:..]" option strings. */
int config_add_disk(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;
int config_add_net(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;
int config_set_console(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;

/* Parse one QoS key ("iops", "iops_burst", "bps", "bps_burst") with its
 * value into q (shared by the option string, JSON and the control socket's
 * set-qos). Returns 0, -ENOENT for an unknown key, -EINVAL for a bad value. */
int config_disk_qos_set(struct disk_qos_config *q, const char *key, uint64_t v) __must_check;

/* Check ranges and that files exist and are readable. */
int config_validate(const struct vm_config *c, char *err, size_t errlen) __must_check;
