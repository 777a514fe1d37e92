/* rng.c: virtio-rng: fills the guest's writable buffers from getrandom(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <linux/virtio_ids.h>

#include "devtype.h"
#include "log.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vm.h"

#define RNG_QUEUE_SIZE 64
/* Bound the work one request can cost the I/O thread. */
#define RNG_MAX_BYTES  65536

/* The type this device registers (its queue count is the type's). */
extern const struct device_type devtype_virtio_rng;

static const struct device_ops rng_device_ops = VIRTIO_DEVICE_OPS("virtio-rng");

/* Fill up to len bytes; returns how many were filled. */
static size_t rng_fill(void *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom((char *)p + done, len - done, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)n;
	}
	return done;
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtq *vq = &vd->vqs[q];
	struct virtq_chain *c = malloc(sizeof(*c));
	struct virtq_error err;
	bool pushed = false;
	int ret;

	if (!c) {
		log_err("%s: out of memory", vd->name);
		return;
	}
	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		uint32_t written = 0;

		for (unsigned i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
			size_t want = MIN(c->iov[i].iov_len, (size_t)(RNG_MAX_BYTES - written));
			size_t n = rng_fill(c->iov[i].iov_base, want);

			written += (uint32_t)n;
			if (n < c->iov[i].iov_len)
				break;
		}
		virtq_push(vq, c->head, written);
		pushed = true;
	}
	virtio_dev_pop_done(vd, q, ret, &err, pushed);
	free(c);
}

static const struct virtio_dev_ops rng_ops = {
	.queue_notify = rng_queue_notify,
};

int virtio_rng_create(struct vm *vm)
{
	struct virtio_dev *vd = calloc(1, sizeof(*vd));
	int ret;

	if (!vd) {
		log_err("virtio-rng: out of memory");
		return -ENOMEM;
	}
	ret = virtio_dev_init(vd, &rng_device_ops, &rng_ops, "virtio-rng", VIRTIO_ID_RNG, 0,
			      devtype_virtio_rng.nr_queues, RNG_QUEUE_SIZE);
	if (ret) {
		log_err("virtio-rng: cannot initialise: %s", strerror(-ret));
		virtio_dev_destroy(&vd->dev);
		return ret;
	}
	snprintf(vd->dev.id, sizeof(vd->dev.id), "rng0");
	return vm_add_device(vm, &vd->dev);
}

static unsigned rng_count(const struct vm_config *cfg)
{
	return cfg->rng ? 1 : 0;
}

static int rng_type_create(struct vm *vm, unsigned index, const void *config)
{
	return virtio_rng_create(vm);
}

const struct device_type devtype_virtio_rng = {
	.name = "virtio-rng",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = 1,
	.nr_queues = 1,
	.gsis = 1,
	.mmio_windows = 1,
	.count = rng_count,
	.create = rng_type_create,
};
