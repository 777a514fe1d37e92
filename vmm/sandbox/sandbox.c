/* sandbox.c: mount namespace + pivot_root into an empty tmpfs, privilege
 * drop, and the libseccomp allowlist for cella-vm's run phase. */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "log.h"

/* Any existing directory serves as the mount point of the new root: the
 * namespace is private, so the host never sees the tmpfs. */
#define SANDBOX_MNT "/tmp"

static int sandbox_fail(const char *what)
{
	int err = -errno;

	log_err("sandbox: %s: %s", what, strerror(errno));
	return err;
}

static int sandbox_pivot(void)
{
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC) < 0)
		return sandbox_fail("unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return sandbox_fail("making / private");
	if (mount("cella-sandbox", SANDBOX_MNT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=64k,mode=0555") < 0)
		return sandbox_fail("tmpfs root");
#if defined(__SANITIZE_ADDRESS__)
	/* The sanitizers read /proc/self/maps (LeakSanitizer at exit). */
	if (mkdir(SANDBOX_MNT "/proc", 0555) < 0 ||
	    mount("/proc", SANDBOX_MNT "/proc", NULL, MS_BIND | MS_REC, NULL) < 0)
		return sandbox_fail("/proc for the sanitizers");
#endif
	if (chdir(SANDBOX_MNT) < 0)
		return sandbox_fail("chdir to the new root");
	/* pivot_root(".", ".") stacks the old root on the new one; detaching
	 * it leaves only the tmpfs (pivot_root(2), "NOTES"). */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return sandbox_fail("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return sandbox_fail("detaching the old root");
	if (chdir("/") < 0)
		return sandbox_fail("chdir /");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		return sandbox_fail("read-only root");
	return 0;
}

int sandbox_enter(const char *user)
{
	uid_t uid = 0;
	gid_t gid = 0;
	int ret;

	if (user) {
		struct passwd *pw = getpwnam(user); /* before /etc disappears */

		if (!pw) {
			log_err("sandbox: no user '%s'", user);
			return -ENOENT;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	ret = sandbox_pivot();
	if (ret)
		return ret;
	if (user) {
		if (setgroups(0, NULL) < 0)
			return sandbox_fail("setgroups");
		if (setresgid(gid, gid, gid) < 0)
			return sandbox_fail("setresgid");
		if (setresuid(uid, uid, uid) < 0)
			return sandbox_fail("setresuid");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return sandbox_fail("PR_SET_NO_NEW_PRIVS");
#if defined(__SANITIZE_ADDRESS__)
	/* A uid change makes the process non-dumpable, and LeakSanitizer's
	 * tracer could then not attach to the threads at exit. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		return sandbox_fail("PR_SET_DUMPABLE");
#endif
	log_debug("sandbox: empty root, uid %u gid %u", (unsigned)getuid(), (unsigned)getgid());
	return 0;
}

/* What the run phase needs: vCPU and I/O threads, KVM ioctls, epoll and
 * io_uring, Unix-socket clients, timers, memory management, and the fork of
 * the deferred KVM teardown. No exec, no new sockets, no ptrace, no mount. */
static const int allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(close), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(lseek), SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(dup3),
	SCMP_SYS(pipe2), SCMP_SYS(openat), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
	SCMP_SYS(fallocate), SCMP_SYS(ioctl), SCMP_SYS(mmap), SCMP_SYS(mprotect),
	SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(msync), /* virtio-blk change tracking: bitmaps made durable on FLUSH */
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(sigaltstack), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_create1), SCMP_SYS(eventfd2),
	SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), SCMP_SYS(futex),
	SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list), SCMP_SYS(rseq), SCMP_SYS(clone),
	SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(gettid), SCMP_SYS(getpid),
	SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
	SCMP_SYS(tgkill), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
	SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(getrandom), SCMP_SYS(accept4),
	SCMP_SYS(accept), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(recvmsg),
	SCMP_SYS(sendmsg), SCMP_SYS(shutdown), SCMP_SYS(getsockopt), SCMP_SYS(io_uring_enter),
	SCMP_SYS(io_uring_register), SCMP_SYS(prctl), SCMP_SYS(prlimit64), SCMP_SYS(wait4),
	SCMP_SYS(restart_syscall), SCMP_SYS(membarrier),
	/* Image and state-file locks on passed descriptors (save, disk-switch);
	 * uname for the state file's host record. */
	SCMP_SYS(flock), SCMP_SYS(ftruncate), SCMP_SYS(uname),
	/* Live migration on a passed socket: I/O timeouts, TCP_NODELAY;
	 * OpenSSL sizes its buffers with sysinfo. */
	SCMP_SYS(setsockopt), SCMP_SYS(sysinfo),
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the world with a ptrace-ing helper thread. */
	SCMP_SYS(ptrace), SCMP_SYS(getdents64), SCMP_SYS(readlink), SCMP_SYS(getppid),
	SCMP_SYS(sched_setaffinity), SCMP_SYS(kill), SCMP_SYS(statx),
	/* sanitizer_common uses the legacy x86-64 calls (open, getdents, stat). */
	SCMP_SYS(open), SCMP_SYS(getdents), SCMP_SYS(stat), SCMP_SYS(lstat), SCMP_SYS(access),
#endif
};

static void sandbox_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[96] = "cella-vm: seccomp: blocked system call ";
	char num[16];
	int n = si->si_syscall, len = 0, off = (int)strlen(msg);

	(void)sig;
	(void)uc;
	if (n < 0)
		n = 0;
	do {
		num[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n && len < (int)sizeof(num));
	while (len && off < (int)sizeof(msg) - 2)
		msg[off++] = num[--len];
	msg[off++] = '\n';
	if (write(STDERR_FILENO, msg, (size_t)off) < 0) {
		/* nothing more to say */
	}
	_exit(4); /* WORKER_EXIT_ERROR */
}

int sandbox_seccomp_install(void)
{
	struct sigaction sa = { .sa_sigaction = sandbox_sigsys, .sa_flags = SA_SIGINFO };
	scmp_filter_ctx ctx;
	int ret;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
		if (ret)
			goto out;
	}
	/* glibc falls back to clone() when clone3() is refused with ENOSYS;
	 * clone3's flags live in memory, where a filter cannot check them. */
	ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* Socket files are left to cellad; the sandbox root is read-only anyway. */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlink), 0);
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlinkat), 0);
	if (!ret)
		ret = seccomp_load(ctx);
out:
	if (ret)
		log_err("seccomp: cannot install the filter: %s", strerror(-ret));
	seccomp_release(ctx);
	return ret;
}
