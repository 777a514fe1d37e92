/* disk.h: the disk library shared by cella-vm (virtio-blk), cellad and the
 * cella CLI: raw and qcow2 (version 3) images, backing chains, thin
 * provisioning, and the image tools (create, info, resize, convert, commit,
 * rebase, check).
 *
 * Threading: a struct disk is not thread-safe; its owner serialises every
 * call (cella-vm: the VM's I/O thread).
 *
 * Asynchronous I/O: the library resolves guest ranges to host file extents
 * (disk_map) and the caller moves the data itself (io_uring in cella-vm).
 * Metadata is written by the library, synchronously, in an order that keeps
 * the image consistent if the process is killed at any point (leaked
 * clusters at most):
 *   - a newly allocated cluster's refcount reaches the file, and is synced,
 *     before any L2/L1 entry that points to it;
 *   - new L2/L1 entries reach the file only in disk_flush(), which the
 *     caller runs after every data write it wants covered has completed;
 *   - a freed cluster is reused only after the L2 entry that dropped it has
 *     been synced.
 * So a write the guest flushed (data written, then disk_flush returned 0) is
 * in the image after a crash.
 *
 * Additions since the first contract (no signature changed): the
 * backing_fmt_explicit field of disk_create_opts, disk_check_mode(),
 * disk_backing_path(), the DISK_REPAIR and DISK_CHECK open flags,
 * disk_allocated_from(), disk_open_fds(), disk_info.backing_fmt_set. Images whose metadata overlaps accept no writes,
 * and read-write opens refuse images with persistent dirty bitmaps (see
 * docs/disks.md). Note for callers of disk_map: a cluster dropped by
 * disk_discard/disk_write_zeroes may be reused for other data after the next
 * disk_flush(), so writes mapped before a discard must have completed before
 * that flush.
 *
 * Errors: functions return 0 (or a count) or -errno; on failure they also
 * leave a human-readable reason in disk_error(d) (or in the err buffer for
 * the open/create calls). Malformed images are refused with -EINVAL and a
 * reason naming what is wrong, never a crash.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

enum disk_format { DISK_FMT_RAW, DISK_FMT_QCOW2 };

/* disk_open flags */
#define DISK_RDONLY      (1u << 0) /* open the top image read-only */
#define DISK_NO_LOCK     (1u << 1) /* take no flock (like qemu-img -U); read-only only */
#define DISK_NO_BACKING  (1u << 2) /* do not open the backing chain (info, rebase -u) */
/* Open for repair (check -r): metadata only, no guest writes; an image with
 * persistent dirty bitmaps may be opened read-write this way (they are kept,
 * and counted), where a plain read-write open refuses it. */
#define DISK_REPAIR      (1u << 3)
/* Open for check: an L1 or refcount table (or entry) pointing outside the
 * file or unaligned is recorded for disk_check to report (and, for the
 * refcount structure, to rebuild) instead of refusing the open; such an
 * image accepts no writes but the repair's. */
#define DISK_CHECK       (1u << 4)
/* Open a top image read-write without its lock, for a live migration's
 * destination whose source still runs the VM on the same file (shared
 * storage): disk_lock takes the lock once the source has let go. A qcow2
 * image another process holds is read as read-only until then (its
 * metadata is the holder's: nothing is written), and disk_lock reads it
 * again read-write; a free one (a new image) is locked and opened at once. */
#define DISK_DEFER_LOCK  (1u << 5)

#define DISK_MAX_CHAIN 64 /* deepest backing chain accepted */

struct disk;
/* Take the lock a DISK_DEFER_LOCK open left out (waiting up to 2 s for a
 * holder that is going). 0, or -errno with err (-EBUSY: still held). */
int disk_lock(struct disk *d, char *err, size_t errlen) __attribute__((warn_unused_result));

struct disk;

/* Open an image and its backing chain. The format is probed (qcow2 magic,
 * otherwise raw) unless `fmt` is >= 0. Read-write opens take LOCK_EX on the
 * top image (non-blocking), read-only ones LOCK_SH; backing files are opened
 * read-only with LOCK_SH. An image another process holds read-write gives
 * -EBUSY ("in use by another process"). Backing paths are relative to the
 * image that names them. Loops and chains deeper than DISK_MAX_CHAIN give
 * -ELOOP. */
int disk_open(struct disk **out, const char *path, int fmt, unsigned flags, char *err,
	      size_t errlen) __must_check;
/* A chain's files opened by the caller (cellad, beneath a storage
 * location), in chain order: fd[0] the image, fd[1] its backing file...
 * name[i] is the backing name the image above named when the caller
 * checked the chain (name[0]: the image's name, for messages); NULL skips
 * the comparison. */
struct disk_fd_chain {
	unsigned nr;
	int fd[DISK_MAX_CHAIN];
	const char *name[DISK_MAX_CHAIN];
};
/* disk_open on descriptors: nothing is opened by name. Each link's file is
 * the next descriptor (its kind and access mode checked: the top one needs
 * O_RDWR unless DISK_RDONLY); an image that names another backing file
 * than the caller checked, or a chain longer or shorter than the
 * descriptors given, is refused with -ESTALE ("the image changed"). The
 * descriptors pass to the disk, also on failure. */
int disk_open_fds(struct disk **out, const struct disk_fd_chain *chain, int fmt, unsigned flags,
		  char *err, size_t errlen) __must_check;
/* Open the qcow2 image on `fd` read-write (LOCK_EX) as a new top layer over
 * `backing`, an open chain that becomes its backing chain (its top is
 * reopened read-only). Ownership of fd and backing passes to the new disk,
 * also on failure. Used by cella-vm's disk-switch (sandboxed: no paths). */
int disk_open_overlay_fd(struct disk **out, int fd, struct disk *backing, char *err,
			 size_t errlen) __must_check;
/* Flush (if writable) and close the whole chain. Returns the flush result. */
int disk_close(struct disk *d);

uint64_t disk_size(const struct disk *d);          /* virtual size, bytes */
enum disk_format disk_format_of(const struct disk *d);
bool disk_readonly(const struct disk *d);
const char *disk_error(const struct disk *d);      /* last failure's reason */
/* The top image's fd (for locking checks and the raw fast path). */
int disk_fd(const struct disk *d);

/* --- extent mapping, for asynchronous data I/O by the caller --- */

enum disk_ext_kind {
	DISK_EXT_DATA, /* read or write len bytes at (fd, host_off) */
	DISK_EXT_ZERO, /* reads as zeroes (unallocated in the whole chain, or a zero cluster) */
	DISK_EXT_SLOW, /* read it with disk_pread() (e.g. a compressed cluster) */
};

struct disk_extent {
	uint64_t off;      /* guest offset of this piece */
	uint64_t len;
	enum disk_ext_kind kind;
	int fd;            /* DATA: the file holding it (any layer for reads) */
	uint64_t host_off; /* DATA: offset in that file */
};

/* Resolve [off, off+len) into at most `max` extents, in order, merging
 * neighbours that are contiguous in the same file. With `write`, clusters
 * are allocated in the top image first (copying the rest of a partially
 * written cluster from the backing chain synchronously), so every extent
 * returned is DATA in the top image; the new mapping is visible to later
 * disk_map/disk_pread calls at once and reaches the file at the next
 * disk_flush(). Returns the number of extents (fewer than the range needs
 * when `max` is reached: call again for the rest), or -errno: -EROFS,
 * -ENOSPC (host file system full), -EIO, -EAGAIN (too much unflushed
 * metadata: complete in-flight writes, disk_flush(), retry). */
int disk_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext,
	     unsigned max) __must_check;

/* Write every dirty metadata table in the safe order and fdatasync the top
 * image. Call once the data writes it must cover have completed. */
int disk_flush(struct disk *d) __must_check;

/* Deallocate (qcow2: drop clusters, reading as zeroes or, with a backing
 * file, marked as zero clusters; raw: punch a hole). Partial clusters are
 * zeroed instead. */
int disk_discard(struct disk *d, uint64_t off, uint64_t len) __must_check;
int disk_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap) __must_check;

/* --- synchronous I/O (tools, tests, DISK_EXT_SLOW) --- */
int disk_pread(struct disk *d, void *buf, size_t len, uint64_t off) __must_check;
int disk_pwrite(struct disk *d, const void *buf, size_t len, uint64_t off) __must_check;

/* --- image tools --- */

struct disk_create_opts {
	enum disk_format fmt;
	uint64_t size;               /* 0 with a backing file: the backing file's size */
	unsigned cluster_bits;       /* qcow2: 9..21, 0 = 16 (64 KiB) */
	const char *backing;         /* qcow2: backing file as written in the header, or NULL */
	enum disk_format backing_fmt;
	bool preallocate_metadata;   /* qcow2: L2 tables written up front */
	/* backing_fmt is used as given only when this is set; otherwise the
	 * backing file's format is probed (an absent file: backing_fmt). */
	bool backing_fmt_explicit;
};
int disk_create(const char *path, const struct disk_create_opts *o, char *err,
		size_t errlen) __must_check;

struct disk_info {
	enum disk_format fmt;
	uint64_t size;           /* virtual */
	uint64_t file_size;      /* bytes the file takes on the host (st_blocks * 512) */
	uint64_t allocated;      /* qcow2: bytes of allocated data clusters in this layer */
	unsigned cluster_bits;
	bool lazy_refcounts, dirty, corrupt;
	char backing[4096];      /* "" if none */
	enum disk_format backing_fmt;
	bool backing_fmt_set;    /* the header names backing_fmt (otherwise it is probed) */
	unsigned chain_depth;    /* 1 = no backing file */
};
int disk_get_info(struct disk *d, struct disk_info *info) __must_check;

/* Bytes of [from, size) the top layer allocates (raw files: not holes;
 * qcow2: data, zero and compressed clusters, a partial first one whole from
 * `from`): what a shrink to `from` would discard. */
int disk_allocated_from(struct disk *d, uint64_t from, uint64_t *bytes) __must_check;
/* Grow (or, with allow_shrink, shrink) the virtual size. A shrink
 * discards whatever lies past the new end: callers check
 * disk_allocated_from() first (cella disk resize refuses without --force). */
int disk_resize(struct disk *d, uint64_t new_size, bool allow_shrink) __must_check;

/* Copy the whole guest-visible content of `src` (its chain flattened) into a
 * new image `dst` of format `fmt` (zero ranges stay unallocated). */
int disk_convert(struct disk *src, const char *dst, const struct disk_create_opts *o, char *err,
		 size_t errlen) __must_check;

/* Progress of the long tools that read d (disk_convert, cbt_backup_full,
 * cbt_backup_incremental): fn(arg, done, total) is called between chunks
 * (bytes of the work done so far and in all); a nonzero return stops the
 * tool with -ECANCELED. NULL removes it. (Added for cellad's image jobs.) */
void disk_set_progress(struct disk *d, int (*fn)(void *arg, uint64_t done, uint64_t total),
		       void *arg);

/* Write the top layer's allocated clusters into its backing file (opened
 * read-write for this), leaving the top layer in place. */
int disk_commit(struct disk *d) __must_check;

/* Make `new_backing` (or none, NULL) the backing file of the top layer.
 * Safe mode copies the clusters whose content differs between the old and
 * new chains into the top layer first; unsafe only rewrites the header. */
int disk_rebase(struct disk *d, const char *new_backing, enum disk_format fmt,
		bool unsafe) __must_check;

struct disk_check_result {
	uint64_t corruptions, leaks;
	uint64_t corruptions_fixed, leaks_fixed;
	char first_problem[256];
};
/* Check refcounts against the L1/L2 tables (like qemu-img check); with
 * `repair`, fix leaks (and corruptions where safe). */
int disk_check(struct disk *d, bool repair, struct disk_check_result *res) __must_check;
/* The same with qemu-img's repair levels: 0 none, 1 leaks, 2 all. */
int disk_check_mode(struct disk *d, int repair, struct disk_check_result *res) __must_check;

/* The path of a backing file named `name` by the image at `image` (relative
 * names are relative to the image's directory); malloc'ed, NULL if out of
 * memory. */
char *disk_backing_path(const char *image, const char *name);
