/* sandbox.c: namespaces + pivot_root into an empty tmpfs, capability
 * bounding set, rlimits, privilege drop, and the libseccomp allowlist (with
 * argument filters) for cella-vm's run phase. */
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "log.h"
#include "uffd_compat.h"

/* Any existing directory serves as the mount point of the new root: the
 * namespace is private, so the host never sees the tmpfs. */
#define SANDBOX_MNT "/tmp"

/* Descriptors the run phase may still receive or create beyond those open
 * at entry: control clients, save and disk-switch fds, migration sockets. */
#define SANDBOX_SPARE_FDS 256

static int sandbox_fail(const char *what)
{
	int err = -errno;

	log_err("sandbox: %s: %s", what, strerror(errno));
	return err;
}

/* --sandbox=userns: this process must be uid 0 of a user namespace that
 * maps it to an unprivileged uid outside (uid_map "0 UID 1", UID not 0), or
 * it would keep host root. Its tasks are counted per namespace and uid
 * (RLIMIT_NPROC), so the limit is this worker's alone. */
static int sandbox_check_userns(struct sandbox_ids *ids)
{
	unsigned long inside = 1, outside = 0, count = 0;
	FILE *f = fopen("/proc/self/uid_map", "re");
	int n = f ? fscanf(f, "%lu %lu %lu", &inside, &outside, &count) : 0;

	if (f)
		fclose(f);
	if (n != 3 || inside != 0 || outside == 0 || getuid() != 0) {
		log_err("sandbox: --sandbox=userns needs uid 0 of a user namespace mapped to a "
			"per-VM uid (uid_map \"0 UID 1\"); this process is uid %u, mapped %lu "
			"to %lu", (unsigned)getuid(), inside, outside);
		return -EINVAL;
	}
	/* exec left it dumpable (no uid change): any process of its uid could
	 * ptrace it, or read its memory through /proc, until it is done. */
#if !defined(__SANITIZE_ADDRESS__)
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return sandbox_fail("PR_SET_DUMPABLE");
#endif
	ids->userns = ids->per_vm = true;
	ids->uid = (uid_t)outside; /* for the log only: inside it stays 0 */
	ids->gid = getgid();
	return 0;
}

int sandbox_parse_ids(const char *spec, struct sandbox_ids *ids)
{
	unsigned long uid, gid;
	char *end;

	memset(ids, 0, sizeof(*ids));
	if (!spec)
		return 0;
	if (!strcmp(spec, "userns"))
		return sandbox_check_userns(ids);
	ids->drop = true;
	if (spec[0] >= '0' && spec[0] <= '9') {
		errno = 0;
		uid = strtoul(spec, &end, 10);
		if (errno || *end != ':' || end[1] < '0' || end[1] > '9')
			goto bad;
		gid = strtoul(end + 1, &end, 10);
		if (errno || *end || uid == 0 || gid == 0 || uid >= (uid_t)-1 ||
		    gid >= (gid_t)-1)
			goto bad;
		ids->uid = (uid_t)uid;
		ids->gid = (gid_t)gid;
		ids->per_vm = true;
		return 0;
	}
	{
		struct passwd *pw = getpwnam(spec); /* before /etc disappears */

		if (!pw) {
			log_err("sandbox: no user '%s'", spec);
			return -ENOENT;
		}
		ids->uid = pw->pw_uid;
		ids->gid = pw->pw_gid;
		return 0;
	}
bad:
	log_err("sandbox: '%s': expected USER or UID:GID (numbers above 0)", spec);
	return -EINVAL;
}

/* The highest open descriptor plus one (from /proc, before it goes). */
static int sandbox_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int high = 64;

	if (!d)
		return 1024;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && atoi(e->d_name) >= high)
			high = atoi(e->d_name) + 1;
	closedir(d);
	return high;
}

static int sandbox_pivot(void)
{
	/* The tap, the migration sockets and every other socket are open:
	 * an empty network namespace leaves them working and the worker
	 * without any route of its own. */
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) < 0)
		return sandbox_fail("unshare(NEWNS|NEWIPC|NEWUTS|NEWNET)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return sandbox_fail("making / private");
	if (mount("cella-sandbox", SANDBOX_MNT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=64k,mode=0555") < 0)
		return sandbox_fail("tmpfs root");
#if defined(__SANITIZE_ADDRESS__)
	/* The sanitizers read /proc/self/maps and LeakSanitizer's tracer
	 * attaches to the threads /proc/self/task lists: a proc of the
	 * worker's own PID namespace (under cellad), whose numbers are the
	 * ones ptrace takes. */
	if (mkdir(SANDBOX_MNT "/proc", 0555) < 0 ||
	    mount("proc", SANDBOX_MNT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
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

/* Empty the bounding and ambient sets (needs CAP_SETPCAP: before the uid
 * changes); the permitted and effective sets go with uid 0. */
static int sandbox_drop_bounding(void)
{
	for (int cap = 0; cap < 64; cap++) {
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
			break; /* past CAP_LAST_CAP of this kernel */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return sandbox_fail("PR_CAPBSET_DROP");
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return sandbox_fail("PR_CAP_AMBIENT_CLEAR_ALL");
	return 0;
}

/* Clear the inheritable set, keeping what the process still has; all: the
 * permitted and effective sets too (uid 0 of a user namespace keeps them
 * across no uid change, so they go explicitly). */
static int sandbox_clear_caps(bool all)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return sandbox_fail("capget");
	data[0].inheritable = data[1].inheritable = 0;
	if (all)
		memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		return sandbox_fail("capset");
	return 0;
}

static int sandbox_rlimit(int res, rlim_t v, const char *name)
{
	struct rlimit rl = { v, v };

	if (setrlimit(res, &rl) < 0) {
		log_err("sandbox: %s: %s", name, strerror(errno));
		return -errno;
	}
	return 0;
}

/* No RLIMIT_FSIZE: the worker writes disk images that grow (qcow2
 * allocates by writing past the end) and state files as large as guest
 * memory, through descriptors; a bound there would end the VM with
 * SIGXFSZ. How much an image may take is the storage's business. */
static int sandbox_rlimits(const struct sandbox_ids *ids, int nofile)
{
	int ret = sandbox_rlimit(RLIMIT_NOFILE, (rlim_t)nofile + SANDBOX_SPARE_FDS, "RLIMIT_NOFILE") ?:
		  sandbox_rlimit(RLIMIT_CORE, 0, "RLIMIT_CORE");

	/* RLIMIT_NPROC counts every task of the real uid: meaningful (and
	 * safe) only when no other process shares it. */
	if (!ret && ids->per_vm)
		ret = sandbox_rlimit(RLIMIT_NPROC, SANDBOX_MAX_TASKS, "RLIMIT_NPROC");
	return ret;
}

int sandbox_enter(const struct sandbox_ids *ids)
{
	int nofile = sandbox_fd_count();
	int ret;

	ret = sandbox_pivot() ?: sandbox_drop_bounding() ?: sandbox_rlimits(ids, nofile);
	if (ret)
		return ret;
	if (ids->userns) {
		/* uid 0 of the namespace regains nothing: no exec (seccomp),
		 * and with SECBIT_NOROOT it would not even then. */
		if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
			  SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
			  SECBIT_KEEP_CAPS_LOCKED, 0, 0, 0) < 0)
			return sandbox_fail("PR_SET_SECUREBITS");
	} else if (ids->drop) {
		if (setgroups(0, NULL) < 0)
			return sandbox_fail("setgroups");
		if (setresgid(ids->gid, ids->gid, ids->gid) < 0)
			return sandbox_fail("setresgid");
		if (setresuid(ids->uid, ids->uid, ids->uid) < 0)
			return sandbox_fail("setresuid");
	}
	ret = sandbox_clear_caps(ids->userns);
	if (ret)
		return ret;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return sandbox_fail("PR_SET_NO_NEW_PRIVS");
#if defined(__SANITIZE_ADDRESS__)
	/* A uid change makes the process non-dumpable, and LeakSanitizer's
	 * tracer could then not attach to the threads at exit. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		return sandbox_fail("PR_SET_DUMPABLE");
#endif
	if (ids->userns)
		log_debug("sandbox: empty root, uid 0 of a user namespace (uid %u outside)",
			  (unsigned)ids->uid);
	else
		log_debug("sandbox: empty root, uid %u gid %u", (unsigned)getuid(),
			  (unsigned)getgid());
	return 0;
}

/* What the run phase needs: vCPU and I/O threads, KVM ioctls, epoll and
 * io_uring, Unix-socket clients, timers, memory management (and, only
 * where the KVM teardown could not be handed to an io_uring, its pipes and
 * fork, below). No exec, no new sockets, no pipes, no dup, no wait, no
 * ptrace, no mount, no new namespace. clone, prctl and ioctl are allowed
 * by argument below. */
static const int allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(close), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(lseek), SCMP_SYS(fcntl),
	SCMP_SYS(openat), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
	SCMP_SYS(fallocate), SCMP_SYS(mmap), SCMP_SYS(mprotect),
	SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(msync), /* virtio-blk change tracking: bitmaps made durable on FLUSH */
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(sigaltstack), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_create1), SCMP_SYS(eventfd2),
	SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), SCMP_SYS(futex),
	SCMP_SYS(timer_settime), /* the HA deadline (control/deadline.h) */
	SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list), SCMP_SYS(rseq),
	SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(gettid), SCMP_SYS(getpid),
	SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
	SCMP_SYS(tgkill), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
	SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(getrandom), SCMP_SYS(accept4),
	SCMP_SYS(accept), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(recvmsg),
	SCMP_SYS(sendmsg), SCMP_SYS(shutdown), SCMP_SYS(getsockopt), SCMP_SYS(io_uring_enter),
	SCMP_SYS(io_uring_register), SCMP_SYS(prlimit64),
	SCMP_SYS(restart_syscall), SCMP_SYS(membarrier),
	/* Image and state-file locks on passed descriptors (save, disk-switch);
	 * uname for the state file's host record. */
	SCMP_SYS(flock), SCMP_SYS(ftruncate), SCMP_SYS(uname),
	/* Live migration on a passed socket: I/O timeouts, TCP_NODELAY;
	 * OpenSSL sizes its buffers with sysinfo. */
	SCMP_SYS(setsockopt), SCMP_SYS(sysinfo),
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer stops the world with a ptrace-ing helper thread. */
	SCMP_SYS(ptrace), SCMP_SYS(prctl), SCMP_SYS(getdents64), SCMP_SYS(readlink), SCMP_SYS(getppid),
	SCMP_SYS(wait4), SCMP_SYS(dup), SCMP_SYS(dup3), SCMP_SYS(pipe2),
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

/* clone(2) flags as glibc 2.36 passes them for pthread_create and fork
 * (the deferred teardown); anything else (a new namespace, a process
 * sharing memory) is refused. clone3 hides its flags in memory. */
#define CLONE_THREAD_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | \
			    CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |	       \
			    CLONE_CHILD_CLEARTID)
#define CLONE_FORK_FLAGS   (CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | SIGCHLD)

/* KVM ioctls by exact number: what runs once the VM exists (vCPU threads,
 * device activation, pause and resume, saving state, dirty logging for a
 * move, and loading a moving VM's state as it arrives); no VM, vCPU,
 * irqchip or PIT creation, no CPUID or TSS setup. The threads' own filters
 * take subsets of these. */
static const unsigned long process_kvm_ioctls[] = {
	KVM_RUN, KVM_CHECK_EXTENSION, KVM_ENABLE_CAP, KVM_IRQ_LINE, KVM_IOEVENTFD, KVM_IRQFD,
	KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG,
	KVM_GET_MSR_INDEX_LIST, KVM_GET_CPUID2, KVM_GET_TSC_KHZ, KVM_SET_TSC_KHZ,
	KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_SREGS2,
	KVM_SET_SREGS2, KVM_GET_FPU, KVM_SET_FPU, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE,
	KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_LAPIC, KVM_SET_LAPIC,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	KVM_GET_MP_STATE, KVM_SET_MP_STATE, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2,
	KVM_SET_PIT2, KVM_GET_CLOCK, KVM_SET_CLOCK,
};

/* Other ioctls, by exact number too (a filter cannot see which kind of
 * file a descriptor is, so the number stands for the kind): TCGETS (stdio
 * asks whether its stream is a terminal), BLKGETSIZE64 (a block device
 * given at a disk switch), TUNGETIFF and TUNSETVNETHDRSZ (a tap's checks),
 * TUNSETOFFLOAD (virtio-net tells its tap which offloads the guest's driver
 * takes when the driver negotiates: it changes only what that tap hands
 * this process), TUNSETQUEUE (a multi-queue NIC attaches and detaches its
 * own tap queues as the driver changes the queue pairs in use); no
 * terminal injection (TIOCSTI), no tap attach (TUNSETIFF), no other block
 * ioctl. */
/* A restore's userfaultfd (vmm/core/mem_uffd.c): putting pages in place,
 * waking the threads that wait for them, letting go of the range. Only
 * the prefetch thread's filter takes them (the process's must too). */
#define UFFD_IOCTLS UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_ZEROPAGE, UFFDIO_WAKE, UFFDIO_UNREGISTER
static const unsigned long uffd_ioctls[] = { UFFD_IOCTLS };

static const unsigned long other_ioctls[] = { TCGETS, BLKGETSIZE64, TUNGETIFF, TUNSETVNETHDRSZ,
					      TUNSETOFFLOAD, TUNSETQUEUE, UFFD_IOCTLS };

/* vCPU hot-plug (vmm/core/vcpu_hotplug.c), only for a VM that has room
 * for more vCPUs: creating one, its run area's size, its CPUID. */
static const unsigned long hotplug_kvm_ioctls[] = { KVM_CREATE_VCPU, KVM_GET_VCPU_MMAP_SIZE,
						    KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2 };

static int sandbox_add_ioctls(scmp_filter_ctx ctx, const unsigned long *nr, size_t n);
static uint32_t sandbox_thread_default(void);

static int sandbox_arg_rules(scmp_filter_ctx ctx, bool allow_fork)
{
	int ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			       SCMP_A0(SCMP_CMP_EQ, CLONE_THREAD_FLAGS));

	/* The fallback teardown: its pipes, its fork, and its child keeps
	 * only the KVM descriptors. */
	if (!ret && allow_fork)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				       SCMP_A0(SCMP_CMP_EQ, CLONE_FORK_FLAGS)) ?:
		      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(close_range), 0);
#if !defined(__SANITIZE_ADDRESS__)
	if (!ret && allow_fork)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(pipe2), 0);
#endif
	if (!ret)
		ret = sandbox_add_ioctls(ctx, other_ioctls, ARRAY_SIZE(other_ioctls));
	if (!ret)
		ret = sandbox_add_ioctls(ctx, process_kvm_ioctls, ARRAY_SIZE(process_kvm_ioctls));
	/* vCPU threads add their own filter (only ever more restrictive). */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 2,
				       SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER),
				       SCMP_A1(SCMP_CMP_EQ, 0));
#if !defined(__SANITIZE_ADDRESS__)
	/* Thread names only (the sanitizers' runtime uses more: allowed whole above). */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				       SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)) ?:
		      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				       SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
#else
	/* LeakSanitizer's tracer is a clone(CLONE_VM | CLONE_FS | CLONE_FILES |
	 * CLONE_UNTRACED) without a new namespace. */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWNS | CLONE_NEWUTS |
					       CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
					       CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_THREAD, 0));
#endif
	return ret;
}

static void sandbox_trap_sigsys(struct sigaction *sa)
{
	sa->sa_sigaction = sandbox_sigsys;
	sa->sa_flags = SA_SIGINFO;
	sigemptyset(&sa->sa_mask);
}

/* The process's allowlist as a libseccomp context (the caller releases
 * it); NULL with *ret set on failure. */
static scmp_filter_ctx sandbox_process_ctx(bool allow_fork, bool vcpu_hotplug, int *ret)
{
	scmp_filter_ctx ctx = seccomp_init(sandbox_thread_default());

	*ret = 0;
	if (!ctx) {
		*ret = -ENOMEM;
		return NULL;
	}
	for (size_t i = 0; !*ret && i < ARRAY_SIZE(allowed); i++)
		*ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	if (!*ret)
		*ret = sandbox_arg_rules(ctx, allow_fork);
	if (!*ret && vcpu_hotplug)
		*ret = sandbox_add_ioctls(ctx, hotplug_kvm_ioctls, ARRAY_SIZE(hotplug_kvm_ioctls));
	/* glibc falls back to clone() when clone3() is refused with ENOSYS;
	 * clone3's flags live in memory, where a filter cannot check them. */
	if (!*ret)
		*ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* Socket files are left to cellad; the sandbox root is read-only anyway. */
	if (!*ret)
		*ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlink), 0);
	if (!*ret)
		*ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlinkat), 0);
	if (*ret) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

int sandbox_seccomp_install(bool allow_fork, bool vcpu_hotplug)
{
	struct sigaction sa;
	scmp_filter_ctx ctx;
	int ret;

	sandbox_trap_sigsys(&sa);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	ctx = sandbox_process_ctx(allow_fork, vcpu_hotplug, &ret);
	if (ctx)
		ret = seccomp_load(ctx);
	if (ret)
		log_err("seccomp: cannot install the filter: %s", strerror(-ret));
	if (ctx)
		seccomp_release(ctx);
	return ret;
}

static int sandbox_export(scmp_filter_ctx ctx, struct sock_fprog **out);

int sandbox_process_filter(bool allow_fork, bool vcpu_hotplug, struct sock_fprog **out)
{
	int ret;
	scmp_filter_ctx ctx = sandbox_process_ctx(allow_fork, vcpu_hotplug, &ret);

	*out = NULL;
	if (ctx) {
		ret = sandbox_export(ctx, out);
		seccomp_release(ctx);
	}
	if (ret)
		log_err("seccomp: cannot build the process filter: %s", strerror(-ret));
	return ret;
}

int sandbox_seccomp_load(const struct sock_fprog *prog)
{
	struct sigaction sa;

	sandbox_trap_sigsys(&sa);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	/* What seccomp_load does with libseccomp's defaults (no_new_privs on,
	 * no filter flags). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0) {
		int ret = -errno;

		log_err("seccomp: cannot install the filter: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* What a vCPU thread calls, from KVM_RUN through the exit handlers (port
 * and MMIO register handlers of every device, the instruction-emulation
 * fallback, the pause protocol) to its end: an allowlist stacked on the
 * process's, so a call must pass both. Devices hand queue work to the I/O
 * thread (an eventfd write), so no file, socket or ring setup is here.
 * Found by reading those paths and by the integration and daemon tests. */
static const int vcpu_allowed[] = {
	/* the UART's output (send on a socket, write on a file or stdio),
	 * logging, eventfd kicks of the I/O thread */
	SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(sendto), SCMP_SYS(poll),
	/* the UART's back-pressure and virtio activation (DRIVER_OK, reset)
	 * change what the I/O loop watches */
	SCMP_SYS(epoll_ctl),
	/* a device reset waits for its disk's requests */
	SCMP_SYS(io_uring_enter),
	/* memory (the emulator's allocations), locks, the pause protocol */
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(madvise),
	SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(futex),
	/* the kick signal, ending the VM (kicking the other vCPUs) */
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(restart_syscall),
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(tgkill),
	/* throttling, timestamps */
	SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep), SCMP_SYS(sched_yield),
	SCMP_SYS(exit), SCMP_SYS(exit_group),
	/* the emulation fallback's first decode: capstone sorts a table with
	 * glibc's qsort, which asks sysinfo for the host's memory size (seen
	 * on a Linux guest's first int3 under cellad: daemon-imageboot) */
	SCMP_SYS(sysinfo),
};

/* ioctl numbers a vCPU thread issues: KVM_RUN and the register and event
 * calls of the exit handlers and the emulation fallback on its own vCPU
 * fd; on the VM fd, interrupt lines (legacy devices) and the virtio
 * transport's ioeventfds and irqfds; TCGETS (stdio). No memory slots, no
 * VM or vCPU creation, no dirty log, no tun or block ioctls. */
static const unsigned long vcpu_ioctls[] = {
	KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU,
	KVM_SET_FPU, KVM_GET_XSAVE, KVM_SET_XSAVE, KVM_GET_XCRS, KVM_GET_VCPU_EVENTS,
	KVM_SET_VCPU_EVENTS, KVM_CHECK_EXTENSION, KVM_IRQ_LINE, KVM_IOEVENTFD, KVM_IRQFD,
	TCGETS,
};

/* The live-migration sender (vmm/migrate/send.c): the TLS stream on its
 * passed socket, guest memory, dirty logs, the disks' chunks (include_
 * storage), the VM's state at the end (vCPU and device saves, a disk
 * ring's drain), pausing and throttling the vCPUs (it starts the throttle
 * thread, which inherits this filter and stacks its own). */
static const int migration_allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(sendto),
	SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(poll), SCMP_SYS(ppoll),
	SCMP_SYS(setsockopt), SCMP_SYS(getsockopt), SCMP_SYS(shutdown), SCMP_SYS(close),
	SCMP_SYS(getrandom), SCMP_SYS(sysinfo), SCMP_SYS(pread64), SCMP_SYS(preadv),
	SCMP_SYS(preadv2), SCMP_SYS(lseek), SCMP_SYS(fstat), SCMP_SYS(newfstatat),
	SCMP_SYS(io_uring_enter), SCMP_SYS(epoll_ctl), SCMP_SYS(msync),
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(madvise),
	SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(futex), SCMP_SYS(set_robust_list),
	SCMP_SYS(rseq), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(restart_syscall), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(tgkill),
	SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep), SCMP_SYS(sched_yield), SCMP_SYS(exit), SCMP_SYS(exit_group),
};

/* Its ioctls: dirty logging (slot flags, the log, clearing it) and the
 * state's reads (vCPUs, irqchip, PIT, clock); no KVM_RUN, no KVM_SET_*
 * of registers, no creation. */
static const unsigned long migration_ioctls[] = {
	KVM_SET_USER_MEMORY_REGION, KVM_CHECK_EXTENSION, KVM_ENABLE_CAP, KVM_GET_DIRTY_LOG,
	KVM_CLEAR_DIRTY_LOG, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_SREGS2, KVM_GET_FPU,
	KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_GET_XCRS, KVM_GET_MSRS, KVM_GET_MSR_INDEX_LIST,
	KVM_GET_LAPIC, KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_MP_STATE,
	KVM_GET_TSC_KHZ, KVM_GET_CPUID2, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK, TCGETS,
};

/* The throttle thread: kicks the vCPUs and sleeps. */
static const int throttle_allowed[] = {
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(tgkill), SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(clock_gettime), SCMP_SYS(futex),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(restart_syscall),
	SCMP_SYS(madvise), SCMP_SYS(munmap), SCMP_SYS(write), SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

/* A restore's prefetch thread (vmm/core/mem_prefetch.c): madvise and lseek
 * by argument (sandbox_prefetch_rules), its lock, the clock, its one log
 * line, and what glibc's thread exit does (the stack's MADV_DONTNEED is
 * in the madvise rule). With userfaultfd (vmm/core/mem_uffd.c) also: the
 * fault messages and its wake-up eventfd (read, poll), the state file
 * (pread64) and the userfaultfd ioctls (uffd_ioctls). */
static const int prefetch_allowed[] = {
	SCMP_SYS(futex), SCMP_SYS(clock_gettime), SCMP_SYS(write), SCMP_SYS(gettid),
	SCMP_SYS(getpid), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(restart_syscall), SCMP_SYS(munmap), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(read), SCMP_SYS(poll), SCMP_SYS(pread64),
};

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int sandbox_prefetch_rules(scmp_filter_ctx ctx)
{
	static const int advice[] = { MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_WILLNEED,
				      MADV_DONTNEED };
	int ret = 0;

	for (size_t i = 0; !ret && i < ARRAY_SIZE(advice); i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 1,
				       SCMP_A2(SCMP_CMP_EQ, (scmp_datum_t)advice[i]));
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(lseek), 1,
				       SCMP_A2(SCMP_CMP_EQ, SEEK_DATA)) ?:
		      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(lseek), 1,
				       SCMP_A2(SCMP_CMP_EQ, SEEK_HOLE));
	return ret;
}

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizers' runtime on any thread (reports, allocator, stacks). */
static const int asan_allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(close), SCMP_SYS(open), SCMP_SYS(openat),
	SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(stat), SCMP_SYS(lstat),
	SCMP_SYS(readlink), SCMP_SYS(prctl), SCMP_SYS(getppid), SCMP_SYS(kill),
	SCMP_SYS(sched_getaffinity), SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction),
	SCMP_SYS(prlimit64), SCMP_SYS(getrandom), SCMP_SYS(mmap), SCMP_SYS(munmap),
	SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(sched_yield), SCMP_SYS(getpid),
	SCMP_SYS(gettid),
};
#endif

/* CELLA_SECCOMP_LOG=1 in the worker's environment: the filters (the
 * process's and each thread's) log what they would refuse (kernel log, "audit: type=1326") and allow
 * it, to find what a new code path calls. Never in production. */
static uint32_t sandbox_thread_default(void)
{
	const char *v = getenv("CELLA_SECCOMP_LOG");

	return v && v[0] == '1' ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
}

static int sandbox_add_allowed(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < n; i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);
	return ret;
}

/* The request number is an unsigned int in the kernel: compare the low 32
 * bits only. */
static int sandbox_add_ioctls(scmp_filter_ctx ctx, const unsigned long *nr, size_t n)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < n; i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, nr[i]));
	return ret;
}

/* ctx's BPF program into *out (malloc'd, one block: free). 0 or -errno. */
static int sandbox_export(scmp_filter_ctx ctx, struct sock_fprog **out)
{
	char buf[16384];
	ssize_t n = -1;
	int p[2] = { -1, -1 }, ret = 0;
	struct sock_fprog *f;

	/* libseccomp 2.5 exports to a descriptor only: read it back. */
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	ret = seccomp_export_bpf(ctx, p[1]);
	close(p[1]);
	if (!ret) {
		n = read(p[0], buf, sizeof(buf));
		if (n <= 0 || n % sizeof(struct sock_filter) || n == (ssize_t)sizeof(buf))
			ret = -EIO;
	}
	close(p[0]);
	if (ret)
		return ret;
	f = malloc(sizeof(*f) + (size_t)n);
	if (!f)
		return -ENOMEM;
	f->len = (unsigned short)(n / sizeof(struct sock_filter));
	f->filter = (struct sock_filter *)(f + 1);
	memcpy(f->filter, buf, (size_t)n);
	*out = f;
	return 0;
}

int sandbox_thread_filter(enum sandbox_thread kind, struct sock_fprog **out)
{
	scmp_filter_ctx ctx = seccomp_init(sandbox_thread_default());
	struct sock_fprog *f = NULL;
	int ret = 0;

	if (!ctx)
		return -ENOMEM;
	switch (kind) {
	case SANDBOX_THREAD_VCPU:
		ret = sandbox_add_allowed(ctx, vcpu_allowed, ARRAY_SIZE(vcpu_allowed)) ?:
		      sandbox_add_ioctls(ctx, vcpu_ioctls, ARRAY_SIZE(vcpu_ioctls));
		break;
	case SANDBOX_THREAD_MIGRATION:
		ret = sandbox_add_allowed(ctx, migration_allowed, ARRAY_SIZE(migration_allowed)) ?:
		      sandbox_add_ioctls(ctx, migration_ioctls, ARRAY_SIZE(migration_ioctls)) ?:
		      /* the throttle thread, which then stacks its own filter */
		      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				       SCMP_A0(SCMP_CMP_EQ, CLONE_THREAD_FLAGS)) ?:
		      seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) ?:
		      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 2,
				       SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER),
				       SCMP_A1(SCMP_CMP_EQ, 0));
#if !defined(__SANITIZE_ADDRESS__)
		/* OpenSSL looks for its configuration on first use: in the
		 * sandbox's empty root it is not there either. */
		if (!ret)
			ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOENT), SCMP_SYS(openat), 0);
#endif
		break;
	case SANDBOX_THREAD_THROTTLE:
		ret = sandbox_add_allowed(ctx, throttle_allowed, ARRAY_SIZE(throttle_allowed));
		break;
	case SANDBOX_THREAD_PREFETCH:
		ret = sandbox_add_allowed(ctx, prefetch_allowed, ARRAY_SIZE(prefetch_allowed)) ?:
		      sandbox_prefetch_rules(ctx) ?:
		      sandbox_add_ioctls(ctx, uffd_ioctls, ARRAY_SIZE(uffd_ioctls));
		break;
	default:
		ret = -EINVAL;
	}
#if defined(__SANITIZE_ADDRESS__)
	if (!ret)
		ret = sandbox_add_allowed(ctx, asan_allowed, ARRAY_SIZE(asan_allowed));
#endif
	if (!ret)
		ret = sandbox_export(ctx, &f);
	seccomp_release(ctx);
	if (ret)
		log_err("seccomp: cannot build a thread filter: %s", strerror(-ret));
	*out = f;
	return ret;
}

void sandbox_thread_filter_free(struct sock_fprog *f)
{
	free(f);
}
