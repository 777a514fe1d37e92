/* cbt.h: changed-block tracking: a persistent dirty bitmap per disk, kept in
 * a sidecar file next to the image (IMAGE.cbt), for incremental backups
 * (`cella disk backup --since`).
 *
 * The file holds named points (at most CBT_MAX_POINTS); each has its own
 * bitmap of CBT_BLOCK (64 KiB) blocks: a set bit means the block may have
 * changed since the point was started. cella-vm marks the bits of every
 * valid point before a write, discard or write-zeroes is submitted, and
 * msyncs the bitmaps before a guest flush completes.
 *
 * Crash safety. The file is mapped MAP_SHARED, so when the worker is killed
 * (kill -9) the bits it set are in the page cache and reach the file: the
 * points stay valid. A host crash can lose bits set after the last msync
 * while the data they describe reached the disk, so the header records the
 * host's boot id while the file is open (the "in use" flag): an image whose
 * .cbt is found in use under another boot id went through a host crash, and
 * every point is marked invalid (an incremental from it is refused; take a
 * full backup).
 *
 * Layout (little-endian): a 4 KiB header (struct cbt_header: magic
 * "CELLACBT", version, flags, disk size, block bits, boot id, the point
 * table), then one bitmap per point slot, each rounded up to 4 KiB.
 *
 * Not thread-safe: the owner serialises calls.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define CBT_BLOCK_BITS 16
#define CBT_BLOCK      (1u << CBT_BLOCK_BITS)
#define CBT_MAX_POINTS 8
#define CBT_NAME_MAX   32 /* bytes, NUL included */

struct cbt;

/* Open IMAGE.cbt for an image of `disk_size` bytes, creating it (with no
 * points) if missing, and mark it in use. A file for another disk size is
 * reset (points dropped). Returns 0 or -errno with the reason in err. */
int cbt_open(struct cbt **out, const char *image_path, uint64_t disk_size, char *err,
	     size_t errlen) __must_check;
/* The same on a descriptor the caller opened (O_RDWR, a regular file; owned
 * by the cbt from now on, also on failure); `path` names it in messages. */
int cbt_open_fd(struct cbt **out, int fd, const char *path, uint64_t disk_size, char *err,
		size_t errlen) __must_check;
/* msync, clear the in-use flag (when `clean`: everything marked reached the
 * file) and unmap. */
void cbt_close(struct cbt *c, bool clean);

/* Mark [off, off + len) changed in every valid point. */
void cbt_mark(struct cbt *c, uint64_t off, uint64_t len);
/* Make the marks durable (msync). 0 or -errno. */
int cbt_sync(struct cbt *c) __must_check;

/* Start (or restart) point `name` with an empty bitmap. When every slot is
 * taken, the oldest point is replaced. 0 or -errno (-EINVAL: bad name). */
int cbt_point_start(struct cbt *c, const char *name) __must_check;
int cbt_point_drop(struct cbt *c, const char *name) __must_check;
/* Start (or restart) point `name` holding `bits` (cbt_nr_blocks() bits)
 * rather than an empty bitmap; `bits` may be another point's bitmap. A live
 * export (cella-vm) starts its new point with the blocks it is about to
 * send, so that a point whose export never completed still covers them.
 * 0 or -errno, like cbt_point_start. */
int cbt_point_start_from(struct cbt *c, const char *name, const uint8_t *bits) __must_check;
/* Clear in point `name` the blocks set in `mask` (an export completed:
 * the blocks it sent and the guest did not write since). 0 or -errno
 * (-ENOENT, -ESTALE). */
int cbt_point_clear(struct cbt *c, const char *name, const uint8_t *mask) __must_check;

/* The bitmap of point `name` (bit b of byte b/8: block b changed), or NULL
 * with -ENOENT (no such point) or -ESTALE (invalidated by a host crash) in
 * *errp. */
const uint8_t *cbt_point_bits(struct cbt *c, const char *name, int *errp);
uint64_t cbt_nr_blocks(const struct cbt *c);
/* Names of the points, for listings: returns how many, fills names[]. */
unsigned cbt_points(const struct cbt *c, const char *names[CBT_MAX_POINTS],
		    bool valid[CBT_MAX_POINTS]);

/* --- backups (cella disk backup / restore) ---
 *
 * A full backup is a raw image of the guest-visible content (zero ranges
 * left as holes). An incremental backup holds only the CBT_BLOCK blocks
 * marked in a point, in this documented format (little-endian):
 *   header  "CELLAINC", u32 version (1), u32 block size, u64 disk size,
 *           u64 extent count, u64 data bytes, char point[32], char since[32]
 *   extents count x { u64 offset, u64 length }, sorted, not overlapping
 *   data    the extents' bytes, in order
 *   trailer u32 crc32 (zlib) of everything before it, "CEND"
 * Both start point `point` (an empty bitmap) once the copy is durable; an
 * incremental reads point `since` first. */
struct disk;

#define CBT_INCR_MAGIC "CELLAINC"
#define CBT_INCR_VERSION 1
/* The header's block size is CBT_BLOCK, or CBT_FINE_BLOCK for a set whose
 * extents were cut at 4 KiB (a live export with grain 4096: cella-vm keeps
 * an in-memory 4 KiB map beside the 64 KiB tracking file). Extents are any
 * length either way; the size bounds the extent count (disk size / block
 * size + 1). */
#define CBT_FINE_BITS  12
#define CBT_FINE_BLOCK (1u << CBT_FINE_BITS)

int cbt_backup_full(struct disk *d, struct cbt *c, const char *point, int out_fd,
		    uint64_t *bytes, char *err, size_t errlen) __must_check;
int cbt_backup_incremental(struct disk *d, struct cbt *c, const char *since, const char *point,
			   int out_fd, uint64_t *bytes, char *err, size_t errlen) __must_check;
/* The header and extent list of an incremental holding the blocks set in
 * `bits` (nr_blocks bits, clipped to disk_size), for writers that stream the
 * data themselves (cella-vm's live export): a malloc'ed buffer in *meta of
 * *meta_len bytes, the data bytes that must follow in *data. `since` ""
 * means a full export (restored onto a zeroed image). 0 or -errno. */
int cbt_incr_meta(const uint8_t *bits, uint64_t nr_blocks, uint64_t disk_size, const char *point,
		  const char *since, uint8_t **meta, size_t *meta_len, uint64_t *data) __must_check;
/* The same from a bitmap of (1 << unit_bits)-byte units (CBT_BLOCK_BITS or
 * CBT_FINE_BITS), recorded as the header's block size. */
int cbt_incr_meta_grain(const uint8_t *bits, uint64_t nr_units, unsigned unit_bits,
			uint64_t disk_size, const char *point, const char *since, uint8_t **meta,
			size_t *meta_len, uint64_t *data) __must_check;
/* The block size an incremental's header records (CBT_BLOCK or
 * CBT_FINE_BLOCK), or -EINVAL: not an incremental of a known block size. */
int cbt_incr_block_size(int fd);
/* The 8-byte trailer: crc (of everything before it) and "CEND". */
void cbt_incr_trailer(uint32_t crc, uint8_t out[8]);
/* The header of an incremental (or full export) in fd, read at offset 0 and
 * not validated against the rest of the file: its disk size and point
 * names (CBT_NAME_MAX bytes each). 0, or -EINVAL with err. */
int cbt_incr_header(int fd, uint64_t *disk_size, char *point, char *since, char *err,
		    size_t errlen) __must_check;
/* Check an incremental file (header, extents, checksum) and, when that
 * passes, write its blocks into d (which must have the same size) and flush.
 * point/since (CBT_NAME_MAX bytes each) receive the names it records. */
int cbt_restore_incremental(struct disk *d, int in_fd, char *point, char *since, char *err,
			    size_t errlen) __must_check;
