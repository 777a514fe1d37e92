/* qcow2_create.c: creating qcow2 images (layout of header, refcount table,
 * refcount blocks and L1 table; optional preallocated L2 tables), growing
 * and shrinking them, and the qcow2 part of disk_get_info. */
#include "qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + !!(a % b);
}

/* The backing file's size and format, when the caller did not force them. */
static int backing_facts(const char *path, const struct disk_create_opts *o, uint64_t *size,
                         int *fmt, char *err, size_t errlen)
{
	char sub[512], *bp = disk_backing_path(path, o->backing);
	struct disk *b;
	int ret;

	if (!bp)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	ret = disk_open(&b, bp, o->backing_fmt_explicit ? (int)o->backing_fmt : -1,
	                DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING, sub, sizeof(sub));
	free(bp);
	if (ret) {
		if (o->size && o->backing_fmt_explicit) { /* may not exist yet */
			*size = o->size;
			*fmt = o->backing_fmt;
			return 0;
		}
		return disk_errf(err, errlen, ret, "backing file: %s", sub);
	}
	*size = disk_size(b);
	*fmt = disk_format_of(b);
	return disk_close(b);
}

static int write_layout(int fd, struct qcow2 *q, uint64_t total)
{
	uint64_t cs = q->cluster_size, epb = 1ull << q->rb_bits;
	uint8_t *buf = calloc(1, cs);
	uint64_t rb0 = (1 + q->rt_clusters) * cs, nrb = div_up(total, epb);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = q2_build_header(q, buf, cs);
	if (!ret)
		ret = disk_pwrite_full(fd, buf, cs, 0);
	/* refcount table: entries to the blocks that follow it */
	for (uint64_t i = 0; !ret && i < q->rt_clusters; i++) {
		memset(buf, 0, cs);
		for (uint64_t k = 0; k < cs / 8; k++) {
			uint64_t rbi = i * (cs / 8) + k;

			if (rbi < nrb)
				be64_put(buf + 8 * k, rb0 + rbi * cs);
		}
		ret = disk_pwrite_full(fd, buf, cs, (1 + i) * cs);
	}
	/* refcount blocks: 1 for every cluster of the layout */
	for (uint64_t i = 0; !ret && i < nrb; i++) {
		memset(buf, 0, cs);
		for (uint64_t k = 0; k < epb && i * epb + k < total; k++)
			be16_put(buf + 2 * k, 1);
		ret = disk_pwrite_full(fd, buf, cs, rb0 + i * cs);
	}
	free(buf);
	if (!ret && ftruncate(fd, (off_t)(total * cs)) < 0)
		ret = -errno;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	return ret;
}

static int preallocate(const char *path, char *err, size_t errlen)
{
	struct disk *d;
	struct qcow2 *q;
	int ret = disk_open(&d, path, DISK_FMT_QCOW2, DISK_NO_BACKING, err, errlen);

	if (ret)
		return ret;
	q = Q(d);
	for (uint64_t i = 0; !ret && i < q->l1_size; i++) {
		uint64_t *tbl;

		ret = q2_l2_get(q, i, true, &tbl);
		if (!ret && q2_dirty_bytes(q) >= QCOW2_DIRTY_LIMIT)
			ret = qcow2_flush(d);
	}
	if (ret)
		disk_errf(err, errlen, ret, "preallocating metadata: %s", d->err);
	ret = disk_close(d) ?: ret;
	return ret;
}

int qcow2_create(const char *path, const struct disk_create_opts *o, char *err, size_t errlen)
{
	struct disk dd = {.fd = -1, .backing_fmt = -1};
	struct qcow2 q = {.d = &dd};
	unsigned cb = o->cluster_bits ? o->cluster_bits : 16;
	uint64_t size = o->size, cs, l1_entries, total, b = 1;
	int fd, ret, bfmt = -1;
	struct stat st;

	if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS)
		return disk_errf(err, errlen, -EINVAL, "cluster size must be 512 B..2 MiB");
	if (o->backing) {
		uint64_t bsize = 0;

		ret = backing_facts(path, o, &bsize, &bfmt, err, errlen);
		if (ret)
			return ret;
		if (!size)
			size = bsize;
		dd.backing_name = (char *)o->backing;
		dd.backing_fmt = bfmt;
	}
	/* qcow2 sizes are whole 512-byte sectors (QEMU reads the header's size
	 * rounded down): round up, as qemu-img does, so no byte is lost. */
	if (size > (1ull << 62))
		return disk_errf(err, errlen, -EFBIG, "%llu bytes is too large",
		                 (unsigned long long)size);
	size = ALIGN_UP(size, 512);
	cs = 1ull << cb;
	l1_entries = MAX(div_up(size, cs * (cs / 8)), 1);
	if (l1_entries * 8 > QCOW2_MAX_L1_BYTES || size > (1ull << 62))
		return disk_errf(err, errlen, -EFBIG,
		                 "%llu bytes is too large for %llu-byte clusters",
		                 (unsigned long long)size, (unsigned long long)cs);
	q.version = 3;
	q.cluster_bits = cb;
	q.cluster_size = cs;
	q.l2_bits = cb - 3;
	q.refcount_order = 4;
	q.rb_bits = cb + 3 - 4;
	q.l1_size = l1_entries;
	dd.size = size;
	/* header + refcount table + blocks + L1: the blocks cover all of it */
	for (;;) {
		uint64_t l1c = div_up(l1_entries * 8, cs), r = div_up(b * 8, cs);

		total = 1 + r + b + l1c;
		if (div_up(total, 1ull << q.rb_bits) <= b) {
			q.rt_clusters = r;
			q.l1_off = (1 + r + b) * cs;
			break;
		}
		b = div_up(total, 1ull << q.rb_bits);
	}
	q.rt_off = cs;
	if (q.rt_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
		return disk_errf(err, errlen, -EFBIG, "image too large");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
	if (fd < 0)
		return disk_errf(err, errlen, -errno, "cannot create %s: %s", path,
		                 strerror(errno));
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		close(fd);
		return disk_errf(err, errlen, -EINVAL, "%s is not a regular file", path);
	}
	ret = disk_lock_fd(fd, true, path, err, errlen);
	if (!ret && ftruncate(fd, 0) < 0)
		ret =
		    disk_errf(err, errlen, -errno, "cannot truncate %s: %s", path, strerror(errno));
	if (!ret && (ret = write_layout(fd, &q, total)))
		disk_errf(err, errlen, ret, "writing %s: %s", path,
		          ret == -ENOSPC ? "the backing name does not fit in the header cluster"
		                         : strerror(-ret));
	close(fd);
	if (!ret && o->preallocate_metadata)
		ret = preallocate(path, err, errlen);
	return ret;
}

static int tail_is_empty(struct qcow2 *q, uint64_t from, uint64_t to)
{
	for (uint64_t c = ALIGN_UP(from, q->cluster_size); c < to; c += q->cluster_size) {
		uint64_t l1i = c >> (q->cluster_bits + q->l2_bits), *tbl;
		int ret = q2_l2_get(q, l1i, false, &tbl);

		if (ret)
			return ret;
		if (tbl && (tbl[(c >> q->cluster_bits) & ((1ull << q->l2_bits) - 1)] & ~L2E_ZERO))
			return disk_fail(
			    q->d, -ENOTSUP,
			    "the part to cut off holds data (at %#llx): discard it first",
			    (unsigned long long)c);
	}
	return 0;
}

static int grow_l1(struct qcow2 *q, uint64_t entries)
{
	uint64_t cs = q->cluster_size, n = div_up(entries * 8, cs), off;
	uint64_t old_off = q->l1_off, old_n = div_up(q->l1_size * 8, cs);
	bool fresh;
	int ret;

	if (entries * 8 > QCOW2_MAX_L1_BYTES)
		return disk_fail(q->d, -EFBIG, "the L1 table would exceed 32 MiB");
	if ((ret = q2_table_grow(q, &q->l1, q->l1_size, entries, &q->l2c)))
		return ret;
	if ((ret = q2_alloc(q, n, &off, &fresh)))
		return ret;
	q->l1_off = off;
	q->l1_size = entries;
	q->l1_dirty = q->header_dirty = true;
	for (uint64_t i = 0; i < old_n && old_off; i++)
		if ((ret = q2_free_later(q, old_off + i * cs)))
			return ret;
	return 0;
}

int qcow2_resize(struct disk *d, uint64_t size, bool allow_shrink)
{
	struct qcow2 *q = Q(d);
	uint64_t span = 1ull << (q->cluster_bits + q->l2_bits), need = div_up(size, span);
	int ret;

	if (size > (1ull << 62))
		return disk_fail(d, -EFBIG, "size too large");
	if ((ret = qcow2_flush(d)))
		return ret;
	if (size < d->size && (ret = tail_is_empty(q, size, d->size)))
		return ret;
	if (need > q->l1_size && (ret = grow_l1(q, need)))
		return ret;
	d->size = size;
	q->header_dirty = true;
	return qcow2_flush(d);
}

int qcow2_info(struct disk *d, struct disk_info *info)
{
	struct qcow2 *q = Q(d);
	uint64_t n = 0;

	info->cluster_bits = q->cluster_bits;
	info->lazy_refcounts = q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
	info->dirty = q->incompat & QCOW2_INCOMPAT_DIRTY;
	info->corrupt = q->incompat & QCOW2_INCOMPAT_CORRUPT;
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t *tbl;
		int ret;

		if (!(q->l1[i] & L1E_OFFSET_MASK))
			continue;
		if ((ret = q2_l2_get(q, i, false, &tbl)))
			return ret;
		for (uint64_t k = 0; tbl && k < (1ull << q->l2_bits); k++) {
			uint64_t e = tbl[k];

			n += (e & L2E_COMPRESSED) || ((e & L2E_OFFSET_MASK) && !(e & L2E_ZERO));
		}
	}
	info->allocated = n << q->cluster_bits;
	return 0;
}
