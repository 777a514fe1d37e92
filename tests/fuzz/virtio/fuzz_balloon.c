/* fuzz_balloon.c: virtio-balloon request parsing, end to end. A driver
 * programmed here (features from the input, four queues of 8 entries at
 * fixed addresses) kicks the queues the input names, over guest memory the
 * input fills: PFN lists, statistics and reported ranges of any shape,
 * lying descriptors, rings that break the rules. Then the device's state is
 * saved and loaded back. The parsers also run directly on the input split
 * into segments. Must never crash, hang or touch memory outside guest RAM.
 *
 * Input: [0] features: bit 1 STATS_VQ, bit 2 DEFLATE_ON_OOM, bit 5 REPORTING
 *        [1] number of kicks K (low 5 bits); [2, 2 + K) queue of each kick
 *            (bit 7 of a kick byte: first ask for statistics; bit 6: first
 *            write the byte to config space offset (bits 2-5) * 4 - 2)
 *        then guest memory from RING_BASE: queue q's descriptor table at
 *        RING_BASE + q * 0x1000, avail ring at +0x400, used ring at +0x800.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"
#include "fuzzdrv.h"
#include "virtio/balloon/balloon.h"
#include "vm.h"

#define RAM_SIZE  (2u << 20)
#define RING_BASE 0x10000u

static void parse_direct(const uint8_t *data, size_t size)
{
	struct iovec iov[4];
	uint32_t pfns[64];
	struct balloon_stats st;
	size_t trailing, cut = size / 3;
	bool truncated;
	uint64_t s, l;

	iov[0] = (struct iovec){ (void *)data, cut };
	iov[1] = (struct iovec){ (void *)(data + cut), 0 };
	iov[2] = (struct iovec){ (void *)(data + cut), size - cut };
	balloon_parse_pfns(iov, 3, pfns, 64, &trailing, &truncated);
	balloon_parse_stats(iov, 3, &st);
	if (size >= 16) {
		uint64_t off, len;

		memcpy(&off, data, 8);
		memcpy(&len, data + 8, 8);
		balloon_range_align(off, len, &s, &l);
		if (l && (s % BALLOON_PAGE_SIZE || l % BALLOON_PAGE_SIZE || s < off))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct device_type *t = devtype_find("virtio-balloon");
	struct balloon_config cfg = { .stats = true, .deflate_on_oom = true,
				      .free_page_reporting = true, .target_mib = 1 };
	struct virtio_dev *vd;
	struct vm vm;
	unsigned nkick;
	size_t pos;

	if (size < 2)
		return 0;
	parse_direct(data, size);
	nkick = data[1] & 31;
	if (size < 2 + (size_t)nkick)
		return 0;
	if (!t || vm_create_test(&vm, RAM_SIZE) || t->create(&vm, 0, &cfg))
		abort();
	vd = virtio_dev_of(vm.devices_tail);
	pos = 2 + nkick;
	fuzz_fill(&vm, RING_BASE, RAM_SIZE, data, pos, size);
	fuzz_drv_start(&vm, vd, data[0] & 0x26, BALLOON_NR_QUEUES, RING_BASE);
	for (unsigned i = 0; i < nkick; i++) {
		uint8_t k = data[2 + i];

		if (k & 0x40) {
			uint8_t v[2] = { k, (uint8_t)~k };

			bus_dispatch(&vm.mmio, vd->base + VIRTIO_MMIO_CONFIG + ((k >> 2) & 15) * 4 - 2,
				     v, 2, true);
		}
		if (k & 0x80) {
			pthread_mutex_lock(&vd->lock);
			balloon_stats_request(balloon_of(vd));
			pthread_mutex_unlock(&vd->lock);
		}
		fuzz_reg(&vm, vd, VIRTIO_MMIO_QUEUE_NOTIFY, k & 3);
		virtio_dev_process(vd, k & 3);
	}
	json_decref(t->status(&vm));
	fuzz_save_load(vd);
	vm_destroy(&vm);
	return 0;
}
