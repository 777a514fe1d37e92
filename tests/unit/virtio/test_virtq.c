/* test_virtq.c: virtqueue core and virtio-mmio transport, driven through a
 * virtio-rng device: registers, feature negotiation, normal and indirect
 * chains, every malformed-ring case (device must end in NEEDS_RESET without
 * touching memory it should not), reset and save/load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <time.h>
#include <errno.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "state/state.h"
#include "vdrv.h"
#include "virtio/virtio.h"

#define F_V1       (1ULL << VIRTIO_F_VERSION_1)
#define F_INDIRECT (1ULL << VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT    (1ULL << VIRTIO_RING_F_EVENT_IDX)

static int setup_rng(void **state)
{
	struct vdrv *d = vdrv_new();

	assert_int_equal(virtio_rng_create(&d->vm), 0);
	vdrv_bind(d);
	vdrv_start_loop(d);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	vdrv_free(*state);
	return 0;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_registers(void **state)
{
	struct vdrv *d = *state;

	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	vdrv_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_true(vdrv_read(d, VIRTIO_MMIO_DEVICE_FEATURES) & 1); /* VERSION_1 = bit 32 */
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* The announcement Linux and the test guest parse. */
	assert_non_null(d->vm.cmdline_extra);
	assert_non_null(strstr(d->vm.cmdline_extra, "virtio_mmio.device=4K@0xd0000000:5"));
}

static void test_features_need_version1(void **state)
{
	struct vdrv *d = *state;

	assert_false(vdrv_negotiate(d, 0) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_false(vdrv_negotiate(d, F_INDIRECT) & VIRTIO_CONFIG_S_FEATURES_OK);
}

static void test_features_refuse_unoffered(void **state)
{
	struct vdrv *d = *state;

	/* Bit 3 is no rng feature; bit 34 (RING_PACKED) was not offered. */
	assert_false(vdrv_negotiate(d, F_V1 | (1ULL << 3)) & VIRTIO_CONFIG_S_FEATURES_OK);
	assert_false(vdrv_negotiate(d, F_V1 | (1ULL << VIRTIO_F_RING_PACKED)) &
		     VIRTIO_CONFIG_S_FEATURES_OK);
	assert_true(vdrv_negotiate(d, F_V1 | F_INDIRECT | F_EVENT) & VIRTIO_CONFIG_S_FEATURES_OK);
}

static void test_features_frozen_after_ok(void **state)
{
	struct vdrv *d = *state;

	assert_true(vdrv_negotiate(d, F_V1) & VIRTIO_CONFIG_S_FEATURES_OK);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	assert_int_equal(d->vd->driver_features, F_V1);
}

static void test_rng_direct_chain(void **state)
{
	struct vdrv *d = *state;
	uint64_t a = vdrv_alloc(d, 64), b = vdrv_alloc(d, 100);
	struct vdrv_seg segs[] = { { a, 64, true }, { b, 100, true } };
	uint8_t *pa = vdrv_ptr(d, a, 64), *pb = vdrv_ptr(d, b, 100);
	uint16_t head;

	assert_true(vdrv_init(d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	head = vdrv_add(d, 0, segs, 2, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 1));
	assert_int_equal(vdrv_used_elem(d, 0, 0).id, head);
	assert_int_equal(vdrv_used_elem(d, 0, 0).len, 164);
	assert_false(all_bytes(pa, 64, 0));
	assert_false(all_bytes(pb, 100, 0));
	assert_true(vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	vdrv_write(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static void test_rng_indirect_chain(void **state)
{
	struct vdrv *d = *state;
	struct vdrv_seg segs[3];

	for (int i = 0; i < 3; i++)
		segs[i] = (struct vdrv_seg){ vdrv_alloc(d, 32), 32, true };
	assert_true(vdrv_init(d, F_V1 | F_INDIRECT) & VIRTIO_CONFIG_S_DRIVER_OK);
	vdrv_add(d, 0, segs, 3, true);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 1));
	assert_int_equal(vdrv_used_elem(d, 0, 0).len, 96);
	for (int i = 0; i < 3; i++)
		assert_false(all_bytes(vdrv_ptr(d, segs[i].gpa, 32), 32, 0));
}

static void test_many_chains_wrap(void **state)
{
	struct vdrv *d = *state;
	uint64_t buf = vdrv_alloc(d, 16);
	struct vdrv_seg seg = { buf, 16, true };

	assert_true(vdrv_init(d, F_V1 | F_EVENT) & VIRTIO_CONFIG_S_DRIVER_OK);
	/* 3 x 50 chains through a 64-entry ring: indices wrap. */
	for (uint16_t round = 1; round <= 3; round++) {
		for (int i = 0; i < 50; i++)
			vdrv_add(d, 0, &seg, 1, false);
		/* Ask for an interrupt once the whole batch is used. */
		vdrv_avail(d, 0)->ring[d->q[0].num] = (uint16_t)(round * 50 - 1);
		vdrv_kick(d, 0);
		assert_true(vdrv_wait_used(d, 0, (uint16_t)(round * 50)));
	}
	assert_false(d->vd->broken);
}

static void test_event_idx_suppresses(void **state)
{
	struct vdrv *d = *state;
	struct vdrv_seg seg = { vdrv_alloc(d, 8), 8, true };
	eventfd_t v;

	assert_true(vdrv_init(d, F_V1 | F_EVENT) & VIRTIO_CONFIG_S_DRIVER_OK);
	vdrv_add(d, 0, &seg, 1, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 1)); /* first push always signals */
	while (eventfd_read(d->vd->irq_fd, &v) == 0)
		;
	/* used_event = 5: pushes 2..5 must stay silent. */
	vdrv_avail(d, 0)->ring[d->q[0].num] = 5;
	vdrv_add(d, 0, &seg, 1, false);
	vdrv_kick(d, 0);
	/* No interrupt will come: watch the used index (bounded by a clock). */
	for (time_t t0 = time(NULL); vdrv_used_idx(d, 0) != 2 && time(NULL) - t0 < 10;)
		sched_yield();
	assert_int_equal(vdrv_used_idx(d, 0), 2);
	/* Once the device is done with the batch, no interrupt is pending. */
	pthread_mutex_lock(&d->vd->lock);
	assert_int_equal(eventfd_read(d->vd->irq_fd, &v), -1);
	assert_false(virtq_need_notify(&d->vd->vqs[0]));
	pthread_mutex_unlock(&d->vd->lock);
	/* The device published avail_event so the driver kicks at the next buffer. */
	assert_int_equal(*(uint16_t *)&vdrv_used(d, 0)->ring[d->q[0].num], 2);
}

/* ---- malformed rings: every case must end in NEEDS_RESET ---- */

/* Check the device is broken, said so with a config interrupt, wrote no
 * used entry and left the canary buffer alone; then that a reset revives it. */
static void expect_broken(struct vdrv *d, uint64_t canary)
{
	assert_true(vdrv_wait_needs_reset(d));
	assert_true(vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	if (d->q[0].num)
		assert_int_equal(vdrv_used_idx(d, 0), 0);
	if (canary)
		assert_true(all_bytes(vdrv_ptr(d, canary, 64), 64, 0xAA));
	/* Kicks are ignored while broken. */
	vdrv_kick(d, 0);
	/* The driver's reset clears the condition and the device works again. */
	vdrv_write(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_STATUS), 0);
	d->heap = VDRV_HEAP + 0x100000;
	{
		struct vdrv_seg seg = { vdrv_alloc(d, 8), 8, true };

		assert_true(vdrv_init(d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
		vdrv_add(d, 0, &seg, 1, false);
		vdrv_kick(d, 0);
		assert_true(vdrv_wait_used(d, 0, 1));
	}
}

static uint64_t canary_buf(struct vdrv *d)
{
	uint64_t c = vdrv_alloc(d, 64);

	memset(vdrv_ptr(d, c, 64), 0xAA, 64);
	return c;
}

static void desc_set(struct vdrv *d, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	vdrv_desc(d, 0)[i] = (struct vring_desc){ addr, len, flags, next };
}

static void test_bad_loop(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_set(d, 1, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_self_loop(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 7, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 7);
	vdrv_publish(d, 0, 7);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_next_index(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 64);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_head_index(void **state)
{
	struct vdrv *d = *state;

	vdrv_init(d, F_V1);
	vdrv_publish(d, 0, 200);
	vdrv_kick(d, 0);
	expect_broken(d, 0);
}

static void test_bad_avail_jump(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE, 0);
	vdrv_avail(d, 0)->idx = 65; /* 65 new entries in a 64-entry ring */
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_addr_outside_ram(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_set(d, 1, 0xC0000000ULL, 64, VRING_DESC_F_WRITE, 0); /* MMIO hole */
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_len_past_ram_end(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_set(d, 1, VDRV_MEM - 16, 32, VRING_DESC_F_WRITE, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_huge_len(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_set(d, 1, 0x1000, 0xffffffff, VRING_DESC_F_WRITE, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_total_len_overflow(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	/* Each descriptor is valid (31 MiB of RAM), together they pass 4 GiB. */
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	for (unsigned i = 1; i < 64; i++)
		desc_set(d, i, 0, 31u << 20, VRING_DESC_F_WRITE | (i < 63 ? VRING_DESC_F_NEXT : 0),
			 (uint16_t)(i + 1));
	/* 63 x 31 MiB < 4 GiB: make it longer through an indirect table. */
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 1)); /* 1.9 GiB: legal, rng fills 64 KiB */
	vdrv_write(d, VIRTIO_MMIO_STATUS, 0);
	vdrv_init(d, F_V1 | F_INDIRECT);
	{
		uint64_t t = vdrv_alloc(d, 16 * 200);
		struct vring_desc *tab = vdrv_ptr(d, t, 16 * 200);

		for (unsigned i = 0; i < 200; i++)
			tab[i] = (struct vring_desc){ 0, 31u << 20,
						      VRING_DESC_F_WRITE |
						      (i < 199 ? VRING_DESC_F_NEXT : 0),
						      (uint16_t)(i + 1) };
		desc_set(d, 0, t, 16 * 200, VRING_DESC_F_INDIRECT, 0);
	}
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, 0);
}

static void test_bad_write_before_read(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);

	vdrv_init(d, F_V1);
	desc_set(d, 0, c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_set(d, 1, 0x1000, 16, 0, 0); /* readable after writable */
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void indirect_case(struct vdrv *d, uint64_t features, uint32_t table_len,
			  uint16_t head_flags, uint16_t entry1_flags)
{
	uint64_t c = canary_buf(d);
	uint64_t t = vdrv_alloc(d, 64);
	struct vring_desc *tab = vdrv_ptr(d, t, 64);

	vdrv_init(d, F_V1 | features);
	tab[0] = (struct vring_desc){ c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1 };
	tab[1] = (struct vring_desc){ t, 32, entry1_flags, 0 };
	desc_set(d, 0, t, table_len, head_flags, 1);
	desc_set(d, 1, c, 64, VRING_DESC_F_WRITE, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_indirect_size(void **state)
{
	indirect_case(*state, F_INDIRECT, 24, VRING_DESC_F_INDIRECT, VRING_DESC_F_WRITE);
}

static void test_bad_indirect_empty(void **state)
{
	indirect_case(*state, F_INDIRECT, 0, VRING_DESC_F_INDIRECT, VRING_DESC_F_WRITE);
}

static void test_bad_indirect_nested(void **state)
{
	indirect_case(*state, F_INDIRECT, 32, VRING_DESC_F_INDIRECT, VRING_DESC_F_INDIRECT);
}

static void test_bad_indirect_with_next(void **state)
{
	indirect_case(*state, F_INDIRECT, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT,
		      VRING_DESC_F_WRITE);
}

static void test_bad_indirect_not_negotiated(void **state)
{
	indirect_case(*state, 0, 32, VRING_DESC_F_INDIRECT, VRING_DESC_F_WRITE);
}

static void test_bad_indirect_loop(void **state)
{
	struct vdrv *d = *state;
	uint64_t c = canary_buf(d);
	uint64_t t = vdrv_alloc(d, 32);
	struct vring_desc *tab = vdrv_ptr(d, t, 32);

	vdrv_init(d, F_V1 | F_INDIRECT);
	tab[0] = (struct vring_desc){ c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1 };
	tab[1] = (struct vring_desc){ c, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0 };
	desc_set(d, 0, t, 32, VRING_DESC_F_INDIRECT, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, c);
}

static void test_bad_indirect_outside_ram(void **state)
{
	struct vdrv *d = *state;

	vdrv_init(d, F_V1 | F_INDIRECT);
	desc_set(d, 0, VDRV_MEM - 16, 32, VRING_DESC_F_INDIRECT, 0);
	vdrv_publish(d, 0, 0);
	vdrv_kick(d, 0);
	expect_broken(d, 0);
}

static void queue_program_case(struct vdrv *d, uint32_t num, uint64_t desc)
{
	assert_true(vdrv_negotiate(d, F_V1) & VIRTIO_CONFIG_S_FEATURES_OK);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_NUM, num);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	vdrv_write(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x2000);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_USED_LOW, 0x3000);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_READY), 0);
	d->q[0].num = 0; /* no ring to check */
	expect_broken(d, 0);
}

static void test_bad_queue_size_not_pow2(void **state)
{
	queue_program_case(*state, 3, 0x1000);
}

static void test_bad_queue_size_too_big(void **state)
{
	queue_program_case(*state, 128, 0x1000);
}

static void test_bad_queue_size_zero(void **state)
{
	queue_program_case(*state, 0, 0x1000);
}

static void test_bad_ring_outside_ram(void **state)
{
	queue_program_case(*state, 64, VDRV_MEM - 0x100);
}

static void test_bad_ring_misaligned(void **state)
{
	queue_program_case(*state, 64, 0x1008);
}

static void test_reset_via_ops(void **state)
{
	struct vdrv *d = *state;

	assert_true(vdrv_init(d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	d->vd->dev.ops->reset(&d->vd->dev);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_STATUS), 0);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_save_load_roundtrip(void **state)
{
	struct vdrv *d = *state;
	struct vdrv_seg seg = { vdrv_alloc(d, 8), 8, true };
	struct state_writer w;
	struct state_reader r;
	struct virtio_dev before;

	assert_true(vdrv_init(d, F_V1 | F_INDIRECT | F_EVENT) & VIRTIO_CONFIG_S_DRIVER_OK);
	vdrv_add(d, 0, &seg, 1, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 1));

	state_writer_init(&w);
	assert_int_equal(d->vd->dev.ops->save(&d->vd->dev, &w), 0);
	memcpy(&before, d->vd, sizeof(before));
	/* Wipe the device, then load. */
	vdrv_write(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(d->vd->vqs[0].last_avail_idx, 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(d->vd->dev.ops->load(&d->vd->dev, &r), 0);
	assert_int_equal(r.pos, r.len);
	assert_int_equal(d->vd->status, before.status);
	assert_int_equal(d->vd->driver_features, before.driver_features);
	assert_int_equal(d->vd->vqs[0].num, before.vqs[0].num);
	assert_int_equal(d->vd->vqs[0].desc_gpa, before.vqs[0].desc_gpa);
	assert_int_equal(d->vd->vqs[0].avail_gpa, before.vqs[0].avail_gpa);
	assert_int_equal(d->vd->vqs[0].used_gpa, before.vqs[0].used_gpa);
	assert_int_equal(d->vd->vqs[0].last_avail_idx, 1);
	assert_int_equal(d->vd->vqs[0].used_idx, 1);
	assert_true(d->vd->vqs[0].ready && d->vd->vqs[0].event_idx && d->vd->vqs[0].indirect);
	/* It carries on where it stopped. */
	vdrv_add(d, 0, &seg, 1, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, 2));

	/* A truncated or foreign stream is refused and leaves a reset device. */
	state_reader_init(&r, w.buf, w.len / 2);
	assert_int_equal(d->vd->dev.ops->load(&d->vd->dev, &r), -EINVAL);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_STATUS), 0);
	w.buf[4] ^= 0xff; /* device id */
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(d->vd->dev.ops->load(&d->vd->dev, &r), -EINVAL);
	state_writer_free(&w);
}

static void test_register_width(void **state)
{
	struct vdrv *d = *state;
	uint8_t b[2] = { 0xff, 0xff };

	/* 16-bit register reads are not allowed: they read 0 and change nothing. */
	assert_true(bus_dispatch(&d->vm.mmio, d->vd->base, b, 2, false));
	assert_int_equal(b[0] | b[1], 0);
	assert_true(bus_dispatch(&d->vm.mmio, d->vd->base + VIRTIO_MMIO_STATUS, b, 2, true));
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_STATUS), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_rng, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_registers),
		T(test_register_width),
		T(test_features_need_version1),
		T(test_features_refuse_unoffered),
		T(test_features_frozen_after_ok),
		T(test_rng_direct_chain),
		T(test_rng_indirect_chain),
		T(test_many_chains_wrap),
		T(test_event_idx_suppresses),
		T(test_bad_loop),
		T(test_bad_self_loop),
		T(test_bad_next_index),
		T(test_bad_head_index),
		T(test_bad_avail_jump),
		T(test_bad_addr_outside_ram),
		T(test_bad_len_past_ram_end),
		T(test_bad_huge_len),
		T(test_bad_total_len_overflow),
		T(test_bad_write_before_read),
		T(test_bad_indirect_size),
		T(test_bad_indirect_empty),
		T(test_bad_indirect_nested),
		T(test_bad_indirect_with_next),
		T(test_bad_indirect_not_negotiated),
		T(test_bad_indirect_loop),
		T(test_bad_indirect_outside_ram),
		T(test_bad_queue_size_not_pow2),
		T(test_bad_queue_size_too_big),
		T(test_bad_queue_size_zero),
		T(test_bad_ring_outside_ram),
		T(test_bad_ring_misaligned),
		T(test_reset_via_ops),
		T(test_save_load_roundtrip),
	};

	return cmocka_run_group_tests_name("virtio-core", tests, NULL, NULL);
}
