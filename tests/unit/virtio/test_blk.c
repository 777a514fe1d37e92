/* test_blk.c: virtio-blk against a temporary image file: read, write, flush,
 * get-id, discard, write-zeroes, read-only refusal, range and type errors,
 * requests in flight together, image locking, save/load. */
#include <errno.h>
#include <fcntl.h>
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
#include <linux/virtio_mmio.h>

#include "disk.h"
#include "state/state.h"
#include "vdrv.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_ctl.h"
#include "virtio/virtio.h"

#define IMG_SIZE (1u << 20)
#define F_V1     (1ULL << VIRTIO_F_VERSION_1)
#define F_BLK    ((1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) | \
		  (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_DISCARD) |      \
		  (1ULL << VIRTIO_BLK_F_WRITE_ZEROES))

struct fixture {
	struct vdrv *d;
	char path[64];
	int fd; /* the test's own view of the image */
};

static uint8_t pattern(size_t off)
{
	return (uint8_t)(off * 13 + 7);
}

static void make_image(struct fixture *f)
{
	uint8_t *buf = malloc(IMG_SIZE);

	snprintf(f->path, sizeof(f->path), "/tmp/cella-blk-test-XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	for (size_t i = 0; i < IMG_SIZE; i++)
		buf[i] = pattern(i);
	assert_int_equal(pwrite(f->fd, buf, IMG_SIZE, 0), IMG_SIZE);
	free(buf);
}

static int setup_common(void **state, bool ro, const char *id)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct disk_config cfg = { .readonly = ro };

	make_image(f);
	cfg.path = f->path;
	if (id)
		snprintf(cfg.id, sizeof(cfg.id), "%s", id);
	f->d = vdrv_new();
	assert_int_equal(virtio_blk_create(&f->d->vm, &cfg, 0), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1 | (ro ? 1ULL << VIRTIO_BLK_F_RO : F_BLK)) &
		    VIRTIO_CONFIG_S_DRIVER_OK);
	*state = f;
	return 0;
}

static int setup_rw(void **state)
{
	return setup_common(state, false, NULL);
}

static int setup_ro(void **state)
{
	return setup_common(state, true, "serial-0123456789ABCDEF");
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->d)
		vdrv_free(f->d);
	close(f->fd);
	unlink(f->path);
	free(f);
	return 0;
}

/* One request: header, optional data, status. Returns the status byte and
 * the used length. */
struct req {
	uint64_t hdr, data, status;
	uint32_t data_len;
	uint16_t head;
};

static void req_build(struct vdrv *d, struct req *r, uint32_t type, uint64_t sector,
		      uint32_t data_len, bool data_write)
{
	struct virtio_blk_outhdr *h;
	struct vdrv_seg segs[3];
	unsigned n = 0;

	r->hdr = vdrv_alloc(d, sizeof(*h));
	h = vdrv_ptr(d, r->hdr, sizeof(*h));
	h->type = type;
	h->sector = sector;
	r->data_len = data_len;
	r->status = vdrv_alloc(d, 1);
	*(uint8_t *)vdrv_ptr(d, r->status, 1) = 0xee;
	segs[n++] = (struct vdrv_seg){ r->hdr, sizeof(*h), false };
	if (data_len) {
		r->data = vdrv_alloc(d, data_len);
		segs[n++] = (struct vdrv_seg){ r->data, data_len, data_write };
	}
	segs[n++] = (struct vdrv_seg){ r->status, 1, true };
	r->head = vdrv_add(d, 0, segs, n, false);
}

static uint8_t req_run(struct vdrv *d, uint32_t type, uint64_t sector, uint32_t data_len,
		       bool data_write, struct req *out, uint32_t *used_len)
{
	struct req r;
	uint16_t idx = vdrv_used_idx(d, 0);

	req_build(d, &r, type, sector, data_len, data_write);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, (uint16_t)(idx + 1)));
	assert_int_equal(vdrv_used_elem(d, 0, idx).id, r.head);
	if (used_len)
		*used_len = vdrv_used_elem(d, 0, idx).len;
	if (out)
		*out = r;
	return *(uint8_t *)vdrv_ptr(d, r.status, 1);
}

static uint8_t dwz_run(struct vdrv *d, uint32_t type, uint64_t sector, uint32_t n,
		       uint32_t flags)
{
	struct req r;
	struct virtio_blk_discard_write_zeroes *seg;
	struct virtio_blk_outhdr *h;
	struct vdrv_seg segs[3];
	uint16_t idx = vdrv_used_idx(d, 0);

	r.hdr = vdrv_alloc(d, sizeof(*h));
	h = vdrv_ptr(d, r.hdr, sizeof(*h));
	h->type = type;
	r.data = vdrv_alloc(d, sizeof(*seg));
	seg = vdrv_ptr(d, r.data, sizeof(*seg));
	seg->sector = sector;
	seg->num_sectors = n;
	seg->flags = flags;
	r.status = vdrv_alloc(d, 1);
	segs[0] = (struct vdrv_seg){ r.hdr, sizeof(*h), false };
	segs[1] = (struct vdrv_seg){ r.data, sizeof(*seg), false };
	segs[2] = (struct vdrv_seg){ r.status, 1, true };
	vdrv_add(d, 0, segs, 3, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, (uint16_t)(idx + 1)));
	return *(uint8_t *)vdrv_ptr(d, r.status, 1);
}

static bool file_is(struct fixture *f, size_t off, size_t len, int byte)
{
	uint8_t *buf = malloc(len);
	bool ok = true;

	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len && ok; i++)
		ok = buf[i] == (byte < 0 ? pattern(off + i) : (uint8_t)byte);
	free(buf);
	return ok;
}

static void test_config(void **state)
{
	struct fixture *f = *state;
	uint64_t cap = 0;

	for (int i = 0; i < 8; i++)
		cap |= (uint64_t)vdrv_config8(f->d, (unsigned)i) << (8 * i);
	assert_int_equal(cap, IMG_SIZE / 512);
	assert_int_equal(vdrv_config8(f->d, offsetof(struct virtio_blk_config, blk_size) + 1), 2);
	assert_int_equal(vdrv_config8(f->d, offsetof(struct virtio_blk_config, max_discard_seg)),
			 1);
}

static void test_read(void **state)
{
	struct fixture *f = *state;
	struct req r;
	uint32_t len;
	uint8_t *p;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 3, 2048, true, &r, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 2049);
	p = vdrv_ptr(f->d, r.data, 2048);
	for (size_t i = 0; i < 2048; i++)
		assert_int_equal(p[i], pattern(3 * 512 + i));
}

static void test_write(void **state)
{
	struct fixture *f = *state;
	struct req r;

	req_build(f->d, &r, VIRTIO_BLK_T_OUT, 10, 1024, false);
	memset(vdrv_ptr(f->d, r.data, 1024), 0x5a, 1024);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, r.status, 1), VIRTIO_BLK_S_OK);
	assert_true(file_is(f, 10 * 512, 1024, 0x5a));
	assert_true(file_is(f, 12 * 512, 512, -1));
	assert_true(file_is(f, 9 * 512, 512, -1));
}

static void test_flush(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_get_id_default(void **state)
{
	struct fixture *f = *state;
	struct req r;
	uint32_t len;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_GET_ID, 0, 20, true, &r, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 21);
	assert_memory_equal(vdrv_ptr(f->d, r.data, 20), "cella-blk0\0\0\0\0\0\0\0\0\0\0", 20);
}

static void test_get_id_configured(void **state)
{
	struct fixture *f = *state;
	struct req r;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_GET_ID, 0, 20, true, &r, NULL),
			 VIRTIO_BLK_S_OK);
	/* 20 bytes, not NUL-terminated when the id fills them. */
	assert_memory_equal(vdrv_ptr(f->d, r.data, 20), "serial-0123456789ABC", 20);
}

static void test_discard(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_DISCARD, 16, 16, 0), VIRTIO_BLK_S_OK);
	assert_true(file_is(f, 16 * 512, 16 * 512, 0));
	assert_true(file_is(f, 32 * 512, 512, -1));
	/* UNMAP is meaningless for discard. */
	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_DISCARD, 16, 16,
				 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_WRITE_ZEROES, 40, 3, 0), VIRTIO_BLK_S_OK);
	assert_true(file_is(f, 40 * 512, 3 * 512, 0));
	assert_true(file_is(f, 43 * 512, 512, -1));
	assert_true(file_is(f, 39 * 512, 512, -1));
}

static void test_write_zeroes_unmap(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_WRITE_ZEROES, 64, 64,
				 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
			 VIRTIO_BLK_S_OK);
	assert_true(file_is(f, 64 * 512, 64 * 512, 0));
	assert_true(file_is(f, 128 * 512, 512, -1));
	/* Ranges are checked like reads and writes. */
	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_WRITE_ZEROES, IMG_SIZE / 512 - 1, 2, 0),
			 VIRTIO_BLK_S_IOERR);
}

static void test_beyond_capacity(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, 1024, true, NULL, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_OUT, ~0ULL, 512, false, NULL, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Reads must be whole sectors. */
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 0, 100, true, NULL, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* The last sector itself is fine. */
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, 512, true, NULL, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_unknown_type(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(req_run(f->d, 99, 0, 0, false, NULL, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_SCSI_CMD, 0, 0, false, NULL, NULL),
			 VIRTIO_BLK_S_UNSUPP);
}

static void test_many_in_flight(void **state)
{
	struct fixture *f = *state;
	struct req r[32];

	/* 32 reads published at once, one kick: io_uring runs them together. */
	for (int i = 0; i < 32; i++)
		req_build(f->d, &r[i], VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, true);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 32));
	for (int i = 0; i < 32; i++) {
		uint8_t *p = vdrv_ptr(f->d, r[i].data, 4096);

		assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, r[i].status, 1), VIRTIO_BLK_S_OK);
		for (size_t j = 0; j < 4096; j += 511)
			assert_int_equal(p[j], pattern((size_t)i * 4096 + j));
	}
}

static void test_missing_status_breaks_device(void **state)
{
	struct fixture *f = *state;
	uint64_t h = vdrv_alloc(f->d, 16);
	struct vdrv_seg seg = { h, 16, false };

	vdrv_add(f->d, 0, &seg, 1, false);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_needs_reset(f->d));
}

static void test_ro_features(void **state)
{
	struct fixture *f = *state;

	assert_true(f->d->vd->host_features & (1ULL << VIRTIO_BLK_F_RO));
	assert_false(f->d->vd->host_features & (1ULL << VIRTIO_BLK_F_DISCARD));
}

static void test_ro_write_refused(void **state)
{
	struct fixture *f = *state;
	struct req r;

	req_build(f->d, &r, VIRTIO_BLK_T_OUT, 0, 512, false);
	memset(vdrv_ptr(f->d, r.data, 512), 0, 512);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, r.status, 1), VIRTIO_BLK_S_IOERR);
	assert_true(file_is(f, 0, 512, -1));
	/* Discard and write-zeroes were not offered. */
	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, 0), VIRTIO_BLK_S_UNSUPP);
	assert_true(file_is(f, 0, 512, -1));
	/* The image really is open read-only. */
	assert_int_equal(fcntl(disk_fd(((struct blk_dev *)f->d->vd)->disk), F_GETFL) & O_ACCMODE,
			 O_RDONLY);
	/* Reads still work. */
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 0, 512, true, NULL, NULL),
			 VIRTIO_BLK_S_OK);
}

static void test_lock_conflicts(void **state)
{
	struct fixture *f = *state;
	struct vm vm2;
	struct disk_config cfg = { .path = f->path };

	assert_int_equal(vm_create_test(&vm2, 2 << 20), 0);
	/* The fixture holds the image read-write: nobody else may open it. */
	assert_int_equal(virtio_blk_create(&vm2, &cfg, 1), -EBUSY);
	cfg.readonly = true;
	assert_int_equal(virtio_blk_create(&vm2, &cfg, 1), -EBUSY);
	cfg.path = "/nonexistent/cella.img";
	assert_int_equal(virtio_blk_create(&vm2, &cfg, 1), -ENOENT);
	assert_null(vm2.devices);
	vm_destroy(&vm2);
}

static void test_ro_shared_lock(void **state)
{
	struct fixture *f = *state;
	struct vm vm2;
	struct disk_config cfg = { .path = f->path, .readonly = true };

	assert_int_equal(vm_create_test(&vm2, 2 << 20), 0);
	assert_int_equal(virtio_blk_create(&vm2, &cfg, 1), 0); /* two readers are fine */
	cfg.readonly = false;
	assert_int_equal(virtio_blk_create(&vm2, &cfg, 2), -EBUSY);
	vm_destroy(&vm2);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct state_writer w;
	struct state_reader r;

	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 0, 512, true, NULL, NULL),
			 VIRTIO_BLK_S_OK);
	state_writer_init(&w);
	assert_int_equal(f->d->vd->dev.ops->save(&f->d->vd->dev, &w), 0);
	f->d->vd->dev.ops->reset(&f->d->vd->dev);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(f->d->vd->dev.ops->load(&f->d->vd->dev, &r), 0);
	assert_int_equal(f->d->vd->vqs[0].last_avail_idx, 1);
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 8, 512, true, NULL, NULL),
			 VIRTIO_BLK_S_OK);
	state_writer_free(&w);
}


static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct blk_dev *blk_dev_of(struct fixture *f)
{
	return (struct blk_dev *)f->d->vd;
}

/* iops=10, burst 1: three reads at once take two 100 ms waits. */
static void test_qos_delays(void **state)
{
	struct fixture *f = *state;
	struct disk_qos_config q = { .iops = 10, .iops_burst = 1 };
	struct req r[3];
	uint64_t t0;

	virtio_blk_set_qos(&f->d->vd->dev, &q);
	t0 = now_ms();
	for (int i = 0; i < 3; i++)
		req_build(f->d, &r[i], VIRTIO_BLK_T_IN, (uint64_t)i * 8, 4096, true);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	assert_true(now_ms() - t0 < 90);
	assert_true(vdrv_wait_used(f->d, 0, 3));
	assert_true(now_ms() - t0 >= 195);
	for (int i = 0; i < 3; i++)
		assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, r[i].status, 1), VIRTIO_BLK_S_OK);
}

/* A request held by QoS passes at once when the limit is lifted. */
static void test_qos_lifted(void **state)
{
	struct fixture *f = *state;
	struct disk_qos_config q = { .iops = 1, .iops_burst = 1 };
	struct blk_status st;
	struct req r[2];
	uint64_t t0;

	virtio_blk_set_qos(&f->d->vd->dev, &q);
	virtio_blk_get_status(&f->d->vd->dev, &st);
	assert_int_equal(st.qos.iops, 1);
	for (int i = 0; i < 2; i++)
		req_build(f->d, &r[i], VIRTIO_BLK_T_IN, (uint64_t)i * 8, 512, true);
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	t0 = now_ms();
	q.iops = q.iops_burst = 0;
	virtio_blk_set_qos(&f->d->vd->dev, &q);
	assert_true(vdrv_wait_used(f->d, 0, 2));
	assert_true(now_ms() - t0 < 500);
}

/* Requests held by a storage stall are saved by head and re-read on load. */
static void test_stall_save_load(void **state)
{
	struct fixture *f = *state;
	struct blk_dev *blk = blk_dev_of(f);
	struct state_writer w;
	struct state_reader rd;
	struct blk_status st;
	struct req r;
	uint8_t *p;

	pthread_mutex_lock(&blk->vd.lock);
	blk->stall_err = -ENOSPC; /* as blk_stall leaves it */
	snprintf(blk->error, sizeof(blk->error), "%s", strerror(ENOSPC));
	pthread_mutex_unlock(&blk->vd.lock);
	req_build(f->d, &r, VIRTIO_BLK_T_IN, 5, 1024, true);
	virtio_dev_process(f->d->vd, 0); /* pops it; held, not started */
	assert_non_null(blk->pending);
	virtio_blk_get_status(&f->d->vd->dev, &st);
	assert_true(st.stalled);
	assert_string_equal(st.error, strerror(ENOSPC));

	state_writer_init(&w);
	assert_int_equal(f->d->vd->dev.ops->save(&f->d->vd->dev, &w), 0);
	assert_int_equal(vdrv_used_idx(f->d, 0), 0); /* not completed by quiesce */
	f->d->vd->dev.ops->reset(&f->d->vd->dev);
	assert_null(blk->pending);
	state_reader_init(&rd, w.buf, w.len);
	assert_int_equal(f->d->vd->dev.ops->load(&f->d->vd->dev, &rd), 0);
	assert_non_null(blk->pending);
	virtio_blk_retry(&f->d->vd->dev); /* storage is fine: it completes */
	assert_true(vdrv_wait_used(f->d, 0, 1));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, r.status, 1), VIRTIO_BLK_S_OK);
	p = vdrv_ptr(f->d, r.data, 1024);
	for (size_t i = 0; i < 1024; i++)
		assert_int_equal(p[i], pattern(5 * 512 + i));
	virtio_blk_get_status(&f->d->vd->dev, &st);
	assert_false(st.stalled);
	assert_string_equal(st.error, "");
	/* A saved head outside the ring (the stream ends with it) is refused. */
	w.buf[w.len - 2] = 0xe7;
	w.buf[w.len - 1] = 0x03;
	state_reader_init(&rd, w.buf, w.len);
	assert_int_equal(f->d->vd->dev.ops->load(&f->d->vd->dev, &rd), -EINVAL);
	state_writer_free(&w);
}

static void test_status_flush(void **state)
{
	struct fixture *f = *state;
	struct blk_status st;

	assert_ptr_equal(virtio_blk_find(&f->d->vm, "blk0"), &f->d->vd->dev);
	assert_null(virtio_blk_find(&f->d->vm, "blk9"));
	virtio_blk_get_status(&f->d->vd->dev, &st);
	assert_string_equal(st.id, "blk0");
	assert_string_equal(st.format, "raw");
	assert_string_equal(st.path, f->path);
	assert_false(st.stalled);
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_OUT, 0, 512, false, NULL, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_flush(&f->d->vd->dev), 0);
}

/* qcow2 through the library: writes allocate, reads see them, zeroes
 * elsewhere, and the image checks clean. */
static int setup_qcow2(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .size = IMG_SIZE };
	struct disk_config cfg = { 0 };
	char err[256];
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/cella-blk-q-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	unlink(f->path);
	assert_int_equal(disk_create(f->path, &o, err, sizeof(err)), 0);
	f->fd = open(f->path, O_RDONLY);
	cfg.path = f->path;
	f->d = vdrv_new();
	assert_int_equal(virtio_blk_create(&f->d->vm, &cfg, 0), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1 | F_BLK) & VIRTIO_CONFIG_S_DRIVER_OK);
	*state = f;
	return 0;
}

static void test_qcow2_rw(void **state)
{
	struct fixture *f = *state;
	struct disk_check_result cr;
	struct blk_status st;
	struct disk *dk;
	struct req r[4];
	char err[256];

	virtio_blk_get_status(&f->d->vd->dev, &st);
	assert_string_equal(st.format, "qcow2");
	/* Writes across a cluster boundary, in flight together. */
	for (int i = 0; i < 4; i++) {
		req_build(f->d, &r[i], VIRTIO_BLK_T_OUT, 120 + (uint64_t)i * 16, 8192, false);
		memset(vdrv_ptr(f->d, r[i].data, 8192), 0x30 + i, 8192);
	}
	vdrv_kick(f->d, 0);
	assert_true(vdrv_wait_used(f->d, 0, 4));
	assert_int_equal(req_run(f->d, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL, NULL),
			 VIRTIO_BLK_S_OK);
	for (int i = 0; i < 4; i++) {
		struct req rr;
		uint8_t *p;

		assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 120 + (uint64_t)i * 16, 8192, true,
					 &rr, NULL), VIRTIO_BLK_S_OK);
		p = vdrv_ptr(f->d, rr.data, 8192);
		for (int j = 0; j < 8192; j += 97)
			assert_int_equal(p[j], 0x30 + i);
	}
	{
		struct req rr;
		uint8_t *p;

		assert_int_equal(req_run(f->d, VIRTIO_BLK_T_IN, 1024, 4096, true, &rr, NULL),
				 VIRTIO_BLK_S_OK);
		p = vdrv_ptr(f->d, rr.data, 4096);
		for (int j = 0; j < 4096; j++)
			assert_int_equal(p[j], 0);
	}
	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_WRITE_ZEROES, 120, 16, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(dwz_run(f->d, VIRTIO_BLK_T_DISCARD, 136, 16, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_flush(&f->d->vd->dev), 0);
	vdrv_free(f->d);
	f->d = NULL;
	assert_int_equal(disk_open(&dk, f->path, -1, DISK_RDONLY, err, sizeof(err)), 0);
	assert_int_equal(disk_check(dk, false, &cr), 0);
	assert_int_equal(cr.corruptions, 0);
	{
		uint8_t buf[16 * 512];

		assert_int_equal(disk_pread(dk, buf, sizeof(buf), 152 * 512), 0);
		assert_int_equal(buf[0], 0x32);
		assert_int_equal(disk_pread(dk, buf, sizeof(buf), 120 * 512), 0);
		assert_int_equal(buf[100], 0);
	}
	disk_close(dk);
}

#define RW(t) cmocka_unit_test_setup_teardown(t, setup_rw, teardown)
#define RO(t) cmocka_unit_test_setup_teardown(t, setup_ro, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		RW(test_config),
		RW(test_read),
		RW(test_write),
		RW(test_flush),
		RW(test_get_id_default),
		RO(test_get_id_configured),
		RW(test_discard),
		RW(test_write_zeroes),
		RW(test_write_zeroes_unmap),
		RW(test_beyond_capacity),
		RW(test_unknown_type),
		RW(test_many_in_flight),
		RW(test_missing_status_breaks_device),
		RO(test_ro_features),
		RO(test_ro_write_refused),
		RW(test_lock_conflicts),
		RO(test_ro_shared_lock),
		RW(test_save_load),
		RW(test_qos_delays),
		RW(test_qos_lifted),
		RW(test_stall_save_load),
		RW(test_status_flush),
		cmocka_unit_test_setup_teardown(test_qcow2_rw, setup_qcow2, teardown),
	};

	return cmocka_run_group_tests_name("virtio-blk", tests, NULL, NULL);
}
