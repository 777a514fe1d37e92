/* test_filters.c: the worker's per-thread seccomp allowlists
 * (sandbox_thread_filter). Each case puts one filter on a child process and
 * makes one call there: an allowed call returns (ioctls on /dev/null answer
 * ENOTTY, which shows the filter let them through), a refused one ends the
 * child with SIGSYS (SECCOMP_RET_TRAP, no handler), and the migration
 * sender's openat answers ENOENT. ioctl numbers count exactly: KVM_RUN
 * passes a vCPU thread's filter, KVM_CREATE_VCPU and the memory-slot call
 * do not. Then real threads, the way the worker runs them: a migration
 * sender that starts a throttle thread, which kicks another thread with a
 * signal and sleeps; a vCPU thread that kicks the others and ends. Last,
 * the process's own list takes its few non-KVM ioctls by exact number. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/sandbox.h"
#include "uffd_compat.h"

enum probe {
	P_WRITE, P_CLOCK, P_NANOSLEEP, P_READ, P_OPENAT, P_SOCKET, P_FORK,
	P_KVM_RUN, P_KVM_IRQ_LINE, P_KVM_CREATE_VCPU, P_KVM_SET_MEMORY, P_KVM_GET_DIRTY_LOG,
	P_TCGETS, P_MADV_POPULATE, P_MADV_MERGEABLE, P_LSEEK_DATA, P_LSEEK_SET,
	P_UFFDIO_COPY, P_UFFDIO_REGISTER, P_PREAD,
};

static char probe_page[4096] __attribute__((aligned(4096)));

/* The call, in the child; returns the exit status the child reports. */
static int probe_call(enum probe p, int fd)
{
	char c = 0;
	struct timespec ts = { 0, 1000 };

	switch (p) {
	case P_WRITE:
		return write(fd, &c, 1) == 1 ? 0 : 10;
	case P_CLOCK:
		return syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0 ? 0 : 10;
	case P_NANOSLEEP:
		return syscall(SYS_nanosleep, &ts, NULL) == 0 ? 0 : 10;
	case P_READ:
		return syscall(SYS_read, fd, &c, 1) >= 0 ? 0 : 10;
	case P_OPENAT:
		return syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY) < 0 && errno == ENOENT
			       ? 0 : 11;
	case P_SOCKET:
		return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 10;
	case P_FORK:
		return syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, 0UL) >= 0 ? 0 : 10;
	case P_MADV_POPULATE:
		return syscall(SYS_madvise, probe_page, sizeof(probe_page), 23 /* POPULATE_WRITE */)
			       == 0 ? 0 : 10;
	case P_MADV_MERGEABLE:
		return syscall(SYS_madvise, probe_page, sizeof(probe_page), 12 /* MERGEABLE */),
		       0;
	case P_LSEEK_DATA:
		return syscall(SYS_lseek, fd, 0L, SEEK_DATA), 0; /* any answer: it passed */
	case P_LSEEK_SET:
		return syscall(SYS_lseek, fd, 0L, SEEK_SET), 0;
	case P_PREAD:
		return syscall(SYS_pread64, fd, &c, 1, 0L) >= 0 ? 0 : 10;
	case P_KVM_RUN:
	case P_KVM_IRQ_LINE:
	case P_KVM_CREATE_VCPU:
	case P_KVM_SET_MEMORY:
	case P_KVM_GET_DIRTY_LOG:
	case P_UFFDIO_COPY:
	case P_UFFDIO_REGISTER:
	case P_TCGETS: {
		static const unsigned long nr[] = {
			[P_KVM_RUN] = KVM_RUN, [P_KVM_IRQ_LINE] = KVM_IRQ_LINE,
			[P_KVM_CREATE_VCPU] = KVM_CREATE_VCPU,
			[P_KVM_SET_MEMORY] = KVM_SET_USER_MEMORY_REGION,
			[P_KVM_GET_DIRTY_LOG] = KVM_GET_DIRTY_LOG, [P_TCGETS] = TCGETS,
			[P_UFFDIO_COPY] = UFFDIO_COPY, [P_UFFDIO_REGISTER] = UFFDIO_REGISTER,
		};

		/* /dev/null knows none of them: reaching the driver is ENOTTY. */
		return syscall(SYS_ioctl, fd, nr[p], 0UL) < 0 && errno == ENOTTY ? 0 : 12;
	}
	}
	return 13;
}

/* The child's wait status after one call under the filter of `kind`. */
static int run_probe(enum sandbox_thread kind, enum probe p)
{
	struct sock_fprog *f;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC), st = 0;
	pid_t pid;

	assert_true(fd >= 0);
	assert_int_equal(sandbox_thread_filter(kind, &f), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSYS, SIG_DFL);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, f))
			_exit(90);
		_exit(probe_call(p, fd));
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	sandbox_thread_filter_free(f);
	close(fd);
	return st;
}

static void expect_allowed(enum sandbox_thread kind, enum probe p)
{
	int st = run_probe(kind, p);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("thread kind %d, probe %d: expected allowed, wait status 0x%x", kind, p, st);
}

static void expect_refused(enum sandbox_thread kind, enum probe p)
{
	int st = run_probe(kind, p);

	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
		fail_msg("thread kind %d, probe %d: expected SIGSYS, wait status 0x%x", kind, p, st);
}

static void test_vcpu(void **st)
{
	(void)st;
	expect_allowed(SANDBOX_THREAD_VCPU, P_WRITE);
	expect_allowed(SANDBOX_THREAD_VCPU, P_CLOCK);
	expect_allowed(SANDBOX_THREAD_VCPU, P_KVM_RUN);
	expect_allowed(SANDBOX_THREAD_VCPU, P_KVM_IRQ_LINE);
	expect_allowed(SANDBOX_THREAD_VCPU, P_TCGETS);
	expect_refused(SANDBOX_THREAD_VCPU, P_KVM_CREATE_VCPU);
	expect_refused(SANDBOX_THREAD_VCPU, P_KVM_SET_MEMORY);
	expect_refused(SANDBOX_THREAD_VCPU, P_KVM_GET_DIRTY_LOG);
	expect_refused(SANDBOX_THREAD_VCPU, P_FORK);
#if !defined(__SANITIZE_ADDRESS__) /* the sanitizers' runtime reads and opens */
	expect_refused(SANDBOX_THREAD_VCPU, P_READ);
	expect_refused(SANDBOX_THREAD_VCPU, P_OPENAT);
#endif
	expect_refused(SANDBOX_THREAD_VCPU, P_SOCKET);
}

static void test_migration(void **st)
{
	(void)st;
	expect_allowed(SANDBOX_THREAD_MIGRATION, P_READ);
	expect_allowed(SANDBOX_THREAD_MIGRATION, P_WRITE);
	expect_allowed(SANDBOX_THREAD_MIGRATION, P_KVM_GET_DIRTY_LOG);
#if !defined(__SANITIZE_ADDRESS__)
	expect_allowed(SANDBOX_THREAD_MIGRATION, P_OPENAT); /* answers ENOENT */
#endif
	expect_refused(SANDBOX_THREAD_MIGRATION, P_KVM_RUN);
	expect_refused(SANDBOX_THREAD_MIGRATION, P_KVM_CREATE_VCPU);
	expect_refused(SANDBOX_THREAD_MIGRATION, P_FORK); /* threads only */
	expect_refused(SANDBOX_THREAD_MIGRATION, P_SOCKET);
}

static void test_throttle(void **st)
{
	(void)st;
	expect_allowed(SANDBOX_THREAD_THROTTLE, P_NANOSLEEP);
	expect_allowed(SANDBOX_THREAD_THROTTLE, P_WRITE);
	expect_refused(SANDBOX_THREAD_THROTTLE, P_KVM_RUN);
	expect_refused(SANDBOX_THREAD_THROTTLE, P_SOCKET);
	expect_refused(SANDBOX_THREAD_THROTTLE, P_FORK);
#if !defined(__SANITIZE_ADDRESS__)
	expect_refused(SANDBOX_THREAD_THROTTLE, P_READ);
#endif
}

/* A restore's prefetch thread: madvise and lseek by argument only; with
 * userfaultfd, its messages (read), the state file (pread) and the ioctls
 * that put pages in place, never one that registers a new range. */
static void test_prefetch(void **st)
{
	(void)st;
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_MADV_POPULATE);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_LSEEK_DATA);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_WRITE);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_CLOCK);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_READ);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_PREAD);
	expect_allowed(SANDBOX_THREAD_PREFETCH, P_UFFDIO_COPY);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_UFFDIO_REGISTER);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_TCGETS);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_LSEEK_SET);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_KVM_RUN);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_SOCKET);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_FORK);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_NANOSLEEP);
#if !defined(__SANITIZE_ADDRESS__) /* the sanitizers' runtime reads, opens, madvises */
	expect_refused(SANDBOX_THREAD_PREFETCH, P_MADV_MERGEABLE);
	expect_refused(SANDBOX_THREAD_PREFETCH, P_OPENAT);
#endif
}

/* --- real threads ---------------------------------------------------- */

static struct sock_fprog *filters[SANDBOX_THREADS];
static pthread_t main_thread;

static void on_kick(int sig)
{
	(void)sig;
}

static void apply(enum sandbox_thread kind)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filters[kind]))
		_exit(91);
}

static void kick_and_sleep(void)
{
	struct timespec ts = { 0, 200000 };

	for (int i = 0; i < 3; i++) {
		pthread_kill(main_thread, SIGUSR2);
		nanosleep(&ts, NULL);
	}
}

static void *throttle_main(void *arg)
{
	(void)arg;
	apply(SANDBOX_THREAD_THROTTLE);
	kick_and_sleep();
	return NULL;
}

static void *migration_main(void *arg)
{
	pthread_t t;
	char buf[4096];

	(void)arg;
	apply(SANDBOX_THREAD_MIGRATION);
	memset(buf, 1, sizeof(buf)); /* and some allocation, as TLS does */
	free(malloc(1 << 20));
	if (pthread_create(&t, NULL, throttle_main, NULL) || pthread_join(t, NULL))
		_exit(92);
	return NULL;
}

static void *vcpu_main(void *arg)
{
	(void)arg;
	apply(SANDBOX_THREAD_VCPU);
	free(malloc(64 << 10));
	kick_and_sleep();
	return NULL;
}

static int run_threads(void *(*fn)(void *))
{
	pid_t pid;
	int st = 0;

	for (int k = 0; k < SANDBOX_THREADS; k++)
		assert_int_equal(sandbox_thread_filter((enum sandbox_thread)k, &filters[k]), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sigaction sa = { .sa_handler = on_kick };
		pthread_t t;

		signal(SIGSYS, SIG_DFL);
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR2, &sa, NULL);
		main_thread = pthread_self();
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
			_exit(90);
		if (pthread_create(&t, NULL, fn, NULL))
			_exit(93);
		while (pthread_join(t, NULL) == EINTR)
			;
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int k = 0; k < SANDBOX_THREADS; k++)
		sandbox_thread_filter_free(filters[k]);
	return st;
}

static void test_real_threads(void **st)
{
	int w;

	(void)st;
	w = run_threads(migration_main);
	if (!WIFEXITED(w) || WEXITSTATUS(w))
		fail_msg("migration + throttle threads: wait status 0x%x", w);
	w = run_threads(vcpu_main);
	if (!WIFEXITED(w) || WEXITSTATUS(w))
		fail_msg("vCPU thread: wait status 0x%x", w);
}

/* The process's own list: ioctls other than KVM's by exact number too.
 * TCGETS (stdio) and BLKGETSIZE64 reach /dev/null's driver (ENOTTY);
 * TIOCSTI (typing into a terminal) and TUNSETIFF (attaching a tap) end the
 * process with the worker's status 4. */
static int process_ioctl(unsigned long nr)
{
	pid_t pid = fork();
	int st = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		char c = 0;

		if (fd < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
			_exit(90);
		if (sandbox_seccomp_install(false, false))
			_exit(91);
		_exit(syscall(SYS_ioctl, fd, nr, &c) < 0 && errno == ENOTTY ? 0 : 12);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void test_process_ioctls(void **st)
{
	static const struct {
		unsigned long nr;
		int status;
	} cases[] = {
		{ TCGETS, 0 }, { BLKGETSIZE64, 0 }, { TIOCSTI, 4 }, { TUNSETIFF, 4 }, { BLKDISCARD, 4 },
		/* a restore's userfaultfd answers faults; no new one, no new range */
		{ UFFDIO_COPY, 0 }, { UFFDIO_MOVE, 0 }, { UFFDIO_REGISTER, 4 },
		{ USERFAULTFD_IOC_NEW, 4 },
	};

	(void)st;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int w = process_ioctl(cases[i].nr);

		if (!WIFEXITED(w) || WEXITSTATUS(w) != cases[i].status)
			fail_msg("ioctl 0x%lx: wait status 0x%x, wanted exit %d", cases[i].nr, w,
				 cases[i].status);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vcpu),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_real_threads),
		cmocka_unit_test(test_process_ioctls),
	};

	unsetenv("CELLA_SECCOMP_LOG");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
