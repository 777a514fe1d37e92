/* cbt.c: changed-block tracking bitmaps in a MAP_SHARED sidecar file (see cbt.h). */
#include "cbt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk_priv.h"
#include "log.h"

#define CBT_MAGIC    "CELLACBT"
#define CBT_VERSION  1
#define CBT_HDR      4096u
#define CBT_F_IN_USE 1u

#define CBT_P_USED  1u
#define CBT_P_VALID 2u

struct cbt_point {
	char name[CBT_NAME_MAX];
	uint32_t flags;
	uint32_t pad;
	uint64_t created; /* CLOCK_REALTIME seconds, to find the oldest */
};

struct cbt_header {
	char magic[8];
	uint32_t version;
	uint32_t flags;
	uint64_t disk_size;
	uint32_t block_bits;
	uint32_t nr_points;    /* slots (CBT_MAX_POINTS) */
	uint64_t bitmap_bytes; /* per slot, a multiple of 4 KiB */
	char boot_id[40];      /* host boot while in use */
	struct cbt_point points[CBT_MAX_POINTS];
};

_Static_assert(sizeof(struct cbt_header) <= CBT_HDR, "header fits its page");

struct cbt {
	int fd;
	uint8_t *map;
	size_t map_len;
	struct cbt_header *h;
	uint64_t nr_blocks;
};

static void read_boot_id(char out[40])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;

	memset(out, 0, 40);
	if (fd >= 0) {
		n = read(fd, out, 39);
		close(fd);
	}
	if (n > 0 && out[n - 1] == '\n')
		out[n - 1] = 0;
	if (n <= 0)
		snprintf(out, 40, "unknown");
}

static uint64_t bitmap_bytes(uint64_t nr_blocks)
{
	return ((nr_blocks + 7) / 8 + 4095) & ~4095ULL;
}

/* Fresh header and empty bitmaps for a disk of `size` bytes. */
static int cbt_format(int fd, uint64_t size, char *err, size_t errlen)
{
	struct cbt_header h;
	uint64_t nr = (size + CBT_BLOCK - 1) >> CBT_BLOCK_BITS;
	uint64_t total = CBT_HDR + CBT_MAX_POINTS * bitmap_bytes(nr);
	uint8_t page[CBT_HDR] = {0};

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, CBT_MAGIC, 8);
	h.version = CBT_VERSION;
	h.disk_size = size;
	h.block_bits = CBT_BLOCK_BITS;
	h.nr_points = CBT_MAX_POINTS;
	h.bitmap_bytes = bitmap_bytes(nr);
	memcpy(page, &h, sizeof(h));
	/* Truncate to 0 first: the bitmaps are holes, reading as zero. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)total) < 0 ||
	    pwrite(fd, page, sizeof(page), 0) != (ssize_t)sizeof(page) || fdatasync(fd) < 0)
		return disk_errf(err, errlen, -errno, "cannot initialise: %s", strerror(errno));
	return 0;
}

static bool cbt_header_ok(const struct cbt_header *h, uint64_t file_size)
{
	uint64_t nr = (h->disk_size + CBT_BLOCK - 1) >> CBT_BLOCK_BITS;

	return !memcmp(h->magic, CBT_MAGIC, 8) && h->version == CBT_VERSION &&
	       h->block_bits == CBT_BLOCK_BITS && h->nr_points == CBT_MAX_POINTS &&
	       h->bitmap_bytes == bitmap_bytes(nr) &&
	       file_size == CBT_HDR + CBT_MAX_POINTS * h->bitmap_bytes;
}

/* LOCK_EX, non-blocking: a tracking file in use by a running VM is refused.
 * (cella-vm waits, before it exits, for its KVM teardown child to drop the
 * descriptors it inherited, so no lock outlives the worker.) */
static int cbt_lock(int fd)
{
	return flock(fd, LOCK_EX | LOCK_NB);
}

int cbt_open(struct cbt **out, const char *image_path, uint64_t disk_size, char *err, size_t errlen)
{
	char path[4096];
	int fd;

	if (snprintf(path, sizeof(path), "%s.cbt", image_path) >= (int)sizeof(path))
		return disk_errf(err, errlen, -ENAMETOOLONG, "path too long");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return disk_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
	return cbt_open_fd(out, fd, path, disk_size, err, errlen);
}

int cbt_open_fd(struct cbt **out, int fd, const char *path, uint64_t disk_size, char *err,
		size_t errlen)
{
	struct cbt *c = calloc(1, sizeof(*c));
	char boot[40];
	struct cbt_header h;
	struct stat st;
	int ret, fl;

	if (!c) {
		close(fd);
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	}
	c->fd = fd;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = disk_errf(err, errlen, -EBADF, "%s: not a regular file open for reading and "
				"writing", path);
		goto fail;
	}
	/* The image's own lock keeps two writers away; this one guards the
	 * tools that open only the .cbt. */
	if (cbt_lock(c->fd) < 0) {
		ret = disk_errf(err, errlen, errno == EWOULDBLOCK ? -EBUSY : -errno,
		                "%s: in use by another process", path);
		goto fail;
	}
	if (fstat(c->fd, &st) < 0) {
		ret = disk_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	memset(&h, 0, sizeof(h));
	if (st.st_size < (off_t)CBT_HDR || pread(c->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    !cbt_header_ok(&h, (uint64_t)st.st_size) || h.disk_size != disk_size) {
		if (st.st_size)
			log_warn("%s: not a tracking file for this disk (size, version or magic "
			         "differ): starting over, no points",
			         path);
		ret = cbt_format(c->fd, disk_size, err, errlen);
		if (ret)
			goto fail;
		if (fstat(c->fd, &st) < 0) {
			ret = disk_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
			goto fail;
		}
	}
	c->map_len = (size_t)st.st_size;
	c->map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		ret = disk_errf(err, errlen, -errno, "%s: mmap: %s", path, strerror(errno));
		goto fail;
	}
	/* A forked child (cella-vm's KVM teardown) must not hold the file,
	 * and with it the lock, after the worker exits. */
	madvise(c->map, c->map_len, MADV_DONTFORK);
	c->h = (struct cbt_header *)c->map;
	c->nr_blocks = (disk_size + CBT_BLOCK - 1) >> CBT_BLOCK_BITS;
	read_boot_id(boot);
	if ((c->h->flags & CBT_F_IN_USE) && strncmp(c->h->boot_id, boot, sizeof(boot))) {
		/* Left in use by a previous boot: the host crashed with it open. */
		log_warn("%s: left open across a host crash; every point is invalid", path);
		for (unsigned i = 0; i < CBT_MAX_POINTS; i++)
			c->h->points[i].flags &= ~CBT_P_VALID;
	}
	for (unsigned i = 0; i < CBT_MAX_POINTS; i++) /* file input: names must end */
		if (!memchr(c->h->points[i].name, 0, CBT_NAME_MAX) || !c->h->points[i].name[0])
			memset(&c->h->points[i], 0, sizeof(c->h->points[i]));
	memcpy(c->h->boot_id, boot, sizeof(boot));
	c->h->flags |= CBT_F_IN_USE;
	if (msync(c->map, CBT_HDR, MS_SYNC) < 0) {
		ret = disk_errf(err, errlen, -errno, "%s: msync: %s", path, strerror(errno));
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c->map)
		munmap(c->map, c->map_len);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return ret;
}

int cbt_sync(struct cbt *c)
{
	return msync(c->map, c->map_len, MS_SYNC) < 0 ? -errno : 0;
}

void cbt_close(struct cbt *c, bool clean)
{
	if (!c)
		return;
	if (cbt_sync(c))
		clean = false;
	if (clean) {
		c->h->flags &= ~CBT_F_IN_USE;
		if (msync(c->map, CBT_HDR, MS_SYNC) < 0)
			log_warn("cbt: cannot clear the in-use flag: %s", strerror(errno));
	}
	munmap(c->map, c->map_len);
	close(c->fd);
	free(c);
}

static uint8_t *point_bits(struct cbt *c, unsigned slot)
{
	return c->map + CBT_HDR + slot * c->h->bitmap_bytes;
}

void cbt_mark(struct cbt *c, uint64_t off, uint64_t len)
{
	uint64_t first, last;

	if (!len || off >= c->h->disk_size)
		return;
	if (len > c->h->disk_size - off)
		len = c->h->disk_size - off;
	first = off >> CBT_BLOCK_BITS;
	last = (off + len - 1) >> CBT_BLOCK_BITS;
	for (unsigned i = 0; i < CBT_MAX_POINTS; i++) {
		uint8_t *bits;

		if ((c->h->points[i].flags & (CBT_P_USED | CBT_P_VALID)) !=
		    (CBT_P_USED | CBT_P_VALID))
			continue;
		bits = point_bits(c, i);
		for (uint64_t b = first; b <= last; b++) {
			/* Whole bytes at a time where possible (large writes). */
			if (!(b & 7) && b + 7 <= last) {
				uint64_t n = (last + 1 - b) / 8;

				memset(bits + b / 8, 0xff, n);
				b += n * 8 - 1;
				continue;
			}
			bits[b / 8] |= (uint8_t)(1u << (b & 7));
		}
	}
}

static int point_find(const struct cbt *c, const char *name)
{
	for (unsigned i = 0; i < CBT_MAX_POINTS; i++)
		if ((c->h->points[i].flags & CBT_P_USED) &&
		    !strncmp(c->h->points[i].name, name, CBT_NAME_MAX))
			return (int)i;
	return -1;
}

int cbt_point_start(struct cbt *c, const char *name)
{
	return cbt_point_start_from(c, name, NULL);
}

int cbt_point_start_from(struct cbt *c, const char *name, const uint8_t *bits)
{
	size_t len = strlen(name);
	int slot = point_find(c, name);
	struct cbt_point *p;

	if (!len || len >= CBT_NAME_MAX)
		return -EINVAL;
	if (slot < 0) {
		for (unsigned i = 0; i < CBT_MAX_POINTS && slot < 0; i++)
			if (!(c->h->points[i].flags & CBT_P_USED))
				slot = (int)i;
	}
	if (slot < 0) {
		slot = 0;
		for (unsigned i = 1; i < CBT_MAX_POINTS; i++)
			if (c->h->points[i].created < c->h->points[slot].created)
				slot = (int)i;
		log_info("cbt: all %d points taken; replacing the oldest, '%.*s'", CBT_MAX_POINTS,
		         CBT_NAME_MAX, c->h->points[slot].name);
	}
	p = &c->h->points[slot];
	/* Bitmap set before the point turns valid, both before the sync. */
	if (bits) {
		uint8_t *dst = point_bits(c, (unsigned)slot);
		size_t n = (size_t)((c->nr_blocks + 7) / 8);

		memmove(dst, bits, n); /* bits may be this slot's own bitmap */
		memset(dst + n, 0, c->h->bitmap_bytes - n);
	} else {
		memset(point_bits(c, (unsigned)slot), 0, c->h->bitmap_bytes);
	}
	memset(p, 0, sizeof(*p));
	memcpy(p->name, name, len);
	p->created = (uint64_t)time(NULL);
	p->flags = CBT_P_USED | CBT_P_VALID;
	return cbt_sync(c);
}

int cbt_point_clear(struct cbt *c, const char *name, const uint8_t *mask)
{
	int slot = point_find(c, name);
	uint8_t *bits;

	if (slot < 0)
		return -ENOENT;
	if (!(c->h->points[slot].flags & CBT_P_VALID))
		return -ESTALE;
	bits = point_bits(c, (unsigned)slot);
	for (uint64_t i = 0; i < (c->nr_blocks + 7) / 8; i++)
		bits[i] &= (uint8_t)~mask[i];
	return cbt_sync(c);
}

int cbt_point_drop(struct cbt *c, const char *name)
{
	int slot = point_find(c, name);

	if (slot < 0)
		return -ENOENT;
	memset(&c->h->points[slot], 0, sizeof(c->h->points[slot]));
	return cbt_sync(c);
}

const uint8_t *cbt_point_bits(struct cbt *c, const char *name, int *errp)
{
	int slot = point_find(c, name);

	if (slot < 0) {
		*errp = -ENOENT;
		return NULL;
	}
	if (!(c->h->points[slot].flags & CBT_P_VALID)) {
		*errp = -ESTALE;
		return NULL;
	}
	*errp = 0;
	return point_bits(c, (unsigned)slot);
}

uint64_t cbt_nr_blocks(const struct cbt *c)
{
	return c->nr_blocks;
}

unsigned cbt_points(const struct cbt *c, const char *names[CBT_MAX_POINTS],
                    bool valid[CBT_MAX_POINTS])
{
	unsigned n = 0;

	for (unsigned i = 0; i < CBT_MAX_POINTS; i++) {
		if (!(c->h->points[i].flags & CBT_P_USED))
			continue;
		names[n] = c->h->points[i].name;
		valid[n] = c->h->points[i].flags & CBT_P_VALID;
		n++;
	}
	return n;
}
