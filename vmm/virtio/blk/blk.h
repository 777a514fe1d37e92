/* blk.h: virtio-blk device state, shared by blk.c, blk_ctl.c and the unit tests.
 *
 * Request life cycle (all on the I/O thread, vd.lock held):
 *   popped from the virtqueue -> appended to `pending` (FIFO, in pop order)
 *   -> blk_dispatch() takes the head when QoS admits it, no barrier waits
 *   and storage is not stalled -> mapped with disk_map() and sent to
 *   io_uring (one sub-request per DATA extent), or done synchronously
 *   (ZERO/SLOW extents, FLUSH, DISCARD, WRITE_ZEROES) -> completed into the
 *   used ring when its last sub-request is reaped.
 * FLUSH, DISCARD and WRITE_ZEROES are barriers: they wait until every write
 * started before them has completed. While a live export (blk_export.h)
 * makes the head wait for a copy-before-write read, requests behind it that
 * overlap no earlier waiting one and need no copy start past it, up to the
 * next barrier. A request that fails with a storage
 * error (EIO, ENOSPC, EDQUOT, ENODEV, ...) is not completed: it goes back
 * into `pending` at its place, the disk stalls, the VM pauses with the
 * reason, and a timer retries (blk_ctl.c).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "backend/blkio.h"
#include "backend/qos.h"
#include "config.h"
#include "virtio/blk/blk_ctl.h"
#include "virtio/mmio.h"

#define SECTOR_SHIFT 9
#define SECTOR_SIZE  (1u << SECTOR_SHIFT)
/* Largest discard / write-zeroes in one request: 2 GiB. */
#define BLK_MAX_DWZ_SECTORS (1u << 22)
#define BLK_QUEUE_SIZE 256
#define BLK_RING_DEPTH 256

struct disk;
struct cbt;
struct blk_export;
struct blk_fine;

/* One guest request, from pop to completion. */
struct blk_req {
	struct blk_req *next;  /* in blk->pending */
	uint64_t seq;          /* pop order: a retried request keeps its place */
	uint16_t head;
	uint8_t *status;       /* the last writable byte of the chain */
	uint32_t type;
	uint32_t data_len;     /* bytes of a read/write */
	uint32_t written;      /* bytes put in the guest's buffers */
	uint64_t off, len;     /* byte range (read, write, discard, write-zeroes) */
	uint32_t dwz_flags;
	bool admitted;         /* QoS let it through (kept across a retry) */
	bool export_waited;    /* counted in a live export's waits (and cap_waits) */
	bool export_capped;
	uint64_t mapped;       /* bytes of [off, off+len) already started */
	unsigned subs;         /* sub-requests in io_uring */
	int err;               /* first failure of a sub-request */
	unsigned nr_iov;
	struct iovec iov[VIRTQ_CHAIN_MAX];
};


/* Ranges written since the last successful flush: replayed from the page
 * cache when an fdatasync failed (its error drops the dirty state). */
#define BLK_REDO_MAX 512
struct blk_redo {
	unsigned nr;
	bool overflow;  /* too many ranges: the whole disk is replayed */
	struct { uint64_t off, len; } r[BLK_REDO_MAX];
};

struct blk_dev {
	struct virtio_dev vd; /* first: the transport frees the whole object */
	struct blkio io;
	bool io_open;
	bool ring_watched;
	bool timer_watched;
	bool readonly;
	bool dropping;        /* reset: completions are discarded, not pushed */
	uint64_t capacity;    /* 512-byte sectors */
	char serial[20];      /* VIRTIO_BLK_ID_BYTES, NUL-padded */
	char id[32];          /* "blk0" or the configured id, for messages */
	char *path;
	struct virtq_chain *chain; /* scratch for popping */

	struct disk *disk;
	struct cbt *cbt;      /* changed-block tracking, or NULL */

	/* Requests popped but not started, in pop order. */
	struct blk_req *pending, *pending_tail;
	uint64_t next_seq;
	unsigned inflight_reqs;   /* requests with sub-requests in io_uring */
	unsigned inflight_writes; /* write sub-requests in io_uring */
	bool meta_wait;           /* disk_map said -EAGAIN: drain writes, flush */

	/* QoS: the head of `pending` waits for the timer when not admitted. */
	struct qos qos;
	struct disk_qos_config qos_cfg;
	int timer_fd;             /* QoS release and storage retry */
	/* A live export's stall deadline and bandwidth cap (blk_export.c):
	 * made with the device, as the sandbox allows no timerfd_create later. */
	int exp_timer_fd;
	bool exp_timer_watched;
	bool timer_armed;

	/* Storage loss: stall_err != 0 while requests wait for a retry. */
	int stall_err;
	bool recovering;          /* retried; resume once the retries completed */
	unsigned retry_ms;
	char error[160];          /* "" or the storage error shown in status */
	bool redo_needed;         /* a flush failed: replay `redo` first */
	struct blk_redo redo;

	uint64_t stat_stalls, stat_retries;

	/* Live migration with storage (vmm/migrate/storage.c): while set,
	 * every write, discard and write-zeroes sets the bits of the
	 * (1 << track_shift)-byte blocks it touched when it ends, i.e. after
	 * its data landed. The migration owns the bitmap; both sides touch it
	 * with vd.lock held only. */
	unsigned long *track;
	unsigned track_shift;

	/* A live export (blk_export.c): running, or ending while its reads
	 * complete; the last one's outcome for status. */
	struct blk_export *exp;
	struct blk_export_status exp_last;
	/* A completed export with a deferred commit: its point and the blocks
	 * it sent that no write has touched since its cut. */
	char exp_commit_point[32];
	uint8_t *exp_commit_mask;
	uint64_t exp_commit_blocks;
	/* The 4 KiB maps of exports with grain 4096 (blk_fine.h), or NULL. */
	struct blk_fine *fine;
};

_Static_assert(offsetof(struct blk_dev, vd) == 0, "transport frees the device through vd");

/* blk.c, for blk_ctl.c and blk_state.c */
/* Parse a popped chain into req: -1 to queue it, or a status to complete
 * it with at once. */
int blk_parse(struct blk_dev *blk, const struct virtq_chain *c, struct blk_req *req);
void blk_arm_timer(struct blk_dev *blk, uint64_t ns);

/* blk_io.c, the request engine */
void blk_req_complete(struct blk_dev *blk, struct blk_req *req, uint8_t code);
void blk_requeue(struct blk_dev *blk, struct blk_req *req);
void blk_drop_pending(struct blk_dev *blk);
void blk_dispatch(struct blk_dev *blk);
/* Dispatch what can go, submit, and notify the guest when the used ring
 * moved past used_before (vd.lock held). */
void blk_settle(struct blk_dev *blk, uint16_t used_before);
/* io_uring completion (blkio_reap callback: ctx is the device). */
void blk_io_done(void *ctx, void *tag, int res);
/* Take the first pending request off the queue. */
void blk_pending_pop(struct blk_dev *blk);
/* Block until every sub-request in io_uring completed (lock held). */
void blk_drain(struct blk_dev *blk);
/* Run the steps a metadata wait or a failed flush left to do; 0 or -errno. */
int blk_flush_now(struct blk_dev *blk);

/* blk_state.c */
int blk_save(struct virtio_dev *vd, struct state_writer *w);
int blk_load(struct virtio_dev *vd, struct state_reader *r);

/* blk_ctl.c */
/* Mark [off, off + len) in the migration's dirty bitmap (blk->track set). */
void blk_track_mark(struct blk_dev *blk, uint64_t off, uint64_t len);
bool blk_storage_error(int err);
void blk_stall(struct blk_dev *blk, int err, const char *what);
void blk_timer_cb(void *opaque, uint32_t events);
/* After a retry: once nothing failed again and nothing is in flight, clear
 * the error and resume the VM if the stall paused it. */
void blk_check_recovered(struct blk_dev *blk);
