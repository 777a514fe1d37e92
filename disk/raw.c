/* raw.c: raw images (regular files and block devices): one DATA extent per
 * request on the image's own fd; discard punches holes, write_zeroes uses
 * FALLOC_FL_ZERO_RANGE with fallbacks. */
#include "disk_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool raw_is_blockdev(const struct disk *d)
{
	struct stat st;

	return fstat(d->fd, &st) == 0 && S_ISBLK(st.st_mode);
}

int raw_open(struct disk *d, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return disk_errf(err, errlen, -errno, "cannot stat %s: %s", d->path,
				 strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0)
			return disk_errf(err, errlen, -errno, "cannot size block device %s: %s",
					 d->path, strerror(errno));
	} else {
		d->size = (uint64_t)st.st_size;
	}
	return 0;
}

static int raw_map(struct disk *d, uint64_t off, uint64_t len, bool write,
		   struct disk_extent *ext, struct disk **layer, unsigned max)
{
	ext[0] = (struct disk_extent){ .off = off, .len = len, .kind = DISK_EXT_DATA,
				       .fd = d->fd, .host_off = off };
	if (layer)
		layer[0] = d;
	return 1;
}

static int raw_read_slow(struct disk *d, void *buf, size_t len, uint64_t off)
{
	return disk_pread_full(d->fd, buf, len, off);
}

static int raw_flush(struct disk *d)
{
	if (d->open_flags & DISK_PRIV_NO_SYNC)
		return 0;
	if (fdatasync(d->fd) < 0)
		return disk_fail(d, -errno, "fdatasync: %s", strerror(errno));
	return 0;
}

static int raw_write_zero_buf(struct disk *d, uint64_t off, uint64_t len)
{
	size_t chunk = (size_t)MIN(len, MiB(1));
	void *z = calloc(1, chunk);
	int ret = 0;

	if (!z)
		return disk_fail(d, -ENOMEM, "out of memory");
	while (len && !ret) {
		size_t n = (size_t)MIN(len, chunk);

		ret = disk_pwrite_full(d->fd, z, n, off);
		off += n;
		len -= n;
	}
	free(z);
	return ret ? disk_fail(d, ret, "writing zeroes: %s", strerror(-ret)) : 0;
}

static int raw_discard(struct disk *d, uint64_t off, uint64_t len)
{
	if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS)
		return 0; /* discard is advisory */
	return disk_fail(d, -errno, "punching a hole: %s", strerror(errno));
}

static int raw_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap)
{
	if (may_unmap && !raw_is_blockdev(d) &&
	    fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (fallocate(d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return disk_fail(d, -errno, "zeroing a range: %s", strerror(errno));
	return raw_write_zero_buf(d, off, len);
}

static int raw_resize(struct disk *d, uint64_t size, bool allow_shrink)
{
	if (raw_is_blockdev(d))
		return disk_fail(d, -ENOTSUP, "a block device cannot be resized");
	if (size > (uint64_t)INT64_MAX)
		return disk_fail(d, -EINVAL, "size too large");
	if (ftruncate(d->fd, (off_t)size) < 0)
		return disk_fail(d, -errno, "ftruncate: %s", strerror(errno));
	d->size = size;
	return 0;
}

static int raw_set_backing(struct disk *d, const char *name, enum disk_format fmt)
{
	return disk_fail(d, -ENOTSUP, "raw images have no backing file");
}

const struct disk_ops raw_ops = {
	.map = raw_map,
	.read_slow = raw_read_slow,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.resize = raw_resize,
	.set_backing = raw_set_backing,
};

int raw_create(const char *path, const struct disk_create_opts *o, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
	struct stat st;
	int ret;

	if (fd < 0)
		return disk_errf(err, errlen, -errno, "cannot create %s: %s", path, strerror(errno));
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return disk_errf(err, errlen, -EINVAL, "%s is neither a file nor a block device",
		                 path);
	}
	/* Never truncate an image a VM has open. */
	ret = disk_lock_fd(fd, true, path, err, errlen);
	if (ret)
		goto out;
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		ret = disk_errf(err, errlen, -EINVAL, "%s is a block device", path);
		goto out;
	}
	if (o->size > (uint64_t)INT64_MAX) {
		ret = disk_errf(err, errlen, -EINVAL, "size too large");
		goto out;
	}
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)o->size) < 0) {
		ret = disk_errf(err, errlen, -errno, "cannot size %s: %s", path, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0)
		ret = disk_errf(err, errlen, -errno, "fsync %s: %s", path, strerror(errno));
out:
	close(fd);
	return ret;
}
