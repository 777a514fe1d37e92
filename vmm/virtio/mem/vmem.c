/* vmem.c: virtio-mem: the guest request queue, the config space and the
 * device type (see vmem.h for the design). */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ids.h>

#include "conf/schema.h"
#include "config.h"
#include "devtype.h"
#include "log.h"
#include "virtio/mem/vmem.h"
#include "vm.h"
#include "mem_prefetch.h"

extern const struct device_type devtype_virtio_mem;

static const struct device_ops vmem_device_ops = VIRTIO_DEVICE_OPS("virtio-mem");

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

void vmem_config_update(struct vmem *v, bool notify)
{
	const struct vmem_blocks *b = &v->blk;
	uint8_t *c = v->vd.config;

	memset(c, 0, sizeof(struct virtio_mem_config));
	put_le64(c + offsetof(struct virtio_mem_config, block_size), b->block_size);
	put_le64(c + offsetof(struct virtio_mem_config, addr), b->addr);
	put_le64(c + offsetof(struct virtio_mem_config, region_size), b->nblocks * b->block_size);
	put_le64(c + offsetof(struct virtio_mem_config, usable_region_size),
		 b->usable_blocks * b->block_size);
	put_le64(c + offsetof(struct virtio_mem_config, plugged_size), b->plugged * b->block_size);
	put_le64(c + offsetof(struct virtio_mem_config, requested_size),
		 b->requested * b->block_size);
	if (notify && (v->vd.status & VIRTIO_CONFIG_S_DRIVER_OK)) {
		v->vd.config_generation++;
		virtio_dev_notify_config(&v->vd);
	}
}

static bool vmem_may_warn(struct vmem *v)
{
	if (v->warned >= VMEM_WARN_MAX)
		return false;
	if (++v->warned == VMEM_WARN_MAX)
		log_warn("%s: further refused requests are counted, not logged", v->vd.name);
	return true;
}

static const char *req_name(uint16_t type)
{
	static const char *const names[] = { "plug", "unplug", "unplug-all", "state" };

	return type < ARRAY_SIZE(names) ? names[type] : "unknown";
}

/* One request chain: parse, apply, answer. Returns the bytes written. */
static uint32_t vmem_request(struct vmem *v)
{
	const struct virtq_chain *c = v->chain;
	struct virtio_mem_resp resp;
	struct vmem_request r;
	struct vmem_effect fx;
	const char *why = NULL;
	uint16_t type, state = 0;

	/* No room for the answer: the request is not carried out (the driver
	 * could not learn its outcome). */
	if (c->in_len < sizeof(resp)) {
		v->errors++;
		if (vmem_may_warn(v))
			log_warn("%s: request without a %zu-byte response buffer; ignored",
				 v->vd.name, sizeof(resp));
		return 0;
	}
	if (vmem_parse_request(c->iov, c->nr_out, &r)) {
		type = VIRTIO_MEM_RESP_ERROR;
		why = "request too short";
		r.type = 0xffff;
	} else {
		type = vmem_handle(&v->blk, &r, &state, &fx, &why);
	}
	if (type == VIRTIO_MEM_RESP_ACK) {
		switch (r.type) {
		case VIRTIO_MEM_REQ_PLUG: v->plugs++; break;
		case VIRTIO_MEM_REQ_UNPLUG: v->unplugs++; break;
		case VIRTIO_MEM_REQ_UNPLUG_ALL: v->unplug_alls++; break;
		default: v->states++; break;
		}
		if (fx.count) {
			int ret = guest_mem_discard(&v->vm->mem,
						    v->region_off + fx.first * v->blk.block_size,
						    fx.count * v->blk.block_size);

			if (ret && !v->discard_errors++)
				log_warn("%s: cannot give unplugged memory back to the host: %s",
					 v->vd.name, strerror(-ret));
		}
		if (r.type != VIRTIO_MEM_REQ_STATE)
			vmem_config_update(v, false);
	} else {
		if (type == VIRTIO_MEM_RESP_NACK)
			v->nacks++;
		else
			v->errors++;
		if (vmem_may_warn(v))
			log_warn("%s: %s request at 0x%llx, %u blocks: %s (%s)", v->vd.name,
				 req_name(r.type), (unsigned long long)r.addr, r.nb_blocks,
				 type == VIRTIO_MEM_RESP_NACK ? "NACK" : "ERROR", why);
	}
	memset(&resp, 0, sizeof(resp));
	resp.type = htole16(type);
	resp.u.state.state = htole16(state);
	iov_from_buf(c->iov + c->nr_out, c->nr_in, 0, &resp, sizeof(resp));
	return sizeof(resp);
}

static void vmem_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct vmem *v = vmem_of(vd);
	struct virtq *vq = &vd->vqs[q];
	struct virtq_error err;
	bool pushed = false;
	int ret;

	while ((ret = virtq_pop(vq, v->chain, &err)) > 0) {
		const struct virtq_chain *c = v->chain;
		uint32_t len = vmem_request(v), left = len;

		/* The answer may span device-writable segments: a migration's
		 * dirty log must see each (KVM's does not see the VMM's writes). */
		for (unsigned i = c->nr_out; left && i < c->nr_out + c->nr_in; i++) {
			uint32_t n = (uint32_t)MIN((size_t)left, c->iov[i].iov_len);

			guest_mem_mark_dirty_host(&v->vm->mem, c->iov[i].iov_base, n);
			left -= n;
		}
		virtq_push(vq, c->head, len);
		pushed = true;
	}
	virtio_dev_pop_done(vd, q, ret, &err, pushed);
}

static void vmem_destroy(struct virtio_dev *vd)
{
	struct vmem *v = vmem_of(vd);

	if (v->vm && v->vm->mem.hp_plugged == v->blk.map)
		__atomic_store_n(&v->vm->mem.hp_plugged, NULL, __ATOMIC_RELEASE);
	free(v->chain);
	free(v->blk.map);
}

/* The device keeps its blocks across a reset (virtio 1.2, 5.15.5: a reset
 * does not change the state of memory blocks; a new driver that finds
 * plugged_size != 0 unplugs all first). */
static const struct virtio_dev_ops vmem_ops = {
	.queue_notify = vmem_queue_notify,
	.save = vmem_save,
	.load = vmem_load,
	.destroy = vmem_destroy,
};

/* The region the device reserves: max_mib less the boot memory, in whole
 * blocks; 0 when max_mib leaves none (vmem_create says why). */
static uint64_t vmem_mem_region(const struct vm_config *cfg, const void *config)
{
	const struct vmem_config *vc = config;
	uint64_t boot = ALIGN_UP(cfg->mem_mib, 2);

	if (vc->max_mib <= boot)
		return 0;
	return ALIGN_DOWN(MiB(vc->max_mib - boot), VMEM_BLOCK_SIZE);
}

static int vmem_create(struct vm *vm, unsigned index, const void *config)
{
	const struct vmem_config *cfg = config;
	uint64_t region = vm->cfg ? vmem_mem_region(vm->cfg, cfg) : vm->mem.hp_size;
	struct vmem *v;
	int ret;

	(void)index;
	if (!region || region != vm->mem.hp_size || cfg->max_mib % 2) {
		log_err("virtio-mem: max_mib %llu must be a multiple of 2 above the VM's memory (%llu MiB)",
			(unsigned long long)cfg->max_mib,
			(unsigned long long)((vm->mem.size - vm->mem.hp_size) >> 20));
		return -EINVAL;
	}
	if (MiB(cfg->requested_mib) > region || cfg->requested_mib % 2) {
		log_err("virtio-mem: requested_mib %llu must be a multiple of 2 from 0 to %llu",
			(unsigned long long)cfg->requested_mib, (unsigned long long)(region >> 20));
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		log_err("virtio-mem: out of memory");
		return -ENOMEM;
	}
	ret = virtio_dev_init(&v->vd, &vmem_device_ops, &vmem_ops, "virtio-mem", VIRTIO_ID_MEM, 0,
			      devtype_virtio_mem.nr_queues, VMEM_QUEUE_SIZE);
	v->vm = vm;
	v->blk.addr = vm->mem.hp_base;
	v->blk.block_size = VMEM_BLOCK_SIZE;
	v->blk.nblocks = v->blk.usable_blocks = region / VMEM_BLOCK_SIZE;
	v->blk.requested = MiB(cfg->requested_mib) / VMEM_BLOCK_SIZE;
	v->blk.map = calloc((v->blk.nblocks + 63) / 64, 8);
	v->chain = malloc(sizeof(*v->chain));
	v->region_off = vm->mem.low_size + vm->mem.high_size;
	if (ret || !v->chain || !v->blk.map) {
		ret = ret ? ret : -ENOMEM;
		log_err("virtio-mem: cannot initialise: %s", strerror(-ret));
		virtio_dev_destroy(&v->vd.dev);
		return ret;
	}
	vm->mem.hp_block = VMEM_BLOCK_SIZE;
	__atomic_store_n(&vm->mem.hp_plugged, v->blk.map, __ATOMIC_RELEASE);
	v->vd.config_len = sizeof(struct virtio_mem_config);
	v->vd.config_volatile = true; /* vmem_load restores the sizes */
	vmem_config_update(v, false);
	snprintf(v->vd.dev.id, sizeof(v->vd.dev.id), "vmem0");
	return vm_add_device(vm, &v->vd.dev);
}

static const struct conf_key vmem_keys[] = {
	{ .name = "max_mib", .type = CONF_UINT, .flags = CONF_REQUIRED,
	  .offset = offsetof(struct vmem_config, max_mib),
	  .size = CONF_KEY_SIZE(struct vmem_config, max_mib), .min = 4, .max = 1ULL << 24,
	  .syntax = "max_mib=MIB" },
	{ .name = "requested_mib", .type = CONF_UINT,
	  .offset = offsetof(struct vmem_config, requested_mib),
	  .size = CONF_KEY_SIZE(struct vmem_config, requested_mib), .min = 0, .max = 1ULL << 24,
	  .syntax = "requested_mib=MIB" },
};

static const struct conf_schema vmem_schema = {
	.name = "virtio-mem", .keys = vmem_keys, .nr_keys = ARRAY_SIZE(vmem_keys),
};

extern const struct devtype_command vmem_commands[];
json_t *vmem_status_json(struct vm *vm);

const struct device_type devtype_virtio_mem = {
	.name = "virtio-mem",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = 1,
	.nr_queues = 1,
	.gsis = 1,
	.mmio_windows = 1,
	.create = vmem_create,
	.config_schema = &vmem_schema,
	.config_size = sizeof(struct vmem_config),
	.commands = vmem_commands,
	.status_key = "virtio_mem",
	.status = vmem_status_json,
	.mem_region = vmem_mem_region,
};
