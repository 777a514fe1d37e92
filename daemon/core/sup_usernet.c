/* sup_usernet.c: user-mode NICs through passt (docs/networking-user.md). One
 * passt per user NIC, started by cellad at each VM start, on one end of a
 * socket pair (--fd, so no socket path anyone else could reach) whose other
 * end cellad hands the worker; --fd implies --one-off, so passt ends when
 * the worker does, whoever stops it, even while cellad is down. passt
 * drops to the worker's uid (--runas) and sandboxes itself (namespaces,
 * seccomp). cellad records each pid in run_dir/UUID.passt.N to stop and
 * reap it with the VM, and to find it again after a restart. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sup_priv.h"

static const char *passt_binary(struct sup *s)
{
	static const char *const where[] = { "/usr/bin/passt", "/usr/local/bin/passt",
					     "/usr/sbin/passt" };

	if (s->conf.passt_path)
		return access(s->conf.passt_path, X_OK) ? NULL : s->conf.passt_path;
	for (unsigned i = 0; i < sizeof(where) / sizeof(where[0]); i++)
		if (!access(where[i], X_OK))
			return where[i];
	return NULL;
}

static int passt_missing(struct sup *s, unsigned i, struct cerr *e)
{
	char field[32];

	snprintf(field, sizeof(field), "nics[%u].user", i);
	return cerr_set(e, CERR_UNAVAILABLE, field, "user-mode networking needs passt, which is "
			"not installed%s%s (Debian package passt: apt-get install passt)",
			s->conf.passt_path ? " at " : "", s->conf.passt_path ? s->conf.passt_path : "");
}

int sup_usernet_check(struct sup *s, const struct vmdef *d, struct cerr *e)
{
	for (unsigned i = 0; i < d->nr_nics; i++) {
		unsigned h, g, h2, g2;
		bool udp, udp2;

		if (!d->nics[i].user)
			continue;
		if (!passt_binary(s))
			return passt_missing(s, i, e);
		for (const char *p = d->nics[i].forward; (p = vmdef_forward_next(p, &udp, &h, &g));)
			for (unsigned j = 0; j < i; j++)
				for (const char *q = d->nics[j].forward;
				     d->nics[j].user && (q = vmdef_forward_next(q, &udp2, &h2, &g2));)
					if (udp == udp2 && h == h2) {
						char field[32];

						snprintf(field, sizeof(field), "nics[%u].forward", i);
						return cerr_set(e, CERR_INVALID, field, "host port %s:%u is "
								"forwarded by nics[%u] too",
								udp ? "udp" : "tcp", h, j);
					}
	}
	return 0;
}

/* Is the host port free (any address)? passt binds it the same way. */
static bool port_free(bool udp, unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0), one = 1;
	bool ok;

	if (fd < 0)
		return true; /* cannot tell: passt will say */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno != EADDRINUSE;
	close(fd);
	return ok;
}

/* NIC i's host ports free? 0, or -1 with e set (409). */
static int probe_nic(const struct vmdef *d, unsigned i, struct cerr *e)
{
	unsigned h, g;
	bool udp;

	for (const char *p = d->nics[i].forward;
	     d->nics[i].user && (p = vmdef_forward_next(p, &udp, &h, &g));)
		if (!port_free(udp, h)) {
			char field[32];

			snprintf(field, sizeof(field), "nics[%u].forward", i);
			return cerr_set(e, CERR_CONFLICT, field, "host port %s:%u is in use",
					udp ? "udp" : "tcp", h);
		}
	return 0;
}

int sup_usernet_probe(const struct vmdef *d, struct cerr *e)
{
	for (unsigned i = 0; i < d->nr_nics; i++)
		if (probe_nic(d, i, e))
			return -1;
	return 0;
}

static void pid_path(struct sup *s, const struct vmrt *vm, unsigned i, char *out, size_t len)
{
	char suffix[24];

	snprintf(suffix, sizeof(suffix), ".passt.%u", i);
	sup_paths(s, vm, suffix, out, len);
}

/* The uid and gid passt runs as: the worker's (its pool uid, or
 * sandbox_user); without a sandbox, passt's own choice when started as
 * root (nobody). */
static void passt_ids(struct sup *s, struct vmrt *vm, char *out, size_t len)
{
	struct passwd pw, *res = NULL;
	char buf[2048];

	out[0] = 0;
	if (vm->sandbox_uid)
		snprintf(out, len, "%u:%u", vm->sandbox_uid, vm->sandbox_uid);
	else if (s->conf.sandbox && s->conf.sandbox_user &&
		 !getpwnam_r(s->conf.sandbox_user, &pw, buf, sizeof(buf), &res) && res &&
		 res->pw_uid)
		snprintf(out, len, "%u:%u", (unsigned)res->pw_uid, (unsigned)res->pw_gid);
}

int sup_usernet_open(struct sup *s, struct vmrt *vm, unsigned i, struct cerr *e)
{
	const struct vmdef_nic *n = &vm->def.nics[i];
	const char *bin = passt_binary(s);
	char *argv[16 + 2 * VMDEF_FORWARDS_MAX], tcp[VMDEF_FORWARD_MAX], udp[VMDEF_FORWARD_MAX];
	char ids[32], fdarg[16], path[512], mac[18];
	size_t tl = 0, ul = 0;
	unsigned h, g, k = 0;
	int sv[2], nullfd, logfd;
	bool is_udp;
	pid_t pid;

	if (!bin)
		return passt_missing(s, i, e);
	if (probe_nic(&vm->def, i, e)) /* the earlier NICs' passts hold theirs now */
		return -1;
	tcp[0] = udp[0] = 0;
	for (const char *p = n->forward; (p = vmdef_forward_next(p, &is_udp, &h, &g));) {
		if (is_udp)
			ul += (size_t)snprintf(udp + ul, sizeof(udp) - ul, "%s%u:%u", ul ? "," : "", h, g);
		else
			tl += (size_t)snprintf(tcp + tl, sizeof(tcp) - tl, "%s%u:%u", tl ? "," : "", h, g);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return cerr_set(e, CERR_INTERNAL, "", "socketpair: %s", strerror(errno));
	vmdef_nic_mac(&vm->def, i, mac);
	passt_ids(s, vm, ids, sizeof(ids));
	snprintf(fdarg, sizeof(fdarg), "%d", 3);
	argv[k++] = (char *)bin;
	argv[k++] = "--foreground";
	argv[k++] = "--quiet";
	argv[k++] = "--fd";
	argv[k++] = fdarg;
	argv[k++] = "-t";
	argv[k++] = tcp[0] ? tcp : "none";
	argv[k++] = "-u";
	argv[k++] = udp[0] ? udp : "none";
	/* The guest's packets to the gateway stay off the host's loopback
	 * services (cellad's own loopback listener among them). */
	argv[k++] = "--no-map-gw";
	if (ids[0]) {
		argv[k++] = "--runas";
		argv[k++] = ids;
	}
	argv[k] = NULL;
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* passt's complaints (a port it cannot bind...) go to the VM's log. */
	snprintf(path, sizeof(path), "%s/logs/%s.log", s->conf.state_dir, vm->def.name);
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	pid = fork();
	if (pid < 0) {
		int err = errno;

		close(sv[0]);
		close(sv[1]);
		if (nullfd >= 0)
			close(nullfd);
		if (logfd >= 0)
			close(logfd);
		return cerr_set(e, CERR_INTERNAL, "", "fork: %s", strerror(err));
	}
	if (pid == 0) {
		/* The child: its end as fd 3 (not close-on-exec), nothing else. */
		if (nullfd >= 0) {
			dup2(nullfd, 0);
			dup2(nullfd, 1);
		}
		if (logfd >= 0)
			dup2(logfd, 2);
		else if (nullfd >= 0)
			dup2(nullfd, 2);
		if (sv[1] == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(sv[1], 3) < 0)
			_exit(127);
		syscall(SYS_close_range, 4U, ~0U, 0U);
		setsid(); /* not in cellad's session: a restart of cellad leaves it be */
		execv(bin, argv);
		_exit(127);
	}
	close(sv[1]);
	if (nullfd >= 0)
		close(nullfd);
	if (logfd >= 0)
		close(logfd);
	vm->passt_pid[i] = pid;
	vm->passt_start[i] = proc_start_time(pid, &(bool){ false });
	pid_path(s, vm, i, path, sizeof(path));
	{
		FILE *f = fopen(path, "we");

		if (f) {
			fprintf(f, "%d %llu\n", (int)pid, (unsigned long long)vm->passt_start[i]);
			fclose(f);
		}
	}
	log_info("vm %s: nics[%u]: passt %d (mac %s, tcp %s, udp %s%s%s)", vm->def.name, i,
		 (int)pid, mac, tcp[0] ? tcp : "none", udp[0] ? udp : "none", ids[0] ? ", as " : "",
		 ids);
	return sv[0];
}

/* Is pid still the passt that was started at start? */
static bool passt_alive(pid_t pid, uint64_t start)
{
	bool zombie = false;

	return pid > 0 && start && proc_start_time(pid, &zombie) == start && !zombie;
}

void sup_usernet_stop(struct sup *s, struct vmrt *vm)
{
	for (unsigned i = 0; i < VMDEF_MAX_NICS; i++) {
		pid_t pid = vm->passt_pid[i];
		char path[512];

		if (!pid)
			continue;
		/* The worker's end closed: passt is leaving by itself (--fd is
		 * one-off). Whatever it is doing, it goes with the VM. */
		if (passt_alive(pid, vm->passt_start[i]))
			kill(pid, SIGKILL);
		for (int t = 0; t < 200; t++) { /* reap our child (not one adopted) */
			pid_t r = waitpid(pid, NULL, WNOHANG);
			struct timespec ts = { 0, 5 * 1000 * 1000 };

			if (r == pid || (r < 0 && errno == ECHILD))
				break;
			nanosleep(&ts, NULL);
		}
		log_info("vm %s: nics[%u]: passt %d stopped", vm->def.name, i, (int)pid);
		vm->passt_pid[i] = 0;
		vm->passt_start[i] = 0;
		pid_path(s, vm, i, path, sizeof(path));
		unlink(path);
	}
}

void sup_usernet_adopt(struct sup *s, struct vmrt *vm)
{
	for (unsigned i = 0; i < vm->def.nr_nics && i < VMDEF_MAX_NICS; i++) {
		char path[512];
		unsigned long long start = 0;
		int pid = 0;
		FILE *f;

		if (!vm->def.nics[i].user)
			continue;
		pid_path(s, vm, i, path, sizeof(path));
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fscanf(f, "%d %llu", &pid, &start) == 2 && passt_alive(pid, start)) {
			vm->passt_pid[i] = pid;
			vm->passt_start[i] = start;
			log_info("vm %s: nics[%u]: passt %d adopted", vm->def.name, i, pid);
		} else {
			log_warn("vm %s: nics[%u]: its passt is gone: the NIC's link is down until "
				 "the VM restarts", vm->def.name, i);
			unlink(path);
		}
		fclose(f);
	}
}
