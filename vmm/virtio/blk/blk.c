/* blk.c: virtio-blk on the disk library (raw, qcow2): the device itself
 * (queues, request parsing, lifecycle, opening its image); the requests
 * are run by blk_io.c. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "backend/blkio.h"
#include "cbt.h"
#include "disk.h"
#include "devtype.h"
#include "fdspec.h"
#include "log.h"
#include "state/state.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_export.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vm.h"


/* The type this device registers (its queue count is the type's). */
extern const struct device_type devtype_virtio_blk;

static const struct device_ops blk_device_ops = VIRTIO_DEVICE_OPS("virtio-blk");

static struct blk_dev *blk_of(struct virtio_dev *vd)
{
	return container_of(vd, struct blk_dev, vd);
}

static bool blk_range_ok(const struct blk_dev *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes >> SECTOR_SHIFT;

	return (bytes % SECTOR_SIZE) == 0 && sector <= blk->capacity &&
	       n <= blk->capacity - sector;
}

/* Parse a popped chain into req. Returns -1 when it is to be queued, or a
 * status code to complete it with at once (bad request, GET_ID). */
int blk_parse(struct blk_dev *blk, const struct virtq_chain *c, struct blk_req *req)
{
	struct virtio_blk_outhdr hdr;
	const struct iovec *in = &c->iov[c->nr_out];
	uint64_t sector;

	iov_to_buf(c->iov, c->nr_out, 0, &hdr, sizeof(hdr));
	req->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		req->data_len = c->in_len - 1;
		if (!blk_range_ok(blk, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->nr_iov = iov_slice(in, c->nr_in, 0, req->data_len, req->iov, VIRTQ_CHAIN_MAX);
		break;
	case VIRTIO_BLK_T_OUT:
		req->data_len = c->out_len - sizeof(hdr);
		if (blk->readonly || !blk_range_ok(blk, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->nr_iov = iov_slice(c->iov, c->nr_out, sizeof(hdr), req->data_len, req->iov,
					VIRTQ_CHAIN_MAX);
		break;
	case VIRTIO_BLK_T_FLUSH:
		return -1;
	case VIRTIO_BLK_T_GET_ID:
		req->written = (uint32_t)iov_from_buf(in, c->nr_in, 0, blk->serial,
						      MIN((size_t)c->in_len - 1, sizeof(blk->serial)));
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct virtio_blk_discard_write_zeroes seg;
		bool discard = req->type == VIRTIO_BLK_T_DISCARD;
		uint32_t n;

		if (!virtio_dev_has(&blk->vd, discard ? VIRTIO_BLK_F_DISCARD :
							  VIRTIO_BLK_F_WRITE_ZEROES))
			return VIRTIO_BLK_S_UNSUPP;
		/* We offer one segment per request. */
		if (c->out_len - sizeof(hdr) != sizeof(seg) || blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		iov_to_buf(c->iov, c->nr_out, sizeof(hdr), &seg, sizeof(seg));
		sector = le64toh(seg.sector);
		n = le32toh(seg.num_sectors);
		req->dwz_flags = le32toh(seg.flags);
		if ((req->dwz_flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ||
		    (discard && (req->dwz_flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)))
			return VIRTIO_BLK_S_UNSUPP;
		if (n > BLK_MAX_DWZ_SECTORS || !blk_range_ok(blk, sector, (uint64_t)n << SECTOR_SHIFT))
			return VIRTIO_BLK_S_IOERR;
		if (n == 0)
			return VIRTIO_BLK_S_OK;
		req->off = sector << SECTOR_SHIFT;
		req->len = (uint64_t)n << SECTOR_SHIFT;
		return -1;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	req->off = sector << SECTOR_SHIFT;
	req->len = req->data_len;
	return -1;
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct blk_dev *blk = blk_of(vd);
	struct virtq *vq = &vd->vqs[q];
	struct virtq_chain *c = blk->chain;
	struct virtq_error err;
	uint16_t used_before = vq->used_idx;
	int ret;

	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		const struct iovec *last;
		struct blk_req *req;
		int code;

		/* Header and status byte are required; without a status byte
		 * we cannot even report the error. */
		if (c->out_len < sizeof(struct virtio_blk_outhdr) || c->in_len < 1) {
			virtio_dev_fail(vd, "request %u lacks its header or status byte", c->head);
			return;
		}
		req = calloc(1, sizeof(*req));
		if (!req) {
			virtq_unpop(vq); /* retried on the next kick */
			log_err("%s: out of memory", vd->name);
			break;
		}
		req->head = c->head;
		last = &c->iov[c->nr_out + c->nr_in - 1];
		req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
		code = blk_parse(blk, c, req);
		if (code >= 0) {
			blk_req_complete(blk, req, (uint8_t)code);
			continue;
		}
		req->seq = blk->next_seq++;
		if (blk->pending_tail)
			blk->pending_tail->next = req;
		else
			blk->pending = req;
		blk->pending_tail = req;
	}
	if (ret < 0)
		virtio_dev_fail(vd, "queue %u: %s (0x%llx)", q, err.what,
				(unsigned long long)err.value);
	blk_dispatch(blk);
	if (vq->used_idx != used_before)
		virtio_dev_maybe_notify(vd, q);
}

/* I/O thread: io_uring posted completions. */
static void blk_ring_cb(void *opaque, uint32_t events)
{
	struct blk_dev *blk = opaque;
	uint16_t used_before;
	eventfd_t v;

	if (eventfd_read(blkio_event_fd(&blk->io), &v) < 0) {
		/* nothing pending: CQEs are checked below anyway */
	}
	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	if (blkio_reap(&blk->io, false, blk_io_done, blk)) {
		blk_dispatch(blk); /* the guest first: copies it waited for are in */
		if (blk->exp) {
			blk_export_pump(blk);
			blk_dispatch(blk); /* what the stream sent made room */
		}
		if (blkio_submit(&blk->io))
			log_err("%s: io_uring submit failed", blk->vd.name);
	}
	blk_check_recovered(blk);
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
	blk_export_unlock(blk);
}

void blk_arm_timer(struct blk_dev *blk, uint64_t ns)
{
	struct itimerspec its = { .it_value = { (time_t)(ns / 1000000000ULL),
						(long)(ns % 1000000000ULL) } };

	if (!ns)
		its.it_value.tv_nsec = 1; /* 0 would disarm */
	if (timerfd_settime(blk->timer_fd, 0, &its, NULL) < 0)
		log_err("%s: cannot arm the timer: %s", blk->vd.name, strerror(errno));
	else
		blk->timer_armed = true;
}

/* Reset: wait for the kernel to finish with the guest's buffers, then
 * forget those requests (the driver reclaims all buffers on reset). */
static void blk_reset(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	blk->dropping = true;
	blk_drop_pending(blk);
	blk_drain(blk);
	blk->dropping = false;
	blk->meta_wait = false;
	/* A stall stays: the pause and retry are about the storage. */
}

/* Before save: every request that is in io_uring completes into the used
 * ring; requests that QoS holds are let through at once (a save is no time
 * to keep the guest's requests waiting). Requests held by a storage stall
 * cannot complete: their heads are saved in the device section and they are
 * re-read from the ring on load (blk_load). */
static void blk_quiesce(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);
	uint16_t used_before = vd->vqs[0].used_idx;

	for (struct blk_req *r = blk->pending; r; r = r->next)
		r->admitted = true;
	do {
		blk_dispatch(blk);
		blk_drain(blk);
	} while (blk->pending && !blk->stall_err);
	if (vd->vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(vd, 0);
}

static int blk_realize(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);
	int ret = evloop_add(vd->vm->loop, blkio_event_fd(&blk->io), EPOLLIN, blk_ring_cb, blk);

	if (ret)
		return ret;
	blk->ring_watched = true;
	ret = evloop_add(vd->vm->loop, blk->timer_fd, EPOLLIN, blk_timer_cb, blk);
	if (ret)
		return ret;
	blk->timer_watched = true;
	ret = evloop_add(vd->vm->loop, blk->exp_timer_fd, EPOLLIN, blk_export_timer_cb, blk);
	if (!ret)
		blk->exp_timer_watched = true;
	return ret;
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	if (blk->ring_watched)
		evloop_del(vd->vm->loop, blkio_event_fd(&blk->io));
	if (blk->timer_watched)
		evloop_del(vd->vm->loop, blk->timer_fd);
	if (blk->exp_timer_watched)
		evloop_del(vd->vm->loop, blk->exp_timer_fd);
	if (blk->io_open) {
		/* Free what is still in flight once the kernel is done with it. */
		blk->dropping = true;
		blk_drop_pending(blk);
		blk_drain(blk);
		blk_export_destroy(blk); /* an export stops without its trailer */
		blkio_close(&blk->io);
	}
	if (blk->cbt) {
		if (!blk->stall_err && blk->disk && !blk->readonly && blk_flush_now(blk))
			log_warn("%s: final flush failed", vd->name);
		cbt_close(blk->cbt, !blk->stall_err);
	}
	if (blk->disk && disk_close(blk->disk))
		log_warn("%s: flush on close failed", vd->name);
	if (blk->timer_fd >= 0)
		close(blk->timer_fd);
	if (blk->exp_timer_fd >= 0)
		close(blk->exp_timer_fd);
	free(blk->path);
	free(blk->chain);
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.realize = blk_realize,
	.quiesce = blk_quiesce,
	.save = blk_save, /* blk_state.c */
	.load = blk_load,
	.destroy = blk_destroy,
};

static void blk_fill_config(struct blk_dev *blk)
{
	struct virtio_blk_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.capacity = htole64(blk->capacity);
	cfg.seg_max = htole32(VIRTQ_CHAIN_MAX - 2);
	cfg.blk_size = htole32(SECTOR_SIZE);
	cfg.max_discard_sectors = htole32(BLK_MAX_DWZ_SECTORS);
	cfg.max_discard_seg = htole32(1);
	cfg.discard_sector_alignment = htole32(4096 >> SECTOR_SHIFT);
	cfg.max_write_zeroes_sectors = htole32(BLK_MAX_DWZ_SECTORS);
	cfg.max_write_zeroes_seg = htole32(1);
	cfg.write_zeroes_may_unmap = 1;
	blk->vd.config_len = offsetof(struct virtio_blk_config, max_secure_erase_sectors);
	memcpy(blk->vd.config, &cfg, blk->vd.config_len);
}

/* The image by name, or (cfg->path "fd:N") the descriptors cellad opened
 * for it and its backing chain: nothing is then opened by name. */
static int blk_open_image(const struct disk_config *cfg, int fmt, unsigned extra, struct disk **out,
			  char *err, size_t errlen)
{
	unsigned flags = (cfg->readonly ? DISK_RDONLY : 0) | extra;
	struct disk_fd_chain chain = { .nr = 0 };
	const struct disk_backing_fds *b = cfg->backing;
	int fd;

	if (!fdspec_is_fd(cfg->path, &fd))
		return disk_open(out, cfg->path, fmt, flags, err, errlen);
	fd = fdspec_open(cfg->path, cfg->readonly ? O_RDONLY : O_RDWR, 0, FDSPEC_REG | FDSPEC_BLK,
			 err, errlen);
	if (fd < 0)
		return fd;
	chain.fd[chain.nr] = fd;
	chain.name[chain.nr++] = cfg->path;
	for (unsigned i = 0; b && i < b->nr; i++) {
		char spec[24];

		snprintf(spec, sizeof(spec), "fd:%d", b->fd[i]);
		fd = fdspec_open(spec, O_RDONLY, 0, FDSPEC_REG | FDSPEC_BLK, err, errlen);
		if (fd < 0) {
			for (unsigned k = 0; k < chain.nr; k++)
				close(chain.fd[k]);
			return fd;
		}
		chain.fd[chain.nr] = fd;
		chain.name[chain.nr++] = b->name[i];
	}
	return disk_open_fds(out, &chain, fmt, flags, err, errlen);
}

/* IMAGE.cbt by name, or the tracking file given apart from the image
 * (cbt_file: a descriptor cellad created beside it, or a name). */
static int blk_open_cbt(struct blk_dev *blk, const struct disk_config *cfg, char *err,
			size_t errlen)
{
	int fd;

	if (!cfg->cbt_file && !fdspec_is_fd(cfg->path, &fd))
		return cbt_open(&blk->cbt, cfg->path, disk_size(blk->disk), err, errlen);
	if (!cfg->cbt_file) {
		snprintf(err, errlen, "a disk given as %s needs its tracking file given too "
			 "(cbt_file)", cfg->path);
		return -EINVAL;
	}
	fd = fdspec_open(cfg->cbt_file, O_RDWR | O_CREAT, 0640, FDSPEC_REG, err, errlen);
	if (fd < 0)
		return fd;
	return cbt_open_fd(&blk->cbt, fd, cfg->cbt_file, disk_size(blk->disk), err, errlen);
}

/* Open the image (and its change tracking) through the disk library. */
static int blk_open_disk(struct blk_dev *blk, const struct disk_config *cfg, bool defer_lock)
{
	char err[512] = "";
	int fmt = -1, ret;

	if (!strcmp(cfg->format, "raw"))
		fmt = DISK_FMT_RAW;
	else if (!strcmp(cfg->format, "qcow2"))
		fmt = DISK_FMT_QCOW2;
	ret = blk_open_image(cfg, fmt, defer_lock ? DISK_DEFER_LOCK : 0, &blk->disk, err,
			     sizeof(err));
	if (ret) {
		blk->disk = NULL;
		log_err("%s: cannot open disk image %s: %s", blk->vd.name, cfg->path,
			err[0] ? err : strerror(-ret));
		return ret;
	}
	if (cfg->cbt && !cfg->readonly) {
		ret = blk_open_cbt(blk, cfg, err, sizeof(err));
		if (ret) {
			log_err("%s: changed-block tracking for %s: %s", blk->vd.name, cfg->path,
				err[0] ? err : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int virtio_blk_create(struct vm *vm, const struct disk_config *cfg, unsigned index)
{
	struct blk_dev *blk = calloc(1, sizeof(*blk));
	struct qos_limits lim;
	char name[32];
	uint64_t features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ULL << VIRTIO_BLK_F_FLUSH);
	int ret;

	snprintf(name, sizeof(name), "virtio-blk%u", index);
	if (!blk) {
		log_err("%s: out of memory", name);
		return -ENOMEM;
	}
	blk->timer_fd = -1;
	blk->exp_timer_fd = -1;
	if (cfg->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	ret = virtio_dev_init(&blk->vd, &blk_device_ops, &blk_ops, name, VIRTIO_ID_BLOCK,
			      features, devtype_virtio_blk.nr_queues, BLK_QUEUE_SIZE);
	blk->chain = malloc(sizeof(*blk->chain));
	blk->path = strdup(cfg->path);
	blk->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	blk->exp_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ret || !blk->chain || !blk->path || blk->timer_fd < 0 || blk->exp_timer_fd < 0) {
		ret = ret ? ret : -ENOMEM;
		log_err("%s: cannot initialise: %s", name, strerror(-ret));
		goto fail;
	}
	snprintf(blk->vd.dev.id, sizeof(blk->vd.dev.id), "blk%u", index);
	snprintf(blk->id, sizeof(blk->id), "%s", cfg->id[0] ? cfg->id : blk->vd.dev.id);
	blk->readonly = cfg->readonly;
	ret = blkio_init(&blk->io, name, BLK_RING_DEPTH);
	if (ret)
		goto fail;
	blk->io_open = true;
	ret = blk_open_disk(blk, cfg, vm->cfg && vm->cfg->defer_disk_locks);
	if (ret)
		goto fail;
	blk->capacity = disk_size(blk->disk) >> SECTOR_SHIFT;
	blk->qos_cfg = cfg->qos;
	lim = (struct qos_limits){ cfg->qos.iops, cfg->qos.iops_burst, cfg->qos.bps,
				   cfg->qos.bps_burst };
	qos_init(&blk->qos, &lim, qos_now_ns());
	/* The serial is 20 bytes, NUL-padded, not necessarily terminated. */
	if (cfg->id[0])
		memcpy(blk->serial, cfg->id, strnlen(cfg->id, sizeof(blk->serial)));
	else
		snprintf(blk->serial, sizeof(blk->serial), "cella-blk%u", index);
	blk_fill_config(blk);
	return vm_add_device(vm, &blk->vd.dev);
fail:
	virtio_dev_destroy(&blk->vd.dev);
	return ret;
}
