/* test_console.c: virtio-console without KVM, created through its registered
 * type and configuration schema as cella-vm does: registers and queues,
 * transmitq output reaching the configured file (one and several
 * descriptors, appended), save/load, a broken ring, and a path that cannot
 * be opened. */
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
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"
#include "state/state.h"
#include "vdrv.h"

#define F_V1 (1ULL << VIRTIO_F_VERSION_1)
#define RX 0
#define TX 1

struct fixture {
	struct vdrv *d;
	char path[64];
	void *cfg;
};

static void console_config_free(void *cfg)
{
	conf_free(devtype_find("virtio-console")->config_schema, cfg);
	free(cfg);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char spec[96];
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/cella-vcon-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	snprintf(spec, sizeof(spec), "path=%s", f->path);
	f->cfg = vdrv_config("virtio-console", spec);
	f->d = vdrv_new();
	vdrv_create(f->d, "virtio-console", f->cfg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	console_config_free(f->cfg);
	unlink(f->path);
	free(f);
	return 0;
}

static size_t file_text(struct fixture *f, char *buf, size_t len)
{
	int fd = open(f->path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, len - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = 0;
	return (size_t)n;
}

/* Put text in guest memory as `parts` descriptors of one chain on the
 * transmitq and wait for the device to use it. */
static void transmit(struct vdrv *d, const char *text, unsigned parts, uint16_t used_after)
{
	struct vdrv_seg segs[4];
	size_t len = strlen(text), off = 0;

	for (unsigned i = 0; i < parts; i++) {
		size_t n = i + 1 == parts ? len - off : len / parts;

		segs[i].gpa = vdrv_alloc(d, n ? n : 1);
		segs[i].len = (uint32_t)n;
		segs[i].write = false;
		memcpy(vdrv_ptr(d, segs[i].gpa, n), text + off, n);
		off += n;
	}
	vdrv_add(d, TX, segs, parts, false);
	vdrv_kick(d, TX);
	assert_true(vdrv_wait_used(d, TX, used_after));
}

static void test_registers(void **state)
{
	struct vdrv *d = ((struct fixture *)*state)->d;

	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_CONSOLE);
	vdrv_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_FEATURES) & 0x7, 0); /* no SIZE, MULTIPORT, EMERG_WRITE */
	for (unsigned q = 0; q < 2; q++) {
		vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
	}
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	assert_int_equal(d->vd->nr_queues, devtype_find("virtio-console")->nr_queues);
	assert_string_equal(d->vd->dev.id, "console0");
}

static void test_transmit(void **state)
{
	struct fixture *f = *state;
	char buf[256];

	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	transmit(f->d, "hello from the guest\n", 1, 1);
	transmit(f->d, "in three descriptors\n", 3, 2);
	file_text(f, buf, sizeof(buf));
	assert_string_equal(buf, "hello from the guest\nin three descriptors\n");
	assert_int_equal(vdrv_used_elem(f->d, TX, 0).len, 0); /* the device wrote nothing */
	/* Receive buffers wait (there is no input); the device stays well. */
	assert_int_equal(vdrv_used_idx(f->d, RX), 0);
	assert_false(vdrv_read(f->d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = f->d->vd;
	struct state_writer w;
	struct state_reader r;
	char buf[256];

	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	transmit(f->d, "before save\n", 1, 1);
	state_writer_init(&w);
	assert_int_equal(vd->dev.ops->save(&vd->dev, &w), 0);
	vd->dev.ops->reset(&vd->dev);
	assert_int_equal(vd->vqs[TX].last_avail_idx, 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	assert_int_equal(vd->vqs[TX].last_avail_idx, 1);
	transmit(f->d, "after load\n", 2, 2);
	file_text(f, buf, sizeof(buf));
	assert_string_equal(buf, "before save\nafter load\n");
	state_writer_free(&w);
}

static void test_broken_ring(void **state)
{
	struct fixture *f = *state;
	char buf[64];

	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	vdrv_publish(f->d, TX, 200); /* head beyond the queue */
	vdrv_kick(f->d, TX);
	assert_true(vdrv_wait_needs_reset(f->d));
	assert_int_equal(file_text(f, buf, sizeof(buf)), 0);
}

static void test_bad_path(void **state)
{
	void *cfg = vdrv_config("virtio-console", "path=/nonexistent-dir/out");
	struct vm vm;

	(void)state;
	assert_int_equal(vm_create_test(&vm, 2 << 20), 0);
	assert_int_equal(devtype_find("virtio-console")->create(&vm, 0, cfg), -ENOENT);
	assert_null(vm.devices);
	vm_destroy(&vm);
	console_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_ring, setup, teardown),
		cmocka_unit_test(test_bad_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
