/* imageboot_jail.c: read a VM image's /boot in a jailed helper process
 * (imageboot.h). The image's bytes are the guest's: a file system crafted
 * by its owner. cellad (root) never parses them itself: it forks, and the
 * child execs cellad's own binary afresh (/proc/self/exe --bootfs-helper:
 * no copy of cellad's memory, its keys and tokens, survives the exec).
 * The helper keeps only the image's descriptors, the two memfds it fills
 * and the pipe it answers on, becomes nobody (65534) without privileges,
 * and runs under a seccomp allowlist (reads, writes to what it holds,
 * memory; anything else fails with EPERM), then reads the boot entry with
 * libext2fs. cellad waits for it with a deadline and checks what it says. */
#include "imageboot.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootfs.h"
#include "disk.h"

#define HELPER_ARG "--bootfs-helper"
#define NOBODY 65534

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close every descriptor but keep[0..n). */
static void close_others(int *keep, unsigned n)
{
	unsigned lo = 3;

	qsort(keep, n, sizeof(*keep), cmp_int);
	for (unsigned i = 0; i < n; i++) {
		if ((unsigned)keep[i] > lo)
			close_range(lo, (unsigned)keep[i] - 1, 0);
		if ((unsigned)keep[i] + 1 > lo)
			lo = (unsigned)keep[i] + 1;
	}
	close_range(lo, ~0U, 0);
}

static int jail(void)
{
	static const int allow[] = {
		SCMP_SYS(read), SCMP_SYS(pread64), SCMP_SYS(readv), SCMP_SYS(preadv),
		SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(lseek), SCMP_SYS(fstat),
		SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(close), SCMP_SYS(mmap),
		SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
		SCMP_SYS(mprotect), SCMP_SYS(futex), SCMP_SYS(exit), SCMP_SYS(exit_group),
		SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(clock_gettime),
		SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(getpid), SCMP_SYS(gettid),
		SCMP_SYS(sysinfo), SCMP_SYS(getrandom), SCMP_SYS(fcntl), SCMP_SYS(flock),
	};
	scmp_filter_ctx ctx;
	int ret = 0;

	if (getuid() == 0 && (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
			      setresuid(NOBODY, NOBODY, NOBODY)))
		return -errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (!ctx)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(allow) / sizeof(allow[0]) && !ret; i++)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allow[i], 0);
	/* A block device's size, nothing else by ioctl. */
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_EQ, BLKGETSIZE64));
	if (!ret)
		ret = seccomp_load(ctx);
	seccomp_release(ctx);
	return ret;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* argv: cellad --bootfs-helper FMT MAXK MAXI KFD IFD RESFD N FD NAME ... */
int imageboot_helper_main(int argc, char **argv)
{
	struct imageboot_answer *a = calloc(1, sizeof(*a));
	struct disk_fd_chain chain = { 0 };
	int keep[DISK_MAX_CHAIN + 3], fmt, kfd, ifd, res;
	uint64_t maxk, maxi;
	struct bootfs_result r;
	struct disk *disk;
	unsigned n;

	if (!a || argc < 9 || strcmp(argv[1], HELPER_ARG))
		return 2;
	fmt = atoi(argv[2]);
	maxk = strtoull(argv[3], NULL, 10);
	maxi = strtoull(argv[4], NULL, 10);
	kfd = atoi(argv[5]), ifd = atoi(argv[6]), res = atoi(argv[7]);
	n = (unsigned)atoi(argv[8]);
	if (n == 0 || n > DISK_MAX_CHAIN || argc != 9 + 2 * (int)n)
		return 2;
	chain.nr = n;
	for (unsigned i = 0; i < n; i++) {
		chain.fd[i] = keep[i] = atoi(argv[9 + 2 * i]);
		chain.name[i] = argv[10 + 2 * i];
	}
	keep[n] = kfd, keep[n + 1] = ifd, keep[n + 2] = res;
	close_others(keep, n + 3);
	if (jail()) {
		snprintf(a->err, sizeof(a->err), "cannot jail the image reader");
	} else if (disk_open_fds(&disk, &chain, fmt, DISK_RDONLY | DISK_NO_LOCK, a->err,
				 sizeof(a->err))) {
		/* a->err says why */
	} else {
		int ret = bootfs_read(disk, maxk, maxi, &r, a->err, sizeof(a->err));

		disk_close(disk);
		if (!ret) {
			if (write_all(kfd, r.kernel, r.kernel_len) ||
			    (r.initrd && write_all(ifd, r.initrd, r.initrd_len))) {
				snprintf(a->err, sizeof(a->err), "cannot pass the kernel: %s",
					 strerror(errno));
			} else {
				a->ok = 1;
				a->kernel_len = r.kernel_len;
				a->initrd_len = r.initrd ? r.initrd_len : 0;
				a->has_initrd = r.initrd != NULL;
				memcpy(a->cmdline, r.cmdline, sizeof(a->cmdline));
				memcpy(a->from, r.from, sizeof(a->from));
			}
			bootfs_result_free(&r);
		}
	}
	return write_all(res, a, sizeof(*a)) ? 1 : 0;
}

static void clear_cloexec(int fd)
{
	fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) & ~FD_CLOEXEC);
}

int imageboot_read_jailed(const struct disk_fd_chain *chain, int fmt, uint64_t maxk,
			  uint64_t maxi, int kfd, int ifd, struct imageboot_answer *a,
			  int timeout_ms)
{
	char *argv[9 + 2 * DISK_MAX_CHAIN + 1], num[9 + 2 * DISK_MAX_CHAIN][24];
	int pfd[2], status;
	size_t got = 0;
	pid_t pid;

	memset(a, 0, sizeof(*a));
	if (chain->nr == 0 || chain->nr > DISK_MAX_CHAIN || pipe2(pfd, O_CLOEXEC))
		return -EINVAL;
	snprintf(num[2], sizeof(num[2]), "%d", fmt);
	snprintf(num[3], sizeof(num[3]), "%" PRIu64, maxk);
	snprintf(num[4], sizeof(num[4]), "%" PRIu64, maxi);
	snprintf(num[5], sizeof(num[5]), "%d", kfd);
	snprintf(num[6], sizeof(num[6]), "%d", ifd);
	snprintf(num[7], sizeof(num[7]), "%d", pfd[1]);
	snprintf(num[8], sizeof(num[8]), "%u", chain->nr);
	argv[0] = "cellad";
	argv[1] = HELPER_ARG;
	for (int i = 2; i <= 8; i++)
		argv[i] = num[i];
	for (unsigned i = 0; i < chain->nr; i++) {
		snprintf(num[9 + 2 * i], sizeof(num[0]), "%d", chain->fd[i]);
		argv[9 + 2 * i] = num[9 + 2 * i];
		argv[10 + 2 * i] = (char *)chain->name[i];
	}
	argv[9 + 2 * chain->nr] = NULL;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(pfd[0]), close(pfd[1]);
		return err;
	}
	if (pid == 0) {
		for (unsigned i = 0; i < chain->nr; i++)
			clear_cloexec(chain->fd[i]);
		clear_cloexec(kfd), clear_cloexec(ifd), clear_cloexec(pfd[1]);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(pfd[1]);
	{
		struct imageboot_answer *tmp = calloc(1, sizeof(*tmp));

		for (; tmp;) {
			struct pollfd p = { .fd = pfd[0], .events = POLLIN };
			int r = poll(&p, 1, timeout_ms);
			ssize_t n;

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				kill(pid, SIGKILL);
				snprintf(a->err, sizeof(a->err), "reading the image's /boot took "
					 "more than %d s", timeout_ms / 1000);
				break;
			}
			n = read(pfd[0], (char *)tmp + got, sizeof(*tmp) - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
			if (got == sizeof(*tmp))
				break;
		}
		if (tmp && got == sizeof(*tmp))
			*a = *tmp;
		free(tmp);
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	a->err[sizeof(a->err) - 1] = 0;
	a->cmdline[sizeof(a->cmdline) - 1] = 0;
	a->from[sizeof(a->from) - 1] = 0;
	if (got != sizeof(*a)) {
		a->ok = 0;
		if (!a->err[0])
			snprintf(a->err, sizeof(a->err), "the image reader ended without an answer "
				 "(%s %d)", WIFSIGNALED(status) ? "signal" : "status",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
	return 0;
}
