/* net_ctrl.c: virtio-net's control queue (every request checked: class,
 * command, lengths, the ack byte) and the guest's announcement after a
 * live migration: VIRTIO_NET_S_ANNOUNCE for drivers that negotiated
 * GUEST_ANNOUNCE, and frames from the VMM for all: a RARP as QEMU sends, a
 * gratuitous ARP and an unsolicited neighbour advertisement when the
 * guest's IPv4 / IPv6 address is known (learnt from its own frames). */
#include <endian.h>
#include <stddef.h>
#include <string.h>

#include "log.h"
#include "virtio/net/net.h"

#define STATUS_OFF offsetof(struct virtio_net_config, status)

/* Answer one request; returns the ack. */
static uint8_t ctrl_one(struct net_dev *net, const struct virtq_chain *c)
{
	uint8_t req[4] = { 0 };
	size_t n = iov_to_buf(c->iov, c->nr_out, 0, req, sizeof(req));

	switch (req[0]) {
	case VIRTIO_NET_CTRL_ANNOUNCE:
		if (req[1] != VIRTIO_NET_CTRL_ANNOUNCE_ACK || c->out_len != 2 ||
		    !virtio_dev_has(&net->vd, VIRTIO_NET_F_GUEST_ANNOUNCE))
			break;
		net->vd.config[STATUS_OFF] &= (uint8_t)~VIRTIO_NET_S_ANNOUNCE;
		return VIRTIO_NET_OK;
	case VIRTIO_NET_CTRL_MQ: {
		unsigned pairs = (unsigned)(req[2] | req[3] << 8);

		/* 1..max_virtqueue_pairs; only with MQ negotiated (or 1). */
		if (req[1] != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || c->out_len != 4 || n != 4 ||
		    pairs < 1 || pairs > net->nr_pairs ||
		    (pairs > 1 && !virtio_dev_has(&net->vd, VIRTIO_NET_F_MQ)))
			break;
		net_set_pairs(net, pairs);
		return VIRTIO_NET_OK;
	}
	default:
		/* RX, MAC, VLAN, offloads: not offered (a tap receives every
		 * frame its bridge sends; filtering is the host's job). */
		break;
	}
	return VIRTIO_NET_ERR;
}

void net_ctrl(struct net_dev *net, unsigned q)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *vq = &vd->vqs[q];
	struct virtq_chain *c = net->ctrl_chain;
	struct virtq_error err;
	bool pushed = false;
	int ret;

	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		uint8_t ack;

		if (c->out_len < 2 || c->out_len > 4096 || c->in_len < 1) {
			/* Not a request we could answer: hand it back unanswered. */
			net_drop(net, NET_DROP_CTRL, "no class and command, or no ack byte");
			virtq_push(vq, c->head, 0);
			pushed = true;
			continue;
		}
		ack = ctrl_one(net, c);
		iov_from_buf(c->iov + c->nr_out, c->nr_in, 0, &ack, 1);
		virtq_push(vq, c->head, 1);
		pushed = true;
	}
	virtio_dev_pop_done(vd, q, ret, &err, pushed);
}

void net_learn_addr(struct net_dev *net, const struct iovec *iov, unsigned nr, size_t frame_len)
{
	uint8_t f[14 + 40 + 24];
	size_t n = frame_len < sizeof(f) ? frame_len : sizeof(f);

	/* Called for every frame until both are known: look at the type
	 * first, copy the rest only for ARP and IPv6. */
	if (n < 42 || iov_to_buf(iov, nr, NET_HDR_LEN + 12, f + 12, 2) != 2 ||
	    !((f[12] == 0x08 && f[13] == 0x06) || (f[12] == 0x86 && f[13] == 0xdd)))
		return;
	if (iov_to_buf(iov, nr, NET_HDR_LEN, f, n) != n || memcmp(f + 6, net->mac, 6))
		return;
	/* ARP, Ethernet/IPv4, sender MAC ours, a sender address set. */
	if (f[12] == 0x08 && f[13] == 0x06 && f[14] == 0 && f[15] == 1 && f[16] == 0x08 &&
	    f[17] == 0 && !memcmp(f + 22, net->mac, 6) && memcmp(f + 28, "\0\0\0\0", 4)) {
		memcpy(net->guest_ip4, f + 28, 4);
		net->has_ip4 = true;
		return;
	}
	/* IPv6, ICMPv6 right after the fixed header, hop limit 255: a
	 * neighbour advertisement (its target is the guest's address) or the
	 * solicitation of duplicate address detection (source ::). */
	if (n < sizeof(f) || f[12] != 0x86 || f[13] != 0xdd || (f[14] >> 4) != 6 || f[20] != 58 ||
	    f[21] != 255)
		return;
	if (f[54] == 136 || (f[54] == 135 && !memcmp(f + 22, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16))) {
		if (f[62] == 0xff) /* a multicast target is nobody's address */
			return;
		memcpy(net->guest_ip6, f + 62, 16);
		net->has_ip6 = true;
	}
}

/* An unsolicited neighbour advertisement to all nodes (RFC 4861 7.2.6):
 * Override set, the target link-layer address option. 86 bytes. */
static size_t una_frame(const uint8_t mac[6], const uint8_t ip[16], uint8_t *buf)
{
	static const uint8_t all_nodes[16] = { 0xff, 0x02, [15] = 1 };
	uint8_t *ip6 = buf + 14, *icmp = ip6 + 40;
	uint32_t sum = 0;

	memset(buf, 0, 86);
	memcpy(buf, "\x33\x33\x00\x00\x00\x01", 6);
	memcpy(buf + 6, mac, 6);
	buf[12] = 0x86;
	buf[13] = 0xdd;
	ip6[0] = 0x60;
	ip6[5] = 32; /* payload length */
	ip6[6] = 58;
	ip6[7] = 255;
	memcpy(ip6 + 8, ip, 16);
	memcpy(ip6 + 24, all_nodes, 16);
	icmp[0] = 136;
	icmp[4] = 0x20; /* Override */
	memcpy(icmp + 8, ip, 16);
	icmp[24] = 2; /* target link-layer address */
	icmp[25] = 1;
	memcpy(icmp + 26, mac, 6);
	/* Checksum: pseudo-header (addresses, length 32, next header 58). */
	for (unsigned i = 0; i < 32; i += 2)
		sum += (uint32_t)(ip6[8 + i] << 8 | ip6[9 + i]);
	sum += 32 + 58;
	for (unsigned i = 0; i < 32; i += 2)
		sum += (uint32_t)(icmp[i] << 8 | icmp[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	icmp[2] = (uint8_t)(~sum >> 8);
	icmp[3] = (uint8_t)~sum;
	return 86;
}

size_t net_rarp_frame(const uint8_t mac[6], uint8_t *buf, size_t len)
{
	/* QEMU's announce frame: broadcast RARP "request reverse", sender and
	 * target hardware address both the guest's, padded to 60 bytes. */
	static const uint8_t tail[] = { 0x80, 0x35, 0, 1, 0x08, 0, 6, 4, 0, 3 };

	if (len < 60)
		return 0;
	memset(buf, 0, 60);
	memset(buf, 0xff, 6);
	memcpy(buf + 6, mac, 6);
	memcpy(buf + 12, tail, sizeof(tail));
	memcpy(buf + 22, mac, 6);
	memcpy(buf + 32, mac, 6);
	return 60;
}

/* A gratuitous ARP request: sender and target address both ip. */
static size_t garp_frame(const uint8_t mac[6], const uint8_t ip[4], uint8_t *buf)
{
	static const uint8_t arp[] = { 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1 };

	memset(buf, 0, 60);
	memset(buf, 0xff, 6);
	memcpy(buf + 6, mac, 6);
	memcpy(buf + 12, arp, sizeof(arp));
	memcpy(buf + 22, mac, 6);
	memcpy(buf + 28, ip, 4);
	memcpy(buf + 38, ip, 4);
	return 60;
}

static void announce_send(struct net_dev *net, uint8_t *frame, size_t len)
{
	struct virtio_net_hdr_v1 hdr = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	uint8_t tagged[96 + NET_VLAN_HLEN];
	struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { frame, len } };
	ssize_t n;

	if (net->vlan) {
		memcpy(tagged, frame, 12);
		tagged[12] = 0x81;
		tagged[13] = 0;
		tagged[14] = (uint8_t)(net->vlan >> 8);
		tagged[15] = (uint8_t)net->vlan;
		memcpy(tagged + 16, frame + 12, len - 12);
		iov[1].iov_base = tagged;
		iov[1].iov_len = len + NET_VLAN_HLEN;
	}
	n = net_be_writev(&net->q[0].be, iov, 2);
	if (n < 0)
		log_warn("%s: cannot send the announcement: %s", net->vd.name, strerror((int)-n));
}

void net_announce(struct net_dev *net)
{
	struct virtio_dev *vd = &net->vd;
	uint8_t frame[96];
	size_t len = net_rarp_frame(net->mac, frame, sizeof(frame));

	announce_send(net, frame, len);
	if (net->has_ip4) {
		len = garp_frame(net->mac, net->guest_ip4, frame);
		announce_send(net, frame, len);
	}
	if (net->has_ip6) {
		len = una_frame(net->mac, net->guest_ip6, frame);
		announce_send(net, frame, len);
	}
	net->announces++;
	if (virtio_dev_has(vd, VIRTIO_NET_F_GUEST_ANNOUNCE) &&
	    virtio_dev_has(vd, VIRTIO_NET_F_CTRL_VQ) && !vd->broken &&
	    (vd->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
		vd->config[STATUS_OFF] |= VIRTIO_NET_S_ANNOUNCE;
		vd->config_generation++;
		virtio_dev_notify_config(vd);
	}
	log_info("%s: announced %02x:%02x:%02x:%02x:%02x:%02x%s%s%s", vd->name, net->mac[0],
		 net->mac[1], net->mac[2], net->mac[3], net->mac[4], net->mac[5],
		 net->has_ip4 ? ", gratuitous ARP" : "",
		 net->has_ip6 ? ", unsolicited NA" : "",
		 vd->config[STATUS_OFF] & VIRTIO_NET_S_ANNOUNCE ? " and asked the guest to" : "");
}
