/* test_net_offload.c: virtio-net's vnet header offloads both ways, bad
 * headers and frames dropped (never the device broken), mergeable receive
 * buffers, the access VLAN and trunk, the control queue and the post-
 * migration announcement; over a SOCK_SEQPACKET socketpair that passes
 * headers untouched, standing in for a tap with offloads. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>

#include "conf/net.h"
#include "config.h"
#include "vdrv.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"

#define B(x)  (1ULL << (x))
#define F_V1  B(VIRTIO_F_VERSION_1)
#define F_BASE (F_V1 | B(VIRTIO_NET_F_MAC) | B(VIRTIO_NET_F_STATUS) | B(VIRTIO_NET_F_MTU) | \
		B(VIRTIO_NET_F_CTRL_VQ) | B(VIRTIO_NET_F_GUEST_ANNOUNCE))
#define F_OFF (B(VIRTIO_NET_F_CSUM) | B(VIRTIO_NET_F_GUEST_CSUM) | B(VIRTIO_NET_F_HOST_TSO4) | \
	       B(VIRTIO_NET_F_HOST_TSO6) | B(VIRTIO_NET_F_GUEST_TSO4) | B(VIRTIO_NET_F_GUEST_TSO6))
#define F_ALL (F_BASE | F_OFF | B(VIRTIO_NET_F_MRG_RXBUF))
#define HDR   sizeof(struct virtio_net_hdr_v1)
#define BE_ALL (NET_BE_TUN_CSUM | NET_BE_TUN_TSO4 | NET_BE_TUN_TSO6)
#define BIG   70000

static const uint8_t MAC[6] = { 0x52, 0x54, 0, 0xab, 0xcd, 0xef };

struct fixture {
	struct vdrv *d;
	struct net_dev *net;
	int peer;
};

static struct fixture *make(uint64_t features, unsigned vlan, bool trunk)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct net_config cfg = { .tap = "tap-test", .has_mac = true, .vlan = vlan,
				  .vlan_trunk = trunk };
	int sv[2], big = 1 << 20;

	memcpy(cfg.mac, MAC, 6);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	f->peer = sv[1];
	f->d = vdrv_new();
	assert_int_equal(virtio_net_create_be(&f->d->vm, &cfg, 0, &sv[0], 1, BE_ALL, false), 0);
	vdrv_bind(f->d);
	f->net = container_of(f->d->vd, struct net_dev, vd);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, features) & VIRTIO_CONFIG_S_DRIVER_OK);
	return f;
}

static int setup_all(void **state) { *state = make(F_ALL, 0, false); return 0; }
static int setup_plain(void **state) { *state = make(F_BASE, 0, false); return 0; }
static int setup_vlan(void **state) { *state = make(F_ALL, 100, false); return 0; }
static int setup_trunk(void **state) { *state = make(F_ALL, 0, true); return 0; }

static int teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	close(f->peer);
	free(f);
	return 0;
}

static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
	memset(p, 0xff, 6);
	memcpy(p + 6, MAC, 6);
	p[12] = 0x08; /* IPv4, so offsets look like a real frame's */
	p[13] = 0x00;
	for (size_t i = 14; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* Queue one tx chain (header, frame) and wait for it to be used. */
static void tx(struct fixture *f, const struct virtio_net_hdr_v1 *h, const uint8_t *frame,
	       size_t len)
{
	uint64_t hg = vdrv_alloc(f->d, HDR), bg = vdrv_alloc(f->d, len);
	struct vdrv_seg segs[] = { { hg, HDR, false }, { bg, (uint32_t)len, false } };
	uint16_t idx = vdrv_used_idx(f->d, NET_TXQ);

	memcpy(vdrv_ptr(f->d, hg, HDR), h, HDR);
	memcpy(vdrv_ptr(f->d, bg, len), frame, len);
	vdrv_add(f->d, NET_TXQ, segs, 2, false);
	vdrv_kick(f->d, NET_TXQ);
	assert_true(vdrv_wait_used(f->d, NET_TXQ, (uint16_t)(idx + 1)));
}

static ssize_t peer_recv(struct fixture *f, uint8_t *buf, size_t len)
{
	return recv(f->peer, buf, len, MSG_DONTWAIT);
}

static bool broken(struct fixture *f)
{
	return vdrv_read(f->d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

static void test_offered_features(void **state)
{
	struct vdrv *d = vdrv_new();
	struct net_config cfg = { .tap = "x" };
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	/* An fd that is not a tap: no offloads offered. */
	assert_int_equal(virtio_net_create_fd(&d->vm, &cfg, 0, sv[0]), 0);
	vdrv_bind(d);
	assert_int_equal(d->vd->host_features & F_OFF, 0);
	assert_true(d->vd->host_features & B(VIRTIO_NET_F_MRG_RXBUF));
	assert_true(d->vd->host_features & B(VIRTIO_NET_F_CTRL_VQ));
	assert_true(d->vd->host_features & B(VIRTIO_RING_F_EVENT_IDX));
	/* MTU 1500 in the config space. */
	assert_int_equal(vdrv_config8(d, offsetof(struct virtio_net_config, mtu)), 1500 & 0xff);
	assert_int_equal(vdrv_config8(d, offsetof(struct virtio_net_config, mtu) + 1), 1500 >> 8);
	vdrv_free(d);
	close(sv[1]);
	assert_int_equal(net_offload_features(BE_ALL), F_OFF);
	assert_int_equal(net_offload_features(NET_BE_TUN_TSO4), 0); /* no csum, no TSO */
}

static void test_tx_offload_passthrough(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				       .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				       .hdr_len = htole16(54), .gso_size = htole16(1448),
				       .csum_start = htole16(34), .csum_offset = htole16(16),
				       .num_buffers = htole16(9) };
	static uint8_t frame[40000], got[HDR + 40000];
	struct virtio_net_hdr_v1 *g = (struct virtio_net_hdr_v1 *)got;

	make_frame(frame, sizeof(frame), 1);
	tx(f, &h, frame, sizeof(frame));
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)sizeof(got));
	assert_int_equal(g->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(g->gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(le16toh(g->gso_size), 1448);
	assert_int_equal(le16toh(g->hdr_len), 54);
	assert_int_equal(le16toh(g->csum_start), 34);
	assert_int_equal(le16toh(g->csum_offset), 16);
	assert_int_equal(g->num_buffers, 0);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(f->net->tx_frames, 1);
}

static void test_tx_malformed_dropped(void **state)
{
	struct fixture *f = *state;
	const struct virtio_net_hdr_v1 bad[] = {
		{ .flags = 0x80 },                                          /* unknown flag */
		{ .flags = VIRTIO_NET_HDR_F_DATA_VALID },                   /* rx-only flag */
		{ .flags = 1, .csum_start = htole16(100), .csum_offset = htole16(6) }, /* past */
		{ .flags = 1, .csum_start = htole16(2), .csum_offset = htole16(6) },   /* in L2 */
		{ .flags = 1, .gso_type = VIRTIO_NET_HDR_GSO_UDP, .gso_size = htole16(100),
		  .csum_start = htole16(34), .csum_offset = htole16(6) },   /* UFO not negotiated */
		{ .flags = 1, .gso_type = 0x80 | VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = htole16(100),
		  .csum_start = htole16(34), .csum_offset = htole16(16) },  /* ECN not negotiated */
		{ .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = htole16(100) }, /* no csum */
		{ .flags = 1, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .csum_start = htole16(34),
		  .csum_offset = htole16(16) },                             /* gso_size 0 */
		{ .flags = 1, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = htole16(100),
		  .hdr_len = htole16(500), .csum_start = htole16(34), .csum_offset = htole16(16) },
		{ .gso_type = 2 },                                          /* no such type */
	};
	uint8_t frame[100], got[256];
	const struct virtio_net_hdr_v1 ok = { 0 };

	make_frame(frame, sizeof(frame), 2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tx(f, &bad[i], frame, sizeof(frame));
		assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
		assert_int_equal(f->net->drops[NET_DROP_TX_HDR], i + 1);
		assert_false(broken(f));
	}
	/* Runt. */
	tx(f, &ok, frame, 10);
	assert_int_equal(f->net->drops[NET_DROP_TX_SHORT], 1);
	/* The device still works. */
	tx(f, &ok, frame, sizeof(frame));
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + sizeof(frame)));
	assert_false(broken(f));
}

static void test_tx_oversized(void **state)
{
	struct fixture *f = *state;
	static uint8_t frame[BIG];
	const struct virtio_net_hdr_v1 h = { 0 };

	make_frame(frame, sizeof(frame), 3);
	tx(f, &h, frame, sizeof(frame)); /* past 64 KiB even with TSO */
	assert_int_equal(f->net->drops[NET_DROP_TX_LONG], 1);
	assert_false(broken(f));
}

static void test_tx_oversized_plain(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[1600];
	const struct virtio_net_hdr_v1 csum = { .flags = 1, .csum_start = htole16(34),
						.csum_offset = htole16(16) };

	make_frame(frame, sizeof(frame), 3);
	tx(f, &(struct virtio_net_hdr_v1){ 0 }, frame, sizeof(frame)); /* past MTU 1500 */
	assert_int_equal(f->net->drops[NET_DROP_TX_LONG], 1);
	/* NEEDS_CSUM without VIRTIO_NET_F_CSUM. */
	tx(f, &csum, frame, 200);
	assert_int_equal(f->net->drops[NET_DROP_TX_HDR], 1);
	assert_false(broken(f));
}

static void post_rx(struct fixture *f, uint64_t *buf, unsigned n, uint32_t len)
{
	for (unsigned i = 0; i < n; i++) {
		struct vdrv_seg seg;

		buf[i] = vdrv_alloc(f->d, len);
		seg = (struct vdrv_seg){ buf[i], len, true };
		vdrv_add(f->d, NET_RXQ, &seg, 1, false);
	}
	vdrv_kick(f->d, NET_RXQ);
}

static void peer_send(struct fixture *f, const struct virtio_net_hdr_v1 *h, const uint8_t *frame,
		      size_t len)
{
	struct iovec iov[2] = { { (void *)h, HDR }, { (void *)frame, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

	assert_int_equal(sendmsg(f->peer, &m, 0), (ssize_t)(HDR + len));
}

/* Gather what the guest got over `n` used rx entries starting at used
 * index `idx`, buffers buf[] of `blen` bytes each (posted in order). */
static size_t gather(struct fixture *f, const uint64_t *buf, uint16_t idx, unsigned n,
		     uint32_t blen, uint8_t *out)
{
	size_t total = 0;

	for (unsigned i = 0; i < n; i++) {
		struct vring_used_elem e = vdrv_used_elem(f->d, NET_RXQ, (uint16_t)(idx + i));

		assert_true(e.len <= blen);
		memcpy(out + total, vdrv_ptr(f->d, buf[i], e.len), e.len);
		total += e.len;
	}
	return total;
}

static void test_rx_mergeable(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID };
	uint64_t buf[4];
	uint8_t frame[1514], got[4 * 600];
	const struct virtio_net_hdr_v1 *g = (const void *)got;

	post_rx(f, buf, 4, 600);
	make_frame(frame, sizeof(frame), 4);
	peer_send(f, &h, frame, sizeof(frame));
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 3));
	assert_int_equal(gather(f, buf, 0, 3, 600, got), HDR + sizeof(frame));
	assert_int_equal(le16toh(g->num_buffers), 3);
	assert_int_equal(g->flags, VIRTIO_NET_HDR_F_DATA_VALID);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	/* The fourth buffer is still the guest's: a small frame lands there. */
	peer_send(f, &h, frame, 60);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 4));
	assert_int_equal(vdrv_used_elem(f->d, NET_RXQ, 3).len, HDR + 60);
	assert_int_equal(le16toh(((struct virtio_net_hdr_v1 *)vdrv_ptr(f->d, buf[3], HDR))
					 ->num_buffers), 1);
}

static void test_rx_gso(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				       .gso_type = VIRTIO_NET_HDR_GSO_TCPV6,
				       .gso_size = htole16(1440), .hdr_len = htole16(74),
				       .csum_start = htole16(54), .csum_offset = htole16(16) };
	static uint8_t frame[60000], got[3 * 32768];
	const struct virtio_net_hdr_v1 *g = (const void *)got;
	uint64_t buf[3];

	post_rx(f, buf, 3, 32768);
	make_frame(frame, sizeof(frame), 5);
	peer_send(f, &h, frame, sizeof(frame));
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 2));
	assert_int_equal(gather(f, buf, 0, 2, 32768, got), HDR + sizeof(frame));
	assert_int_equal(g->gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
	assert_int_equal(le16toh(g->csum_start), 54);
	assert_int_equal(le16toh(g->num_buffers), 2);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
}

static void test_rx_plain(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = { 0 };
	struct virtio_net_hdr_v1 csum = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
					  .csum_start = htole16(34), .csum_offset = htole16(16) };
	uint8_t frame[1000];
	uint64_t buf[1];

	/* No MRG_RXBUF: one buffer per frame; a frame larger than it is
	 * dropped whole and the buffer kept. */
	post_rx(f, buf, 1, 200);
	make_frame(frame, sizeof(frame), 6);
	peer_send(f, &h, frame, sizeof(frame));
	/* An offload header the driver did not negotiate: dropped. */
	peer_send(f, &csum, frame, 100);
	peer_send(f, &h, frame, 100);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 1));
	assert_int_equal(vdrv_used_elem(f->d, NET_RXQ, 0).len, HDR + 100);
	assert_memory_equal((uint8_t *)vdrv_ptr(f->d, buf[0], HDR + 100) + HDR, frame, 100);
	assert_int_equal(f->net->drops[NET_DROP_RX_TRUNC], 1);
	assert_int_equal(f->net->drops[NET_DROP_RX_HDR], 1);
	assert_false(broken(f));
}

static void test_vlan_access(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				       .csum_start = htole16(34), .csum_offset = htole16(16) };
	uint8_t frame[300], tagged[304], got[HDR + 400];
	const struct virtio_net_hdr_v1 *g = (const void *)got;
	uint64_t buf[2];

	/* Guest -> host: tag 100 inserted, checksum offset moved with it. */
	make_frame(frame, sizeof(frame), 7);
	tx(f, &h, frame, sizeof(frame));
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 304));
	assert_int_equal(le16toh(g->csum_start), 38);
	assert_memory_equal(got + HDR, frame, 12);
	assert_int_equal(got[HDR + 12], 0x81);
	assert_int_equal(got[HDR + 13], 0x00);
	assert_int_equal(got[HDR + 14] << 8 | got[HDR + 15], 100);
	assert_memory_equal(got + HDR + 16, frame + 12, sizeof(frame) - 12);
	/* A tagged frame from the guest on an access port: dropped. */
	memcpy(tagged, got + HDR, sizeof(tagged));
	tx(f, &(struct virtio_net_hdr_v1){ 0 }, tagged, sizeof(tagged));
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(f->net->drops[NET_DROP_TX_VLAN], 1);

	/* Host -> guest: VLAN 200 and untagged dropped, VLAN 100 untagged. */
	post_rx(f, buf, 2, 2048);
	tagged[15] = 200;
	peer_send(f, &(struct virtio_net_hdr_v1){ 0 }, tagged, sizeof(tagged));
	peer_send(f, &(struct virtio_net_hdr_v1){ 0 }, frame, sizeof(frame));
	tagged[15] = 100;
	h.csum_start = htole16(38); /* as the tap reports it for the tagged frame */
	peer_send(f, &h, tagged, sizeof(tagged));
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 1));
	assert_int_equal(vdrv_used_elem(f->d, NET_RXQ, 0).len, HDR + sizeof(frame));
	memcpy(got, vdrv_ptr(f->d, buf[0], HDR + sizeof(frame)), HDR + sizeof(frame));
	assert_int_equal(le16toh(g->csum_start), 34);
	assert_int_equal(le16toh(g->num_buffers), 1);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(f->net->drops[NET_DROP_RX_VLAN], 2);
	assert_false(broken(f));
}

static void test_vlan_trunk(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[200], got[HDR + 300];
	uint64_t buf[1];

	make_frame(frame, sizeof(frame), 8);
	frame[12] = 0x81;
	frame[13] = 0;
	frame[14] = 0;
	frame[15] = 42;
	tx(f, &(struct virtio_net_hdr_v1){ 0 }, frame, sizeof(frame));
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + sizeof(frame)));
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	post_rx(f, buf, 1, 2048);
	peer_send(f, &(struct virtio_net_hdr_v1){ 0 }, frame, sizeof(frame));
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 1));
	assert_memory_equal((uint8_t *)vdrv_ptr(f->d, buf[0], HDR + sizeof(frame)) + HDR, frame,
			    sizeof(frame));
}

/* One control request: out bytes, then an ack byte (when ack_len). */
static uint8_t ctrl_q(struct fixture *f, unsigned q, const uint8_t *req, uint32_t len,
		      uint32_t ack_len, uint32_t *used_len);

static uint8_t ctrl(struct fixture *f, const uint8_t *req, uint32_t len, uint32_t ack_len,
		    uint32_t *used_len)
{
	return ctrl_q(f, NET_CTRLQ, req, len, ack_len, used_len);
}

static uint8_t ctrl_q(struct fixture *f, unsigned q, const uint8_t *req, uint32_t len,
		      uint32_t ack_len, uint32_t *used_len)
{
	uint64_t r = vdrv_alloc(f->d, len ? len : 1), a = vdrv_alloc(f->d, 16);
	struct vdrv_seg segs[2] = { { r, len, false }, { a, ack_len, true } };
	uint16_t idx = vdrv_used_idx(f->d, q);
	uint8_t *ack = vdrv_ptr(f->d, a, 1);

	*ack = 0xee;
	memcpy(vdrv_ptr(f->d, r, len ? len : 1), req, len);
	vdrv_add(f->d, q, segs, ack_len ? 2 : 1, false);
	vdrv_kick(f->d, q);
	assert_true(vdrv_wait_used(f->d, q, (uint16_t)(idx + 1)));
	*used_len = vdrv_used_elem(f->d, q, idx).len;
	return *ack;
}

static void test_ctrl(void **state)
{
	struct fixture *f = *state;
	const uint8_t ann[] = { VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK };
	const uint8_t mq1[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 1, 0 };
	const uint8_t mq2[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 2, 0 };
	const uint8_t junk[] = { 99, 7, 1, 2, 3 };
	const uint8_t rx[] = { VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 1 };
	unsigned st = offsetof(struct virtio_net_config, status);
	uint32_t used;

	assert_int_equal(ctrl(f, mq1, 4, 1, &used), VIRTIO_NET_OK);
	assert_int_equal(used, 1);
	assert_int_equal(ctrl(f, mq2, 4, 1, &used), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, mq1, 3, 1, &used), VIRTIO_NET_ERR); /* short */
	assert_int_equal(ctrl(f, junk, sizeof(junk), 1, &used), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, rx, sizeof(rx), 1, &used), VIRTIO_NET_ERR);
	/* No ack byte, or no command: answered with nothing, counted. */
	assert_int_equal(ctrl(f, ann, 2, 0, &used), 0xee);
	assert_int_equal(used, 0);
	assert_int_equal(ctrl(f, ann, 1, 1, &used), 0xee);
	assert_int_equal(f->net->drops[NET_DROP_CTRL], 2);
	assert_false(broken(f));

	/* Announce: frames on the back end, the bit set, a config interrupt;
	 * the driver's ack clears it. */
	virtio_net_announce(&f->d->vm);
	assert_true(vdrv_config8(f->d, st) & VIRTIO_NET_S_ANNOUNCE);
	assert_true(vdrv_read(f->d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(ctrl(f, ann, 2, 1, &used), VIRTIO_NET_OK);
	assert_false(vdrv_config8(f->d, st) & VIRTIO_NET_S_ANNOUNCE);
	assert_true(vdrv_config8(f->d, st) & VIRTIO_NET_S_LINK_UP);
}

static void test_announce_frames(void **state)
{
	struct fixture *f = *state;
	uint8_t got[HDR + 128], want[60];
	/* The guest's own ARP request teaches the device its address. */
	uint8_t arp[42] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0xab, 0xcd, 0xef,
			    0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1,
			    0x52, 0x54, 0, 0xab, 0xcd, 0xef, 10, 1, 2, 3,
			    0, 0, 0, 0, 0, 0, 10, 1, 2, 1 };

	virtio_net_announce(&f->d->vm);
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 60));
	assert_int_equal(net_rarp_frame(MAC, want, sizeof(want)), 60);
	assert_memory_equal(got + HDR, want, 60);
	assert_int_equal(got[HDR + 12] << 8 | got[HDR + 13], 0x8035);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1); /* no address known yet */

	tx(f, &(struct virtio_net_hdr_v1){ 0 }, arp, sizeof(arp));
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + sizeof(arp)));
	virtio_net_announce(&f->d->vm);
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 60)); /* RARP */
	assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 60)); /* ARP */
	assert_int_equal(got[HDR + 12] << 8 | got[HDR + 13], 0x0806);
	assert_memory_equal(got + HDR + 28, "\x0a\x01\x02\x03", 4); /* sender IP */
	assert_memory_equal(got + HDR + 38, "\x0a\x01\x02\x03", 4); /* target IP */
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);

	/* The guest's neighbour advertisement teaches its IPv6 address: the
	 * next announcement adds an unsolicited NA with a valid checksum. */
	{
		static const uint8_t ip6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 5 };
		uint8_t na[86] = { 0 };
		uint32_t sum = 0;
		const uint8_t *g = got + HDR;

		memcpy(na, "\x33\x33\0\0\0\x01", 6);
		memcpy(na + 6, MAC, 6);
		na[12] = 0x86;
		na[13] = 0xdd;
		na[14] = 0x60;
		na[19] = 32;
		na[20] = 58;
		na[21] = 255;
		memcpy(na + 22, ip6, 16);
		na[38] = 0xff;
		na[39] = 0x02;
		na[53] = 1;
		na[54] = 136;
		memcpy(na + 62, ip6, 16);
		tx(f, &(struct virtio_net_hdr_v1){ 0 }, na, sizeof(na));
		assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + sizeof(na)));
		virtio_net_announce(&f->d->vm);
		assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 60)); /* RARP */
		assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 60)); /* ARP */
		assert_int_equal(peer_recv(f, got, sizeof(got)), (ssize_t)(HDR + 86)); /* NA */
		assert_int_equal(g[12] << 8 | g[13], 0x86dd);
		assert_int_equal(g[54], 136);
		assert_int_equal(g[58], 0x20); /* Override */
		assert_memory_equal(g + 22, ip6, 16);
		assert_memory_equal(g + 62, ip6, 16);
		assert_memory_equal(g + 80, MAC, 6);
		for (unsigned i = 22; i < 54; i += 2)
			sum += (uint32_t)(g[i] << 8 | g[i + 1]);
		sum += 32 + 58;
		for (unsigned i = 54; i < 86; i += 2)
			sum += (uint32_t)(g[i] << 8 | g[i + 1]);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		assert_int_equal(sum, 0xffff);
	}
}

/* A real tap: offloads probed and offered, and set on the tap
 * (TUNSETOFFLOAD) to what the driver negotiated once it runs. */
static void test_real_tap_offloads(void **state)
{
	char name[IFNAMSIZ];
	struct net_config cfg = { .tap = name };
	struct net_dev *net;
	struct vdrv *d;
	uint64_t buf[1];
	int fd;

	(void)state;
	snprintf(name, sizeof(name), "cvo%d", (int)getpid() % 100000);
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		print_message("*** SKIPPED real tap offloads: /dev/net/tun: %s ***\n", strerror(errno));
		skip();
	}
	close(fd);
	d = vdrv_new();
	if (virtio_net_create(&d->vm, &cfg, 0) != 0) {
		vdrv_free(d);
		print_message("*** SKIPPED real tap offloads: cannot create tap %s ***\n", name);
		skip();
	}
	vdrv_bind(d);
	net = container_of(d->vd, struct net_dev, vd);
	assert_true(net->q[0].be.is_tap);
	assert_true((d->vd->host_features & F_OFF) == F_OFF);
	vdrv_start_loop(d);
	assert_true(vdrv_init(d, F_ALL) & VIRTIO_CONFIG_S_DRIVER_OK);
	{
		struct vdrv_seg seg;

		buf[0] = vdrv_alloc(d, 4096);
		seg = (struct vdrv_seg){ buf[0], 4096, true };
		vdrv_add(d, NET_RXQ, &seg, 1, false);
		vdrv_kick(d, NET_RXQ);
	}
	/* The kick runs on the loop thread: poll for it, with a deadline. */
	for (int i = 0; i < 1000 && !net->offloads_set; i++)
		usleep(1000);
	assert_true(net->offloads_set);
	assert_int_equal(net->q[0].be.applied, NET_BE_TUN_CSUM | NET_BE_TUN_TSO4 | NET_BE_TUN_TSO6);
	vdrv_free(d);
}

/* A real multi-queue tap opened by name with queues=2: queue 1 detached
 * (TUNSETQUEUE) until the driver asks for two pairs. */
static void test_real_tap_mq(void **state)
{
	char name[IFNAMSIZ];
	struct net_config cfg = { .tap = name, .queues = 2 };
	const uint8_t set2[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 2, 0 };
	struct fixture f = { 0 };
	uint32_t used;

	(void)state;
	snprintf(name, sizeof(name), "cvq%d", (int)getpid() % 100000);
	f.d = vdrv_new();
	if (virtio_net_create(&f.d->vm, &cfg, 0) != 0) {
		vdrv_free(f.d);
		print_message("*** SKIPPED real multi-queue tap: cannot create tap %s ***\n", name);
		skip();
	}
	vdrv_bind(f.d);
	f.net = container_of(f.d->vd, struct net_dev, vd);
	assert_int_equal(f.net->nr_pairs, 2);
	assert_true(f.net->q[1].detached);
	vdrv_start_loop(f.d);
	assert_true(vdrv_init(f.d, F_ALL | B(VIRTIO_NET_F_MQ)) & VIRTIO_CONFIG_S_DRIVER_OK);
	assert_int_equal(ctrl_q(&f, 4, set2, 4, 1, &used), VIRTIO_NET_OK);
	assert_false(f.net->q[1].detached);
	vdrv_free(f.d);
}

/* Two queue pairs over two sockets: MQ offered, the control queue after
 * them, pair 1 idle until VQ_PAIRS_SET, then frames both ways on its own
 * socket. */
static void test_mq(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct net_config cfg = { .tap = "tap-mq" };
	const uint8_t set2[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 2, 0 };
	const uint8_t set3[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 3, 0 };
	const uint8_t set0[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, 0, 0 };
	int a[2], b[2], fds[2];
	uint8_t frame[100], got[256];
	uint32_t used;
	uint64_t hg, bg, rb;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, b), 0);
	assert_int_equal(fcntl(a[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(b[0], F_SETFL, O_NONBLOCK), 0);
	fds[0] = a[0];
	fds[1] = b[0];
	f->d = vdrv_new();
	assert_int_equal(virtio_net_create_be(&f->d->vm, &cfg, 0, fds, 2, BE_ALL, false), 0);
	vdrv_bind(f->d);
	f->net = container_of(f->d->vd, struct net_dev, vd);
	f->peer = a[1];
	assert_int_equal(f->d->vd->nr_queues, 5);
	assert_true(f->d->vd->host_features & B(VIRTIO_NET_F_MQ));
	assert_int_equal(vdrv_config8(f->d, offsetof(struct virtio_net_config, max_virtqueue_pairs)),
			 2);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_ALL | B(VIRTIO_NET_F_MQ)) & VIRTIO_CONFIG_S_DRIVER_OK);

	/* A frame on pair 1 before the driver enabled it waits. */
	make_frame(frame, sizeof(frame), 9);
	hg = vdrv_alloc(f->d, HDR);
	bg = vdrv_alloc(f->d, sizeof(frame));
	memset(vdrv_ptr(f->d, hg, HDR), 0, HDR);
	memcpy(vdrv_ptr(f->d, bg, sizeof(frame)), frame, sizeof(frame));
	{
		struct vdrv_seg segs[] = { { hg, HDR, false }, { bg, sizeof(frame), false } };

		vdrv_add(f->d, 3, segs, 2, false);
		vdrv_kick(f->d, 3);
	}
	assert_int_equal(ctrl_q(f, 4, set3, 4, 1, &used), VIRTIO_NET_ERR);
	assert_int_equal(ctrl_q(f, 4, set0, 4, 1, &used), VIRTIO_NET_ERR);
	assert_int_equal(vdrv_used_idx(f->d, 3), 0);
	assert_int_equal(recv(b[1], got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(ctrl_q(f, 4, set2, 4, 1, &used), VIRTIO_NET_OK);
	assert_int_equal(f->net->active_pairs, 2);
	vdrv_kick(f->d, 3);
	assert_true(vdrv_wait_used(f->d, 3, 1));
	assert_int_equal(recv(b[1], got, sizeof(got), MSG_DONTWAIT), (ssize_t)(HDR + sizeof(frame)));
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(recv(a[1], got, sizeof(got), MSG_DONTWAIT), -1);

	/* Host -> guest on pair 1's socket lands in rx queue 2. */
	rb = vdrv_alloc(f->d, 2048);
	{
		struct vdrv_seg seg = { rb, 2048, true };

		vdrv_add(f->d, 2, &seg, 1, false);
		vdrv_kick(f->d, 2);
	}
	{
		struct virtio_net_hdr_v1 h = { 0 };
		struct iovec iov[2] = { { &h, HDR }, { frame, sizeof(frame) } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

		assert_int_equal(sendmsg(b[1], &m, 0), (ssize_t)(HDR + sizeof(frame)));
	}
	assert_true(vdrv_wait_used(f->d, 2, 1));
	assert_memory_equal((uint8_t *)vdrv_ptr(f->d, rb, HDR + sizeof(frame)) + HDR, frame,
			    sizeof(frame));
	assert_false(broken(f));
	close(b[1]);
	teardown((void **)&f);
}

static void test_conf(void **state)
{
	unsigned v;
	bool trunk;

	(void)state;
	assert_true(conf_vlan_parse("1", &v, &trunk) && v == 1 && !trunk);
	assert_true(conf_vlan_parse("4094", &v, &trunk) && v == 4094);
	assert_true(conf_vlan_parse("trunk", &v, &trunk) && trunk && v == 0);
	assert_false(conf_vlan_parse("0", &v, &trunk));
	assert_false(conf_vlan_parse("4095", &v, &trunk));
	assert_false(conf_vlan_parse("-1", &v, &trunk));
	assert_false(conf_vlan_parse("12x", &v, &trunk));
	assert_false(conf_vlan_parse("", &v, &trunk));
	assert_true(conf_queues_parse("3", &v) && v == 3);
	assert_false(conf_queues_parse("4", &v));
	assert_false(conf_queues_parse("0", &v));
	assert_true(conf_mtu_parse("9000", &v) && v == 9000);
	assert_false(conf_mtu_parse("67", &v));
	assert_false(conf_mtu_parse("65536", &v));
}

#define T(t, s) cmocka_unit_test_setup_teardown(t, s, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offered_features),
		T(test_tx_offload_passthrough, setup_all),
		T(test_tx_malformed_dropped, setup_all),
		T(test_tx_oversized, setup_all),
		T(test_tx_oversized_plain, setup_plain),
		T(test_rx_mergeable, setup_all),
		T(test_rx_gso, setup_all),
		T(test_rx_plain, setup_plain),
		T(test_vlan_access, setup_vlan),
		T(test_vlan_trunk, setup_trunk),
		T(test_ctrl, setup_all),
		T(test_announce_frames, setup_all),
		cmocka_unit_test(test_real_tap_offloads),
		cmocka_unit_test(test_mq),
		cmocka_unit_test(test_real_tap_mq),
		cmocka_unit_test(test_conf),
	};

	return cmocka_run_group_tests_name("virtio-net-offload", tests, NULL, NULL);
}
