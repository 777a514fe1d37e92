/* dtest.h: helpers for the disk library's unit tests: a scratch directory
 * per test, image creation, patterned writes and checks. */
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk.h"

struct tdir {
	char path[64];
};

static inline void tdir_init(struct tdir *t)
{
	snprintf(t->path, sizeof(t->path), "/tmp/cella-disk-ut-XXXXXX");
	assert_non_null(mkdtemp(t->path));
}

static inline void tdir_rm(struct tdir *t)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);
	assert_int_equal(system(cmd), 0);
}

static inline const char *tpath(struct tdir *t, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", t->path, name);
	return buf;
}

static inline void mk_qcow2(const char *path, uint64_t size, unsigned cluster_bits,
			    const char *backing)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .size = size,
				      .cluster_bits = cluster_bits, .backing = backing };
	char err[256];
	int ret = disk_create(path, &o, err, sizeof(err));

	if (ret)
		fail_msg("create %s: %s", path, err);
}

static inline void mk_raw(const char *path, uint64_t size)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_RAW, .size = size };
	char err[256];

	assert_int_equal(disk_create(path, &o, err, sizeof(err)), 0);
}

static inline struct disk *open_ok(const char *path, unsigned flags)
{
	struct disk *d = NULL;
	char err[512];
	int ret = disk_open(&d, path, -1, flags, err, sizeof(err));

	if (ret)
		fail_msg("open %s: %s (%d)", path, err, ret);
	return d;
}

/* Pattern byte of offset `off` for seed s: detects misplaced data. */
static inline uint8_t pat(uint64_t off, unsigned s)
{
	return (uint8_t)((off >> 9) * 31 + (off & 511) + s * 7 + 1);
}

static inline void write_pat(struct disk *d, uint64_t off, size_t len, unsigned s)
{
	uint8_t *b = malloc(len);

	for (size_t i = 0; i < len; i++)
		b[i] = pat(off + i, s);
	if (disk_pwrite(d, b, len, off))
		fail_msg("write %#llx+%zu: %s", (unsigned long long)off, len, disk_error(d));
	free(b);
}

/* s == 0: expect zeroes */
static inline void check_pat(struct disk *d, uint64_t off, size_t len, unsigned s)
{
	uint8_t *b = malloc(len);

	if (disk_pread(d, b, len, off))
		fail_msg("read %#llx+%zu: %s", (unsigned long long)off, len, disk_error(d));
	for (size_t i = 0; i < len; i++) {
		uint8_t want = s ? pat(off + i, s) : 0;

		if (b[i] != want)
			fail_msg("byte %#llx: %#x, want %#x", (unsigned long long)(off + i), b[i],
				 want);
	}
	free(b);
}

static inline void check_clean(struct disk *d)
{
	struct disk_check_result r;

	assert_int_equal(disk_check(d, false, &r), 0);
	if (r.corruptions || r.leaks)
		fail_msg("check: %llu corruptions, %llu leaks: %s",
			 (unsigned long long)r.corruptions, (unsigned long long)r.leaks,
			 r.first_problem);
}
