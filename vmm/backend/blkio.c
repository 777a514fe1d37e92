/* blkio.c: io_uring block I/O engine: one ring per disk, async read/write/flush/fallocate on any fd. */
#include "backend/blkio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* What a disk's ring may carry once enabled: the four operations below,
 * without SQE flags, and no registration at all. A worker that goes rogue
 * cannot open files (OPENAT), make sockets (SOCKET, CONNECT, ACCEPT) or
 * reach anything through this ring that read/write/fsync/fallocate on a
 * descriptor it already holds would not. The files are not registered (a
 * disk's descriptors change with backing chains and disk switches), so the
 * ring accepts any descriptor of the process, as the system calls do. */
static const struct io_uring_restriction blkio_allowed[] = {
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FALLOCATE },
};

int blkio_init(struct blkio *b, const char *who, unsigned depth)
{
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	int ret;

	memset(b, 0, sizeof(*b));
	b->efd = -1;
	b->depth = depth;
	/* Disabled until restricted (IORING_REGISTER_RESTRICTIONS). */
	ret = io_uring_queue_init_params(depth, &b->ring, &p);
	if (ret < 0) {
		log_err("%s: cannot set up io_uring: %s", who, strerror(-ret));
		return ret;
	}
	b->ring_ok = true;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0) {
		ret = -errno;
		log_err("%s: cannot create eventfd: %s", who, strerror(-ret));
		goto fail;
	}
	ret = io_uring_register_eventfd(&b->ring, b->efd);
	if (ret < 0) {
		log_err("%s: cannot register io_uring eventfd: %s", who, strerror(-ret));
		goto fail;
	}
	/* Raw calls: Debian's liburing 2.3 declares io_uring_register_restrictions
	 * and io_uring_enable_rings but does not export them. */
	ret = (int)syscall(SYS_io_uring_register, b->ring.ring_fd, IORING_REGISTER_RESTRICTIONS,
			   blkio_allowed, ARRAY_SIZE(blkio_allowed));
	if (ret >= 0)
		ret = (int)syscall(SYS_io_uring_register, b->ring.ring_fd,
				   IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	if (ret < 0) {
		ret = -errno;
		log_err("%s: cannot restrict io_uring: %s", who, strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	blkio_close(b);
	return ret;
}

static void discard_done(void *ctx, void *tag, int res)
{
}

void blkio_close(struct blkio *b)
{
	if (b->ring_ok) {
		/* The kernel may still write into buffers: wait for it. */
		blkio_reap(b, true, discard_done, NULL);
		io_uring_queue_exit(&b->ring);
		b->ring_ok = false;
	}
	if (b->efd >= 0)
		close(b->efd);
	b->efd = -1;
}

static struct io_uring_sqe *get_sqe(struct blkio *b, void *tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	if (!sqe) {
		/* Ring full of unsent entries: send them and try once more. */
		if (io_uring_submit(&b->ring) < 0)
			return NULL;
		sqe = io_uring_get_sqe(&b->ring);
		if (!sqe)
			return NULL;
	}
	io_uring_sqe_set_data(sqe, tag);
	b->inflight++;
	return sqe;
}

int blkio_queue_readv(struct blkio *b, int fd, const struct iovec *iov, unsigned nr,
		      uint64_t off, void *tag)
{
	struct io_uring_sqe *sqe = get_sqe(b, tag);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_readv(sqe, fd, iov, nr, off);
	return 0;
}

int blkio_queue_writev(struct blkio *b, int fd, const struct iovec *iov, unsigned nr,
		       uint64_t off, void *tag)
{
	struct io_uring_sqe *sqe = get_sqe(b, tag);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_writev(sqe, fd, iov, nr, off);
	return 0;
}

int blkio_queue_flush(struct blkio *b, int fd, void *tag)
{
	struct io_uring_sqe *sqe = get_sqe(b, tag);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	return 0;
}

int blkio_queue_fallocate(struct blkio *b, int fd, int mode, uint64_t off, uint64_t len,
			  void *tag)
{
	struct io_uring_sqe *sqe = get_sqe(b, tag);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fallocate(sqe, fd, mode, (off_t)off, (off_t)len);
	return 0;
}

int blkio_submit(struct blkio *b)
{
	int ret = io_uring_submit(&b->ring);

	return ret < 0 ? ret : 0;
}

unsigned blkio_reap(struct blkio *b, bool wait, blkio_done_fn done, void *ctx)
{
	unsigned n = 0;

	while (b->inflight) {
		struct io_uring_cqe *cqe;
		int ret;

		if (wait) {
			if (io_uring_submit(&b->ring) < 0)
				break;
			ret = io_uring_wait_cqe(&b->ring, &cqe);
			if (ret == -EINTR)
				continue;
		} else {
			ret = io_uring_peek_cqe(&b->ring, &cqe);
		}
		if (ret < 0)
			break;
		void *tag = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&b->ring, cqe);
		b->inflight--;
		n++;
		done(ctx, tag, res);
	}
	return n;
}
