/* fuzzdrv.h: the virtio-mmio driver steps the virtio device fuzz targets
 * share (fuzz_balloon.c, fuzz_vmem.c, fuzz_vsock.c). */
#ifndef CELLA_FUZZ_VIRTIO_FUZZDRV_H
#define CELLA_FUZZ_VIRTIO_FUZZDRV_H

#include <stddef.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "vm.h"

/* A 32-bit write to the device's register at off. */
void fuzz_reg(struct vm *vm, struct virtio_dev *vd, uint64_t off, uint32_t val);

/* Copies data[pos, size) into guest memory at ring_base, at most up to
 * ram_size. */
void fuzz_fill(struct vm *vm, uint32_t ring_base, uint32_t ram_size,
	       const uint8_t *data, size_t pos, size_t size);

/* Resets the device and drives it to DRIVER_OK: VERSION_1 plus, where
 * features_lo >= 0, those low feature bits; nq queues of 8 entries, queue
 * q's descriptor table at ring_base + q * 0x1000, avail ring at +0x400,
 * used ring at +0x800. */
void fuzz_drv_start(struct vm *vm, struct virtio_dev *vd, int64_t features_lo, unsigned nq,
		    uint32_t ring_base);

/* Saves the device's state and loads it back; aborts on any failure. */
void fuzz_save_load(struct virtio_dev *vd);

#endif
