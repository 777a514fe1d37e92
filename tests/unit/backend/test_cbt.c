/* test_cbt.c: changed-block tracking and backups through the disk library:
 * full backup, tracked writes, incrementals, restore byte-identical, bits
 * kept across an unclean close (kill -9), points invalidated by a host
 * crash, corrupt or mismatched incrementals refused before any write. */
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

#include "cbt.h"
#include "disk.h"

#define SIZE ((4u << 20) + 3 * 65536 + 512) /* last block partial */

struct fx {
	char dir[64], img[96], full[96], inc[4][96];
};

static uint64_t rng_state = 0x1234;

static uint8_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint8_t)(rng_state >> 56);
}

static void write_random(struct disk *d, struct cbt *c, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	for (size_t i = 0; i < len; i++)
		buf[i] = rnd();
	if (c)
		cbt_mark(c, off, len); /* before the data, as virtio-blk does */
	assert_int_equal(disk_pwrite(d, buf, len, off), 0);
	free(buf);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct disk_create_opts o = { .fmt = DISK_FMT_RAW, .size = SIZE };
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/cella-cbt-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
	snprintf(f->full, sizeof(f->full), "%s/full.raw", f->dir);
	for (int i = 0; i < 4; i++)
		snprintf(f->inc[i], sizeof(f->inc[i]), "%s/inc%d", f->dir, i);
	assert_int_equal(disk_create(f->img, &o, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static bool same_content(const char *a, const char *b)
{
	char err[256];
	struct disk *da, *db;
	uint8_t *x = malloc(SIZE), *y = malloc(SIZE);
	bool same;

	assert_int_equal(disk_open(&da, a, -1, DISK_RDONLY, err, sizeof(err)), 0);
	assert_int_equal(disk_open(&db, b, -1, DISK_RDONLY, err, sizeof(err)), 0);
	assert_int_equal(disk_size(da), disk_size(db));
	assert_int_equal(disk_pread(da, x, SIZE, 0), 0);
	assert_int_equal(disk_pread(db, y, SIZE, 0), 0);
	same = !memcmp(x, y, SIZE);
	disk_close(da);
	disk_close(db);
	free(x);
	free(y);
	return same;
}

static int backup(struct disk *d, struct cbt *c, const char *since, const char *point,
		  const char *out, uint64_t *bytes)
{
	char err[256] = "";
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), ret;

	assert_true(fd >= 0);
	ret = since ? cbt_backup_incremental(d, c, since, point, fd, bytes, err, sizeof(err))
		    : cbt_backup_full(d, c, point, fd, bytes, err, sizeof(err));
	close(fd);
	if (ret)
		print_message("backup: %s\n", err);
	return ret;
}

static int restore(const char *img, const char *inc, char *err, size_t errlen)
{
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX];
	struct disk *d;
	int fd = open(inc, O_RDONLY), ret;

	assert_true(fd >= 0);
	assert_int_equal(disk_open(&d, img, -1, 0, err, errlen), 0);
	ret = cbt_restore_incremental(d, fd, point, since, err, errlen);
	close(fd);
	assert_int_equal(disk_close(d), 0);
	return ret;
}

static void test_full_incremental_restore(void **state)
{
	struct fx *f = *state;
	struct disk *d;
	struct cbt *c;
	char err[256];
	uint64_t bytes;

	assert_int_equal(disk_open(&d, f->img, -1, 0, err, sizeof(err)), 0);
	write_random(d, NULL, 0, 1 << 20);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	assert_int_equal(backup(d, c, NULL, "p0", f->full, &bytes), 0);
	assert_int_equal(bytes, 1 << 20);

	/* Changes: unaligned, across blocks, at the partial end. */
	write_random(d, c, 4096, 512);
	write_random(d, c, 3 * 65536 - 100, 300);
	write_random(d, c, 2 << 20, 200000);
	write_random(d, c, SIZE - 512, 512);
	assert_int_equal(backup(d, c, "p0", "p1", f->inc[0], &bytes), 0);
	/* blocks 0, 2, 3, 32-35, and the last (512 bytes) */
	assert_int_equal(bytes, 7 * 65536 + 512);

	/* Unclean close (the worker killed): bits kept, points valid. */
	write_random(d, c, 1 << 20, 65536);
	cbt_close(c, false);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	write_random(d, c, 3 << 20, 4096);
	assert_int_equal(backup(d, c, "p1", "p2", f->inc[1], &bytes), 0);
	assert_int_equal(bytes, 2 * 65536);
	/* Nothing changed since p2: an empty incremental is fine. */
	assert_int_equal(backup(d, c, "p2", "p3", f->inc[2], &bytes), 0);
	assert_int_equal(bytes, 0);
	assert_int_equal(backup(d, c, "nope", "p4", f->inc[3], &bytes), -ENOENT);
	cbt_close(c, true);
	assert_int_equal(disk_close(d), 0);

	assert_false(same_content(f->img, f->full));
	for (int i = 0; i < 3; i++)
		assert_int_equal(restore(f->full, f->inc[i], err, sizeof(err)), 0);
	assert_true(same_content(f->img, f->full));
}

static void test_host_crash_invalidates(void **state)
{
	struct fx *f = *state;
	char err[256], path[128];
	struct disk *d;
	struct cbt *c;
	uint64_t bytes;
	int fd;

	assert_int_equal(disk_open(&d, f->img, -1, 0, err, sizeof(err)), 0);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	assert_int_equal(backup(d, c, NULL, "p0", f->full, &bytes), 0);
	cbt_close(c, false); /* left "in use" */
	/* Another boot id: as if the host had crashed and rebooted. */
	snprintf(path, sizeof(path), "%s.cbt", f->img);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "00000000-dead-beef", 18, 40), 18);
	close(fd);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	assert_int_equal(backup(d, c, "p0", "p1", f->inc[0], &bytes), -ESTALE);
	/* A clean close under the same boot keeps points valid. */
	assert_int_equal(backup(d, c, NULL, "q0", f->full, &bytes), 0);
	cbt_close(c, true);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	assert_int_equal(backup(d, c, "q0", "q1", f->inc[0], &bytes), 0);
	cbt_close(c, true);
	disk_close(d);
}

static void test_corrupt_incremental_refused(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct disk *d;
	struct cbt *c;
	uint64_t bytes;
	uint8_t b;
	int fd;

	assert_int_equal(disk_open(&d, f->img, -1, 0, err, sizeof(err)), 0);
	assert_int_equal(cbt_open(&c, f->img, disk_size(d), err, sizeof(err)), 0);
	assert_int_equal(backup(d, c, NULL, "p0", f->full, &bytes), 0);
	write_random(d, c, 0, 65536);
	assert_int_equal(backup(d, c, "p0", "p1", f->inc[0], &bytes), 0);
	cbt_close(c, true);
	disk_close(d);
	/* Flip one data byte: the checksum catches it, the image is untouched. */
	fd = open(f->inc[0], O_RDWR);
	assert_int_equal(pread(fd, &b, 1, 200), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, 200), 1);
	close(fd);
	assert_int_equal(restore(f->full, f->inc[0], err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "checksum"));
	assert_false(same_content(f->img, f->full));
	/* Truncated. */
	assert_int_equal(truncate(f->inc[0], 100), 0);
	assert_int_not_equal(restore(f->full, f->inc[0], err, sizeof(err)), 0);
	/* Not an incremental at all. */
	assert_int_not_equal(restore(f->full, f->img, err, sizeof(err)), 0);
}

static void test_points(void **state)
{
	struct fx *f = *state;
	const char *names[CBT_MAX_POINTS];
	bool valid[CBT_MAX_POINTS];
	char err[256], name[16];
	struct cbt *c, *c2;

	assert_int_equal(cbt_open(&c, f->img, SIZE, err, sizeof(err)), 0);
	/* A second opener is refused. */
	assert_int_equal(cbt_open(&c2, f->img, SIZE, err, sizeof(err)), -EBUSY);
	for (int i = 0; i < CBT_MAX_POINTS + 2; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(cbt_point_start(c, name), 0);
	}
	assert_int_equal(cbt_points(c, names, valid), CBT_MAX_POINTS);
	assert_int_equal(cbt_point_start(c, ""), -EINVAL);
	assert_int_equal(cbt_point_start(c, "0123456789012345678901234567890123"), -EINVAL);
	assert_int_equal(cbt_point_drop(c, "n9"), 0);
	assert_int_equal(cbt_point_drop(c, "n9"), -ENOENT);
	cbt_close(c, true);
	/* Another disk size: the file starts over. */
	assert_int_equal(cbt_open(&c, f->img, SIZE * 2, err, sizeof(err)), 0);
	assert_int_equal(cbt_points(c, names, valid), 0);
	cbt_close(c, true);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_full_incremental_restore),
		T(test_host_crash_invalidates),
		T(test_corrupt_incremental_refused),
		T(test_points),
	};

	return cmocka_run_group_tests_name("cbt", tests, NULL, NULL);
}
