/* fuzzdrv.c: the virtio-mmio driver steps the virtio device fuzz targets
 * share (see fuzzdrv.h). */
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "state/state.h"
#include "fuzzdrv.h"

void fuzz_reg(struct vm *vm, struct virtio_dev *vd, uint64_t off, uint32_t val)
{
	uint8_t buf[4];

	memcpy(buf, &val, 4);
	bus_dispatch(&vm->mmio, vd->base + off, buf, 4, true);
}

void fuzz_fill(struct vm *vm, uint32_t ring_base, uint32_t ram_size,
	       const uint8_t *data, size_t pos, size_t size)
{
	memcpy(vm->mem.host + ring_base, data + pos,
	       size - pos < ram_size - ring_base ? size - pos : ram_size - ring_base);
}

void fuzz_drv_start(struct vm *vm, struct virtio_dev *vd, int64_t features_lo, unsigned nq,
		    uint32_t ring_base)
{
	fuzz_reg(vm, vd, VIRTIO_MMIO_STATUS, 0);
	fuzz_reg(vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	if (features_lo >= 0) {
		fuzz_reg(vm, vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
		fuzz_reg(vm, vd, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features_lo);
	}
	fuzz_reg(vm, vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	fuzz_reg(vm, vd, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	fuzz_reg(vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		uint32_t base = ring_base + q * 0x1000;

		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_SEL, q);
		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_NUM, 8);
		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_DESC_LOW, base);
		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_AVAIL_LOW, base + 0x400);
		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_USED_LOW, base + 0x800);
		fuzz_reg(vm, vd, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	fuzz_reg(vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

void fuzz_save_load(struct virtio_dev *vd)
{
	struct state_writer w;
	struct state_reader r;

	state_writer_init(&w);
	if (vd->dev.ops->save(&vd->dev, &w) || state_writer_error(&w))
		abort();
	state_reader_init(&r, w.buf, w.len);
	if (vd->dev.ops->load(&vd->dev, &r))
		abort();
	state_writer_free(&w);
}
