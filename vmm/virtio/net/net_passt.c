/* net_passt.c: virtio-net on passt's stream socket (vmm/backend/passt.c):
 * the NIC's creation, its link going down when the stream breaks, and its
 * teardown. Kept apart from net.c: net_be.c branches at its read and
 * write calls, net.c at its fd watch and teardown. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_net.h>

#include "backend/passt.h"
#include "config.h"
#include "log.h"
#include "virtio/net/net.h"
#include "vm.h"

/* The stream broke (lock held): report the link down to the driver. The
 * rx watch stops by itself (net_watch_fd checks passt->down). */
static void net_passt_down(void *opaque)
{
	struct net_dev *net = opaque;
	size_t off = offsetof(struct virtio_net_config, status);
	uint16_t status = 0;

	if (net->vd.config_len < off + sizeof(status))
		return;
	memcpy(net->vd.config + off, &status, sizeof(status));
	virtio_dev_notify_config(&net->vd);
}

int virtio_net_create_passt(struct vm *vm, const struct net_config *cfg, unsigned index)
{
	struct passt_stream *ps = calloc(1, sizeof(*ps));
	char *who = malloc(32);
	int fd = passt_parse_fd(cfg->passt_fd);
	struct net_dev *net;
	int ret;

	/* A duplicate, like a passed tap's: the passed number is closed once
	 * every device is up (main.c). */
	if (fd >= 0)
		fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (!ps || !who) {
		free(ps);
		free(who);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	snprintf(who, 32, "virtio-net%u", index);
	if (fd < 0) {
		log_err("%s: passt '%s' is not an open fd:N", who, cfg->passt_fd);
		free(ps);
		free(who);
		return -EINVAL;
	}
	if (cfg->queues > 1) {
		log_err("%s: passt's stream is one queue pair (queues=%u)", who, cfg->queues);
		close(fd);
		free(ps);
		free(who);
		return -EINVAL;
	}
	ret = passt_stream_init(ps, fd, who);
	if (!ret)
		ret = passt_stream_attach(ps, vm->loop, NULL);
	if (ret) {
		log_err("%s: passt socket fd %d: %s", who, fd, strerror(-ret));
		passt_stream_destroy(ps);
		free(ps);
		free(who);
		return ret;
	}
	/* No offloads, not a tap: the vnet header is zero on rx, dropped on tx. */
	ret = virtio_net_create_be(vm, cfg, index, &fd, 1, 0, false);
	if (ret) {
		ps->fd = -1; /* closed by the failed create */
		passt_stream_destroy(ps);
		free(ps);
		free(who);
		return ret;
	}
	/* The device just added is this NIC: its only pair reads the stream.
	 * The guest has not seen the device yet, so nothing reads it before. */
	net = (struct net_dev *)virtio_dev_of(vm->devices_tail);
	net->q[0].be.passt = ps;
	ps->lock = &net->vd.lock;
	ps->on_down = net_passt_down;
	ps->down_opaque = net;
	log_info("%s: on passt's stream (fd %d), no offloads", who, fd);
	return 0;
}

void net_passt_destroy(struct net_queue *nq)
{
	struct passt_stream *ps = nq->be.passt;

	passt_stream_destroy(ps); /* closes the socket be.fd names */
	nq->be.fd = -1;
	free((char *)ps->who);
	free(ps);
	nq->be.passt = NULL;
}
