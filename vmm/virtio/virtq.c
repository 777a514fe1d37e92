/* virtq.c: split virtqueue walking with every guest index, address and length validated. */
#include "virtio/virtq.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "mem.h"

/* Ring sizes in bytes for a queue of `num` entries (event index fields included). */
#define DESC_BYTES(num)  ((uint64_t)(num) * sizeof(struct vring_desc))
#define AVAIL_BYTES(num) (4 + 2 * (uint64_t)(num) + 2)
#define USED_BYTES(num)  (4 + 8 * (uint64_t)(num) + 2)

static int virtq_fail(struct virtq_error *err, const char *what, uint64_t value)
{
	err->what = what;
	err->value = value;
	return -EINVAL;
}

void virtq_reset(struct virtq *vq)
{
	uint16_t num_max = vq->num_max;

	memset(vq, 0, sizeof(*vq));
	vq->num_max = num_max;
	vq->num = num_max;
}

int virtq_activate(struct virtq *vq, const struct guest_mem *mem, struct virtq_error *err)
{
	uint16_t n = vq->num;

	if (n == 0 || n > vq->num_max || (n & (n - 1)))
		return virtq_fail(err, "queue size is not a power of two up to the maximum", n);
	if (vq->desc_gpa % VRING_DESC_ALIGN_SIZE)
		return virtq_fail(err, "descriptor table misaligned", vq->desc_gpa);
	if (vq->avail_gpa % VRING_AVAIL_ALIGN_SIZE)
		return virtq_fail(err, "available ring misaligned", vq->avail_gpa);
	if (vq->used_gpa % VRING_USED_ALIGN_SIZE)
		return virtq_fail(err, "used ring misaligned", vq->used_gpa);
	vq->desc = guest_mem_ptr(mem, vq->desc_gpa, DESC_BYTES(n));
	vq->avail = guest_mem_ptr(mem, vq->avail_gpa, AVAIL_BYTES(n));
	vq->used = guest_mem_ptr(mem, vq->used_gpa, USED_BYTES(n));
	if (!vq->desc || !vq->avail || !vq->used) {
		uint64_t bad = !vq->desc ? vq->desc_gpa : !vq->avail ? vq->avail_gpa : vq->used_gpa;

		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		return virtq_fail(err, "ring outside guest RAM", bad);
	}
	vq->mem = mem;
	vq->ready = true;
	return 0;
}

/* The ring indices are shared with the guest's vCPUs: read them once,
 * atomically, with acquire ordering so that the entries they publish are
 * visible. */
static uint16_t load16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

static uint16_t *avail_event(struct virtq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->num];
}

static uint16_t *used_event(struct virtq *vq)
{
	return &vq->avail->ring[vq->num];
}

bool virtq_has_avail(struct virtq *vq)
{
	return vq->ready && load16(&vq->avail->idx) != vq->last_avail_idx;
}

/* Map one descriptor into the chain. */
static int chain_add(struct virtq *vq, struct virtq_chain *c, const struct vring_desc *d,
		     struct virtq_error *err)
{
	uint64_t addr = le64toh(d->addr);
	uint32_t len = le32toh(d->len);
	bool writable = le16toh(d->flags) & VRING_DESC_F_WRITE;
	unsigned i = c->nr_out + c->nr_in;
	void *p;

	if (i >= VIRTQ_CHAIN_MAX)
		return virtq_fail(err, "descriptor chain too long", i);
	if (!writable && c->nr_in)
		return virtq_fail(err, "readable descriptor after a writable one", addr);
	/* Zero-length descriptors carry nothing; skip them rather than map. */
	if (len == 0)
		return 0;
	p = guest_mem_ptr(vq->mem, addr, len);
	if (!p)
		return virtq_fail(err, "descriptor buffer outside guest RAM", addr);
	if (writable) {
		if ((uint64_t)c->in_len + len > UINT32_MAX)
			return virtq_fail(err, "chain longer than 4 GiB", len);
		c->in_len += len;
		c->nr_in++;
	} else {
		if ((uint64_t)c->out_len + len > UINT32_MAX)
			return virtq_fail(err, "chain longer than 4 GiB", len);
		c->out_len += len;
		c->nr_out++;
	}
	c->iov[i].iov_base = p;
	c->iov[i].iov_len = len;
	return 0;
}

/* Walk the descriptors of one indirect table. */
static int chain_walk_indirect(struct virtq *vq, struct virtq_chain *c,
			       const struct vring_desc *table_desc, struct virtq_error *err)
{
	uint64_t addr = le64toh(table_desc->addr);
	uint32_t len = le32toh(table_desc->len);
	const struct vring_desc *table;
	uint32_t n, i, steps;

	if (!vq->indirect)
		return virtq_fail(err, "indirect descriptor without INDIRECT_DESC", addr);
	if (le16toh(table_desc->flags) & VRING_DESC_F_NEXT)
		return virtq_fail(err, "indirect descriptor with NEXT set", addr);
	/* The table's length is its alignment contract: whole descriptors only.
	 * Its address needs no alignment because entries are copied out. */
	if (len == 0 || len % sizeof(struct vring_desc))
		return virtq_fail(err, "indirect table size not a multiple of 16", len);
	n = len / sizeof(struct vring_desc);
	if (n > VIRTQ_CHAIN_MAX)
		return virtq_fail(err, "indirect table too large", n);
	table = guest_mem_ptr(vq->mem, addr, len);
	if (!table)
		return virtq_fail(err, "indirect table outside guest RAM", addr);
	for (i = 0, steps = 0;; steps++) {
		struct vring_desc d;

		/* Each table entry may be visited once: more steps means a loop. */
		if (steps >= n)
			return virtq_fail(err, "loop in indirect table", i);
		memcpy(&d, &table[i], sizeof(d));
		if (le16toh(d.flags) & VRING_DESC_F_INDIRECT)
			return virtq_fail(err, "nested indirect table", i);
		if (chain_add(vq, c, &d, err))
			return -EINVAL;
		if (!(le16toh(d.flags) & VRING_DESC_F_NEXT))
			return 0;
		i = le16toh(d.next);
		if (i >= n)
			return virtq_fail(err, "indirect next index out of range", i);
	}
}

/* Read the driver's avail index: 1 when there are chains to pop, 0 when
 * none, -EINVAL when it moved by more than the queue size. */
static int avail_load(struct virtq *vq, struct virtq_error *err)
{
	uint16_t avail_idx = load16(&vq->avail->idx);

	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->num)
		return virtq_fail(err, "available index moved by more than the queue size",
				  avail_idx);
	vq->avail_seen = avail_idx;
	vq->avail_seen_from = vq->last_avail_idx;
	return avail_idx != vq->last_avail_idx;
}

/* Is last_avail_idx inside the window of the last index read? */
static bool avail_known(const struct virtq *vq)
{
	return (uint16_t)(vq->last_avail_idx - vq->avail_seen_from) <
	       (uint16_t)(vq->avail_seen - vq->avail_seen_from);
}

int virtq_pop(struct virtq *vq, struct virtq_chain *c, struct virtq_error *err)
{
	uint16_t head;
	int ret;

	if (!vq->ready)
		return 0;
	if (!avail_known(vq)) {
		ret = avail_load(vq, err);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (!vq->event_idx)
				return 0;
			/* Ask for a kick on the next buffer, then look again: the
			 * driver may have published one before it could see
			 * avail_event. */
			store16(avail_event(vq), vq->last_avail_idx);
			guest_mem_mark_dirty(vq->mem, vq->used_gpa, USED_BYTES(vq->num)); /* migration */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			ret = avail_load(vq, err);
			if (ret <= 0)
				return ret;
		}
	}
	head = le16toh(__atomic_load_n(&vq->avail->ring[vq->last_avail_idx & (vq->num - 1)],
				       __ATOMIC_RELAXED));
	ret = virtq_walk(vq, head, c, err);
	if (ret == 1)
		vq->last_avail_idx++;
	return ret;
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail_idx--;
}

int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *c, struct virtq_error *err)
{
	uint16_t i;
	unsigned steps;

	if (!vq->ready)
		return 0;
	if (head >= vq->num)
		return virtq_fail(err, "head index out of range", head);
	c->head = head;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;
	for (i = head, steps = 0;; steps++) {
		struct vring_desc d;

		/* A chain visits each descriptor at most once: more steps than
		 * the queue size means the guest linked a cycle. */
		if (steps >= vq->num)
			return virtq_fail(err, "descriptor chain loops or exceeds queue size", head);
		memcpy(&d, &vq->desc[i], sizeof(d));
		if (le16toh(d.flags) & VRING_DESC_F_INDIRECT)
			return chain_walk_indirect(vq, c, &d, err) ? -EINVAL : 1;
		if (chain_add(vq, c, &d, err))
			return -EINVAL;
		if (!(le16toh(d.flags) & VRING_DESC_F_NEXT))
			return 1;
		i = le16toh(d.next);
		if (i >= vq->num)
			return virtq_fail(err, "next index out of range", i);
	}
}

/* Live migration: the device has written the chain's writable buffers;
 * KVM's dirty log does not see writes from
 * the VMM, so record them (guest_mem_mark_dirty). The walk is bounded like
 * virtq_pop's; a chain the guest rewrote meanwhile only loses its own data. */
static void virtq_mark_written(struct virtq *vq, uint16_t head)
{
	const struct vring_desc *table = vq->desc;
	uint32_t n = vq->num, i = head, steps = 0;
	bool in_indirect = false;

	while (i < n && steps++ < n) {
		struct vring_desc d;
		uint16_t flags;

		memcpy(&d, &table[i], sizeof(d));
		flags = le16toh(d.flags);
		if ((flags & VRING_DESC_F_INDIRECT) && !in_indirect) {
			uint32_t len = le32toh(d.len);

			if (!len || len % sizeof(d) || len / sizeof(d) > VIRTQ_CHAIN_MAX)
				return;
			table = guest_mem_ptr(vq->mem, le64toh(d.addr), len);
			if (!table)
				return;
			n = len / sizeof(d);
			i = steps = 0;
			in_indirect = true;
			continue;
		}
		if (flags & VRING_DESC_F_WRITE)
			guest_mem_mark_dirty(vq->mem, le64toh(d.addr), le32toh(d.len));
		if (!(flags & VRING_DESC_F_NEXT))
			return;
		i = le16toh(d.next);
	}
}

void virtq_fill(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e;

	if (!vq->ready)
		return;
	if (__atomic_load_n(&vq->mem->dirty_on, __ATOMIC_RELAXED))
		virtq_mark_written(vq, head);
	e = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	e->id = htole32(head);
	e->len = htole32(len);
	vq->used_idx++;
}

void virtq_flush(struct virtq *vq)
{
	if (!vq->ready || vq->used_published == vq->used_idx)
		return;
	/* Release: the elements are visible before the index that publishes
	 * them. */
	store16(&vq->used->idx, vq->used_idx);
	vq->used_published = vq->used_idx;
	guest_mem_mark_dirty(vq->mem, vq->used_gpa, USED_BYTES(vq->num)); /* migration */
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	virtq_fill(vq, head, len);
	virtq_flush(vq);
}

void virtq_set_kicks(struct virtq *vq, bool on)
{
	if (!vq->ready || vq->event_idx)
		return;
	__atomic_store_n(&vq->used->flags, on ? 0 : htole16(VRING_USED_F_NO_NOTIFY),
			 __ATOMIC_RELAXED);
	guest_mem_mark_dirty(vq->mem, vq->used_gpa, 2); /* migration */
	/* The flag is visible before the device next reads the avail index
	 * (virtq_has_avail), or both sides may wait for the other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_need_notify(struct virtq *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (!vq->ready)
		return false;
	virtq_flush(vq);
	/* The used index store must be visible before we read the driver's
	 * suppression fields, or both sides may decide not to signal. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	new = vq->used_idx;
	valid = vq->signalled_used_valid;
	vq->signalled_used = new;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	if (old == new)
		return false;
	event = load16(used_event(vq));
	return vring_need_event(event, new, old);
}

size_t iov_to_buf(const struct iovec *iov, unsigned nr, size_t off, void *dst, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < nr && done < len; i++) {
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - off, len - done);
		memcpy((uint8_t *)dst + done, (uint8_t *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned nr, size_t off, const void *src,
		    size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < nr && done < len; i++) {
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - off, len - done);
		memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)src + done, n);
		done += n;
		off = 0;
	}
	return done;
}

unsigned iov_slice(const struct iovec *iov, unsigned nr, size_t off, size_t len,
		   struct iovec *dst, unsigned max)
{
	unsigned out = 0;

	for (unsigned i = 0; i < nr && len && out < max; i++) {
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - off, len);
		dst[out].iov_base = (uint8_t *)iov[i].iov_base + off;
		dst[out].iov_len = n;
		out++;
		len -= n;
		off = 0;
	}
	return out;
}
