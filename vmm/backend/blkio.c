/* blkio.c: io_uring block I/O engine: one ring per disk, async read/write/flush/fallocate on
 * the disk's files, registered in the ring's fixed-file table on first use. */
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
 * each on a registered file only (IOSQE_FIXED_FILE required, no other SQE
 * flag), and of the registrations only updates of that file table. A
 * worker that goes rogue cannot open files (OPENAT), make sockets (SOCKET,
 * CONNECT, ACCEPT) or reach anything through this ring that read/write/
 * fsync/fallocate on a descriptor it already holds would not; what the ring
 * reaches is the table the disk's own code filled. */
static const struct io_uring_restriction blkio_allowed[] = {
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC },
	{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FALLOCATE },
	{ .opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED, .sqe_flags = IOSQE_FIXED_FILE },
	{ .opcode = IORING_RESTRICTION_REGISTER_OP, .register_op = IORING_REGISTER_FILES_UPDATE },
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
	/* An empty (sparse) table now: once enabled, only updates are allowed. */
	for (unsigned i = 0; i < BLKIO_FILES; i++)
		b->files[i] = -1;
	ret = io_uring_register_files(&b->ring, b->files, BLKIO_FILES);
	if (ret < 0) {
		log_err("%s: cannot register an io_uring file table: %s", who, strerror(-ret));
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

void blkio_forget_files(struct blkio *b)
{
	int none[BLKIO_FILES];

	if (!b->ring_ok || !b->nr_files)
		return;
	for (unsigned i = 0; i < b->nr_files; i++)
		none[i] = -1;
	/* Requests in flight hold their own reference to their file. */
	if (io_uring_register_files_update(&b->ring, 0, none, b->nr_files) < 0)
		log_warn("blkio: cannot clear the ring's file table");
	for (unsigned i = 0; i < b->nr_files; i++)
		b->files[i] = -1;
	b->nr_files = 0;
}

/* The fixed-file slot of fd, registered on first use. Returns the slot or
 * -errno. */
static int blkio_slot(struct blkio *b, int fd)
{
	int ret;

	for (unsigned i = 0; i < b->nr_files; i++)
		if (b->files[i] == fd)
			return (int)i;
	if (fd < 0)
		return -EBADF;
	if (b->nr_files == BLKIO_FILES)
		blkio_forget_files(b); /* a very long history of switches: start over */
	ret = io_uring_register_files_update(&b->ring, b->nr_files, &fd, 1);
	if (ret < 0)
		return ret;
	b->files[b->nr_files] = fd;
	return (int)b->nr_files++;
}

/* An SQE for a request on fd's slot (fixed file), or NULL with *err set. */
static struct io_uring_sqe *get_sqe(struct blkio *b, void *tag);

static struct io_uring_sqe *get_file_sqe(struct blkio *b, int fd, void *tag, int *slot)
{
	*slot = blkio_slot(b, fd);
	return *slot < 0 ? NULL : get_sqe(b, tag);
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
	int slot;
	struct io_uring_sqe *sqe = get_file_sqe(b, fd, tag, &slot);

	if (!sqe)
		return slot < 0 ? slot : -EBUSY;
	io_uring_prep_readv(sqe, slot, iov, nr, off);
	io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
	return 0;
}

int blkio_queue_writev(struct blkio *b, int fd, const struct iovec *iov, unsigned nr,
		       uint64_t off, void *tag)
{
	int slot;
	struct io_uring_sqe *sqe = get_file_sqe(b, fd, tag, &slot);

	if (!sqe)
		return slot < 0 ? slot : -EBUSY;
	io_uring_prep_writev(sqe, slot, iov, nr, off);
	io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
	return 0;
}

int blkio_queue_flush(struct blkio *b, int fd, void *tag)
{
	int slot;
	struct io_uring_sqe *sqe = get_file_sqe(b, fd, tag, &slot);

	if (!sqe)
		return slot < 0 ? slot : -EBUSY;
	io_uring_prep_fsync(sqe, slot, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
	return 0;
}

int blkio_queue_fallocate(struct blkio *b, int fd, int mode, uint64_t off, uint64_t len,
			  void *tag)
{
	int slot;
	struct io_uring_sqe *sqe = get_file_sqe(b, fd, tag, &slot);

	if (!sqe)
		return slot < 0 ? slot : -EBUSY;
	io_uring_prep_fallocate(sqe, slot, mode, (off_t)off, (off_t)len);
	io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
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
