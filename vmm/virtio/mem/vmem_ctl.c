/* vmem_ctl.c: virtio-mem's control-socket command (virtio-mem-set), its
 * member of the worker's status, and its section of the saved state. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devtype.h"
#include "log.h"
#include "state/state.h"
#include "virtio/mem/vmem.h"
#include "vm.h"

#define VMEM_STATE_VERSION 1

static struct vmem *vmem_find(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->type, "virtio-mem"))
			return vmem_of(virtio_dev_of(d));
	return NULL;
}

/* Status member; vd->lock held. Sizes in MiB and bytes. */
static json_t *vmem_json(struct vmem *v)
{
	const struct vmem_blocks *b = &v->blk;
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			      "region_mib", (json_int_t)(b->nblocks * b->block_size >> 20),
			      "requested_mib", (json_int_t)(b->requested * b->block_size >> 20),
			      "plugged_mib", (json_int_t)(b->plugged * b->block_size >> 20),
			      "usable_mib", (json_int_t)(b->usable_blocks * b->block_size >> 20),
			      "block_size", (json_int_t)b->block_size,
			      "addr", (json_int_t)b->addr,
			      "plugged_bytes", (json_int_t)(b->plugged * b->block_size));

	if (!o)
		return json_null();
	json_object_set_new(o, "requests",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "plug", (json_int_t)v->plugs, "unplug", (json_int_t)v->unplugs,
				      "unplug_all", (json_int_t)v->unplug_alls,
				      "state", (json_int_t)v->states, "nack", (json_int_t)v->nacks,
				      "error", (json_int_t)v->errors,
				      "discard_errors", (json_int_t)v->discard_errors));
	return o;
}

json_t *vmem_status_json(struct vm *vm);
json_t *vmem_status_json(struct vm *vm)
{
	struct vmem *v = vmem_find(vm);
	json_t *o;

	if (!v)
		return json_null();
	pthread_mutex_lock(&v->vd.lock);
	o = vmem_json(v);
	pthread_mutex_unlock(&v->vd.lock);
	return o;
}

/* {"cmd": "virtio-mem-set", "requested_mib": N}: how much of the region
 * the guest should have plugged, 0 to the region's size, in whole blocks.
 * The driver plugs or unplugs towards it on its own time; the reply holds
 * the state at the moment of the request. */
static json_t *cmd_vmem_set(struct vm *vm, json_t *req, int fd)
{
	struct vmem *v = vmem_find(vm);
	json_t *n = json_object_get(req, "requested_mib"), *rep;
	uint64_t max, mib;

	(void)fd;
	if (!v)
		return devtype_cmd_error("virtio-mem-set: the VM has no virtio-mem device");
	max = v->blk.nblocks * v->blk.block_size >> 20;
	if (!json_is_integer(n) || json_integer_value(n) < 0 ||
	    (uint64_t)json_integer_value(n) > max)
		return devtype_cmd_error("virtio-mem-set: requested_mib: expected an integer from 0 to %llu (the hot-pluggable region in MiB)",
				(unsigned long long)max);
	mib = (uint64_t)json_integer_value(n);
	if (MiB(mib) % v->blk.block_size)
		return devtype_cmd_error("virtio-mem-set: requested_mib: %llu is not a multiple of the block size (%llu MiB)",
				(unsigned long long)mib,
				(unsigned long long)(v->blk.block_size >> 20));
	pthread_mutex_lock(&v->vd.lock);
	v->blk.requested = MiB(mib) / v->blk.block_size;
	vmem_config_update(v, true);
	log_info("%s: requested size set to %llu MiB", v->vd.name, (unsigned long long)mib);
	rep = json_pack("{s:b, s:o}", "ok", 1, "virtio_mem", vmem_json(v));
	pthread_mutex_unlock(&v->vd.lock);
	return rep;
}

const struct devtype_command vmem_commands[] = {
	{ "virtio-mem-set", cmd_vmem_set, 0 },
	{ NULL, NULL, 0 },
};

/* The bitmap as 64-bit little-endian words (independent of the host's long). */
int vmem_save(struct virtio_dev *vd, struct state_writer *w)
{
	struct vmem *v = vmem_of(vd);
	const struct vmem_blocks *b = &v->blk;

	state_put_u32(w, VMEM_STATE_VERSION);
	state_put_u64(w, b->block_size);
	state_put_u64(w, b->addr);
	state_put_u64(w, b->nblocks);
	state_put_u64(w, b->usable_blocks);
	state_put_u64(w, b->requested);
	state_put_u64(w, v->plugs);
	state_put_u64(w, v->unplugs);
	state_put_u64(w, v->unplug_alls);
	state_put_u64(w, v->states);
	state_put_u64(w, v->nacks);
	state_put_u64(w, v->errors);
	state_put_u64(w, v->discard_errors);
	for (uint64_t i = 0; i < (b->nblocks + 63) / 64; i++) {
		uint64_t word = 0;

		for (unsigned j = 0; j < 64 && i * 64 + j < b->nblocks; j++)
			word |= (uint64_t)vmem_block_plugged(b, i * 64 + j) << j;
		state_put_u64(w, word);
	}
	return 0;
}

int vmem_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct vmem *v = vmem_of(vd);
	struct vmem_blocks *b = &v->blk;
	uint64_t bs, addr, nblocks, usable, requested;

	if (state_get_u32(r) != VMEM_STATE_VERSION)
		return -EINVAL;
	bs = state_get_u64(r);
	addr = state_get_u64(r);
	nblocks = state_get_u64(r);
	usable = state_get_u64(r);
	requested = state_get_u64(r);
	if (state_reader_error(r) || bs != b->block_size || addr != b->addr ||
	    nblocks != b->nblocks || usable > nblocks || requested > nblocks) {
		log_err("%s: the saved virtio-mem region (%llu blocks of %llu bytes at 0x%llx) does not match this VM's (%llu at 0x%llx)",
			vd->name, (unsigned long long)nblocks, (unsigned long long)bs,
			(unsigned long long)addr, (unsigned long long)b->nblocks,
			(unsigned long long)b->addr);
		return -EINVAL;
	}
	v->plugs = state_get_u64(r);
	v->unplugs = state_get_u64(r);
	v->unplug_alls = state_get_u64(r);
	v->states = state_get_u64(r);
	v->nacks = state_get_u64(r);
	v->errors = state_get_u64(r);
	v->discard_errors = state_get_u64(r);
	for (uint64_t i = 0; i < (nblocks + 63) / 64; i++) {
		uint64_t word = state_get_u64(r);

		for (unsigned j = 0; j < 64 && i * 64 + j < nblocks; j++) {
			uint64_t blk = i * 64 + j;
			unsigned long bit = 1UL << (blk % (8 * sizeof(long)));

			if ((word >> j) & 1)
				__atomic_fetch_or(&b->map[blk / (8 * sizeof(long))], bit,
						  __ATOMIC_RELEASE);
			else
				__atomic_fetch_and(&b->map[blk / (8 * sizeof(long))], ~bit,
						   __ATOMIC_RELEASE);
		}
	}
	if (state_reader_error(r))
		return -EINVAL;
	b->usable_blocks = usable;
	b->requested = requested;
	b->plugged = vmem_count_plugged(b);
	vmem_config_update(v, false);
	return 0;
}
