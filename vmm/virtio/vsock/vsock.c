/* vsock.c: virtio-vsock: the device (queues, events, listener, type and
 * configuration); connections are in vsock_conn.c (design: vsock.h). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "conf/schema.h"
#include "devtype.h"
#include "evloop.h"
#include "fdspec.h"
#include "log.h"
#include "unixsock.h"
#include "virtio/vsock/vsock.h"
#include "vm.h"

#define VIRTIO_ID_VSOCK 19

extern const struct device_type devtype_virtio_vsock;

static const struct device_ops vsock_device_ops = VIRTIO_DEVICE_OPS("virtio-vsock");

/* The transmit queue: every packet checked, then acted on. */
static void vsock_tx(struct vsock *vs)
{
	struct virtio_dev *vd = &vs->vd;
	struct virtq *vq = &vd->vqs[VSOCK_TXQ];
	struct virtq_chain *c = vs->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret;

	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		uint8_t raw[VSOCK_HDR_LEN];
		struct vsock_hdr h;
		enum vsock_bad bad = VSOCK_OK;

		if (c->nr_in || c->out_len < VSOCK_HDR_LEN ||
		    iov_to_buf(c->iov, c->nr_out, 0, raw, sizeof(raw)) != sizeof(raw)) {
			bad = VSOCK_BAD_SHORT;
		} else {
			vsock_hdr_decode(raw, &h);
			bad = vsock_hdr_check(&h, vs->cid, c->out_len - VSOCK_HDR_LEN);
		}
		if (bad) {
			vs->n.bad[bad]++;
			if (vsock_may_warn(vs))
				log_warn("%s: malformed packet dropped (%s)", vd->name,
					 vsock_bad_names[bad]);
		} else {
			vsock_handle_tx(vs, &h, c);
		}
		virtq_push(vq, c->head, 0);
		pushed = true;
	}
	virtio_dev_pop_done(vd, VSOCK_TXQ, ret, &err, pushed);
}

/* The event queue: buffers wait until there is an event to put in one. */
static void vsock_events(struct vsock *vs)
{
	struct virtio_dev *vd = &vs->vd;
	struct virtq *vq = &vd->vqs[VSOCK_EVQ];
	struct virtq_chain *c = vs->chain;
	struct virtq_error err;
	bool pushed = false;
	int ret = 0;

	while (vs->reset_event_pending && (ret = virtq_pop(vq, c, &err)) > 0) {
		uint8_t ev[4] = { VSOCK_EVENT_TRANSPORT_RESET, 0, 0, 0 };

		if (c->nr_out || c->in_len < sizeof(ev)) {
			vs->n.bad_event++;
			virtq_push(vq, c->head, 0);
		} else {
			iov_from_buf(c->iov, c->nr_in, 0, ev, sizeof(ev));
			virtq_push(vq, c->head, sizeof(ev));
			vs->reset_event_pending = false;
			vs->n.transport_resets++;
		}
		pushed = true;
	}
	virtio_dev_pop_done(vd, VSOCK_EVQ, ret, &err, pushed);
}

static void vsock_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct vsock *vs = vsock_of(vd);

	if (q == VSOCK_TXQ)
		vsock_tx(vs);
	else if (q == VSOCK_EVQ)
		vsock_events(vs);
	/* New rx buffers, or room freed by what tx did. */
	vsock_rx_pump(vs);
}

static void vsock_listen_cb(void *opaque, uint32_t events)
{
	struct vsock *vs = opaque;

	pthread_mutex_lock(&vs->vd.lock);
	vsock_accept(vs);
	pthread_mutex_unlock(&vs->vd.lock);
}

static void vsock_timer_cb(void *opaque, uint32_t events)
{
	struct vsock *vs = opaque;
	uint64_t ticks;

	pthread_mutex_lock(&vs->vd.lock);
	if (read(vs->timer_fd, &ticks, sizeof(ticks)) < 0) {
		/* Nothing to drain. */
	}
	vsock_check_deadlines(vs);
	vsock_rx_pump(vs);
	pthread_mutex_unlock(&vs->vd.lock);
}

static int vsock_realize(struct virtio_dev *vd)
{
	struct vsock *vs = vsock_of(vd);
	int ret;

	ret = evloop_add(vd->vm->loop, vs->listen_fd, EPOLLIN, vsock_listen_cb, vs);
	if (ret)
		return ret;
	vs->listen_watched = true;
	ret = evloop_add(vd->vm->loop, vs->timer_fd, EPOLLIN, vsock_timer_cb, vs);
	if (ret)
		return ret;
	vs->timer_watched = true;
	return 0;
}

static void vsock_reset(struct virtio_dev *vd)
{
	struct vsock *vs = vsock_of(vd);

	vsock_reset_conns(vs);
	vs->reset_event_pending = false;
}

static void vsock_destroy(struct virtio_dev *vd)
{
	struct vsock *vs = vsock_of(vd);

	vsock_close_all(vs);
	if (vs->listen_watched)
		evloop_del(vd->vm->loop, vs->listen_fd);
	if (vs->timer_watched)
		evloop_del(vd->vm->loop, vs->timer_fd);
	if (vs->listen_fd >= 0)
		close(vs->listen_fd);
	if (vs->timer_fd >= 0)
		close(vs->timer_fd);
	if (vs->connector_fd >= 0)
		close(vs->connector_fd);
	free(vs->uds_path);
	free(vs->chain);
}

static const struct virtio_dev_ops vsock_ops = {
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.realize = vsock_realize,
	.save = vsock_save,
	.load = vsock_load,
	.destroy = vsock_destroy,
};

/* fd:N must be a listening stream socket; a path is bound here (the old
 * socket file replaced). -errno with the reason in why. */
static int vsock_open_listener(const char *uds, char *why, size_t len)
{
	int fd;

	if (fdspec_is_fd(uds, &fd)) {
		int type = 0, listening = 0;
		socklen_t sl = sizeof(type);
		struct stat st;
		int dup;

		if (fd < 0 || fstat(fd, &st) < 0) {
			snprintf(why, len, "uds=%s: not an open descriptor", uds);
			return -EBADF;
		}
		if (!S_ISSOCK(st.st_mode) ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 || type != SOCK_STREAM ||
		    (sl = sizeof(listening),
		     getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &sl) < 0) ||
		    !listening) {
			snprintf(why, len, "uds=%s: not a listening stream socket", uds);
			return -ENOTSOCK;
		}
		dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (dup < 0) {
			snprintf(why, len, "uds=%s: %s", uds, strerror(errno));
			return -errno;
		}
		close(fd);
		fd = dup;
	} else {
		fd = unix_listen(uds, 16, 0600);
		if (fd < 0) {
			snprintf(why, len, "cannot listen on %s: %s", uds, strerror(-fd));
			return fd;
		}
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		int err = -errno;

		snprintf(why, len, "uds=%s: %s", uds, strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

static int vsock_create(struct vm *vm, unsigned index, const void *config)
{
	const struct vsock_config *cfg = config;
	struct vsock *vs;
	char why[256];
	int ret, fd;

	if (cfg->cid < 3 || cfg->cid > 0xfffffffeull) {
		log_err("virtio-vsock: cid=%llu: the guest's CID must be 3 to 4294967294",
			(unsigned long long)cfg->cid);
		return -EINVAL;
	}
	if (cfg->connector && !fdspec_is_fd(cfg->connector, &fd)) {
		log_err("virtio-vsock: connector=%s: must be fd:N", cfg->connector);
		return -EINVAL;
	}
	vs = calloc(1, sizeof(*vs));
	if (!vs) {
		log_err("virtio-vsock: out of memory");
		return -ENOMEM;
	}
	vs->listen_fd = vs->connector_fd = vs->timer_fd = -1;
	for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
		vs->conns[i].vs = vs;
		vs->conns[i].fd = -1;
	}
	ret = virtio_dev_init(&vs->vd, &vsock_device_ops, &vsock_ops, "virtio-vsock",
			      VIRTIO_ID_VSOCK, 0, devtype_virtio_vsock.nr_queues, VSOCK_QUEUE_SIZE);
	if (ret) {
		log_err("virtio-vsock: cannot initialise: %s", strerror(-ret));
		virtio_dev_destroy(&vs->vd.dev);
		return ret;
	}
	vs->cid = cfg->cid;
	vs->connect_timeout_ns = (cfg->connect_timeout_ms ? cfg->connect_timeout_ms
							  : VSOCK_CONNECT_TIMEOUT_MS) * 1000000ull;
	vs->next_local_port = VSOCK_LOCAL_PORT_BASE;
	vs->chain = malloc(sizeof(*vs->chain));
	/* Made now: the sandbox allows no timerfd_create later. */
	vs->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (!fdspec_is_fd(cfg->uds, &fd))
		vs->uds_path = strdup(cfg->uds);
	if (!vs->chain || vs->timer_fd < 0 || (!fdspec_is_fd(cfg->uds, &fd) && !vs->uds_path)) {
		ret = vs->timer_fd < 0 ? -errno : -ENOMEM;
		log_err("virtio-vsock: cannot initialise: %s", strerror(-ret));
		virtio_dev_destroy(&vs->vd.dev);
		return ret;
	}
	vs->listen_fd = vsock_open_listener(cfg->uds, why, sizeof(why));
	if (vs->listen_fd < 0) {
		ret = vs->listen_fd;
		log_err("virtio-vsock: %s", why);
		virtio_dev_destroy(&vs->vd.dev);
		return ret;
	}
	if (cfg->connector) {
		int type = 0;
		socklen_t sl = sizeof(type);

		fdspec_is_fd(cfg->connector, &fd);
		if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 ||
		    type != SOCK_SEQPACKET) {
			log_err("virtio-vsock: connector=%s: not a SOCK_SEQPACKET socket",
				cfg->connector);
			virtio_dev_destroy(&vs->vd.dev);
			return -ENOTSOCK;
		}
		vs->connector_fd = fd;
	}
	{
		uint64_t le = htole64(vs->cid);

		memcpy(vs->vd.config, &le, sizeof(le));
		vs->vd.config_len = sizeof(le);
	}
	snprintf(vs->vd.dev.id, sizeof(vs->vd.dev.id), "vsock0");
	return vm_add_device(vm, &vs->vd.dev);
}

static const struct conf_key vsock_keys[] = {
	{ .name = "cid", .type = CONF_UINT, .offset = offsetof(struct vsock_config, cid),
	  .size = CONF_KEY_SIZE(struct vsock_config, cid), .min = 3, .max = 0xfffffffeull,
	  .syntax = "cid=N", .flags = CONF_REQUIRED },
	{ .name = "connect_timeout_ms", .type = CONF_UINT,
	  .offset = offsetof(struct vsock_config, connect_timeout_ms),
	  .size = CONF_KEY_SIZE(struct vsock_config, connect_timeout_ms), .min = 100,
	  .max = 600000, .syntax = "connect_timeout_ms=MS" },
	{ .name = "connector", .type = CONF_STRING,
	  .offset = offsetof(struct vsock_config, connector), .max = 32,
	  .syntax = "connector=fd:N" },
	{ .name = "uds", .type = CONF_STRING, .offset = offsetof(struct vsock_config, uds),
	  .max = 107, .syntax = "uds=PATH", .flags = CONF_REQUIRED },
};

static const struct conf_schema vsock_schema = {
	.name = "virtio-vsock", .keys = vsock_keys, .nr_keys = ARRAY_SIZE(vsock_keys),
};

json_t *vsock_status_json(struct vm *vm);

const struct device_type devtype_virtio_vsock = {
	.name = "virtio-vsock",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = 1,
	.nr_queues = VSOCK_NR_QUEUES,
	.gsis = 1,
	.mmio_windows = 1,
	.create = vsock_create,
	.config_schema = &vsock_schema,
	.config_size = sizeof(struct vsock_config),
	.status_key = "vsock",
	.status = vsock_status_json,
};
