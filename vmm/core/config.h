/* config.h: a VM's configuration, from a JSON file and/or command-line flags.
 * Everything is validated by config_validate() before any VM is created. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "conf/disk.h"   /* struct disk_config, struct disk_qos_config */
#include "conf/limits.h"
#include "conf/memory.h" /* struct mem_backing_config */

/* The limits are the shared schema's (conf/limits.h). */
#define CONFIG_MAX_DISKS CONF_MAX_DISKS
#define CONFIG_MAX_NETS  CONF_MAX_NICS
#define CONFIG_MAX_CPUS  CONF_MAX_CPUS
#define CONFIG_QOS_MAX   CONF_QOS_MAX

struct net_config {
	char *tap;       /* host tap interface name */
	char *tap_fd;    /* "fd:N": that tap, attached by the caller (cellad); with queues > 1
			  * "fd:N+fd:M+...", one queue each (queue 0 first); NULL: open by name */
	uint8_t mac[6];
	bool has_mac;    /* false: a stable MAC is derived from the tap name */
	unsigned mtu;    /* offered with VIRTIO_NET_F_MTU; 0: 1500 */
	unsigned vlan;   /* 1..4094: access VLAN the worker tags and filters; 0 none */
	bool vlan_trunk; /* vlan=trunk: tags pass untouched */
	unsigned queues; /* queue pairs (tap queues, VIRTIO_NET_F_MQ); 0 or 1: one */
	char *passt_fd;  /* "fd:N": a connected stream socket to passt instead of a tap */
};

enum console_kind { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_UNIX, CONSOLE_NONE };

/* A device of the generic list (--device TYPE,k=v..., JSON "devices"): its
 * registered type (vmm/core/devtype.h) and the struct its type's schema
 * filled (type->config_size bytes). */
struct device_type;
struct device_config {
	const struct device_type *type;
	void *cfg;
};

struct kvm_cpuid2;
struct vm_prep;

struct vm_config {
	char *kvm;    /* /dev/kvm as "fd:N" (cellad passes it) or a path; NULL: /dev/kvm.
		       * Not a JSON key: --kvm. */
	char *userfaultfd; /* /dev/userfaultfd for a restore (mem_uffd.h), as "fd:N" (cellad
			    * passes it) or a path; NULL: the node, then the system call.
			    * Not a JSON key: --userfaultfd. */
	int standby_vm_fd; /* > 0: a VM a standby worker made with KVM_CREATE_VM before
			    * its request (vmm/standby.c), which vm_create takes; 0: none.
			    * Not a JSON key or option. */
	struct vm_prep *standby_prep; /* a standby worker's VM prepared for a RAM size
				       * (vm_prep.h): vm_create takes it when the
				       * configuration fits, else releases it; NULL:
				       * none. Not a JSON key or option. */
	const struct kvm_cpuid2 *standby_cpuid; /* KVM_GET_SUPPORTED_CPUID, asked by the
						 * standby worker (vm_create copies it);
						 * NULL: none */
	char *kernel;
	char *initrd;
	char *cmdline;
	unsigned cpus;
	/* vCPU hot-plug (docs/guests.md): the most vCPUs a running VM may be
	 * given through ACPI (needs acpi); 0 or cpus: none. */
	unsigned cpus_max;
	uint64_t mem_mib;
	struct mem_backing_config memory; /* JSON "memory": merge, hugepages, prealloc */
	struct disk_config disks[CONFIG_MAX_DISKS];
	unsigned nr_disks;
	/* A live migration's destination (--incoming; not a JSON key): disk
	 * images open without their lock until the VM has arrived and the
	 * source has let go of them (virtio_blk_take_locks). */
	bool defer_disk_locks;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned nr_nets;
	bool rng;
	/* ACPI tables for the guest (docs/guests.md, "ACPI"): on by default;
	 * the MP table is always written too. Off (or a Linux command line with
	 * acpi=off): a Linux guest uses the MP table and gets its virtio-mmio
	 * devices on the command line. */
	bool acpi;
	struct device_config devices[CONF_MAX_DEVICES];
	unsigned nr_devices;
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
/* vCPUs the VM may have: cpus_max when above cpus, else cpus. */
unsigned config_cpus_possible(const struct vm_config *c);
void config_free(struct vm_config *c);

/* Merge a JSON config file (a path, or "fd:N" open for reading) into c. On
 * error returns -EINVAL and writes "key: reason" into err. */
int config_load_json(struct vm_config *c, const char *path, char *err, size_t errlen) __must_check;
/* Same for an in-memory JSON document (used by the fuzzer and unit tests). */
int config_load_json_text(struct vm_config *c, const char *text, size_t len, char *err,
			  size_t errlen) __must_check;

/* Parse "PATH[,ro][,id=ID][,format=raw|qcow2][,iops=N][,iops_burst=N][,bps=N]
 * [,bps_burst=N][,cbt=on|off]" and "tap=NAME[,tap_fd=fd:N][,mac=aa:bb:..]"
 * option strings. */
int config_add_disk(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;
int config_add_net(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;
int config_set_console(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;
/* Parse "TYPE[,key=value...]" for a registered device type that takes its
 * configuration from the generic list (--device). */
int config_add_device(struct vm_config *c, const char *spec, char *err, size_t errlen) __must_check;

/* Parse one QoS key ("iops", "iops_burst", "bps", "bps_burst") with its
 * value into q (shared by the option string, JSON and the control socket's
 * set-qos). Returns 0, -ENOENT for an unknown key, -EINVAL for a bad value. */
int config_disk_qos_set(struct disk_qos_config *q, const char *key, uint64_t v) __must_check;

/* Check ranges, that files exist and are readable, and that the devices
 * fit the machine (interrupt lines, MMIO windows, queues; devtype.h). */
int config_validate(const struct vm_config *c, char *err, size_t errlen) __must_check;
