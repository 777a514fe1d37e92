/* mmio.h: the virtio-mmio (version 2) transport and the state every virtio
 * device shares: registers, feature negotiation, queues, interrupts, and the
 * error policy for guests that break the ring rules.
 *
 * Threading. The MMIO handler runs on vCPU threads and only touches
 * registers: a QueueNotify write signals the queue's kick eventfd (KVM's
 * ioeventfd does the same without an exit). Queue processing runs on the
 * VM's I/O thread (evloop), in the kick callback, which calls
 * ops->queue_notify. One mutex (vd->lock) serialises the two, so a reset
 * from a vCPU never races with a chain being processed.
 *
 * Error policy. When the guest breaks the ring rules the device calls
 * virtio_dev_fail(): it sets DEVICE_NEEDS_RESET, raises a configuration
 * change interrupt, logs once and stops processing until the driver resets
 * the device. Nothing else in the VMM is affected.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "device.h"
#include "virtio/virtq.h"

struct vm;
struct state_writer;
struct state_reader;
struct virtio_dev;

#define VIRTIO_MMIO_VENDOR    0x4c4c4543 /* "CELL" */
#define VIRTIO_MAX_QUEUES     8 /* per device; each type declares its own count (devtype.h) */
#define VIRTIO_CONFIG_MAX     64

/* What a device model adds to the transport. Every callback except destroy
 * and realize runs with vd->lock held. */
struct virtio_dev_ops {
	/* Process queue q (I/O thread). Called only when the driver set
	 * DRIVER_OK, the queue is ready and the device is not broken. */
	void (*queue_notify)(struct virtio_dev *vd, unsigned q);
	/* Device-specific reset: drop in-flight work (status written 0). */
	void (*reset)(struct virtio_dev *vd);
	/* Extra realize steps (evloop watches); vd->lock not held. */
	int (*realize)(struct virtio_dev *vd);
	/* The driver wrote len bytes at offset off of the configuration
	 * space (NULL: such writes are ignored). */
	void (*config_write)(struct virtio_dev *vd, uint32_t off, const uint8_t *data,
			     uint32_t len);
	/* Quiesce before save (e.g. wait for in-flight disk I/O). */
	void (*quiesce)(struct virtio_dev *vd);
	/* Device-specific section after the transport's. */
	int (*save)(struct virtio_dev *vd, struct state_writer *w);
	int (*load)(struct virtio_dev *vd, struct state_reader *r);
	/* Release the device's own resources; vd->lock not held. The
	 * transport frees vd afterwards. */
	void (*destroy)(struct virtio_dev *vd);
};

struct virtio_dev {
	struct device dev;          /* first: the VM's device list links this */
	const struct virtio_dev_ops *ops;
	const char *name;           /* "virtio-blk0", for messages (points at name_buf) */
	struct vm *vm;
	pthread_mutex_t lock;

	uint32_t device_id;         /* VIRTIO_ID_* */
	uint64_t host_features;     /* offered (VERSION_1 always) */
	uint64_t driver_features;   /* accepted by the driver */
	uint32_t device_features_sel, driver_features_sel;
	uint32_t status;
	uint32_t isr;               /* InterruptStatus */
	uint32_t config_generation;
	uint32_t queue_sel;
	bool broken;                /* NEEDS_RESET raised; no processing until reset */

	unsigned nr_queues;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];
	int irq_fd;

	/* Device configuration space (little-endian bytes), at offset 0x100. */
	uint8_t config[VIRTIO_CONFIG_MAX];
	uint32_t config_len;
	/* The config space is device state (virtio-balloon's target): load
	 * leaves it to the device's load instead of requiring a match. */
	bool config_volatile;

	/* Resources claimed by realize. */
	uint64_t base;
	unsigned gsi;
	bool bus_registered;
	bool kick_watched[VIRTIO_MAX_QUEUES];
	bool ioeventfd[VIRTIO_MAX_QUEUES];
	bool irqfd;
	bool initialised;           /* lock and eventfds exist */
	struct virtio_kick {
		struct virtio_dev *vd;
		unsigned q;
	} kick_ctx[VIRTIO_MAX_QUEUES];
	char name_buf[32];
};

/* The struct device lifecycle, shared by every virtio device; each model
 * declares its device_ops with VIRTIO_DEVICE_OPS("virtio-xxx"). destroy
 * copes with a device whose realize failed part-way or never ran. */
int virtio_dev_realize(struct device *dev, struct vm *vm) __must_check;
void virtio_dev_reset(struct device *dev);
int virtio_dev_save(struct device *dev, struct state_writer *w) __must_check;
int virtio_dev_load(struct device *dev, struct state_reader *r) __must_check;
void virtio_dev_destroy(struct device *dev);

#define VIRTIO_DEVICE_OPS(type_name)                                              \
	{ .type = (type_name), .realize = virtio_dev_realize, .reset = virtio_dev_reset, \
	  .save = virtio_dev_save, .load = virtio_dev_load, .destroy = virtio_dev_destroy }

/* Initialise the transport part of a freshly zeroed device model (before
 * vm_add_device): eventfds, lock, queues. `features` are the device-specific
 * bits; VERSION_1, INDIRECT_DESC and EVENT_IDX are always offered. On
 * failure, and at any later point, virtio_dev_destroy() releases the device.
 * Returns 0 or -errno. */
int virtio_dev_init(struct virtio_dev *vd, const struct device_ops *dev_ops,
		    const struct virtio_dev_ops *ops, const char *name, uint32_t device_id,
		    uint64_t features, unsigned nr_queues, uint16_t queue_size) __must_check;

static inline struct virtio_dev *virtio_dev_of(struct device *dev)
{
	return container_of(dev, struct virtio_dev, dev);
}

/* Raise the queue interrupt (vd->lock held). */
void virtio_dev_notify_queue(struct virtio_dev *vd);
/* Raise the configuration change interrupt (vd->lock held). */
void virtio_dev_notify_config(struct virtio_dev *vd);
/* Raise the interrupt for queue q if its ring asks for one (vd->lock held). */
void virtio_dev_maybe_notify(struct virtio_dev *vd, unsigned q);
/* Break the device: NEEDS_RESET, config interrupt, one log line (lock held). */
void virtio_dev_fail(struct virtio_dev *vd, const char *fmt, ...) __printf(2, 3);
/* After a device's virtq_pop loop on queue q (lock held): break the device
 * if the walk failed (ret < 0, err says why), else notify the driver if
 * anything was pushed and the ring asks for it. */
void virtio_dev_pop_done(struct virtio_dev *vd, unsigned q, int ret,
			 const struct virtq_error *err, bool pushed);
/* Have the I/O thread process queue q again soon, as if the driver had
 * kicked it: a device that stopped a long burst early to let other work
 * run (any thread). */
void virtio_dev_requeue(struct virtio_dev *vd, unsigned q);
/* True when queue processing is allowed (lock held). */
bool virtio_dev_running(const struct virtio_dev *vd, unsigned q);
/* Whether the driver accepted feature `bit`. */
static inline bool virtio_dev_has(const struct virtio_dev *vd, unsigned bit)
{
	return (vd->driver_features >> bit) & 1;
}

/* Reset transport and device state (lock held): what Status=0 does. */
void virtio_dev_reset_locked(struct virtio_dev *vd);

/* Process queue q now, on the calling thread, as the kick callback would:
 * for tests and fuzzers that do not run the I/O loop. */
void virtio_dev_process(struct virtio_dev *vd, unsigned q);

/* The MMIO register handler (exported for tests and the MMIO fuzzer). */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			bool is_write);
