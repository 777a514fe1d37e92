/* worker_clone.c: a new worker process in its sandbox's user and PID
 * namespaces behind a start gate (worker_clone.h), for cold workers
 * (worker.c) and standby workers (standby_pool.c) alike. */
#include "worker_clone.h"

#include <fcntl.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int worker_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* A new process for the worker. Sandboxed, it is created in a user
 * namespace and a PID namespace of its own (the PID namespace owned by the
 * user namespace): PID 1 there, as under Firecracker's jailer, seeing no
 * other process (unlike after unshare(CLONE_NEWPID), threads work); and
 * uid 0 there only, which is its per-VM uid outside: it has no capability
 * in the host's namespaces at any point. The child waits on gate until
 * worker_release has written its uid and gid maps. Raw clone, like fork
 * without its handlers: the child only execs. */
pid_t worker_clone(bool sandbox, int gate[2])
{
	if (!sandbox)
		return fork();
	if (pipe2(gate, O_CLOEXEC) < 0)
		return -1;
	return (pid_t)syscall(SYS_clone, (unsigned long)(SIGCHLD | CLONE_NEWUSER | CLONE_NEWPID),
			      NULL, NULL, NULL, 0UL);
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
	char path[64];
	size_t len = strlen(text);
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		ret = -errno;
	close(fd);
	return ret;
}

/* Map the child's uid 0 and gid 0 to its host identity, one id each, and
 * let it go on. setgroups stays allowed (cellad maps with CAP_SETGID) so
 * that the child can drop the supplementary groups it inherited from
 * cellad, root's: with "deny" it would keep them for good. Once it has, the
 * only group it could set is its own gid. 0 or -errno. */
int worker_release(pid_t pid, int gate, uid_t uid, gid_t gid)
{
	char map[64];
	int ret;

	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
	ret = write_proc(pid, "uid_map", map);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
	if (!ret)
		ret = write_proc(pid, "gid_map", map);
	if (!ret && write(gate, "g", 1) != 1)
		ret = -errno;
	return ret;
}

/* In the child, behind the gate: become uid and gid 0 of the namespace
 * (the per-VM ids outside; until now it held cellad's root ids, unmapped
 * and without capability outside) with no supplementary groups. Raw
 * system calls: glibc's would signal cellad's threads, which this child
 * does not have. */
int worker_child_ids(int gate)
{
	char c;

	if (read(gate, &c, 1) != 1)
		return -1; /* cellad gave up on it */
	if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
	    syscall(SYS_setresuid, 0, 0, 0) < 0)
		return -1;
	return 0;
}

int worker_child_start(int gate)
{
	sigset_t stop;

	if (gate >= 0 && worker_child_ids(gate))
		return -1;
	setsid();
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	sigprocmask(SIG_SETMASK, &stop, NULL);
	signal(SIGPIPE, SIG_DFL);
	return 0;
}

