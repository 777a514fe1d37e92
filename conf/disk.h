/* disk.h: the disk specification of a VM configuration (virtio-blk): one
 * schema for cella-vm's --disk flag and JSON file, cellad's definitions and
 * the CLI's --disk. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "conf/limits.h"
#include "conf/schema.h"

/* Storage QoS of one disk (vmm/backend/qos.h); 0 = unlimited, a burst of 0
 * the default (100 ms worth of the rate). IOPS are normalized to 8 KiB. */
struct disk_qos_config {
	uint64_t iops, iops_burst;
	uint64_t bps, bps_burst;
};

/* A disk's backing chain given to cella-vm as descriptors (cellad opened
 * and checked each file beneath its storage location): fd[i] is link i + 1,
 * name[i] the backing name its upper image gave when cellad checked it. */
#define CONF_MAX_BACKING 63
struct disk_backing_fds {
	unsigned nr;
	int fd[CONF_MAX_BACKING];
	char *name[CONF_MAX_BACKING];
};

struct disk_config {
	char *path;
	bool readonly;
	char id[CONF_DISK_ID_MAX + 1]; /* "" = derive from the index */
	char format[8]; /* "" = probe, "raw" or "qcow2" */
	struct disk_qos_config qos;
	bool cbt;       /* changed-block tracking in PATH.cbt (disk/cbt.h) */
	/* cella-vm's configuration from cellad only, not schema keys (JSON
	 * "backing": [{"fd": N, "name": S}...], "cbt_file": "fd:N"): with a
	 * path "fd:N", the chain and the tracking file as descriptors too. */
	struct disk_backing_fds *backing; /* NULL: opened by name */
	char *cbt_file;                   /* NULL: PATH.cbt */
};

/* path (positional in option strings), readonly (words ro, rw), id,
 * format, qos {iops, iops_burst, bps, bps_burst} (flat in option strings),
 * cbt. */
extern const struct conf_schema conf_disk_schema;
extern const struct conf_schema conf_qos_schema;

/* Set one QoS key ("iops", "iops_burst", "bps", "bps_burst"). Returns 0,
 * -ENOENT for an unknown key, -EINVAL for a value above CONF_QOS_MAX. */
int conf_qos_set(struct disk_qos_config *q, const char *key, uint64_t v) __must_check;
/* The rule across the QoS keys: a burst needs its rate. false and the
 * reason in buf otherwise. */
bool conf_qos_valid(const struct disk_qos_config *q, char *buf, size_t len);
