/* net_rx.c: virtio-net receive: frames from the back end into the guest's
 * rx buffers, one chain per frame or, with VIRTIO_NET_F_MRG_RXBUF, as many
 * as the frame needs; offload headers checked against what the driver
 * negotiated; the access VLAN's tag checked and removed. Zero copy except
 * the header (and the MAC addresses when a tag is removed). */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/net/net.h"

enum rx_result { RX_DONE, RX_AGAIN, RX_NOBUF, RX_BROKEN };

/* With a tag to strip, the back end's first bytes (header, both MAC
 * addresses, the tag) land in host memory; the rest goes straight to the
 * guest right after where the MAC addresses will be copied. */
#define RX_HEAD_TAGGED (NET_HDR_LEN + 12 + NET_VLAN_HLEN)

static bool has(const struct net_dev *net, unsigned bit)
{
	return virtio_dev_has(&net->vd, bit);
}

/* Is the back end's header one this driver may be handed? Fixes it up for
 * a removed tag. */
static bool rx_header_ok(struct net_dev *net, struct virtio_net_hdr_v1 *h, bool stripped)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

	if (h->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return false;
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(net, VIRTIO_NET_F_GUEST_CSUM))
		return false;
	if (gso != VIRTIO_NET_HDR_GSO_NONE &&
	    !((gso == VIRTIO_NET_HDR_GSO_TCPV4 && has(net, VIRTIO_NET_F_GUEST_TSO4)) ||
	      (gso == VIRTIO_NET_HDR_GSO_TCPV6 && has(net, VIRTIO_NET_F_GUEST_TSO6)) ||
	      (gso == VIRTIO_NET_HDR_GSO_UDP && has(net, VIRTIO_NET_F_GUEST_UFO))))
		return false;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(net, VIRTIO_NET_F_GUEST_ECN))
		return false;
	if (!has(net, VIRTIO_NET_F_GUEST_CSUM))
		h->flags = 0; /* DATA_VALID means nothing to this driver */
	return !stripped || net_hdr_shift(h, -NET_VLAN_HLEN);
}

static void rx_giveback(struct virtq *vq, unsigned nc)
{
	while (nc--)
		virtq_unpop(vq);
}

/* Receive one frame. */
static enum rx_result rx_one(struct net_queue *nq, struct virtq_error *err)
{
	struct net_dev *net = nq->net;
	unsigned qi = 2 * nq->pair;
	struct virtq *vq = &net->vd.vqs[qi];
	bool mrg = has(net, VIRTIO_NET_F_MRG_RXBUF), tagged = net->vlan != 0;
	size_t need = NET_HDR_LEN + net_frame_max_rx(net), space = 0, head, guest_len;
	unsigned nc = 0, max_chains = mrg ? NET_MRG_CHAINS : 1, nseg = 0, nr, used = 0;
	uint8_t first[RX_HEAD_TAGGED];
	struct virtio_net_hdr_v1 *h = (struct virtio_net_hdr_v1 *)first;
	struct iovec *io = nq->rx_io;
	ssize_t len;
	int ret;

	/* Gather chains until the largest frame fits, within IOV_MAX. */
	while (nc < max_chains && space < need) {
		struct virtq_chain *c = &nq->rxc[nc];

		ret = virtq_pop(vq, c, err);
		if (ret < 0) {
			rx_giveback(vq, nc);
			return RX_BROKEN;
		}
		if (ret == 0)
			break;
		if (c->in_len < NET_HDR_LEN) {
			/* Cannot hold even a header: hand it back empty. */
			virtq_push(vq, c->head, 0);
			virtio_dev_maybe_notify(&net->vd, qi);
			continue;
		}
		if (nseg + c->nr_in > NET_RX_SEGS) {
			virtq_unpop(vq);
			break;
		}
		memcpy(nq->rx_iov + nseg, c->iov + c->nr_out, c->nr_in * sizeof(struct iovec));
		nseg += c->nr_in;
		space += c->in_len;
		nc++;
	}
	if (!nc)
		return RX_NOBUF;

	head = tagged ? RX_HEAD_TAGGED : NET_HDR_LEN;
	io[0].iov_base = first;
	io[0].iov_len = head;
	/* The guest part starts after the header (and the MAC addresses). */
	nr = 1 + iov_slice(nq->rx_iov, nseg, head - (tagged ? NET_VLAN_HLEN : 0),
			   space - (head - (tagged ? NET_VLAN_HLEN : 0)), io + 1, NET_RX_SEGS);
	if (space < need) {
		/* Catch the tail of a frame larger than the buffers, to drop it
		 * whole rather than hand the guest a cut one. */
		io[nr].iov_base = nq->rx_spill;
		io[nr].iov_len = NET_HDR_LEN + NET_GSO_MAX;
		nr++;
	}
	len = net_be_readv(&nq->be, io, nr);
	if (len == -EAGAIN || len == -EINTR) {
		rx_giveback(vq, nc);
		return RX_AGAIN;
	}
	if (len < 0) {
		rx_giveback(vq, nc);
		net_drop(net, len == -EFAULT ? NET_DROP_RX_TRUNC : NET_DROP_RX_SHORT,
			 strerror((int)-len));
		return len == -EFAULT || len == -EINVAL || len == -EMSGSIZE ? RX_DONE : RX_AGAIN;
	}
	guest_len = (size_t)len - (tagged ? NET_VLAN_HLEN : 0);
	if ((size_t)len < head || (size_t)len < NET_HDR_LEN + NET_ETH_HLEN) {
		rx_giveback(vq, nc);
		net_drop(net, NET_DROP_RX_SHORT, NULL);
		return RX_DONE;
	}
	if (guest_len > space) {
		rx_giveback(vq, nc);
		net_drop(net, NET_DROP_RX_TRUNC, NULL);
		return RX_DONE;
	}
	if (tagged) {
		const uint8_t *tag = first + NET_HDR_LEN + 12;
		uint16_t vid = (uint16_t)((tag[2] << 8 | tag[3]) & 0x0fff);

		if (tag[0] != 0x81 || tag[1] != 0x00 || vid != net->vlan) {
			rx_giveback(vq, nc);
			net_drop(net, NET_DROP_RX_VLAN, NULL);
			return RX_DONE;
		}
	}
	if (!rx_header_ok(net, h, tagged)) {
		rx_giveback(vq, nc);
		net_drop(net, NET_DROP_RX_HDR, NULL);
		return RX_DONE;
	}
	/* Which chains the frame filled. */
	{
		size_t left = guest_len;

		while (used < nc && left) {
			size_t n = nq->rxc[used].in_len < left ? nq->rxc[used].in_len : left;

			left -= n;
			used++;
		}
	}
	h->num_buffers = htole16((uint16_t)used);
	iov_from_buf(nq->rx_iov, nseg, 0, first, head - (tagged ? NET_VLAN_HLEN : 0));
	{
		size_t left = guest_len;

		/* Published by net_rx, a batch at a time. */
		for (unsigned i = 0; i < used; i++) {
			uint32_t n = nq->rxc[i].in_len < left ? nq->rxc[i].in_len : (uint32_t)left;

			virtq_fill(vq, nq->rxc[i].head, n);
			left -= n;
		}
	}
	rx_giveback(vq, nc - used);
	net->rx_frames++;
	return RX_DONE;
}

/* Kicks stay off while the device has buffers and watches the back end:
 * new buffers are found when the next frame comes. They come back on only
 * when the ring is empty, which is when the device needs to hear of new
 * buffers. */
void net_rx(struct net_queue *nq)
{
	struct net_dev *net = nq->net;
	struct virtio_dev *vd = &net->vd;
	unsigned qi = 2 * nq->pair;
	struct virtq *vq = &vd->vqs[qi];
	struct virtq_error err = { 0 };
	enum rx_result r = RX_AGAIN;
	uint16_t used_before = vq->used_idx;
	unsigned n = 0, tries = 0;

	if (!virtio_dev_running(vd, qi) || nq->pair >= net->active_pairs) {
		virtq_set_kicks(vq, true);
		net_watch_fd(nq, false);
		return;
	}
	virtq_set_kicks(vq, false);
	while (n < NET_BURST && tries++ < 2 * NET_BURST) {
		r = rx_one(nq, &err);
		if (r == RX_DONE) {
			if (++n % NET_USED_BATCH == 0)
				virtq_flush(vq);
			continue;
		}
		if (r != RX_NOBUF)
			break;
		/* Out of buffers: ask for a kick, then look once more (buffers
		 * posted before the driver saw the flag came without one). */
		virtq_set_kicks(vq, true);
		if (!virtq_has_avail(vq))
			break;
		virtq_set_kicks(vq, false);
	}
	if (r == RX_BROKEN)
		virtio_dev_fail(vd, "rx queue %u: %s (0x%llx)", qi, err.what,
				(unsigned long long)err.value);
	/* No buffers left (or broken): stop watching until the next rx kick.
	 * The back end emptied after a busy turn: look again on a timer. */
	net_watch_fd(nq, (r == RX_DONE || r == RX_AGAIN) &&
			 !(r == RX_AGAIN && net_rx_coalesce(nq, n)));
	if (!nq->fd_watched && !nq->rx_waiting)
		virtq_set_kicks(vq, true); /* not watching: only a kick brings us back */
	if (vq->used_idx != used_before)
		virtio_dev_maybe_notify(vd, qi);
}
