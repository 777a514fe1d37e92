/* blkio.h: asynchronous I/O on a disk image with io_uring (liburing).
 *
 * A blkio owns the image fd, its advisory lock and one io_uring. Requests
 * are queued with the blkio_queue_* calls, sent with blkio_submit(), and
 * their completions collected with blkio_reap() when blkio_event_fd()
 * becomes readable (the device watches it from the VM's I/O thread). Not
 * thread-safe: the owner serialises every call.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#include "compiler.h"

struct blkio {
	int fd;
	int efd;          /* signalled by the ring on each completion */
	bool readonly;
	bool ring_ok;
	uint64_t size;    /* bytes */
	unsigned inflight;
	struct io_uring ring;
};

/* Completion callback: `tag` is what the request was queued with, `res` the
 * io_uring result (bytes, or -errno). */
typedef void (*blkio_done_fn)(void *ctx, void *tag, int res);

/* Open `path` (O_RDONLY when readonly, else O_RDWR), take an flock
 * (LOCK_SH or LOCK_EX, non-blocking) and set up a ring of `depth` entries.
 * Returns 0, -EBUSY when another process holds the image, or -errno; the
 * reason is logged with `who` as the prefix. */
int blkio_open(struct blkio *b, const char *who, const char *path, bool readonly,
	       unsigned depth) __must_check;
/* Wait for in-flight requests (their callbacks are not run), close all. */
void blkio_close(struct blkio *b);

/* Queue one request. Buffers (and the iovec array) must stay valid until
 * the completion is reaped. Return 0 or -EBUSY when the ring is full. */
int blkio_queue_readv(struct blkio *b, const struct iovec *iov, unsigned nr, uint64_t off,
		      void *tag) __must_check;
int blkio_queue_writev(struct blkio *b, const struct iovec *iov, unsigned nr, uint64_t off,
		       void *tag) __must_check;
/* fdatasync: data written before this is submitted reaches stable storage. */
int blkio_queue_flush(struct blkio *b, void *tag) __must_check;
/* fallocate(mode, off, len): FALLOC_FL_PUNCH_HOLE / FALLOC_FL_ZERO_RANGE. */
int blkio_queue_fallocate(struct blkio *b, int mode, uint64_t off, uint64_t len,
			  void *tag) __must_check;
/* Send queued requests to the kernel. Returns 0 or -errno. */
int blkio_submit(struct blkio *b) __must_check;

/* Run `done` for each finished request. With `wait`, block until nothing is
 * in flight. Returns the number of completions handled. */
unsigned blkio_reap(struct blkio *b, bool wait, blkio_done_fn done, void *ctx);

static inline int blkio_event_fd(const struct blkio *b)
{
	return b->efd;
}
