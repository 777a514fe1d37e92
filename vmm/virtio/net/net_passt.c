/* net_passt.c: virtio-net on passt's stream socket (vmm/backend/passt.c):
 * the NIC's creation, its link going down when the stream breaks, and its
 * teardown. Kept apart from net.c, which only branches at its read and
 * write sites. */
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
 * rx watch stops by itself (net.c checks passt->down). */
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
	int ret;

	/* A duplicate, like a passed tap's: the passed number is closed once
	 * every device is up (main.c), and a device may be made again. */
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
	ret = virtio_net_create_be(vm, cfg, index, fd, ps);
	if (ret)
		return ret; /* net_destroy released the stream */
	log_info("%s: on passt's stream (fd %d), no offloads", who, fd);
	return 0;
}

/* Called by virtio_net_create_be once the device exists. */
void net_passt_bind(struct net_dev *net)
{
	net->passt->lock = &net->vd.lock;
	net->passt->on_down = net_passt_down;
	net->passt->down_opaque = net;
}

void net_passt_destroy(struct net_dev *net)
{
	struct passt_stream *ps = net->passt;

	passt_stream_destroy(ps); /* closes the socket net->fd names */
	net->fd = -1;
	free((char *)ps->who);
	free(ps);
	net->passt = NULL;
}
