/* replica_adopt.c: points made from disks that hold them already, without
 * a copy (reverse replication, docs/replica.md "Planned failover"): the old
 * primary's disk, whose content is the last point both hosts share, becomes
 * the base of a store (a qcow2 layer over it), or, when that disk is a VM's
 * layer over this very store (a failback), the layer itself becomes the
 * store's next point. */
#include "replica.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"
#include "disk_priv.h"

#define ADOPT_TMP ".tmp-adopt.qcow2"

static int put_point_name(int dfd, const char *point)
{
	size_t n = strlen(point);
	int fd, ret = 0;

	fd = openat(dfd, ".tmp-base.point", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, point, n) != (ssize_t)n)
		ret = errno ? -errno : -EIO;
	else if (fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && renameat(dfd, ".tmp-base.point", dfd, "base.point"))
		ret = -errno;
	if (ret)
		unlinkat(dfd, ".tmp-base.point", 0);
	return ret;
}

int replica_adopt_base(struct replica *r, const char *image, int fmt, const char *point,
		       char *err, size_t errlen)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .backing_fmt = (enum disk_format)fmt,
				      .backing_fmt_explicit = true };
	char abs[PATH_MAX], tmp[PATH_MAX + 32], e2[256];
	unsigned n;
	int ret, dfd = replica_dirfd(r);

	if (!replica_name_ok(point))
		return disk_errf(err, errlen, -EINVAL, "'%.31s' is not a valid point name", point);
	if ((ret = replica_points(r, NULL, 0, &n, err, errlen)))
		return ret;
	if (n)
		return disk_errf(err, errlen, -EEXIST, "the store has %u points already", n);
	if (!realpath(image, abs))
		return disk_errf(err, errlen, -errno, "%s: %s", image, strerror(errno));
	if ((size_t)snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d/" ADOPT_TMP, dfd) >= sizeof(tmp))
		return disk_errf(err, errlen, -ENAMETOOLONG, "path too long");
	/* An empty layer over the image: the image is the point's content and
	 * is never written again (merges write into the layer). */
	o.backing = abs;
	unlinkat(dfd, ADOPT_TMP, 0);
	if ((ret = disk_create(tmp, &o, e2, sizeof(e2))))
		return disk_errf(err, errlen, ret, "a layer over %s: %s", abs, e2);
	if ((ret = put_point_name(dfd, point)) ||
	    (renameat(dfd, ADOPT_TMP, dfd, REPLICA_BASE) ? (ret = -errno) : 0) ||
	    (fsync(dfd) ? (ret = -errno) : 0)) {
		unlinkat(dfd, ADOPT_TMP, 0);
		unlinkat(dfd, "base.point", 0);
		return disk_errf(err, errlen, ret, "making the base: %s", strerror(-ret));
	}
	return 0;
}

int replica_adopt_layer(struct replica *r, const char *layer, const char *point, char *err,
			size_t errlen)
{
	struct replica_point *pts = NULL;
	char file[REPLICA_FILE_MAX], path[PATH_MAX + REPLICA_FILE_MAX + 32], e2[256];
	unsigned n = 0, max = 0;
	struct disk *d;
	int ret, dfd = replica_dirfd(r);

	if (!replica_name_ok(point))
		return disk_errf(err, errlen, -EINVAL, "'%.31s' is not a valid point name", point);
	if ((ret = replica_points(r, NULL, 0, &max, err, errlen)))
		return ret;
	if (!max)
		return disk_errf(err, errlen, -ENOENT, "the store has no point to follow");
	pts = calloc(max, sizeof(*pts));
	if (!pts)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	if ((ret = replica_points(r, pts, max, &n, err, errlen)))
		goto out;
	n = n < max ? n : max;
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(pts[i].name, point)) {
			ret = disk_errf(err, errlen, -EEXIST, "point %s is already there", point);
			goto out;
		}
	if (pts[n - 1].seq >= 999999) {
		ret = disk_errf(err, errlen, -EOVERFLOW, "point numbers are used up");
		goto out;
	}
	snprintf(file, sizeof(file), "p%06u-%s.qcow2", pts[n - 1].seq + 1, point);
	if (renameat(AT_FDCWD, layer, dfd, file)) {
		ret = disk_errf(err, errlen, -errno, "%s into the store: %s", layer, strerror(errno));
		goto out;
	}
	if (fsync(dfd)) {
		ret = disk_errf(err, errlen, -errno, "syncing the store: %s", strerror(errno));
		goto out;
	}
	/* Its backing named as the store's layers name theirs (relative); the
	 * absolute name it had works too, so a failure here loses nothing. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, file);
	if (!disk_open(&d, path, DISK_FMT_QCOW2, 0, e2, sizeof(e2))) {
		if (disk_rebase(d, pts[n - 1].file, DISK_FMT_QCOW2, true))
			(void)0; /* keeps the absolute name */
		disk_close(d);
	}
	ret = 0;
out:
	free(pts);
	return ret;
}
