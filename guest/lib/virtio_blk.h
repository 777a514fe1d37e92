/* virtio_blk.h: a small virtio-blk driver with up to VBLK_MAX_INFLIGHT
 * requests in flight, polled completions. */
#pragma once
#include "virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9
#define VIRTIO_BLK_F_DISCARD  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VBLK_MAX_INFLIGHT 64
#define VBLK_TIMEOUT_MS 30000

struct vblk_req {
	struct {
		uint32_t type;
		uint32_t reserved;
		uint64_t sector;
	} hdr;
	struct {
		uint64_t sector;
		uint32_t num_sectors;
		uint32_t flags;
	} range;		/* DISCARD / WRITE_ZEROES payload */
	uint8_t status;
	bool busy;
};

struct vblk {
	struct virtio_dev dev;
	struct virtq q;
	uint64_t capacity;	/* 512-byte sectors */
	uint32_t size_max;	/* bytes per data segment */
	uint32_t max_bytes;	/* bytes per request this driver issues */
	uint32_t max_discard_sectors, max_write_zeroes_sectors;
	bool ro;
	struct vblk_req *reqs;	/* VBLK_MAX_INFLIGHT slots */
};

static inline bool vblk_has(const struct vblk *b, int feature)
{
	return b->dev.features & (1ull << feature);
}

/* Finds the index-th virtio-blk device and brings it up. false: none. */
bool vblk_open(struct vblk *b, int index);
/* Synchronous request; data may span several requests of max_bytes.
 * Returns the virtio status of the first failing request, or 0. */
int vblk_rw(struct vblk *b, uint32_t type, uint64_t sector, void *buf, uint64_t len);
int vblk_flush(struct vblk *b);
int vblk_get_id(struct vblk *b, char id[21]);
/* DISCARD or WRITE_ZEROES over [sector, sector + count). */
int vblk_range(struct vblk *b, uint32_t type, uint64_t sector, uint32_t count);

/* Asynchronous use: a free request slot, or -1 when all are in flight. */
int vblk_free_slot(struct vblk *b);
/* Queues a request in a free slot (no notify); false if the ring is full. */
bool vblk_submit(struct vblk *b, int slot, uint32_t type, uint64_t sector, void *buf, uint32_t len);
void vblk_kick(struct vblk *b);
/* Polls one completion; returns its slot (status in reqs[slot].status) or -1. */
int vblk_poll(struct vblk *b);

/* The tests' sector pattern (512 bytes): sector number, seed, pseudo-random
 * words from both, then a crc32 of the first 504 bytes and a marker. The
 * host-side tests compute the same pattern. */
void vblk_sector_fill(uint8_t *p, uint64_t sector, uint64_t seed);
