/* disk_priv.h: the disk library's internals shared by its files (not part of
 * the contract in disk.h). A struct disk is one layer of a chain: its format
 * ops, its file, and its backing layer (owned). */
#pragma once
#include <stdarg.h>
#include <sys/types.h>

#include "disk.h"

/* Private open flag: never fdatasync (the destination of convert, which
 * like qemu-img convert's default cache=unsafe leaves the write-back to the
 * kernel: a crash leaves a file to convert again, never a damaged source). */
#define DISK_PRIV_NO_SYNC (1u << 31)

struct disk_ops {
	/* Resolve a range of this layer (falling through to the backing chain
	 * for reads); `layer` (may be NULL) receives the layer of each extent,
	 * needed to read DISK_EXT_SLOW pieces. */
	int (*map)(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext,
		   struct disk **layer, unsigned max);
	/* Read a DISK_EXT_SLOW piece that map() attributed to this layer. */
	int (*read_slow)(struct disk *d, void *buf, size_t len, uint64_t off);
	int (*flush)(struct disk *d);
	int (*discard)(struct disk *d, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct disk *d, uint64_t off, uint64_t len, bool may_unmap);
	int (*resize)(struct disk *d, uint64_t size, bool allow_shrink);
	int (*info)(struct disk *d, struct disk_info *info);
	int (*check)(struct disk *d, bool repair, struct disk_check_result *res);
	/* Rewrite the backing file name and format in the header. */
	int (*set_backing)(struct disk *d, const char *name, enum disk_format fmt);
	void (*close)(struct disk *d); /* free the format state, not the fd */
};

struct disk {
	const struct disk_ops *ops;
	enum disk_format fmt;
	int fd;
	bool readonly;
	bool locked_ex;
	uint64_t size;          /* virtual size */
	char *path;             /* as opened (NULL for fd opens) */
	dev_t dev;
	ino_t ino;
	struct disk *backing;   /* owned; NULL if none */
	char *backing_name;     /* as written in the header, NULL if none */
	int backing_fmt;        /* from the header extension, -1 if absent */
	void *priv;             /* format state (struct qcow2) */
	unsigned open_flags;    /* DISK_* flags this layer was opened with */
	/* DISK_DEFER_LOCK on a qcow2 image another process held: its format
	 * state was read as read-only (nothing written while the holder
	 * writes); disk_lock reads it again, read-write, once it has the lock. */
	bool deferred_ro;
	/* disk_set_progress: long tools reading this disk report to it. */
	int (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	char err[512];
};

/* The progress hook of d (0 when none or it says go on; -ECANCELED when it
 * asks to stop, with the reason in d->err). */
int disk_progress_report(struct disk *d, uint64_t done, uint64_t total);

/* Record the reason of a failure in d->err and return `ret` (a -errno). */
int disk_fail(struct disk *d, int ret, const char *fmt, ...) __printf(3, 4);
/* Same for the err buffers of open/create. */
int disk_errf(char *err, size_t errlen, int ret, const char *fmt, ...) __printf(4, 5);

/* Append an extent to ext[*n], merging it with the previous one when
 * contiguous. Returns false when the array is full. */
bool disk_ext_push(struct disk_extent *ext, struct disk **layer, unsigned *n, unsigned max,
		   const struct disk_extent *e, struct disk *owner);

/* Read [off, off+len) of a layer's chain view (len may reach past the
 * layer's size: the excess reads as zeroes). */
int disk_read_layer(struct disk *d, void *buf, size_t len, uint64_t off);

/* Full-length pread/pwrite, -EIO on a short read past the end. */
int disk_pread_full(int fd, void *buf, size_t len, uint64_t off);
int disk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Open the file and take its lock; fills d->fd, dev, ino. */
int disk_open_file(struct disk *d, const char *path, bool readonly, bool lock, char *err,
		   size_t errlen);
/* The same for a descriptor the caller opened (owned by d from now on, also
 * on failure): its kind and access mode are checked. */
int disk_adopt_fd(struct disk *d, int fd, const char *what, bool readonly, bool lock, char *err,
		  size_t errlen);
int disk_lock_fd(int fd, bool exclusive, const char *what, char *err, size_t errlen);

struct disk *disk_alloc(void);
void disk_free_layer(struct disk *d); /* this layer only: ops->close, fd, memory */

/* Format-specific entry points. */
extern const struct disk_ops raw_ops;
extern const struct disk_ops qcow2_ops;
int raw_open(struct disk *d, char *err, size_t errlen);
int qcow2_open(struct disk *d, char *err, size_t errlen);
bool qcow2_probe(int fd);
int raw_create(const char *path, const struct disk_create_opts *o, char *err, size_t errlen);
int qcow2_create(const char *path, const struct disk_create_opts *o, char *err, size_t errlen);
/* Whether the top layer itself allocates (data, zero or compressed) the
 * cluster holding `off`; raw layers allocate everything. *run receives the
 * bytes from off with the same answer. */
int disk_layer_allocated(struct disk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run);
int qcow2_allocated(struct disk *d, uint64_t off, uint64_t len, bool *alloc, uint64_t *run);

const char *disk_format_name(int fmt);
