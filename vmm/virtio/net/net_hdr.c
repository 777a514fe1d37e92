/* net_hdr.c: virtio-net's header rules: which offloads a guest may ask
 * for, bounds of its checksum and segmentation fields, the offload
 * features a back end allows, and frame size limits. Pure functions: the
 * unit tests and the fuzzer call them directly. */
#include <endian.h>
#include <linux/if_tun.h>

#include "log.h"
#include "virtio/net/net.h"

#define F(bit) (1ULL << (bit))

static bool has(uint64_t features, unsigned bit)
{
	return (features >> bit) & 1;
}

uint64_t net_offload_features(unsigned be)
{
	uint64_t f = 0;

	if (!(be & NET_BE_TUN_CSUM))
		return 0;
	/* Host side (guest -> back end): a tap takes any vnet header. */
	f |= F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM);
	if (be & NET_BE_TUN_TSO4)
		f |= F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO4);
	if (be & NET_BE_TUN_TSO6)
		f |= F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO6);
	if ((be & NET_BE_TUN_ECN) && (be & (NET_BE_TUN_TSO4 | NET_BE_TUN_TSO6)))
		f |= F(VIRTIO_NET_F_HOST_ECN) | F(VIRTIO_NET_F_GUEST_ECN);
	if (be & NET_BE_TUN_UFO)
		f |= F(VIRTIO_NET_F_HOST_UFO) | F(VIRTIO_NET_F_GUEST_UFO);
	return f;
}

unsigned net_tun_flags(uint64_t features)
{
	unsigned t = 0;

	if (!has(features, VIRTIO_NET_F_GUEST_CSUM))
		return 0; /* the tap's rule too: no segmentation without checksum offload */
	t |= TUN_F_CSUM;
	if (has(features, VIRTIO_NET_F_GUEST_TSO4))
		t |= TUN_F_TSO4;
	if (has(features, VIRTIO_NET_F_GUEST_TSO6))
		t |= TUN_F_TSO6;
	if (has(features, VIRTIO_NET_F_GUEST_ECN) && (t & (TUN_F_TSO4 | TUN_F_TSO6)))
		t |= TUN_F_TSO_ECN;
	if (has(features, VIRTIO_NET_F_GUEST_UFO))
		t |= TUN_F_UFO;
	return t;
}

size_t net_frame_max_tx(const struct net_dev *net)
{
	uint64_t f = net->vd.driver_features;

	if (has(f, VIRTIO_NET_F_HOST_TSO4) || has(f, VIRTIO_NET_F_HOST_TSO6) ||
	    has(f, VIRTIO_NET_F_HOST_UFO))
		return NET_GSO_MAX;
	return (size_t)net->mtu + NET_ETH_HLEN + NET_VLAN_HLEN;
}

size_t net_frame_max_rx(const struct net_dev *net)
{
	uint64_t f = net->vd.driver_features;

	if (has(f, VIRTIO_NET_F_GUEST_TSO4) || has(f, VIRTIO_NET_F_GUEST_TSO6) ||
	    has(f, VIRTIO_NET_F_GUEST_UFO))
		return NET_GSO_MAX;
	/* The tap's MTU may be larger than the one offered: allow a tag more. */
	return (size_t)net->mtu + NET_ETH_HLEN + NET_VLAN_HLEN;
}

const char *net_hdr_check_tx(struct virtio_net_hdr_v1 *h, size_t frame_len, uint64_t features)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	uint16_t start = le16toh(h->csum_start), off = le16toh(h->csum_offset);
	uint16_t hdr_len = le16toh(h->hdr_len), gso_size = le16toh(h->gso_size);

	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return "flags other than NEEDS_CSUM";
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (!has(features, VIRTIO_NET_F_CSUM))
			return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
		if ((size_t)start + off + 2 > frame_len || start < NET_ETH_HLEN)
			return "csum_start/csum_offset past the frame";
	}
	if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE) {
		/* Ignore stale segmentation fields of a plain frame. */
		h->gso_size = h->hdr_len = 0;
	} else {
		bool ok = (gso == VIRTIO_NET_HDR_GSO_TCPV4 && has(features, VIRTIO_NET_F_HOST_TSO4)) ||
			  (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has(features, VIRTIO_NET_F_HOST_TSO6)) ||
			  (gso == VIRTIO_NET_HDR_GSO_UDP && has(features, VIRTIO_NET_F_HOST_UFO));

		if (!ok)
			return "gso_type not negotiated";
		if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(features, VIRTIO_NET_F_HOST_ECN))
			return "GSO_ECN without VIRTIO_NET_F_HOST_ECN";
		if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
			return "segmentation without NEEDS_CSUM";
		if (!gso_size)
			return "gso_size 0";
		if (hdr_len > frame_len)
			return "hdr_len past the frame";
	}
	h->num_buffers = 0;
	return NULL;
}

bool net_hdr_shift(struct virtio_net_hdr_v1 *h, int delta)
{
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		int s = (int)le16toh(h->csum_start) + delta;

		if (s < NET_ETH_HLEN || s > 0xffff)
			return false;
		h->csum_start = htole16((uint16_t)s);
	}
	if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE && h->hdr_len) {
		int l = (int)le16toh(h->hdr_len) + delta;

		if (l < 0 || l > 0xffff)
			return false;
		h->hdr_len = htole16((uint16_t)l);
	}
	return true;
}

void net_drop(struct net_dev *net, enum net_drop why, const char *detail)
{
	static const char *const names[NET_DROP_MAX] = {
		[NET_DROP_TX_SHORT] = "tx frame shorter than an Ethernet header",
		[NET_DROP_TX_LONG] = "tx frame past the MTU",
		[NET_DROP_TX_HDR] = "tx vnet header malformed",
		[NET_DROP_TX_IO] = "tx refused by the back end",
		[NET_DROP_TX_VLAN] = "tx tagged frame on an access port",
		[NET_DROP_RX_SHORT] = "rx runt",
		[NET_DROP_RX_TRUNC] = "rx frame larger than the guest's buffers",
		[NET_DROP_RX_VLAN] = "rx frame not on the port's VLAN",
		[NET_DROP_RX_HDR] = "rx header cannot be passed on",
		[NET_DROP_CTRL] = "control request malformed",
	};

	net->dropped++;
	net->drops[why]++;
	if (!(net->drops_logged & (1u << why))) {
		net->drops_logged |= 1u << why;
		log_warn("%s: dropped: %s%s%s (further drops of this kind are counted, not logged)",
			 net->vd.name, names[why], detail ? ": " : "", detail ? detail : "");
	}
}
