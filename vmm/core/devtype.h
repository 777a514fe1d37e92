/* devtype.h: device types register themselves; the VM core knows none by
 * name.
 *
 * Each type declares what the core needs to validate a configuration and
 * build a VM from it: its name, how many instances the configuration asks
 * for (or the keys of its entries in the generic device list), the
 * resources each instance takes (interrupt lines, virtio-mmio windows,
 * queues), how to create one, and optional hooks: control-socket commands,
 * a member of the status reply, a check before `resume`, and a graceful
 * shutdown request. The registry (device_types[]) is generated from the one
 * list in vmm/meson.build, in creation order (which fixes each device's GSI
 * and MMIO window). Adding a device: docs/architecture.md.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"

struct vm;
struct vm_config;
struct device;
struct conf_schema;

enum devtype_transport {
	DEVTYPE_PLATFORM,    /* fixed ports and IRQs of the PC platform */
	DEVTYPE_VIRTIO_MMIO, /* a struct virtio_dev on its own virtio-mmio window */
};

/* A control-socket command a device type contributes ({"cmd": name, ...}).
 * Served on the I/O thread, only once the VM has been started. With
 * DEVTYPE_CMD_FILE the control socket first opens the file the request
 * names ({"path": P} or an attached {"fd": N}) read-write and passes it as
 * fd (the handler owns it); otherwise fd is -1. Returns the reply. */
struct devtype_command {
	const char *name;
	json_t *(*run)(struct vm *vm, json_t *req, int fd);
	unsigned flags;
};
#define DEVTYPE_CMD_FILE (1u << 0)
#define DEVTYPE_CMD_NOT_MIGRATING (1u << 1) /* refused while a migration runs */
/* A command's failure reply: {"ok": false, "error": the formatted message
 * (at most 255 bytes)}. */
json_t *devtype_cmd_error(const char *fmt, ...) __printf(1, 2);

struct device_type {
	const char *name;          /* ops->type of its devices; --device NAME */
	enum devtype_transport transport;
	unsigned max_instances;
	unsigned nr_queues;        /* virtqueues of each instance */
	unsigned gsis;             /* interrupt lines each takes from GSI 5-23 */
	unsigned mmio_windows;     /* 4 KiB virtio-mmio windows each takes */
	/* A state saved by a cella-vm that had no such device loads without
	 * its section: the device stays as created (a platform device added
	 * later, whose reset state is what the older VM's guest saw). */
	bool state_optional;
	/* Instances the configuration asks for. NULL: the entries of this type
	 * in the generic device list (cfg->devices). */
	unsigned (*count)(const struct vm_config *cfg);
	/* Create instance `index`; `config` is its generic-list entry's struct
	 * (NULL for types with count). 0 or -errno, logged. */
	int (*create)(struct vm *vm, unsigned index, const void *config) __must_check;
	/* Generic-list entries: the keys and the struct they fill. */
	const struct conf_schema *config_schema;
	size_t config_size;

	/* Optional hooks. */
	const struct devtype_command *commands; /* ends with a NULL name */
	const char *status_key;                 /* member of `status` ... */
	json_t *(*status)(struct vm *vm);       /* ... and its value */
	/* Before `resume`: false, with the reason, keeps the VM paused. */
	bool (*before_resume)(struct vm *vm, char *why, size_t len);
	/* Before `save` and `migrate`: false, with the reason, refuses them
	 * (virtio-blk: a live export runs). */
	bool (*may_save)(struct vm *vm, char *why, size_t len);
	/* Guest-physical memory an instance reserves above RAM (virtio-mem's
	 * hot-pluggable region), in bytes (a multiple of 2 MiB), from its
	 * generic-list `config`; the core adds it to the VM's memory before
	 * any device exists. At most one instance in a VM may reserve. */
	uint64_t (*mem_region)(const struct vm_config *cfg, const void *config);
	/* Ask the guest to shut down: 0, -EBUSY if one is pending. */
	int (*request_shutdown)(struct device *dev);
};

/* The registry (generated: devtypes.c), in creation order. */
extern const struct device_type *const device_types[];
extern const unsigned nr_device_types;

const struct device_type *devtype_find(const char *name);
/* The type of a created device (by its ops->type). */
const struct device_type *devtype_of(const struct device *dev);
/* A count for types every VM has once (the PC platform devices). */
unsigned devtype_count_one(const struct vm_config *cfg);
/* Instances of t the configuration asks for. */
unsigned devtype_count(const struct device_type *t, const struct vm_config *cfg);
/* "virtio-console" ...: the types --device takes, for messages. */
void devtype_config_names(char *buf, size_t len);

/* Whether the configuration's devices fit the machine: interrupt lines,
 * virtio-mmio windows, queues per device. 0, or -EINVAL with the reason
 * naming what ran out ("too many devices: 20 need an interrupt line, 19 are
 * available (GSI 5-23)"). */
int devtypes_check(const struct vm_config *cfg, char *err, size_t errlen) __must_check;
/* Create every configured device, type by type in registry order. */
int devtypes_create(struct vm *vm) __must_check;
