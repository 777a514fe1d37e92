/* tools.c: the image tools that work on whole chains: convert (flattening,
 * zero ranges left unallocated), commit (top layer into its backing file)
 * and rebase (safe: copy what differs between old and new chains; unsafe:
 * header only). */
#include "disk_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define CHUNK MiB(8)

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* Write buf (the chain content at off) into dst, skipping all-zero blocks
 * of `grain` bytes so that they stay unallocated. */
static int write_sparse(struct disk *dst, const uint8_t *buf, uint64_t off, size_t len,
                        size_t grain)
{
	size_t i = 0;

	while (i < len) {
		size_t start, n = MIN(grain, len - i);

		if (all_zero(buf + i, n)) {
			i += n;
			continue;
		}
		start = i;
		while (i < len && !all_zero(buf + i, MIN(grain, len - i)))
			i += MIN(grain, len - i);
		int ret = disk_pwrite(dst, buf + start, i - start, off + start);

		if (ret)
			return ret;
	}
	return 0;
}

/* Copy len bytes of file data from (fd, from) to the raw file dst at `to`
 * in the kernel (copy_file_range: no copy through user space, a reflink
 * where the file system offers one); pread/pwrite where it cannot. */
static int copy_file_data(int fd, uint64_t from, struct disk *dst, int dst_fd, uint64_t to,
                          uint64_t len, uint8_t *buf)
{
	bool kernel = true;

	while (len) {
		ssize_t r = -1;

		if (kernel) {
			loff_t a = (loff_t)from, b = (loff_t)to;

			r = copy_file_range(fd, &a, dst_fd, &b, (size_t)MIN(len, CHUNK), 0);
			if (r < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			              errno == EOPNOTSUPP || errno == EBADF))
				kernel = false;
			else if (r < 0)
				return disk_fail(dst, -errno, "copy_file_range: %s",
				                 strerror(errno));
		}
		if (!kernel) {
			size_t n = (size_t)MIN(len, CHUNK);
			int ret = disk_pread_full(fd, buf, n, from);

			if (!ret)
				ret = disk_pwrite_full(dst_fd, buf, n, to);
			if (ret)
				return disk_fail(dst, ret, "copying data: %s", strerror(-ret));
			r = (ssize_t)n;
		}
		if (r == 0)
			return disk_fail(dst, -EIO, "copy_file_range: unexpected end of file");
		from += (uint64_t)r;
		to += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* One DATA extent of the source into dst: only the parts of the host file
 * that hold data (SEEK_DATA/SEEK_HOLE: holes of raw files are not read),
 * copied in the kernel into a raw destination (zeroes inside data runs are
 * copied as they are), read into buf for a qcow2 one (zero blocks of
 * `grain` bytes stay unallocated). */
static int convert_extent(const struct disk_extent *e, struct disk *dst, uint8_t *buf,
                          size_t grain)
{
	uint64_t pos = e->host_off, end = e->host_off + e->len;

	while (pos < end) {
		off_t data = lseek(e->fd, (off_t)pos, SEEK_DATA), hole;
		uint64_t run_end;
		int ret;

		if (data < 0 && errno == ENXIO)
			return 0; /* holes to the end of the file */
		if (data < 0) {
			data = (off_t)pos; /* no SEEK_DATA here: all of it is data */
			hole = (off_t)end;
		} else {
			hole = lseek(e->fd, data, SEEK_HOLE);
			if (hole < 0)
				hole = (off_t)end;
		}
		if ((uint64_t)data >= end)
			return 0;
		run_end = MIN((uint64_t)hole, end);
		for (uint64_t p = (uint64_t)data; p < run_end;) {
			uint64_t n = MIN(run_end - p, CHUNK), goff = e->off + (p - e->host_off);

			if (dst->fmt == DISK_FMT_RAW) {
				ret = copy_file_data(e->fd, p, dst, dst->fd, goff, run_end - p,
				                     buf);
				n = run_end - p;
			} else {
				/* read: zero blocks stay unallocated, as qemu-img's */
				ret = disk_pread_full(e->fd, buf, (size_t)n, p);
				if (ret)
					ret = disk_fail(dst, ret, "reading the source: %s",
					                strerror(-ret));
				else
					ret = write_sparse(dst, buf, goff, (size_t)n, grain);
			}
			if (ret)
				return ret;
			p += n;
		}
		pos = run_end;
	}
	return 0;
}

int disk_convert(struct disk *src, const char *dst_path, const struct disk_create_opts *o,
                 char *err, size_t errlen)
{
	struct disk_create_opts co = *o;
	struct disk_extent ext[64];
	struct disk *layer[64];
	struct disk_info info;
	struct disk *dst;
	uint8_t *buf;
	size_t grain;
	int ret;

	if (o->backing)
		return disk_errf(err, errlen, -ENOTSUP,
		                 "convert writes a flat image (no backing file)");
	co.size = src->size;
	ret = disk_create(dst_path, &co, err, errlen);
	if (ret)
		return ret;
	ret = disk_open(&dst, dst_path, co.fmt, DISK_PRIV_NO_SYNC, err, errlen);
	if (ret)
		return ret;
	ret = disk_get_info(dst, &info);
	grain = co.fmt == DISK_FMT_QCOW2 ? (size_t)1 << info.cluster_bits : 4096;
	buf = malloc(CHUNK);
	if (!buf)
		ret = disk_fail(dst, -ENOMEM, "out of memory");
	/* Walk the chain's extents: zero ranges are skipped unread, data is
	 * moved straight from the file that holds it, compressed clusters
	 * (SLOW) are read through the library. */
	for (uint64_t off = 0; !ret && off < src->size;) {
		int n = src->ops->map(src, off, src->size - off, false, ext, layer,
		                      ARRAY_SIZE(ext));

		if (n <= 0) {
			ret = n < 0 ? n : -EIO;
			disk_errf(err, errlen, ret, "reading the source: %s", src->err);
			break;
		}
		for (int i = 0; !ret && i < n; i++) {
			const struct disk_extent *e = &ext[i];

			if (e->kind == DISK_EXT_DATA) {
				ret = convert_extent(e, dst, buf, grain);
			} else if (e->kind == DISK_EXT_SLOW) {
				for (uint64_t p = 0; !ret && p < e->len; p += CHUNK) {
					size_t k = (size_t)MIN(CHUNK, e->len - p);

					ret = disk_pread(src, buf, k, e->off + p);
					if (ret)
						disk_errf(err, errlen, ret,
						          "reading the source: %s", src->err);
					else
						ret = write_sparse(dst, buf, e->off + p, k, grain);
				}
			}
			off = e->off + e->len;
		}
		if (!ret && (ret = disk_progress_report(src, off, src->size)))
			disk_errf(err, errlen, ret, "%s", src->err);
		if (ret && !err[0])
			disk_errf(err, errlen, ret, "writing %s: %s", dst_path, dst->err);
	}
	free(buf);
	if (ret && !err[0])
		disk_errf(err, errlen, ret, "%s", dst->err);
	if (disk_close(dst) && !ret)
		ret = disk_errf(err, errlen, -EIO, "flushing %s failed", dst_path);
	return ret;
}

void disk_set_progress(struct disk *d, int (*fn)(void *arg, uint64_t done, uint64_t total),
		       void *arg)
{
	d->progress = fn;
	d->progress_arg = arg;
}

int disk_progress_report(struct disk *d, uint64_t done, uint64_t total)
{
	if (!d->progress || !d->progress(d->progress_arg, done, total))
		return 0;
	return disk_fail(d, -ECANCELED, "cancelled");
}

/* A writable layer that was opened read-write for a tool becomes a
 * read-only member of the chain again. */
static int make_readonly(struct disk *w)
{
	int ret = disk_flush(w);

	if (ret)
		return ret;
	if (flock(w->fd, LOCK_SH | LOCK_NB) < 0)
		return disk_fail(w, -errno, "cannot downgrade the lock: %s", strerror(errno));
	w->readonly = true;
	w->locked_ex = false;
	return 0;
}

static int commit_copy(struct disk *d, struct disk *w)
{
	uint8_t *buf = malloc(CHUNK);
	uint64_t off = 0;
	int ret = 0;

	if (!buf)
		return disk_fail(d, -ENOMEM, "out of memory");
	while (!ret && off < d->size) {
		uint64_t run;
		bool alloc;

		ret = disk_layer_allocated(d, off, MIN(CHUNK, d->size - off), &alloc, &run);
		if (ret || !alloc) {
			off += run;
			continue;
		}
		ret = disk_read_layer(d, buf, (size_t)run, off);
		if (!ret) {
			if (all_zero(buf, (size_t)run))
				ret = disk_write_zeroes(w, off, run, false);
			else
				ret = disk_pwrite(w, buf, (size_t)run, off);
			if (ret)
				ret = disk_fail(d, ret, "writing the backing file: %s", w->err);
		}
		off += run;
	}
	free(buf);
	return ret;
}

int disk_commit(struct disk *d)
{
	char err[512], *path;
	struct disk *w;
	int fmt, ret, ret2;

	if (!d->backing)
		return disk_fail(d, -EINVAL, "the image has no (open) backing file");
	if (!d->backing->path)
		return disk_fail(d, -ENOTSUP, "the backing file was opened without a path");
	if (!d->readonly && (ret = disk_flush(d)))
		return ret;
	path = strdup(d->backing->path);
	if (!path)
		return disk_fail(d, -ENOMEM, "out of memory");
	fmt = d->backing->fmt;
	/* Our own shared lock would block the exclusive one: close first. */
	disk_close(d->backing);
	d->backing = NULL;
	ret = disk_open(&w, path, fmt, 0, err, sizeof(err));
	if (ret) {
		disk_fail(d, ret, "cannot open the backing file for writing: %s", err);
		ret2 = disk_open(&d->backing, path, fmt, DISK_RDONLY, err, sizeof(err));
		free(path);
		return ret2 ? disk_fail(d, ret2, "cannot reopen the backing file: %s", err) : ret;
	}
	free(path);
	ret = 0;
	if (w->size < d->size && (ret = disk_resize(w, d->size, false)))
		disk_fail(d, ret, "growing the backing file: %s", w->err);
	if (!ret)
		ret = commit_copy(d, w);
	ret2 = make_readonly(w);
	d->backing = w;
	if (!ret && ret2)
		ret = disk_fail(d, ret2, "%s", w->err);
	return ret;
}

/* Copy into the top layer the clusters it does not allocate whose content
 * differs between the old chain and `nb` (NULL: all zeroes). */
static int rebase_copy(struct disk *d, struct disk *nb, uint64_t grain)
{
	uint8_t *a = malloc(grain), *b = malloc(grain);
	int ret = 0;

	if (!a || !b) {
		free(a);
		free(b);
		return disk_fail(d, -ENOMEM, "out of memory");
	}
	for (uint64_t off = 0; !ret && off < d->size; off += grain) {
		size_t n = (size_t)MIN(grain, d->size - off);
		uint64_t run;
		bool alloc;

		ret = disk_layer_allocated(d, off, n, &alloc, &run);
		if (ret || alloc)
			continue;
		ret = disk_read_layer(d->backing, a, n, off);
		if (!ret && nb)
			ret = disk_read_layer(nb, b, n, off);
		else if (!ret)
			memset(b, 0, n);
		if (ret) {
			ret = disk_fail(d, ret, "reading the backing chains");
			break;
		}
		if (memcmp(a, b, n))
			ret = disk_pwrite(d, a, n, off);
	}
	free(a);
	free(b);
	return ret;
}

int disk_rebase(struct disk *d, const char *new_backing, enum disk_format fmt, bool unsafe)
{
	struct disk_info info;
	struct disk *nb = NULL;
	char err[512];
	int ret;

	if (d->readonly)
		return disk_fail(d, -EROFS, "the image is open read-only");
	if (d->fmt != DISK_FMT_QCOW2)
		return disk_fail(d, -ENOTSUP, "only qcow2 images have a backing file");
	if (new_backing && !*new_backing)
		new_backing = NULL;
	if (new_backing) {
		char *p = disk_backing_path(d->path, new_backing);

		if (!p)
			return disk_fail(d, -ENOMEM, "out of memory");
		/* A chain through this very image would be a loop; unlocked
		 * first, or our own write lock would hide it as "in use". */
		ret = disk_open(&nb, p, fmt, DISK_RDONLY | DISK_NO_LOCK, err, sizeof(err));
		if (!ret) {
			bool loop = false;

			for (struct disk *l = nb; l; l = l->backing)
				loop |= l->dev == d->dev && l->ino == d->ino;
			disk_close(nb);
			nb = NULL;
			if (loop) {
				free(p);
				return disk_fail(d, -ELOOP, "%s would make a backing chain loop",
				                 new_backing);
			}
		}
		ret = disk_open(&nb, p, fmt, DISK_RDONLY, err, sizeof(err));
		free(p);
		if (ret && !unsafe)
			return disk_fail(d, ret, "new backing file: %s", err);
		if (ret)
			nb = NULL;
	}
	if (!unsafe) {
		if (d->backing_name && !d->backing) {
			disk_close(nb);
			return disk_fail(d, -EINVAL,
			                 "a safe rebase needs the old backing chain open");
		}
		ret = disk_get_info(d, &info);
		if (!ret && d->backing)
			ret = rebase_copy(d, nb, 1ull << info.cluster_bits);
		if (!ret)
			ret = disk_flush(d);
		if (ret) {
			disk_close(nb);
			return ret;
		}
	}
	ret = d->ops->set_backing(d, new_backing, fmt);
	if (ret) {
		disk_close(nb);
		return ret;
	}
	disk_close(d->backing);
	d->backing = nb;
	return 0;
}
