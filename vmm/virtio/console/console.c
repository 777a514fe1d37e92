/* console.c: virtio-console (device id 3) with one port and no multiport:
 * receiveq 0, transmitq 1. What the guest transmits is appended to the file
 * given as path=FILE (--device virtio-console,path=FILE, or in the JSON
 * configuration {"type": "virtio-console", "path": FILE}); no input is
 * offered, so the guest's receive buffers simply wait. The transport saves
 * and loads the queues; the device keeps no other state. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/virtio_ids.h>

#include "fdspec.h"
#include "conf/schema.h"
#include "devtype.h"
#include "log.h"
#include "virtio/mmio.h"
#include "vm.h"

#define VCONSOLE_QUEUE_SIZE 64
#define VCONSOLE_RX 0
#define VCONSOLE_TX 1
#define VCONSOLE_MAX 4
/* struct virtio_console_config: cols, rows (u16), max_nr_ports, emerg_wr
 * (u32); meaningful only with features this device does not offer. */
#define VCONSOLE_CONFIG_LEN 12

struct vconsole_config {
	char *path;
};

struct vconsole {
	struct virtio_dev vd;  /* first: the transport frees it */
	int out_fd;
	struct virtq_chain *chain;
};

static const struct device_ops vconsole_device_ops = VIRTIO_DEVICE_OPS("virtio-console");

static struct vconsole *vconsole_of(struct virtio_dev *vd)
{
	return container_of(vd, struct vconsole, vd);
}

/* Write the whole chain's readable part; a short write of a regular file
 * means the disk is full: the rest is dropped (the guest cannot be told). */
static void vconsole_write(struct vconsole *con, const struct virtq_chain *c)
{
	for (unsigned i = 0; i < c->nr_out; i++) {
		const char *p = c->iov[i].iov_base;
		size_t left = c->iov[i].iov_len;

		while (left) {
			ssize_t n = write(con->out_fd, p, left);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				log_warn("%s: output lost: %s", con->vd.name,
					 n < 0 ? strerror(errno) : "short write");
				return;
			}
			p += n;
			left -= (size_t)n;
		}
	}
}

static void vconsole_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct vconsole *con = vconsole_of(vd);
	struct virtq *vq = &vd->vqs[q];
	struct virtq_error err;
	bool pushed = false;
	int ret;

	if (q != VCONSOLE_TX)
		return; /* receive buffers wait: there is no input */
	while ((ret = virtq_pop(vq, con->chain, &err)) > 0) {
		vconsole_write(con, con->chain);
		virtq_push(vq, con->chain->head, 0);
		pushed = true;
	}
	virtio_dev_pop_done(vd, q, ret, &err, pushed);
}

static void vconsole_destroy(struct virtio_dev *vd)
{
	struct vconsole *con = vconsole_of(vd);

	if (con->out_fd >= 0)
		close(con->out_fd);
	free(con->chain);
}

static const struct virtio_dev_ops vconsole_ops = {
	.queue_notify = vconsole_queue_notify,
	.destroy = vconsole_destroy,
};

extern const struct device_type devtype_virtio_console;

static int vconsole_create(struct vm *vm, unsigned index, const void *config)
{
	const struct vconsole_config *cfg = config;
	struct vconsole *con = calloc(1, sizeof(*con));
	char name[32];
	char why[256];
	int ret;

	snprintf(name, sizeof(name), "virtio-console%u", index);
	if (!con) {
		log_err("%s: out of memory", name);
		return -ENOMEM;
	}
	/* Appended, not truncated: a restored VM goes on writing after what
	 * the saved one wrote. */
	con->out_fd = fdspec_open(cfg->path, O_WRONLY | O_CREAT | O_APPEND | O_NOCTTY, 0644, 0, why,
				  sizeof(why));
	if (con->out_fd < 0) {
		ret = con->out_fd;
		log_err("%s: %s", name, why);
		free(con);
		return ret;
	}
	ret = virtio_dev_init(&con->vd, &vconsole_device_ops, &vconsole_ops, name,
			      VIRTIO_ID_CONSOLE, 0, devtype_virtio_console.nr_queues,
			      VCONSOLE_QUEUE_SIZE);
	con->chain = malloc(sizeof(*con->chain));
	if (ret || !con->chain) {
		ret = ret ? ret : -ENOMEM;
		log_err("%s: cannot initialise: %s", name, strerror(-ret));
		virtio_dev_destroy(&con->vd.dev);
		return ret;
	}
	con->vd.config_len = VCONSOLE_CONFIG_LEN; /* all zero */
	snprintf(con->vd.dev.id, sizeof(con->vd.dev.id), "console%u", index);
	return vm_add_device(vm, &con->vd.dev);
}

static const struct conf_key vconsole_keys[] = {
	{ .name = "path", .type = CONF_STRING, .offset = offsetof(struct vconsole_config, path),
	  .max = 1024, .syntax = "path=FILE", .flags = CONF_REQUIRED },
};

static const struct conf_schema vconsole_schema = {
	.name = "virtio-console", .keys = vconsole_keys, .nr_keys = ARRAY_SIZE(vconsole_keys),
};

const struct device_type devtype_virtio_console = {
	.name = "virtio-console",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = VCONSOLE_MAX,
	.nr_queues = 2, /* receiveq, transmitq */
	.gsis = 1,
	.mmio_windows = 1,
	.create = vconsole_create,
	.config_schema = &vconsole_schema,
	.config_size = sizeof(struct vconsole_config),
};
