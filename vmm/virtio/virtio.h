/* virtio.h: the virtio devices a VM can have, each on its own virtio-mmio
 * window (see docs/virtio.md).
 *
 * Each create function allocates the device and adds it to the VM with
 * vm_add_device(); realize then claims an MMIO window and a GSI, registers
 * the bus handler, one ioeventfd per queue, the irqfd and the I/O-thread
 * watchers, and announces the device on the kernel command line
 * ("virtio_mmio.device=4K@BASE:GSI"). Call them after vm_create() and before
 * the vCPUs run. On failure they log one line naming the device and the
 * cause and return -errno; the VM is left without the device.
 */
#pragma once
#include "compiler.h"

struct vm;
struct disk_config;
struct net_config;

/* virtio-blk on a disk image through the disk library (raw file or block
 * device, qcow2 with its backing chain; docs/storage.md), with the
 * configuration's QoS limits and change tracking. The image is opened
 * read-only and locked shared for read-only disks, read-write and locked
 * exclusively otherwise: -EBUSY when another process holds the image.
 * `index` names the device ("virtio-blk<index>") and its default serial. */
int virtio_blk_create(struct vm *vm, const struct disk_config *cfg, unsigned index) __must_check;

/* virtio-net on the host tap interface cfg->tap (IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR). The MAC is cfg->mac, or derived from the tap name. */
int virtio_net_create(struct vm *vm, const struct net_config *cfg, unsigned index) __must_check;
/* After an incoming migration: announce every NIC's guest (RARP, a
 * gratuitous ARP when known, VIRTIO_NET_S_ANNOUNCE where negotiated). */
void virtio_net_announce(struct vm *vm);

/* virtio-rng fed by getrandom(). */
int virtio_rng_create(struct vm *vm) __must_check;
