/* standby_pool.c: standby workers kept ready for restores (standby_pool.h,
 * docs/cellad.md "Standby workers"). Each is spawned as a cold worker is
 * (worker_clone: its own sandbox uid, user and PID namespaces, the gate;
 * in the "standby" cgroup before it runs a line of cella-vm) with a
 * SOCK_SEQPACKET socket as stdin, its log in state_dir/logs/standby.log,
 * and /dev/kvm at fd 3. It says "ready" on the socket once prepared; a
 * take hands it the restore in one message. A standby outlives nothing:
 * cellad's end of the socket is its only peer, so one left by a cellad
 * that died reads the end of input and exits; one that cellad finds in
 * the standby cgroup at start is killed all the same. */
#include "standby_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sup_priv.h"
#include "worker_clone.h"

#define STANDBY_CGROUP "standby"      /* under cgroup_parent, beside the VMs' */
#define STANDBY_MEM_MIB 128           /* each standby's share of its cgroup's limit */
#define BACKOFF_FIRST_NS 100000000ull /* 0.1 s after the first death, doubling ... */
#define BACKOFF_MAX_NS 30000000000ull /* ... up to 30 s */
#define LIVED_LONG_NS 60000000000ull  /* a death after this long starts the count again */
#define REFILL_LATEST_NS 10000000000ull /* a take's refill waits for its restore at most 10 s */
#define EV_WAKE UINT64_MAX

enum sb_state { SB_EMPTY, SB_SPAWNING, SB_STARTING, SB_READY };

struct sb_slot {
	enum sb_state st;
	uint32_t gen; /* bumped when the slot changes hands: stale epoll events */
	struct standby_taken w;
	uint64_t born_ns;
};

struct standby_pool {
	struct sup *s;
	pthread_mutex_t lock; /* everything below */
	unsigned want;
	struct sb_slot slot[STANDBY_POOL_MAX];
	int epfd, wake;
	pthread_t keeper;
	bool stopping;
	unsigned deaths;      /* in a row, none taken in between */
	uint64_t next_spawn_ns;
	uint64_t refill_ns;   /* after a take: not before the restore is done (or this) */
	uint64_t ram_hint_mib;
	uint64_t spawned, died;
};

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t ev_key(unsigned i, uint32_t gen, bool sock)
{
	return (uint64_t)gen << 32 | (uint64_t)i << 1 | sock;
}

static void wake_keeper(struct standby_pool *p)
{
	uint64_t one = 1;

	(void)!write(p->wake, &one, sizeof(one));
}

/* Kill a standby cellad did not spawn (found in the standby cgroup). */
static void kill_stale(struct sup *s)
{
	char path[600], cmd[256];
	FILE *f;
	int pid;

	if (s->cg.mode == CGROUP_NONE)
		return;
	snprintf(path, sizeof(path), "%s/%s/cgroup.procs", s->cg.cpu_dir, STANDBY_CGROUP);
	f = fopen(path, "re");
	while (f && fscanf(f, "%d", &pid) == 1) {
		int fd;
		ssize_t n;

		snprintf(cmd, sizeof(cmd), "/proc/%d/cmdline", pid);
		fd = open(cmd, O_RDONLY | O_CLOEXEC);
		n = fd < 0 ? -1 : read(fd, cmd, sizeof(cmd) - 1);
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			continue;
		cmd[n] = 0;
		/* argv[1] is --standby (argv[0] ends at the first NUL). */
		if (strlen(cmd) + 1 < (size_t)n && !strcmp(cmd + strlen(cmd) + 1, "--standby")) {
			kill(pid, SIGKILL);
			log_info("standby: killed worker %d left by a previous cellad", pid);
		}
	}
	if (f)
		fclose(f);
}

/* The host identity a sandboxed standby runs as, as a cold worker's
 * (worker.c worker_ids). 0 or -errno (logged). */
static int standby_ids(struct sup *s, uint32_t *pool_uid, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	*pool_uid = 0;
	if (!s->conf.sandbox)
		return 0;
	if (!s->conf.sandbox_user) {
		int64_t taken = uidpool_take(&s->uids);

		if (taken < 0)
			return -EAGAIN;
		*pool_uid = (uint32_t)taken;
		*uid = *gid = (uint32_t)taken;
		return 0;
	}
	if (getpwnam_r(s->conf.sandbox_user, &pw, buf, sizeof(buf), &res) || !res ||
	    !pw.pw_uid || !pw.pw_gid)
		return -EINVAL;
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return 0;
}

/* Spawn one standby worker into *w (no pool lock held: this is the
 * keeper's own time, never a restore's). 0 or -errno (logged). */
static int spawn_one(struct standby_pool *p, struct standby_taken *w, uint64_t ram_hint_mib)
{
	struct sup *s = p->s;
	char logp[600], mem[24];
	char *argv[] = { (char *)s->conf.worker_path, "--standby", "--kvm", "fd:3", NULL, NULL,
			 NULL };
	uint64_t host_mib = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20;
	uint64_t mem_limit;

	/* The RAM-size hint (standby_pool_hint_ram): --mem MIB has the standby
	 * make the memory slots, irqchip and PIT for that size before ready
	 * (vmm/standby_prep.c), used by a restore of that size and released
	 * by any other. Within what cella-vm accepts (8 MiB to the host's
	 * RAM), else none: a refused --mem would end every standby. */
	if (ram_hint_mib >= 8 && ram_hint_mib <= host_mib && ram_hint_mib <= (1ull << 20)) {
		snprintf(mem, sizeof(mem), "%llu", (unsigned long long)ram_hint_mib);
		argv[4] = "--mem";
		argv[5] = mem;
	}
	int sv[2] = { -1, -1 }, gate[2] = { -1, -1 }, kvm = -1, logfd = -1, ret;
	uid_t uid = 0;
	gid_t gid = 0;
	pid_t pid;

	/* The group's limit: what a standby allocates before its request, and
	 * KVM's arrays for a prepared VM's memory slots (kernel memory, 8
	 * bytes per 4 KiB page and more without two-dimensional paging). */
	mem_limit = (STANDBY_MEM_MIB + ram_hint_mib / 64) * p->want;
	memset(w, 0, sizeof(*w));
	w->pidfd = w->sock = -1;
	ret = standby_ids(s, &w->uid, &uid, &gid);
	if (ret) {
		log_warn("standby: %s", ret == -EAGAIN ? "no free sandbox uid (sandbox_uid_count)"
							: "sandbox_user unusable");
		return ret;
	}
	snprintf(logp, sizeof(logp), "%s/logs/standby.log", s->conf.state_dir);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    (kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0 ||
	    (logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640)) < 0) {
		ret = -errno;
		log_warn("standby: cannot prepare a worker: %s", strerror(-ret));
		goto fail;
	}
	pid = worker_clone(s->conf.sandbox, gate);
	if (pid < 0) {
		ret = -errno;
		log_warn("standby: clone: %s", strerror(-ret));
		goto fail;
	}
	if (pid == 0) {
		/* As a cold worker's child: async-signal-safe calls only. */
		if (worker_child_start(gate[0]))
			_exit(127);
		/* 0-2 are open in cellad, so none of these is below 3. */
		if (dup2(sv[1], 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(127);
		if (kvm == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(kvm, 3) < 0)
			_exit(127);
		syscall(SYS_close_range, 4u, ~0U, 0U);
		execv(argv[0], argv);
		_exit(127);
	}
	if (gate[0] >= 0) {
		close(gate[0]);
		gate[0] = -1;
		/* Charged to the standby group from its first allocation; a
		 * restore moves it to its VM's group before the request. */
		if (cgroups_vm_attach(&s->cg, STANDBY_CGROUP, pid, 1, mem_limit, 100,
				      100))
			log_warn("standby: cannot place worker %d in its cgroup (%s)", pid,
				 cgroups_mode_name(&s->cg));
		ret = worker_release(pid, gate[1], uid, gid);
		if (ret) {
			log_warn("standby: cannot map worker %d to uid %u: %s", pid, (unsigned)uid,
				 strerror(-ret));
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			goto fail;
		}
		close(gate[1]);
		gate[1] = -1;
	} else if (cgroups_vm_attach(&s->cg, STANDBY_CGROUP, pid, 1, mem_limit,
				     100, 100)) {
		log_warn("standby: cannot place worker %d in its cgroup", pid);
	}
	w->pid = pid;
	w->start = proc_start_time(pid, &(bool){ false });
	w->pidfd = worker_pidfd_open(pid);
	if (w->pidfd < 0) {
		ret = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	w->sock = sv[0];
	close(sv[1]);
	close(kvm);
	close(logfd);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (gate[i] >= 0)
			close(gate[i]);
		if (sv[i] >= 0)
			close(sv[i]);
	}
	if (kvm >= 0)
		close(kvm);
	if (logfd >= 0)
		close(logfd);
	if (w->uid)
		uidpool_put(&s->uids, w->uid);
	w->uid = 0;
	return ret;
}

/* A slot's standby is gone or given up (lock held): reap it, free its
 * uid and descriptors. */
static void slot_clear(struct standby_pool *p, struct sb_slot *sl, bool kill_it)
{
	int wst = 0;

	if (sl->w.pid) {
		if (kill_it)
			kill(sl->w.pid, SIGKILL);
		if (waitpid(sl->w.pid, &wst, 0) == sl->w.pid && !kill_it)
			log_warn("standby: worker %d %s %d (see logs/standby.log)", sl->w.pid,
				 WIFSIGNALED(wst) ? "killed by signal" : "exited with status",
				 WIFSIGNALED(wst) ? WTERMSIG(wst) : WEXITSTATUS(wst));
	}
	if (sl->w.pidfd >= 0) {
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, sl->w.pidfd, NULL);
		close(sl->w.pidfd);
	}
	if (sl->w.sock >= 0) {
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, sl->w.sock, NULL);
		close(sl->w.sock);
	}
	if (sl->w.uid)
		uidpool_put(&p->s->uids, sl->w.uid);
	memset(&sl->w, 0, sizeof(sl->w));
	sl->w.pidfd = sl->w.sock = -1;
	sl->st = SB_EMPTY;
	sl->gen++;
}

/* One more death in a row (lock held): the next spawn waits 0.1 s, then
 * twice as long each time, up to 30 s. */
static void backoff(struct standby_pool *p)
{
	uint64_t wait = BACKOFF_MAX_NS;

	p->deaths++;
	if (p->deaths < 10)
		wait = BACKOFF_FIRST_NS << (p->deaths - 1);
	if (wait > BACKOFF_MAX_NS)
		wait = BACKOFF_MAX_NS;
	p->next_spawn_ns = mono_ns() + wait;
}

/* An event for slot i (lock held): its "ready", or its death. */
static void slot_event(struct standby_pool *p, unsigned i, bool sock)
{
	struct sb_slot *sl = &p->slot[i];
	char buf[16];

	if (sock) {
		ssize_t n = recv(sl->w.sock, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN)
			return;
		/* Said once; the end of input (it died) is the pidfd's to tell. */
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, sl->w.sock, NULL);
		if (n == 6 && !memcmp(buf, "ready\n", 6) && sl->st == SB_STARTING) {
			sl->st = SB_READY;
			log_info("standby: worker %d ready (%.1f ms after its spawn)", sl->w.pid,
				 (double)(mono_ns() - sl->born_ns) / 1e6);
		}
		return;
	}
	p->died++;
	if (mono_ns() - sl->born_ns > LIVED_LONG_NS)
		p->deaths = 0;
	backoff(p);
	slot_clear(p, sl, false);
	log_info("standby: replacing it in %.1f s (%u deaths in a row)",
		 (double)(p->next_spawn_ns - mono_ns()) / 1e9, p->deaths);
}

static void *keeper_main(void *opaque)
{
	struct standby_pool *p = opaque;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct epoll_event evs[8];
		uint64_t now = mono_ns();
		int timeout = -1, n;

		for (unsigned i = 0; i < p->want && !p->stopping; i++) {
			struct sb_slot *sl = &p->slot[i];
			uint64_t at = MAX(p->next_spawn_ns, p->refill_ns), hint = p->ram_hint_mib;
			struct standby_taken w;
			struct epoll_event ep, es;
			int ret;

			if (sl->st != SB_EMPTY)
				continue;
			if (now < at) {
				timeout = (int)((at - now) / 1000000) + 1;
				break;
			}
			sl->st = SB_SPAWNING;
			pthread_mutex_unlock(&p->lock);
			ret = spawn_one(p, &w, hint);
			pthread_mutex_lock(&p->lock);
			if (ret) {
				sl->st = SB_EMPTY;
				backoff(p);
				continue;
			}
			sl->w = w;
			sl->st = SB_STARTING;
			sl->gen++;
			sl->born_ns = mono_ns();
			p->spawned++;
			ep = (struct epoll_event){ .events = EPOLLIN, .data.u64 = ev_key(i, sl->gen, false) };
			es = (struct epoll_event){ .events = EPOLLIN, .data.u64 = ev_key(i, sl->gen, true) };
			if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, w.pidfd, &ep) ||
			    epoll_ctl(p->epfd, EPOLL_CTL_ADD, w.sock, &es))
				log_warn("standby: epoll: %s", strerror(errno));
		}
		pthread_mutex_unlock(&p->lock);
		n = epoll_wait(p->epfd, evs, 8, timeout);
		pthread_mutex_lock(&p->lock);
		for (int k = 0; k < n; k++) {
			uint64_t key = evs[k].data.u64;
			unsigned i = (unsigned)(key & 0xffffffffu) >> 1;

			if (key == EV_WAKE) {
				uint64_t v;

				(void)!read(p->wake, &v, sizeof(v));
				continue;
			}
			/* A slot taken or refilled since: not this event's. */
			if (i >= STANDBY_POOL_MAX || p->slot[i].gen != (uint32_t)(key >> 32) ||
			    (p->slot[i].st != SB_STARTING && p->slot[i].st != SB_READY))
				continue;
			slot_event(p, i, key & 1);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int standby_pool_start(struct sup *s, unsigned want, struct standby_pool **out)
{
	struct standby_pool *p;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_WAKE };
	int ret;

	*out = NULL;
	kill_stale(s);
	if (!want)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s = s;
	p->want = want > STANDBY_POOL_MAX ? STANDBY_POOL_MAX : want;
	for (unsigned i = 0; i < STANDBY_POOL_MAX; i++)
		p->slot[i].w.pidfd = p->slot[i].w.sock = -1;
	pthread_mutex_init(&p->lock, NULL);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->epfd < 0 || p->wake < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wake, &ev)) {
		ret = -errno;
		goto fail;
	}
	ret = -pthread_create(&p->keeper, NULL, keeper_main, p);
	if (ret)
		goto fail;
	log_info("standby: keeping %u standby worker%s ready for restores", p->want,
		 p->want == 1 ? "" : "s");
	*out = p;
	return 0;
fail:
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->wake >= 0)
		close(p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return ret;
}

void standby_pool_stop(struct standby_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_mutex_unlock(&p->lock);
	wake_keeper(p);
	pthread_join(p->keeper, NULL);
	for (unsigned i = 0; i < STANDBY_POOL_MAX; i++)
		if (p->slot[i].st != SB_EMPTY)
			slot_clear(p, &p->slot[i], true);
	cgroups_vm_remove(&p->s->cg, STANDBY_CGROUP);
	close(p->epfd);
	close(p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int standby_pool_take(struct standby_pool *p, struct standby_taken *t)
{
	if (!p)
		return -EAGAIN;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->want; i++) {
		struct sb_slot *sl = &p->slot[i];

		if (sl->st != SB_READY)
			continue;
		/* No longer the keeper's to watch or reap. */
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, sl->w.pidfd, NULL);
		*t = sl->w;
		memset(&sl->w, 0, sizeof(sl->w));
		sl->w.pidfd = sl->w.sock = -1;
		sl->st = SB_EMPTY;
		sl->gen++;
		p->deaths = 0;
		p->next_spawn_ns = 0;
		/* Its replacement's exec, KVM_CREATE_VM and TLS module would take
		 * the CPU the restore needs: spawned once it is done. */
		p->refill_ns = mono_ns() + REFILL_LATEST_NS;
		pthread_mutex_unlock(&p->lock);
		wake_keeper(p);
		return 0;
	}
	pthread_mutex_unlock(&p->lock);
	return -EAGAIN;
}

void standby_pool_refill(struct standby_pool *p)
{
	bool wake;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	wake = p->refill_ns != 0;
	p->refill_ns = 0;
	pthread_mutex_unlock(&p->lock);
	if (wake)
		wake_keeper(p);
}

bool standby_pool_retire_one(struct standby_pool *p)
{
	bool done = false;

	if (!p)
		return false;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->want && !done; i++) {
		if (p->slot[i].st == SB_READY || p->slot[i].st == SB_STARTING) {
			log_info("standby: worker %d stopped: a cold start needs its sandbox uid",
				 p->slot[i].w.pid);
			slot_clear(p, &p->slot[i], true);
			/* Not before the uid pool has room again. */
			p->next_spawn_ns = mono_ns() + BACKOFF_MAX_NS;
			done = true;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return done;
}

int standby_pool_request(struct standby_taken *t, char *const *argv, const int *fds,
			 const int *to, unsigned n, int kvm_to, char *err, size_t errlen)
{
	json_t *req = json_object(), *args = json_array(), *tos = json_array();
	union {
		char buf[CMSG_SPACE(sizeof(int) * STANDBY_POOL_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	char *line = NULL;
	int ret = -ENOMEM;

	if (n > STANDBY_POOL_FDS_MAX) {
		snprintf(err, errlen, "%u descriptors, more than one message carries", n);
		ret = -E2BIG;
		goto out;
	}
	for (unsigned i = 1; argv[i] && args; i++)
		json_array_append_new(args, json_string(argv[i]));
	for (unsigned i = 0; i < n && tos; i++)
		json_array_append_new(tos, json_integer(to[i]));
	if (!req || !args || !tos)
		goto oom;
	json_object_set(req, "args", args);
	json_object_set(req, "fds", tos);
	if (kvm_to >= 0)
		json_object_set_new(req, "kvm_fd", json_integer(kvm_to));
	line = json_dumps(req, JSON_COMPACT);
	if (!line)
		goto oom;
	iov.iov_base = line;
	iov.iov_len = strlen(line);
	if (n) {
		struct cmsghdr *c;

		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	ret = 0;
	if (sendmsg(t->sock, &msg, MSG_NOSIGNAL) < 0) {
		ret = -errno;
		snprintf(err, errlen, "sending the request to standby worker %d: %s", t->pid,
			 strerror(errno));
	}
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	free(line);
	json_decref(args);
	json_decref(tos);
	json_decref(req);
	close(t->sock);
	t->sock = -1;
	return ret;
}

void standby_pool_discard(struct standby_taken *t)
{
	kill(t->pid, SIGKILL);
	waitpid(t->pid, NULL, 0);
	if (t->pidfd >= 0)
		close(t->pidfd);
	if (t->sock >= 0)
		close(t->sock);
	t->pidfd = t->sock = -1;
}

void standby_pool_hint_ram(struct standby_pool *p, uint64_t mib)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->ram_hint_mib = mib;
	pthread_mutex_unlock(&p->lock);
}

json_t *standby_pool_json(struct standby_pool *p)
{
	json_t *pids = json_array(), *o;
	unsigned ready = 0, starting = 0;

	if (!p)
		return json_pack("{s:i, s:i, s:i, s:o}", "want", 0, "ready", 0, "starting", 0,
				 "pids", pids ?: json_array());
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->want; i++) {
		if (p->slot[i].st == SB_READY)
			ready++;
		else if (p->slot[i].st == SB_STARTING || p->slot[i].st == SB_SPAWNING)
			starting++;
		if (p->slot[i].st == SB_READY || p->slot[i].st == SB_STARTING)
			json_array_append_new(pids, json_integer(p->slot[i].w.pid));
	}
	o = json_pack("{s:i, s:i, s:i, s:o, s:I, s:I, s:I}", "want", (int)p->want, "ready",
		      (int)ready, "starting", (int)starting, "pids", pids, "spawned",
		      (json_int_t)p->spawned, "died", (json_int_t)p->died, "ram_hint_mib",
		      (json_int_t)p->ram_hint_mib);
	pthread_mutex_unlock(&p->lock);
	return o;
}
