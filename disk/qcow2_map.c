/* qcow2_map.c: guest ranges to host extents for qcow2: the cached lookup
 * path (no system call when the L2 table is cached), allocation on first
 * write with copy-on-write of the rest of the cluster, compressed clusters
 * (zlib raw deflate), discard and write-zeroes through the zero flag. */
#include "qcow2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static inline uint64_t l1_index(const struct qcow2 *q, uint64_t off)
{
	return off >> (q->cluster_bits + q->l2_bits);
}

static inline uint64_t l2_index(const struct qcow2 *q, uint64_t off)
{
	return (off >> q->cluster_bits) & ((1ull << q->l2_bits) - 1);
}

/* Decompress the cluster of L2 entry `e` into q->zc_buf (cached by entry). */
static int decompress(struct qcow2 *q, uint64_t e)
{
	uint64_t off, len, cs = q->cluster_size;
	z_stream z;
	ssize_t r;
	int zr;

	if (q->zc_buf && q->zc_entry == e)
		return 0;
	q2_compressed(q, e, &off, &len);
	if (!q->zc_buf && !(q->zc_buf = malloc(cs)))
		return disk_fail(q->d, -ENOMEM, "out of memory");
	if (!q->zc_in && !(q->zc_in = malloc(2 * cs + 512)))
		return disk_fail(q->d, -ENOMEM, "out of memory");
	q->zc_entry = 0;
	len = MIN(len, 2 * cs + 512);
	do
		r = pread(q->d->fd, q->zc_in, len, (off_t)off);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return disk_fail(q->d, -errno, "reading a compressed cluster: %s", strerror(errno));
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return disk_fail(q->d, -ENOMEM, "zlib initialisation failed");
	z.next_in = q->zc_in;
	z.avail_in = (uInt)r;
	z.next_out = q->zc_buf;
	z.avail_out = (uInt)cs;
	zr = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || z.avail_out)
		return disk_fail(q->d, -EIO, "compressed cluster at %#llx is corrupt",
				 (unsigned long long)off);
	q->zc_entry = e;
	return 0;
}

int qcow2_read_slow(struct disk *d, void *buf, size_t len, uint64_t off)
{
	struct qcow2 *q = Q(d);
	uint8_t *p = buf;

	while (len) {
		uint64_t in = off & (q->cluster_size - 1), piece = MIN(len, q->cluster_size - in);
		uint64_t *tbl, e;
		int ret = q2_l2_get(q, l1_index(q, off), false, &tbl);

		if (ret)
			return ret;
		e = tbl ? tbl[l2_index(q, off)] : 0;
		if (e & L2E_COMPRESSED) {
			if ((ret = decompress(q, e)))
				return ret;
			memcpy(p, q->zc_buf + in, piece);
		} else if ((ret = disk_read_layer(d, p, piece, off))) {
			return ret;
		}
		p += piece;
		off += piece;
		len -= piece;
	}
	return 0;
}

/* An entry that maps nothing here (a COPIED flag alone counts as nothing). */
static inline bool l2e_unallocated(uint64_t e)
{
	return !(e & (L2E_COMPRESSED | L2E_ZERO | L2E_OFFSET_MASK));
}

/* The zero flag (bit 0 belongs to the offset in compressed entries). */
static inline bool l2e_zero(uint64_t e)
{
	return (e & (L2E_COMPRESSED | L2E_ZERO)) == L2E_ZERO;
}

/* Bytes from off that are unallocated in this layer (up to len). */
static int unalloc_run(struct qcow2 *q, uint64_t off, uint64_t len, uint64_t *run)
{
	uint64_t r = 0;

	while (r < len) {
		uint64_t o = off + r, *tbl;
		int ret = q2_l2_get(q, l1_index(q, o), false, &tbl);

		if (ret)
			return ret;
		if (!tbl) { /* the whole L2 range */
			uint64_t span = 1ull << (q->cluster_bits + q->l2_bits);

			r += span - (o & (span - 1));
			continue;
		}
		if (!l2e_unallocated(tbl[l2_index(q, o)]))
			break;
		r += q->cluster_size - (o & (q->cluster_size - 1));
	}
	*run = MIN(r, len);
	return 0;
}

static int map_read(struct disk *d, uint64_t off, uint64_t len, struct disk_extent *ext,
		    struct disk **layer, unsigned max)
{
	struct qcow2 *q = Q(d);
	uint64_t cs = q->cluster_size, mask = cs - 1;
	unsigned n = 0;
	int ret;

	while (len) {
		uint64_t in = off & mask, piece = MIN(len, cs - in), *tbl, e;
		struct disk_extent x = { .off = off, .len = piece };

		ret = q2_l2_get(q, l1_index(q, off), false, &tbl);
		if (ret)
			return ret;
		e = tbl ? tbl[l2_index(q, off)] : 0;
		if (e & L2E_COMPRESSED) {
			x.kind = DISK_EXT_SLOW;
		} else if (e & L2E_ZERO) {
			x.kind = DISK_EXT_ZERO;
		} else if (e & L2E_OFFSET_MASK) {
			x.kind = DISK_EXT_DATA;
			x.fd = d->fd;
			x.host_off = (e & L2E_OFFSET_MASK) + in;
		} else {
			struct disk *b = d->backing;
			uint64_t run, in_b, done = 0;

			if ((ret = unalloc_run(q, off, len, &run)))
				return ret;
			run = MAX(run, piece); /* at least this cluster: progress */
			in_b = b && off < b->size ? MIN(run, b->size - off) : 0;
			if (in_b) {
				int k;

				if (n >= max)
					return (int)n;
				k = b->ops->map(b, off, in_b, false, ext + n, layer ? layer + n : NULL,
						max - n);
				if (k < 0)
					return disk_fail(d, k, "%s", b->err);
				for (int i = 0; i < k; i++)
					done += ext[n + i].len;
				n += (unsigned)k;
				off += done;
				len -= done;
				if (done < in_b)
					return (int)n;
				run -= done;
			}
			if (!run)
				continue;
			x = (struct disk_extent){ .off = off, .len = run, .kind = DISK_EXT_ZERO };
			piece = run;
		}
		if (!disk_ext_push(ext, layer, &n, max, &x, d))
			break;
		off += piece;
		len -= piece;
	}
	return (int)n;
}

/* Fill the parts of the new cluster at host offset `host` outside
 * [in, in+piece) with the old content of the guest cluster at `goff`. */
static int cow_fill(struct disk *d, uint64_t goff, uint64_t e, uint64_t host, bool fresh,
		    uint64_t in, uint64_t piece)
{
	struct qcow2 *q = Q(d);
	uint64_t cs = q->cluster_size, tail = in + piece;
	bool zero = l2e_zero(e) || (l2e_unallocated(e) && (!d->backing || goff >= d->backing->size));
	uint8_t *buf;
	int ret = 0;

	if (in == 0 && tail == cs)
		return 0;
	if (zero && fresh)
		return 0; /* a never-used cluster reads as zeroes already */
	buf = zero ? calloc(1, cs) : malloc(cs);
	if (!buf)
		return disk_fail(d, -ENOMEM, "out of memory");
	if (zero) {
	} else if (e & L2E_COMPRESSED) {
		ret = decompress(q, e);
		if (!ret)
			memcpy(buf, q->zc_buf, cs);
	} else if (e & L2E_OFFSET_MASK) {
		ssize_t r = pread(d->fd, buf, cs, (off_t)(e & L2E_OFFSET_MASK));

		if (r < 0)
			ret = disk_fail(d, -errno, "copy-on-write read: %s", strerror(errno));
		else
			memset(buf + r, 0, cs - (size_t)r);
	} else {
		ret = disk_read_layer(d->backing, buf, cs, goff);
		if (ret)
			ret = disk_fail(d, ret, "reading the backing file: %s", d->backing->err);
	}
	if (!ret && in)
		ret = disk_pwrite_full(d->fd, buf, in, host);
	if (!ret && tail < cs)
		ret = disk_pwrite_full(d->fd, buf + tail, cs - tail, host + tail);
	if (ret && !d->err[0])
		ret = disk_fail(d, ret, "copy-on-write: %s", strerror(-ret));
	free(buf);
	return ret;
}

/* Make the cluster holding off writable in place; returns its host offset. */
static int cluster_for_write(struct disk *d, uint64_t off, uint64_t piece, uint64_t *host)
{
	struct qcow2 *q = Q(d);
	uint64_t l1i = l1_index(q, off), l2i = l2_index(q, off), in = off & (q->cluster_size - 1);
	uint64_t *tbl, e, old;
	bool fresh;
	int ret;

	ret = q2_l2_get(q, l1i, true, &tbl);
	if (ret)
		return ret;
	if (!(q->l1[l1i] & L2E_COPIED))
		return disk_fail(d, -ENOTSUP, "L2 table %llu is shared (snapshots?)",
				 (unsigned long long)l1i);
	e = tbl[l2i];
	old = e & L2E_OFFSET_MASK;
	if (!(e & L2E_COMPRESSED) && (e & L2E_COPIED) && old) {
		/* allocated (zero flag set): reuse it, zeroing the rest */
		ret = cow_fill(d, off - in, L2E_ZERO, old, false, in, piece);
		if (ret)
			return ret;
		*host = old;
	} else {
		ret = q2_alloc(q, 1, host, &fresh);
		if (ret)
			return ret;
		ret = cow_fill(d, off - in, e, *host, fresh, in, piece);
		if (ret)
			return ret;
		if (e & L2E_COMPRESSED)
			ret = q2_free_compressed(q, e);
		else if (old)
			ret = q2_free_later(q, old);
		if (ret)
			return ret;
		/* the table may have been evicted meanwhile: fetch it again */
		if ((ret = q2_l2_get(q, l1i, true, &tbl)))
			return ret;
	}
	tbl[l2i] = *host | L2E_COPIED;
	q2_l2_mark_dirty(q, l1i);
	return 0;
}

static int map_write(struct disk *d, uint64_t off, uint64_t len, struct disk_extent *ext,
		     struct disk **layer, unsigned max, bool bounded)
{
	struct qcow2 *q = Q(d);
	uint64_t cs = q->cluster_size, mask = cs - 1;
	unsigned n = 0;
	int ret;

	if ((ret = q2_writable(q)))
		return ret;
	if (d->backing_name && !d->backing)
		return disk_fail(d, -EROFS, "opened without its backing chain: no data writes");
	while (len) {
		uint64_t in = off & mask, piece = MIN(len, cs - in), *tbl, e, host;
		struct disk_extent x = { .off = off, .len = piece, .kind = DISK_EXT_DATA,
					 .fd = d->fd };

		ret = q2_l2_get(q, l1_index(q, off), false, &tbl);
		if (ret)
			return n ? (int)n : ret;
		e = tbl ? tbl[l2_index(q, off)] : 0;
		if ((e & (L2E_COPIED | L2E_COMPRESSED | L2E_ZERO)) == L2E_COPIED &&
		    (e & L2E_OFFSET_MASK)) {
			host = e & L2E_OFFSET_MASK;
		} else {
			if (bounded && q2_dirty_bytes(q) >= QCOW2_DIRTY_LIMIT)
				return n ? (int)n
					 : disk_fail(d, -EAGAIN, "too much unflushed metadata");
			if (n >= max)
				break;
			ret = cluster_for_write(d, off, piece, &host);
			if (ret)
				return n ? (int)n : ret;
		}
		x.host_off = host + in;
		if (!disk_ext_push(ext, layer, &n, max, &x, d))
			break;
		off += piece;
		len -= piece;
	}
	return (int)n;
}

int qcow2_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext,
	      struct disk **layer, unsigned max)
{
	return write ? map_write(d, off, len, ext, layer, max, true)
		     : map_read(d, off, len, ext, layer, max);
}

/* Zero part of one cluster by writing zeroes into it (unless it reads as
 * zeroes already). */
static int zero_partial(struct disk *d, uint64_t off, uint64_t len)
{
	struct qcow2 *q = Q(d);
	struct disk_extent x;
	uint64_t *tbl, e;
	void *z;
	int ret = q2_l2_get(q, l1_index(q, off), false, &tbl);

	if (ret)
		return ret;
	e = tbl ? tbl[l2_index(q, off)] : 0;
	if (l2e_zero(e) || (l2e_unallocated(e) && (!d->backing || off >= d->backing->size)))
		return 0;
	ret = map_write(d, off, len, &x, NULL, 1, false);
	if (ret < 0)
		return ret;
	z = calloc(1, len);
	if (!z)
		return disk_fail(d, -ENOMEM, "out of memory");
	ret = disk_pwrite_full(d->fd, z, len, x.host_off);
	free(z);
	return ret ? disk_fail(d, ret, "writing zeroes: %s", strerror(-ret)) : 0;
}

/* Make whole clusters read as zeroes through their L2 entries. */
static int zero_clusters(struct disk *d, uint64_t off, uint64_t end, bool may_unmap)
{
	struct qcow2 *q = Q(d);
	bool need_flag = d->backing != NULL;
	int ret;

	while (off < end) {
		uint64_t l1i = l1_index(q, off), *tbl, e, ne, old;

		ret = q2_l2_get(q, l1i, need_flag, &tbl);
		if (ret)
			return ret;
		if (!tbl) { /* no table and nothing below: already zero */
			uint64_t span = 1ull << (q->cluster_bits + q->l2_bits);

			off = ALIGN_DOWN(off, span) + span;
			continue;
		}
		e = tbl[l2_index(q, off)];
		old = e & L2E_OFFSET_MASK;
		if (!may_unmap && !(e & L2E_COMPRESSED) && (e & L2E_COPIED) && old)
			ne = old | L2E_COPIED | L2E_ZERO; /* keep the allocation */
		else
			ne = need_flag || l2e_zero(e) ? L2E_ZERO : 0;
		if (ne != e) {
			if (e & L2E_COMPRESSED)
				ret = q2_free_compressed(q, e);
			else if (old && !(ne & L2E_OFFSET_MASK))
				ret = q2_free_later(q, old);
			if (ret)
				return ret;
			if ((ret = q2_l2_get(q, l1i, true, &tbl)))
				return ret;
			tbl[l2_index(q, off)] = ne;
			q2_l2_mark_dirty(q, l1i);
		}
		off += q->cluster_size;
	}
	return 0;
}

int qcow2_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap)
{
	struct qcow2 *q = Q(d);
	uint64_t cs = q->cluster_size, end = off + len;
	int ret = 0;

	if ((ret = q2_writable(q)))
		return ret;
	if (d->backing_name && !d->backing)
		return disk_fail(d, -EROFS, "opened without its backing chain: no data writes");
	while (!ret && off < end) {
		uint64_t cl = ALIGN_DOWN(off, cs), stop = MIN(end, cl + cs);
		/* the disk may end inside a cluster: that cluster counts as whole */
		bool whole = off == cl && (stop == cl + cs || stop == d->size);

		if (!whole) {
			ret = zero_partial(d, off, stop - off);
			off = stop;
			continue;
		}
		stop = end == d->size ? ALIGN_UP(end, cs) : ALIGN_DOWN(end, cs);
		ret = zero_clusters(d, off, stop, may_unmap);
		off = MIN(stop, end);
	}
	return ret;
}

int qcow2_discard(struct disk *d, uint64_t off, uint64_t len)
{
	return qcow2_write_zeroes(d, off, len, true);
}

int qcow2_allocated(struct disk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	struct qcow2 *q = Q(d);
	uint64_t r = 0;
	bool first = true;

	*alloc = false;
	while (r < len) {
		uint64_t o = off + r, *tbl, step = q->cluster_size - (o & (q->cluster_size - 1));
		int ret = q2_l2_get(q, l1_index(q, o), false, &tbl);
		bool a;

		if (ret)
			return ret;
		if (!tbl) {
			uint64_t span = 1ull << (q->cluster_bits + q->l2_bits);

			step = span - (o & (span - 1));
			a = false;
		} else {
			a = !l2e_unallocated(tbl[l2_index(q, o)]);
		}
		if (first)
			*alloc = a;
		else if (a != *alloc)
			break;
		first = false;
		r += step;
	}
	*run = MIN(r, len);
	return 0;
}
