/* storage.h: disk contents in the migration stream (include_storage):
 * the source's copy of every disk, with the blocks the guest writes while
 * it runs tracked and sent again, and the destination's writes into its
 * own (new, empty) images. See docs/migration.md.
 *
 * Source: mig_storage_start attaches a dirty bitmap (one bit per 64 KiB)
 * to every virtio-blk device; its request path marks what writes,
 * discards and write-zeroes changed once they completed. Each send reads
 * 1 MiB chunks under the device lock (disk_map: zero ranges are not read,
 * they go as DISK_ZERO; the rest through disk_pread, backing chains
 * flattened), and sends them outside the lock.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "migrate/migstream.h"

struct vm;
struct device;
struct mig_conn;

#define MIG_DISK_BLOCK_SHIFT 16 /* dirty tracking: 64 KiB blocks */

struct mig_sdisk {
	struct device *dev;
	uint64_t size;       /* bytes the guest sees */
	uint64_t nblocks;
	size_t words;
	unsigned long *bits; /* dirty blocks (the device sets, we clear; its lock) */
	uint64_t zoff, zlen; /* a zero range gathered, not sent yet */
};

struct mig_piece {
	uint64_t off, len;
	bool zero;
};

struct mig_storage {
	unsigned n;
	struct mig_sdisk d[MIG_DISKS_MAX];
	bool tracking;
	uint8_t *buf;             /* one chunk's data */
	uint8_t *rec;             /* one DISK_DATA payload */
	struct mig_piece *pieces; /* one chunk's layout */
	unsigned npieces;
	uint64_t data_bytes, zero_bytes; /* sent so far */
};

/* Called between chunks: 0 to go on (after any rate limiting), or -errno
 * (cancelled). */
typedef int (*mig_pace_fn)(void *opaque);

/* Find the VM's disks, refuse read-only ones (the destination could not
 * write their copy), allocate the bitmaps and start tracking. 0 or -errno
 * (err). mig_storage_stop undoes it, also after a failure. */
int mig_storage_start(struct mig_storage *s, struct vm *vm, char *err, size_t errlen) __must_check;
/* The DISKS record (sizes), right after the destination's READY. */
int mig_storage_send_list(struct mig_storage *s, struct mig_conn *c, char *err,
			  size_t errlen) __must_check;
/* all: every block (round 1); otherwise the dirty ones, whose bits it
 * clears before reading them. 0 or -errno (err). */
int mig_storage_send(struct mig_storage *s, struct mig_conn *c, bool all, mig_pace_fn pace,
		     void *opaque, char *err, size_t errlen) __must_check;
/* Bytes in dirty blocks now. */
uint64_t mig_storage_dirty_bytes(struct mig_storage *s);
/* Stop tracking, free everything. Safe twice and after a failed start. */
void mig_storage_stop(struct mig_storage *s);

/* Destination: the VM's disks, matched to the source's DISKS record. */
struct mig_storage_rx {
	unsigned n;
	struct device *dev[MIG_DISKS_MAX];
	bool written;    /* data since the last flush */
};

/* Check the source's disk count and sizes against vm's disks (same order,
 * same virtual sizes, writable). 0 or -errno (why). */
int mig_storage_rx_init(struct mig_storage_rx *r, struct vm *vm, uint32_t n,
			const uint64_t *sizes, char *why, size_t whylen) __must_check;
/* Write a DISK_DATA / DISK_ZERO range (already checked against the size). */
int mig_storage_rx_write(struct mig_storage_rx *r, uint32_t disk, uint64_t off,
			 const uint8_t *data, uint32_t len, char *why, size_t whylen) __must_check;
int mig_storage_rx_zero(struct mig_storage_rx *r, uint32_t disk, uint64_t off, uint64_t len,
			char *why, size_t whylen) __must_check;
/* Make what was written durable (before a SYNC echo and before the ack). */
int mig_storage_rx_flush(struct mig_storage_rx *r, char *why, size_t whylen) __must_check;
