/* test_blk_fine.c: live exports with grain 4096 (blk_fine.h), without KVM:
 * a set since a point made by a 4 KiB export carries exactly the 4 KiB units
 * written since (writes during the export included in the next one), and,
 * restored onto the disk as it was, gives the disk at the cut; a retry since
 * the same point after an uncommitted export carries both exports' units; a
 * point made by a 64 KiB export (or a worker without its map) gives whole
 * blocks; a fine set made a replica point gets a layer of 4 KiB clusters
 * holding the right bytes; a fine set truncated or corrupted is refused. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "blkx.h"
#include "cbt.h"
#include "disk.h"
#include "vdrv.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_ctl.h"
#include "replica.h"
#include "virtio/virtio.h"

#define UNIT CBT_FINE_BLOCK

/* An export with grain 4096 (deferred commit or not) drained whole. */
static uint8_t *export_fine(struct fixture *f, const char *since, const char *point, bool defer,
			    size_t *len, struct blk_export_status *st)
{
	struct blk_export_args a = { .point = point, .since = since, .grain = CBT_FINE_BLOCK,
				     .deferred_commit = defer };
	char err[256] = "";
	uint8_t *s;
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	if (virtio_blk_export(f->dev, &a, p[1], st, err, sizeof(err)))
		fail_msg("export: %s", err);
	s = blkx_read_stream(p[0], len);
	close(p[0]);
	blkx_wait_state(f, "done");
	virtio_blk_export_status(f->dev, st);
	return s;
}

/* The stream's header block size and its extents as 4 KiB units. */
static uint32_t stream_units(const uint8_t *s, size_t len, bool units[IMG_SIZE / UNIT])
{
	uint64_t nr;
	uint32_t bs;

	memset(units, 0, IMG_SIZE / UNIT);
	assert_true(len >= 104 + 8);
	memcpy(&bs, s + 12, 4);
	memcpy(&nr, s + 24, 8);
	for (uint64_t i = 0; i < nr; i++) {
		uint64_t off, l;

		memcpy(&off, s + 104 + 16 * i, 8);
		memcpy(&l, s + 104 + 16 * i + 8, 8);
		for (uint64_t u = off / UNIT; u < (off + l + UNIT - 1) / UNIT; u++)
			units[u] = true;
	}
	return bs;
}

static void want_units(const uint8_t *s, size_t len, const unsigned *want, unsigned n)
{
	bool units[IMG_SIZE / UNIT];

	assert_int_equal(stream_units(s, len, units), CBT_FINE_BLOCK);
	for (unsigned u = 0; u < IMG_SIZE / UNIT; u++) {
		bool w = false;

		for (unsigned i = 0; i < n; i++)
			w |= want[i] == u;
		if (units[u] != w)
			fail_msg("unit %u (block %u): %s, want %s", u, u / 16, units[u] ? "sent" : "not sent",
				 w ? "sent" : "not sent");
	}
}

/* Fine sets carry the units written; restored in turn onto a copy, they
 * give the disk at each cut, writes during an export included. */
static void test_fine_sets(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	uint8_t *cut = malloc(IMG_SIZE), *s;
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy = blkx_zero_image();
	size_t len;
	struct wreq w;
	int p[2];

	s = export_fine(f, NULL, "p0", false, &len, &st);
	assert_int_equal(st.grain, CBT_FINE_BLOCK);
	assert_false(st.narrowed);
	assert_int_equal(st.data_bytes, IMG_SIZE);
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(blkx_image_equals(copy, f->model));

	blkx_write_wait(f, 3 * BLK + 5 * UNIT, UNIT, 0xb1);        /* unit 53 */
	blkx_write_wait(f, 10 * BLK + UNIT - 1024, 2048, 0xb2);     /* units 160, 161 */
	blkx_write_wait(f, 20 * BLK + 1024, 512, 0xb3);             /* unit 320 */
	blkx_write_wait(f, IMG_SIZE - UNIT, UNIT, 0xb4);           /* the last unit */
	blkx_write_wait(f, 30 * BLK + 15 * UNIT, 2 * UNIT, 0xb5);  /* units 495, 496 */
	s = export_fine(f, "p0", "p1", false, &len, &st);
	assert_true(st.narrowed);
	assert_int_equal(st.data_bytes, 7 * UNIT);
	want_units(s, len, (unsigned[]){ 53, 160, 161, 320, IMG_SIZE / UNIT - 1, 495, 496 }, 7);
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	assert_string_equal(since, "p0");
	free(s);
	assert_true(blkx_image_equals(copy, f->model));

	/* Writes while the export runs (a small pipe holds it): the stream
	 * keeps the cut's bytes; the next set carries the writes. */
	blkx_write_wait(f, 40 * BLK, UNIT, 0xc1);
	blkx_write_wait(f, 90 * BLK + 3 * UNIT, UNIT, 0xc2);
	memcpy(cut, f->model, IMG_SIZE);
	{
		struct blk_export_args a = { .point = "p2", .since = "p1", .grain = CBT_FINE_BLOCK };
		char err[256] = "";

		blkx_small_pipe(p);
		assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	}
	blkx_write_start(f, &w, 90 * BLK + 7 * UNIT, UNIT, 0xc3); /* same block, not read yet */
	s = blkx_read_stream(p[0], &len);
	close(p[0]);
	assert_true(vdrv_wait_used(f->d, 0, w.idx));
	memset(f->model + 90 * BLK + 7 * UNIT, 0xc3, UNIT);
	blkx_write_wait(f, 40 * BLK + 8 * UNIT, UNIT, 0xc4);
	blkx_wait_state(f, "done");
	want_units(s, len, (unsigned[]){ 640, 1443 }, 2);
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(blkx_image_equals(copy, cut));
	s = export_fine(f, "p2", "p3", false, &len, &st);
	/* Block 90 changed while p2's export ran: p3 has the unit written
	 * then, not the one p2 sent; block 40 changed after it ended. */
	want_units(s, len, (unsigned[]){ 648, 1447 }, 2);
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(blkx_image_equals(copy, f->model));
	unlink(copy);
	free(cut);
}

/* An export never committed: the retry since the same point carries its
 * units and the later ones; a commit then leaves only what came after. */
static void test_fine_retry_and_commit(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	size_t len;
	uint8_t *s;

	free(export_fine(f, NULL, "p0", true, &len, &st));
	assert_int_equal(virtio_blk_export_commit(f->dev, "p0"), 0);
	blkx_write_wait(f, 5 * BLK + 2 * UNIT, UNIT, 0xd1);
	free(export_fine(f, "p0", "p1", true, &len, &st)); /* lost: no commit */
	blkx_write_wait(f, 6 * BLK + 9 * UNIT, UNIT, 0xd2);
	s = export_fine(f, "p0", "p2", true, &len, &st);
	assert_true(st.narrowed);
	want_units(s, len, (unsigned[]){ 82, 105 }, 2);
	free(s);
	blkx_write_wait(f, 6 * BLK + 10 * UNIT, UNIT, 0xd3); /* after p2's cut */
	assert_int_equal(virtio_blk_export_commit(f->dev, "p2"), 0);
	s = export_fine(f, "p2", "p3", true, &len, &st);
	assert_true(st.narrowed);
	/* Block 6 was written after the cut: only the unit written then. */
	want_units(s, len, (unsigned[]){ 106 }, 1);
	free(s);
}

/* A point made by a 64 KiB export has no 4 KiB map: whole blocks, in a
 * set that still says 4096 and restores right. */
static void test_fine_fallback(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy = blkx_zero_image();
	size_t len;
	uint8_t *s;

	s = export_fine(f, NULL, "p0", false, &len, &st);
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	free(s);
	blkx_write_wait(f, 2 * BLK, UNIT, 0xe1);
	free(blkx_export_all(f, "p0", "p1", &len)); /* 64 KiB: p1 has no map */
	s = export_fine(f, "p0", "p1x", false, &len, &st);
	assert_true(st.narrowed); /* p0's map is still there */
	want_units(s, len, (unsigned[]){ 32 }, 1);
	free(s);
	blkx_write_wait(f, 3 * BLK, UNIT, 0xe2);
	s = export_fine(f, "p1", "p2", false, &len, &st);
	assert_false(st.narrowed);
	assert_int_equal(st.data_bytes, BLK);
	want_units(s, len, (unsigned[]){ 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
					  63 }, 16);
	free(s);
	unlink(copy);
}

static int set_file(const uint8_t *s, size_t len)
{
	char tmp[] = "/tmp/cella-fine-set-XXXXXX";
	int fd = mkstemp(tmp);

	assert_true(fd >= 0);
	unlink(tmp);
	assert_int_equal(write(fd, s, len), (ssize_t)len);
	return fd;
}

/* A fine set made a replica point: a layer of 4 KiB clusters holding the
 * disk; the same set truncated or with a byte flipped is refused. */
static void test_fine_replica_point(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	struct replica_point pt;
	struct replica *r;
	struct disk_info info;
	struct disk *d;
	char dir[] = "/tmp/cella-fine-rep-XXXXXX", err[256] = "", path[PATH_MAX], cmd[PATH_MAX + 16];
	uint8_t *s, *buf = malloc(IMG_SIZE);
	size_t len;
	int fd;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(replica_open(&r, dir, true, err, sizeof(err)), 0);
	s = export_fine(f, NULL, "r1", false, &len, &st);
	fd = set_file(s, len);
	assert_int_equal(replica_add(r, fd, NULL, err, sizeof(err)), 0);
	close(fd);
	free(s);
	blkx_write_wait(f, 7 * BLK + 3 * UNIT, UNIT, 0xf1);
	blkx_write_wait(f, 70 * BLK, 3 * UNIT, 0xf2);
	s = export_fine(f, "r1", "r2", false, &len, &st);
	/* Truncated, then one byte flipped: refused, nothing left. */
	fd = set_file(s, len - 9);
	assert_int_not_equal(replica_add(r, fd, NULL, err, sizeof(err)), 0);
	close(fd);
	s[len - 20] ^= 0x40;
	fd = set_file(s, len);
	assert_int_not_equal(replica_add(r, fd, NULL, err, sizeof(err)), 0);
	close(fd);
	s[len - 20] ^= 0x40;
	fd = set_file(s, len);
	if (replica_add(r, fd, &pt, err, sizeof(err)))
		fail_msg("replica_add: %s", err);
	close(fd);
	free(s);
	snprintf(path, sizeof(path), "%s/%s", dir, pt.file);
	assert_int_equal(disk_open(&d, path, DISK_FMT_QCOW2, 0, err, sizeof(err)), 0);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_int_equal(info.cluster_bits, CBT_FINE_BITS);
	assert_int_equal(info.allocated, 4 * UNIT); /* no whole blocks copied */
	assert_int_equal(disk_pread(d, buf, IMG_SIZE, 0), 0);
	assert_int_equal(disk_close(d), 0);
	assert_memory_equal(buf, f->model, IMG_SIZE);
	/* Retention: merged into the base, whose content is the disk. */
	assert_int_equal(replica_merge_oldest(r, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/base.qcow2", dir);
	assert_int_equal(disk_open(&d, path, DISK_FMT_QCOW2, 0, err, sizeof(err)), 0);
	assert_int_equal(disk_pread(d, buf, IMG_SIZE, 0), 0);
	assert_int_equal(disk_close(d), 0);
	assert_memory_equal(buf, f->model, IMG_SIZE);
	replica_close(r);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(buf);
}

#define T(t) cmocka_unit_test_setup_teardown(t, blkx_setup, blkx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_fine_sets),
		T(test_fine_retry_and_commit),
		T(test_fine_fallback),
		T(test_fine_replica_point),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
