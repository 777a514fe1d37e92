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

bool parse_ip4(const char *s, uint8_t ip[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned v = 0, digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4)
			v = v * 10 + (unsigned)(*s++ - '0'), digits++;
		if (!digits || v > 255 || (i < 3 && *s++ != '.'))
			return false;
		ip[i] = (uint8_t)v;
	}
	return *s == '\0';
}

/* virtio_net_config: mac[6], status, max_virtqueue_pairs. */
#define NET_CFG_MAX_PAIRS 8
#define CTRL_MQ 4
#define CTRL_MQ_VQ_PAIRS_SET 0
#define CTRL_OK 0

static void rx_post(struct netdev *nd, unsigned p, uint8_t *buf)
{
	struct vq_buf b = { buf, BUF_SIZE, true };
	if (!virtq_add(&nd->pair[p].rx, &b, 1, buf))
		fail("%s: rx queue of pair %u full", nd->who, p);
}

/* The queues of pairs [0, nd->pairs), their buffers posted. */
static void pairs_init(struct netdev *nd)
{
	for (unsigned p = 0; p < nd->pairs; p++) {
		struct netpair *np = &nd->pair[p];

		virtq_init(&np->rx, &nd->dev, (uint16_t)(2 * p), 64);
		virtq_init(&np->tx, &nd->dev, (uint16_t)(2 * p + 1), 64);
		np->txbuf = mem_alloc(BUF_SIZE, 64);
		uint8_t *rxbufs = mem_alloc((uint64_t)RX_BUFS * BUF_SIZE, 4096);
		for (int i = 0; i < RX_BUFS; i++)
			rx_post(nd, p, rxbufs + i * BUF_SIZE);
	}
}

static void read_mac(struct netdev *nd, const uint8_t def_mac[6])
{
	if (nd->dev.features & (1ull << VIRTIO_NET_F_MAC)) {
		for (int i = 0; i < 6; i++)
			nd->mac[i] = virtio_cfg8(&nd->dev, (uint32_t)i);
	} else {
		memcpy(nd->mac, def_mac, 6);
	}
}

static void start(struct netdev *nd)
{
	virtio_driver_ok(&nd->dev);
	for (unsigned p = 0; p < nd->pairs; p++)
		virtq_kick(&nd->pair[p].rx);
}

void netdev_open(struct netdev *nd, const char *who, const uint8_t def_mac[6])
{
	nd->who = who;
	if (!virtio_find(VIRTIO_ID_NET, 0, &nd->dev))
		fail("no virtio-net device on the command line ('%s')", cmdline());
	virtio_begin(&nd->dev, 1ull << VIRTIO_NET_F_MAC);
	read_mac(nd, def_mac);
	nd->pairs = nd->max_pairs = 1;
	pairs_init(nd);
	start(nd);
}

/* VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (virtio 1.x 5.1.6.5.5): class and
 * command, the pair count (le16), and the device's ack. */
static void set_pairs(struct netdev *nd, unsigned n)
{
	uint8_t *b = mem_alloc(64, 64);
	uint8_t *cmd = b, *data = b + 8, *ack = b + 16;
	struct vq_buf bufs[3] = { { cmd, 2, false }, { data, 2, false }, { ack, 1, true } };
	uint32_t len = 0;

	cmd[0] = CTRL_MQ;
	cmd[1] = CTRL_MQ_VQ_PAIRS_SET;
	data[0] = (uint8_t)n;
	data[1] = (uint8_t)(n >> 8);
	*(volatile uint8_t *)ack = 0xff;
	if (!virtq_add(&nd->ctrl, bufs, 3, b))
		fail("%s: control queue full", nd->who);
	virtq_kick(&nd->ctrl);
	virtq_wait(&nd->ctrl, &len, 5000);
	if (len < 1 || *(volatile uint8_t *)ack != CTRL_OK)
		fail("%s: VQ_PAIRS_SET %u not acknowledged (used length %u, ack %u)", nd->who, n,
		     len, *(volatile uint8_t *)ack);
}

void netdev_open_mq(struct netdev *nd, const char *who, const uint8_t def_mac[6], unsigned want)
{
	const uint64_t mq = 1ull << VIRTIO_NET_F_MQ, ctrl = 1ull << VIRTIO_NET_F_CTRL_VQ;

	nd->who = who;
	if (!virtio_find(VIRTIO_ID_NET, 0, &nd->dev))
		fail("no virtio-net device on the command line ('%s')", cmdline());
	virtio_begin(&nd->dev, (1ull << VIRTIO_NET_F_MAC) | mq | ctrl);
	if ((nd->dev.features & mq) && !(nd->dev.features & ctrl))
		fail("%s: the device offers MQ without CTRL_VQ (features 0x%lx)", who,
		     nd->dev.features);
	read_mac(nd, def_mac);
	nd->max_pairs = 1;
	if (nd->dev.features & mq) {
		nd->max_pairs = virtio_cfg16(&nd->dev, NET_CFG_MAX_PAIRS);
		/* The spec's range: 1 to 0x8000. */
		if (nd->max_pairs < 1 || nd->max_pairs > 0x8000)
			fail("%s: max_virtqueue_pairs %u out of range 1..32768", who,
			     nd->max_pairs);
	}
	nd->pairs = want && want < nd->max_pairs ? want : nd->max_pairs;
	if (nd->pairs > NETDEV_MAX_PAIRS)
		nd->pairs = NETDEV_MAX_PAIRS;
	pairs_init(nd);
	if (nd->dev.features & ctrl)	/* after the last pair's queues; 2 without MQ */
		virtq_init(&nd->ctrl, &nd->dev, (uint16_t)(2 * nd->max_pairs), 16);
	start(nd);
	if (nd->pairs > 1) {
		set_pairs(nd, nd->pairs);
		/* Buffers posted before the pairs were in use may have gone
		 * unseen (a device may ignore kicks of unused pairs): kick
		 * again, as Linux's driver refills after VQ_PAIRS_SET. */
		for (unsigned p = 1; p < nd->pairs; p++)
			virtq_kick(&nd->pair[p].rx);
	}
}

void netdev_send_on(struct netdev *nd, unsigned p, const uint8_t *frame, size_t len)
{
	struct netpair *np = &nd->pair[p < nd->pairs ? p : 0];

	if (len + NET_HDR_LEN > BUF_SIZE)
		fail("%s: frame of %zu bytes too long", nd->who, len);
	memset(np->txbuf, 0, NET_HDR_LEN);
	memcpy(np->txbuf + NET_HDR_LEN, frame, len);
	struct vq_buf b = { np->txbuf, (uint32_t)(NET_HDR_LEN + len), false };
	if (!virtq_add(&np->tx, &b, 1, np->txbuf))
		fail("%s: tx queue full", nd->who);
	virtq_kick(&np->tx);
	virtq_wait(&np->tx, NULL, 5000);
	np->tx_frames++;
}

void netdev_send(struct netdev *nd, const uint8_t *frame, size_t len)
{
	netdev_send_on(nd, 0, frame, len);
}

void netdev_rx(struct netdev *nd, void (*handle)(void *ctx, const uint8_t *f, uint32_t len),
	       void *ctx)
{
	for (unsigned p = 0; p < nd->pairs; p++) {
		struct netpair *np = &nd->pair[p];
		uint32_t len;
		void *cookie;
		bool posted = false;

		while (virtq_get(&np->rx, &len, &cookie)) {
			uint8_t *buf = cookie;
			np->rx_frames++;
			nd->rx_pair = p;
			if (len > NET_HDR_LEN && len <= BUF_SIZE)
				handle(ctx, buf + NET_HDR_LEN, len - NET_HDR_LEN);
			rx_post(nd, p, buf);
			posted = true;
		}
		if (posted)
			virtq_kick(&np->rx);
	}
}

void netdev_send_arp(struct netdev *nd, uint16_t op, const uint8_t *dst_mac, const uint8_t *tpa)
{
	netdev_send_arp_on(nd, 0, op, dst_mac, tpa);
}

void netdev_send_arp_on(struct netdev *nd, unsigned p, uint16_t op, const uint8_t *dst_mac,
			const uint8_t *tpa)
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
	netdev_send_on(nd, p, f, sizeof(f));
}
