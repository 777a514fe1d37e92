/* storage.c: disk contents in the migration stream (include_storage):
 * the source's chunked copy and dirty-block re-sends, the destination's
 * writes. */
#include "migrate/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "log.h"
#include "migrate/mig_tls.h"
#include "virtio/blk/blk_ctl.h"
#include "vm.h"

#define CHUNK        (1u << 20) /* read under the lock at once; 1 MiB-aligned */
#define BLOCK        (1u << MIG_DISK_BLOCK_SHIFT)
#define WORD_BITS    (8 * sizeof(long))
#define MAX_PIECES   (CHUNK / 512 + 1)
#define MAP_EXTENTS  32

_Static_assert(CHUNK / BLOCK <= WORD_BITS && WORD_BITS % (CHUNK / BLOCK) == 0,
	       "a chunk's blocks lie in one bitmap word");
_Static_assert(CHUNK <= MIG_DISK_DATA_MAX, "a chunk fits one DISK_DATA record");

int mig_storage_start(struct mig_storage *s, struct vm *vm, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	for (struct device *dev = virtio_blk_next(vm, NULL); dev; dev = virtio_blk_next(vm, dev)) {
		struct mig_sdisk *d = &s->d[s->n];
		struct blk_status st;

		virtio_blk_get_status(dev, &st);
		if (s->n == MIG_DISKS_MAX) {
			snprintf(err, errlen, "more than %u disks", MIG_DISKS_MAX);
			return -E2BIG;
		}
		if (st.readonly) {
			/* The destination opens its (new, empty) copy read-only too. */
			snprintf(err, errlen, "disk %s is read-only: its copy could not be written at "
				 "the destination (keep it on shared storage)", st.id);
			return -EROFS;
		}
		d->dev = dev;
		d->size = virtio_blk_size(dev);
		d->nblocks = (d->size + BLOCK - 1) / BLOCK;
		/* Whole chunks of bits, so a chunk's mask never leaves the array. */
		d->words = (size_t)((d->nblocks + WORD_BITS - 1) / WORD_BITS);
		d->bits = calloc(d->words ? d->words : 1, sizeof(long));
		if (!d->bits) {
			snprintf(err, errlen, "out of memory for the dirty bitmap of %s", st.id);
			return -ENOMEM;
		}
		s->n++;
	}
	s->buf = malloc(CHUNK);
	s->rec = malloc(16 + CHUNK);
	s->pieces = malloc(MAX_PIECES * sizeof(*s->pieces));
	if (!s->buf || !s->rec || !s->pieces) {
		snprintf(err, errlen, "out of memory for disk chunks");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < s->n; i++)
		virtio_blk_track(s->d[i].dev, s->d[i].bits, MIG_DISK_BLOCK_SHIFT);
	s->tracking = true;
	return 0;
}

void mig_storage_stop(struct mig_storage *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (s->tracking)
			virtio_blk_track(s->d[i].dev, NULL, 0);
		free(s->d[i].bits);
		s->d[i].bits = NULL;
	}
	s->n = 0;
	s->tracking = false;
	free(s->buf);
	free(s->rec);
	free(s->pieces);
	s->buf = s->rec = NULL;
	s->pieces = NULL;
}

int mig_storage_send_list(struct mig_storage *s, struct mig_conn *c, char *err, size_t errlen)
{
	uint8_t p[8 + MIG_DISKS_MAX * 8] = { 0 };
	uint32_t n = s->n;
	int ret;

	memcpy(p, &n, 4); /* little-endian host (x86) */
	for (unsigned i = 0; i < s->n; i++)
		memcpy(p + 8 + i * 8, &s->d[i].size, 8);
	ret = mig_conn_send(c, MIG_REC_DISKS, p, 8 + n * 8);
	if (ret)
		snprintf(err, errlen, "sending the disk list: %s", mig_conn_error(c));
	return ret;
}

/* --- reading one chunk (device lock held) ---------------------------- */

struct chunk {
	struct mig_storage *s;
	struct mig_sdisk *d;
	uint64_t off, len;   /* the chunk */
	bool all;
	char *err;
	size_t errlen;
};

static int piece_add(struct chunk *c, uint64_t off, uint64_t len, bool zero)
{
	struct mig_storage *s = c->s;
	struct mig_piece *last = s->npieces ? &s->pieces[s->npieces - 1] : NULL;

	if (last && last->zero == zero && last->off + last->len == off) {
		last->len += len;
		return 0;
	}
	if (s->npieces == MAX_PIECES) {
		snprintf(c->err, c->errlen, "disk chunk at %llu: too many extents",
			 (unsigned long long)c->off);
		return -EOVERFLOW;
	}
	s->pieces[s->npieces++] = (struct mig_piece){ off, len, zero };
	return 0;
}

static bool is_zero(const uint8_t *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

/* Data read into buf, as pieces; 4 KiB units that read as zero become
 * zero pieces (holes of a sparse raw file, zeroed clusters), which cost a
 * 24-byte record instead of their size. */
static int data_pieces(struct chunk *c, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;

	while (off < end) {
		uint64_t next = MIN(end, (off & ~4095ull) + 4096);
		int ret = piece_add(c, off, next - off,
				    is_zero(c->s->buf + (off - c->off), (size_t)(next - off)));

		if (ret)
			return ret;
		off = next;
	}
	return 0;
}

/* Zero extents become pieces without a read; the rest is read into buf. */
static int chunk_map(struct chunk *c, struct disk *dk, uint64_t pos, uint64_t end)
{
	struct disk_extent ext[MAP_EXTENTS];

	while (pos < end) {
		int n = disk_map(dk, pos, end - pos, false, ext, MAP_EXTENTS), ret;

		if (n <= 0) {
			n = n ? n : -EIO;
			snprintf(c->err, c->errlen, "reading disk at %llu: %s",
				 (unsigned long long)pos, disk_error(dk));
			return n;
		}
		for (int i = 0; i < n; i++) {
			const struct disk_extent *e = &ext[i];
			bool zero = e->kind == DISK_EXT_ZERO;

			if (!zero && (ret = disk_pread(dk, c->s->buf + (e->off - c->off),
						       (size_t)e->len, e->off))) {
				snprintf(c->err, c->errlen, "reading disk at %llu: %s",
					 (unsigned long long)e->off, disk_error(dk));
				return ret;
			}
			ret = zero ? piece_add(c, e->off, e->len, true)
				   : data_pieces(c, e->off, e->len);
			if (ret)
				return ret;
			pos = e->off + e->len;
		}
	}
	return 0;
}

static int chunk_read(void *opaque, struct disk *dk)
{
	struct chunk *c = opaque;
	struct mig_sdisk *d = c->d;
	uint64_t b0 = c->off / BLOCK, nb = (c->len + BLOCK - 1) / BLOCK;
	size_t w = (size_t)(b0 / WORD_BITS);
	unsigned sh = (unsigned)(b0 % WORD_BITS);
	unsigned long mask = (nb >= WORD_BITS ? ~0UL : (1UL << nb) - 1) << sh, take;

	c->s->npieces = 0;
	take = c->all ? mask : d->bits[w] & mask;
	/* Cleared before the read: a write that lands after it marks again. */
	d->bits[w] &= ~take;
	take >>= sh;
	while (take) {
		unsigned i = (unsigned)__builtin_ctzl(take), j = i;
		int ret;

		while (j < nb && (take >> j & 1))
			j++;
		take &= j >= WORD_BITS ? 0 : ~0UL << j;
		ret = chunk_map(c, dk, c->off + (uint64_t)i * BLOCK,
				MIN(c->off + (uint64_t)j * BLOCK, d->size));
		if (ret) {
			d->bits[w] |= mask; /* not sent: stays dirty */
			return ret;
		}
	}
	return 0;
}

/* --- sending (no lock) ------------------------------------------------ */

static int zero_flush(struct mig_storage *s, unsigned disk, struct mig_conn *conn, char *err,
		      size_t errlen)
{
	struct mig_sdisk *d = &s->d[disk];
	uint8_t p[24] = { 0 };
	uint32_t n = disk;
	int ret;

	if (!d->zlen)
		return 0;
	memcpy(p, &n, 4);
	memcpy(p + 8, &d->zoff, 8);
	memcpy(p + 16, &d->zlen, 8);
	ret = mig_conn_send(conn, MIG_REC_DISK_ZERO, p, sizeof(p));
	if (ret) {
		snprintf(err, errlen, "sending disk zero range: %s", mig_conn_error(conn));
		return ret;
	}
	s->zero_bytes += d->zlen;
	d->zlen = 0;
	return 0;
}

/* Zero ranges are gathered across chunks into few records. */
static int zero_add(struct mig_storage *s, unsigned disk, uint64_t off, uint64_t len,
		    struct mig_conn *conn, char *err, size_t errlen)
{
	struct mig_sdisk *d = &s->d[disk];
	int ret;

	if (d->zlen && d->zoff + d->zlen == off && d->zlen + len <= MIG_DISK_ZERO_MAX) {
		d->zlen += len;
		return 0;
	}
	if ((ret = zero_flush(s, disk, conn, err, errlen)))
		return ret;
	d->zoff = off;
	d->zlen = len;
	return 0;
}

static int chunk_send(struct mig_storage *s, unsigned disk, uint64_t chunk_off,
		      struct mig_conn *conn, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->npieces; i++) {
		const struct mig_piece *pc = &s->pieces[i];
		uint32_t n = disk, len = (uint32_t)pc->len;
		int ret;

		if (pc->zero) {
			ret = zero_add(s, disk, pc->off, pc->len, conn, err, errlen);
		} else {
			memcpy(s->rec, &n, 4);
			memset(s->rec + 4, 0, 4);
			memcpy(s->rec + 8, &pc->off, 8);
			memcpy(s->rec + 16, s->buf + (pc->off - chunk_off), len);
			ret = mig_conn_send(conn, MIG_REC_DISK_DATA, s->rec, 16 + len);
			if (ret)
				snprintf(err, errlen, "sending disk data: %s", mig_conn_error(conn));
			else
				s->data_bytes += len;
		}
		if (ret)
			return ret;
	}
	return 0;
}

int mig_storage_send(struct mig_storage *s, struct mig_conn *c, bool all, mig_pace_fn pace,
		     void *opaque, char *err, size_t errlen)
{
	err[0] = 0;
	for (unsigned i = 0; i < s->n; i++) {
		struct mig_sdisk *d = &s->d[i];
		int ret;

		for (uint64_t off = 0; off < d->size; off += CHUNK) {
			struct chunk ch = { s, d, off, MIN((uint64_t)CHUNK, d->size - off), all, err,
					    errlen };

			ret = virtio_blk_with_disk(d->dev, chunk_read, &ch);
			if (ret == -EIO && !err[0])
				snprintf(err, errlen, "disk %u has no image", i);
			if (!ret)
				ret = chunk_send(s, i, off, c, err, errlen);
			if (!ret && pace)
				ret = pace(opaque);
			if (ret)
				return ret;
		}
		/* Ordered before the next round's data for the same blocks. */
		if ((ret = zero_flush(s, i, c, err, errlen)))
			return ret;
	}
	return 0;
}

static int count_dirty(void *opaque, struct disk *dk)
{
	struct mig_sdisk *d = opaque;
	uint64_t n = 0;

	(void)dk;
	for (size_t w = 0; w < d->words; w++)
		n += (uint64_t)__builtin_popcountl(d->bits[w]);
	return (int)MIN(n, (uint64_t)INT32_MAX);
}

uint64_t mig_storage_dirty_bytes(struct mig_storage *s)
{
	uint64_t bytes = 0;

	for (unsigned i = 0; i < s->n; i++) {
		int n = virtio_blk_with_disk(s->d[i].dev, count_dirty, &s->d[i]);

		if (n < 0) /* no image: count it all, the send will fail */
			n = (int)MIN(s->d[i].nblocks, (uint64_t)INT32_MAX);
		bytes += (uint64_t)n * BLOCK;
	}
	return bytes;
}

/* --- destination ------------------------------------------------------ */

int mig_storage_rx_init(struct mig_storage_rx *r, struct vm *vm, uint32_t n,
			const uint64_t *sizes, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	for (struct device *dev = virtio_blk_next(vm, NULL); dev; dev = virtio_blk_next(vm, dev)) {
		struct blk_status st;

		if (r->n == MIG_DISKS_MAX || r->n == n) {
			snprintf(why, whylen, "the source has %u disks, this VM more", n);
			return -EINVAL;
		}
		virtio_blk_get_status(dev, &st);
		if (virtio_blk_size(dev) != sizes[r->n]) {
			snprintf(why, whylen, "disk %u (%s): the source's is %llu bytes, this one %llu",
				 r->n, st.id, (unsigned long long)sizes[r->n],
				 (unsigned long long)virtio_blk_size(dev));
			return -EINVAL;
		}
		if (st.readonly) {
			snprintf(why, whylen, "disk %u (%s) is read-only here", r->n, st.id);
			return -EROFS;
		}
		r->dev[r->n++] = dev;
	}
	if (r->n != n) {
		snprintf(why, whylen, "the source has %u disks, this VM %u", n, r->n);
		return -EINVAL;
	}
	return 0;
}

struct rx_op {
	uint64_t off, len;
	const uint8_t *data; /* NULL: zeroes */
};

static int rx_apply(void *opaque, struct disk *dk)
{
	const struct rx_op *op = opaque;

	if (op->data)
		return disk_pwrite(dk, op->data, (size_t)op->len, op->off);
	return disk_write_zeroes(dk, op->off, op->len, true);
}

static int rx_do(struct mig_storage_rx *r, uint32_t disk, const struct rx_op *op, char *why,
		 size_t whylen)
{
	int ret;

	if (disk >= r->n) {
		snprintf(why, whylen, "no disk %u", disk);
		return -EINVAL;
	}
	ret = virtio_blk_with_disk(r->dev[disk], rx_apply, (void *)op);
	if (ret)
		snprintf(why, whylen, "writing %llu bytes at %llu: %s", (unsigned long long)op->len,
			 (unsigned long long)op->off, strerror(-ret));
	r->written = true;
	return ret;
}

int mig_storage_rx_write(struct mig_storage_rx *r, uint32_t disk, uint64_t off,
			 const uint8_t *data, uint32_t len, char *why, size_t whylen)
{
	struct rx_op op = { off, len, data };

	return rx_do(r, disk, &op, why, whylen);
}

int mig_storage_rx_zero(struct mig_storage_rx *r, uint32_t disk, uint64_t off, uint64_t len,
			char *why, size_t whylen)
{
	struct rx_op op = { off, len, NULL };

	return rx_do(r, disk, &op, why, whylen);
}

int mig_storage_rx_flush(struct mig_storage_rx *r, char *why, size_t whylen)
{
	if (!r->written)
		return 0;
	for (unsigned i = 0; i < r->n; i++) {
		int ret = virtio_blk_flush(r->dev[i]);

		if (ret) {
			snprintf(why, whylen, "flushing disk %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	r->written = false;
	return 0;
}
