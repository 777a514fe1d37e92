/* netutil.h: what the test guests' own small network stacks share (net.c,
 * tcpecho.c): the first virtio-net device with its receive and transmit
 * queues, big-endian fields, the Internet checksum, and ARP. */
#ifndef GUEST_NETUTIL_H
#define GUEST_NETUTIL_H

#include "virtio.h"

#define VIRTIO_NET_F_MAC 5
#define NET_HDR_LEN 12		/* struct virtio_net_hdr with VERSION_1 */
#define RX_BUFS 16
#define BUF_SIZE 2048
#define ETH_ARP 0x0806
#define ETH_IP  0x0800

struct netdev {
	struct virtio_dev dev;
	struct virtq rx, tx;
	uint8_t mac[6];
	uint8_t ip[4];
	uint8_t *txbuf;
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

/* Finds and starts the first virtio-net device (its MAC, else def_mac),
 * with RX_BUFS receive buffers posted; fails the test without one. */
void netdev_open(struct netdev *nd, const char *who, const uint8_t def_mac[6]);
void netdev_rx_post(struct netdev *nd, uint8_t *buf);
/* Sends one Ethernet frame and waits for the device to take it. */
void netdev_send(struct netdev *nd, const uint8_t *frame, size_t len);
/* Hands every received frame to handle, then gives the buffers back. */
void netdev_rx(struct netdev *nd, void (*handle)(void *ctx, const uint8_t *f, uint32_t len),
	       void *ctx);
/* An ARP request (op 1, broadcast) or reply (op 2, to dst_mac) for tpa,
 * from nd's MAC and address. */
void netdev_send_arp(struct netdev *nd, uint16_t op, const uint8_t *dst_mac, const uint8_t *tpa);

#endif
