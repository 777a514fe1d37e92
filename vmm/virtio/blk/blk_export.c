/* blk_export.c: live exports of a running disk in the CELLAINC format,
 * point-in-time consistent by copy-before-write (blk_export.h; the argument
 * is in docs/storage.md, "Live exports"). I/O thread, vd.lock held.
 *
 * Every block of the cut is in one of four states: to read (`todo`), being
 * read (`busy`: an io_uring read in flight), in memory (a `struct
 * exp_buf`, kept sorted by block), or sent. The stream sends the blocks in
 * ascending order; its cursor reads up to EXP_READ_AHEAD blocks ahead of
 * what it sends. A guest write to a block still to read starts a read of
 * that block (a copy, counted against max_copies) and waits for it; a
 * write to a block being read waits for that read. Guest writes to blocks
 * in memory, sent, or outside the cut go through at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <zlib.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "backend/qos.h"
#include "virtio/blk/blk.h"
#include "virtio/blk/blk_export.h"
#include "virtio/blk/blk_fine.h"
#include "vm.h"

#define EXP_READ_AHEAD 16 /* blocks the cursor reads ahead (1 MiB) */
#define EXP_MAX_EXT    32 /* extents resolved per disk_map call */

/* A block's content in memory: read ahead by the cursor, or copied before
 * a guest write (`copy`, counted against the cap). */
struct exp_buf {
	struct exp_buf *next; /* in exp->bufs, ascending blocks */
	uint64_t block;
	uint32_t len;         /* CBT_BLOCK, less for a disk's short last block */
	bool copy;
	bool orphan;          /* the export ended: freed when its reads complete */
	unsigned subs;        /* reads in io_uring */
	int err;
	uint8_t data[];
};

/* One io_uring read into a buffer (a DATA extent of its block). */
struct exp_read {
	struct blk_tag tag; /* export = true */
	struct exp_buf *buf;
	int fd;
	uint64_t host_off;
	size_t total, done;
	struct iovec iov;
};

enum exp_phase { EXP_META, EXP_DATA, EXP_TRAILER };

struct blk_export {
	bool active;
	int fd;
	bool watched;         /* EPOLLOUT (edge-triggered) on fd */
	bool regular;         /* fd is a regular file: synced at the end */
	bool deferred_commit;
	int fail;             /* a read failed: end the export with it */
	char fail_why[96];
	uint64_t nr_blocks, disk_size;
	uint8_t *set;         /* the cut: blocks to send */
	uint8_t *todo;        /* ... not read yet */
	uint8_t *busy;        /* ... with a read in flight */
	uint8_t *clear;       /* ... not written since the cut: cleared from `point` at the end */
	uint8_t *fset;        /* grain 4096: the 4 KiB units to send (blk_fine.h), or NULL */
	uint16_t out_mask;    /* ... of out_buf's block, not out yet */
	uint64_t next_block;  /* the cursor: next block to send is the first of `set` from here */
	uint64_t ra_block;    /* where the cursor's read-ahead goes on */
	unsigned nr_ahead;    /* the cursor's buffers (read or being read) */
	unsigned nr_copies, max_copies;
	unsigned reads;       /* exp_reads in io_uring */
	struct exp_buf *bufs;
	/* output */
	enum exp_phase phase;
	uint8_t *meta;
	const uint8_t *out;
	size_t out_len;
	struct exp_buf *out_buf; /* out points into it */
	/* The stall timeout and the bandwidth cap: the device's export timer
	 * (blk->exp_timer_fd, on the loop), armed for the earlier of the two
	 * deadlines (CLOCK_MONOTONIC ns). */
	int tfd;
	uint64_t stall_ns;
	uint64_t blocked_since; /* the output said EAGAIN with nothing taken since (0: no) */
	uint64_t throttle_until; /* the bucket lets the next bytes out then (0: no wait) */
	struct qos bw;           /* bytes bucket only */
	size_t bw_chunk;         /* bytes written per admission */
	uint8_t trailer[8];
	uLong crc;
	struct blk_export_status st;
};

static bool bit(const uint8_t *m, uint64_t b)
{
	return m[b / 8] & (1u << (b & 7));
}

static void bit_set(uint8_t *m, uint64_t b)
{
	m[b / 8] |= (uint8_t)(1u << (b & 7));
}

static void bit_clr(uint8_t *m, uint64_t b)
{
	m[b / 8] &= (uint8_t)~(1u << (b & 7));
}

/* The first set bit at or after b, or nr. */
static uint64_t bit_next(const uint8_t *m, uint64_t b, uint64_t nr)
{
	while (b < nr) {
		if (!(b & 7) && !m[b / 8]) {
			b += 8;
			continue;
		}
		if (bit(m, b))
			return b;
		b++;
	}
	return nr;
}

static void exp_watch_cb(void *opaque, uint32_t events);

/* The timer for the earlier of the stall deadline and the throttle's end
 * (none: disarmed). */
static void exp_rearm(struct blk_export *e)
{
	uint64_t at = e->throttle_until;
	struct itimerspec its = { 0 };

	if (e->blocked_since && (!at || e->blocked_since + e->stall_ns < at))
		at = e->blocked_since + e->stall_ns;
	if (e->tfd < 0)
		return;
	if (at) {
		its.it_value.tv_sec = (time_t)(at / 1000000000u);
		its.it_value.tv_nsec = (long)(at % 1000000000u);
	}
	if (timerfd_settime(e->tfd, TFD_TIMER_ABSTIME, &its, NULL))
		log_warn("export: cannot arm its timer: %s", strerror(errno));
}

static void exp_buf_release(struct blk_export *e, struct exp_buf *b)
{
	if (b->copy)
		e->nr_copies--;
	else
		e->nr_ahead--;
	if (b->subs)
		b->orphan = true; /* its reads still write into it */
	else
		free(b);
}

/* End the export (lock held): the fd is closed by whoever takes it
 * (blk_export_take_fd), after the lock is released. Buffers with reads in
 * flight are freed when those complete. */
static void exp_end(struct blk_dev *blk, const char *state, int err, const char *why)
{
	struct blk_export *e = blk->exp;

	if (!e || !e->active)
		return;
	e->active = false;
	e->blocked_since = e->throttle_until = 0;
	exp_rearm(e); /* disarmed */
	e->st.state = state;
	snprintf(e->st.error, sizeof(e->st.error), "%s", why ? why : "");
	if (err)
		log_warn("%s: export to point '%s' %s: %s", blk->vd.name, e->st.point, state, why);
	else
		log_info("%s: export to point '%s' done: %llu blocks, %llu bytes (%llu copied "
			 "before a write, %llu requests waited)", blk->vd.name, e->st.point,
			 (unsigned long long)e->st.blocks, (unsigned long long)e->st.stream_bytes,
			 (unsigned long long)e->st.copies, (unsigned long long)e->st.waits);
	if (e->out_buf)
		exp_buf_release(e, e->out_buf);
	e->out_buf = NULL;
	while (e->bufs) {
		struct exp_buf *b = e->bufs;

		e->bufs = b->next;
		exp_buf_release(e, b);
	}
	e->st.held = 0;
	blk->exp_last = e->st;
}

/* Start reading block b into a new buffer (todo -> busy, or in memory at
 * once for holes and compressed clusters). */
static void exp_read_block(struct blk_dev *blk, struct blk_export *e, uint64_t b, bool copy)
{
	uint64_t off = b << CBT_BLOCK_BITS, len = MIN((uint64_t)CBT_BLOCK, e->disk_size - off);
	struct disk_extent ext[EXP_MAX_EXT];
	struct exp_buf *buf = malloc(sizeof(*buf) + len), **pp;
	uint64_t mapped = 0;
	unsigned ufirst, un;
	uint16_t mask;
	int err = 0;

	bit_clr(e->todo, b);
	if (!buf) {
		e->fail = -ENOMEM;
		snprintf(e->fail_why, sizeof(e->fail_why), "out of memory");
		return;
	}
	memset(buf, 0, sizeof(*buf));
	buf->block = b;
	buf->len = (uint32_t)len;
	buf->copy = copy;
	buf->subs = 1; /* held while the reads are queued */
	for (pp = &e->bufs; *pp && (*pp)->block < b; pp = &(*pp)->next)
		;
	buf->next = *pp;
	*pp = buf;
	if (copy) {
		e->nr_copies++;
		e->st.copies++;
	} else {
		e->nr_ahead++;
	}
	bit_set(e->busy, b);
	/* Grain 4096: only the units sent are read (the rest is never used). */
	mask = e->fset ? (uint16_t)(e->fset[2 * b] | e->fset[2 * b + 1] << 8) : 0xffff;
	while (!err && blk_fine_run(&mask, &ufirst, &un) &&
	       (mapped = (uint64_t)ufirst * CBT_FINE_BLOCK) < len) {
		uint64_t hi = MIN(mapped + (uint64_t)un * CBT_FINE_BLOCK, len);

		while (mapped < hi && !err) {
			int n = disk_map(blk->disk, off + mapped, hi - mapped, false, ext, EXP_MAX_EXT);

			if (n <= 0) {
				err = n ? n : -EIO;
				break;
			}
			for (int i = 0; i < n && !err; i++) {
				size_t at = (size_t)(ext[i].off - off);

				if (ext[i].kind == DISK_EXT_DATA) {
					struct exp_read *r = malloc(sizeof(*r));

					if (!r) {
						err = -ENOMEM;
						break;
					}
					*r = (struct exp_read){ .tag = { .export = true }, .buf = buf,
								.fd = ext[i].fd, .host_off = ext[i].host_off,
								.total = (size_t)ext[i].len,
								.iov = { buf->data + at, (size_t)ext[i].len } };
					err = blkio_queue_readv(&blk->io, r->fd, &r->iov, 1, r->host_off, r);
					if (err) {
						free(r);
						break;
					}
					buf->subs++;
					e->reads++;
				} else if (ext[i].kind == DISK_EXT_ZERO) {
					memset(buf->data + at, 0, (size_t)ext[i].len);
				} else {
					err = disk_pread(blk->disk, buf->data + at, (size_t)ext[i].len,
							 ext[i].off);
				}
				mapped = ext[i].off + ext[i].len - off;
			}
		}
	}
	if (err && !buf->err)
		buf->err = err;
	if (err && !e->fail) {
		e->fail = err;
		snprintf(e->fail_why, sizeof(e->fail_why), "read of block %llu: %s",
			 (unsigned long long)b, strerror(-err));
	}
	if (--buf->subs == 0)
		bit_clr(e->busy, b);
}

void blk_export_io_done(struct blk_dev *blk, void *tag, int res)
{
	struct exp_read *r = tag;
	struct exp_buf *buf = r->buf;
	struct blk_export *e = blk->exp;

	if (res > 0 && (size_t)res < r->total - r->done) {
		r->done += (size_t)res;
		r->iov.iov_base = (uint8_t *)r->iov.iov_base + res;
		r->iov.iov_len -= (size_t)res;
		if (!blkio_queue_readv(&blk->io, r->fd, &r->iov, 1, r->host_off + r->done, r))
			return; /* submitted by the caller after reaping */
		res = -EIO;
	}
	if (res == 0) {
		/* End of file: a qcow2 cluster allocated at the end of the
		 * file whose tail was never written (the file grows as data
		 * lands) reads as zeroes, as a hole would. */
		memset(r->iov.iov_base, 0, r->iov.iov_len);
	}
	free(r);
	e->reads--;
	if (res < 0 && !buf->err)
		buf->err = res;
	if (--buf->subs == 0) {
		if (buf->orphan) {
			free(buf);
		} else {
			bit_clr(e->busy, buf->block);
			if (buf->err && e->active && !e->fail) {
				e->fail = buf->err;
				snprintf(e->fail_why, sizeof(e->fail_why), "read of block %llu: %s",
					 (unsigned long long)buf->block, strerror(-buf->err));
			}
		}
	}
	if (!e->active && !e->reads && e->fd < 0)
		blk_export_free(blk); /* the stream ended before this read did */
}

static bool exp_range_ready(const struct blk_export *e, uint64_t first, uint64_t last)
{
	for (uint64_t b = bit_next(e->set, first, last + 1); b <= last;
	     b = bit_next(e->set, b + 1, last + 1))
		if (bit(e->busy, b) || bit(e->todo, b))
			return false;
	return true;
}

bool blk_export_may_write(struct blk_dev *blk, struct blk_req *req)
{
	struct blk_export *e = blk->exp;
	uint64_t first, last;

	if (blk->exp_commit_mask && req->len) {
		/* A deferred commit must not clear what this changes. */
		uint64_t size = blk->exp_commit_blocks << CBT_BLOCK_BITS;

		for (uint64_t b = req->off >> CBT_BLOCK_BITS;
		     b < blk->exp_commit_blocks && (b << CBT_BLOCK_BITS) < req->off + req->len &&
		     (b << CBT_BLOCK_BITS) < size; b++)
			bit_clr(blk->exp_commit_mask, b);
	}
	if (!e || !e->active || !req->len || req->off >= e->disk_size)
		return true;
	first = req->off >> CBT_BLOCK_BITS;
	last = (req->off + MIN(req->len, e->disk_size - req->off) - 1) >> CBT_BLOCK_BITS;
	if (!exp_range_ready(e, first, last)) {
		bool capped = false;

		/* Copy what the cap allows; the rest waits for the stream to
		 * send a copy (room) or to reach the block itself. */
		for (uint64_t b = bit_next(e->todo, first, last + 1); b <= last;
		     b = bit_next(e->todo, b + 1, last + 1)) {
			if (!bit(e->set, b))
				continue;
			if (e->nr_copies >= e->max_copies || blkio_room(&blk->io) <= EXP_MAX_EXT) {
				capped = e->nr_copies >= e->max_copies;
				break;
			}
			exp_read_block(blk, e, b, true);
		}
		/* Holes and compressed clusters were read at once. */
		if (!exp_range_ready(e, first, last)) {
			if (!req->export_waited)
				e->st.waits++;
			if (capped && !req->export_capped)
				e->st.cap_waits++;
			req->export_waited = true;
			req->export_capped |= capped;
			return false;
		}
	}
	/* It changes these blocks after the cut: `point` must keep them. */
	for (uint64_t b = bit_next(e->set, first, last + 1); b <= last;
	     b = bit_next(e->set, b + 1, last + 1))
		bit_clr(e->clear, b);
	return true;
}

/* The cursor's read-ahead: start reads of the next blocks to send. */
static void exp_read_ahead(struct blk_dev *blk, struct blk_export *e)
{
	if (e->ra_block < e->next_block)
		e->ra_block = e->next_block;
	while (e->nr_ahead < EXP_READ_AHEAD && !e->fail && blkio_room(&blk->io) > EXP_MAX_EXT) {
		uint64_t b = bit_next(e->todo, e->ra_block, e->nr_blocks);

		if (b >= e->nr_blocks)
			break;
		exp_read_block(blk, e, b, false);
		e->ra_block = b + 1;
	}
}

/* The trailer is out: make it durable (a file), keep in `point` only what
 * changed since the cut, and close. */
static void exp_finish(struct blk_dev *blk, struct blk_export *e)
{
	int ret;

	if (e->regular && fdatasync(e->fd) < 0) {
		int err = errno;
		char why[96];

		snprintf(why, sizeof(why), "cannot sync the output: %s", strerror(err));
		exp_end(blk, "failed", -err, why);
		return;
	}
	if (e->deferred_commit) {
		/* Kept until the receiver says it stored the stream. */
		free(blk->exp_commit_mask);
		blk->exp_commit_mask = e->clear;
		blk->exp_commit_blocks = e->nr_blocks;
		snprintf(blk->exp_commit_point, sizeof(blk->exp_commit_point), "%s", e->st.point);
		e->clear = NULL;
		e->st.commit_pending = true;
		exp_end(blk, "done", 0, NULL);
		return;
	}
	ret = cbt_point_clear(blk->cbt, e->st.point, e->clear);
	blk_fine_commit(blk->fine, e->st.point, e->clear, e->nr_blocks);
	if (ret)
		log_warn("%s: point '%s' keeps the exported blocks too: %s", blk->vd.name,
			 e->st.point, strerror(-ret));
	exp_end(blk, "done", 0, NULL);
}

static void exp_commit_drop(struct blk_dev *blk)
{
	free(blk->exp_commit_mask);
	blk->exp_commit_mask = NULL;
	blk->exp_last.commit_pending = false;
}

int blk_export_commit(struct blk_dev *blk, const char *point)
{
	int ret;

	if (!blk->exp_commit_mask || strcmp(point, blk->exp_commit_point))
		return -ENOENT;
	ret = cbt_point_clear(blk->cbt, point, blk->exp_commit_mask);
	blk_fine_commit(blk->fine, point, blk->exp_commit_mask, blk->exp_commit_blocks);
	exp_commit_drop(blk);
	return ret;
}

/* The next run of out_buf's 4 KiB units to send: false when none is left. */
static bool exp_fine_next(struct blk_export *e)
{
	unsigned first, n;

	if (!blk_fine_run(&e->out_mask, &first, &n) ||
	    (size_t)first * CBT_FINE_BLOCK >= e->out_buf->len)
		return e->out_mask = 0, false;
	e->out = e->out_buf->data + (size_t)first * CBT_FINE_BLOCK;
	e->out_len = MIN((size_t)n * CBT_FINE_BLOCK, e->out_buf->len - (size_t)first * CBT_FINE_BLOCK);
	e->crc = crc32(e->crc, e->out, (uInt)e->out_len);
	return true;
}

void blk_export_pump(struct blk_dev *blk)
{
	struct blk_export *e = blk->exp;

	if (!e || !e->active)
		return;
	for (;;) {
		if (e->fail) {
			exp_end(blk, "failed", e->fail, e->fail_why);
			return;
		}
		if (e->out_len) {
			size_t len = e->out_len;
			ssize_t n;
			int err;

			if (e->throttle_until)
				return; /* the timer brings us back */
			if (qos_enabled(&e->bw)) {
				uint64_t now = qos_now_ns(), wait;

				len = MIN(len, e->bw_chunk);
				wait = qos_admit(&e->bw, 0, len, now);
				if (wait) {
					e->throttle_until = now + wait;
					e->st.throttled++;
					exp_rearm(e);
					return;
				}
			}
			n = write(e->fd, e->out, len);
			err = n < 0 ? errno : 0;
			if (err == EINTR)
				continue;
			if (err == EAGAIN) {
				if (!e->watched &&
				    !evloop_add(blk->vd.vm->loop, e->fd, EPOLLOUT | EPOLLET, exp_watch_cb,
						blk))
					e->watched = true;
				if (!e->watched)
					exp_end(blk, "failed", -EIO, "cannot wait for the output");
				if (!e->blocked_since) {
					e->blocked_since = qos_now_ns();
					exp_rearm(e);
				}
				return;
			}
			e->blocked_since = 0;
			if (n <= 0) {
				char why[96];

				snprintf(why, sizeof(why), "output: %s",
					 err == EPIPE ? "the reader closed the stream"
					 : err ? strerror(err) : "no progress");
				exp_end(blk, err == EPIPE ? "cancelled" : "failed",
					err ? -err : -EIO, why);
				return;
			}
			e->out += n;
			e->out_len -= (size_t)n;
			e->st.sent += (uint64_t)n;
			continue;
		}
		if (e->out_buf && e->out_mask && exp_fine_next(e))
			continue; /* the block's next run of 4 KiB units */
		if (e->out_buf) { /* a block is out */
			e->next_block = e->out_buf->block + 1;
			exp_buf_release(e, e->out_buf);
			e->out_buf = NULL;
		}
		if (e->phase == EXP_TRAILER) {
			exp_finish(blk, e);
			return;
		}
		e->phase = EXP_DATA;
		exp_read_ahead(blk, e);
		if (e->fail)
			continue;
		{
			uint64_t b = bit_next(e->set, e->next_block, e->nr_blocks);
			struct exp_buf *buf = e->bufs;

			if (b >= e->nr_blocks) {
				cbt_incr_trailer((uint32_t)e->crc, e->trailer);
				e->out = e->trailer;
				e->out_len = sizeof(e->trailer);
				e->phase = EXP_TRAILER;
				continue;
			}
			if (!buf || buf->block != b) {
				/* Not read yet (the ring was full): a completion
				 * brings us back. */
				if (bit(e->todo, b) && blkio_room(&blk->io) > EXP_MAX_EXT)
					exp_read_block(blk, e, b, false);
				if (e->fail)
					continue;
				if (!e->bufs || e->bufs->block != b || e->bufs->subs)
					return;
				buf = e->bufs;
			}
			if (buf->subs)
				return; /* its read completes later */
			if (buf->err) {
				e->fail = buf->err;
				snprintf(e->fail_why, sizeof(e->fail_why), "read of block %llu: %s",
					 (unsigned long long)b, strerror(-buf->err));
				continue;
			}
			e->bufs = buf->next;
			e->out_buf = buf;
			if (e->fset) {
				e->out_mask = (uint16_t)(e->fset[2 * b] | e->fset[2 * b + 1] << 8);
				e->out_len = 0;
				exp_fine_next(e);
				continue;
			}
			e->out = buf->data;
			e->out_len = buf->len;
			e->crc = crc32(e->crc, buf->data, buf->len);
		}
	}
}

/* The output can take more (or its reader went away). */
static void exp_watch_cb(void *opaque, uint32_t events)
{
	struct blk_dev *blk = opaque;
	uint16_t used_before;

	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	if (blk->exp && blk->exp->active) {
		if (events & (EPOLLERR | EPOLLHUP))
			exp_end(blk, "cancelled", -EPIPE, "output: the reader closed the stream");
		else
			blk_export_pump(blk);
	}
	/* Copies sent free room for waiting writes. */
	blk_settle(blk, used_before);
	blk_export_unlock(blk);
}

/* The stall deadline or the throttle's end came. */
void blk_export_timer_cb(void *opaque, uint32_t events)
{
	struct blk_dev *blk = opaque;
	struct blk_export *e;
	uint16_t used_before;
	uint64_t ticks, now = qos_now_ns();

	(void)events;
	if (read(blk->exp_timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_warn("%s: export timer: %s", blk->vd.name, strerror(errno));
	pthread_mutex_lock(&blk->vd.lock);
	used_before = blk->vd.vqs[0].used_idx;
	e = blk->exp;
	if (e && e->active) {
		if (e->blocked_since && now - e->blocked_since >= e->stall_ns) {
			char why[96];

			snprintf(why, sizeof(why), "output: nothing taken for %llu ms (the reader "
				 "stalled)", (unsigned long long)(e->stall_ns / 1000000u));
			exp_end(blk, "cancelled", -ETIMEDOUT, why);
		} else {
			if (e->throttle_until && now >= e->throttle_until)
				e->throttle_until = 0;
			exp_rearm(e);
			blk_export_pump(blk);
		}
	}
	blk_settle(blk, used_before);
	blk_export_unlock(blk);
}

/* An ended export's descriptors, taken (lock held) to be closed once the
 * lock is released: evloop_del from another thread waits for the loop's
 * callbacks, which take the lock. */
struct exp_fds {
	int out;
	bool watched;
};

static struct exp_fds exp_take_fds(struct blk_dev *blk)
{
	struct blk_export *e = blk->exp;
	struct exp_fds f = { -1, false };

	if (!e || e->active)
		return f;
	f.out = e->fd;
	f.watched = e->watched;
	e->fd = -1;
	e->watched = false;
	if (!e->reads)
		blk_export_free(blk);
	return f;
}

static void exp_close_fds(struct blk_dev *blk, struct exp_fds f)
{
	if (f.out >= 0) {
		if (f.watched)
			evloop_del(blk->vd.vm->loop, f.out);
		close(f.out);
	}
}

void blk_export_unlock(struct blk_dev *blk)
{
	struct exp_fds f = exp_take_fds(blk);

	pthread_mutex_unlock(&blk->vd.lock);
	exp_close_fds(blk, f);
}

void blk_export_free(struct blk_dev *blk)
{
	struct blk_export *e = blk->exp;

	if (!e)
		return;
	if (e->active)
		exp_end(blk, "cancelled", -ECANCELED, "the disk went away");
	exp_close_fds(blk, (struct exp_fds){ e->fd, e->watched });
	free(e->set);
	free(e->todo);
	free(e->busy);
	free(e->clear);
	free(e->fset);
	free(e->meta);
	free(e);
	blk->exp = NULL;
}

void blk_export_destroy(struct blk_dev *blk)
{
	blk_export_free(blk);
	exp_commit_drop(blk);
	blk_fine_free(blk->fine);
	blk->fine = NULL;
}

void blk_export_cancel(struct blk_dev *blk, const char *why)
{
	exp_end(blk, "cancelled", -ECANCELED, why);
}

void blk_export_get_status(struct blk_dev *blk, struct blk_export_status *st)
{
	if (blk->exp && blk->exp->active) {
		*st = blk->exp->st;
		st->held = blk->exp->nr_copies;
	} else {
		*st = blk->exp_last;
		if (!st->state)
			st->state = "none";
	}
}

/* The blocks holding data at the cut (a full export). */
static int exp_allocated(struct blk_dev *blk, uint8_t *set, char *err, size_t errlen)
{
	uint64_t size = disk_size(blk->disk);
	struct disk_extent ext[64];

	for (uint64_t off = 0; off < size;) {
		int n = disk_map(blk->disk, off, size - off, false, ext, 64);

		if (n <= 0) {
			snprintf(err, errlen, "cannot map the disk: %s",
				 n ? disk_error(blk->disk) : "no extents");
			return n ? n : -EIO;
		}
		for (int i = 0; i < n; i++) {
			if (ext[i].kind == DISK_EXT_ZERO || !ext[i].len)
				continue;
			for (uint64_t b = ext[i].off >> CBT_BLOCK_BITS;
			     b <= (ext[i].off + ext[i].len - 1) >> CBT_BLOCK_BITS; b++)
				bit_set(set, b);
		}
		off = ext[n - 1].off + ext[n - 1].len;
	}
	return 0;
}

static int exp_fail_start(int fd, int ret)
{
	close(fd);
	return ret;
}

int blk_export_start(struct blk_dev *blk, const struct blk_export_args *a, int fd,
		     struct blk_export_status *st, char *err, size_t errlen)
{
	struct blk_export *e;
	uint64_t nr, bytes;
	size_t meta_len = 0;
	struct stat sb;
	int ret;

	if (!blk->cbt) {
		snprintf(err, errlen, "%s has no change tracking (cbt=on)", blk->id);
		return exp_fail_start(fd, -EINVAL);
	}
	if (blk->exp && blk->exp->active) {
		snprintf(err, errlen, "an export of %s is running (to point '%s')", blk->id,
			 blk->exp->st.point);
		return exp_fail_start(fd, -EBUSY);
	}
	if (!blk->disk || blk->stall_err) {
		snprintf(err, errlen, "%s: storage is failing (%s)", blk->id,
			 blk->error[0] ? blk->error : "no image");
		return exp_fail_start(fd, -EIO);
	}
	if (!a->point || !a->point[0] || strlen(a->point) >= CBT_NAME_MAX ||
	    (a->since && (!a->since[0] || strlen(a->since) >= CBT_NAME_MAX))) {
		snprintf(err, errlen, "point names must be 1-31 bytes");
		return exp_fail_start(fd, -EINVAL);
	}
	if (a->max_copies > BLK_EXPORT_COPIES_MAX) {
		snprintf(err, errlen, "max_copies: at most %u", BLK_EXPORT_COPIES_MAX);
		return exp_fail_start(fd, -EINVAL);
	}
	if (a->stall_ms > BLK_EXPORT_STALL_MAX ||
	    (a->max_bandwidth && a->max_bandwidth < BLK_EXPORT_BW_MIN)) {
		snprintf(err, errlen, "stall_ms: at most %u; max_bandwidth: 0 or at least %u bytes/s",
			 BLK_EXPORT_STALL_MAX, BLK_EXPORT_BW_MIN);
		return exp_fail_start(fd, -EINVAL);
	}
	if (fstat(fd, &sb) < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "the output descriptor: %s", strerror(errno));
		return exp_fail_start(fd, -EBADF);
	}
	/* The cut: nothing in io_uring, so every write that started is in the
	 * image and marked, and none is half-way. An earlier export's reads
	 * complete here too. */
	blk_drain(blk);
	blk_export_free(blk);
	if (blk->exp_commit_mask) /* never committed: its point keeps the blocks (safe) */
		exp_commit_drop(blk);
	nr = cbt_nr_blocks(blk->cbt);
	e = calloc(1, sizeof(*e));
	if (!e)
		return exp_fail_start(fd, -ENOMEM);
	e->fd = fd;
	e->regular = S_ISREG(sb.st_mode);
	e->nr_blocks = nr;
	e->disk_size = disk_size(blk->disk);
	e->set = calloc(1, (nr + 7) / 8);
	e->todo = malloc((nr + 7) / 8);
	e->busy = calloc(1, (nr + 7) / 8);
	e->clear = malloc((nr + 7) / 8);
	if (!e->set || !e->todo || !e->busy || !e->clear) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	if (a->since) {
		const uint8_t *bits = cbt_point_bits(blk->cbt, a->since, &ret);

		if (!bits) {
			snprintf(err, errlen, ret == -ESTALE ? "point '%s' is invalid (the host "
				 "crashed while the disk was in use): take a full export"
				 : "no point '%s' in the tracking file", a->since);
			goto fail;
		}
		memcpy(e->set, bits, (nr + 7) / 8);
	} else if ((ret = exp_allocated(blk, e->set, err, errlen))) {
		goto fail;
	}
	if (nr % 8) /* bits past the last block */
		e->set[nr / 8] &= (uint8_t)((1u << (nr % 8)) - 1);
	if (a->grain == CBT_FINE_BLOCK && !blk->fine)
		blk->fine = blk_fine_new(e->disk_size); /* NULL: 64 KiB sets */
	if (a->grain == CBT_FINE_BLOCK && blk->fine &&
	    !(e->fset = blk_fine_set(blk->fine, a->since, e->set, nr, &e->st.narrowed))) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	e->st.grain = e->fset ? CBT_FINE_BLOCK : CBT_BLOCK;
	if (e->fset)
		ret = cbt_incr_meta_grain(e->fset, blk_fine_units(blk->fine), CBT_FINE_BITS,
					  e->disk_size, a->point, a->since ? a->since : "",
					  &e->meta, &meta_len, &bytes);
	else
		ret = cbt_incr_meta(e->set, nr, e->disk_size, a->point, a->since ? a->since : "",
				    &e->meta, &meta_len, &bytes);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* `point` starts holding the cut's blocks: if this export never
	 * completes (cancelled, failed, the worker killed), an export since
	 * `point` still sends them. Only a completed one clears them. */
	ret = cbt_point_start_from(blk->cbt, a->point, e->set);
	if (ret) {
		snprintf(err, errlen, "cannot start point '%s': %s", a->point, strerror(-ret));
		goto fail;
	}
	/* The point's 4 KiB map starts with the units sent (none: its
	 * exports send whole blocks). */
	if (!e->fset || blk_fine_start(blk->fine, a->point, a->since, e->fset))
		blk_fine_drop(blk->fine, a->point);
	e->tfd = blk->exp_timer_fd;
	e->stall_ns = (uint64_t)(a->stall_ms ? a->stall_ms : BLK_EXPORT_STALL_MS) * 1000000u;
	if (a->max_bandwidth) {
		struct qos_limits l = { .bps = a->max_bandwidth };

		qos_init(&e->bw, &l, qos_now_ns());
		/* A tenth of a second's worth per write (the bucket's size). */
		e->bw_chunk = (size_t)MAX(a->max_bandwidth / 10, (uint64_t)4096);
	}
	if (e->regular && ftruncate(fd, lseek(fd, 0, SEEK_CUR)) < 0)
		log_warn("%s: cannot truncate the export file: %s", blk->vd.name, strerror(errno));
	memcpy(e->todo, e->set, (nr + 7) / 8);
	memcpy(e->clear, e->set, (nr + 7) / 8);
	e->active = true;
	e->max_copies = a->max_copies ? a->max_copies : BLK_EXPORT_COPIES;
	e->deferred_commit = a->deferred_commit;
	e->phase = EXP_META;
	e->out = e->meta;
	e->out_len = meta_len;
	e->crc = crc32(crc32(0, NULL, 0), e->meta, (uInt)meta_len);
	e->st.state = "running";
	snprintf(e->st.point, sizeof(e->st.point), "%s", a->point);
	snprintf(e->st.since, sizeof(e->st.since), "%s", a->since ? a->since : "");
	for (uint64_t b = 0; b < nr; b++)
		e->st.blocks += bit(e->set, b);
	e->st.data_bytes = bytes;
	e->st.stream_bytes = meta_len + bytes + sizeof(e->trailer);
	e->st.max_copies = e->max_copies;
	e->st.max_bandwidth = a->max_bandwidth;
	e->st.stall_ms = (uint32_t)(e->stall_ns / 1000000u);
	blk->exp = e;
	log_info("%s: export to point '%s' since %s%s%s: %llu blocks, %llu bytes", blk->vd.name,
		 a->point, a->since ? "'" : "", a->since ? a->since : "the start (full)",
		 a->since ? "'" : "", (unsigned long long)e->st.blocks, (unsigned long long)bytes);
	*st = e->st;
	blk_export_pump(blk);
	return 0;
fail:
	e->fd = -1;
	free(e->fset);
	free(e->set);
	free(e->todo);
	free(e->busy);
	free(e->clear);
	free(e->meta);
	free(e);
	return exp_fail_start(fd, ret);
}
