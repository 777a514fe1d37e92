/* net.c: virtio-net on a tap: rx when the tap is readable and the guest has buffers, tx on kick. */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "backend/passt.h"
#include "backend/tap.h"
#include "conf/net.h"
#include "devtype.h"
#include "log.h"
#include "state/state.h"
#include "virtio/mmio.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"
#include "vm.h"

_Static_assert(sizeof(struct virtio_net_hdr_v1) == TAP_VNET_HDR_LEN, "tap header is v1");
_Static_assert(NET_MAX_PAIRS == CONF_NET_MAX_QUEUES, "queues= accepts what the device has");
_Static_assert(NET_NR_QUEUES <= VIRTIO_MAX_QUEUES, "pairs and the control queue fit");

/* The type this device registers (its queue count is the type's). */
extern const struct device_type devtype_virtio_net;

static const struct device_ops net_device_ops = VIRTIO_DEVICE_OPS("virtio-net");

static struct net_dev *net_of(struct virtio_dev *vd)
{
	return container_of(vd, struct net_dev, vd);
}

static void net_rx_cb(void *opaque, uint32_t events);

/* Watch the fd only while the guest has rx buffers: otherwise a readable
 * tap would wake the loop forever. Called on the I/O thread (or, in tests,
 * with the loop stopped). */
void net_watch_fd(struct net_queue *nq, bool on)
{
	struct net_dev *net = nq->net;

	if (on && nq->be.passt && nq->be.passt->down)
		on = false; /* a cut stream reads as EOF forever (net_passt.c) */
	if (on == nq->fd_watched)
		return;
	if (on) {
		if (evloop_add(net->vd.vm->loop, nq->be.fd, EPOLLIN, net_rx_cb, nq)) {
			log_err("%s: cannot watch the tap", net->vd.name);
			return;
		}
	} else {
		evloop_del(net->vd.vm->loop, nq->be.fd);
	}
	nq->fd_watched = on;
}

static void net_rx_cb(void *opaque, uint32_t events)
{
	struct net_queue *nq = opaque;

	pthread_mutex_lock(&nq->net->vd.lock);
	net_rx(nq);
	pthread_mutex_unlock(&nq->net->vd.lock);
}

void net_set_pairs(struct net_dev *net, unsigned n)
{
	for (unsigned p = 1; p < net->nr_pairs; p++) {
		struct net_queue *nq = &net->q[p];
		bool use = p < n;
		int ret;

		if (use != nq->detached)
			continue; /* already as wanted */
		ret = net_be_set_queue(&nq->be, use);
		if (ret)
			log_warn("%s: cannot %s tap queue %u: %s", net->vd.name,
				 use ? "attach" : "detach", p, strerror(-ret));
		nq->detached = !use;
		if (!use) {
			net_watch_fd(nq, false);
		} else {
			/* Its rings may still ask the driver not to kick (set
			 * while the pair was last in use): look at them now. */
			virtio_dev_requeue(&net->vd, 2 * p);
			virtio_dev_requeue(&net->vd, 2 * p + 1);
		}
	}
	net->active_pairs = n;
}

/* Send one guest frame (lock held). Returns false when the chain breaks
 * the rules badly enough to fail the device. */
static bool net_tx_one(struct net_queue *nq, const struct virtq_chain *c)
{
	struct net_dev *net = nq->net;
	struct virtio_dev *vd = &net->vd;
	struct virtio_net_hdr_v1 hdr;
	uint8_t l2[12 + NET_VLAN_HLEN + 2];
	struct iovec iov[VIRTQ_CHAIN_MAX + 2];
	size_t frame_len, skip;
	const char *why;
	unsigned nr = 0;
	ssize_t n;

	if (c->out_len < sizeof(hdr)) {
		virtio_dev_fail(vd, "tx chain %u shorter than the virtio-net header", c->head);
		return false;
	}
	frame_len = c->out_len - sizeof(hdr);
	/* The header is copied once: the guest cannot change it after the
	 * checks. */
	iov_to_buf(c->iov, c->nr_out, 0, &hdr, sizeof(hdr));
	if (frame_len < NET_ETH_HLEN) {
		net_drop(net, NET_DROP_TX_SHORT, NULL);
		return true;
	}
	if (frame_len > net_frame_max_tx(net)) {
		net_drop(net, NET_DROP_TX_LONG, NULL);
		return true;
	}
	why = net_hdr_check_tx(&hdr, frame_len, vd->driver_features);
	if (why) {
		net_drop(net, NET_DROP_TX_HDR, why);
		return true;
	}
	iov[nr].iov_base = &hdr;
	iov[nr++].iov_len = sizeof(hdr);
	skip = sizeof(hdr);
	if (net->vlan) {
		/* Access port: insert the tag after the MAC addresses. */
		iov_to_buf(c->iov, c->nr_out, sizeof(hdr), l2, 14);
		if (l2[12] == 0x81 && l2[13] == 0x00) {
			net_drop(net, NET_DROP_TX_VLAN, NULL);
			return true;
		}
		l2[12] = 0x81;
		l2[13] = 0x00;
		l2[14] = (uint8_t)(net->vlan >> 8);
		l2[15] = (uint8_t)net->vlan;
		if (!net_hdr_shift(&hdr, NET_VLAN_HLEN)) {
			net_drop(net, NET_DROP_TX_HDR, "offsets past 64 KiB with the tag");
			return true;
		}
		iov[nr].iov_base = l2;
		iov[nr++].iov_len = 12 + NET_VLAN_HLEN;
		skip += 12;
	}
	nr += iov_slice(c->iov, c->nr_out, skip, c->out_len - skip, iov + nr, VIRTQ_CHAIN_MAX);
	n = net_be_writev(&nq->be, iov, nr);
	if (n < 0) {
		/* Back end full or frame refused: drop, as a NIC would. */
		net_drop(net, NET_DROP_TX_IO, strerror((int)-n));
		return true;
	}
	net->tx_frames++;
	if (!net->has_ip4 || !net->has_ip6)
		net_learn_addr(net, c->iov, c->nr_out, frame_len);
	return true;
}

/* Send the guest's frames (lock held). Kicks stay off while frames keep
 * coming: each one is an exit for the guest and a wake-up for this
 * thread. Used entries are published in batches (one store of the index
 * the vCPU polls per NET_USED_BATCH frames), and after NET_TX_BUDGET frames
 * the queue goes to the back of the I/O loop, kicks still off, so that a
 * guest that keeps the ring full cannot starve receive or other devices. */
static void net_tx(struct net_queue *nq)
{
	struct net_dev *net = nq->net;
	struct virtio_dev *vd = &net->vd;
	unsigned qi = 2 * nq->pair + 1, sent = 0;
	struct virtq *vq = &vd->vqs[qi];
	struct virtq_chain *c = nq->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret;

	for (;;) {
		virtq_set_kicks(vq, false);
		while ((ret = virtq_pop(vq, c, &err)) > 0) {
			if (!net_tx_one(nq, c)) {
				virtq_flush(vq);
				return;
			}
			virtq_fill(vq, c->head, 0);
			pushed = true;
			if (++sent % NET_USED_BATCH == 0)
				virtq_flush(vq);
			if (sent >= NET_TX_BUDGET) {
				virtio_dev_requeue(vd, qi);
				goto out;
			}
		}
		if (ret < 0)
			break;
		virtq_flush(vq);
		virtq_set_kicks(vq, true);
		/* A frame published before kicks came back on has no kick. */
		if (!virtq_has_avail(vq))
			break;
	}
out:
	virtio_dev_pop_done(vd, qi, ret, &err, pushed);
}

/* Let the back end hand us what the driver can take (TUNSETOFFLOAD). */
static void net_sync_offloads(struct net_dev *net)
{
	int ret;

	if (net->offloads_set)
		return;
	for (unsigned p = 0; p < net->nr_pairs; p++) {
		ret = net_be_set_offload(&net->q[p].be, net_tun_flags(net->vd.driver_features));
		if (ret)
			log_warn("%s: cannot set the tap's offloads: %s (it delivers plain frames)",
				 net->vd.name, strerror(-ret));
	}
	net->offloads_set = true;
}

static void net_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct net_dev *net = net_of(vd);
	/* Without MQ the control queue is 2 whatever the pair count. */
	unsigned ctrl = virtio_dev_has(vd, VIRTIO_NET_F_MQ) ? 2 * net->nr_pairs : NET_CTRLQ;
	unsigned pair = q / 2;

	net_sync_offloads(net);
	if (q == ctrl)
		net_ctrl(net, q);
	else if (q > ctrl || pair >= net->active_pairs)
		return; /* a queue of a pair not in use: nothing to do */
	else if (q & 1)
		net_tx(&net->q[pair]);
	else
		net_rx(&net->q[pair]); /* new rx buffers: take what is pending, watch the tap */
}

static void net_reset(struct virtio_dev *vd)
{
	struct net_dev *net = net_of(vd);

	/* Nothing in flight: rx and tx complete synchronously. The fd watch
	 * goes away on the next rx wake-up, which finds the queue stopped.
	 * The next driver negotiates offloads anew. */
	net->offloads_set = false;
	net_set_pairs(net, 1);
	vd->config[offsetof(struct virtio_net_config, status)] &= (uint8_t)~VIRTIO_NET_S_ANNOUNCE;
}

#define NET_STATE_VERSION 3

static int net_save(struct virtio_dev *vd, struct state_writer *w)
{
	struct net_dev *net = net_of(vd);

	state_put_u32(w, NET_STATE_VERSION);
	state_put_u32(w, net->has_ip4);
	state_put_bytes(w, net->guest_ip4, 4);
	state_put_u32(w, net->active_pairs);
	state_put_u32(w, net->has_ip6);
	state_put_bytes(w, net->guest_ip6, 16);
	return 0;
}

static int net_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct net_dev *net = net_of(vd);
	uint32_t version = state_get_u32(r), pairs = 1;
	uint8_t want[6];

	if (version < 1 || version > NET_STATE_VERSION)
		return -EINVAL;
	if (version >= 2) {
		net->has_ip4 = state_get_u32(r) != 0;
		state_get_bytes(r, net->guest_ip4, 4);
	}
	if (version >= 3) {
		pairs = state_get_u32(r);
		net->has_ip6 = state_get_u32(r) != 0;
		state_get_bytes(r, net->guest_ip6, 16);
	}
	if (pairs < 1 || pairs > net->nr_pairs) {
		log_err("%s: saved %u queue pairs, this device has %u", vd->name, pairs,
			net->nr_pairs);
		return -EINVAL;
	}
	/* The config space is volatile (the announce bit); the MAC and MTU
	 * must still be this device's. */
	memcpy(want, net->mac, 6);
	if (memcmp(vd->config, want, 6) ||
	    le16toh(*(uint16_t *)(vd->config + offsetof(struct virtio_net_config, mtu))) !=
		    net->mtu) {
		log_err("%s: saved MAC or MTU differs from this device's", vd->name);
		return -EINVAL;
	}
	net_set_pairs(net, pairs);
	net->offloads_set = false;
	return 0;
}

static void net_destroy(struct virtio_dev *vd)
{
	struct net_dev *net = net_of(vd);

	for (unsigned p = 0; p < NET_MAX_PAIRS; p++) {
		struct net_queue *nq = &net->q[p];

		if (nq->fd_watched)
			evloop_del(vd->vm->loop, nq->be.fd);
		if (nq->be.passt)
			net_passt_destroy(nq); /* closes be.fd */
		if (nq->be.fd >= 0)
			close(nq->be.fd);
		free(nq->chain);
		free(nq->rxc);
		free(nq->rx_iov);
		free(nq->rx_io);
		free(nq->rx_spill);
		net_rx_coalesce_free(nq);
	}
	free(net->ctrl_chain);
}

static const struct virtio_dev_ops net_ops = {
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
	.destroy = net_destroy,
};

static bool net_queue_alloc(struct net_queue *nq)
{
	nq->chain = malloc(sizeof(*nq->chain));
	nq->rxc = calloc(NET_MRG_CHAINS, sizeof(*nq->rxc));
	nq->rx_iov = calloc(NET_RX_SEGS, sizeof(*nq->rx_iov));
	nq->rx_io = calloc(NET_RX_SEGS + 2, sizeof(*nq->rx_io));
	nq->rx_spill = malloc(NET_HDR_LEN + NET_GSO_MAX);
	return nq->chain && nq->rxc && nq->rx_iov && nq->rx_io && nq->rx_spill &&
	       net_rx_coalesce_init(nq) == 0;
}

int virtio_net_create_be(struct vm *vm, const struct net_config *cfg, unsigned index,
			 const int *fds, unsigned nr, unsigned offloads, bool is_tap)
{
	struct net_dev *net = calloc(1, sizeof(*net));
	struct virtio_net_config config;
	uint64_t features;
	char name[32];
	bool ok = true;
	int ret;

	snprintf(name, sizeof(name), "virtio-net%u", index);
	if (!net || nr < 1 || nr > NET_MAX_PAIRS) {
		for (unsigned p = 0; p < nr; p++)
			close(fds[p]);
		free(net);
		log_err("%s: %s", name, net ? "queue pairs out of range" : "out of memory");
		return net ? -EINVAL : -ENOMEM;
	}
	net->nr_pairs = nr;
	net->active_pairs = 1;
	for (unsigned p = 0; p < NET_MAX_PAIRS; p++) {
		net->q[p].net = net;
		net->q[p].pair = p;
		net->q[p].be.fd = p < nr ? fds[p] : -1;
		net->q[p].rx_timer_fd = -1;
		net->q[p].be.offloads = offloads;
		net->q[p].be.is_tap = is_tap;
	}
	net->mtu = cfg->mtu ? (uint16_t)cfg->mtu : NET_MTU_DEFAULT;
	net->vlan = (uint16_t)cfg->vlan;
	net->vlan_trunk = cfg->vlan_trunk;
	features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
		   (1ULL << VIRTIO_NET_F_MTU) | (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
		   (1ULL << VIRTIO_NET_F_CTRL_VQ) | (1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE) |
		   (nr > 1 ? 1ULL << VIRTIO_NET_F_MQ : 0) | net_offload_features(offloads);
	ret = virtio_dev_init(&net->vd, &net_device_ops, &net_ops, name, VIRTIO_ID_NET, features,
			      2 * nr + 1, NET_QUEUE_SIZE);
	for (unsigned p = 0; p < nr; p++)
		ok = net_queue_alloc(&net->q[p]) && ok;
	net->ctrl_chain = malloc(sizeof(*net->ctrl_chain));
	if (ret || !ok || !net->ctrl_chain) {
		ret = ret ? ret : -ENOMEM;
		log_err("%s: cannot initialise: %s", name, strerror(-ret));
		virtio_dev_destroy(&net->vd.dev);
		return ret;
	}
	/* Only pair 0 gets frames until the driver asks for more. */
	net->active_pairs = nr;
	net_set_pairs(net, 1);
	snprintf(net->vd.dev.id, sizeof(net->vd.dev.id), "net%u", index);
	memset(&config, 0, sizeof(config));
	if (cfg->has_mac)
		memcpy(config.mac, cfg->mac, sizeof(config.mac));
	else
		tap_derive_mac(cfg->tap, config.mac);
	memcpy(net->mac, config.mac, 6);
	config.status = htole16(VIRTIO_NET_S_LINK_UP);
	config.max_virtqueue_pairs = htole16((uint16_t)nr);
	config.mtu = htole16(net->mtu);
	net->vd.config_len = offsetof(struct virtio_net_config, speed);
	net->vd.config_volatile = true; /* status carries the announce bit; load checks MAC, MTU */
	memcpy(net->vd.config, &config, net->vd.config_len);
	return vm_add_device(vm, &net->vd.dev);
}

int virtio_net_create_fd(struct vm *vm, const struct net_config *cfg, unsigned index, int fd)
{
	bool is_tap;
	unsigned offloads = net_be_probe(fd, &is_tap);

	return virtio_net_create_be(vm, cfg, index, &fd, 1, offloads, is_tap);
}

int virtio_net_create(struct vm *vm, const struct net_config *cfg, unsigned index)
{
	int fds[NET_MAX_PAIRS];
	unsigned nr = cfg->queues > 1 ? cfg->queues : 1, offloads;
	char name[32];
	bool is_tap;
	int ret;

	if (cfg->passt_fd) /* passt's stream, not a tap (net_passt.c) */
		return virtio_net_create_passt(vm, cfg, index);
	snprintf(name, sizeof(name), "virtio-net%u", index);
	if (nr == 1) {
		fds[0] = tap_open(name, cfg->tap, cfg->tap_fd);
		if (fds[0] < 0)
			return fds[0];
		return virtio_net_create_fd(vm, cfg, index, fds[0]);
	}
	if (nr > NET_MAX_PAIRS) {
		log_err("%s: queues=%u: more queue pairs than the device has", name, nr);
		return -EINVAL;
	}
	/* By name, or one passed descriptor per queue (cellad's "fd:N+fd:M"). */
	ret = tap_open_queues(name, cfg->tap, cfg->tap_fd, fds, nr);
	if (ret)
		return ret;
	offloads = net_be_probe(fds[0], &is_tap);
	return virtio_net_create_be(vm, cfg, index, fds, nr, offloads, is_tap);
}

void virtio_net_announce(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		struct net_dev *net;

		if (strcmp(d->ops->type, "virtio-net"))
			continue;
		net = container_of(d, struct net_dev, vd.dev);
		pthread_mutex_lock(&net->vd.lock);
		net_announce(net);
		pthread_mutex_unlock(&net->vd.lock);
	}
}

static unsigned net_count(const struct vm_config *cfg)
{
	return cfg->nr_nets;
}

static int net_type_create(struct vm *vm, unsigned index, const void *config)
{
	return virtio_net_create(vm, &vm->cfg->nets[index], index);
}

const struct device_type devtype_virtio_net = {
	.name = "virtio-net",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = CONF_MAX_NICS,
	.nr_queues = NET_NR_QUEUES, /* rx, tx, ctrl */
	.gsis = 1,
	.mmio_windows = 1,
	.count = net_count,
	.create = net_type_create,
};
