/* blk.c: virtio-blk on a raw image, with asynchronous I/O through io_uring on the I/O thread. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "backend/blkio.h"
#include "log.h"
#include "state/state.h"
#include "virtio/blk.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vm.h"

#define SECTOR_SHIFT 9
#define SECTOR_SIZE  (1u << SECTOR_SHIFT)
/* Largest discard / write-zeroes in one request: 2 GiB. */
#define BLK_MAX_DWZ_SECTORS (1u << 22)

static const struct device_ops blk_device_ops = VIRTIO_DEVICE_OPS("virtio-blk");

/* One request handed to io_uring; lives until its completion is reaped. */
struct blk_req {
	uint16_t head;
	uint8_t *status;    /* the last writable byte of the chain */
	uint32_t type;
	uint32_t data_len;  /* bytes expected from a read/write */
	int fallocate_mode; /* for the ZERO_RANGE -> PUNCH_HOLE fallback */
	uint64_t off, len;
	unsigned nr_iov;
	struct iovec iov[VIRTQ_CHAIN_MAX];
};

static struct blk_dev *blk_of(struct virtio_dev *vd)
{
	return container_of(vd, struct blk_dev, vd);
}

/* Finish a request: status byte, used ring. `written` counts data bytes put
 * in the guest's buffers (the status byte is added here). */
static void blk_complete(struct blk_dev *blk, uint16_t head, uint8_t *status, uint8_t code,
			 uint32_t written)
{
	*status = code;
	virtq_push(&blk->vd.vqs[0], head, written + 1);
}

static bool blk_range_ok(const struct blk_dev *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes >> SECTOR_SHIFT;

	return (bytes % SECTOR_SIZE) == 0 && sector <= blk->capacity &&
	       n <= blk->capacity - sector;
}

/* Completion of an io_uring request (I/O thread, or reset/save with the lock held). */
static void blk_io_done(void *ctx, void *tag, int res)
{
	struct blk_dev *blk = ctx;
	struct blk_req *req = tag;
	uint8_t code = VIRTIO_BLK_S_OK;
	uint32_t written = 0;

	if (blk->dropping) {
		/* Device reset: the driver no longer owns these buffers' ring slots. */
		free(req);
		return;
	}
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		if (res > 0)
			written = (uint32_t)res;
		if (res < 0 || (uint32_t)res != req->data_len)
			code = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_OUT:
		if (res < 0 || (uint32_t)res != req->data_len)
			code = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_DISCARD:
		/* Discard is a hint: a file system without hole punching is fine. */
		if (res < 0 && res != -EOPNOTSUPP)
			code = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if ((res == -EOPNOTSUPP || res == -EINVAL) &&
		    req->fallocate_mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
			/* No ZERO_RANGE here (e.g. tmpfs): a hole reads as zeroes too. */
			req->fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
			if (!blkio_queue_fallocate(&blk->io, req->fallocate_mode, req->off, req->len,
						   req))
				return; /* submitted by the caller after reaping */
		}
		if (res < 0)
			code = VIRTIO_BLK_S_IOERR;
		break;
	default: /* FLUSH */
		if (res < 0)
			code = VIRTIO_BLK_S_IOERR;
		break;
	}
	if (code != VIRTIO_BLK_S_OK)
		log_debug("%s: request type %u failed: %d", blk->vd.name, req->type, res);
	blk_complete(blk, req->head, req->status, code, written);
	free(req);
}

/* Queue the I/O for one request; returns a status code when it completed
 * synchronously (error, GET_ID) or -1 when it went to io_uring. */
static int blk_start(struct blk_dev *blk, const struct virtq_chain *c, struct blk_req *req,
		     uint32_t *written)
{
	struct virtio_blk_outhdr hdr;
	const struct iovec *in = &c->iov[c->nr_out];
	uint64_t sector;
	int ret;

	iov_to_buf(c->iov, c->nr_out, 0, &hdr, sizeof(hdr));
	req->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		req->data_len = c->in_len - 1;
		if (!blk_range_ok(blk, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->nr_iov = iov_slice(in, c->nr_in, 0, req->data_len, req->iov, VIRTQ_CHAIN_MAX);
		ret = blkio_queue_readv(&blk->io, req->iov, req->nr_iov, sector << SECTOR_SHIFT,
					req);
		break;
	case VIRTIO_BLK_T_OUT:
		req->data_len = c->out_len - sizeof(hdr);
		if (blk->readonly || !blk_range_ok(blk, sector, req->data_len))
			return VIRTIO_BLK_S_IOERR;
		req->nr_iov = iov_slice(c->iov, c->nr_out, sizeof(hdr), req->data_len, req->iov,
					VIRTQ_CHAIN_MAX);
		ret = blkio_queue_writev(&blk->io, req->iov, req->nr_iov, sector << SECTOR_SHIFT,
					 req);
		break;
	case VIRTIO_BLK_T_FLUSH:
		ret = blkio_queue_flush(&blk->io, req);
		break;
	case VIRTIO_BLK_T_GET_ID:
		*written = (uint32_t)iov_from_buf(in, c->nr_in, 0, blk->serial,
						  MIN((size_t)c->in_len - 1, sizeof(blk->serial)));
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct virtio_blk_discard_write_zeroes seg;
		bool discard = req->type == VIRTIO_BLK_T_DISCARD;
		uint32_t flags, n;

		if (!virtio_dev_has(&blk->vd, discard ? VIRTIO_BLK_F_DISCARD :
							  VIRTIO_BLK_F_WRITE_ZEROES))
			return VIRTIO_BLK_S_UNSUPP;
		/* We offer one segment per request. */
		if (c->out_len - sizeof(hdr) != sizeof(seg) || blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		iov_to_buf(c->iov, c->nr_out, sizeof(hdr), &seg, sizeof(seg));
		sector = le64toh(seg.sector);
		n = le32toh(seg.num_sectors);
		flags = le32toh(seg.flags);
		if ((flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ||
		    (discard && (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)))
			return VIRTIO_BLK_S_UNSUPP;
		if (n > BLK_MAX_DWZ_SECTORS || !blk_range_ok(blk, sector, (uint64_t)n << SECTOR_SHIFT))
			return VIRTIO_BLK_S_IOERR;
		req->off = sector << SECTOR_SHIFT;
		req->len = (uint64_t)n << SECTOR_SHIFT;
		if (req->len == 0)
			return VIRTIO_BLK_S_OK;
		if (discard || (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			req->fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		else
			req->fallocate_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		ret = blkio_queue_fallocate(&blk->io, req->fallocate_mode, req->off, req->len, req);
		break;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	/* The ring holds as many entries as the queue: it cannot be full. */
	return ret ? VIRTIO_BLK_S_IOERR : -1;
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct blk_dev *blk = blk_of(vd);
	struct virtq *vq = &vd->vqs[q];
	struct virtq_chain *c = blk->chain;
	struct virtq_error err;
	bool pushed = false, queued = false;
	int ret;

	while ((ret = virtq_pop(vq, c, &err)) > 0) {
		struct blk_req *req;
		uint32_t written = 0;
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
		{
			const struct iovec *last = &c->iov[c->nr_out + c->nr_in - 1];

			req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
		}
		code = blk_start(blk, c, req, &written);
		if (code >= 0) {
			blk_complete(blk, req->head, req->status, (uint8_t)code, written);
			free(req);
			pushed = true;
		} else {
			queued = true;
		}
	}
	if (ret < 0)
		virtio_dev_fail(vd, "queue %u: %s (0x%llx)", q, err.what,
				(unsigned long long)err.value);
	if (queued && blkio_submit(&blk->io))
		log_err("%s: io_uring submit failed", vd->name);
	if (pushed)
		virtio_dev_maybe_notify(vd, q);
}

/* I/O thread: io_uring posted completions. */
static void blk_ring_cb(void *opaque, uint32_t events)
{
	struct blk_dev *blk = opaque;
	eventfd_t v;

	if (eventfd_read(blkio_event_fd(&blk->io), &v) < 0) {
		/* nothing pending: CQEs are checked below anyway */
	}
	pthread_mutex_lock(&blk->vd.lock);
	if (blkio_reap(&blk->io, false, blk_io_done, blk)) {
		if (blkio_submit(&blk->io))
			log_err("%s: io_uring submit failed", blk->vd.name);
		virtio_dev_maybe_notify(&blk->vd, 0);
	}
	pthread_mutex_unlock(&blk->vd.lock);
}

/* Reset: wait for the kernel to finish with the guest's buffers, then
 * forget those requests (the driver reclaims all buffers on reset). */
static void blk_reset(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	blk->dropping = true;
	blkio_reap(&blk->io, true, blk_io_done, blk);
	blk->dropping = false;
}

/* Before save: complete every in-flight request into the used ring. */
static void blk_quiesce(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	if (blkio_reap(&blk->io, true, blk_io_done, blk))
		virtio_dev_maybe_notify(vd, 0);
}

static int blk_realize(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);
	int ret = evloop_add(vd->vm->loop, blkio_event_fd(&blk->io), EPOLLIN, blk_ring_cb, blk);

	if (!ret)
		blk->ring_watched = true;
	return ret;
}

static int blk_save(struct virtio_dev *vd, struct state_writer *w)
{
	/* Nothing beyond the transport: requests were completed by quiesce,
	 * and the image itself is the disk's state. */
	state_put_u32(w, 1);
	return 0;
}

static int blk_load(struct virtio_dev *vd, struct state_reader *r)
{
	return state_get_u32(r) == 1 ? 0 : -EINVAL;
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	if (blk->ring_watched)
		evloop_del(vd->vm->loop, blkio_event_fd(&blk->io));
	if (blk->io_open) {
		/* Free what is still in flight once the kernel is done with it. */
		blk->dropping = true;
		blkio_reap(&blk->io, true, blk_io_done, blk);
		blkio_close(&blk->io);
	}
	free(blk->chain);
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.realize = blk_realize,
	.quiesce = blk_quiesce,
	.save = blk_save,
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

int virtio_blk_create(struct vm *vm, const struct disk_config *cfg, unsigned index)
{
	struct blk_dev *blk = calloc(1, sizeof(*blk));
	char name[32];
	uint64_t features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ULL << VIRTIO_BLK_F_FLUSH);
	int ret;

	snprintf(name, sizeof(name), "virtio-blk%u", index);
	if (!blk) {
		log_err("%s: out of memory", name);
		return -ENOMEM;
	}
	if (cfg->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	ret = virtio_dev_init(&blk->vd, &blk_device_ops, &blk_ops, name, VIRTIO_ID_BLOCK,
			      features, 1, BLK_QUEUE_SIZE);
	blk->chain = malloc(sizeof(*blk->chain));
	if (ret || !blk->chain) {
		ret = ret ? ret : -ENOMEM;
		log_err("%s: cannot initialise: %s", name, strerror(-ret));
		goto fail;
	}
	snprintf(blk->vd.dev.id, sizeof(blk->vd.dev.id), "blk%u", index);
	blk->readonly = cfg->readonly;
	ret = blkio_open(&blk->io, name, cfg->path, cfg->readonly, BLK_QUEUE_SIZE);
	if (ret)
		goto fail;
	blk->io_open = true;
	blk->capacity = blk->io.size >> SECTOR_SHIFT;
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
