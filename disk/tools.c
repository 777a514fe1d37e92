/* tools.c: the image tools that work on whole chains: convert (flattening,
 * zero ranges left unallocated), commit (top layer into its backing file)
 * and rebase (safe: copy what differs between old and new chains; unsafe:
 * header only). */
#include "disk_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#define CHUNK MiB(2)

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/* Whether [off, off+len) of the chain reads as zeroes without reading data. */
static int range_is_hole(struct disk *d, uint64_t off, uint64_t len, bool *hole)
{
	struct disk_extent ext[8];
	uint64_t done = 0;

	while (done < len) {
		int n = d->ops->map(d, off + done, len - done, false, ext, NULL, ARRAY_SIZE(ext));

		if (n <= 0)
			return n < 0 ? n : -EIO;
		for (int i = 0; i < n; i++) {
			if (ext[i].kind != DISK_EXT_ZERO) {
				*hole = false;
				return 0;
			}
			done += ext[i].len;
		}
	}
	*hole = true;
	return 0;
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

int disk_convert(struct disk *src, const char *dst_path, const struct disk_create_opts *o,
                 char *err, size_t errlen)
{
	struct disk_create_opts co = *o;
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
	ret = disk_open(&dst, dst_path, co.fmt, 0, err, errlen);
	if (ret)
		return ret;
	ret = disk_get_info(dst, &info);
	grain = co.fmt == DISK_FMT_QCOW2 ? (size_t)1 << info.cluster_bits : 4096;
	buf = malloc(CHUNK);
	if (!buf)
		ret = disk_fail(dst, -ENOMEM, "out of memory");
	for (uint64_t off = 0; !ret && off < src->size; off += CHUNK) {
		size_t n = (size_t)MIN(CHUNK, src->size - off);
		bool hole;

		ret = range_is_hole(src, off, n, &hole);
		if (ret) {
			disk_errf(err, errlen, ret, "reading the source: %s", src->err);
			break;
		}
		if (hole)
			continue;
		ret = disk_pread(src, buf, n, off);
		if (ret) {
			disk_errf(err, errlen, ret, "reading the source: %s", src->err);
			break;
		}
		ret = write_sparse(dst, buf, off, n, grain);
		if (ret)
			disk_errf(err, errlen, ret, "writing %s: %s", dst_path, dst->err);
	}
	free(buf);
	if (ret && !err[0])
		disk_errf(err, errlen, ret, "%s", dst->err);
	if (disk_close(dst) && !ret)
		ret = disk_errf(err, errlen, -EIO, "flushing %s failed", dst_path);
	return ret;
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
