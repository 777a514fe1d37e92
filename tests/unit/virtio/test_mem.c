/* test_mem.c: virtio-mem without KVM. The request state machine on its
 * own (every ERROR and NACK of the spec), then the device created through
 * its type and schema on a test VM with a 16 MiB hot-pluggable region:
 * the config space, virtio-mem-set and its config interrupt, plugging
 * (guest_mem_ptr reaches plugged blocks only), unplugging giving the pages
 * back to the host (the process's shared-memory RSS falls), hostile
 * requests answered without harm, and save/load of a partly plugged
 * region. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mem.h>
#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"
#include "state/state.h"
#include "vdrv.h"
#include "virtio/mem/vmem.h"

#define F_V1    (1ULL << VIRTIO_F_VERSION_1)
#define REGION  (16ULL << 20)
#define BS      VMEM_BLOCK_SIZE
#define BASE    0x100000000ULL /* 16 MiB of boot RAM: the region starts at 4 GiB */

/* --- the state machine alone ------------------------------------------ */

struct sm {
	unsigned long map[1];
	struct vmem_blocks b;
};

static void sm_init(struct sm *s, uint64_t requested)
{
	memset(s, 0, sizeof(*s));
	s->b = (struct vmem_blocks){ .addr = BASE, .block_size = BS, .nblocks = 8,
				     .usable_blocks = 8, .requested = requested, .map = s->map };
}

static uint16_t sm_req(struct sm *s, uint16_t type, uint64_t addr, uint16_t n, uint16_t *state,
		       struct vmem_effect *fx)
{
	struct vmem_request r = { .type = type, .addr = addr, .nb_blocks = n };
	struct vmem_effect dummy;
	uint16_t st;
	const char *why;
	uint16_t ret = vmem_handle(&s->b, &r, state ? state : &st, fx ? fx : &dummy, &why);

	assert_true(ret == VIRTIO_MEM_RESP_ACK ? why == NULL : why != NULL);
	return ret;
}

static void test_state_machine(void **state)
{
	struct vmem_effect fx;
	uint16_t st;
	struct sm s;

	(void)state;
	sm_init(&s, 4);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE, 2, NULL, NULL), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(s.b.plugged, 2);
	/* Plugging a plugged block, even partly. */
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + BS, 2, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	/* Misaligned, below, past the end, empty. */
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 4096 + 2 * BS, 1, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE - BS, 1, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 7 * BS, 2, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 8 * BS, 1, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, UINT64_MAX - BS + 1, 0xffff, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 4 * BS, 0, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	/* Past the requested size (4 blocks): NACK, nothing plugged. */
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 4 * BS, 3, NULL, NULL),
			 VIRTIO_MEM_RESP_NACK);
	assert_int_equal(s.b.plugged, 2);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 4 * BS, 2, NULL, NULL),
			 VIRTIO_MEM_RESP_ACK);
	/* STATE answers. */
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_STATE, BASE, 2, &st, NULL), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(st, VIRTIO_MEM_STATE_PLUGGED);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_STATE, BASE + BS, 2, &st, NULL),
			 VIRTIO_MEM_RESP_ACK);
	assert_int_equal(st, VIRTIO_MEM_STATE_MIXED);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_STATE, BASE + 2 * BS, 2, &st, NULL),
			 VIRTIO_MEM_RESP_ACK);
	assert_int_equal(st, VIRTIO_MEM_STATE_UNPLUGGED);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_STATE, BASE + 7 * BS, 2, &st, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	/* Unplug: only plugged blocks; the effect names them. */
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_UNPLUG, BASE + BS, 2, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_UNPLUG, BASE + BS, 1, NULL, &fx),
			 VIRTIO_MEM_RESP_ACK);
	assert_int_equal(fx.first, 1);
	assert_int_equal(fx.count, 1);
	assert_int_equal(s.b.plugged, 3);
	/* A lower target does not force anything: unplug stays the driver's. */
	s.b.requested = 0;
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + BS, 1, NULL, NULL),
			 VIRTIO_MEM_RESP_NACK);
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL, &fx), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(s.b.plugged, 0);
	assert_int_equal(vmem_count_plugged(&s.b), 0);
	assert_int_equal(fx.count, 8);
	assert_int_equal(sm_req(&s, 4, BASE, 1, NULL, NULL), VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(sm_req(&s, 0xffff, BASE, 1, NULL, NULL), VIRTIO_MEM_RESP_ERROR);
	/* A usable region smaller than the region. */
	sm_init(&s, 8);
	s.b.usable_blocks = 4;
	assert_int_equal(sm_req(&s, VIRTIO_MEM_REQ_PLUG, BASE + 3 * BS, 2, NULL, NULL),
			 VIRTIO_MEM_RESP_ERROR);
}

static void test_parse(void **state)
{
	uint8_t buf[24] = { 0 };
	struct iovec iov[2] = { { buf, 1 }, { buf + 10, 0 } };
	struct vmem_request r;

	(void)state;
	assert_int_equal(vmem_parse_request(iov, 1, &r), -EINVAL);
	buf[0] = VIRTIO_MEM_REQ_UNPLUG_ALL;
	iov[0].iov_len = 2;
	assert_int_equal(vmem_parse_request(iov, 1, &r), 0);
	assert_int_equal(r.type, VIRTIO_MEM_REQ_UNPLUG_ALL);
	/* PLUG needs addr and nb_blocks: 18 bytes, split over two segments. */
	buf[0] = VIRTIO_MEM_REQ_PLUG;
	buf[8 + 4] = 1;  /* addr 0x100000000 */
	buf[16] = 3;
	iov[0].iov_len = 17;
	assert_int_equal(vmem_parse_request(iov, 1, &r), -EINVAL);
	iov[0].iov_len = 10;
	iov[1].iov_len = 8;
	assert_int_equal(vmem_parse_request(iov, 2, &r), 0);
	assert_int_equal(r.type, VIRTIO_MEM_REQ_PLUG);
	assert_int_equal(r.addr, BASE);
	assert_int_equal(r.nb_blocks, 3);
}

/* --- the device -------------------------------------------------------- */

static int setup(void **state)
{
	struct vdrv_fixture *f = calloc(1, sizeof(*f));

	f->cfg = vdrv_config("virtio-mem", "max_mib=32,requested_mib=4");
	f->d = vdrv_new();
	assert_int_equal(guest_mem_set_hotplug(&f->d->vm.mem, REGION), 0);
	assert_int_equal(f->d->vm.mem.hp_base, BASE);
	vdrv_create(f->d, "virtio-mem", f->cfg);
	*state = f;
	return 0;
}

static bool command_ok(struct vdrv *d, const char *json)
{
	json_t *rep = vdrv_command(d, "virtio-mem", json);
	bool ok = json_is_true(json_object_get(rep, "ok"));

	json_decref(rep);
	return ok;
}

static int64_t status_int(struct vdrv *d, const char *key)
{
	json_t *st = devtype_find("virtio-mem")->status(&d->vm);
	int64_t v = json_integer_value(json_object_get(st, key));

	assert_non_null(json_object_get(st, key));
	json_decref(st);
	return v;
}

static uint64_t config64(struct vdrv *d, unsigned off)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)vdrv_config8(d, off + i) << (8 * i);
	return v;
}

/* Send one request; return the response type (and *st the state). */
static uint16_t request(struct vdrv *d, uint16_t type, uint64_t addr, uint16_t n, uint16_t *st)
{
	uint64_t req = vdrv_alloc(d, 24), resp = vdrv_alloc(d, 16);
	uint8_t *q = vdrv_ptr(d, req, 24), *p = vdrv_ptr(d, resp, 16);
	struct vdrv_seg segs[2] = { { req, 24, false }, { resp, 10, true } };
	uint16_t idx = vdrv_used_idx(d, 0);

	memset(q, 0, 24);
	memset(p, 0xee, 16);
	memcpy(q, &type, 2);
	memcpy(q + 8, &addr, 8);
	memcpy(q + 16, &n, 2);
	vdrv_add(d, 0, segs, 2, false);
	vdrv_kick(d, 0);
	assert_true(vdrv_wait_used(d, 0, (uint16_t)(idx + 1)));
	assert_int_equal(vdrv_used_elem(d, 0, idx).len, 10);
	if (st)
		memcpy(st, p + 8, 2);
	return (uint16_t)(p[0] | p[1] << 8);
}

static void test_config_plug_unplug(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	const struct guest_mem *m = &d->vm.mem;
	long before, touched, after;
	uint16_t st;

	vdrv_init(d, F_V1);
	assert_int_equal(vdrv_read(d, VIRTIO_MMIO_DEVICE_ID), 24);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, block_size)), BS);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, addr)), BASE);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, region_size)), REGION);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, usable_region_size)), REGION);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, requested_size)), 4 << 20);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, plugged_size)), 0);
	/* Nothing plugged: the region is not RAM to the VMM's accessor. */
	assert_null(guest_mem_ptr(m, BASE, 1));
	assert_non_null(guest_mem_ptr_any(m, BASE, 1));

	/* virtio-mem-set: a new requested size, with a config interrupt. */
	vdrv_write(d, VIRTIO_MMIO_INTERRUPT_ACK, vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS));
	assert_true(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": 12}"));
	assert_true(vdrv_read(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, requested_size)), 12 << 20);
	assert_false(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": 3}"));
	assert_false(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": 18}"));
	assert_false(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": -2}"));
	assert_false(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": \"8\"}"));
	assert_int_equal(status_int(d, "requested_mib"), 12);

	/* Plug 8 MiB and touch it: the host's pages grow by 8 MiB. */
	before = vdrv_rss_shmem_kib();
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE, 4, NULL), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, plugged_size)), 8 << 20);
	assert_non_null(guest_mem_ptr(m, BASE, 8 << 20));
	assert_null(guest_mem_ptr(m, BASE, (8 << 20) + 1));
	memset(guest_mem_ptr(m, BASE, 8 << 20), 0x5a, 8 << 20);
	touched = vdrv_rss_shmem_kib();
	assert_true(touched - before >= 8192 - 64);
	/* More than requested: NACK. Already plugged: ERROR. */
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE + 4 * BS, 3, NULL),
			 VIRTIO_MEM_RESP_NACK);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE + 3 * BS, 1, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_STATE, BASE + 3 * BS, 2, &st),
			 VIRTIO_MEM_RESP_ACK);
	assert_int_equal(st, VIRTIO_MEM_STATE_MIXED);

	/* Unplug 4 MiB: its pages go back to the host. */
	assert_int_equal(request(d, VIRTIO_MEM_REQ_UNPLUG, BASE + 2 * BS, 2, NULL),
			 VIRTIO_MEM_RESP_ACK);
	after = vdrv_rss_shmem_kib();
	assert_true(touched - after >= 4096 - 64);
	assert_null(guest_mem_ptr(m, BASE + 2 * BS, 1));
	assert_int_equal(status_int(d, "plugged_mib"), 4);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(status_int(d, "plugged_mib"), 0);
	assert_true(after - vdrv_rss_shmem_kib() >= 4096 - 64);
}

static void test_hostile(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	uint64_t req = vdrv_alloc(d, 24), resp = vdrv_alloc(d, 16);
	uint16_t idx;

	vdrv_init(d, F_V1);
	/* Out of range, misaligned, unknown: ERROR, the device goes on. */
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, 0, 1, NULL), VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE + 8 * BS, 1, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE + 512, 1, NULL),
			 VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_UNPLUG, BASE, 1, NULL), VIRTIO_MEM_RESP_ERROR);
	assert_int_equal(request(d, 77, BASE, 1, NULL), VIRTIO_MEM_RESP_ERROR);
	/* No response buffer: ignored, returned with 0 bytes, nothing plugged. */
	{
		struct vdrv_seg seg = { req, 24, false };
		uint16_t t = VIRTIO_MEM_REQ_PLUG, n = 1;
		uint64_t a = BASE;
		uint8_t *q = vdrv_ptr(d, req, 24);

		memcpy(q, &t, 2);
		memcpy(q + 8, &a, 8);
		memcpy(q + 16, &n, 2);
		idx = vdrv_used_idx(d, 0);
		vdrv_add(d, 0, &seg, 1, false);
		vdrv_kick(d, 0);
		assert_true(vdrv_wait_used(d, 0, (uint16_t)(idx + 1)));
		assert_int_equal(vdrv_used_elem(d, 0, idx).len, 0);
	}
	(void)resp;
	assert_int_equal(status_int(d, "plugged_mib"), 0);
	assert_false(vdrv_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE, 2, NULL), VIRTIO_MEM_RESP_ACK);
}

static void test_save_load(void **state)
{
	struct vdrv_fixture *f = *state;
	struct vdrv *d = f->d;
	struct virtio_dev *vd = d->vd;
	struct state_writer w;
	struct state_reader r;
	uint16_t st;

	vdrv_init(d, F_V1);
	assert_true(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": 10}"));
	assert_int_equal(request(d, VIRTIO_MEM_REQ_PLUG, BASE + 2 * BS, 3, NULL), VIRTIO_MEM_RESP_ACK);
	state_writer_init(&w);
	assert_int_equal(vd->dev.ops->save(&vd->dev, &w), 0);
	assert_int_equal(state_writer_error(&w), 0);
	/* Change the device without touching the ring (a load rewinds the
	 * ring to the saved indexes and would replay anything sent since). */
	{
		struct vmem_request all = { .type = VIRTIO_MEM_REQ_UNPLUG_ALL };
		struct vmem_effect fx;
		const char *why;

		pthread_mutex_lock(&vd->lock);
		assert_int_equal(vmem_handle(&vmem_of(vd)->blk, &all, &st, &fx, &why),
				 VIRTIO_MEM_RESP_ACK);
		pthread_mutex_unlock(&vd->lock);
	}
	assert_int_equal(status_int(d, "plugged_mib"), 0);
	assert_true(command_ok(d, "{\"cmd\": \"virtio-mem-set\", \"requested_mib\": 2}"));
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	assert_int_equal(status_int(d, "plugged_mib"), 6);
	assert_int_equal(status_int(d, "requested_mib"), 10);
	assert_int_equal(config64(d, offsetof(struct virtio_mem_config, plugged_size)), 6 << 20);
	assert_non_null(guest_mem_ptr(&d->vm.mem, BASE + 2 * BS, 3 * BS));
	assert_int_equal(request(d, VIRTIO_MEM_REQ_STATE, BASE + 2 * BS, 3, &st), VIRTIO_MEM_RESP_ACK);
	assert_int_equal(st, VIRTIO_MEM_STATE_PLUGGED);
	/* Truncated, or for another region: refused. */
	state_reader_init(&r, w.buf, w.len - 8);
	assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	w.buf[w.len - 88] ^= 1; /* nblocks (before usable, requested, 7 counters, 1 word) */
	state_reader_init(&r, w.buf, w.len);
	assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	state_writer_free(&w);
}

static void test_schema_errors(void **state)
{
	const struct device_type *t = devtype_find("virtio-mem");
	void *cfg = calloc(1, t->config_size);
	struct conf_err e;
	struct vdrv *d;

	(void)state;
	assert_int_not_equal(conf_from_string(t->config_schema, cfg, "bogus=1", &e), 0);
	/* No region reserved for it, or requested past the region: refused. */
	assert_int_equal(conf_from_string(t->config_schema, cfg, "max_mib=32", &e), 0);
	d = vdrv_new();
	assert_int_equal(t->create(&d->vm, 0, cfg), -EINVAL);
	assert_int_equal(guest_mem_set_hotplug(&d->vm.mem, REGION), 0);
	memset(cfg, 0, t->config_size);
	assert_int_equal(conf_from_string(t->config_schema, cfg, "max_mib=32,requested_mib=18", &e),
			 0);
	assert_int_equal(t->create(&d->vm, 0, cfg), -EINVAL);
	memset(cfg, 0, t->config_size);
	assert_int_equal(conf_from_string(t->config_schema, cfg, "max_mib=32,requested_mib=3", &e),
			 0);
	assert_int_equal(t->create(&d->vm, 0, cfg), -EINVAL);
	vdrv_free(d);
	free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_parse),
		cmocka_unit_test_setup_teardown(test_config_plug_unplug, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, vdrv_fixture_teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, vdrv_fixture_teardown),
		cmocka_unit_test(test_schema_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
