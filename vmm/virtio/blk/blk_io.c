/* blk_io.c: virtio-blk's request engine: requests mapped with disk_map()
 * and moved by io_uring on the I/O thread, several in flight; the order
 * rules (barriers, overlaps), flushes, completions and requeues. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_blk.h>

#include "backend/blkio.h"
#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_fine.h"
#include "virtio/blk/blk_export.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vm.h"

#define BLK_MAX_EXT 32 /* extents resolved per disk_map call */

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
void blk_io_done(void *ctx, void *tag, int res)
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

	if (write && blk->cbt && !req->mapped) {
		cbt_mark(blk->cbt, req->off, req->len); /* before the data can land */
		blk_fine_mark(blk->fine, req->off, req->len);
	}
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
		if (blk->cbt) {
			cbt_mark(blk->cbt, req->off, req->len);
			blk_fine_mark(blk->fine, req->off, req->len);
		}
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

void blk_pending_pop(struct blk_dev *blk)
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

void blk_drain(struct blk_dev *blk)
{
	while (blk->io.inflight)
		blkio_reap(&blk->io, true, blk_io_done, blk);
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

void blk_settle(struct blk_dev *blk, uint16_t used_before)
{
	blk_dispatch(blk);
	if (blkio_submit(&blk->io))
		log_err("%s: io_uring submit failed", blk->vd.name);
	if (blk->vd.vqs[0].used_idx != used_before)
		virtio_dev_maybe_notify(&blk->vd, 0);
}
