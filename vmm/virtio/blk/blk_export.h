/* blk_export.h: live, point-in-time exports of a running virtio-blk disk
 * (docs/storage.md, "Live exports (copy-before-write)"), for blk.c and
 * blk_ctl.c. Everything runs with vd.lock held.
 *
 * The cut: with nothing in io_uring, the blocks marked in point `since`
 * (every allocated block for a full export) are frozen into the export's
 * set, and point `point` starts holding that set. The stream (CELLAINC,
 * cbt.h) then carries those blocks as they were at the cut, in order,
 * while the guest runs: a write, discard or write-zeroes that touches a
 * block not read yet waits until the block's cut-time content has been read
 * into memory (copy-before-write; at most `max_copies` blocks held), and
 * never longer than that read, or, when the copies are at their cap, than
 * the stream takes to drain one. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "virtio/blk/blk_ctl.h"

struct blk_dev;
struct blk_req;

/* Tags of io_uring requests: a guest request's part (blk.c) or an export's
 * read. */
struct blk_tag {
	bool export;
};

/* Start an export to fd (taken, also on failure). Returns 0 or -errno with
 * the reason in err. */
int blk_export_start(struct blk_dev *blk, const struct blk_export_args *a, int fd,
		     struct blk_export_status *st, char *err, size_t errlen) __must_check;
/* Clear what a deferred commit keeps from its point: 0, or -ENOENT. */
int blk_export_commit(struct blk_dev *blk, const char *point);
/* Cancel a running export: the stream stops without its trailer. */
void blk_export_cancel(struct blk_dev *blk, const char *why);
/* May the head request (a write, discard or write-zeroes) start now?
 * Starts the copy-before-write reads it needs; false: keep it waiting. */
bool blk_export_may_write(struct blk_dev *blk, struct blk_req *req);
/* An export read finished (from blk.c's completion handler). */
void blk_export_io_done(struct blk_dev *blk, void *tag, int res);
/* Move the stream on: send what is ready, start the next reads. */
void blk_export_pump(struct blk_dev *blk);
/* The device's export timer fired (on the loop; blk.c watches it). */
void blk_export_timer_cb(void *opaque, uint32_t events);
/* Release vd.lock, then stop watching and close an ended export's
 * descriptors (its output and its timer: evloop_del from another thread
 * waits for the loop's callbacks, which take vd.lock). */
void blk_export_unlock(struct blk_dev *blk);
/* Free what the export holds (nothing in flight). */
void blk_export_free(struct blk_dev *blk);
/* The device goes away: the export and a deferred commit (never done: the
 * point keeps the blocks). */
void blk_export_destroy(struct blk_dev *blk);
void blk_export_get_status(struct blk_dev *blk, struct blk_export_status *st);
