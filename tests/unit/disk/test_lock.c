/* test_lock.c: DISK_DEFER_LOCK (a live migration's destination on shared
 * storage): a raw image opens read-write while another holder has its lock,
 * disk_lock waits and says -EBUSY while the holder stays, takes the lock
 * once it has gone, and then keeps others out; a qcow2 image is locked at
 * once when free, and when held is read as read-only until disk_lock, which
 * reads its metadata again (the holder's last writes seen). */
#include "dtest.h"
#include "disk_priv.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void test_defer(void **st)
{
	struct disk *src, *dst, *other;
	struct tdir t;
	char p[128], q[128], err[256];

	(void)st;
	tdir_init(&t);
	mk_raw(tpath(&t, "a.raw", p, sizeof(p)), MiB(1));
	src = open_ok(p, 0); /* the source runs the VM: it holds the lock */
	assert_int_equal(disk_open(&dst, p, -1, DISK_DEFER_LOCK, err, sizeof(err)), 0);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use by another process"));
	assert_int_equal(disk_close(src), 0); /* the source lets go */
	assert_int_equal(disk_lock(dst, err, sizeof(err)), 0);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), 0); /* once taken: nothing to do */
	assert_int_equal(disk_open(&other, p, -1, 0, err, sizeof(err)), -EBUSY);
	write_pat(dst, 0, 4096, 3);
	check_pat(dst, 0, 4096, 3);
	assert_int_equal(disk_close(dst), 0);
	/* A plain open takes no deferred lock: disk_lock does nothing. */
	dst = open_ok(p, 0);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), 0);
	assert_int_equal(disk_close(dst), 0);
	/* qcow2, free (a new image, include_storage): locked and opened at once. */
	mk_qcow2(tpath(&t, "b.qcow2", q, sizeof(q)), MiB(1), 16, NULL);
	assert_int_equal(disk_open(&dst, q, -1, DISK_DEFER_LOCK, err, sizeof(err)), 0);
	assert_int_equal(disk_open(&other, q, -1, 0, err, sizeof(err)), -EBUSY);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), 0);
	write_pat(dst, 0, 4096, 4);
	assert_int_equal(disk_close(dst), 0);
	/* qcow2, held (the source runs the VM on it): read as read-only, the
	 * holder goes on writing (new clusters: new L2 entries, refcounts),
	 * lets go; disk_lock reads the metadata again and sees all of it. */
	src = open_ok(q, 0);
	assert_int_equal(disk_open(&dst, q, DISK_FMT_QCOW2, DISK_DEFER_LOCK, err, sizeof(err)), 0);
	assert_int_equal(disk_pwrite(dst, "x", 1, 0), -EROFS); /* nothing written meanwhile */
	write_pat(src, 65536 * 5, 65536, 5);
	write_pat(src, 0, 4096, 6);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), -EBUSY);
	assert_int_equal(disk_close(src), 0);
	assert_int_equal(disk_lock(dst, err, sizeof(err)), 0);
	check_pat(dst, 0, 4096, 6);
	check_pat(dst, 65536 * 5, 65536, 5);
	write_pat(dst, 65536 * 9, 65536, 7);
	check_clean(dst);
	assert_int_equal(disk_close(dst), 0);
	dst = open_ok(q, DISK_RDONLY);
	check_pat(dst, 65536 * 9, 65536, 7);
	check_pat(dst, 65536 * 5, 65536, 5);
	check_clean(dst);
	assert_int_equal(disk_close(dst), 0);
	if (!system("command -v qemu-img >/dev/null")) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", q);
		assert_int_equal(system(cmd), 0);
	}
	tdir_rm(&t);
}

/* A lock whose taker is gone but whose file is still open elsewhere (a
 * killed VM's io_uring not yet torn down) is waited for past the 2 s a live
 * holder gets: here the dead taker's file is closed 2.5 s later. */
struct late_close {
	int fd;
};

static void *close_late(void *arg)
{
	struct late_close *lc = arg;

	nanosleep(&(struct timespec){ .tv_sec = 2, .tv_nsec = 500000000L }, NULL);
	close(lc->fd);
	return NULL;
}

static void test_dead_taker(void **st)
{
	struct tdir t;
	char p[128], err[256];
	struct late_close lc;
	pthread_t th;

	(void)st;
	tdir_init(&t);
	mk_raw(tpath(&t, "d.raw", p, sizeof(p)), MiB(1));
	lc.fd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(lc.fd >= 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) /* takes the lock on the shared description, then dies */
		_exit(flock(lc.fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	int fd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pthread_create(&th, NULL, close_late, &lc), 0);
	int ret = disk_lock_fd(fd, true, "d.raw", err, sizeof(err));
	pthread_join(th, NULL);
	assert_int_equal(ret, 0);
	close(fd);

	/* A live holder (this process) still gets the error. */
	int holder = open(p, O_RDWR | O_CLOEXEC);
	assert_true(holder >= 0);
	assert_int_equal(flock(holder, LOCK_EX | LOCK_NB), 0);
	fd = open(p, O_RDWR | O_CLOEXEC);
	assert_int_equal(disk_lock_fd(fd, true, "d.raw", err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use by another process"));
	close(fd);
	close(holder);
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defer),
		cmocka_unit_test(test_dead_taker),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
