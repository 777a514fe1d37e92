/* fuzz_vmem.c: virtio-mem requests, end to end. The request parser and the
 * block state machine run on the input as a list of requests (checking
 * that the plugged count always matches the bitmap and that a plug never
 * passes the requested size); then a test VM with an 8 MiB hot-pluggable
 * region gets a driver programmed here (one queue of 8 entries) and the
 * input as guest memory: requests of any shape and lying descriptors,
 * kicked as many times as the input says, with virtio-mem-set in between.
 * Then the state is saved and loaded back. Must never crash, hang or touch
 * memory outside guest RAM.
 *
 * Input: [0] kicks K (low 4 bits), bit 4-7: requested size for the
 *            state machine, in blocks
 *        [1, 1 + K) per kick: bits 0-2 the new requested size (blocks)
 *        then guest memory from RING_BASE: descriptor table at RING_BASE,
 *        avail ring at +0x400, used ring at +0x800, buffers anywhere.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_mmio.h>

#include "devtype.h"
#include "fuzzdrv.h"
#include "virtio/mem/vmem.h"
#include "vm.h"

#define RAM_SIZE  (4u << 20)
#define REGION    (8u << 20)
#define RING_BASE 0x10000u

/* The input as 24-byte requests (addresses folded near the region). */
static void state_machine(const uint8_t *data, size_t size)
{
	unsigned long map[1] = { 0 };
	struct vmem_blocks b = { .addr = 1ULL << 32, .block_size = VMEM_BLOCK_SIZE, .nblocks = 16,
				 .usable_blocks = 16, .requested = data[0] >> 4, .map = map };

	for (size_t off = 1; off + 24 <= size; off += 24) {
		struct iovec iov[2] = { { (void *)(data + off), data[off + 23] % 25 },
					{ (void *)(data + off + data[off + 23] % 25), 0 } };
		struct vmem_request r;
		struct vmem_effect fx;
		const char *why;
		uint16_t st, resp;
		uint64_t before = b.plugged;

		iov[1].iov_len = 24 - iov[0].iov_len;
		if (vmem_parse_request(iov, 2, &r))
			continue;
		r.type &= 7;
		r.addr = b.addr + (r.addr % (20 * VMEM_BLOCK_SIZE)) - 2 * VMEM_BLOCK_SIZE;
		resp = vmem_handle(&b, &r, &st, &fx, &why);
		if (b.plugged != vmem_count_plugged(&b) || resp > VIRTIO_MEM_RESP_ERROR ||
		    (r.type == VIRTIO_MEM_REQ_PLUG && b.plugged > before && b.plugged > b.requested) ||
		    fx.first + fx.count > b.nblocks)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct device_type *t = devtype_find("virtio-mem");
	struct vmem_config cfg = { .max_mib = (RAM_SIZE + REGION) >> 20, .requested_mib = 4 };
	struct virtio_dev *vd;
	struct vm vm;
	unsigned nkick;
	size_t pos;

	if (size < 1)
		return 0;
	state_machine(data, size);
	nkick = data[0] & 15;
	if (size < 1 + (size_t)nkick)
		return 0;
	if (!t || vm_create_test(&vm, RAM_SIZE + REGION) ||
	    guest_mem_set_hotplug(&vm.mem, REGION) || t->create(&vm, 0, &cfg))
		abort();
	vd = virtio_dev_of(vm.devices_tail);
	pos = 1 + nkick;
	fuzz_fill(&vm, RING_BASE, RAM_SIZE, data, pos, size);
	fuzz_drv_start(&vm, vd, -1, 1, RING_BASE);
	for (unsigned i = 0; i < nkick; i++) {
		char req[64];
		json_t *j, *rep;

		snprintf(req, sizeof(req), "{\"requested_mib\": %u}", (data[1 + i] & 7) * 2);
		j = json_loads(req, 0, NULL);
		rep = t->commands[0].run(&vm, j, -1);
		json_decref(rep);
		json_decref(j);
		fuzz_reg(&vm, vd, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		virtio_dev_process(vd, 0);
		pthread_mutex_lock(&vd->lock);
		if (vmem_of(vd)->blk.plugged != vmem_count_plugged(&vmem_of(vd)->blk))
			abort();
		pthread_mutex_unlock(&vd->lock);
	}
	json_decref(t->status(&vm));
	fuzz_save_load(vd);
	vm_destroy(&vm);
	return 0;
}
