/* mmio_state.c: save and load of the virtio-mmio transport and its queues. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include <linux/virtio_config.h>

#include "log.h"
#include "state/state.h"
#include "virtio/mmio.h"
#include "vm.h"

#define VIRTIO_STATE_VERSION 1

int virtio_dev_save(struct device *dev, struct state_writer *w)
{
	struct virtio_dev *vd = virtio_dev_of(dev);
	int ret = 0;

	pthread_mutex_lock(&vd->lock);
	/* In-flight back-end work completes (and is pushed) before the rings
	 * are captured, so the stream holds no half-done request. */
	if (vd->ops->quiesce)
		vd->ops->quiesce(vd);
	state_put_u32(w, VIRTIO_STATE_VERSION);
	state_put_u32(w, vd->device_id);
	state_put_u64(w, vd->host_features);
	state_put_u64(w, vd->driver_features);
	state_put_u32(w, vd->device_features_sel);
	state_put_u32(w, vd->driver_features_sel);
	state_put_u32(w, vd->status);
	state_put_u32(w, vd->isr);
	state_put_u32(w, vd->config_generation);
	state_put_u32(w, vd->queue_sel);
	state_put_u8(w, vd->broken);
	state_put_u32(w, vd->nr_queues);
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		const struct virtq *vq = &vd->vqs[q];

		state_put_u16(w, vq->num);
		state_put_u8(w, vq->ready);
		state_put_u64(w, vq->desc_gpa);
		state_put_u64(w, vq->avail_gpa);
		state_put_u64(w, vq->used_gpa);
		state_put_u16(w, vq->last_avail_idx);
		state_put_u16(w, vq->used_idx);
	}
	state_put_u32(w, vd->config_len);
	state_put_bytes(w, vd->config, vd->config_len);
	if (vd->ops->save)
		ret = vd->ops->save(vd, w);
	pthread_mutex_unlock(&vd->lock);
	if (!ret)
		ret = state_writer_error(w);
	return ret;
}

/* Read the transport section into `t` (a scratch copy), checking that it was
 * written by a device configured like this one. */
static int load_transport(struct virtio_dev *vd, struct virtio_dev *t, struct state_reader *r)
{
	uint8_t config[VIRTIO_CONFIG_MAX];
	uint32_t config_len, nr_queues;
	uint64_t host_features;

	/* A state saved by an older cella-vm, whose device offered fewer
	 * features (and so had fewer queues or a shorter config space), loads:
	 * the guest negotiated among what that device offered, all of which
	 * this one still offers; the queues it never had stay unready. */
	if (state_get_u32(r) != VIRTIO_STATE_VERSION || state_get_u32(r) != vd->device_id)
		return -EINVAL;
	host_features = state_get_u64(r);
	if (host_features & ~vd->host_features)
		return -EINVAL;
	t->driver_features = state_get_u64(r);
	t->device_features_sel = state_get_u32(r);
	t->driver_features_sel = state_get_u32(r);
	t->status = state_get_u32(r);
	t->isr = state_get_u32(r);
	t->config_generation = state_get_u32(r);
	t->queue_sel = state_get_u32(r);
	t->broken = state_get_u8(r);
	nr_queues = state_get_u32(r);
	if (nr_queues > vd->nr_queues ||
	    (nr_queues < vd->nr_queues && host_features == vd->host_features))
		return -EINVAL;
	t->nr_queues = nr_queues;
	for (unsigned q = 0; q < nr_queues; q++) {
		struct virtq *vq = &t->vqs[q];

		vq->num = state_get_u16(r);
		vq->ready = state_get_u8(r);
		vq->desc_gpa = state_get_u64(r);
		vq->avail_gpa = state_get_u64(r);
		vq->used_gpa = state_get_u64(r);
		vq->last_avail_idx = state_get_u16(r);
		vq->used_idx = state_get_u16(r);
	}
	config_len = state_get_u32(r);
	if (config_len > vd->config_len ||
	    (config_len < vd->config_len && host_features == vd->host_features))
		return -EINVAL;
	state_get_bytes(r, config, config_len);
	/* The destination must be configured as the source was (same disk
	 * size, same MAC): the guest already read this config space. */
	if (!vd->config_volatile && memcmp(config, vd->config, config_len))
		return -EINVAL;
	if (t->driver_features & ~host_features)
		return -EINVAL;
	return state_reader_error(r);
}

int virtio_dev_load(struct device *dev, struct state_reader *r)
{
	struct virtio_dev *vd = virtio_dev_of(dev);
	struct virtio_dev *t = calloc(1, sizeof(*t));
	bool run;
	int ret;

	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&vd->lock);
	ret = load_transport(vd, t, r);
	if (ret)
		goto out;
	virtio_dev_reset_locked(vd);
	vd->driver_features = t->driver_features;
	vd->device_features_sel = t->device_features_sel;
	vd->driver_features_sel = t->driver_features_sel;
	vd->status = t->status;
	vd->isr = t->isr;
	vd->config_generation = t->config_generation;
	vd->queue_sel = t->queue_sel;
	vd->broken = t->broken;
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		struct virtq *vq = &vd->vqs[q];
		const struct virtq *s = &t->vqs[q];
		struct virtq_error err;

		if (q >= t->nr_queues)
			continue; /* an older device had no such queue: as reset left it */
		vq->num = s->num;
		vq->desc_gpa = s->desc_gpa;
		vq->avail_gpa = s->avail_gpa;
		vq->used_gpa = s->used_gpa;
		vq->event_idx = virtio_dev_has(vd, VIRTIO_RING_F_EVENT_IDX);
		vq->indirect = virtio_dev_has(vd, VIRTIO_RING_F_INDIRECT_DESC);
		if (s->ready && virtq_activate(vq, &vd->vm->mem, &err)) {
			log_err("%s: load: queue %u: %s", vd->name, q, err.what);
			ret = -EINVAL;
			goto out;
		}
		vq->last_avail_idx = s->last_avail_idx;
		vq->used_idx = s->used_idx;
		/* Unknown whether the source signalled: signal the next push. */
		vq->signalled_used_valid = false;
	}
	if (vd->ops->load)
		ret = vd->ops->load(vd, r);
	if (!ret)
		ret = state_reader_error(r);
out:
	if (ret) {
		/* Never leave a half-loaded device behind. */
		virtio_dev_reset_locked(vd);
		log_err("%s: cannot load state: stream does not match this device", vd->name);
	}
	run = !ret && (vd->status & VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&vd->lock);
	free(t);
	/* Resume where the source stopped: process anything already queued. */
	if (run)
		for (unsigned q = 0; q < vd->nr_queues; q++)
			if (eventfd_write(vd->kick_fd[q], 1) < 0) {
				/* counter overflow only: the loop still wakes */
			}
	return ret;
}
