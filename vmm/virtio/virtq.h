/* virtq.h: split virtqueue core: walking descriptor chains that the guest
 * publishes, validating every guest address, and returning used buffers.
 *
 * The ring lives in guest memory and is untrusted input. Every address the
 * guest hands us goes through guest_mem_ptr(); every index and length is
 * checked before use. A malformed ring is reported as a negative return and
 * the caller (the transport) breaks the device with DEVICE_NEEDS_RESET.
 *
 * Not thread-safe: the transport serialises all calls on one queue with the
 * device's lock.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_ring.h>

#include "compiler.h"

struct guest_mem;

/* Largest queue size any of our devices offers, and the longest chain
 * (direct descriptors plus the entries of one indirect table) we accept. */
#define VIRTQ_NUM_MAX   1024
#define VIRTQ_CHAIN_MAX 256

/* Why a pop failed, for the one log line the transport prints. */
struct virtq_error {
	const char *what; /* static string */
	uint64_t value;   /* offending index, address or length */
};

struct virtq {
	/* Registers programmed by the driver through the transport. */
	uint16_t num;       /* queue size chosen by the driver */
	uint16_t num_max;   /* what the device offers */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* Negotiated ring features. */
	bool event_idx;
	bool indirect;

	/* Host views of the rings, valid while `ready` (set by virtq_activate). */
	const struct guest_mem *mem;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;

	uint16_t last_avail_idx; /* next avail entry the device will consume */
	uint16_t used_idx;       /* next used entry the device will fill */
	/* The driver's avail index as last read, and last_avail_idx then:
	 * entries in [avail_seen_from, avail_seen) are known published, so
	 * popping them needs no read of the index the driver keeps writing
	 * (a cache line that bounces between the vCPU and this thread). A
	 * last_avail_idx outside that window (set by a loader, a test) makes
	 * the next pop read the index again. */
	uint16_t avail_seen, avail_seen_from;
	uint16_t used_published; /* used index the driver can see (virtq_flush) */
	uint16_t signalled_used; /* used_idx at the last notification */
	bool signalled_used_valid;
};

/* A popped chain. Readable segments come first: iov[0, nr_out) are
 * device-readable, iov[nr_out, nr_out + nr_in) are device-writable (the ring
 * layout rules require that order; virtq_pop enforces it). Every segment is a
 * host pointer into guest RAM that guest_mem_ptr() validated. */
struct virtq_chain {
	uint16_t head;
	unsigned nr_out, nr_in;
	uint32_t out_len, in_len; /* total bytes per direction, each < 4 GiB */
	struct iovec iov[VIRTQ_CHAIN_MAX];
};

static inline bool virtq_chain_seg_writable(const struct virtq_chain *c, unsigned i)
{
	return i >= c->nr_out;
}

/* Put the queue in its reset state; num_max is kept. */
void virtq_reset(struct virtq *vq);

/* Validate the driver's ring programming and map the rings. Checks that num
 * is a power of two in [1, num_max], that the rings are aligned as the spec
 * requires and lie entirely in guest RAM. Returns 0 and sets vq->ready, or
 * -EINVAL with *err filled. */
int virtq_activate(struct virtq *vq, const struct guest_mem *mem,
		   struct virtq_error *err) __must_check;

/* Take the next available chain. Returns 1 and fills *c, 0 when the ring is
 * empty, -EINVAL when the guest broke the ring rules (*err says how); after a
 * negative return the queue must not be used until the device is reset. */
int virtq_pop(struct virtq *vq, struct virtq_chain *c, struct virtq_error *err) __must_check;

/* Walk the chain starting at descriptor `head` again, as virtq_pop did,
 * without touching the avail ring (a device reloading requests it held at
 * save time). Returns 1, 0 if the queue is not ready, or -EINVAL (*err). */
int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *c,
	       struct virtq_error *err) __must_check;

/* Give the last popped chain back (e.g. no host data to fill it with). */
void virtq_unpop(struct virtq *vq);

/* Return a chain to the driver with `len` bytes written into its writable
 * part. Publishes the new used index. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);

/* The same in two steps, for a device that returns many chains at once:
 * virtq_fill writes the used entry but leaves the used index the driver
 * sees alone; virtq_flush publishes every entry filled so far (one store
 * of the index instead of one per chain). Fill and flush under the same
 * hold of the device's lock; virtq_need_notify flushes first. */
void virtq_fill(struct virtq *vq, uint16_t head, uint32_t len);
void virtq_flush(struct virtq *vq);

/* After one or more pushes: true when the driver wants an interrupt
 * (VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Publishes
 * filled entries first. */
bool virtq_need_notify(struct virtq *vq);

/* Ask the driver to kick (on true) or not to (VRING_USED_F_NO_NOTIFY)
 * when it publishes chains; a driver with EVENT_IDX follows avail_event
 * instead, which virtq_pop keeps (so this is a no-op then). After turning
 * kicks back on, check virtq_has_avail: a chain published meanwhile came
 * without a kick. */
void virtq_set_kicks(struct virtq *vq, bool on);

/* True when the driver has published chains the device has not popped. */
bool virtq_has_avail(struct virtq *vq);

/* Copy up to len bytes starting `off` bytes into the given segments to dst /
 * from src. Return the number of bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned nr, size_t off, void *dst, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned nr, size_t off, const void *src,
		    size_t len);
/* Describe bytes [off, off + len) of iov[0..nr) in dst[0..max). Returns the
 * number of dst entries used; the slice is cut short if max is too small. */
unsigned iov_slice(const struct iovec *iov, unsigned nr, size_t off, size_t len,
		   struct iovec *dst, unsigned max);
