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

#include "cbt.h"
#include "disk.h"
#include "vdrv.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_ctl.h"
#include "replica.h"
#include "virtio/virtio.h"

#define IMG_SIZE (8u << 20) /* 128 tracking blocks */
#define BLK      CBT_BLOCK
#define F_V1     (1ULL << VIRTIO_F_VERSION_1)
#define F_BLK    ((1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) | \
		  (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_DISCARD) |      \
		  (1ULL << VIRTIO_BLK_F_WRITE_ZEROES))

struct fixture {
	struct vdrv *d;
	struct device *dev;
	char path[64], cbt[80];
	uint8_t *model; /* what the disk holds, by the test's own account */
};

static uint8_t pattern(size_t off)
{
	return (uint8_t)(off * 13 + 7 + off / 4093);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct disk_config cfg = { .cbt = true };
	int fd;

	f->model = malloc(IMG_SIZE);
	for (size_t i = 0; i < IMG_SIZE; i++)
		f->model[i] = pattern(i);
	snprintf(f->path, sizeof(f->path), "/tmp/cella-fine-test-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, f->model, IMG_SIZE, 0), IMG_SIZE);
	close(fd);
	snprintf(f->cbt, sizeof(f->cbt), "%s.cbt", f->path);
	cfg.path = f->path;
	snprintf(cfg.format, sizeof(cfg.format), "raw");
	f->d = vdrv_new();
	assert_int_equal(virtio_blk_create(&f->d->vm, &cfg, 0), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1 | F_BLK) & VIRTIO_CONFIG_S_DRIVER_OK);
	f->dev = virtio_blk_find(&f->d->vm, "blk0");
	assert_non_null(f->dev);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	unlink(f->path);
	unlink(f->cbt);
	free(f->model);
	free(f);
	return 0;
}

/* --- guest writes --- */

struct wreq {
	uint64_t status;
	uint16_t idx; /* used index once it completed */
};

/* Queue a write of `len` bytes of `byte` at `off` (not waited for). */
static void write_start(struct fixture *f, struct wreq *w, uint64_t off, uint32_t len, uint8_t byte)
{
	struct virtio_blk_outhdr *h;
	struct vdrv_seg segs[3];
	uint64_t hdr = vdrv_alloc(f->d, sizeof(*h)), data = vdrv_alloc(f->d, len);

	h = vdrv_ptr(f->d, hdr, sizeof(*h));
	h->type = VIRTIO_BLK_T_OUT;
	h->sector = off / 512;
	memset(vdrv_ptr(f->d, data, len), byte, len);
	w->status = vdrv_alloc(f->d, 1);
	*(uint8_t *)vdrv_ptr(f->d, w->status, 1) = 0xee;
	w->idx = (uint16_t)(vdrv_used_idx(f->d, 0) + 1);
	segs[0] = (struct vdrv_seg){ hdr, sizeof(*h), false };
	segs[1] = (struct vdrv_seg){ data, len, false };
	segs[2] = (struct vdrv_seg){ w->status, 1, true };
	vdrv_add(f->d, 0, segs, 3, false);
	vdrv_kick(f->d, 0);
}

/* A write that completes; the model follows. */
static void write_wait(struct fixture *f, uint64_t off, uint32_t len, uint8_t byte)
{
	struct wreq w;

	write_start(f, &w, off, len, byte);
	assert_true(vdrv_wait_used(f->d, 0, w.idx));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, w.status, 1), VIRTIO_BLK_S_OK);
	memset(f->model + off, byte, len);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* --- the stream --- */

/* A pipe whose buffer holds one page: the export stalls on it at once. */
static void small_pipe(int p[2])
{
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
}

static int export(struct fixture *f, const char *since, const char *point, unsigned max_copies,
		  int fd, struct blk_export_status *st)
{
	struct blk_export_args a = { .point = point, .since = since, .max_copies = max_copies };
	char err[256] = "";
	int ret = virtio_blk_export(f->dev, &a, fd, st, err, sizeof(err));

	if (ret)
		print_message("export: %s\n", err);
	return ret;
}

/* Everything until EOF (the worker closes the stream when it ends). */
static uint8_t *read_stream(int fd, size_t *len)
{
	size_t cap = 1 << 20, n = 0;
	uint8_t *buf = malloc(cap);

	for (;;) {
		ssize_t r;

		if (n == cap)
			buf = realloc(buf, cap *= 2);
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		assert_true(r >= 0);
		if (!r)
			break;
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

/* Apply a stream with the disk library (what `cella disk restore` does)
 * onto the raw image `img`; returns 0 or the library's error. */
static int apply(const char *img, const uint8_t *stream, size_t len, char point[CBT_NAME_MAX],
		 char since[CBT_NAME_MAX])
{
	char tmp[] = "/tmp/cella-export-stream-XXXXXX", err[256] = "";
	struct disk *d;
	int fd = mkstemp(tmp), ret;

	assert_true(fd >= 0);
	unlink(tmp);
	assert_int_equal(write(fd, stream, len), (ssize_t)len);
	assert_int_equal(disk_open(&d, img, DISK_FMT_RAW, 0, err, sizeof(err)), 0);
	ret = cbt_restore_incremental(d, fd, point, since, err, sizeof(err));
	if (ret)
		print_message("restore: %s\n", err);
	assert_int_equal(disk_close(d), 0);
	close(fd);
	return ret;
}

static char *zero_image(void)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/cella-fine-copy-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	return path;
}

static bool image_equals(const char *img, const uint8_t *want)
{
	uint8_t *buf = malloc(IMG_SIZE);
	int fd = open(img, O_RDONLY);
	bool ok;

	assert_int_equal(pread(fd, buf, IMG_SIZE, 0), IMG_SIZE);
	close(fd);
	ok = !memcmp(buf, want, IMG_SIZE);
	for (size_t i = 0; !ok && i < IMG_SIZE; i++)
		if (buf[i] != want[i]) {
			print_message("first difference at %zu (block %zu): %02x, want %02x\n", i,
				      i / BLK, buf[i], want[i]);
			break;
		}
	free(buf);
	return ok;
}

static void wait_state(struct fixture *f, const char *state)
{
	struct blk_export_status st;

	for (int i = 0; i < 500; i++) {
		virtio_blk_export_status(f->dev, &st);
		if (!strcmp(st.state, state))
			return;
		sleep_ms(10);
	}
	fail_msg("export state %s, want %s", st.state, state);
}


#define UNIT CBT_FINE_BLOCK

/* Run a whole 64 KiB export (reader drains it) and return the stream. */
static uint8_t *export_all(struct fixture *f, const char *since, const char *point, size_t *len)
{
	struct blk_export_status st;
	uint8_t *s;
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(export(f, since, point, 0, p[1], &st), 0);
	s = read_stream(p[0], len);
	close(p[0]);
	wait_state(f, "done");
	return s;
}

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
	s = read_stream(p[0], len);
	close(p[0]);
	wait_state(f, "done");
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
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy = zero_image();
	size_t len;
	struct wreq w;
	int p[2];

	s = export_fine(f, NULL, "p0", false, &len, &st);
	assert_int_equal(st.grain, CBT_FINE_BLOCK);
	assert_false(st.narrowed);
	assert_int_equal(st.data_bytes, IMG_SIZE);
	assert_int_equal(apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(image_equals(copy, f->model));

	write_wait(f, 3 * BLK + 5 * UNIT, UNIT, 0xb1);        /* unit 53 */
	write_wait(f, 10 * BLK + UNIT - 1024, 2048, 0xb2);     /* units 160, 161 */
	write_wait(f, 20 * BLK + 1024, 512, 0xb3);             /* unit 320 */
	write_wait(f, IMG_SIZE - UNIT, UNIT, 0xb4);           /* the last unit */
	write_wait(f, 30 * BLK + 15 * UNIT, 2 * UNIT, 0xb5);  /* units 495, 496 */
	s = export_fine(f, "p0", "p1", false, &len, &st);
	assert_true(st.narrowed);
	assert_int_equal(st.data_bytes, 7 * UNIT);
	want_units(s, len, (unsigned[]){ 53, 160, 161, 320, IMG_SIZE / UNIT - 1, 495, 496 }, 7);
	assert_int_equal(apply(copy, s, len, point, since), 0);
	assert_string_equal(since, "p0");
	free(s);
	assert_true(image_equals(copy, f->model));

	/* Writes while the export runs (a small pipe holds it): the stream
	 * keeps the cut's bytes; the next set carries the writes. */
	write_wait(f, 40 * BLK, UNIT, 0xc1);
	write_wait(f, 90 * BLK + 3 * UNIT, UNIT, 0xc2);
	memcpy(cut, f->model, IMG_SIZE);
	{
		struct blk_export_args a = { .point = "p2", .since = "p1", .grain = CBT_FINE_BLOCK };
		char err[256] = "";

		small_pipe(p);
		assert_int_equal(virtio_blk_export(f->dev, &a, p[1], &st, err, sizeof(err)), 0);
	}
	write_start(f, &w, 90 * BLK + 7 * UNIT, UNIT, 0xc3); /* same block, not read yet */
	s = read_stream(p[0], &len);
	close(p[0]);
	assert_true(vdrv_wait_used(f->d, 0, w.idx));
	memset(f->model + 90 * BLK + 7 * UNIT, 0xc3, UNIT);
	write_wait(f, 40 * BLK + 8 * UNIT, UNIT, 0xc4);
	wait_state(f, "done");
	want_units(s, len, (unsigned[]){ 640, 1443 }, 2);
	assert_int_equal(apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(image_equals(copy, cut));
	s = export_fine(f, "p2", "p3", false, &len, &st);
	/* Block 90 changed while p2's export ran: p3 has the unit written
	 * then, not the one p2 sent; block 40 changed after it ended. */
	want_units(s, len, (unsigned[]){ 648, 1447 }, 2);
	assert_int_equal(apply(copy, s, len, point, since), 0);
	free(s);
	assert_true(image_equals(copy, f->model));
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
	write_wait(f, 5 * BLK + 2 * UNIT, UNIT, 0xd1);
	free(export_fine(f, "p0", "p1", true, &len, &st)); /* lost: no commit */
	write_wait(f, 6 * BLK + 9 * UNIT, UNIT, 0xd2);
	s = export_fine(f, "p0", "p2", true, &len, &st);
	assert_true(st.narrowed);
	want_units(s, len, (unsigned[]){ 82, 105 }, 2);
	free(s);
	write_wait(f, 6 * BLK + 10 * UNIT, UNIT, 0xd3); /* after p2's cut */
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
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], *copy = zero_image();
	size_t len;
	uint8_t *s;

	s = export_fine(f, NULL, "p0", false, &len, &st);
	assert_int_equal(apply(copy, s, len, point, since), 0);
	free(s);
	write_wait(f, 2 * BLK, UNIT, 0xe1);
	free(export_all(f, "p0", "p1", &len)); /* 64 KiB: p1 has no map */
	s = export_fine(f, "p0", "p1x", false, &len, &st);
	assert_true(st.narrowed); /* p0's map is still there */
	want_units(s, len, (unsigned[]){ 32 }, 1);
	free(s);
	write_wait(f, 3 * BLK, UNIT, 0xe2);
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
	write_wait(f, 7 * BLK + 3 * UNIT, UNIT, 0xf1);
	write_wait(f, 70 * BLK, 3 * UNIT, 0xf2);
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

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

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
