/* device.h: the lifecycle every device model implements.
 *
 * realize: claim bus ranges, IRQs, eventfds (called once, before vCPUs run)
 * reset:   return to power-on state (guest reset)
 * save:    append the device's state (section version first)
 * load:    restore from a stream written by save; -EINVAL on bad input
 * destroy: release everything realize and the creator acquired, free the device
 */
#pragma once
#include "compiler.h"

struct vm;
struct device;
struct state_writer;
struct state_reader;

struct device_ops {
	const char *type; /* "uart16550", "virtio-blk", ... */
	int (*realize)(struct device *dev, struct vm *vm);
	void (*reset)(struct device *dev);
	int (*save)(struct device *dev, struct state_writer *w);
	int (*load)(struct device *dev, struct state_reader *r);
	void (*destroy)(struct device *dev);
	/* Optional, on the main thread just before the vCPUs start (boot,
	 * restore, incoming migration): take what the device's back end has
	 * pending before the guest can act, e.g. a console client whose
	 * connect the I/O loop has not accepted yet. */
	void (*prerun)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	char id[32];          /* unique per VM, e.g. "blk0" */
	struct device *next;  /* vm's device list, in creation order */
};
