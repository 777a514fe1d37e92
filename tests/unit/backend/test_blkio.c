/* test_blkio.c: a disk's io_uring, set up as blkio_init does, carries
 * readv, writev, fsync and fallocate on registered files and nothing else:
 * an openat, a socket, an SQE without IOSQE_FIXED_FILE or with another
 * flag, a new file table or any registration but a table update is refused
 * (IORING_REGISTER_RESTRICTIONS), so a worker cannot open a file or a
 * socket through io_uring where seccomp forbids the system call, nor use a
 * descriptor the disk's code did not put in the table. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/blkio.h"

struct result {
	void *tag;
	int res;
};

static void record(void *ctx, void *tag, int res)
{
	struct result *r = ctx;

	r->tag = tag;
	r->res = res;
}

static int tmpfile_fd(void)
{
	char path[] = "/tmp/cella-blkio-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/* Submit one prepared SQE on the blkio's ring and return its result. */
static int submit_raw(struct blkio *b, struct io_uring_sqe *sqe)
{
	struct io_uring_cqe *cqe;
	int res;

	io_uring_sqe_set_data(sqe, sqe);
	assert_true(io_uring_submit(&b->ring) >= 0);
	assert_int_equal(io_uring_wait_cqe(&b->ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(&b->ring, cqe);
	return res;
}

static void test_allowed_ops(void **st)
{
	char out[4096], in[4096];
	struct iovec wv = { out, sizeof(out) }, rv = { in, sizeof(in) };
	struct result r = { 0 };
	struct blkio b;
	int fd = tmpfile_fd();

	(void)st;
	memset(out, 0x5a, sizeof(out));
	assert_int_equal(blkio_init(&b, "test", 8), 0);
	assert_int_equal(blkio_queue_writev(&b, fd, &wv, 1, 0, &wv), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, (int)sizeof(out));
	assert_int_equal(blkio_queue_flush(&b, fd, &r), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, 0);
	assert_int_equal(blkio_queue_readv(&b, fd, &rv, 1, 0, &rv), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, (int)sizeof(in));
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(blkio_queue_fallocate(&b, fd, FALLOC_FL_KEEP_SIZE, 0, 8192, &r), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, 0);
	blkio_close(&b);
	close(fd);
}

/* Operations outside the four, each on the same ring: a file, a socket,
 * a connection, a namespace-free way to the network. */
static void test_other_ops_refused(void **st)
{
	static const unsigned char ops[] = { IORING_OP_OPENAT, IORING_OP_OPENAT2,
					     IORING_OP_SOCKET, IORING_OP_CONNECT,
					     IORING_OP_ACCEPT, IORING_OP_SENDMSG };
	struct blkio b;

	(void)st;
	assert_int_equal(blkio_init(&b, "test", 8), 0);
	for (size_t i = 0; i < sizeof(ops); i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&b.ring);

		if (ops[i] == IORING_OP_OPENAT)
			io_uring_prep_openat(sqe, AT_FDCWD, "/etc/passwd", O_RDONLY, 0);
		else /* IORING_OP_SOCKET: domain in fd, type in off */
			io_uring_prep_rw(ops[i], sqe, AF_INET, NULL, 0, SOCK_STREAM);
		assert_int_equal(submit_raw(&b, sqe), -EACCES);
	}
	blkio_close(&b);
}

static void test_flags_and_registration_refused(void **st)
{
	char buf[512];
	struct iovec v = { buf, sizeof(buf) };
	struct io_uring_sqe *sqe;
	struct result r = { 0 };
	struct blkio b;
	int fd = tmpfile_fd();

	(void)st;
	assert_int_equal(blkio_init(&b, "test", 8), 0);
	/* A plain descriptor (no IOSQE_FIXED_FILE) is refused. */
	sqe = io_uring_get_sqe(&b.ring);
	io_uring_prep_readv(sqe, fd, &v, 1, 0);
	assert_int_equal(submit_raw(&b, sqe), -EACCES);
	/* A registered file with another flag (IOSQE_ASYNC) is not allowed. */
	assert_int_equal(blkio_queue_readv(&b, fd, &v, 1, 0, &v), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, 0); /* an empty file */
	sqe = io_uring_get_sqe(&b.ring);
	io_uring_prep_readv(sqe, 0, &v, 1, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_ASYNC;
	assert_int_equal(submit_raw(&b, sqe), -EACCES);
	/* A new file table (or any registration but an update). */
	assert_int_equal(io_uring_unregister_files(&b.ring), -EACCES);
	assert_int_equal(io_uring_register_files(&b.ring, &fd, 1), -EACCES);
	assert_int_equal(io_uring_register_eventfd(&b.ring, fd), -EACCES);
	blkio_close(&b);
	close(fd);
}

/* The file table follows the disk's descriptors: a file closed after
 * blkio_forget_files and a new one under the same number is the one the
 * ring writes, not the old file the table held. */
static void test_files_follow_switches(void **st)
{
	char a[512], got[512];
	struct iovec wv = { a, sizeof(a) };
	struct result r = { 0 };
	struct blkio b;
	int fd = tmpfile_fd(), fd2;

	(void)st;
	memset(a, 'a', sizeof(a));
	assert_int_equal(blkio_init(&b, "test", 8), 0);
	assert_int_equal(blkio_queue_writev(&b, fd, &wv, 1, 0, &wv), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, (int)sizeof(a));
	assert_int_equal(b.nr_files, 1);
	blkio_forget_files(&b);
	assert_int_equal(b.nr_files, 0);
	close(fd);
	fd2 = tmpfile_fd();
	assert_int_equal(fd2, fd); /* the same number, another file */
	memset(a, 'b', sizeof(a));
	assert_int_equal(blkio_queue_writev(&b, fd2, &wv, 1, 0, &wv), 0);
	assert_int_equal(blkio_submit(&b), 0);
	assert_int_equal(blkio_reap(&b, true, record, &r), 1);
	assert_int_equal(r.res, (int)sizeof(a));
	assert_int_equal(pread(fd2, got, sizeof(got), 0), (ssize_t)sizeof(got));
	assert_memory_equal(got, a, sizeof(got));
	/* A descriptor that is not open cannot be registered. */
	assert_int_equal(blkio_queue_readv(&b, 1000, &wv, 1, 0, &wv), -EBADF);
	/* More files than slots: the table starts over. */
	int dups[BLKIO_FILES + 3];

	blkio_forget_files(&b);
	for (int i = 0; i < BLKIO_FILES + 3; i++) {
		dups[i] = dup(fd2);
		assert_true(dups[i] >= 0);
		assert_int_equal(blkio_queue_readv(&b, dups[i], &wv, 1, 0, &wv), 0);
		assert_int_equal(blkio_submit(&b), 0);
		assert_int_equal(blkio_reap(&b, true, record, &r), 1);
		assert_int_equal(r.res, (int)sizeof(a));
	}
	assert_int_equal(b.nr_files, 3);
	for (int i = 0; i < BLKIO_FILES + 3; i++)
		close(dups[i]);
	blkio_close(&b);
	close(fd2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed_ops),
		cmocka_unit_test(test_other_ops_refused),
		cmocka_unit_test(test_flags_and_registration_refused),
		cmocka_unit_test(test_files_follow_switches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
