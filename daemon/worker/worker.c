/* worker.c: cella-vm workers: spawning (own session, control socket
 * passed as fd 3, start gate), the monitor thread that notices their exit
 * through pidfds and reads their consoles, and re-adoption of workers left
 * by a previous cellad. Exit settlement and restart policy are in
 * worker_exit_settle.c, the start handshake in worker_launch.c. */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "files.h"
#include "standby_pool.h"
#include "worker_clone.h"
#include "ksm.h"
#include "log.h"
#include "unixsock.h"
#include "wctl.h"

void sup_paths(struct sup *s, const struct vmrt *vm, const char *suffix, char *out, size_t len)
{
	snprintf(out, len, "%s/%s%s", s->conf.run_dir, vm->def.uuid, suffix);
}

static int pidfd_open_(pid_t pid)
{
	return worker_pidfd_open(pid);
}

uint64_t proc_start_time(pid_t pid, bool *zombie)
{
	char path[64], buf[1024];
	unsigned long long start = 0;
	char *p;
	ssize_t n;
	int fd;

	*zombie = false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (!p || p[1] != ' ')
		return 0;
	*zombie = p[2] == 'Z' || p[2] == 'X';
	/* Field 3 is the state; starttime is field 22. */
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%llu", &start) != 1)
		return 0;
	return start;
}

static void watch_add(struct sup *s, struct watch *w, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		w->armed = true;
	else
		log_err("vm %s: epoll: %s", w->vm->def.name, strerror(errno));
}

static void console_close(struct sup *s, struct vmrt *vm)
{
	if (vm->console_fd < 0)
		return;
	if (vm->w_con.armed)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, vm->console_fd, NULL);
	vm->w_con.armed = false;
	close(vm->console_fd);
	vm->console_fd = -1;
	sup_vm_changed(vm);
}

void sup_unwatch(struct sup *s, struct vmrt *vm)
{
	if (vm->pidfd >= 0) {
		if (vm->w_pid.armed)
			epoll_ctl(s->epfd, EPOLL_CTL_DEL, vm->pidfd, NULL);
		close(vm->pidfd);
	}
	vm->pidfd = -1;
	vm->w_pid.armed = false;
	console_close(s, vm);
}

/* Drain what the console has (lock held). Returns false at EOF. */
bool console_drain(struct sup *s, struct vmrt *vm)
{
	char buf[16384];

	for (;;) {
		ssize_t n = recv(vm->console_fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0) {
			if (!vm->first_out_ns)
				vm->first_out_ns = sup_mono_ns();
			conbuf_append(&vm->con, buf, (size_t)n);
			sup_vm_changed(vm);
			continue;
		}
		return n < 0 && (errno == EAGAIN || errno == EINTR);
	}
}

int sup_console_attach(struct sup *s, struct vmrt *vm)
{
	char path[512];
	int fd;

	sup_paths(s, vm, ".console", path, sizeof(path));
	fd = wctl_connect(path);
	if (fd < 0)
		return fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (!vm->con.data) {
		vm->con.cap = s->conf.console_history;
		vm->con.data = malloc(vm->con.cap);
		if (!vm->con.data)
			vm->con.cap = 0;
	}
	console_close(s, vm);
	vm->console_fd = fd;
	watch_add(s, &vm->w_con, fd);
	return 0;
}

/* The worker's uid from the pool (no worker runs under it any more). */
void sandbox_uid_put(struct sup *s, struct vmrt *vm)
{
	if (vm->sandbox_uid)
		uidpool_put(&s->uids, vm->sandbox_uid);
	vm->sandbox_uid = 0;
}

/* An adopted worker keeps the uid it runs under. */
static void sandbox_uid_adopt(struct sup *s, struct vmrt *vm)
{
	char path[64], line[256];
	unsigned uid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)vm->pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid: %u", &uid) == 1) {
			if (uid && uidpool_claim(&s->uids, uid))
				vm->sandbox_uid = uid;
			break;
		}
	}
	if (f)
		fclose(f);
}

#define SPAWN_ARGS 32

/* Build the worker's argv (all strings owned by `store`). */
static int build_argv(struct sup *s, struct vmrt *vm, const struct worker_files *wf, char **argv,
		      size_t max, char store[][600])
{
	size_t n = 0, k = 0;

#define ARG(...) do {							\
		if (n + 1 >= max || k >= SPAWN_ARGS) return -E2BIG;		\
		snprintf(store[k], 600, __VA_ARGS__);			\
		argv[n++] = store[k++];					\
	} while (0)
	/* Every file by descriptor: the worker cannot reach run_dir (0750
	 * root), /dev/kvm or the taps from its user namespace. */
	ARG("%s", s->conf.worker_path);
	ARG("--config");
	ARG("fd:%d", wf->config);
	ARG("--console");
	ARG("unix:fd:%d", wf->console);
	ARG("--control");
	ARG("fd:3");
	ARG("--exit-file");
	ARG("fd:%d", wf->exit);
	ARG("--kvm");
	ARG("fd:%d", wf->kvm);
	if (vm->incoming_fd >= 0) {
		/* Moving in: the listening socket is fd 4; the worker reads the
		 * TLS files (passed open) before it sandboxes itself and runs
		 * the VM once it has arrived (no start gate). */
		static const char *const tls_opt[3] = { "--tls-cert", "--tls-key", "--tls-ca" };

		ARG("--incoming");
		ARG("fd:4");
		for (unsigned i = 0; i < 3; i++) {
			if (wf->tls[i] < 0)
				continue;
			ARG("%s", tls_opt[i]);
			ARG("fd:%d", wf->tls[i]);
		}
	} else {
		ARG("--wait-start");
	}
	ARG("--name");
	ARG("%s", vm->def.name);
	if (s->conf.sandbox)
		ARG("--sandbox=userns"); /* worker_clone mapped it to its uid */
	if (s->conf.seccomp)
		ARG("--seccomp");
	if (s->conf.test_probe)
		ARG("--test-probe");
	if (wf->restore >= 0) {
		/* Opened by cellad; mapped privately by the worker, so the file
		 * may be unlinked once the VM runs. */
		ARG("--restore");
		ARG("fd:%d", wf->restore);
	}
	if (wf->uffd >= 0) {
		ARG("--userfaultfd");
		ARG("fd:%d", wf->uffd);
	}
#undef ARG
	argv[n] = NULL;
	return 0;
}

/* The host identity a sandboxed worker is mapped to: its own uid and gid
 * from the pool, or sandbox_user's. 0 or -1 with e set. */
static int worker_ids(struct sup *s, struct vmrt *vm, uid_t *uid, gid_t *gid, struct cerr *e)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (vm->sandbox_uid) {
		*uid = vm->sandbox_uid;
		*gid = vm->sandbox_uid;
		return 0;
	}
	if (getpwnam_r(s->conf.sandbox_user, &pw, buf, sizeof(buf), &res) || !res)
		return cerr_set(e, CERR_INTERNAL, "", "sandbox_user %s: no such user",
				s->conf.sandbox_user);
	if (!pw.pw_uid || !pw.pw_gid)
		return cerr_set(e, CERR_INTERNAL, "", "sandbox_user %s is root",
				s->conf.sandbox_user);
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return 0;
}

/* The worker's cgroup (CPU, memory and pids limits); a failure leaves it
 * running without them, said in the log. */
static void worker_attach(struct sup *s, struct vmrt *vm, pid_t pid)
{
	/* The memory limit covers what virtio-mem may plug (memory_max_mib),
	 * as admission does: a guest grown to its maximum is not OOM-killed. */
	if (cgroups_vm_attach(&s->cg, vm->def.uuid, pid, vm->def.cpus,
			      vmdef_dynmem_ceiling(&vm->def),
			      vm->def.cpu_weight, vm->def.cpu_max))
		log_warn("vm %s: cannot apply cgroup limits (%s)", vm->def.name,
			 cgroups_mode_name(&s->cg));
}

/* A start that failed before its worker ran (lock held): the standby it
 * took, if any, is killed, and the uid goes back. */
static void spawn_abandon(struct sup *s, struct vmrt *vm, struct standby_taken *sb)
{
	if (sb->pid)
		standby_pool_discard(sb);
	sb->pid = 0;
	sandbox_uid_put(s, vm);
}

/* The restore into the standby worker t: first into the VM's cgroup, with
 * its limits (what the standby allocated before stays charged to the
 * standby group, docs/cellad.md), then the cold worker's argv and its
 * descriptors at the numbers spawn_worker's child would give them: 0
 * /dev/null, 1 and 2 the VM's log, 3 the control socket, 4 a move's
 * socket, the VM's files at 5.. (files.h), its own /dev/kvm where the
 * VM's would be. 0, or -1 (logged; t is the caller's to discard). */
static int standby_hand_over(struct sup *s, struct vmrt *vm, struct standby_taken *t,
			     char **argv, const struct worker_files *wf, int ctl, int logfd,
			     int nullfd)
{
	int fds[STANDBY_POOL_FDS_MAX], to[STANDBY_POOL_FDS_MAX];
	unsigned n = 0;
	char err[256];

	if (wf->nr + WORKER_FILES_BASE > STANDBY_POOL_FDS_MAX) {
		log_info("vm %s: %u files: more than a standby worker's request carries; "
			 "starting cold", vm->def.name, wf->nr);
		return -1;
	}
#define PASS(fd, num) do { fds[n] = (fd); to[n] = (num); n++; } while (0)
	PASS(nullfd, 0);
	PASS(logfd, 1);
	PASS(logfd, 2);
	PASS(ctl, 3);
	if (vm->incoming_fd >= 0)
		PASS(vm->incoming_fd, 4);
	for (unsigned i = 0; i < wf->nr; i++)
		if (WORKER_FILES_BASE + (int)i != wf->kvm)
			PASS(wf->fd[i], WORKER_FILES_BASE + (int)i);
#undef PASS
	worker_attach(s, vm, t->pid);
	if (standby_pool_request(t, argv, fds, to, n, wf->kvm, err, sizeof(err))) {
		log_warn("vm %s: %s; starting a worker cold", vm->def.name, err);
		return -1;
	}
	return 0;
}

/* Create and exec the worker (lock held). */
static int spawn_worker(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	char store[SPAWN_ARGS][600], *argv[SPAWN_ARGS + 4], path[512], logp[600];
	struct worker_files wf;
	int ctl, logfd, nullfd, hi[WORKER_FILES_MAX], gate[2] = { -1, -1 }, gate_was, ret;
	uid_t uid = 0;
	gid_t gid = 0;
	struct standby_taken sb = { .pid = 0, .pidfd = -1, .sock = -1 };
	json_t *cfg;
	pid_t pid;

	if (ksm_prepare_start(&vm->def, e)) /* KSM on, huge pages free (docs/memory.md) */
		return -1;
	/* Again at every start: a file in a storage location may have been
	 * replaced (by a symlink out of it, a new backing file) since. The
	 * check opens each file, and the worker gets these descriptors: it
	 * opens nothing by name, so nothing can be swapped in between. */
	cfg = vmdef_worker_config(&vm->def);
	if (!cfg)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	/* The uid first: a user NIC's passt runs as it (worker_files_open).
	 * A restore takes a standby worker if one is ready, and its uid. */
	sandbox_uid_put(s, vm);
	vm->via_standby = 0;
	if (vm->restore && vm->incoming_fd < 0) {
		/* The next standby is made for this size (a VM with virtio-mem
		 * has other memory slots: none). */
		standby_pool_hint_ram(s->standby, vmdef_dynmem_ceiling(&vm->def) == vm->def.memory_mib
							  ? vm->def.memory_mib : 0);
		if (standby_pool_take(s->standby, &sb) == 0)
			vm->sandbox_uid = sb.uid;
	}
	if (!sb.pid && s->conf.sandbox && !s->conf.sandbox_user) {
		int64_t taken = uidpool_take(&s->uids);

		/* The standby workers' uids come from the same pool. */
		if (taken < 0 && standby_pool_retire_one(s->standby))
			taken = uidpool_take(&s->uids);

		if (taken < 0) {
			json_decref(cfg);
			return cerr_set(e, CERR_CAPACITY, "", "no free sandbox uid: all %u from %u "
					"are in use (sandbox_uid_count)", s->conf.sandbox_uid_count,
					s->conf.sandbox_uid_base);
		}
		vm->sandbox_uid = (uint32_t)taken;
	}
	if (worker_files_open(s, vm, cfg, &wf, e)) {
		json_decref(cfg);
		spawn_abandon(s, vm, &sb);
		return -1;
	}
	sup_paths(s, vm, ".json", path, sizeof(path));
	if (json_dump_file(cfg, path, JSON_INDENT(2)) < 0) {
		worker_files_close(&wf);
		json_decref(cfg);
		spawn_abandon(s, vm, &sb);
		return cerr_set(e, CERR_INTERNAL, "", "cannot write %s", path);
	}
	json_decref(cfg);
	if (worker_files_add_config(&wf, path, e)) {
		worker_files_close(&wf);
		spawn_abandon(s, vm, &sb);
		return -1;
	}
	if (build_argv(s, vm, &wf, argv, ARRAY_SIZE(argv), store)) {
		worker_files_close(&wf);
		spawn_abandon(s, vm, &sb);
		return cerr_set(e, CERR_INTERNAL, "", "worker command line too long");
	}
	/* (The exit record was created empty with the worker's files.) */
	sup_paths(s, vm, ".ctl", path, sizeof(path));
	ctl = unix_listen(path, 16, 0600);
	if (ctl < 0) {
		worker_files_close(&wf);
		spawn_abandon(s, vm, &sb);
		return cerr_set(e, CERR_INTERNAL, "", "control socket %s: %s", path, strerror(-ctl));
	}
	snprintf(logp, sizeof(logp), "%s/logs/%s.log", s->conf.state_dir, vm->def.name);
	logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", logp, strerror(errno));
		goto fail;
	}
	if (sb.pid) {
		if (!standby_hand_over(s, vm, &sb, argv, &wf, ctl, logfd, nullfd)) {
			close(ctl);
			close(logfd);
			close(nullfd);
			worker_files_close(&wf);
			vm->pid = sb.pid;
			vm->is_child = true; /* cellad spawned it: waitpid works */
			vm->pid_start = sb.start;
			vm->pidfd = sb.pidfd;
			vm->via_standby = sb.pid;
			watch_add(s, &vm->w_pid, vm->pidfd);
			return 0;
		}
		/* Cold after all, under the same uid (the VM's now). */
		standby_pool_discard(&sb);
		sb.pid = 0;
	}
	if (s->conf.sandbox && worker_ids(s, vm, &uid, &gid, e))
		goto fail;
	pid = worker_clone(s->conf.sandbox, gate);
	if (pid < 0) {
		cerr_set(e, CERR_INTERNAL, "", "clone: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		/* Child of a multithreaded process: async-signal-safe calls only. */
		if (worker_child_start(gate[0]))
			_exit(127);
		if (worker_files_lift(&wf, hi))
			_exit(127);
		if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(127);
		if (ctl == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(ctl, 3) < 0)
			_exit(127);
		if (vm->incoming_fd == 4)
			fcntl(4, F_SETFD, 0);
		else if (vm->incoming_fd >= 0 && dup2(vm->incoming_fd, 4) < 0)
			_exit(127);
		/* The VM's files at 5.. (files.h), nothing else above. */
		if (worker_files_place(&wf, hi))
			_exit(127);
		if (vm->incoming_fd < 0)
			close(4);
		syscall(SYS_close_range, (unsigned)(WORKER_FILES_BASE + wf.nr), ~0U, 0U);
		execv(argv[0], argv);
		_exit(127);
	}
	gate_was = gate[0];
	if (gate[0] >= 0) {
		close(gate[0]);
		gate[0] = -1;
		/* In its cgroup before it runs a line of cella-vm: everything it
		 * allocates is charged there (cgroup v2 does not move charges
		 * made before a move), its pids count from the first. About
		 * 0.16 ms of cgroup writes on the start's path. */
		worker_attach(s, vm, pid);
		ret = worker_release(pid, gate[1], uid, gid);
		close(gate[1]);
		gate[1] = -1;
		if (ret) {
			cerr_set(e, CERR_INTERNAL, "", "cannot map the worker's user namespace to "
				 "uid %u: %s", (unsigned)uid, strerror(-ret));
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			goto fail;
		}
	}
	close(ctl);
	close(logfd);
	close(nullfd);
	worker_files_close(&wf);
	vm->pid = pid;
	vm->is_child = true;
	vm->pid_start = proc_start_time(pid, &(bool){ false });
	vm->pidfd = pidfd_open_(pid);
	if (vm->pidfd < 0) {
		log_err("vm %s: pidfd_open: %s", vm->def.name, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		vm->pid = 0;
		sandbox_uid_put(s, vm);
		return cerr_set(e, CERR_INTERNAL, "", "pidfd_open: %s", strerror(errno));
	}
	watch_add(s, &vm->w_pid, vm->pidfd);
	/* Unsandboxed (fork, no gate): placed once running. */
	if (gate_was < 0)
		worker_attach(s, vm, pid);
	return 0;
fail:
	for (int i = 0; i < 2; i++)
		if (gate[i] >= 0)
			close(gate[i]);
	worker_files_close(&wf);
	spawn_abandon(s, vm, &sb);
	close(ctl);
	if (logfd >= 0)
		close(logfd);
	if (nullfd >= 0)
		close(nullfd);
	return -1;
}

int sup_spawn(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	int ret = spawn_worker(s, vm, e);

	if (ret) { /* the switch ports and passts made for it (worker_files_open) */
		sup_ports_remove(s, vm);
		sup_usernet_stop(s, vm);
	}
	return ret;
}

void sup_adopt(struct sup *s, struct vmrt *vm, const struct store_runtime *rt)
{
	bool zombie;
	uint64_t st = rt->pid ? proc_start_time(rt->pid, &zombie) : 0;
	json_t *req, *reply = NULL;
	char path[512];
	const char *state;
	enum vm_event ev;
	int ret;

	vm->pid = rt->pid;
	vm->pid_start = rt->pid_start;
	vm->started_at = rt->started_at;
	vm->is_child = false;
	sup_ports_mark(vm);
	if (!rt->pid || st != rt->pid_start || zombie) {
		log_info("vm %s: worker %d is gone; settling its exit", vm->def.name, rt->pid);
		worker_exited(s, vm);
		return;
	}
	vm->pidfd = pidfd_open_(rt->pid);
	if (vm->pidfd < 0) {
		worker_exited(s, vm);
		return;
	}
	sandbox_uid_adopt(s, vm);
	watch_add(s, &vm->w_pid, vm->pidfd);
	sup_ports_reattach(s, vm);
	sup_usernet_adopt(s, vm);
	sup_paths(s, vm, ".ctl", path, sizeof(path));
	req = json_pack("{s:s}", "cmd", "status");
	ret = wctl_request(path, req, 5000, &reply);
	json_decref(req);
	state = json_string_value(json_object_get(reply, "state"));
	if (ret || !state) {
		log_warn("vm %s: worker %d does not answer (%s); killing it", vm->def.name, rt->pid,
			 strerror(-ret));
		json_decref(reply);
		kill(rt->pid, SIGKILL); /* the monitor settles it as crashed */
		return;
	}
	if (sup_console_attach(s, vm))
		log_warn("vm %s: cannot reattach the console", vm->def.name);
	if (!strcmp(state, "created")) {
		/* cellad died between spawn and start: finish the start. */
		json_t *r2 = NULL;

		req = json_pack("{s:s}", "cmd", "start");
		if (wctl_request(path, req, 5000, &r2))
			kill(rt->pid, SIGKILL);
		json_decref(req);
		json_decref(r2);
		state = "running";
	}
	{
		int64_t up = json_integer_value(json_object_get(reply, "uptime_ms"));
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		vm->started_mono.tv_sec = now.tv_sec - up / 1000;
		vm->started_mono.tv_nsec = now.tv_nsec - (up % 1000) * 1000000;
		if (vm->started_mono.tv_nsec < 0) {
			vm->started_mono.tv_sec--;
			vm->started_mono.tv_nsec += 1000000000;
		}
	}
	ev = !strcmp(state, "paused") ? EV_ADOPT_PAUSED
	     : !strcmp(state, "stopping") ? EV_ADOPT_STOPPING : EV_ADOPT_RUNNING;
	if (ev == EV_ADOPT_STOPPING)
		vm->stop_requested = true;
	json_decref(reply);
	lifecycle_fire(s, vm, ev, NULL);
}

static void *monitor_main(void *opaque)
{
	struct sup *s = opaque;

	for (;;) {
		struct epoll_event ev;
		struct watch *w;
		int n;

		struct vmrt *dead = NULL;

		/* Deleted VMs are freed here, once nobody holds a reference: their
		 * fds left epoll when they stopped, so no later event names them. */
		pthread_mutex_lock(&s->reg_lock);
		for (struct vmrt **pp = &s->zombies; *pp;) {
			struct vmrt *vm = *pp;

			if (vm->refs == 0) {
				*pp = vm->next;
				vm->next = dead;
				dead = vm;
			} else {
				pp = &vm->next;
			}
		}
		pthread_mutex_unlock(&s->reg_lock);
		while (dead) {
			struct vmrt *vm = dead;

			dead = vm->next;
			cgroups_vm_remove(&s->cg, vm->def.uuid);
			sup_free_attached(s, vm);
			json_decref(vm->disk_status);
			conbuf_free(&vm->con);
			vmdef_free(&vm->def);
			pthread_mutex_destroy(&vm->lock);
			pthread_cond_destroy(&vm->changed);
			free(vm);
		}
		n = epoll_wait(s->epfd, &ev, 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (!ev.data.ptr)
			break; /* stop_efd */
		w = ev.data.ptr;
		pthread_mutex_lock(&w->vm->lock);
		if (w->armed) {
			if (w->kind == WATCH_PID)
				worker_exited(s, w->vm);
			else if (!console_drain(s, w->vm))
				console_close(s, w->vm);
		}
		pthread_mutex_unlock(&w->vm->lock);
	}
	return NULL;
}

int sup_monitor_start(struct sup *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int ret;

	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0 || s->stop_efd < 0)
		return -errno;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_efd, &ev) < 0)
		return -errno;
	ret = pthread_create(&s->monitor, NULL, monitor_main, s);
	if (ret)
		return -ret;
	s->monitor_started = true;
	return 0;
}

void sup_monitor_stop(struct sup *s)
{
	uint64_t one = 1;

	if (!s->monitor_started)
		return;
	if (write(s->stop_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("cannot stop the monitor thread");
	pthread_join(s->monitor, NULL);
	s->monitor_started = false;
	close(s->epfd);
	s->epfd = -1;
}
