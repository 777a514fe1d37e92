/* blkio.h: asynchronous block I/O with io_uring (liburing), one ring per disk.
 *
 * A blkio owns one io_uring and the eventfd it signals; it owns no image
 * file: every request names the fd it works on, so one ring serves all the
 * files of a disk (the layers of a qcow2 backing chain, a switched top
 * layer). The ring carries registered files only: a request's fd is put in
 * the ring's file table the first time it is used (the table holds its own
 * reference to the file), and blkio_forget_files() empties the table; the
 * owner calls it whenever one of the disk's descriptors may be closed (a
 * disk switch), since a later file may get the same number. Requests are queued with the blkio_queue_* calls, sent with
 * blkio_submit(), and their completions collected with blkio_reap() when
 * blkio_event_fd() becomes readable (the device watches it from the VM's I/O
 * thread). Not thread-safe: the owner serialises every call.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#include "compiler.h"

/* Slots of the ring's file table: a backing chain (at most 64 deep) and
 * the top layers of later switches; when full it is emptied and refilled. */
#define BLKIO_FILES 80

struct blkio {
	int efd;          /* signalled by the ring on each completion */
	unsigned nr_files;        /* slots in use, from 0 */
	int files[BLKIO_FILES];   /* the descriptor in each slot, -1: none */
	bool ring_ok;
	unsigned depth;
	unsigned inflight;
	struct io_uring ring;
};

/* Completion callback: `tag` is what the request was queued with, `res` the
 * io_uring result (bytes, or -errno). */
typedef void (*blkio_done_fn)(void *ctx, void *tag, int res);

/* Set up a ring of `depth` entries and its eventfd. Returns 0 or -errno; the
 * reason is logged with `who` as the prefix. */
int blkio_init(struct blkio *b, const char *who, unsigned depth) __must_check;
/* Wait for in-flight requests (their callbacks are not run), free the ring. */
void blkio_close(struct blkio *b);

/* Empty the ring's file table (requests in flight keep their files). Call
 * before any descriptor the ring has seen may be closed or reused. */
void blkio_forget_files(struct blkio *b);

/* Queue one request on `fd` (registered in the ring's table on first use).
 * Buffers (and the iovec array) must stay valid until the completion is
 * reaped. Return 0, -EBUSY when the ring is full, or -errno when fd cannot
 * be registered. */
int blkio_queue_readv(struct blkio *b, int fd, const struct iovec *iov, unsigned nr,
		      uint64_t off, void *tag) __must_check;
int blkio_queue_writev(struct blkio *b, int fd, const struct iovec *iov, unsigned nr,
		       uint64_t off, void *tag) __must_check;
/* fdatasync: data written before this is submitted reaches stable storage. */
int blkio_queue_flush(struct blkio *b, int fd, void *tag) __must_check;
/* fallocate(mode, off, len): FALLOC_FL_PUNCH_HOLE / FALLOC_FL_ZERO_RANGE. */
int blkio_queue_fallocate(struct blkio *b, int fd, int mode, uint64_t off, uint64_t len,
			  void *tag) __must_check;
/* Send queued requests to the kernel. Returns 0 or -errno. */
int blkio_submit(struct blkio *b) __must_check;

/* Run `done` for each finished request. With `wait`, block until nothing is
 * in flight. Returns the number of completions handled. */
unsigned blkio_reap(struct blkio *b, bool wait, blkio_done_fn done, void *ctx);

/* Free submission slots (requests that can still be queued). */
static inline unsigned blkio_room(const struct blkio *b)
{
	return b->inflight < b->depth ? b->depth - b->inflight : 0;
}

static inline int blkio_event_fd(const struct blkio *b)
{
	return b->efd;
}
