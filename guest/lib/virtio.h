/* virtio.h: virtio-mmio (version 2) transport and split virtqueues for the
 * test guest. Devices are announced on the command line as
 * virtio_mmio.device=<size>@<base>:<irq>[:<id>]. Completions are polled
 * from the used ring; interrupts are optional (see irq.c). */
#pragma once
#include "hw.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VIRTIO_ID_RNG 4

#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

/* MMIO register offsets (virtio 1.x, 4.2.2) */
#define VIRTIO_MMIO_MAGIC            0x000
#define VIRTIO_MMIO_VERSION          0x004
#define VIRTIO_MMIO_DEVICE_ID        0x008
#define VIRTIO_MMIO_VENDOR_ID        0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES  0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES  0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL        0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX    0x034
#define VIRTIO_MMIO_QUEUE_NUM        0x038
#define VIRTIO_MMIO_QUEUE_READY      0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY     0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK    0x064
#define VIRTIO_MMIO_STATUS           0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW   0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH  0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG           0x100

struct virtio_dev {
	uint64_t base;
	uint64_t size;
	uint32_t irq;
	uint32_t device_id;
	uint32_t version;
	uint64_t features;	/* negotiated */
};

#define VIRTIO_MAX_DEVS 32
/* All command-line devices, in command-line order (probed: magic read). */
int virtio_devices(struct virtio_dev *devs, int max);
/* The index-th device with device_id; false if there is none. */
bool virtio_find(uint32_t device_id, int index, struct virtio_dev *out);

/* Reset, ACKNOWLEDGE, DRIVER, feature negotiation (wanted & offered, plus
 * VERSION_1, which is required) and FEATURES_OK. Fails the test on error. */
void virtio_begin(struct virtio_dev *d, uint64_t wanted);
void virtio_driver_ok(struct virtio_dev *d);
void virtio_reset(struct virtio_dev *d);
uint32_t virtio_status(struct virtio_dev *d);
/* Reads and acknowledges InterruptStatus. */
uint32_t virtio_ack_interrupt(struct virtio_dev *d);

uint8_t virtio_cfg8(struct virtio_dev *d, uint32_t off);
uint16_t virtio_cfg16(struct virtio_dev *d, uint32_t off);
uint32_t virtio_cfg32(struct virtio_dev *d, uint32_t off);
uint64_t virtio_cfg64(struct virtio_dev *d, uint32_t off);

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[];
};

struct virtq {
	struct virtio_dev *dev;
	uint16_t index;
	uint16_t size;
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;
	uint16_t last_used;
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	void **cookies;		/* per head descriptor */
	uint16_t *chain_len;
};

/* One buffer of a descriptor chain. */
struct vq_buf {
	void *addr;
	uint32_t len;
	bool device_writes;
};

/* Sets up queue index with min(QueueNumMax, max_size) entries (a power of
 * two). Call between virtio_begin and virtio_driver_ok. */
void virtq_init(struct virtq *q, struct virtio_dev *d, uint16_t index, uint16_t max_size);
/* Adds a chain and publishes it in the avail ring (no notify). Returns
 * false when there are not enough free descriptors. */
bool virtq_add(struct virtq *q, const struct vq_buf *bufs, int n, void *cookie);
void virtq_kick(struct virtq *q);
/* Takes one completion off the used ring if there is one. */
bool virtq_get(struct virtq *q, uint32_t *len, void **cookie);
/* Polls for one completion for up to timeout_ms; fails the test on timeout. */
void *virtq_wait(struct virtq *q, uint32_t *len, uint32_t timeout_ms);
