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
#include "devtype.h"
#include "log.h"
#include "state/state.h"
#include "virtio/mmio.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"
#include "vm.h"

_Static_assert(sizeof(struct virtio_net_hdr_v1) == TAP_VNET_HDR_LEN, "tap header is v1");

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
static void net_watch_fd(struct net_dev *net, bool on)
{
	if (on && net->passt && net->passt->down)
		on = false; /* a cut stream reads as EOF forever */
	if (on == net->fd_watched)
		return;
	if (on) {
		if (evloop_add(net->vd.vm->loop, net->fd, EPOLLIN, net_rx_cb, net)) {
			log_err("%s: cannot watch the tap", net->vd.name);
			return;
		}
	} else {
		evloop_del(net->vd.vm->loop, net->fd);
	}
	net->fd_watched = on;
}

/* Move frames from the fd into rx buffers (lock held). */
static void net_rx(struct net_dev *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *vq = &vd->vqs[NET_RXQ];
	struct virtq_chain *c = net->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret = 0;

	if (!virtio_dev_running(vd, NET_RXQ)) {
		net_watch_fd(net, false);
		return;
	}
	for (unsigned n = 0; n < NET_BURST; n++) {
		const struct iovec *in = &c->iov[0];
		uint16_t one = htole16(1);
		ssize_t len;

		ret = virtq_pop(vq, c, &err);
		if (ret <= 0)
			break;
		in = &c->iov[c->nr_out];
		if (c->in_len < sizeof(struct virtio_net_hdr_v1)) {
			/* Cannot hold even a header: hand it back empty. */
			virtq_push(vq, c->head, 0);
			pushed = true;
			continue;
		}
		len = net->passt ? passt_readv(net->passt, in, c->nr_in, sizeof(struct virtio_net_hdr_v1))
				 : readv(net->fd, in, (int)c->nr_in);
		if (len < 0) {
			virtq_unpop(vq);
			if (errno != EAGAIN && errno != EINTR)
				log_debug("%s: rx read failed: %s", vd->name, strerror(errno));
			break;
		}
		if ((size_t)len < sizeof(struct virtio_net_hdr_v1)) {
			virtq_unpop(vq); /* runt: drop it, keep the buffer */
			net->dropped++;
			continue;
		}
		/* Without MRG_RXBUF every frame fits one buffer: num_buffers = 1. */
		iov_from_buf(in, c->nr_in, offsetof(struct virtio_net_hdr_v1, num_buffers), &one,
			     sizeof(one));
		virtq_push(vq, c->head, (uint32_t)len);
		net->rx_frames++;
		pushed = true;
	}
	if (ret < 0)
		virtio_dev_fail(vd, "rx queue: %s (0x%llx)", err.what,
				(unsigned long long)err.value);
	/* No buffers left (or broken): stop watching until the next rx kick. */
	net_watch_fd(net, ret > 0);
	if (pushed)
		virtio_dev_maybe_notify(vd, NET_RXQ);
}

static void net_rx_cb(void *opaque, uint32_t events)
{
	struct net_dev *net = opaque;

	pthread_mutex_lock(&net->vd.lock);
	net_rx(net);
	pthread_mutex_unlock(&net->vd.lock);
}

/* Send the guest's frames (lock held). */
static void net_tx(struct net_dev *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *vq = &vd->vqs[NET_TXQ];
	struct virtq_chain *c = net->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret;

	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		/* No offloads were negotiated: whatever header the guest wrote,
		 * the host gets a plain one. */
		struct virtio_net_hdr_v1 hdr = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
		struct iovec iov[VIRTQ_CHAIN_MAX + 1];
		unsigned nr;

		if (c->out_len < sizeof(hdr)) {
			virtio_dev_fail(vd, "tx chain %u shorter than the virtio-net header",
					c->head);
			return;
		}
		iov[0].iov_base = &hdr;
		iov[0].iov_len = sizeof(hdr);
		nr = iov_slice(c->iov, c->nr_out, sizeof(hdr), c->out_len - sizeof(hdr), iov + 1,
			       VIRTQ_CHAIN_MAX);
		if ((net->passt ? passt_writev(net->passt, iov, nr + 1, sizeof(hdr))
				: writev(net->fd, iov, (int)nr + 1)) < 0) {
			net->dropped++; /* tap full or frame refused: drop, as a NIC would */
			log_debug("%s: tx write failed: %s", vd->name, strerror(errno));
		} else {
			net->tx_frames++;
		}
		virtq_push(vq, c->head, 0);
		pushed = true;
	}
	if (ret < 0)
		virtio_dev_fail(vd, "tx queue: %s (0x%llx)", err.what,
				(unsigned long long)err.value);
	if (pushed)
		virtio_dev_maybe_notify(vd, NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct net_dev *net = net_of(vd);

	if (q == NET_TXQ) {
		net_tx(net);
	} else {
		/* New rx buffers: take what is pending, then watch the tap. */
		net_rx(net);
	}
}

static void net_reset(struct virtio_dev *vd)
{
	/* Nothing in flight: rx and tx complete synchronously. The fd watch
	 * goes away on the next rx wake-up, which finds the queue stopped. */
}

static int net_save(struct virtio_dev *vd, struct state_writer *w)
{
	state_put_u32(w, 1);
	return 0;
}

static int net_load(struct virtio_dev *vd, struct state_reader *r)
{
	return state_get_u32(r) == 1 ? 0 : -EINVAL;
}

static void net_destroy(struct virtio_dev *vd)
{
	struct net_dev *net = net_of(vd);

	if (net->fd_watched)
		evloop_del(vd->vm->loop, net->fd);
	if (net->passt)
		net_passt_destroy(net); /* closes fd */
	if (net->fd >= 0)
		close(net->fd);
	free(net->chain);
}

static const struct virtio_dev_ops net_ops = {
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
	.destroy = net_destroy,
};

int virtio_net_create_fd(struct vm *vm, const struct net_config *cfg, unsigned index, int fd)
{
	return virtio_net_create_be(vm, cfg, index, fd, NULL);
}

int virtio_net_create_be(struct vm *vm, const struct net_config *cfg, unsigned index, int fd,
			 struct passt_stream *passt)
{
	struct net_dev *net = calloc(1, sizeof(*net));
	struct virtio_net_config config;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "virtio-net%u", index);
	if (!net) {
		close(fd);
		log_err("%s: out of memory", name);
		return -ENOMEM;
	}
	net->fd = fd;
	if ((net->passt = passt))
		net_passt_bind(net);
	ret = virtio_dev_init(&net->vd, &net_device_ops, &net_ops, name, VIRTIO_ID_NET,
			      (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS),
			      devtype_virtio_net.nr_queues, NET_QUEUE_SIZE);
	net->chain = malloc(sizeof(*net->chain));
	if (ret || !net->chain) {
		ret = ret ? ret : -ENOMEM;
		log_err("%s: cannot initialise: %s", name, strerror(-ret));
		virtio_dev_destroy(&net->vd.dev);
		return ret;
	}
	snprintf(net->vd.dev.id, sizeof(net->vd.dev.id), "net%u", index);
	memset(&config, 0, sizeof(config));
	if (cfg->has_mac)
		memcpy(config.mac, cfg->mac, sizeof(config.mac));
	else
		tap_derive_mac(cfg->tap, config.mac);
	config.status = htole16(VIRTIO_NET_S_LINK_UP);
	net->vd.config_len = offsetof(struct virtio_net_config, max_virtqueue_pairs);
	memcpy(net->vd.config, &config, net->vd.config_len);
	return vm_add_device(vm, &net->vd.dev);
}

int virtio_net_create(struct vm *vm, const struct net_config *cfg, unsigned index)
{
	char name[32];
	int fd;

	if (cfg->passt_fd)
		return virtio_net_create_passt(vm, cfg, index);
	snprintf(name, sizeof(name), "virtio-net%u", index);
	fd = tap_open(name, cfg->tap, cfg->tap_fd);
	if (fd < 0)
		return fd;
	return virtio_net_create_fd(vm, cfg, index, fd);
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
	.nr_queues = 2, /* rx, tx */
	.gsis = 1,
	.mmio_windows = 1,
	.count = net_count,
	.create = net_type_create,
};
