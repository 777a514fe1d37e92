/* test_blk_export.c: live exports of a virtio-blk disk (disk-export), without
 * KVM: the stream, restored with the disk library onto a zeroed image, must
 * equal the disk as it was at the cut while guest writes hit blocks already
 * sent, in memory and not read yet; with the copies at their cap a write
 * waits, then completes once the stream drains; a cancelled export (by
 * request or by the reader closing the pipe) loses nothing for the next
 * one, and a completed one leaves in its point only what changed after the
 * cut; exports are refused where they cannot run. */
#include <errno.h>
#include <fcntl.h>
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
#include "virtio/virtio.h"

/* The extents of a stream, as a set of blocks. */
static void stream_blocks(const uint8_t *s, size_t len, bool blocks[IMG_SIZE / BLK])
{
	uint64_t nr;

	memset(blocks, 0, IMG_SIZE / BLK);
	assert_true(len >= 104 + 8);
	memcpy(&nr, s + 24, 8);
	for (uint64_t i = 0; i < nr; i++) {
		uint64_t off, l;

		memcpy(&off, s + 104 + 16 * i, 8);
		memcpy(&l, s + 104 + 16 * i + 8, 8);
		for (uint64_t b = off / BLK; b < (off + l) / BLK; b++)
			blocks[b] = true;
	}
}

/* A full export while the guest writes blocks the stream has sent, holds in
 * memory, and has not read: the stream is the disk at the cut. */
static void test_full_export_under_writes(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	uint8_t *cut = malloc(IMG_SIZE), *s;
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	int p[2];
	size_t len;

	blkx_small_pipe(p);
	memcpy(cut, f->model, IMG_SIZE);
	assert_int_equal(blkx_export(f, NULL, "p0", 8, p[1], &st), 0);
	assert_string_equal(st.state, "running");
	assert_int_equal(st.blocks, IMG_SIZE / BLK); /* raw: every block holds data */
	/* Block 0 is in memory (read ahead), 40 and 41 (one write across
	 * both), 100 and 127 are not read yet: copied first. */
	blkx_write_wait(f, 0, 4096, 0xa1);
	blkx_write_wait(f, 40 * BLK + BLK - 2048, 4096, 0xa2);
	blkx_write_wait(f, 100 * BLK + 512, 1024, 0xa3);
	blkx_write_wait(f, 127 * BLK, BLK, 0xa4);
	virtio_blk_export_status(f->dev, &st);
	assert_true(st.copies >= 4);
	assert_true(st.held <= 8);
	s = blkx_read_stream(p[0], &len);
	close(p[0]);
	/* Writes after the stream passed the blocks and while it runs. */
	blkx_wait_state(f, "done");
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	assert_string_equal(point, "p0");
	assert_string_equal(since, "");
	assert_true(blkx_image_equals(copy, cut));
	virtio_blk_export_status(f->dev, &st);
	assert_int_equal(st.sent, len);
	assert_int_equal(st.stream_bytes, len);
	assert_true(blkx_image_equals(f->path, f->model)); /* and the guest's writes landed */
	unlink(copy);
	free(s);
	free(cut);
}

/* max_copies=1: the second write to an unread block waits while the stream
 * is stuck (a write behind it that needs no copy goes past it), and
 * completes once the reader drains it. */
static void test_cap_waits_then_completes(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	uint8_t *cut = malloc(IMG_SIZE), *s;
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	struct wreq a, b, c;
	int p[2];
	size_t len;

	blkx_small_pipe(p);
	memcpy(cut, f->model, IMG_SIZE);
	assert_int_equal(blkx_export(f, NULL, "p0", 1, p[1], &st), 0);
	blkx_write_start(f, &a, 90 * BLK, 4096, 0xb1);
	assert_true(vdrv_wait_used(f->d, 0, a.idx)); /* one copy: room */
	blkx_write_start(f, &b, 110 * BLK, 4096, 0xb2);
	/* Behind it, a write to a block in memory (read ahead) needs no copy:
	 * it overtakes the waiting one. */
	blkx_write_start(f, &c, 2 * BLK, 4096, 0xb3);
	for (int i = 0; i < 300 && !blkx_write_done(f, &c); i++)
		blkx_sleep_ms(10);
	assert_true(blkx_write_done(f, &c));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, c.status, 1), VIRTIO_BLK_S_OK);
	blkx_sleep_ms(200);
	assert_false(blkx_write_done(f, &b)); /* the cap is reached: it waits */
	virtio_blk_export_status(f->dev, &st);
	assert_int_equal(st.held, 1);
	assert_true(st.waits >= 1);
	s = blkx_read_stream(p[0], &len); /* the stream drains: it goes through */
	close(p[0]);
	assert_true(vdrv_wait_used(f->d, 0, b.idx));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, b.status, 1), VIRTIO_BLK_S_OK);
	memset(f->model + 90 * BLK, 0xb1, 4096);
	memset(f->model + 110 * BLK, 0xb2, 4096);
	memset(f->model + 2 * BLK, 0xb3, 4096);
	blkx_wait_state(f, "done");
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	assert_true(blkx_image_equals(copy, cut));
	assert_true(blkx_image_equals(f->path, f->model));
	unlink(copy);
	free(s);
	free(cut);
}

/* Cancelled exports (by request, by the reader closing) lose nothing for
 * the next one; a completed one keeps only what changed after its cut. */
static void test_cancel_then_incremental(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	bool blocks[IMG_SIZE / BLK];
	uint8_t *full, *inc, *at_p0 = malloc(IMG_SIZE), *cut = malloc(IMG_SIZE);
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	size_t full_len, inc_len;
	int p[2];

	memcpy(at_p0, f->model, IMG_SIZE);
	full = blkx_export_all(f, NULL, "p0", &full_len);
	blkx_write_wait(f, 3 * BLK, 4096, 0xc1);
	blkx_write_wait(f, 50 * BLK, 4096, 0xc2);

	/* since p0 -> p1, cancelled by request half-way. */
	blkx_small_pipe(p);
	assert_int_equal(blkx_export(f, "p0", "p1", 0, p[1], &st), 0);
	assert_int_equal(st.blocks, 2);
	assert_int_equal(virtio_blk_export_cancel(f->dev), 0);
	virtio_blk_export_status(f->dev, &st);
	assert_string_equal(st.state, "cancelled");
	assert_int_equal(virtio_blk_export_cancel(f->dev), -ENOENT);
	close(p[0]);
	blkx_write_wait(f, 70 * BLK, 4096, 0xc3);

	/* since p1 -> p2, the reader goes away: cancelled too. */
	blkx_small_pipe(p);
	assert_int_equal(blkx_export(f, "p1", "p2", 0, p[1], &st), 0);
	assert_int_equal(st.blocks, 3); /* 3 and 50 were kept in p1, and 70 */
	close(p[0]);
	blkx_write_wait(f, 71 * BLK, 4096, 0xc4); /* wakes the loop; the stream hits EPIPE */
	blkx_wait_state(f, "cancelled");

	/* since p2 -> p3 completes: everything since p0. */
	memcpy(cut, f->model, IMG_SIZE);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(blkx_export(f, "p2", "p3", 0, p[1], &st), 0);
	blkx_write_wait(f, 20 * BLK, 4096, 0xc5); /* after the cut: the next one's */
	blkx_write_wait(f, 3 * BLK + 8192, 4096, 0xc6); /* in the cut and after it */
	inc = blkx_read_stream(p[0], &inc_len);
	close(p[0]);
	blkx_wait_state(f, "done");
	stream_blocks(inc, inc_len, blocks);
	for (unsigned b = 0; b < IMG_SIZE / BLK; b++)
		assert_int_equal(blocks[b], b == 3 || b == 50 || b == 70 || b == 71);
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, full, full_len, point, since), 0);
	assert_true(blkx_image_equals(copy, at_p0));
	assert_int_equal(blkx_apply(copy, inc, inc_len, point, since), 0);
	assert_string_equal(point, "p3");
	assert_string_equal(since, "p2");
	assert_true(blkx_image_equals(copy, cut));
	free(inc);

	/* p3 holds what changed after its cut: 20 and 3, not 50, 70, 71. */
	memcpy(cut, f->model, IMG_SIZE);
	inc = blkx_export_all(f, "p3", "p4", &inc_len);
	stream_blocks(inc, inc_len, blocks);
	for (unsigned b = 0; b < IMG_SIZE / BLK; b++)
		assert_int_equal(blocks[b], b == 3 || b == 20);
	assert_int_equal(blkx_apply(copy, inc, inc_len, point, since), 0);
	assert_true(blkx_image_equals(copy, cut));
	unlink(copy);
	free(inc);
	free(full);
	free(at_p0);
	free(cut);
}

/* deferred_commit: the point keeps the blocks sent until the commit, which
 * then clears those not written since the cut; without a commit (a new
 * export drops it) they stay. */
static void test_deferred_commit(void **state)
{
	struct fixture *f = *state;
	struct blk_export_args a = { .point = "p1", .since = "p0", .deferred_commit = true };
	struct blk_export_status st;
	bool blocks[IMG_SIZE / BLK];
	char err[256];
	uint8_t *s;
	size_t len;
	int p[2];

	free(blkx_export_all(f, NULL, "p0", &len));
	blkx_write_wait(f, 5 * BLK, 4096, 0xd1);
	blkx_write_wait(f, 6 * BLK, 4096, 0xd2);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	free(blkx_read_stream(p[0], &len));
	close(p[0]);
	blkx_wait_state(f, "done");
	virtio_blk_export_status(f->dev, &st);
	assert_true(st.commit_pending);
	blkx_write_wait(f, 6 * BLK + 4096, 4096, 0xd3); /* after the cut */
	assert_int_equal(virtio_blk_export_commit(f->dev, "nope"), -ENOENT);
	assert_int_equal(virtio_blk_export_commit(f->dev, "p1"), 0);
	assert_int_equal(virtio_blk_export_commit(f->dev, "p1"), -ENOENT);
	s = blkx_export_all(f, "p1", "p2", &len);
	stream_blocks(s, len, blocks);
	for (unsigned b = 0; b < IMG_SIZE / BLK; b++)
		assert_int_equal(blocks[b], b == 6);
	free(s);

	/* Not committed: p3 keeps 7, and a new export drops the commit. */
	blkx_write_wait(f, 7 * BLK, 4096, 0xd4);
	a = (struct blk_export_args){ .point = "p3", .since = "p2", .deferred_commit = true };
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	free(blkx_read_stream(p[0], &len));
	close(p[0]);
	blkx_wait_state(f, "done");
	s = blkx_export_all(f, "p3", "p4", &len);
	stream_blocks(s, len, blocks);
	for (unsigned b = 0; b < IMG_SIZE / BLK; b++)
		assert_int_equal(blocks[b], b == 7);
	free(s);
	assert_int_equal(virtio_blk_export_commit(f->dev, "p3"), -ENOENT);
}

/* Discard and write-zeroes copy first too. */
static void test_discard_copies_first(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	uint8_t *cut = malloc(IMG_SIZE), *s;
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	struct virtio_blk_discard_write_zeroes *seg;
	struct virtio_blk_outhdr *h;
	struct vdrv_seg segs[3];
	uint64_t hdr, data, status;
	uint16_t idx;
	int p[2];
	size_t len;

	blkx_small_pipe(p);
	memcpy(cut, f->model, IMG_SIZE);
	assert_int_equal(blkx_export(f, NULL, "p0", 0, p[1], &st), 0);
	hdr = vdrv_alloc(f->d, sizeof(*h));
	h = vdrv_ptr(f->d, hdr, sizeof(*h));
	h->type = VIRTIO_BLK_T_WRITE_ZEROES;
	data = vdrv_alloc(f->d, sizeof(*seg));
	seg = vdrv_ptr(f->d, data, sizeof(*seg));
	seg->sector = 60 * BLK / 512;
	seg->num_sectors = 4 * BLK / 512;
	seg->flags = 0;
	status = vdrv_alloc(f->d, 1);
	segs[0] = (struct vdrv_seg){ hdr, sizeof(*h), false };
	segs[1] = (struct vdrv_seg){ data, sizeof(*seg), false };
	segs[2] = (struct vdrv_seg){ status, 1, true };
	idx = (uint16_t)(vdrv_used_idx(f->d, 0) + 1);
	vdrv_add(f->d, 0, segs, 3, false);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, idx));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, status, 1), VIRTIO_BLK_S_OK);
	memset(f->model + 60 * BLK, 0, 4 * BLK);
	s = blkx_read_stream(p[0], &len);
	close(p[0]);
	blkx_wait_state(f, "done");
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, s, len, point, since), 0);
	assert_true(blkx_image_equals(copy, cut));
	assert_true(blkx_image_equals(f->path, f->model));
	unlink(copy);
	free(s);
	free(cut);
}

static void test_refusals(void **state)
{
	struct fixture *f = *state;
	struct blk_export_status st;
	char err[256];
	int p[2], q[2], fd;

	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	assert_int_equal(blkx_export(f, "nope", "p1", 0, q[1], &st), -ENOENT);
	close(q[0]);
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	assert_int_equal(blkx_export(f, NULL, "", 0, q[1], &st), -EINVAL);
	close(q[0]);
	blkx_small_pipe(p);
	assert_int_equal(blkx_export(f, NULL, "p0", 0, p[1], &st), 0);
	assert_true(virtio_blk_exporting(f->dev));
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	assert_int_equal(blkx_export(f, NULL, "p9", 0, q[1], &st), -EBUSY);
	close(q[0]);
	fd = open(f->path, O_RDWR);
	assert_int_equal(virtio_blk_switch(f->dev, fd, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "export"));
	assert_int_equal(virtio_blk_export_cancel(f->dev), 0);
	assert_false(virtio_blk_exporting(f->dev));
	close(p[0]);
}

/* A reader that stops reading: the export ends itself after stall_ms
 * (cancelled, nothing lost: the point still holds the set), and a write
 * held behind a full copy cap goes on. The next export since the same
 * point brings everything. */
static void test_stall_timeout(void **state)
{
	struct fixture *f = *state;
	struct blk_export_args a = { .point = "p1", .since = "p0", .stall_ms = 150,
				     .max_copies = 1 };
	struct blk_export_status st;
	uint8_t *full, *inc, *at_p0 = malloc(IMG_SIZE);
	char err[256] = "", point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	size_t full_len, inc_len;
	struct wreq w1, w2;
	int p[2];

	memcpy(at_p0, f->model, IMG_SIZE);
	full = blkx_export_all(f, NULL, "p0", &full_len);
	for (unsigned b = 10; b < 20; b++)
		blkx_write_wait(f, b * BLK, 4096, (uint8_t)(0x40 + b));
	blkx_small_pipe(p);
	assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	assert_int_equal(st.stall_ms, 150);
	/* Two writes into blocks of the set not sent: the first takes the one
	 * copy allowed, the second waits for the stream, which never moves. */
	blkx_write_start(f, &w1, 18 * BLK, 4096, 0x91);
	assert_true(vdrv_wait_used(f->d, 0, w1.idx));
	memset(f->model + 18 * BLK, 0x91, 4096);
	blkx_write_start(f, &w2, 19 * BLK, 4096, 0x92);
	blkx_wait_state(f, "cancelled");
	virtio_blk_export_status(f->dev, &st);
	assert_non_null(strstr(st.error, "stalled"));
	assert_true(vdrv_wait_used(f->d, 0, w2.idx));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, w2.status, 1), VIRTIO_BLK_S_OK);
	memset(f->model + 19 * BLK, 0x92, 4096);
	close(p[0]);
	inc = blkx_export_all(f, "p1", "p2", &inc_len);
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, full, full_len, point, since), 0);
	assert_true(blkx_image_equals(copy, at_p0));
	assert_int_equal(blkx_apply(copy, inc, inc_len, point, since), 0);
	assert_true(blkx_image_equals(copy, f->model));
	unlink(copy);
	free(full);
	free(inc);
	free(at_p0);
}

/* A bandwidth cap: the stream waits for its bucket (throttled counts it)
 * and is whole. */
static void test_bandwidth_cap(void **state)
{
	struct fixture *f = *state;
	struct blk_export_args a = { .point = "p1", .since = "p0", .max_bandwidth = 1 << 20 };
	struct blk_export_status st;
	uint8_t *full, *inc;
	char err[256] = "", point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy;
	size_t full_len, inc_len;
	int p[2];

	full = blkx_export_all(f, NULL, "p0", &full_len);
	for (unsigned b = 0; b < 6; b++)
		blkx_write_wait(f, (30 + b) * BLK, BLK, (uint8_t)(0x60 + b));
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	assert_int_equal(st.max_bandwidth, 1 << 20);
	inc = blkx_read_stream(p[0], &inc_len);
	close(p[0]);
	blkx_wait_state(f, "done");
	virtio_blk_export_status(f->dev, &st);
	assert_true(st.throttled > 0);
	assert_int_equal(inc_len, st.stream_bytes);
	copy = blkx_zero_image();
	assert_int_equal(blkx_apply(copy, full, full_len, point, since), 0);
	assert_int_equal(blkx_apply(copy, inc, inc_len, point, since), 0);
	assert_true(blkx_image_equals(copy, f->model));
	unlink(copy);
	/* Out of range: refused before anything starts. */
	a.max_bandwidth = 1000;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "max_bandwidth"));
	close(p[0]);
	free(full);
	free(inc);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, blkx_setup, blkx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_full_export_under_writes),
		T(test_cap_waits_then_completes),
		T(test_cancel_then_incremental),
		T(test_deferred_commit),
		T(test_discard_copies_first),
		T(test_refusals),
		T(test_stall_timeout),
		T(test_bandwidth_cap),
	};

	signal(SIGPIPE, SIG_IGN); /* as cella-vm does: EPIPE ends the export */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
