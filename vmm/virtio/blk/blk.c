/* blk.c: virtio-blk on the disk library (raw, qcow2): requests mapped with
 * disk_map() and moved by io_uring on the I/O thread, several in flight. */
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

#define SECTOR_SHIFT 9
#define SECTOR_SIZE  (1u << SECTOR_SHIFT)
/* Largest discard / write-zeroes in one request: 2 GiB. */
#define BLK_MAX_DWZ_SECTORS (1u << 22)
#define BLK_MAX_EXT 32 /* extents resolved per disk_map call */

/* The type this device registers (its queue count is the type's). */
extern const struct device_type devtype_virtio_blk;

static const struct device_ops blk_device_ops = VIRTIO_DEVICE_OPS("virtio-blk");

/* One io_uring request: a DATA extent of a read or write. */
struct blk_sub {
	struct blk_tag tag; /* export = false */
	struct blk_req *req;
	bool write;
	int fd;
	uint64_t host_off;
	size_t total, done;    /* a short transfer is continued */
	unsigned nr;
	struct iovec iov[];
};

enum { RUN_DONE, RUN_STARTED, RUN_WAIT };

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

static void iov_memset(const struct iovec *iov, unsigned nr, size_t off, size_t len)
{
	for (unsigned i = 0; i < nr && len; i++) {
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - off, len);
		memset((uint8_t *)iov[i].iov_base + off, 0, n);
		len -= n;
		off = 0;
	}
}

/* Push a finished request into the used ring (unless a reset dropped it). */
void blk_req_complete(struct blk_dev *blk, struct blk_req *req, uint8_t code)
{
	if (!blk->dropping) {
		*req->status = code;
		virtq_push(&blk->vd.vqs[0], req->head, req->written + 1);
	}
	free(req);
}

/* Put a request back into `pending` at its place in pop order. */
void blk_requeue(struct blk_dev *blk, struct blk_req *req)
{
	struct blk_req **pp = &blk->pending;

	while (*pp && (*pp)->seq < req->seq)
		pp = &(*pp)->next;
	req->next = *pp;
	*pp = req;
	if (!req->next)
		blk->pending_tail = req;
}

/* Record a write range for replay after a failed fdatasync. */
static void blk_redo_add(struct blk_dev *blk, uint64_t off, uint64_t len)
{
	struct blk_redo *r = &blk->redo;

	if (r->overflow)
		return;
	if (r->nr && r->r[r->nr - 1].off + r->r[r->nr - 1].len == off) {
		r->r[r->nr - 1].len += len;
		return;
	}
	if (r->nr == BLK_REDO_MAX) {
		r->overflow = true;
		return;
	}
	r->r[r->nr].off = off;
	r->r[r->nr].len = len;
	r->nr++;
}

/* A request's last sub-request is done (or it finished synchronously). */
static void blk_req_end(struct blk_dev *blk, struct blk_req *req)
{
	uint8_t code = VIRTIO_BLK_S_OK;

	if (req->err && blk_storage_error(req->err) && !blk->dropping) {
		/* Keep it: retried when storage works again. */
		int err = req->err;

		req->err = 0;
		req->mapped = 0;
		req->written = 0;
		blk_requeue(blk, req);
		blk_stall(blk, err, req->type == VIRTIO_BLK_T_IN ? "read" : "write");
		return;
	}
	if (req->err) {
		log_debug("%s: request type %u failed: %s", blk->vd.name, req->type,
			  strerror(-req->err));
		code = VIRTIO_BLK_S_IOERR;
		req->written = 0;
	} else if (req->type == VIRTIO_BLK_T_OUT) {
		blk_redo_add(blk, req->off, req->len);
	}
	/* A migration copying this disk sends the range (again): marked
	 * after the data landed, so a copy read before it cannot be final. */
	if (blk->track && req->type != VIRTIO_BLK_T_IN && req->type != VIRTIO_BLK_T_FLUSH)
		blk_track_mark(blk, req->off, req->len);
	blk_req_complete(blk, req, code);
}

static void blk_sub_free(struct blk_dev *blk, struct blk_sub *sub)
{
	struct blk_req *req = sub->req;

	if (sub->write)
		blk->inflight_writes--;
	free(sub);
	if (--req->subs == 0 && req->mapped == req->len) {
		blk->inflight_reqs--;
		blk_req_end(blk, req);
	} else if (req->subs == 0) {
		/* Partly mapped (metadata wait): it is still at the head of
		 * pending and continues from `mapped`. */
		blk->inflight_reqs--;
	}
}

static int blk_sub_queue(struct blk_dev *blk, struct blk_sub *s)
{
	struct iovec tmp[VIRTQ_CHAIN_MAX];

	if (s->done) { /* continue after a short transfer: drop what is done */
		unsigned nr = iov_slice(s->iov, s->nr, s->done, s->total - s->done, tmp,
					VIRTQ_CHAIN_MAX);

		memcpy(s->iov, tmp, nr * sizeof(tmp[0]));
		s->nr = nr;
		s->host_off += s->done;
		s->total -= s->done;
		s->done = 0;
	}
	return s->write ? blkio_queue_writev(&blk->io, s->fd, s->iov, s->nr, s->host_off, s)
			: blkio_queue_readv(&blk->io, s->fd, s->iov, s->nr, s->host_off, s);
}

/* io_uring completion (I/O thread, lock held). */
static void blk_io_done(void *ctx, void *tag, int res)
{
	struct blk_dev *blk = ctx;
	struct blk_sub *s = tag;
	struct blk_req *req;

	if (s->tag.export) {
		blk_export_io_done(blk, tag, res);
		return;
	}
	req = s->req;
	if (res > 0 && (size_t)res < s->total - s->done && !blk->dropping) {
		s->done += (size_t)res;
		if (!blk_sub_queue(blk, s))
			return; /* submitted by the caller after reaping */
		res = -EIO;
	}
	if (res == 0 && s->total)
		res = s->write ? -ENOSPC : -EIO; /* no progress: end of file or full */
	if (res < 0 && !req->err)
		req->err = res;
	blk_sub_free(blk, s);
}

static int blk_sub_start(struct blk_dev *blk, struct blk_req *req, const struct disk_extent *e,
			 bool write)
{
	struct iovec tmp[VIRTQ_CHAIN_MAX];
	size_t at = (size_t)(e->off - req->off);
	unsigned nr = iov_slice(req->iov, req->nr_iov, at, (size_t)e->len, tmp, VIRTQ_CHAIN_MAX);
	struct blk_sub *s = malloc(sizeof(*s) + nr * sizeof(tmp[0]));
	int ret;

	if (!s)
		return -ENOMEM;
	s->tag.export = false;
	s->req = req;
	s->write = write;
	s->fd = e->fd;
	s->host_off = e->host_off;
	s->total = (size_t)e->len;
	s->done = 0;
	s->nr = nr;
	memcpy(s->iov, tmp, nr * sizeof(tmp[0]));
	ret = blk_sub_queue(blk, s); /* -EBUSY, or the file cannot be registered */
	if (ret) {
		free(s);
		return ret;
	}
	if (!req->subs++)
		blk->inflight_reqs++;
	if (write)
		blk->inflight_writes++;
	return 0;
}

/* A SLOW extent (e.g. compressed): read synchronously through a bounce buffer. */
static int blk_read_slow(struct blk_dev *blk, struct blk_req *req, const struct disk_extent *e)
{
	uint8_t *buf = malloc((size_t)e->len);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = disk_pread(blk->disk, buf, (size_t)e->len, e->off);
	if (!ret)
		iov_from_buf(req->iov, req->nr_iov, (size_t)(e->off - req->off), buf,
			     (size_t)e->len);
	free(buf);
	return ret < 0 ? ret : 0;
}

/* Map and start [off + mapped, off + len). RUN_WAIT: disk_map asked for a
 * metadata flush first; the request stays at the head of pending. */
static int blk_run_rw(struct blk_dev *blk, struct blk_req *req)
{
	bool write = req->type == VIRTIO_BLK_T_OUT;
	struct disk_extent ext[BLK_MAX_EXT];
	int n, ret = 0;

	if (write && blk->cbt && !req->mapped)
		cbt_mark(blk->cbt, req->off, req->len); /* before the data can land */
	while (req->mapped < req->len && !ret) {
		n = disk_map(blk->disk, req->off + req->mapped, req->len - req->mapped, write, ext,
			     BLK_MAX_EXT);
		if (n == -EAGAIN) {
			log_debug("%s: unflushed metadata at its bound: draining writes to flush it",
				  blk->vd.name);
			blk->meta_wait = true;
			return RUN_WAIT;
		}
		if (n <= 0) {
			ret = n ? n : -EIO;
			break;
		}
		for (int i = 0; i < n && !ret; i++) {
			const struct disk_extent *e = &ext[i];

			if (e->kind == DISK_EXT_DATA)
				ret = blk_sub_start(blk, req, e, write);
			else if (write)
				ret = -EIO; /* the library promises DATA for writes */
			else if (e->kind == DISK_EXT_ZERO)
				iov_memset(req->iov, req->nr_iov, (size_t)(e->off - req->off),
					   (size_t)e->len);
			else
				ret = blk_read_slow(blk, req, e);
			if (!ret)
				req->mapped = e->off + e->len - req->off;
		}
	}
	if (ret) {
		if (!req->err)
			req->err = ret;
		req->mapped = req->len; /* stop here; in-flight parts finish */
	}
	if (!write && !req->err)
		req->written = req->data_len;
	if (req->subs)
		return RUN_STARTED;
	blk_req_end(blk, req);
	return RUN_DONE;
}

int blk_flush_now(struct blk_dev *blk)
{
	int ret = 0;

	if (blk->redo_needed) {
		/* The failed fdatasync dropped the pages' dirty state: write the
		 * ranges since the last good flush again from the page cache. */
		uint64_t size = disk_size(blk->disk);
		uint8_t *buf = malloc(1 << 20);

		if (!buf)
			return -ENOMEM;
		for (unsigned i = 0; i < (blk->redo.overflow ? 1u : blk->redo.nr) && !ret; i++) {
			uint64_t off = blk->redo.overflow ? 0 : blk->redo.r[i].off;
			uint64_t end = blk->redo.overflow ? size : off + blk->redo.r[i].len;

			for (; off < end && !ret; off += 1 << 20) {
				size_t n = (size_t)MIN(end - off, (uint64_t)1 << 20);

				ret = disk_pread(blk->disk, buf, n, off);
				if (!ret)
					ret = disk_pwrite(blk->disk, buf, n, off);
			}
		}
		free(buf);
		if (ret)
			return ret;
	}
	if (blk->cbt)
		ret = cbt_sync(blk->cbt);
	if (!ret)
		ret = disk_flush(blk->disk);
	if (!ret) {
		blk->redo.nr = 0;
		blk->redo.overflow = false;
		blk->redo_needed = false;
	} else if (!blk->readonly) {
		blk->redo_needed = true;
	}
	return ret;
}

static int blk_run_sync(struct blk_dev *blk, struct blk_req *req)
{
	bool discard = req->type == VIRTIO_BLK_T_DISCARD;
	int ret;

	if (req->type == VIRTIO_BLK_T_FLUSH) {
		ret = blk_flush_now(blk);
	} else {
		if (blk->cbt)
			cbt_mark(blk->cbt, req->off, req->len);
		ret = discard ? disk_discard(blk->disk, req->off, req->len)
			      : disk_write_zeroes(blk->disk, req->off, req->len,
						  req->dwz_flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		/* Discard is a hint: a file system without hole punching is fine. */
		if (discard && ret == -EOPNOTSUPP)
			ret = 0;
		if (!ret)
			blk_redo_add(blk, req->off, req->len);
	}
	if (ret == -EAGAIN) {
		blk->meta_wait = true;
		return RUN_WAIT;
	}
	req->err = ret;
	blk_req_end(blk, req);
	return RUN_DONE;
}

static bool blk_is_barrier(const struct blk_req *req)
{
	return req->type == VIRTIO_BLK_T_FLUSH || req->type == VIRTIO_BLK_T_DISCARD ||
	       req->type == VIRTIO_BLK_T_WRITE_ZEROES;
}

static uint64_t blk_req_bytes(const struct blk_req *req)
{
	return req->type == VIRTIO_BLK_T_IN || req->type == VIRTIO_BLK_T_OUT ? req->len : 0;
}

static void blk_pending_pop(struct blk_dev *blk)
{
	blk->pending = blk->pending->next;
	if (!blk->pending)
		blk->pending_tail = NULL;
}

/* Whether a request before req in `pending` touches its range, one of the
 * two writing (the guest gets no order between such requests, but keeps
 * the one it queued). */
static bool blk_overlaps_earlier(const struct blk_dev *blk, const struct blk_req *req)
{
	for (const struct blk_req *r = blk->pending; r && r != req; r = r->next)
		if ((r->type != VIRTIO_BLK_T_IN || req->type != VIRTIO_BLK_T_IN) &&
		    r->off < req->off + req->len && req->off < r->off + r->len)
			return true;
	return false;
}

/* The head waits for a live export's copy-before-write read: start the
 * reads and writes queued behind it that touch nothing an earlier waiting
 * request touches and need no copy themselves, up to the next barrier
 * (which still waits for every write before it). Requests complete in any
 * order anyway; without this, one write waiting for a 64 KiB read holds
 * the whole queue. Not with QoS, whose order is FIFO. */
static void blk_dispatch_past(struct blk_dev *blk)
{
	struct blk_req *prev = blk->pending, *req;

	if (qos_enabled(&blk->qos) || blk->meta_wait)
		return;
	while ((req = prev->next) && blkio_room(&blk->io)) {
		if (blk_is_barrier(req))
			break;
		if (blk_overlaps_earlier(blk, req) ||
		    (req->type == VIRTIO_BLK_T_OUT && !blk_export_may_write(blk, req))) {
			prev = req;
			continue;
		}
		prev->next = req->next;
		if (blk->pending_tail == req)
			blk->pending_tail = prev;
		req->next = NULL;
		req->admitted = true;
		if (blk_run_rw(blk, req) == RUN_WAIT) {
			blk_requeue(blk, req);
			break;
		}
	}
}

/* Start what can start, in order (lock held). */
void blk_dispatch(struct blk_dev *blk)
{
	struct blk_req *req;
	bool started = false;

	while ((req = blk->pending) && !blk->stall_err && !blk->dropping) {
		if (blk->meta_wait) {
			int ret;

			if (blk->inflight_writes)
				break;
			ret = blk_flush_now(blk);
			if (ret) {
				if (blk_storage_error(ret)) {
					blk_stall(blk, ret, "metadata flush");
					break;
				}
				log_err("%s: metadata flush failed: %s", blk->vd.name, strerror(-ret));
			}
			blk->meta_wait = false;
		}
		if (!req->admitted && qos_enabled(&blk->qos)) {
			uint64_t b = blk_req_bytes(req);
			uint64_t wait = qos_admit(&blk->qos, qos_op_cost(b), b, qos_now_ns());

			if (wait) {
				blk_arm_timer(blk, wait);
				break;
			}
		}
		req->admitted = true;
		if ((blk_is_barrier(req) && blk->inflight_writes) || !blkio_room(&blk->io))
			break;
		/* A live export may first have to copy what this changes. */
		if (req->type != VIRTIO_BLK_T_IN && req->type != VIRTIO_BLK_T_FLUSH &&
		    !blk_export_may_write(blk, req)) {
			started = true; /* its copy reads */
			blk_dispatch_past(blk);
			break;
		}
		/* Off the list while it runs: a stall puts it back in order. */
		blk_pending_pop(blk);
		if (req->type == VIRTIO_BLK_T_IN || req->type == VIRTIO_BLK_T_OUT) {
			started = true;
			if (blk_run_rw(blk, req) == RUN_WAIT) {
				blk_requeue(blk, req);
				break;
			}
		} else if (blk_run_sync(blk, req) == RUN_WAIT) {
			blk_requeue(blk, req);
			break;
		}
	}
	if (started && blkio_submit(&blk->io))
		log_err("%s: io_uring submit failed", blk->vd.name);
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
	bool watched;
	int fd;

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
	fd = blk_export_take_fd(blk, &watched);
	pthread_mutex_unlock(&blk->vd.lock);
	blk_export_close_fd(blk, fd, watched);
}

void blk_drain(struct blk_dev *blk)
{
	while (blk->io.inflight)
		blkio_reap(&blk->io, true, blk_io_done, blk);
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

void blk_drop_pending(struct blk_dev *blk)
{
	while (blk->pending) {
		struct blk_req *req = blk->pending;

		blk_pending_pop(blk);
		/* A partly started write is freed by its last sub-request. */
		if (req->subs)
			req->mapped = req->len;
		else
			free(req);
	}
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
	if (!ret)
		blk->timer_watched = true;
	return ret;
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct blk_dev *blk = blk_of(vd);

	if (blk->ring_watched)
		evloop_del(vd->vm->loop, blkio_event_fd(&blk->io));
	if (blk->timer_watched)
		evloop_del(vd->vm->loop, blk->timer_fd);
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
static int blk_open_image(const struct disk_config *cfg, int fmt, struct disk **out, char *err,
			  size_t errlen)
{
	unsigned flags = cfg->readonly ? DISK_RDONLY : 0;
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
static int blk_open_disk(struct blk_dev *blk, const struct disk_config *cfg)
{
	char err[512] = "";
	int fmt = -1, ret;

	if (!strcmp(cfg->format, "raw"))
		fmt = DISK_FMT_RAW;
	else if (!strcmp(cfg->format, "qcow2"))
		fmt = DISK_FMT_QCOW2;
	ret = blk_open_image(cfg, fmt, &blk->disk, err, sizeof(err));
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
	if (cfg->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	ret = virtio_dev_init(&blk->vd, &blk_device_ops, &blk_ops, name, VIRTIO_ID_BLOCK,
			      features, devtype_virtio_blk.nr_queues, BLK_QUEUE_SIZE);
	blk->chain = malloc(sizeof(*blk->chain));
	blk->path = strdup(cfg->path);
	blk->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ret || !blk->chain || !blk->path || blk->timer_fd < 0) {
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
	ret = blk_open_disk(blk, cfg);
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
