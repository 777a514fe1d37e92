/* netutil.h: what the test guests' own small network stacks share (net.c,
 * tcpecho.c, netmq.c): the first virtio-net device with its receive and
 * transmit queues (one pair, or several with VIRTIO_NET_F_MQ), big-endian
 * fields, the Internet checksum, and ARP. */
#ifndef GUEST_NETUTIL_H
#define GUEST_NETUTIL_H

#include "virtio.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_MQ 22
/* Queue pairs this driver sets up at most (cella offers up to 3). */
#define NETDEV_MAX_PAIRS 4
#define NET_HDR_LEN 12		/* struct virtio_net_hdr with VERSION_1 */
#define RX_BUFS 16
#define BUF_SIZE 2048
#define ETH_ARP 0x0806
#define ETH_IP  0x0800

/* One receive and one transmit queue (virtqueues 2p and 2p + 1). */
struct netpair {
	struct virtq rx, tx;
	uint8_t *txbuf;
	uint32_t rx_frames, tx_frames;
};

struct netdev {
	struct virtio_dev dev;
	struct netpair pair[NETDEV_MAX_PAIRS];
	unsigned pairs;		/* in use: 1, or what VQ_PAIRS_SET set */
	unsigned max_pairs;	/* the device's max_virtqueue_pairs (1 without MQ) */
	unsigned rx_pair;	/* the pair of the frame netdev_rx is handing over */
	struct virtq ctrl;	/* with CTRL_VQ: virtqueue 2 * max_pairs */
	uint8_t mac[6];
	uint8_t ip[4];
	const char *who;	/* the program's name, in failures */
};

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* The Internet checksum: a running sum, its folded complement, both. */
uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n);
uint16_t csum_fold(uint32_t sum);
static inline uint16_t inet_csum(const uint8_t *p, size_t n)
{
	return csum_fold(csum_add(0, p, n));
}

/* Dotted-quad IPv4 address; false if s is not one. */
bool parse_ip4(const char *s, uint8_t ip[4]);

/* Finds and starts the first virtio-net device (its MAC, else def_mac),
 * with RX_BUFS receive buffers posted; fails the test without one. */
void netdev_open(struct netdev *nd, const char *who, const uint8_t def_mac[6]);
/* The same with multiqueue: negotiates MQ and CTRL_VQ when offered, reads
 * max_virtqueue_pairs, sets up the rx and tx queues of min(want, max,
 * NETDEV_MAX_PAIRS) pairs (want 0: as many as the device has) and the
 * control queue, and asks for them with VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
 * fails the test if the device does not acknowledge. Without MQ: one pair,
 * as netdev_open. */
void netdev_open_mq(struct netdev *nd, const char *who, const uint8_t def_mac[6], unsigned want);
/* Sends one Ethernet frame on the tx queue of pair 0 / of pair p and waits
 * for the device to take it. */
void netdev_send(struct netdev *nd, const uint8_t *frame, size_t len);
void netdev_send_on(struct netdev *nd, unsigned p, const uint8_t *frame, size_t len);
/* Hands every received frame, of every pair in use, to handle (nd->rx_pair
 * says which pair it came on), then gives the buffers back. */
void netdev_rx(struct netdev *nd, void (*handle)(void *ctx, const uint8_t *f, uint32_t len),
	       void *ctx);
/* An ARP request (op 1, broadcast) or reply (op 2, to dst_mac) for tpa,
 * from nd's MAC and address. */
void netdev_send_arp(struct netdev *nd, uint16_t op, const uint8_t *dst_mac, const uint8_t *tpa);
/* The same on pair p. */
void netdev_send_arp_on(struct netdev *nd, unsigned p, uint16_t op, const uint8_t *dst_mac,
			const uint8_t *tpa);

#endif
