/* vmem_req.c: virtio-mem request parsing and the block state machine
 * (vmem_req.h). */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/mem/vmem_req.h"
#include "virtio/virtq.h"

#define BITS (8 * sizeof(unsigned long))

bool vmem_block_plugged(const struct vmem_blocks *b, uint64_t i)
{
	return (b->map[i / BITS] >> (i % BITS)) & 1;
}

/* Atomic stores: guest_mem_ptr reads the map from other threads. */
static void block_set(struct vmem_blocks *b, uint64_t i, bool on)
{
	if (on)
		__atomic_fetch_or(&b->map[i / BITS], 1UL << (i % BITS), __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&b->map[i / BITS], ~(1UL << (i % BITS)), __ATOMIC_RELEASE);
}

uint64_t vmem_count_plugged(const struct vmem_blocks *b)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (b->nblocks + BITS - 1) / BITS; w++)
		n += (uint64_t)__builtin_popcountl(b->map[w]);
	return n;
}

int vmem_parse_request(const struct iovec *iov, unsigned nr, struct vmem_request *r)
{
	struct virtio_mem_req req;
	size_t got;

	memset(r, 0, sizeof(*r));
	memset(&req, 0, sizeof(req));
	got = iov_to_buf(iov, nr, 0, &req, sizeof(req));
	if (got < 2)
		return -EINVAL;
	r->type = le16toh(req.type);
	if (r->type == VIRTIO_MEM_REQ_UNPLUG_ALL)
		return 0;
	/* PLUG, UNPLUG and STATE share one layout: addr, nb_blocks. */
	if (got < offsetof(struct virtio_mem_req, u) + 10)
		return -EINVAL;
	r->addr = le64toh(req.u.plug.addr);
	r->nb_blocks = le16toh(req.u.plug.nb_blocks);
	return 0;
}

/* The first block of [addr, addr + n blocks) inside the usable region, or
 * an error string. */
static const char *range_check(const struct vmem_blocks *b, const struct vmem_request *r,
			       uint64_t *first)
{
	uint64_t off;

	if (!r->nb_blocks)
		return "no blocks";
	if (r->addr < b->addr || r->addr % b->block_size)
		return r->addr < b->addr ? "address below the region" : "misaligned address";
	off = (r->addr - b->addr) / b->block_size;
	if (off >= b->usable_blocks || r->nb_blocks > b->usable_blocks - off)
		return "range outside the usable region";
	*first = off;
	return NULL;
}

uint16_t vmem_handle(struct vmem_blocks *b, const struct vmem_request *r, uint16_t *state,
		     struct vmem_effect *fx, const char **why)
{
	uint64_t first = 0, n = r->nb_blocks, on = 0;

	*state = 0;
	*why = NULL;
	fx->first = fx->count = 0;
	switch (r->type) {
	case VIRTIO_MEM_REQ_UNPLUG_ALL:
		for (uint64_t i = 0; i < b->nblocks; i++)
			block_set(b, i, false);
		if (b->plugged) {
			fx->first = 0;
			fx->count = b->nblocks;
		}
		b->plugged = 0;
		return VIRTIO_MEM_RESP_ACK;
	case VIRTIO_MEM_REQ_PLUG:
	case VIRTIO_MEM_REQ_UNPLUG:
	case VIRTIO_MEM_REQ_STATE:
		break;
	default:
		*why = "unknown request type";
		return VIRTIO_MEM_RESP_ERROR;
	}
	*why = range_check(b, r, &first);
	if (*why)
		return VIRTIO_MEM_RESP_ERROR;
	for (uint64_t i = first; i < first + n; i++)
		on += vmem_block_plugged(b, i);
	switch (r->type) {
	case VIRTIO_MEM_REQ_PLUG:
		if (on) {
			*why = "a block is already plugged";
			return VIRTIO_MEM_RESP_ERROR;
		}
		if (b->plugged + n > b->requested) {
			*why = "past the requested size";
			return VIRTIO_MEM_RESP_NACK;
		}
		for (uint64_t i = first; i < first + n; i++)
			block_set(b, i, true);
		b->plugged += n;
		return VIRTIO_MEM_RESP_ACK;
	case VIRTIO_MEM_REQ_UNPLUG:
		if (on != n) {
			*why = "a block is not plugged";
			return VIRTIO_MEM_RESP_ERROR;
		}
		for (uint64_t i = first; i < first + n; i++)
			block_set(b, i, false);
		b->plugged -= n;
		fx->first = first;
		fx->count = n;
		return VIRTIO_MEM_RESP_ACK;
	default: /* STATE */
		*state = on == n ? VIRTIO_MEM_STATE_PLUGGED
			: on ? VIRTIO_MEM_STATE_MIXED : VIRTIO_MEM_STATE_UNPLUGGED;
		return VIRTIO_MEM_RESP_ACK;
	}
}
