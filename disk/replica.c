/* replica.c: a replica disk's recovery points (replica.h): layers made from
 * checked change sets, renamed into place whole, merged into the base by
 * retention with an intent file that a later open replays. */
#include "replica.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "disk_priv.h"

#define BASE_POINT   "base.point"
#define MERGE_INTENT "merge.intent"
#define LOCK_FILE    ".lock"
#define TMP_PREFIX   ".tmp-"

struct replica {
	int dfd, lockfd;
	char dir[PATH_MAX];
};

bool replica_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n >= CBT_NAME_MAX || !((name[0] >= 'a' && name[0] <= 'z') ||
					 (name[0] >= 'A' && name[0] <= 'Z') ||
					 (name[0] >= '0' && name[0] <= '9')))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* pSEQ-NAME.qcow2: seq and name, or false. */
static bool parse_point_file(const char *f, unsigned *seq, char *name)
{
	size_t n = strlen(f);
	char *end;
	unsigned long v;

	if (f[0] != 'p' || n < 6 + 7 + 2 || strcmp(f + n - 6, ".qcow2") || f[7] != '-')
		return false;
	v = strtoul(f + 1, &end, 10);
	if (end != f + 7 || v == 0 || v > 999999 || n - 6 - 8 >= CBT_NAME_MAX)
		return false;
	memcpy(name, f + 8, n - 6 - 8);
	name[n - 6 - 8] = 0;
	*seq = (unsigned)v;
	return replica_name_ok(name);
}

static int path_of(const struct replica *r, const char *file, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "%s/%s", r->dir, file) < len ? 0 : -ENAMETOOLONG;
}

/* A small file written whole under a temporary name, synced, renamed in. */
static int put_small(struct replica *r, const char *file, const char *text)
{
	char tmp[REPLICA_FILE_MAX + 8];
	size_t n = strlen(text);
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s", file);
	fd = openat(r->dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, n) != (ssize_t)n)
		ret = errno ? -errno : -EIO;
	else if (fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && renameat(r->dfd, tmp, r->dfd, file))
		ret = -errno;
	if (ret)
		unlinkat(r->dfd, tmp, 0);
	else if (fsync(r->dfd))
		ret = -errno;
	return ret;
}

static int get_small(struct replica *r, const char *file, char *out, size_t len)
{
	int fd = openat(r->dfd, file, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

static void point_stat(struct replica *r, struct replica_point *p)
{
	struct stat st;

	if (!fstatat(r->dfd, p->file, &st, 0)) {
		p->file_bytes = (uint64_t)st.st_blocks * 512u;
		p->made_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	}
}

static int cmp_seq(const void *a, const void *b)
{
	const struct replica_point *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every point, sorted, malloc'ed into *out (NULL when none). */
static int scan(struct replica *r, struct replica_point **out, unsigned *nr, char *err,
		size_t errlen)
{
	struct replica_point *pts = NULL;
	unsigned n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	*out = NULL;
	*nr = 0;
	fd = openat(r->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return disk_errf(err, errlen, ret, "%s: %s", r->dir, strerror(-ret));
	}
	while ((de = readdir(d))) {
		struct replica_point p = { 0 };

		if (!strcmp(de->d_name, REPLICA_BASE)) {
			p.seq = 0;
			if (get_small(r, BASE_POINT, p.name, sizeof(p.name)) ||
			    !replica_name_ok(p.name)) {
				ret = disk_errf(err, errlen, -EUCLEAN, "%s: the base has no valid "
						"point name in " BASE_POINT, r->dir);
				break;
			}
		} else if (!parse_point_file(de->d_name, &p.seq, p.name)) {
			continue;
		}
		if (strlen(de->d_name) >= sizeof(p.file))
			continue; /* parse_point_file bounds it: never */
		memcpy(p.file, de->d_name, strlen(de->d_name) + 1);
		point_stat(r, &p);
		if (n == cap) {
			struct replica_point *g = realloc(pts, (cap = cap ? 2 * cap : 16) * sizeof(*g));

			if (!g) {
				ret = disk_errf(err, errlen, -ENOMEM, "out of memory");
				break;
			}
			pts = g;
		}
		pts[n++] = p;
	}
	closedir(d);
	if (!ret && n) {
		qsort(pts, n, sizeof(*pts), cmp_seq);
		if (pts[0].seq != 0)
			ret = disk_errf(err, errlen, -EUCLEAN, "%s: points without a base (%s)",
					r->dir, pts[0].file);
		for (unsigned i = 1; !ret && i < n; i++)
			if (pts[i].seq == pts[i - 1].seq)
				ret = disk_errf(err, errlen, -EUCLEAN, "%s: two points numbered %u",
						r->dir, pts[i].seq);
	}
	if (ret) {
		free(pts);
		return ret;
	}
	*out = pts;
	*nr = n;
	return 0;
}

/* The merge of point file `file` into the base, from wherever a crash left
 * it: every step may run again (the commit rewrites the same clusters, the
 * rebase rewrites the same header). */
static int merge_finish(struct replica *r, const char *file, char *err, size_t errlen)
{
	struct replica_point *pts = NULL;
	unsigned n = 0, seq, i;
	char name[CBT_NAME_MAX], path[PATH_MAX], e2[256];
	struct disk *d;
	int ret;

	if (!parse_point_file(file, &seq, name))
		return disk_errf(err, errlen, -EUCLEAN, "%s: " MERGE_INTENT " names no point (%s)",
				 r->dir, file);
	if (faccessat(r->dfd, file, F_OK, 0)) { /* merged and removed: only the tail is left */
		ret = put_small(r, BASE_POINT, name);
		goto done;
	}
	ret = path_of(r, file, path, sizeof(path));
	if (!ret)
		ret = disk_open(&d, path, DISK_FMT_QCOW2, DISK_RDONLY, e2, sizeof(e2));
	if (ret)
		return disk_errf(err, errlen, ret, "merge of %s: %s", file, e2);
	ret = disk_commit(d);
	if (ret)
		disk_errf(err, errlen, ret, "merge of %s into the base: %s", file, disk_error(d));
	disk_close(d);
	if (ret)
		return ret;
	if ((ret = put_small(r, BASE_POINT, name)))
		return disk_errf(err, errlen, ret, "%s: " BASE_POINT ": %s", r->dir, strerror(-ret));
	if ((ret = scan(r, &pts, &n, err, errlen)))
		return ret;
	for (i = 0; i < n && pts[i].seq <= seq; i++)
		;
	if (i < n) { /* the next point now rests on the base */
		ret = path_of(r, pts[i].file, path, sizeof(path));
		if (!ret && !(ret = disk_open(&d, path, DISK_FMT_QCOW2, 0, e2, sizeof(e2)))) {
			ret = disk_rebase(d, REPLICA_BASE, DISK_FMT_QCOW2, true);
			if (ret)
				snprintf(e2, sizeof(e2), "%s", disk_error(d));
			disk_close(d);
		}
		if (ret)
			disk_errf(err, errlen, ret, "rebasing %s on the base: %s", pts[i].file, e2);
	}
	free(pts);
	if (ret)
		return ret;
	if (unlinkat(r->dfd, file, 0) && errno != ENOENT)
		return disk_errf(err, errlen, -errno, "%s/%s: %s", r->dir, file, strerror(errno));
done:
	if (!ret && unlinkat(r->dfd, MERGE_INTENT, 0) && errno != ENOENT)
		ret = -errno;
	if (!ret && fsync(r->dfd))
		ret = -errno;
	return ret ? disk_errf(err, errlen, ret, "%s: finishing a merge: %s", r->dir,
			       strerror(-ret)) : 0;
}

/* What a crash left: temporary files go, a merge is finished. */
static int recover(struct replica *r, char *err, size_t errlen)
{
	char file[REPLICA_FILE_MAX];
	struct dirent *de;
	DIR *d;
	int fd, ret;

	fd = openat(r->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return disk_errf(err, errlen, -errno, "%s: %s", r->dir, strerror(errno));
	}
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)))
			unlinkat(r->dfd, de->d_name, 0);
	closedir(d);
	ret = get_small(r, MERGE_INTENT, file, sizeof(file));
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return disk_errf(err, errlen, ret, "%s/" MERGE_INTENT ": %s", r->dir, strerror(-ret));
	return merge_finish(r, file, err, errlen);
}

int replica_open(struct replica **out, const char *dir, bool create, char *err, size_t errlen)
{
	struct replica *r;
	int ret;

	*out = NULL;
	if (strlen(dir) >= sizeof(r->dir) - REPLICA_FILE_MAX - 2)
		return disk_errf(err, errlen, -ENAMETOOLONG, "%s: path too long", dir);
	if (create && mkdir(dir, 0700) && errno != EEXIST)
		return disk_errf(err, errlen, -errno, "%s: %s", dir, strerror(errno));
	r = calloc(1, sizeof(*r));
	if (!r)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	r->lockfd = -1;
	r->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dfd < 0) {
		ret = disk_errf(err, errlen, -errno, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	r->lockfd = openat(r->dfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (r->lockfd < 0) {
		ret = disk_errf(err, errlen, -errno, "%s/" LOCK_FILE ": %s", dir, strerror(errno));
		goto fail;
	}
	if (flock(r->lockfd, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		disk_errf(err, errlen, ret, "%s: %s", dir, ret == -EBUSY ?
			  "the replica is in use by another process" : strerror(-ret));
		goto fail;
	}
	if ((ret = recover(r, err, errlen)))
		goto fail;
	*out = r;
	return 0;
fail:
	replica_close(r);
	return ret;
}

int replica_dirfd(const struct replica *r)
{
	return r->dfd;
}

void replica_close(struct replica *r)
{
	if (!r)
		return;
	if (r->lockfd >= 0)
		close(r->lockfd);
	if (r->dfd >= 0)
		close(r->dfd);
	free(r);
}

int replica_points(struct replica *r, struct replica_point *pts, unsigned max, unsigned *nr,
		   char *err, size_t errlen)
{
	struct replica_point *all;
	int ret = scan(r, &all, nr, err, errlen);

	if (ret)
		return ret;
	if (pts)
		memcpy(pts, all, (max < *nr ? max : *nr) * sizeof(*pts));
	free(all);
	return 0;
}

int replica_add(struct replica *r, int in_fd, struct replica_point *added, char *err,
		size_t errlen)
{
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], file[REPLICA_FILE_MAX];
	char tmp[REPLICA_FILE_MAX + 8], path[PATH_MAX], e2[256];
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2 };
	struct replica_point *pts, p = { 0 };
	uint64_t size;
	unsigned n;
	struct disk *d;
	int ret;

	if ((ret = cbt_incr_header(in_fd, &size, point, since, err, errlen)))
		return ret;
	if (!size || size % 512)
		return disk_errf(err, errlen, -EINVAL, "a disk of %llu bytes: not a whole number "
				 "of 512-byte sectors", (unsigned long long)size);
	if (!replica_name_ok(point))
		return disk_errf(err, errlen, -EINVAL, "point name '%.31s' is not a valid replica "
				 "point name (1-31 of A-Z a-z 0-9 . _ -)", point);
	if ((ret = scan(r, &pts, &n, err, errlen)))
		return ret;
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(pts[i].name, point)) {
			free(pts);
			return disk_errf(err, errlen, -EEXIST, "point %s is already there", point);
		}
	if (!n && since[0])
		ret = disk_errf(err, errlen, -ESTALE, "the replica is empty: it needs a full copy "
				"first, not changes since %s", since);
	else if (n && !since[0])
		ret = disk_errf(err, errlen, -EEXIST, "a full copy needs an empty replica (%u "
				"points here): resynchronise into a new one", n);
	else if (n && strcmp(since, pts[n - 1].name))
		ret = disk_errf(err, errlen, -ESTALE, "the changes follow point %s, but the "
				"latest point here is %s", since, pts[n - 1].name);
	else if (n && pts[n - 1].seq >= 999999)
		ret = disk_errf(err, errlen, -EOVERFLOW, "point numbers are used up");
	if (ret) {
		free(pts);
		return ret;
	}
	if (!n) {
		p.seq = 0;
		snprintf(file, sizeof(file), REPLICA_BASE);
		o.size = size;
	} else {
		p.seq = pts[n - 1].seq + 1;
		snprintf(file, sizeof(file), "p%06u-%s.qcow2", p.seq, point);
		o.backing = pts[n - 1].file;
		/* A set cut at 4 KiB: a layer of 4 KiB clusters, so that its
		 * extents need no copy-on-write reads from the layers below. */
		if (cbt_incr_block_size(in_fd) == (int)CBT_FINE_BLOCK)
			o.cluster_bits = CBT_FINE_BITS;
		o.backing_fmt = DISK_FMT_QCOW2;
		o.backing_fmt_explicit = true;
	}
	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s", file);
	ret = path_of(r, tmp, path, sizeof(path));
	if (!ret && (ret = disk_create(path, &o, e2, sizeof(e2))))
		disk_errf(err, errlen, ret, "creating the point's layer: %s", e2);
	free(pts);
	if (ret)
		goto out;
	if ((ret = disk_open(&d, path, DISK_FMT_QCOW2, 0, e2, sizeof(e2)))) {
		disk_errf(err, errlen, ret, "opening the point's layer: %s", e2);
		goto out;
	}
	/* Checked whole (checksum, extents, size) before a byte is written;
	 * the layer is flushed (fdatasync) before the rename makes it a point. */
	ret = cbt_restore_incremental(d, in_fd, point, since, err, errlen);
	if (disk_close(d) && !ret)
		ret = disk_errf(err, errlen, -EIO, "closing the point's layer");
	if (ret)
		goto out;
	if (!n && (ret = put_small(r, BASE_POINT, point))) {
		disk_errf(err, errlen, ret, "%s/" BASE_POINT ": %s", r->dir, strerror(-ret));
		goto out;
	}
	if (renameat(r->dfd, tmp, r->dfd, file) || fsync(r->dfd)) {
		ret = disk_errf(err, errlen, -errno, "%s/%s: %s", r->dir, file, strerror(errno));
		goto out;
	}
	if (added) {
		snprintf(p.name, sizeof(p.name), "%s", point);
		snprintf(p.file, sizeof(p.file), "%s", file);
		point_stat(r, &p);
		*added = p;
	}
out:
	if (ret)
		unlinkat(r->dfd, tmp, 0);
	return ret;
}

int replica_merge_oldest(struct replica *r, char *err, size_t errlen)
{
	struct replica_point *pts;
	unsigned n;
	int ret;

	if ((ret = scan(r, &pts, &n, err, errlen)))
		return ret;
	if (n < 2) {
		free(pts);
		return disk_errf(err, errlen, -ENOENT, "no point after the base to merge");
	}
	ret = put_small(r, MERGE_INTENT, pts[1].file);
	if (ret)
		disk_errf(err, errlen, ret, "%s/" MERGE_INTENT ": %s", r->dir, strerror(-ret));
	else
		ret = merge_finish(r, pts[1].file, err, errlen);
	/* A merge that could not start (the base in use: -EBUSY) leaves
	 * nothing to replay. */
	if (ret == -EBUSY && !faccessat(r->dfd, pts[1].file, F_OK, 0))
		unlinkat(r->dfd, MERGE_INTENT, 0);
	free(pts);
	return ret;
}

int replica_drop_after(struct replica *r, const char *name, char *err, size_t errlen)
{
	struct replica_point *pts;
	unsigned n, at;
	int ret;

	if ((ret = scan(r, &pts, &n, err, errlen)))
		return ret;
	for (at = 0; at < n && strcmp(pts[at].name, name); at++)
		;
	if (at == n)
		ret = disk_errf(err, errlen, -ENOENT, "no point %s", name);
	for (unsigned i = n; !ret && i-- > at + 1;)
		if (unlinkat(r->dfd, pts[i].file, 0))
			ret = disk_errf(err, errlen, -errno, "%s/%s: %s", r->dir, pts[i].file,
					strerror(errno));
	if (!ret && fsync(r->dfd))
		ret = disk_errf(err, errlen, -errno, "%s: %s", r->dir, strerror(errno));
	free(pts);
	return ret;
}

int replica_point_path(struct replica *r, const char *name, char *out, size_t len, char *err,
		       size_t errlen)
{
	struct replica_point *pts;
	unsigned n, i;
	int ret;

	if ((ret = scan(r, &pts, &n, err, errlen)))
		return ret;
	for (i = 0; i < n && strcmp(pts[i].name, name); i++)
		;
	if (i == n)
		ret = disk_errf(err, errlen, -ENOENT, "no point %s", name);
	else if ((ret = path_of(r, pts[i].file, out, len)))
		disk_errf(err, errlen, ret, "path too long");
	free(pts);
	return ret;
}
