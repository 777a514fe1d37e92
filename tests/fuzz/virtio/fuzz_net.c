/* fuzz_net.c: virtio-net's receive, transmit and control paths against
 * guest-written rings and buffers, with frames from the back end (a
 * socketpair that passes vnet headers untouched, so rx headers are
 * fuzzed too). The driver side is programmed properly (the register file
 * has its own fuzzer); what the guest controls is everything in RAM: ring
 * indices, descriptor chains that lie about length, vnet headers, control
 * requests. Must never crash, hang or touch memory outside guest RAM.
 *
 * Input: [0] features: bit 0 CSUM/GUEST_CSUM, bit 1 TSO4/6 both ways,
 *            bit 2 MRG_RXBUF, bit 3 access VLAN 5, bit 4 trunk, bit 5
 *            ECN and UFO, bit 6 GUEST_ANNOUNCE (and an announce at the end),
 *            bit 7 two queue pairs (MQ: rx1/tx1 at 0x6000/0x9000, control
 *            queue 4 at 0xc000; frames go to pair 1's back end as well)
 *        [1] K: frames from the back end (at most 16)
 *        K x { LE u16 length, bytes (a vnet header, then the frame) }
 *        the rest: guest RAM from address 0. Queues of 16 entries:
 *        rx desc 0x0000 avail 0x1000 used 0x2000, tx 0x3000/0x4000/0x5000,
 *        ctrl 0x6000/0x7000/0x8000; buffers anywhere.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>

#include "config.h"
#include "virtio/mmio.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"
#include "vm.h"

#define RAM_SIZE (2u << 20)
#define B(x) (1ULL << (x))

static void reg(struct vm *vm, struct virtio_dev *vd, uint64_t off, uint32_t val)
{
	uint8_t buf[4];

	memcpy(buf, &val, 4);
	bus_dispatch(&vm->mmio, vd->base + off, buf, 4, true);
}

static uint64_t features_of(uint8_t sel)
{
	uint64_t f = B(VIRTIO_F_VERSION_1) | B(VIRTIO_NET_F_MAC) | B(VIRTIO_NET_F_STATUS) |
		     B(VIRTIO_NET_F_MTU) | B(VIRTIO_NET_F_CTRL_VQ) | B(VIRTIO_RING_F_EVENT_IDX);

	if (sel & 1)
		f |= B(VIRTIO_NET_F_CSUM) | B(VIRTIO_NET_F_GUEST_CSUM);
	if (sel & 2)
		f |= B(VIRTIO_NET_F_HOST_TSO4) | B(VIRTIO_NET_F_HOST_TSO6) |
		     B(VIRTIO_NET_F_GUEST_TSO4) | B(VIRTIO_NET_F_GUEST_TSO6);
	if (sel & 4)
		f |= B(VIRTIO_NET_F_MRG_RXBUF);
	if (sel & 32)
		f |= B(VIRTIO_NET_F_HOST_ECN) | B(VIRTIO_NET_F_GUEST_ECN) |
		     B(VIRTIO_NET_F_HOST_UFO) | B(VIRTIO_NET_F_GUEST_UFO);
	if (sel & 64)
		f |= B(VIRTIO_NET_F_GUEST_ANNOUNCE);
	if (sel & 128)
		f |= B(VIRTIO_NET_F_MQ);
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm vm;
	struct net_config cfg = { .tap = "fuzz0" };
	struct virtio_dev *vd;
	uint64_t f;
	size_t pos = 2;
	unsigned k;
	int sv[2], sv2[2] = { -1, -1 }, fds[2], big = 1 << 20;
	bool mq;
	static uint8_t drain[NET_HDR_LEN + NET_GSO_MAX + 64];

	if (size < 2)
		return 0;
	f = features_of(data[0]);
	cfg.vlan = (data[0] & 8) ? 5 : 0;
	cfg.vlan_trunk = data[0] & 16;
	k = data[1] % 17;
	mq = data[0] & 128;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		abort();
	if (mq && (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv2) ||
		   fcntl(sv2[0], F_SETFL, O_NONBLOCK) || fcntl(sv2[1], F_SETFL, O_NONBLOCK)))
		abort();
	fds[0] = sv[0];
	fds[1] = sv2[0];
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) || fcntl(sv[1], F_SETFL, O_NONBLOCK))
		abort();
	if (vm_create_test(&vm, RAM_SIZE))
		abort();
	if (virtio_net_create_be(&vm, &cfg, 0, fds, mq ? 2 : 1,
				 NET_BE_TUN_CSUM | NET_BE_TUN_TSO4 | NET_BE_TUN_TSO6 |
					 NET_BE_TUN_ECN | NET_BE_TUN_UFO, false))
		abort();
	vd = virtio_dev_of(vm.devices_tail);

	for (unsigned i = 0; i < k && pos + 2 <= size; i++) {
		size_t len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;

		pos += 2;
		if (len > size - pos)
			len = size - pos;
		/* A full socket just drops the rest, as a busy tap would. */
		if (send(mq && (i & 1) ? sv2[1] : sv[1], data + pos, len, MSG_DONTWAIT) < 0 && len)
			break;
		pos += len;
	}
	if (size > pos)
		memcpy(vm.mem.host, data + pos, size - pos < RAM_SIZE ? size - pos : RAM_SIZE);

	reg(&vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	reg(&vm, vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	reg(&vm, vd, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	reg(&vm, vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg(&vm, vd, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	reg(&vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					 VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		uint64_t base = 0x3000ULL * q;

		reg(&vm, vd, VIRTIO_MMIO_QUEUE_SEL, q);
		reg(&vm, vd, VIRTIO_MMIO_QUEUE_NUM, 16);
		reg(&vm, vd, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)base);
		reg(&vm, vd, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(base + 0x1000));
		reg(&vm, vd, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(base + 0x2000));
		reg(&vm, vd, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	reg(&vm, vd, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);

	/* The control queue first (it may enable pair 1), then every queue. */
	virtio_dev_process(vd, vd->nr_queues - 1);
	for (unsigned q = 0; q + 1 < vd->nr_queues; q++)
		virtio_dev_process(vd, q);
	for (unsigned q = 0; q + 1 < vd->nr_queues; q += 2)
		virtio_dev_process(vd, q); /* rx again: buffers the first pass gave back */
	if (data[0] & 64)
		virtio_net_announce(&vm);
	while (recv(sv[1], drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	vm_destroy(&vm);
	close(sv[1]);
	if (sv2[1] >= 0)
		close(sv2[1]);
	return 0;
}
