/* blk_ctl.c: virtio-blk storage-loss handling (stall, pause, retry, resume)
 * and the control-socket operations (status, set-qos, flush, disk-switch). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_ctl.h"
#include "virtio/blk/blk_export.h"
#include "vm.h"

#define BLK_RETRY_FIRST_MS 1000
#define BLK_RETRY_MAX_MS   8000

/* Errors that mean the storage, not the request, is at fault: the request
 * is kept and retried instead of failing in the guest. */
bool blk_storage_error(int err)
{
	switch (-err) {
	case EIO:
	case ENOSPC:
	case EDQUOT:
	case ENODEV:
	case ENXIO:
	case ENOMEDIUM:
	case ESTALE:
	case ETIMEDOUT:
	case ENOLINK:
	case EREMOTEIO:
	case EROFS:
		return true;
	default:
		return false;
	}
}

static void blk_reason(const struct blk_dev *blk, char *buf, size_t len)
{
	snprintf(buf, len, "storage: %s: ", blk->id);
}

void blk_stall(struct blk_dev *blk, int err, const char *what)
{
	char reason[256];
	size_t n;

	blk->stat_stalls++;
	blk->recovering = false;
	if (!blk->stall_err)
		log_warn("%s: %s failed: %s; requests held, VM paused, retrying", blk->vd.name,
			 what, strerror(-err));
	blk->stall_err = err;
	snprintf(blk->error, sizeof(blk->error), "%s", strerror(-err));
	blk_reason(blk, reason, sizeof(reason));
	n = strlen(reason);
	snprintf(reason + n, sizeof(reason) - n, "%s", strerror(-err));
	vm_pause_for(blk->vd.vm, reason);
	blk->retry_ms = blk->retry_ms ? MIN(blk->retry_ms * 2, BLK_RETRY_MAX_MS)
				      : BLK_RETRY_FIRST_MS;
	blk_arm_timer(blk, (uint64_t)blk->retry_ms * 1000000ULL);
}

void blk_check_recovered(struct blk_dev *blk)
{
	char prefix[64];

	if (!blk->recovering || blk->stall_err || blk->inflight_reqs || blk->meta_wait)
		return;
	blk->recovering = false;
	blk->retry_ms = 0;
	log_info("%s: storage works again (%s before); resuming", blk->vd.name, blk->error);
	blk->error[0] = 0;
	snprintf(prefix, sizeof(prefix), "storage: %s:", blk->id);
	vm_resume_if(blk->vd.vm, prefix);
}

/* Lock held. Try the held requests again. */
static void blk_retry_locked(struct blk_dev *blk)
{
	if (!blk->stall_err)
		return;
	blk->stat_retries++;
	if (!blk->disk) { /* a failed disk-switch left no image */
		blk_stall(blk, -EIO, "retry without an image");
		return;
	}
	blk->stall_err = 0;
	blk->recovering = true;
	blk_dispatch(blk);
	blk_check_recovered(blk);
}

void blk_timer_cb(void *opaque, uint32_t events)
{
	struct blk_dev *blk = opaque;
	uint16_t used_before;
	uint64_t v;

	(void)events;
	if (read(blk->timer_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return;
	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	blk->timer_armed = false;
	if (blk->stall_err)
		blk_retry_locked(blk);
	else
		blk_dispatch(blk);
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
	pthread_mutex_unlock(&blk->vd.lock);
}

static struct blk_dev *blk_of_dev(struct device *dev)
{
	return container_of(virtio_dev_of(dev), struct blk_dev, vd);
}

static bool virtio_blk_exporting_locked(struct blk_dev *blk)
{
	struct blk_export_status st;

	blk_export_get_status(blk, &st);
	return !strcmp(st.state, "running");
}

struct device *virtio_blk_next(struct vm *vm, struct device *prev)
{
	for (struct device *d = prev ? prev->next : vm->devices; d; d = d->next)
		if (!strcmp(d->ops->type, "virtio-blk"))
			return d;
	return NULL;
}

struct device *virtio_blk_find(struct vm *vm, const char *id)
{
	for (struct device *d = virtio_blk_next(vm, NULL); d; d = virtio_blk_next(vm, d))
		if (!strcmp(blk_of_dev(d)->id, id) || !strcmp(d->id, id))
			return d;
	return NULL;
}

void virtio_blk_get_status(struct device *dev, struct blk_status *st)
{
	struct blk_dev *blk = blk_of_dev(dev);

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&blk->vd.lock);
	snprintf(st->id, sizeof(st->id), "%s", blk->id);
	snprintf(st->path, sizeof(st->path), "%s", blk->path);
	st->format = !blk->disk ? "none" : disk_format_of(blk->disk) == DISK_FMT_QCOW2 ? "qcow2"
										: "raw";
	st->qos = blk->qos_cfg;
	snprintf(st->error, sizeof(st->error), "%s", blk->error);
	st->stalled = blk->stall_err != 0;
	st->readonly = blk->readonly;
	st->cbt = blk->cbt != NULL;
	st->qos_admitted = blk->qos.admitted_ops;
	st->qos_delayed = blk->qos.delayed;
	pthread_mutex_unlock(&blk->vd.lock);
}

void virtio_blk_set_qos(struct device *dev, const struct disk_qos_config *q)
{
	struct blk_dev *blk = blk_of_dev(dev);
	struct qos_limits lim = { q->iops, q->iops_burst, q->bps, q->bps_burst };
	uint16_t used_before;

	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	blk->qos_cfg = *q;
	qos_set(&blk->qos, &lim, qos_now_ns());
	log_info("%s: QoS iops=%llu/%llu bps=%llu/%llu", blk->vd.name,
		 (unsigned long long)q->iops, (unsigned long long)q->iops_burst,
		 (unsigned long long)q->bps, (unsigned long long)q->bps_burst);
	if (!blk->stall_err)
		blk_dispatch(blk); /* a waiting head may pass now */
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
	pthread_mutex_unlock(&blk->vd.lock);
}

/* Lock held: wait for io_uring and flush. */
static int blk_drain_flush(struct blk_dev *blk)
{
	uint16_t used_before = blk->vd.vqs[0].used_idx;
	int ret;

	blk_drain(blk);
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
	if (blk->stall_err)
		return blk->stall_err;
	if (!blk->disk)
		return -EIO;
	if (blk->readonly)
		return 0;
	ret = blk_flush_now(blk);
	if (!ret)
		blk->meta_wait = false;
	return ret;
}

int virtio_blk_flush(struct device *dev)
{
	struct blk_dev *blk = blk_of_dev(dev);
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	ret = blk_drain_flush(blk);
	if (!ret)
		blk_dispatch(blk);
	pthread_mutex_unlock(&blk->vd.lock);
	return ret;
}

static bool blk_looks_qcow2(int fd)
{
	static const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };
	uint8_t hdr[8];
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	       pread(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
	       !memcmp(hdr, magic, sizeof(magic));
}

int virtio_blk_switch(struct device *dev, int fd, char *err, size_t errlen)
{
	struct blk_dev *blk = blk_of_dev(dev);
	struct disk *nd = NULL;
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	if (blk->readonly) {
		snprintf(err, errlen, "%s is read-only", blk->id);
		ret = -EROFS;
	} else if (virtio_blk_exporting_locked(blk)) {
		/* Its reads name the chain's files: no switch under it. */
		snprintf(err, errlen, "an export of %s is running: cancel it first", blk->id);
		ret = -EBUSY;
	} else if (!blk_looks_qcow2(fd)) {
		/* Checked here because a failed open takes the chain with it. */
		snprintf(err, errlen, "the new top layer is not a qcow2 image file");
		ret = -EINVAL;
	} else if ((ret = blk_drain_flush(blk))) {
		snprintf(err, errlen, "cannot flush %s before the switch: %s", blk->id,
			 strerror(-ret));
	}
	if (ret) {
		close(fd);
		pthread_mutex_unlock(&blk->vd.lock);
		return ret;
	}
	/* The ring's file table names the old layers' descriptors, which a
	 * failed open closes (and a later file may reuse): start it afresh. */
	blkio_forget_files(&blk->io);
	/* The chain passes to the new top layer, also on failure. */
	ret = disk_open_overlay_fd(&nd, fd, blk->disk, err, errlen);
	blk->disk = ret ? NULL : nd;
	if (ret) {
		log_err("%s: disk-switch failed, the disk has no image now: %s", blk->vd.name,
			err[0] ? err : strerror(-ret));
		blk_stall(blk, -EIO, "disk-switch");
		snprintf(blk->error, sizeof(blk->error), "disk-switch failed: %s",
			 err[0] ? err : strerror(-ret));
	} else if (disk_size(nd) >> 9 != blk->capacity) {
		log_warn("%s: the new top layer's size differs (%llu bytes); the guest keeps %llu "
			 "sectors", blk->vd.name, (unsigned long long)disk_size(nd),
			 (unsigned long long)blk->capacity);
	}
	if (!ret) {
		log_info("%s: switched to a new top layer", blk->vd.name);
		blk_dispatch(blk);
	}
	pthread_mutex_unlock(&blk->vd.lock);
	return ret;
}

void virtio_blk_retry(struct device *dev)
{
	struct blk_dev *blk = blk_of_dev(dev);
	uint16_t used_before;

	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	blk_retry_locked(blk);
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
	pthread_mutex_unlock(&blk->vd.lock);
}

void blk_track_mark(struct blk_dev *blk, uint64_t off, uint64_t len)
{
	uint64_t first, last, size = (uint64_t)blk->capacity << 9;

	if (!len || off >= size)
		return;
	len = MIN(len, size - off);
	first = off >> blk->track_shift;
	last = (off + len - 1) >> blk->track_shift;
	for (uint64_t b = first; b <= last; b++)
		blk->track[b / (8 * sizeof(long))] |= 1UL << (b % (8 * sizeof(long)));
}

uint64_t virtio_blk_size(struct device *dev)
{
	return blk_of_dev(dev)->capacity << 9;
}

void virtio_blk_track(struct device *dev, unsigned long *bits, unsigned shift)
{
	struct blk_dev *blk = blk_of_dev(dev);

	pthread_mutex_lock(&blk->vd.lock);
	blk->track = bits;
	blk->track_shift = shift;
	pthread_mutex_unlock(&blk->vd.lock);
}

int virtio_blk_with_disk(struct device *dev,
			 int (*fn)(void *opaque, struct disk *d), void *opaque)
{
	struct blk_dev *blk = blk_of_dev(dev);
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	ret = blk->disk ? fn(opaque, blk->disk) : -EIO;
	pthread_mutex_unlock(&blk->vd.lock);
	return ret;
}

static int take_lock(void *opaque, struct disk *d)
{
	char *err = opaque;

	return disk_lock(d, err, 256);
}

int virtio_blk_take_locks(struct vm *vm, char *err, size_t errlen)
{
	char e[256] = "";

	for (struct device *dev = virtio_blk_next(vm, NULL); dev; dev = virtio_blk_next(vm, dev)) {
		int ret = virtio_blk_with_disk(dev, take_lock, e);

		if (ret && ret != -EIO) {
			snprintf(err, errlen, "%s: %s", dev->id, e[0] ? e : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int virtio_blk_export(struct device *dev, const struct blk_export_args *a, int fd,
		      struct blk_export_status *st, char *err, size_t errlen)
{
	struct blk_dev *blk = blk_of_dev(dev);
	uint16_t used_before;
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	if (blk->readonly) {
		snprintf(err, errlen, "%s is read-only (no change tracking)", blk->id);
		close(fd);
		ret = -EROFS;
	} else {
		ret = blk_export_start(blk, a, fd, st, err, errlen);
	}
	/* The cut drained io_uring: what completed goes to the guest. */
	blk_settle(blk, used_before);
	blk_export_unlock(blk);
	return ret;
}

int virtio_blk_export_cancel(struct device *dev)
{
	struct blk_dev *blk = blk_of_dev(dev);
	uint16_t used_before;
	int ret = 0;

	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	if (!virtio_blk_exporting_locked(blk))
		ret = -ENOENT;
	else
		blk_export_cancel(blk, "cancelled by request");
	/* Writes that waited for copies go on. */
	blk_settle(blk, used_before);
	blk_export_unlock(blk);
	return ret;
}

int virtio_blk_export_commit(struct device *dev, const char *point)
{
	struct blk_dev *blk = blk_of_dev(dev);
	int ret;

	pthread_mutex_lock(&blk->vd.lock);
	ret = blk_export_commit(blk, point);
	pthread_mutex_unlock(&blk->vd.lock);
	return ret;
}

void virtio_blk_export_status(struct device *dev, struct blk_export_status *st)
{
	struct blk_dev *blk = blk_of_dev(dev);

	pthread_mutex_lock(&blk->vd.lock);
	blk_export_get_status(blk, st);
	pthread_mutex_unlock(&blk->vd.lock);
}

bool virtio_blk_exporting(struct device *dev)
{
	struct blk_dev *blk = blk_of_dev(dev);
	bool ret;

	pthread_mutex_lock(&blk->vd.lock);
	ret = virtio_blk_exporting_locked(blk);
	pthread_mutex_unlock(&blk->vd.lock);
	return ret;
}
