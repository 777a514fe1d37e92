/* parttab.h: a guest image's partition table (MBR primary partitions, GPT)
 * and the file system signatures cella recognises, read through a callback
 * from untrusted bytes (fuzzed: tests/fuzz/disk/fuzz_bootcfg.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define PARTTAB_MAX 128

/* Read len bytes at off; 0, or -errno (a read past the end included). */
typedef int (*parttab_read_fn)(void *ctx, void *buf, size_t len, uint64_t off);

struct partition {
	unsigned number; /* as Linux numbers it: 1.. (vda1) */
	uint64_t off, len; /* bytes */
};

struct parttab {
	const char *kind; /* "mbr", "gpt" */
	unsigned nr;
	struct partition p[PARTTAB_MAX];
};

/* The partition table of a disk of size bytes (512-byte sectors): 0 with
 * pt filled, -ENOENT when there is none (no 0x55AA signature), -EINVAL
 * with err when it is malformed (a partition past the end of the disk, a
 * GPT header or entry array whose size or checksum is wrong). Logical
 * partitions inside an MBR extended partition are not listed. */
int parttab_read(parttab_read_fn rd, void *ctx, uint64_t size, struct parttab *pt, char *err,
		 size_t errlen) __must_check;

/* The file system at [off, off+len), by signature: "ext2", "ext3", "ext4",
 * "xfs", "btrfs", "vfat", "swap", "LVM2", "LUKS", "iso9660", "squashfs",
 * or NULL (none recognised). */
const char *fs_probe(parttab_read_fn rd, void *ctx, uint64_t off, uint64_t len);
