/* blkx.c: the fixture shared by the live-export tests of virtio-blk (see blkx.h). */
#include "blkx.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk.h"
#include "virtio/blk/blk.h"
#include "virtio/virtio.h"

static uint8_t pattern(size_t off)
{
	return (uint8_t)(off * 13 + 7 + off / 4093);
}

int blkx_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct disk_config cfg = { .cbt = true };
	int fd;

	f->model = malloc(IMG_SIZE);
	for (size_t i = 0; i < IMG_SIZE; i++)
		f->model[i] = pattern(i);
	snprintf(f->path, sizeof(f->path), "/tmp/cella-blkx-test-XXXXXX");
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

int blkx_teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	unlink(f->path);
	unlink(f->cbt);
	free(f->model);
	free(f);
	return 0;
}

void blkx_write_start(struct fixture *f, struct wreq *w, uint64_t off, uint32_t len, uint8_t byte)
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

bool blkx_write_done(struct fixture *f, const struct wreq *w)
{
	return *(volatile uint8_t *)vdrv_ptr(f->d, w->status, 1) != 0xee;
}

void blkx_write_wait(struct fixture *f, uint64_t off, uint32_t len, uint8_t byte)
{
	struct wreq w;

	blkx_write_start(f, &w, off, len, byte);
	assert_true(vdrv_wait_used(f->d, 0, w.idx));
	assert_int_equal(*(uint8_t *)vdrv_ptr(f->d, w.status, 1), VIRTIO_BLK_S_OK);
	memset(f->model + off, byte, len);
}

void blkx_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void blkx_small_pipe(int p[2])
{
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
}

int blkx_export(struct fixture *f, const char *since, const char *point, unsigned max_copies,
		int fd, struct blk_export_status *st)
{
	struct blk_export_args a = { .point = point, .since = since, .max_copies = max_copies };
	char err[256] = "";
	int ret = virtio_blk_export(f->dev, &a, fd, st, err, sizeof(err));

	if (ret)
		print_message("export: %s\n", err);
	return ret;
}

uint8_t *blkx_read_stream(int fd, size_t *len)
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

int blkx_apply(const char *img, const uint8_t *stream, size_t len, char point[CBT_NAME_MAX],
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

char *blkx_zero_image(void)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/cella-blkx-copy-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	return path;
}

bool blkx_image_equals(const char *img, const uint8_t *want)
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

void blkx_wait_state(struct fixture *f, const char *state)
{
	struct blk_export_status st;

	for (int i = 0; i < 500; i++) {
		virtio_blk_export_status(f->dev, &st);
		if (!strcmp(st.state, state))
			return;
		blkx_sleep_ms(10);
	}
	fail_msg("export state %s, want %s", st.state, state);
}

uint8_t *blkx_export_all(struct fixture *f, const char *since, const char *point, size_t *len)
{
	struct blk_export_status st;
	uint8_t *s;
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(blkx_export(f, since, point, 0, p[1], &st), 0);
	s = blkx_read_stream(p[0], len);
	close(p[0]);
	blkx_wait_state(f, "done");
	return s;
}
