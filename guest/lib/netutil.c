/* netutil.c: the test guests' shared network helpers (see netutil.h). */
#include "netutil.h"

uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += be16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

void netdev_open(struct netdev *nd, const char *who, const uint8_t def_mac[6])
{
	nd->who = who;
	if (!virtio_find(VIRTIO_ID_NET, 0, &nd->dev))
		fail("no virtio-net device on the command line ('%s')", cmdline());
	virtio_begin(&nd->dev, 1ull << VIRTIO_NET_F_MAC);
	if (nd->dev.features & (1ull << VIRTIO_NET_F_MAC)) {
		for (int i = 0; i < 6; i++)
			nd->mac[i] = virtio_cfg8(&nd->dev, (uint32_t)i);
	} else {
		memcpy(nd->mac, def_mac, 6);
	}
	virtq_init(&nd->rx, &nd->dev, 0, 64);
	virtq_init(&nd->tx, &nd->dev, 1, 64);
	nd->txbuf = mem_alloc(BUF_SIZE, 64);
	uint8_t *rxbufs = mem_alloc((uint64_t)RX_BUFS * BUF_SIZE, 4096);
	for (int i = 0; i < RX_BUFS; i++)
		netdev_rx_post(nd, rxbufs + i * BUF_SIZE);
	virtio_driver_ok(&nd->dev);
	virtq_kick(&nd->rx);
}

void netdev_rx_post(struct netdev *nd, uint8_t *buf)
{
	struct vq_buf b = { buf, BUF_SIZE, true };
	if (!virtq_add(&nd->rx, &b, 1, buf))
		fail("%s: rx queue full", nd->who);
}

void netdev_send(struct netdev *nd, const uint8_t *frame, size_t len)
{
	memset(nd->txbuf, 0, NET_HDR_LEN);
	memcpy(nd->txbuf + NET_HDR_LEN, frame, len);
	struct vq_buf b = { nd->txbuf, (uint32_t)(NET_HDR_LEN + len), false };
	if (!virtq_add(&nd->tx, &b, 1, nd->txbuf))
		fail("%s: tx queue full", nd->who);
	virtq_kick(&nd->tx);
	virtq_wait(&nd->tx, NULL, 5000);
}

void netdev_rx(struct netdev *nd, void (*handle)(void *ctx, const uint8_t *f, uint32_t len),
	       void *ctx)
{
	uint32_t len;
	void *cookie;
	bool posted = false;
	while (virtq_get(&nd->rx, &len, &cookie)) {
		uint8_t *buf = cookie;
		if (len > NET_HDR_LEN)
			handle(ctx, buf + NET_HDR_LEN, len - NET_HDR_LEN);
		netdev_rx_post(nd, buf);
		posted = true;
	}
	if (posted)
		virtq_kick(&nd->rx);
}

void netdev_send_arp(struct netdev *nd, uint16_t op, const uint8_t *dst_mac, const uint8_t *tpa)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[60] = { 0 };
	memcpy(f, op == 1 ? bcast : dst_mac, 6);
	memcpy(f + 6, nd->mac, 6);
	put16(f + 12, ETH_ARP);
	uint8_t *a = f + 14;
	put16(a, 1);		/* Ethernet */
	put16(a + 2, ETH_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, nd->mac, 6);
	memcpy(a + 14, nd->ip, 4);
	if (op == 2)
		memcpy(a + 18, dst_mac, 6);
	memcpy(a + 24, tpa, 4);
	netdev_send(nd, f, sizeof(f));
}
