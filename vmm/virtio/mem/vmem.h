/* vmem.h: virtio-mem (device id 24), shared by its files.
 *
 * The device manages a region of guest-physical memory above RAM (and
 * above the MMIO hole): guest_mem's hot-pluggable region (mem.h), which
 * the core reserved from the device's max_mib before any device existed
 * (devtype mem_region) and registered as its own KVM slot. The region is
 * always mapped; which of its 2 MiB blocks are plugged is this device's
 * bitmap, which guest_mem_ptr consults so that device DMA reaches only
 * plugged memory. An unplugged block is punched out of the memfd
 * (guest_mem_discard), so the host gets its pages back.
 *
 * One queue (guestq): requests are parsed and answered by vmem_req.c.
 * Config space (struct virtio_mem_config): the host changes
 * requested_size (virtio-mem-set) and raises a configuration change
 * interrupt; plugged_size follows each request, without an interrupt.
 * usable_region_size is the whole region. No features are offered
 * (ACPI_PXM: no NUMA; UNPLUGGED_INACCESSIBLE: unplugged memory stays
 * mapped, reads of it are harmless).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "virtio/mem/vmem_req.h"
#include "virtio/mmio.h"

#define VMEM_QUEUE_SIZE 128
#define VMEM_WARN_MAX   32

struct vmem_config {
	uint64_t max_mib;       /* the VM's memory with all of the region plugged */
	uint64_t requested_mib; /* hot-plugged memory asked for at start */
};

struct vmem {
	struct virtio_dev vd;   /* first: the transport frees it */
	struct vm *vm;
	struct virtq_chain *chain;
	struct vmem_blocks blk;
	uint64_t region_off;    /* the region's byte offset in the host mapping */
	/* Counters since the worker started (kept by save/load). */
	uint64_t plugs, unplugs, unplug_alls, states; /* ACKed requests */
	uint64_t nacks, errors, discard_errors;
	unsigned warned;
};

static inline struct vmem *vmem_of(struct virtio_dev *vd)
{
	return container_of(vd, struct vmem, vd);
}

/* Write the config space from the state (lock held); notify: raise the
 * configuration change interrupt (requested_size changed). */
void vmem_config_update(struct vmem *v, bool notify);

/* vmem_ctl.c */
int vmem_save(struct virtio_dev *vd, struct state_writer *w);
int vmem_load(struct virtio_dev *vd, struct state_reader *r);
