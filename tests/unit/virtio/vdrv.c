/* vdrv.c: the miniature test driver for virtio-mmio devices (see vdrv.h). */
#include "vdrv.h"

#include <poll.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"

#define WAIT_MS 10000

struct vdrv *vdrv_new(void)
{
	struct vdrv *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	assert_int_equal(vm_create_test(&d->vm, VDRV_MEM), 0);
	d->heap = VDRV_HEAP;
	return d;
}

void vdrv_bind(struct vdrv *d)
{
	assert_non_null(d->vm.devices_tail);
	d->vd = virtio_dev_of(d->vm.devices_tail);
}

static void *loop_main(void *arg)
{
	struct vdrv *d = arg;

	evloop_run(d->vm.loop);
	return NULL;
}

void vdrv_start_loop(struct vdrv *d)
{
	assert_int_equal(pthread_create(&d->loop_thread, NULL, loop_main, d), 0);
	d->loop_running = true;
}

void vdrv_free(struct vdrv *d)
{
	if (d->loop_running) {
		evloop_stop(d->vm.loop);
		pthread_join(d->loop_thread, NULL);
	}
	vm_destroy(&d->vm);
	free(d);
}

uint32_t vdrv_read(struct vdrv *d, uint64_t off)
{
	uint32_t v = 0;

	assert_true(bus_dispatch(&d->vm.mmio, d->vd->base + off, (uint8_t *)&v, 4, false));
	return v;
}

void vdrv_write(struct vdrv *d, uint64_t off, uint32_t val)
{
	assert_true(bus_dispatch(&d->vm.mmio, d->vd->base + off, (uint8_t *)&val, 4, true));
}

uint8_t vdrv_config8(struct vdrv *d, unsigned off)
{
	uint8_t v = 0;

	assert_true(bus_dispatch(&d->vm.mmio, d->vd->base + VIRTIO_MMIO_CONFIG + off, &v, 1,
				 false));
	return v;
}

uint64_t vdrv_alloc(struct vdrv *d, uint64_t len)
{
	uint64_t gpa = d->heap;

	d->heap = (d->heap + len + 15) & ~15ULL;
	assert_true(d->heap <= VDRV_MEM);
	memset(vdrv_ptr(d, gpa, len), 0, len);
	return gpa;
}

void *vdrv_ptr(struct vdrv *d, uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&d->vm.mem, gpa, len);

	assert_non_null(p);
	return p;
}

uint32_t vdrv_negotiate(struct vdrv *d, uint64_t features)
{
	vdrv_write(d, VIRTIO_MMIO_STATUS, 0);
	vdrv_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	vdrv_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	vdrv_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	vdrv_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
						  VIRTIO_CONFIG_S_FEATURES_OK);
	return vdrv_read(d, VIRTIO_MMIO_STATUS);
}

void vdrv_setup_queue(struct vdrv *d, unsigned q, uint16_t num)
{
	struct vdrv_queue *vq = &d->q[q];

	memset(vq, 0, sizeof(*vq));
	vq->num = num;
	vq->desc = vdrv_alloc(d, 16ULL * num);
	vq->avail = vdrv_alloc(d, 6 + 2ULL * num);
	vq->used = vdrv_alloc(d, 6 + 8ULL * num);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_NUM, num);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)vq->desc);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(vq->desc >> 32));
	vdrv_write(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)vq->avail);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(vq->avail >> 32));
	vdrv_write(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)vq->used);
	vdrv_write(d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(vq->used >> 32));
	vdrv_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

uint32_t vdrv_init(struct vdrv *d, uint64_t features)
{
	uint32_t st = vdrv_negotiate(d, features);

	assert_true(st & VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < d->vd->nr_queues; q++) {
		vdrv_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
		vdrv_setup_queue(d, q, (uint16_t)vdrv_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX));
	}
	vdrv_write(d, VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_DRIVER_OK);
	return vdrv_read(d, VIRTIO_MMIO_STATUS);
}

struct vring_desc *vdrv_desc(struct vdrv *d, unsigned q)
{
	return vdrv_ptr(d, d->q[q].desc, 16ULL * d->q[q].num);
}

struct vring_avail *vdrv_avail(struct vdrv *d, unsigned q)
{
	return vdrv_ptr(d, d->q[q].avail, 6 + 2ULL * d->q[q].num);
}

struct vring_used *vdrv_used(struct vdrv *d, unsigned q)
{
	return vdrv_ptr(d, d->q[q].used, 6 + 8ULL * d->q[q].num);
}

void vdrv_publish(struct vdrv *d, unsigned q, uint16_t head)
{
	struct vdrv_queue *vq = &d->q[q];
	struct vring_avail *a = vdrv_avail(d, q);

	a->ring[vq->avail_idx % vq->num] = head;
	vq->avail_idx++;
	__atomic_store_n(&a->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

uint16_t vdrv_add(struct vdrv *d, unsigned q, const struct vdrv_seg *segs, unsigned n,
		  bool indirect)
{
	struct vdrv_queue *vq = &d->q[q];
	struct vring_desc *desc = vdrv_desc(d, q);
	struct vring_desc *table = desc;
	uint16_t head = vq->next_desc, base = head;

	if (indirect) {
		uint64_t t = vdrv_alloc(d, 16ULL * n);

		table = vdrv_ptr(d, t, 16ULL * n);
		desc[head] = (struct vring_desc){ .addr = t, .len = 16 * n,
						  .flags = VRING_DESC_F_INDIRECT };
		vq->next_desc = (uint16_t)((head + 1) % vq->num);
		base = 0;
	}
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)(indirect ? i : (base + i) % vq->num);
		uint16_t next = (uint16_t)(indirect ? i + 1 : (base + i + 1) % vq->num);

		table[idx] = (struct vring_desc){
			.addr = segs[i].gpa,
			.len = segs[i].len,
			.flags = (uint16_t)((segs[i].write ? VRING_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
			.next = i + 1 < n ? next : 0,
		};
	}
	if (!indirect)
		vq->next_desc = (uint16_t)((base + n) % vq->num);
	vdrv_publish(d, q, head);
	return head;
}

void vdrv_kick(struct vdrv *d, unsigned q)
{
	vdrv_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

uint16_t vdrv_used_idx(struct vdrv *d, unsigned q)
{
	return __atomic_load_n(&vdrv_used(d, q)->idx, __ATOMIC_ACQUIRE);
}

struct vring_used_elem vdrv_used_elem(struct vdrv *d, unsigned q, uint16_t i)
{
	return vdrv_used(d, q)->ring[i % d->q[q].num];
}

/* Block on the irq eventfd until cond() holds; the timeout only guards
 * against a hung test. */
static bool wait_irq(struct vdrv *d, bool (*cond)(struct vdrv *, unsigned, uint16_t),
		     unsigned q, uint16_t v)
{
	for (int rounds = 0; rounds < 100; rounds++) {
		struct pollfd p = { .fd = d->vd->irq_fd, .events = POLLIN };
		eventfd_t cnt;

		if (cond(d, q, v))
			return true;
		if (poll(&p, 1, WAIT_MS) <= 0)
			return cond(d, q, v);
		if (eventfd_read(d->vd->irq_fd, &cnt) < 0) {
			/* raced with another reader: look again */
		}
	}
	return cond(d, q, v);
}

static bool used_reached(struct vdrv *d, unsigned q, uint16_t idx)
{
	return (int16_t)(vdrv_used_idx(d, q) - idx) >= 0;
}

static bool needs_reset(struct vdrv *d, unsigned q, uint16_t v)
{
	return vdrv_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

bool vdrv_wait_used(struct vdrv *d, unsigned q, uint16_t idx)
{
	return wait_irq(d, used_reached, q, idx);
}

bool vdrv_wait_needs_reset(struct vdrv *d)
{
	return wait_irq(d, needs_reset, 0, 0);
}

void *vdrv_config(const char *type, const char *spec)
{
	const struct device_type *t = devtype_find(type);
	struct conf_err e;
	void *cfg;

	assert_non_null(t);
	cfg = calloc(1, t->config_size);
	assert_non_null(cfg);
	assert_int_equal(conf_from_string(t->config_schema, cfg, spec, &e), 0);
	return cfg;
}

long vdrv_rss_shmem_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "RssShmem: %ld", &v) == 1)
			break;
	fclose(fp);
	assert_true(v >= 0);
	return v;
}

json_t *vdrv_command(struct vdrv *d, const char *type, const char *json)
{
	const struct devtype_command *c = devtype_find(type)->commands;
	json_t *req = json_loads(json, 0, NULL);
	const char *name;
	json_t *rep = NULL;

	assert_non_null(req);
	name = json_string_value(json_object_get(req, "cmd"));
	for (; c->name; c++)
		if (!strcmp(c->name, name))
			rep = c->run(&d->vm, req, -1);
	json_decref(req);
	assert_non_null(rep);
	return rep;
}

void vdrv_create(struct vdrv *d, const char *type, const void *cfg)
{
	assert_int_equal(devtype_find(type)->create(&d->vm, 0, cfg), 0);
	vdrv_bind(d);
	vdrv_start_loop(d);
}

int vdrv_fixture_teardown(void **state)
{
	struct vdrv_fixture *f = *state;

	vdrv_free(f->d);
	free(f->cfg);
	free(f);
	return 0;
}
