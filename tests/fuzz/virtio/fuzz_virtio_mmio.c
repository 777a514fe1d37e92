/* fuzz_virtio_mmio.c: a sequence of MMIO register reads and writes against
 * a virtio-blk device on a 64 KiB in-memory image (or, when bit 7 of the
 * first byte is set, a virtio-console writing to /dev/null, created through
 * its registered type), with queue kicks processed synchronously. Must never crash, hang or touch memory outside
 * guest RAM, whatever the order of register accesses.
 *
 * Input: [0] bit 7: the device; bits 0-6: number of records N; then N
 *        records of 6 bytes:
 *          [op] bit 0: write, bit 1: 1-byte access (else 4), bit 2: config space
 *          [reg] register offset / 4
 *          [value] LE u32
 *        then guest memory contents from address 0 (rings and buffers).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "config.h"
#include "devtype.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vm.h"

#define RAM_SIZE (2u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm vm;
	struct disk_config cfg = { .readonly = false };
	struct virtio_dev *vd;
	char path[64];
	unsigned nrec;
	size_t pos;
	int fd;

	bool console;

	if (size < 1)
		return 0;
	console = data[0] & 0x80;
	nrec = data[0] & 0x7f;
	if (size < 1 + 6 * (size_t)nrec)
		nrec = (unsigned)((size - 1) / 6);
	fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 65536) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	cfg.path = path;
	if (vm_create_test(&vm, RAM_SIZE))
		abort();
	if (console) {
		const struct device_type *t = devtype_find("virtio-console");
		void *ccfg = calloc(1, t->config_size);
		struct conf_err e;

		if (!ccfg || conf_from_string(t->config_schema, ccfg, "path=/dev/null", &e) ||
		    t->create(&vm, 0, ccfg))
			abort();
		conf_free(t->config_schema, ccfg);
		free(ccfg);
	} else if (virtio_blk_create(&vm, &cfg, 0)) {
		abort();
	}
	vd = virtio_dev_of(vm.devices_tail);
	pos = 1 + 6 * (size_t)nrec;
	if (size > pos)
		memcpy(vm.mem.host, data + pos, size - pos < RAM_SIZE ? size - pos : RAM_SIZE);

	for (unsigned i = 0; i < nrec; i++) {
		const uint8_t *r = data + 1 + 6 * i;
		uint8_t buf[4];
		uint32_t val = (uint32_t)r[2] | r[3] << 8 | r[4] << 16 | (uint32_t)r[5] << 24;
		uint64_t off = (uint64_t)r[1] * 4 + ((r[0] & 4) ? VIRTIO_MMIO_CONFIG : 0);
		uint32_t len = (r[0] & 2) ? 1 : 4;
		bool write = r[0] & 1;

		memcpy(buf, &val, 4);
		bus_dispatch(&vm.mmio, vd->base + off, buf, len, write);
		if (write && off == VIRTIO_MMIO_QUEUE_NOTIFY)
			virtio_dev_process(vd, val % VIRTIO_MAX_QUEUES);
	}
	vm_destroy(&vm);
	close(fd);
	return 0;
}
