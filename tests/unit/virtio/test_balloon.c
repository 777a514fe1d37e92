/* test_balloon.c: virtio-balloon without KVM, created through its type and
 * schema as cella-vm does: configuration and target (balloon-set), inflate
 * and deflate giving pages back to the host (the process's shared-memory
 * RSS falls, as the worker's does), free page reporting, the statistics
 * queue, hostile requests that must be ignored without harm, and
 * save/load of a partly inflated balloon. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include <cmocka.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"
#include "state/state.h"
#include "vdrv.h"

#define F_V1   (1ULL << VIRTIO_F_VERSION_1)
#define F_ALL  (F_V1 | 1ULL << VIRTIO_BALLOON_F_STATS_VQ | 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM | \
		1ULL << VIRTIO_BALLOON_F_REPORTING)
#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_STATS   2
#define Q_REPORT  3
#define AREA      (16ULL << 20) /* guest pages the tests touch and give back */
#define PG        4096ULL

static int setup(void **state)
{
	struct vdrv_fixture *f = calloc(1, sizeof(*f));

	f->cfg = vdrv_config("virtio-balloon",
			     "stats=on,deflate_on_oom=on,free_page_reporting=on,target_mib=4");
	f->d = vdrv_new();
	vdrv_create(f->d, "virtio-balloon", f->cfg);
	*state = f;
	return 0;
}

static int64_t status_int(struct vdrv *d, const char *key)
{
	json_t *st = devtype_find("virtio-balloon")->status(&d->vm);
	int64_t v = json_integer_value(json_object_get(st, key));

	assert_non_null(json_object_get(st, key));
	json_decref(st);
	return v;
}

/* Send PFNs [first, first + n) on queue q, 256 per chain; wait for all. */
static void send_pfns(struct vdrv *d, unsigned q, uint64_t first, uint32_t n)
{
	while (n) {
		uint32_t k = n < 256 ? n : 256;
		uint64_t buf = vdrv_alloc(d, 4 * k);
		uint32_t *p = vdrv_ptr(d, buf, 4 * k);
		struct vdrv_seg s = { buf, 4 * k, false };
		uint16_t idx = vdrv_used_idx(d, q);

		for (uint32_t i = 0; i < k; i++)
			p[i] = (uint32_t)(first + i);
		vdrv_add(d, q, &s, 1, false);
		vdrv_kick(d, q);
		assert_true(vdrv_wait_used(d, q, (uint16_t)(idx + 1)));
		first += k;
		n -= k;
	}
}

static void touch(struct vdrv *d, uint64_t gpa, uint64_t len)
{
	memset(vdrv_ptr(d, gpa, len), 0xa5, len);
}

static uint32_t config32(struct vdrv *d, unsigned off)
{
	return (uint32_t)vdrv_config8(d, off) | (uint32_t)vdrv_config8(d, off + 1) << 8 |
	       (uint32_t)vdrv_config8(d, off + 2) << 16 | (uint32_t)vdrv_config8(d, off + 3) << 24;
}

static void test_config_and_target(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	json_t *rep;

	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
	vdrv_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_FEATURES) & 0x3f, 0x26);
	assert_false(vdrv_init(d, F_ALL) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(config32(d, 0), 1024); /* target_mib=4 */
	/* The driver writes `actual`; num_pages is not its to write. */
	vdrv_write(d, VIRTIO_MMIO_CONFIG + 4, 77);
	vdrv_write(d, VIRTIO_MMIO_CONFIG + 0, 5);
	assert_int_equal(config32(d, 4), 77);
	assert_int_equal(config32(d, 0), 1024);
	assert_int_equal(status_int(d, "actual_pages"), 77);

	vdrv_write(d, VIRTIO_MMIO_INTERRUPT_ACK, vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS));
	rep = vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": 10}");
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	assert_int_equal(config32(d, 0), 2560);
	assert_true(vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(status_int(d, "target_mib"), 10);

	/* Above the VM's memory (32 MiB), negative, not a number: refused. */
	rep = vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": 33}");
	assert_true(json_is_false(json_object_get(rep, "ok")));
	assert_non_null(strstr(json_string_value(json_object_get(rep, "error")), "0 to 32"));
	json_decref(rep);
	rep = vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": -1}");
	assert_true(json_is_false(json_object_get(rep, "ok")));
	json_decref(rep);
	rep = vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": \"1\"}");
	assert_true(json_is_false(json_object_get(rep, "ok")));
	json_decref(rep);
	assert_int_equal(config32(d, 0), 2560);
}

static void test_inflate_deflate_rss(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	long before, touched, inflated;
	const uint8_t *p;

	vdrv_init(d, F_ALL);
	before = vdrv_rss_shmem_kib();
	touch(d, AREA, 8 << 20);
	touched = vdrv_rss_shmem_kib();
	assert_true(touched - before >= 7 * 1024);

	send_pfns(d, Q_INFLATE, AREA / PG, 2048);
	inflated = vdrv_rss_shmem_kib();
	print_message("RssShmem KiB: before %ld, touched 8 MiB %ld, inflated 8 MiB %ld\n", before,
		      touched, inflated);
	assert_true(touched - inflated >= 7 * 1024);
	assert_int_equal(status_int(d, "inflated_pages"), 2048);
	assert_int_equal(status_int(d, "inflated_bytes"), 8 << 20);
	/* The host dropped the content: the pages read as zeros again. */
	p = vdrv_ptr(d, AREA, 8 << 20);
	assert_int_equal(p[0], 0);
	assert_int_equal(p[(8 << 20) - 1], 0);

	send_pfns(d, Q_DEFLATE, AREA / PG, 1024);
	assert_int_equal(status_int(d, "inflated_pages"), 1024);
	assert_int_equal(status_int(d, "deflates"), 1024);
	assert_int_equal(status_int(d, "ignored"), 0);
	assert_false(vdrv_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_hostile_requests(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	uint64_t buf = vdrv_alloc(d, 64);
	uint32_t *pfn = vdrv_ptr(d, buf, 64);
	uint64_t keep = AREA + (1 << 20);
	struct vdrv_seg s;
	uint16_t idx;

	vdrv_init(d, F_ALL);
	touch(d, keep, PG);
	/* Out of RAM (past 32 MiB, in the MMIO hole, the top PFN), the same
	 * page twice, and a partial PFN. */
	pfn[0] = (uint32_t)(VDRV_MEM / PG);
	pfn[1] = 0xC0000;
	pfn[2] = 0xffffffff;
	pfn[3] = (uint32_t)(AREA / PG);
	pfn[4] = (uint32_t)(AREA / PG);
	s = (struct vdrv_seg){ buf, 5 * 4 + 3, false };
	idx = vdrv_used_idx(d, Q_INFLATE);
	vdrv_add(d, Q_INFLATE, &s, 1, false);
	vdrv_kick(d, Q_INFLATE);
	assert_true(vdrv_wait_used(d, Q_INFLATE, (uint16_t)(idx + 1)));
	assert_int_equal(status_int(d, "inflated_pages"), 1);
	assert_int_equal(status_int(d, "ignored"), 5); /* 3 outside, 1 twice, 1 partial */

	/* Deflating a page that is not inflated; then a device-writable
	 * "PFN list" (a lying descriptor: nothing to read). */
	send_pfns(d, Q_DEFLATE, keep / PG, 1);
	s = (struct vdrv_seg){ buf, 64, true };
	idx = vdrv_used_idx(d, Q_INFLATE);
	vdrv_add(d, Q_INFLATE, &s, 1, false);
	vdrv_kick(d, Q_INFLATE);
	assert_true(vdrv_wait_used(d, Q_INFLATE, (uint16_t)(idx + 1)));
	assert_int_equal(status_int(d, "inflated_pages"), 1);
	assert_int_equal(status_int(d, "ignored"), 6);
	/* Nothing else was touched, and the device still works. */
	assert_int_equal(*(uint8_t *)vdrv_ptr(d, keep, 1), 0xa5);
	assert_false(vdrv_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	send_pfns(d, Q_DEFLATE, AREA / PG, 1);
	assert_int_equal(status_int(d, "inflated_pages"), 0);

	/* A descriptor outside RAM is a ring rule violation: NEEDS_RESET. */
	s = (struct vdrv_seg){ VDRV_MEM - 8, 64, false };
	vdrv_add(d, Q_INFLATE, &s, 1, false);
	vdrv_kick(d, Q_INFLATE);
	assert_true(vdrv_wait_needs_reset(d));
}

static void test_free_page_reporting(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	struct vdrv_seg s[3];
	long touched, reported;
	uint16_t idx;

	vdrv_init(d, F_ALL);
	touch(d, AREA, 8 << 20);
	touched = vdrv_rss_shmem_kib();
	/* Two 2 MiB ranges and one that is not page aligned (only its whole
	 * pages go). */
	s[0] = (struct vdrv_seg){ AREA, 2 << 20, true };
	s[1] = (struct vdrv_seg){ AREA + (4 << 20), 2 << 20, true };
	s[2] = (struct vdrv_seg){ AREA + (6 << 20) + 100, 3 * PG, true };
	idx = vdrv_used_idx(d, Q_REPORT);
	vdrv_add(d, Q_REPORT, s, 3, false);
	vdrv_kick(d, Q_REPORT);
	assert_true(vdrv_wait_used(d, Q_REPORT, (uint16_t)(idx + 1)));
	reported = vdrv_rss_shmem_kib();
	print_message("RssShmem KiB: touched %ld, after reporting 4 MiB + 2 pages %ld\n", touched,
		      reported);
	assert_true(touched - reported >= 4000);
	assert_int_equal(status_int(d, "reported_bytes"), (4 << 20) + 2 * PG);
	assert_int_equal(status_int(d, "reports"), 1);
	assert_int_equal(status_int(d, "ignored"), 1);
	/* Unreported pages keep their content; reported ones read zero. */
	assert_int_equal(*(uint8_t *)vdrv_ptr(d, AREA + (2 << 20), 1), 0xa5);
	assert_int_equal(*(uint8_t *)vdrv_ptr(d, AREA + (6 << 20), 1), 0xa5);
	assert_int_equal(*(uint8_t *)vdrv_ptr(d, AREA, 1), 0);
	assert_int_equal(*(uint8_t *)vdrv_ptr(d, AREA + (6 << 20) + PG, 1), 0);
}

/* Queue the statistics buffer as the driver does: tag/value entries. */
static void add_stats(struct vdrv *d, uint64_t memfree)
{
	uint64_t buf = vdrv_alloc(d, 30);
	uint8_t *p = vdrv_ptr(d, buf, 30);
	uint16_t tags[3] = { VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, 999 };
	uint64_t vals[3] = { memfree, 32 << 20, 1 };
	struct vdrv_seg s = { buf, 30, false };

	for (int i = 0; i < 3; i++) {
		memcpy(p + 10 * i, &tags[i], 2);
		memcpy(p + 10 * i + 2, &vals[i], 8);
	}
	vdrv_add(d, Q_STATS, &s, 1, false);
	vdrv_kick(d, Q_STATS);
}

/* Poll the status (the I/O loop processes the kick) for up to 10 s. */
static bool wait_stats_updates(struct vdrv *d, int64_t want)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		if (status_int(d, "stats_updates") >= want)
			return status_int(d, "stats_updates") == want;
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 10);
	return false;
}

static void test_stats(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	json_t *rep, *st;

	vdrv_init(d, F_ALL);
	add_stats(d, 1000);
	/* The device keeps the buffer until it wants fresh figures. */
	assert_true(wait_stats_updates(d, 1));
	assert_int_equal(vdrv_used_idx(d, Q_STATS), 0);
	rep = vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-stats\"}");
	assert_true(json_is_true(json_object_get(rep, "requested")));
	st = json_object_get(json_object_get(rep, "balloon"), "stats");
	assert_int_equal(json_integer_value(json_object_get(st, "free_memory")), 1000);
	assert_int_equal(json_integer_value(json_object_get(st, "total_memory")), 32 << 20);
	json_decref(rep);
	assert_true(vdrv_wait_used(d, Q_STATS, 1));
	/* The driver answers with new figures. */
	add_stats(d, 2000);
	assert_true(wait_stats_updates(d, 2));
	st = devtype_find("virtio-balloon")->status(&d->vm);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(st, "stats"), "free_memory")),
		2000);
	json_decref(st);
}

static void test_save_load(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	struct virtio_dev *vd = d->vd;
	struct state_writer w;
	struct state_reader r;
	uint8_t *buf;

	vdrv_init(d, F_ALL);
	send_pfns(d, Q_INFLATE, AREA / PG, 300);
	json_decref(vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": 3}"));
	state_writer_init(&w);
	assert_int_equal(vd->dev.ops->save(&vd->dev, &w), 0);
	assert_int_equal(state_writer_error(&w), 0);

	/* Change the device without touching the rings (they are not rolled
	 * back here): a new target, then a reset, which empties the balloon.
	 * Loading brings the saved balloon back. */
	json_decref(vdrv_command(d, "virtio-balloon", "{\"cmd\": \"balloon-set\", \"target_mib\": 7}"));
	vdrv_write(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(status_int(d, "inflated_pages"), 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	assert_int_equal(status_int(d, "inflated_pages"), 300);
	assert_int_equal(status_int(d, "target_mib"), 3);
	assert_int_equal(config32(d, 0), 768);
	/* Deflating a page inflated before the save counts. */
	send_pfns(d, Q_DEFLATE, AREA / PG, 1);
	assert_int_equal(status_int(d, "inflated_pages"), 299);

	/* Truncated or corrupted sections are refused. */
	state_reader_init(&r, w.buf, w.len - 8);
	assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	/* A bitmap for another memory size. */
	buf = malloc(w.len);
	memcpy(buf, w.buf, w.len);
	buf[w.len - 8 * (VDRV_MEM / PG / 64) - 8] ^= 1;
	state_reader_init(&r, buf, w.len);
	assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	free(buf);
	state_writer_free(&w);
}

static void test_schema_errors(void **state)
{
	const struct device_type *t = devtype_find("virtio-balloon");
	void *cfg = calloc(1, t->config_size);
	struct conf_err e;
	struct vdrv *d;

	(void)state;
	assert_int_not_equal(conf_from_string(t->config_schema, cfg, "bogus=1", &e), 0);
	assert_int_not_equal(conf_from_string(t->config_schema, cfg, "stats=maybe", &e), 0);
	/* A target larger than the VM's memory is refused at creation. */
	assert_int_equal(conf_from_string(t->config_schema, cfg, "target_mib=64", &e), 0);
	d = vdrv_new();
	assert_int_equal(t->create(&d->vm, 0, cfg), -EINVAL);
	vdrv_free(d);
	free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config_and_target, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_inflate_deflate_rss, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_requests, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_free_page_reporting, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_stats, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, vdrv_fixture_teardown),
		cmocka_unit_test(test_schema_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
