/* replica.h: a replica disk's recovery points, on the target of replication
 * (issue 14, docs/replica.md). One directory per replicated disk:
 *
 *   base.qcow2          the oldest point: a full copy (its name in base.point)
 *   base.point          that point's name
 *   pSEQ-NAME.qcow2     each later point: a qcow2 layer over the one before,
 *                       holding the blocks its change set carried
 *   merge.intent        a retention merge in progress (replayed at open)
 *   .lock               held (flock) by whoever has the store open
 *
 * A point comes from one change set in the CELLAINC format (cbt.h: a live
 * export or an incremental backup), checked whole (trailer checksum, header,
 * extents, and that it follows the latest point) before its layer is
 * written, and written into a temporary layer that is flushed and renamed
 * into place: a corrupt or truncated transfer, or a full file system, leaves
 * no point behind and the earlier ones as they were. Points are immutable
 * once made, so a VM (a failover, a test failover) runs on a layer of its
 * own over one of them. Retention merges the oldest point into the base;
 * the qcow2 locks make that fail (-EBUSY) while a VM reads the base. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cbt.h"
#include "compiler.h"

#define REPLICA_BASE       "base.qcow2"
#define REPLICA_FILE_MAX   64

struct replica;

struct replica_point {
	unsigned seq;                 /* 0: the base; later points count up */
	char name[CBT_NAME_MAX];
	char file[REPLICA_FILE_MAX];  /* its layer, in the directory */
	uint64_t file_bytes;          /* what the layer takes on the host */
	int64_t made_ns;              /* when it became a point (CLOCK_REALTIME) */
};

/* Whether name may name a replica point: 1-31 bytes of [A-Za-z0-9._-],
 * starting with a letter or digit. */
bool replica_name_ok(const char *name);

/* Open the store in dir (created, mode 0700, with create), take its lock
 * (-EBUSY: another process has it open) and finish what a crash
 * interrupted: a retention merge is completed, temporary layers go.
 * 0 or -errno with err. */
int replica_open(struct replica **out, const char *dir, bool create, char *err,
		 size_t errlen) __must_check;
void replica_close(struct replica *r);

/* The points, oldest (the base) first: *nr of them, at most max filled
 * (pts may be NULL with max 0 to count). 0 or -errno. */
int replica_points(struct replica *r, struct replica_point *pts, unsigned max, unsigned *nr,
		   char *err, size_t errlen) __must_check;

/* Make a point of the change set in in_fd (a file: it is read twice, once
 * to check it whole and once to apply it). A full export (`since` "") makes
 * the base of an empty store; an incremental must follow the latest point
 * (its `since` names it: otherwise -ESTALE) and have its disk size; a point
 * name already there is -EEXIST. On any failure nothing is left of the new
 * point. *added (may be NULL) describes the new point. */
int replica_add(struct replica *r, int in_fd, struct replica_point *added, char *err,
		size_t errlen) __must_check;

/* Retention: merge the oldest point after the base into the base, which
 * becomes that point. -ENOENT without one; -EBUSY while a VM uses the base
 * or that point. Crash-safe: replayed by replica_open. */
int replica_merge_oldest(struct replica *r, char *err, size_t errlen) __must_check;

/* Drop every point after `name` (a failover to an older point), newest
 * first. -ENOENT: no such point. */
int replica_drop_after(struct replica *r, const char *name, char *err,
		       size_t errlen) __must_check;

/* The path of point name's layer (to build a VM's disk layer on). */
int replica_point_path(struct replica *r, const char *name, char *out, size_t len, char *err,
		       size_t errlen) __must_check;

/* The store's directory (an O_DIRECTORY descriptor the store owns). */
int replica_dirfd(const struct replica *r);

/* replica_zstd.c: change sets on the wire compressed with zstd. --------- */
/* Whether fd (from offset 0) holds a zstd frame rather than a plain set. */
bool replica_set_compressed(int fd);
/* Compress the set in in_fd (from offset 0) into out_fd at zstd level
 * (1-19), with a content checksum; *out: bytes written. 0 or -errno. */
int replica_set_compress(int in_fd, int out_fd, int level, uint64_t *out, char *err,
			 size_t errlen) __must_check;
/* Decompress in_fd (from offset 0) into out_fd, at most max bytes (-EFBIG
 * past it; -EINVAL for a corrupt or truncated stream). 0 or -errno. */
int replica_set_decompress(int in_fd, int out_fd, uint64_t max, uint64_t *out, char *err,
			   size_t errlen) __must_check;
/* replica_add for a set as it arrived, plain or compressed (decompressed
 * first into an unnamed file of the store's directory, at most max bytes). */
int replica_add_any(struct replica *r, int in_fd, uint64_t max, struct replica_point *added,
		    char *err, size_t errlen) __must_check;

/* replica_adopt.c: stores made from disks that hold a point already
 * (reverse replication), without copying them. ------------------------- */
/* An empty store's base made a qcow2 layer over `image` (format fmt, an
 * enum disk_format), whose content is point `point`: the image is never
 * written through the store. 0 or -errno (-EEXIST: the store has points). */
int replica_adopt_base(struct replica *r, const char *image, int fmt, const char *point,
		       char *err, size_t errlen) __must_check;
/* The qcow2 layer `layer` (on the store's file system, its backing the
 * store's latest point) moved into the store as the next point, `point`.
 * 0 or -errno. */
int replica_adopt_layer(struct replica *r, const char *layer, const char *point, char *err,
			size_t errlen) __must_check;
