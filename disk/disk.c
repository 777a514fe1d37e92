/* disk.c: opening images and their backing chains (probe, locking, loop
 * detection), closing, errors, and the format-independent entry points of
 * disk.h that dispatch to raw.c and qcow2*.c. */
#include "disk_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

int disk_fail(struct disk *d, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	log_debug("disk %s: %s", d->path ? d->path : "(fd)", d->err);
	return ret;
}

int disk_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

const char *disk_format_name(int fmt)
{
	return fmt == DISK_FMT_RAW ? "raw" : fmt == DISK_FMT_QCOW2 ? "qcow2" : "unknown";
}

int disk_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* short file: callers check sizes first */
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

int disk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/* A VM that was just killed can still hold its images' locks for a moment:
 * its io_uring is torn down after the process is gone, and only then are the
 * last references to the files (and so the locks) dropped. That can take
 * seconds when the dead VM's ring still had a flush in flight on a busy
 * disk, so a lock whose taker is gone is waited for longer than one whose
 * taker still runs (a real conflict: reported after LOCK_RETRY_NS). */
#define LOCK_RETRY_NS      (2ULL * 1000000000ULL)
#define LOCK_RETRY_DEAD_NS (30ULL * 1000000000ULL)
#define LOCK_RETRY_STEP    (10 * 1000000L)

enum lock_takers { TAKERS_ALIVE, TAKERS_GONE, TAKERS_NONE };

/* Who holds the flocks on fd's file, from /proc/locks: TAKERS_GONE when
 * every taker no longer runs (gone, or a zombie), TAKERS_NONE when there is
 * no lock on it at all (it was let go since the flock that failed),
 * TAKERS_ALIVE otherwise, and when that cannot be told (no /proc, a
 * sandbox). */
static enum lock_takers lock_takers(int fd)
{
	struct stat st;
	char line[256];
	bool found = false, alive = false;

	if (fstat(fd, &st) != 0)
		return TAKERS_ALIVE;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return TAKERS_ALIVE;
	while (fgets(line, sizeof(line), f)) {
		char kind[16];
		unsigned maj, min;
		unsigned long long ino;
		int pid;

		/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked
		 * waiters ("1: -> FLOCK ...") do not match the format. */
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", kind, &pid, &maj, &min, &ino) != 5 ||
		    strcmp(kind, "FLOCK") != 0)
			continue;
		if (maj != major(st.st_dev) || min != minor(st.st_dev) || ino != (unsigned long long)st.st_ino)
			continue;
		found = true;
		char path[64], state = 0;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *ps = fopen(path, "re");
		if (ps) {
			/* "pid (comm) S ...": the state follows the last ')'. */
			char buf[512];
			size_t n = fread(buf, 1, sizeof(buf) - 1, ps);
			buf[n] = 0;
			char *rp = strrchr(buf, ')');
			if (rp && rp[1] == ' ')
				state = rp[2];
			fclose(ps);
		}
		if (state && state != 'Z' && state != 'X')
			alive = true;
	}
	fclose(f);
	return !found ? TAKERS_NONE : alive ? TAKERS_ALIVE : TAKERS_GONE;
}

int disk_lock_fd(int fd, bool exclusive, const char *what, char *err, size_t errlen)
{
	uint64_t waited = 0;
	bool retried = false;

	for (;;) {
		if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return disk_errf(err, errlen, -errno, "cannot lock %s: %s", what,
			                 strerror(errno));
		if (waited >= LOCK_RETRY_NS) {
			enum lock_takers t = lock_takers(fd);

			/* Let go between the flock and the look at /proc/locks:
			 * try again at once (once: a file system whose devices
			 * /proc/locks names differently always shows none). */
			if (t == TAKERS_NONE && !retried) {
				retried = true;
				continue;
			}
			if (t != TAKERS_GONE || waited >= LOCK_RETRY_DEAD_NS)
				return disk_errf(err, errlen, -EBUSY,
				                 "%s is in use by another process (a running VM?)",
				                 what);
		}
		nanosleep(&(struct timespec){ .tv_nsec = LOCK_RETRY_STEP }, NULL);
		waited += LOCK_RETRY_STEP;
	}
}

struct disk *disk_alloc(void)
{
	struct disk *d = calloc(1, sizeof(*d));

	if (d) {
		d->fd = -1;
		d->backing_fmt = -1;
	}
	return d;
}

int disk_open_file(struct disk *d, const char *path, bool readonly, bool lock, char *err,
                   size_t errlen)
{
	/* O_NONBLOCK: a FIFO (or a device) given as an image must not block
	 * the open; its type is checked before anything reads it. */
	int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return disk_errf(err, errlen, -errno, "cannot open %s%s: %s", path,
		                 readonly ? "" : " read-write", strerror(errno));
	return disk_adopt_fd(d, fd, path, readonly, lock, err, errlen);
}

int disk_adopt_fd(struct disk *d, int fd, const char *what, bool readonly, bool lock, char *err,
                  size_t errlen)
{
	struct stat st;
	int fl, ret;

	d->fd = fd;
	if (fstat(d->fd, &st) < 0)
		return disk_errf(err, errlen, -errno, "cannot stat %s: %s", what, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return disk_errf(err, errlen, -EINVAL, "%s is neither a file nor a block device",
		                 what);
	fl = fcntl(d->fd, F_GETFL);
	if (fl < 0)
		return disk_errf(err, errlen, -errno, "fcntl %s: %s", what, strerror(errno));
	if ((fl & O_ACCMODE) == O_WRONLY || (!readonly && (fl & O_ACCMODE) != O_RDWR))
		return disk_errf(err, errlen, -EBADF, "%s is not open for %s", what,
		                 readonly ? "reading" : "reading and writing");
	if (fcntl(d->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return disk_errf(err, errlen, -errno, "fcntl %s: %s", what, strerror(errno));
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	d->readonly = readonly;
	if (lock) {
		ret = disk_lock_fd(d->fd, !readonly, what, err, errlen);
		if (ret)
			return ret;
		d->locked_ex = !readonly;
	}
	return 0;
}

void disk_free_layer(struct disk *d)
{
	if (d->ops && d->ops->close)
		d->ops->close(d);
	if (d->fd >= 0)
		close(d->fd); /* drops the flock */
	free(d->path);
	free(d->backing_name);
	free(d);
}

static int probe_and_open(struct disk *d, int fmt, char *err, size_t errlen)
{
	if (fmt < 0)
		fmt = qcow2_probe(d->fd) ? DISK_FMT_QCOW2 : DISK_FMT_RAW;
	if (fmt == DISK_FMT_QCOW2) {
		d->fmt = DISK_FMT_QCOW2;
		d->ops = &qcow2_ops;
		return qcow2_open(d, err, errlen);
	}
	if (fmt != DISK_FMT_RAW)
		return disk_errf(err, errlen, -EINVAL, "unknown image format %d", fmt);
	d->fmt = DISK_FMT_RAW;
	d->ops = &raw_ops;
	return raw_open(d, err, errlen);
}

/* The backing path: absolute as written, else relative to the directory of
 * the image that names it. */
char *disk_backing_path(const char *image, const char *name)
{
	const char *slash = image ? strrchr(image, '/') : NULL;
	char *p;

	if (name[0] == '/' || !slash)
		return strdup(name);
	if (asprintf(&p, "%.*s/%s", (int)(slash - image), image, name) < 0)
		return NULL;
	return p;
}

struct chain_seen {
	dev_t dev[DISK_MAX_CHAIN + 2];
	ino_t ino[DISK_MAX_CHAIN + 2];
	unsigned n;
	/* disk_open_fds: the layers' files, in chain order; each one the chain
	 * took is marked (the rest are closed at the end). NULL: by name. */
	const struct disk_fd_chain *fds;
	bool taken[DISK_MAX_CHAIN];
};

static int open_backing(struct disk *d, struct chain_seen *seen, unsigned depth, unsigned top_flags,
                        char *err, size_t errlen);

static int open_layer(struct disk **out, const char *path, int fmt, unsigned flags,
                      struct chain_seen *seen, unsigned depth, char *err, size_t errlen)
{
	bool ro = flags & DISK_RDONLY;
	struct disk *d = disk_alloc();
	int ret;

	*out = NULL;
	if (!d || !(d->path = strdup(path))) {
		free(d);
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	}
	if ((flags & DISK_NO_LOCK) && !ro) {
		ret =
		    disk_errf(err, errlen, -EINVAL, "%s: an unlocked open must be read-only", path);
		goto fail;
	}
	if (seen->fds) {
		/* The file the caller opened (and checked) for this link: never
		 * a name resolved here. */
		seen->taken[depth] = true;
		ret = disk_adopt_fd(d, seen->fds->fd[depth], path, ro,
		                    !(flags & (DISK_NO_LOCK | DISK_DEFER_LOCK)), err, errlen);
	} else {
		ret = disk_open_file(d, path, ro, !(flags & (DISK_NO_LOCK | DISK_DEFER_LOCK)), err,
		                     errlen);
	}
	if (ret)
		goto fail;
	for (unsigned i = 0; i < seen->n; i++) {
		if (seen->dev[i] == d->dev && seen->ino[i] == d->ino) {
			ret = disk_errf(err, errlen, -ELOOP, "backing chain loop: %s appears twice",
			                path);
			goto fail;
		}
	}
	seen->dev[seen->n] = d->dev;
	seen->ino[seen->n++] = d->ino;
	d->open_flags = flags;
	if ((flags & DISK_DEFER_LOCK) && (fmt == DISK_FMT_QCOW2 || (fmt < 0 && qcow2_probe(d->fd)))) {
		/* A qcow2 image's metadata is its holder's until it lets go. Free
		 * (a new image, include_storage): locked now, opened as usual.
		 * Held (the source's, on shared storage): its state is read as
		 * read-only (an open read-write may write: the dirty bit, the
		 * autoclear bits), and read again by disk_lock. */
		if (flock(d->fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) {
			flags &= ~DISK_DEFER_LOCK;
			d->open_flags = flags;
		} else if (errno == EWOULDBLOCK && !ro) {
			d->deferred_ro = true;
			d->readonly = true;
		} else {
			ret = disk_errf(err, errlen, -errno, "cannot lock %s: %s", path,
			                strerror(errno));
			goto fail;
		}
	}
	ret = probe_and_open(d, fmt, err, errlen);
	if (ret)
		goto fail;
	if (d->backing_name && !(flags & DISK_NO_BACKING)) {
		ret = open_backing(d, seen, depth, flags, err, errlen);
		if (ret)
			goto fail;
	}
	*out = d;
	return 0;
fail:
	disk_free_layer(d);
	return ret;
}

/* disk_open_fds: the descriptor for link depth + 1, whose name the image
 * above gives as `name`, must be the one the caller checked under that
 * name. 0 or -errno with err set. */
static int fd_for_backing(const struct disk *d, const struct chain_seen *seen, unsigned depth,
                          char *err, size_t errlen)
{
	const struct disk_fd_chain *c = seen->fds;
	const char *checked = depth + 1 < c->nr ? c->name[depth + 1] : NULL;

	if (depth + 1 >= c->nr)
		return disk_errf(err, errlen, -ESTALE, "%s names the backing file %s, but no "
		                 "descriptor was given for it (was the image changed after it was "
		                 "checked?)", d->path, d->backing_name);
	if (checked && strcmp(checked, d->backing_name))
		return disk_errf(err, errlen, -ESTALE, "%s names the backing file %s now, not %s as "
		                 "when it was checked: the image changed in between", d->path,
		                 d->backing_name, checked);
	return 0;
}

static int open_backing(struct disk *d, struct chain_seen *seen, unsigned depth, unsigned top_flags,
                        char *err, size_t errlen)
{
	/* Backing files are read-only; an unlocked open stays unlocked. */
	unsigned flags = DISK_RDONLY | (top_flags & DISK_NO_LOCK);
	char sub[sizeof(d->err)];
	char *bp;
	int ret;

	if (depth + 1 >= DISK_MAX_CHAIN)
		return disk_errf(err, errlen, -ELOOP, "backing chain deeper than %d images (at %s)",
		                 DISK_MAX_CHAIN, d->path ? d->path : "(fd)");
	if (seen->fds) {
		ret = fd_for_backing(d, seen, depth, err, errlen);
		if (ret)
			return ret;
		/* Named as the header names it: no directory to resolve against. */
		bp = strdup(d->backing_name);
	} else {
		bp = disk_backing_path(d->path, d->backing_name);
	}
	if (!bp)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	sub[0] = 0;
	ret = open_layer(&d->backing, bp, d->backing_fmt, flags, seen, depth + 1, sub, sizeof(sub));
	if (ret)
		disk_errf(err, errlen, ret, "backing file of %s: %s", d->path ? d->path : "(fd)",
		          sub);
	free(bp);
	return ret;
}

/* A layer whose format state could not be read again (disk_lock): every
 * access fails with -EIO rather than use what is gone. */
static int failed_map(struct disk *d, uint64_t off, uint64_t len, bool write,
		      struct disk_extent *ext, struct disk **layer, unsigned max)
{
	return disk_fail(d, -EIO, "the image could not be read again after its holder let go");
}

static int failed_rw(struct disk *d, void *buf, size_t len, uint64_t off)
{
	return failed_map(d, off, len, false, NULL, NULL, 0);
}

static int failed_flush(struct disk *d)
{
	return failed_map(d, 0, 0, true, NULL, NULL, 0);
}

static int failed_range(struct disk *d, uint64_t off, uint64_t len)
{
	return failed_map(d, off, len, true, NULL, NULL, 0);
}

static int failed_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap)
{
	return failed_range(d, off, len);
}

static int failed_resize(struct disk *d, uint64_t size, bool allow_shrink)
{
	return failed_range(d, size, 0);
}

static int failed_info(struct disk *d, struct disk_info *info)
{
	return failed_flush(d);
}

static int failed_check(struct disk *d, bool repair, struct disk_check_result *res)
{
	return failed_flush(d);
}

static int failed_backing(struct disk *d, const char *name, enum disk_format fmt)
{
	return failed_flush(d);
}

static void failed_close(struct disk *d)
{
}

static const struct disk_ops failed_ops = {
	.map = failed_map, .read_slow = failed_rw, .flush = failed_flush,
	.discard = failed_range, .write_zeroes = failed_zeroes, .resize = failed_resize,
	.info = failed_info, .check = failed_check, .set_backing = failed_backing,
	.close = failed_close,
};

int disk_lock(struct disk *d, char *err, size_t errlen)
{
	int ret;

	if (!(d->open_flags & DISK_DEFER_LOCK))
		return 0;
	ret = disk_lock_fd(d->fd, !d->readonly || d->deferred_ro, d->path ? d->path : "the image",
			   err, errlen);
	if (ret)
		return ret;
	d->open_flags &= ~DISK_DEFER_LOCK;
	if (d->deferred_ro) {
		/* The holder has gone: what it wrote last is on disk now. Read
		 * the format state again, read-write (L1, refcounts, caches). */
		uint64_t size = d->size;

		d->ops->close(d);
		d->readonly = false;
		d->deferred_ro = false;
		ret = probe_and_open(d, DISK_FMT_QCOW2, err, errlen);
		if (!ret && d->size != size)
			ret = disk_errf(err, errlen, -ESTALE, "%s: its size changed while it was "
					"held elsewhere", d->path ? d->path : "the image");
		if (ret) { /* readable at least, as before */
			char e2[128];

			if (d->priv)
				d->ops->close(d);
			d->readonly = true;
			if (probe_and_open(d, DISK_FMT_QCOW2, e2, sizeof(e2))) {
				if (d->priv)
					d->ops->close(d);
				d->ops = &failed_ops; /* every access -EIO: no state to use */
			}
		}
	}
	return ret;
}

int disk_open(struct disk **out, const char *path, int fmt, unsigned flags, char *err,
              size_t errlen)
{
	struct chain_seen seen = {.n = 0};

	if (err && errlen)
		err[0] = 0;
	return open_layer(out, path, fmt, flags, &seen, 0, err, errlen);
}

static void close_chain(struct disk *d);

int disk_open_fds(struct disk **out, const struct disk_fd_chain *chain, int fmt, unsigned flags,
                  char *err, size_t errlen)
{
	struct chain_seen seen = {.n = 0, .fds = chain};
	char top[64];
	unsigned depth = 0;
	int ret;

	if (err && errlen)
		err[0] = 0;
	*out = NULL;
	if (!chain->nr || chain->nr > DISK_MAX_CHAIN) {
		ret = disk_errf(err, errlen, -EINVAL, "a chain of %u descriptors (1 to %d)", chain->nr,
		                DISK_MAX_CHAIN);
		goto out;
	}
	if (!chain->name[0])
		snprintf(top, sizeof(top), "fd:%d", chain->fd[0]);
	ret = open_layer(out, chain->name[0] ? chain->name[0] : top, fmt, flags, &seen, 0, err,
	                 errlen);
	if (ret)
		goto out;
	for (const struct disk *l = *out; l; l = l->backing)
		depth++;
	if (!(flags & DISK_NO_BACKING) && depth != chain->nr) {
		/* A descriptor was checked for a link the image no longer has. */
		ret = disk_errf(err, errlen, -ESTALE, "%s has a chain of %u image(s) now, %u when it "
		                "was checked: the image changed in between", (*out)->path, depth,
		                chain->nr);
		close_chain(*out);
		*out = NULL;
	}
out:
	for (unsigned i = 0; i < chain->nr && i < DISK_MAX_CHAIN; i++)
		if (!seen.taken[i] && chain->fd[i] >= 0)
			close(chain->fd[i]);
	return ret;
}

static void close_chain(struct disk *d)
{
	while (d) {
		struct disk *b = d->backing;

		disk_free_layer(d);
		d = b;
	}
}

int disk_open_overlay_fd(struct disk **out, int fd, struct disk *backing, char *err, size_t errlen)
{
	struct disk *d = disk_alloc();
	struct stat st;
	int ret;

	*out = NULL;
	if (!d) {
		close(fd);
		close_chain(backing);
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	}
	d->fd = fd;
	d->backing = backing;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = disk_errf(err, errlen, -EINVAL, "the overlay is not a regular file");
		goto fail;
	}
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	ret = disk_lock_fd(fd, true, "the overlay image", err, errlen);
	if (ret)
		goto fail;
	d->locked_ex = true;
	if (!qcow2_probe(fd)) {
		ret = disk_errf(err, errlen, -EINVAL, "the overlay is not a qcow2 image");
		goto fail;
	}
	d->fmt = DISK_FMT_QCOW2;
	d->ops = &qcow2_ops;
	ret = qcow2_open(d, err, errlen);
	if (ret)
		goto fail;
	if (!d->backing_name) {
		ret = disk_errf(err, errlen, -EINVAL, "the overlay names no backing file");
		goto fail;
	}
	if (backing && !backing->readonly) {
		/* The old top becomes a read-only layer: flush it, then downgrade
		 * its lock (no path to reopen it by inside the sandbox). */
		ret = disk_flush(backing);
		if (ret) {
			disk_errf(err, errlen, ret, "flushing the old top layer: %s", backing->err);
			goto fail;
		}
		if (flock(backing->fd, LOCK_SH | LOCK_NB) < 0) {
			ret = disk_errf(err, errlen, -errno,
			                "cannot downgrade the old top's lock: %s", strerror(errno));
			goto fail;
		}
		backing->readonly = true;
		backing->locked_ex = false;
	}
	*out = d;
	return 0;
fail:
	close_chain(d);
	return ret;
}

int disk_close(struct disk *d)
{
	int ret = 0;

	if (!d)
		return 0;
	if (!d->readonly)
		ret = disk_flush(d);
	close_chain(d);
	return ret;
}

uint64_t disk_size(const struct disk *d)
{
	return d->size;
}

enum disk_format disk_format_of(const struct disk *d)
{
	return d->fmt;
}

bool disk_readonly(const struct disk *d)
{
	return d->readonly;
}

const char *disk_error(const struct disk *d)
{
	return d->err[0] ? d->err : "no error";
}

int disk_fd(const struct disk *d)
{
	return d->fd;
}

bool disk_ext_push(struct disk_extent *ext, struct disk **layer, unsigned *n, unsigned max,
                   const struct disk_extent *e, struct disk *owner)
{
	if (*n) {
		struct disk_extent *p = &ext[*n - 1];

		if (p->kind == e->kind && p->off + p->len == e->off &&
		    (e->kind == DISK_EXT_ZERO ||
		     (e->kind == DISK_EXT_DATA && p->fd == e->fd &&
		      p->host_off + p->len == e->host_off) ||
		     (e->kind == DISK_EXT_SLOW && layer && layer[*n - 1] == owner))) {
			p->len += e->len;
			return true;
		}
	}
	if (*n >= max)
		return false;
	ext[*n] = *e;
	if (layer)
		layer[*n] = owner;
	(*n)++;
	return true;
}

static int check_range(struct disk *d, uint64_t off, uint64_t len)
{
	if (off > d->size || len > d->size - off)
		return disk_fail(
		    d, -EINVAL, "range %#llx+%#llx is past the end of the disk (%#llx)",
		    (unsigned long long)off, (unsigned long long)len, (unsigned long long)d->size);
	return 0;
}

int disk_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext,
             unsigned max)
{
	int ret = check_range(d, off, len);

	if (ret)
		return ret;
	if (write && d->readonly)
		return disk_fail(d, -EROFS, "the disk is read-only");
	if (!len || !max)
		return 0;
	return d->ops->map(d, off, len, write, ext, NULL, max);
}

int disk_flush(struct disk *d)
{
	if (d->readonly)
		return 0;
	return d->ops->flush(d);
}

int disk_discard(struct disk *d, uint64_t off, uint64_t len)
{
	int ret = check_range(d, off, len);

	if (ret)
		return ret;
	if (d->readonly)
		return disk_fail(d, -EROFS, "the disk is read-only");
	return len ? d->ops->discard(d, off, len) : 0;
}

int disk_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap)
{
	int ret = check_range(d, off, len);

	if (ret)
		return ret;
	if (d->readonly)
		return disk_fail(d, -EROFS, "the disk is read-only");
	return len ? d->ops->write_zeroes(d, off, len, may_unmap) : 0;
}

int disk_read_layer(struct disk *d, void *buf, size_t len, uint64_t off)
{
	struct disk_extent ext[16];
	struct disk *layer[16];
	char *p = buf;

	if (off >= d->size) {
		memset(buf, 0, len);
		return 0;
	}
	if (len > d->size - off) {
		size_t in = (size_t)(d->size - off);

		memset(p + in, 0, len - in);
		len = in;
	}
	while (len) {
		int n = d->ops->map(d, off, len, false, ext, layer, ARRAY_SIZE(ext));

		if (n <= 0)
			return n < 0 ? n : disk_fail(d, -EIO, "mapping made no progress");
		for (int i = 0; i < n; i++) {
			size_t l = (size_t)ext[i].len;
			int ret = 0;

			if (ext[i].kind == DISK_EXT_ZERO)
				memset(p, 0, l);
			else if (ext[i].kind == DISK_EXT_SLOW)
				ret = layer[i]->ops->read_slow(layer[i], p, l, ext[i].off);
			else
				ret = disk_pread_full(ext[i].fd, p, l, ext[i].host_off);
			if (ret == -EIO && ext[i].kind == DISK_EXT_DATA) {
				/* Data past the end of a file reads as zeroes. */
				ssize_t r = pread(ext[i].fd, p, l, (off_t)ext[i].host_off);

				ret = r < 0 ? -errno : 0;
				if (r >= 0)
					memset(p + r, 0, l - (size_t)r);
			}
			if (ret < 0) {
				char why[sizeof(d->err)];

				snprintf(why, sizeof(why), "%s",
				         ext[i].kind == DISK_EXT_SLOW ? layer[i]->err
				                                      : strerror(-ret));
				return disk_fail(d, ret, "read at %#llx: %s",
				                 (unsigned long long)ext[i].off, why);
			}
			p += l;
			off += l;
			len -= l;
		}
	}
	return 0;
}

int disk_pread(struct disk *d, void *buf, size_t len, uint64_t off)
{
	int ret = check_range(d, off, len);

	return ret ? ret : disk_read_layer(d, buf, len, off);
}

int disk_pwrite(struct disk *d, const void *buf, size_t len, uint64_t off)
{
	struct disk_extent ext[16];
	const char *p = buf;
	int ret = check_range(d, off, len);

	if (ret)
		return ret;
	while (len) {
		int n = disk_map(d, off, len, true, ext, ARRAY_SIZE(ext));

		if (n == -EAGAIN) {
			/* Every earlier data write has completed: flush and retry. */
			ret = disk_flush(d);
			if (ret)
				return ret;
			continue;
		}
		if (n <= 0)
			return n < 0 ? n : disk_fail(d, -EIO, "mapping made no progress");
		for (int i = 0; i < n; i++) {
			ret = disk_pwrite_full(ext[i].fd, p, (size_t)ext[i].len, ext[i].host_off);
			if (ret)
				return disk_fail(d, ret, "write at %#llx: %s",
				                 (unsigned long long)ext[i].off, strerror(-ret));
			p += ext[i].len;
			off += ext[i].len;
			len -= (size_t)ext[i].len;
		}
	}
	return 0;
}

int disk_layer_allocated(struct disk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run)
{
	if (d->fmt == DISK_FMT_QCOW2)
		return qcow2_allocated(d, off, len, alloc, run);
	*alloc = true;
	*run = len;
	return 0;
}

int disk_allocated_from(struct disk *d, uint64_t from, uint64_t *bytes)
{
	struct stat st;

	*bytes = 0;
	if (d->fmt == DISK_FMT_RAW && fstat(d->fd, &st) == 0 && S_ISREG(st.st_mode)) {
		off_t pos = (off_t)from;

		while ((uint64_t)pos < d->size) {
			off_t data = lseek(d->fd, pos, SEEK_DATA), hole;

			if (data < 0) {
				if (errno == ENXIO)
					return 0; /* only holes from here */
				*bytes = d->size - (uint64_t)pos; /* no SEEK_DATA: all of it */
				return 0;
			}
			hole = lseek(d->fd, data, SEEK_HOLE);
			if (hole < 0)
				hole = (off_t)d->size;
			*bytes += MIN((uint64_t)hole, d->size) - MIN((uint64_t)data, d->size);
			pos = hole;
		}
		return 0;
	}
	for (uint64_t off = from, run; off < d->size; off += run) {
		bool alloc;
		int ret = disk_layer_allocated(d, off, d->size - off, &alloc, &run);

		if (ret)
			return ret;
		if (alloc)
			*bytes += run;
	}
	return 0;
}

int disk_get_info(struct disk *d, struct disk_info *info)
{
	struct stat st;

	memset(info, 0, sizeof(*info));
	info->fmt = d->fmt;
	info->size = d->size;
	info->backing_fmt_set = d->backing_fmt >= 0;
	info->backing_fmt = d->backing_fmt >= 0 ? (enum disk_format)d->backing_fmt
	                                        : (d->backing ? d->backing->fmt : DISK_FMT_RAW);
	if (fstat(d->fd, &st) < 0)
		return disk_fail(d, -errno, "cannot stat the image: %s", strerror(errno));
	info->file_size = (uint64_t)st.st_blocks * 512;
	if (d->backing_name)
		snprintf(info->backing, sizeof(info->backing), "%s", d->backing_name);
	info->chain_depth = 1;
	for (struct disk *b = d->backing; b; b = b->backing)
		info->chain_depth++;
	return d->ops->info ? d->ops->info(d, info) : 0;
}

int disk_resize(struct disk *d, uint64_t new_size, bool allow_shrink)
{
	if (d->readonly)
		return disk_fail(d, -EROFS, "the disk is read-only");
	if (new_size < d->size && !allow_shrink)
		return disk_fail(d, -EINVAL, "shrinking needs allow_shrink (--shrink)");
	return d->ops->resize(d, new_size, allow_shrink);
}

int disk_check(struct disk *d, bool repair, struct disk_check_result *res)
{
	memset(res, 0, sizeof(*res));
	if (repair && d->readonly)
		return disk_fail(d, -EROFS, "repair needs a read-write open");
	if (!d->ops->check)
		return 0; /* raw: nothing to check */
	return d->ops->check(d, repair, res);
}

int disk_create(const char *path, const struct disk_create_opts *o, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (o->fmt == DISK_FMT_RAW) {
		if (o->backing)
			return disk_errf(err, errlen, -EINVAL, "raw images have no backing file");
		return raw_create(path, o, err, errlen);
	}
	if (o->fmt == DISK_FMT_QCOW2)
		return qcow2_create(path, o, err, errlen);
	return disk_errf(err, errlen, -EINVAL, "unknown image format %d", o->fmt);
}
