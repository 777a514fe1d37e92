/* vmem_req.h: virtio-mem's requests and block state, as pure functions
 * (no VM, no guest memory beyond the segments virtq_pop validated): the
 * unit test and the fuzzer (tests/fuzz/virtio/fuzz_vmem.c) drive them.
 *
 * The region is nblocks blocks of block_size bytes from guest address
 * `addr`. The answers follow the virtio 1.2 spec (5.15.6):
 *   PLUG       ERROR when the range is misaligned, empty, outside the
 *              usable region or has a plugged block; NACK when it would
 *              take plugged_size past requested_size; ACK otherwise.
 *   UNPLUG     ERROR when misaligned, empty, outside the usable region or
 *              any block is not plugged; ACK otherwise (never NACK: the
 *              host always takes memory back).
 *   UNPLUG_ALL ACK, everything unplugged.
 *   STATE      ERROR when misaligned, empty or outside the usable region;
 *              ACK with PLUGGED, UNPLUGGED or MIXED.
 *   anything else, or a request shorter than its type: ERROR.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_mem.h>

#define VMEM_BLOCK_SIZE (2ULL << 20)

struct vmem_blocks {
	uint64_t addr;          /* guest address of the region */
	uint64_t block_size;
	uint64_t nblocks;       /* region_size / block_size */
	uint64_t usable_blocks; /* usable_region_size / block_size (<= nblocks) */
	uint64_t requested;     /* requested_size / block_size */
	uint64_t plugged;       /* bits set in map */
	unsigned long *map;     /* one bit per block: plugged */
};

struct vmem_request {
	uint16_t type;          /* VIRTIO_MEM_REQ_* (any value from the guest) */
	uint16_t nb_blocks;
	uint64_t addr;
};

/* What the device must do after vmem_handle: give [first, first + count)
 * blocks back to the host (count 0: nothing). */
struct vmem_effect {
	uint64_t first, count;
};

/* Parse the driver-readable bytes iov[0, nr). 0, or -EINVAL when fewer
 * bytes than the request's type needs (the type itself included). */
int vmem_parse_request(const struct iovec *iov, unsigned nr, struct vmem_request *r);

/* Apply r to b. Returns the response type (VIRTIO_MEM_RESP_*); *state is
 * the VIRTIO_MEM_STATE_* answer of an ACKed STATE request; *why (static
 * string, for the log) says what made an ERROR or NACK. */
uint16_t vmem_handle(struct vmem_blocks *b, const struct vmem_request *r, uint16_t *state,
		     struct vmem_effect *fx, const char **why);

/* Bit helpers over the block map. */
bool vmem_block_plugged(const struct vmem_blocks *b, uint64_t i);
/* Count plugged blocks (save/load checks). */
uint64_t vmem_count_plugged(const struct vmem_blocks *b);
