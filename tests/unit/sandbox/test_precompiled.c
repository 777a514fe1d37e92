/* test_precompiled.c: the filters a standby worker compiles ahead
 * (sandbox_filters_build) are byte for byte those the cold path builds:
 * for each variant of sandbox_seccomp_install's arguments the exported
 * program equals a fresh build, and (as root, reading the kernel's copy
 * with PTRACE_SECCOMP_GET_FILTER) the program a child installed through
 * libseccomp's seccomp_load (the cold path) equals the one it installed
 * through sandbox_seccomp_load (the standby's); the thread filters too;
 * CELLA_SECCOMP_LOG is read when they are built. */
#include <errno.h>
#include <linux/filter.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/sandbox.h"

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif

static bool same_prog(const struct sock_fprog *a, const struct sock_filter *b, long n)
{
	return a && a->len == n && !memcmp(a->filter, b, (size_t)n * sizeof(*b));
}

static bool same(const struct sock_fprog *a, const struct sock_fprog *b)
{
	return b && same_prog(a, b->filter, b->len);
}

static void test_process_variants(void **st)
{
	struct sandbox_filters pre;

	(void)st;
	assert_int_equal(sandbox_filters_build(&pre), 0);
	for (int af = 0; af < 2; af++)
		for (int hp = 0; hp < 2; hp++) {
			struct sock_fprog *fresh;

			assert_int_equal(sandbox_process_filter(af, hp, &fresh), 0);
			if (!same(pre.process[af][hp], fresh))
				fail_msg("process filter (allow_fork %d, vcpu_hotplug %d) differs", af,
					 hp);
			sandbox_thread_filter_free(fresh);
		}
	/* The variants differ from each other (each argument counts). */
	assert_false(same(pre.process[0][0], pre.process[1][0]));
	assert_false(same(pre.process[0][0], pre.process[0][1]));
	for (int k = 0; k < SANDBOX_THREADS; k++) {
		struct sock_fprog *fresh;

		assert_int_equal(sandbox_thread_filter((enum sandbox_thread)k, &fresh), 0);
		if (!same(pre.thread[k], fresh))
			fail_msg("thread filter %d differs", k);
		sandbox_thread_filter_free(fresh);
	}
	sandbox_filters_free(&pre);
	sandbox_filters_free(&pre); /* twice: nothing left */
}

/* The program a child holds after installing the variant one way or the
 * other (cold: libseccomp; else prog), read back from the kernel into buf.
 * Its length in instructions, or -1 where the kernel will not say. */
static long installed(bool cold, bool af, bool hp, const struct sock_fprog *prog,
		      struct sock_filter *buf, long cap)
{
	pid_t pid = fork();
	int w = 0;
	long n;

	assert_true(pid >= 0);
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(90);
		if (cold ? sandbox_seccomp_install(af, hp) : sandbox_seccomp_load(prog))
			_exit(91);
		raise(SIGSTOP);
		_exit(92);
	}
	assert_int_equal(waitpid(pid, &w, 0), pid);
	if (!WIFSTOPPED(w))
		fail_msg("child: wait status 0x%x", w);
	n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0L, NULL);
	if (n > 0 && n <= cap)
		n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0L, buf);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &w, 0), pid);
	return n > cap ? -2 : n;
}

static void test_installed(void **st)
{
	static struct sock_filter cold[BPF_MAXINSNS], ahead[BPF_MAXINSNS];
	struct sandbox_filters pre;

	(void)st;
	assert_int_equal(sandbox_filters_build(&pre), 0);
	for (int af = 0; af < 2; af++)
		for (int hp = 0; hp < 2; hp++) {
			long nc = installed(true, af, hp, NULL, cold, BPF_MAXINSNS);
			long na = installed(false, af, hp, pre.process[af][hp], ahead,
					    BPF_MAXINSNS);

			if (nc == -1 && (errno == EPERM || errno == EACCES || errno == EINVAL ||
					 errno == EIO)) {
				sandbox_filters_free(&pre);
				skip(); /* not root, or no CONFIG_CHECKPOINT_RESTORE */
			}
			assert_true(nc > 0);
			if (!same_prog(pre.process[af][hp], cold, nc))
				fail_msg("(allow_fork %d, vcpu_hotplug %d): the cold path installs "
					 "%ld instructions, not the precompiled %u", af, hp, nc,
					 pre.process[af][hp]->len);
			assert_int_equal(na, nc);
			assert_memory_equal(ahead, cold, (size_t)nc * sizeof(cold[0]));
		}
	sandbox_filters_free(&pre);
}

/* CELLA_SECCOMP_LOG=1 (log instead of refusing) is read as the filters
 * are built: a standby started with it installs logging filters. */
static void test_log_env(void **st)
{
	struct sandbox_filters plain, logging;
	struct sock_fprog *fresh;

	(void)st;
	assert_int_equal(sandbox_filters_build(&plain), 0);
	setenv("CELLA_SECCOMP_LOG", "1", 1);
	assert_int_equal(sandbox_filters_build(&logging), 0);
	assert_int_equal(sandbox_process_filter(true, false, &fresh), 0);
	unsetenv("CELLA_SECCOMP_LOG");
	assert_true(same(logging.process[1][0], fresh));
	assert_false(same(plain.process[1][0], fresh));
	assert_false(same(plain.thread[SANDBOX_THREAD_VCPU], logging.thread[SANDBOX_THREAD_VCPU]));
	sandbox_thread_filter_free(fresh);
	sandbox_filters_free(&plain);
	sandbox_filters_free(&logging);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_process_variants),
		cmocka_unit_test(test_installed),
		cmocka_unit_test(test_log_env),
	};

	unsetenv("CELLA_SECCOMP_LOG");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
