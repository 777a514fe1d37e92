/* blk.h: virtio-blk device state, shared by blk.c and its unit tests. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "backend/blkio.h"
#include "virtio/mmio.h"

#define BLK_QUEUE_SIZE 256

struct blk_dev {
	struct virtio_dev vd; /* first: the transport frees the whole object */
	struct blkio io;
	bool io_open;
	bool ring_watched;
	bool readonly;
	bool dropping;        /* reset: completions are discarded, not pushed */
	uint64_t capacity;    /* 512-byte sectors */
	char serial[20];      /* VIRTIO_BLK_ID_BYTES, NUL-padded */
	struct virtq_chain *chain; /* scratch for popping */
};

_Static_assert(offsetof(struct blk_dev, vd) == 0, "transport frees the device through vd");
