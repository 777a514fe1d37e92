/* control.c: cella-vm's control socket: JSON-lines requests from cellad
 * (status, start, pause, resume, shutdown, stop, reset, stats, save,
 * migrate, and the device types' commands) served on the VM's I/O loop,
 * and the exit record that outlives the worker. */
#include "control/control.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control/deadline.h"
#include "devtype.h"
#include "fdspec.h"
#include "log.h"
#include "mem_prefetch.h"
#include "migrate/migrate.h"
#include "state/memorder_sample.h"
#include "state/statefile.h"
#include "virtio/blk/blk_ctl.h"
#include "vm.h"

#define CTL_LINE_MAX   16384 /* migrate carries PEM certificates and a key */
#define CTL_MAX_CLIENTS 16
#define CTL_START_TIMEOUT_S 30
#define CTL_MAX_FDS     8   /* file descriptors attached to one request */

/* File descriptors received (SCM_RIGHTS) and the buffer offset of the
 * bytes they came with: they belong to the line that holds that byte. */
struct ctl_fd_batch {
	size_t at;
	unsigned n;
	int fds[CTL_MAX_FDS];
};

struct ctl_client {
	struct control *c;
	int fd;
	bool watched;
	size_t len;
	char buf[CTL_LINE_MAX];
	struct ctl_fd_batch pending[4]; /* batches not yet claimed by a line */
	unsigned nr_pending;
	bool fd_overflow;               /* more fds than fit: the line is refused */
	struct ctl_client *next;
};

struct ctl_req {
	int fds[CTL_MAX_FDS];
	unsigned nr_fds;
};

struct control {
	struct vm *vm;
	int listen_fd;
	bool listen_watched;
	int exit_fd;        /* exit record, opened before the sandbox */
	int status_fd;      /* /proc/self/status, opened before the sandbox */
	int timer_fd;       /* graceful-shutdown deadline */
	int gate_fd;        /* start gate: eventfd stepping the release, and its timeout */
	int gate_timer_fd;
	unsigned gate_step;
	bool released;      /* the gate has let the vCPUs run */
	bool started;       /* past the start gate (or no gate) */
	bool shutdown_pending;
	unsigned shutdown_timeout_ms;
	bool test_probe;
	char name[128];
	struct timespec t_start; /* CLOCK_MONOTONIC when the vCPUs were let run */
	struct ctl_client *clients;
	struct ctl_client *cur_client; /* the client whose request is being handled */
	struct migration *mig;         /* the last migration (vmm/migrate) */
	struct ctl_client *mig_client; /* who gets its reply; NULL once gone */
	unsigned nr_clients;
	struct ha_deadline ha; /* lease-extend (docs/pool.md) */
};

static void ctl_client_ready(void *opaque, uint32_t events);

static int ctl_open_listen(const char *spec)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!strncmp(spec, "fd:", 3)) {
		char *end;
		long n = strtol(spec + 3, &end, 10);
		int type = 0;
		socklen_t tl = sizeof(type);

		if (*end || n < 0 || n > 65535 ||
		    getsockopt((int)n, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
			log_err("control: %s is not an inherited stream socket", spec);
			return -EBADF;
		}
		fd = (int)n;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		return fd;
	}
	if (strlen(spec) >= sizeof(sa.sun_path)) {
		log_err("control: socket path too long: %s", spec);
		return -ENAMETOOLONG;
	}
	/* Bound and listening under a temporary name, then renamed into
	 * place: the path appears only once a connect to it can succeed (a
	 * client polling for it got ECONNREFUSED between bind and listen). */
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d.tmp", spec, (int)getpid()) >=
	    sizeof(sa.sun_path))
		strcpy(sa.sun_path, spec); /* no room for the suffix: bound in place */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0 ||
	    (strcmp(sa.sun_path, spec) && rename(sa.sun_path, spec) < 0)) {
		int err = -errno;

		log_err("control: socket %s: %s", spec, strerror(errno));
		if (strcmp(sa.sun_path, spec))
			unlink(sa.sun_path);
		close(fd);
		return err;
	}
	return fd;
}

int control_create(struct control **out, struct vm *vm, const struct control_opts *opts)
{
	struct control *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->vm = vm;
	c->exit_fd = c->status_fd = c->timer_fd = c->gate_fd = c->gate_timer_fd = -1;
	c->test_probe = opts->test_probe;
	snprintf(c->name, sizeof(c->name), "%s", opts->name ? opts->name : "");
	c->listen_fd = ctl_open_listen(opts->spec);
	if (c->listen_fd < 0) {
		ret = c->listen_fd;
		free(c);
		return ret;
	}
	if (opts->exit_file) {
		/* "fd:N": cellad created it in its run_dir, which the worker
		 * cannot reach; the original goes once duplicated. */
		char why[256];
		int passed;

		c->exit_fd = fdspec_open(opts->exit_file, O_WRONLY | O_CREAT | O_TRUNC, 0640,
					 FDSPEC_REG, why, sizeof(why));
		if (c->exit_fd < 0) {
			ret = c->exit_fd;
			log_err("control: exit file %s", why);
			control_destroy(c);
			return ret;
		}
		if (fdspec_is_fd(opts->exit_file, &passed) && passed > 2)
			close(passed);
	}
	c->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if ((ret = ha_deadline_create(&c->ha, c->exit_fd)))
		log_warn("control: no HA deadline timer: %s", strerror(-ret));
	c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	c->gate_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	c->gate_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->timer_fd < 0 || c->gate_timer_fd < 0 || c->gate_fd < 0) {
		ret = -errno;
		control_destroy(c);
		return ret;
	}
	clock_gettime(CLOCK_MONOTONIC, &c->t_start);
	*out = c;
	return 0;
}

static uint64_t ctl_elapsed_ms(const struct control *c)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - c->t_start.tv_sec) * 1000 +
	       (uint64_t)((now.tv_nsec - c->t_start.tv_nsec) / 1000000);
}

static const char *ctl_state(struct control *c)
{
	if (!c->started)
		return "created";
	if (vm_exiting(c->vm))
		return "stopping";
	if (vm_paused(c->vm) && c->released)
		return "paused";
	return c->shutdown_pending ? "stopping" : "running";
}

static uint64_t thread_cpu_ns(pthread_t t)
{
	clockid_t cid;
	struct timespec ts;

	if (pthread_getcpuclockid(t, &cid) || clock_gettime(cid, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Memory figures (KiB) from the pre-opened /proc/self/status. */
static json_t *ctl_memory(struct control *c)
{
	static const char *const keys[] = { "VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem" };
	json_t *mem = json_object(), *pf = guest_mem_prefetch_json(&c->vm->mem);
	char buf[4096];
	ssize_t n;

	if (pf)
		json_object_set_new(mem, "restore_prefetch", pf);
	if (c->status_fd < 0)
		return mem;
	n = pread(c->status_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return mem;
	buf[n] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		char pat[32];
		const char *p;
		unsigned long long kb;

		snprintf(pat, sizeof(pat), "\n%s:", keys[i]);
		p = strstr(buf, pat);
		if (p && sscanf(p + strlen(pat), " %llu", &kb) == 1) {
			char key[40];

			snprintf(key, sizeof(key), "%s_kib", keys[i]);
			json_object_set_new(mem, key, json_integer((json_int_t)kb));
		}
	}
	return mem;
}

static json_t *ctl_stats(struct control *c)
{
	struct vm *vm = c->vm;
	json_t *vcpus = json_array();
	uint64_t io = 0, mmio = 0, other = 0, cpu = 0;
	struct timespec ts;
	json_t *rep;

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		const struct vcpu *v = &vm->vcpus[i];
		uint64_t t = v->thread_started ? thread_cpu_ns(v->thread) : 0;

		io += v->exits_io;
		mmio += v->exits_mmio;
		other += v->exits_other;
		cpu += t;
		json_array_append_new(vcpus, json_pack("{s:i, s:I, s:I, s:I, s:I}", "index", (int)i,
						       "exits_io", (json_int_t)v->exits_io,
						       "exits_mmio", (json_int_t)v->exits_mmio,
						       "exits_other", (json_int_t)v->exits_other,
						       "cpu_time_ns", (json_int_t)t));
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	rep = json_pack("{s:b, s:s, s:I, s:o, s:{s:I, s:I, s:I}, s:I, s:I, s:o}", "ok", 1,
			 "state", ctl_state(c), "uptime_ms", (json_int_t)ctl_elapsed_ms(c),
			 "vcpus", vcpus, "exits", "io", (json_int_t)io, "mmio", (json_int_t)mmio,
			 "other", (json_int_t)other, "vcpu_time_ns", (json_int_t)cpu,
			 "process_cpu_time_ns",
			 (json_int_t)((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec),
			 "memory", ctl_memory(c));
	/* Device counters too (the status members: disks, balloon), for
	 * cellad's metrics. */
	if (rep) {
		json_t *devs = json_object();

		for (unsigned i = 0; i < nr_device_types; i++)
			if (device_types[i]->status)
				json_object_set_new(devs, device_types[i]->status_key,
						    device_types[i]->status(vm));
		json_object_set_new(rep, "devices", devs);
	}
	return rep;
}

static json_t *ctl_error(const char *fmt, ...) __printf(1, 2);
static json_t *ctl_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *ctl_ok(struct control *c)
{
	return json_pack("{s:b, s:s}", "ok", 1, "state", ctl_state(c));
}

/* Graceful shutdown: vm_request_guest_shutdown presses the ACPI power
 * button (hw/acpi: the GED's event) when the guest's OSPM initialised the
 * GED, else sends Ctrl-Alt-Del on the i8042 (a Linux guest booted with
 * reboot=k resets, which cellad, having asked for the stop, records as
 * stopped). Whether or not the guest reacts, the deadline turns the VM off. */
static json_t *ctl_shutdown(struct control *c, json_t *req)
{
	json_t *t = json_object_get(req, "timeout_ms");
	json_int_t ms = 30000;
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	int ret;

	if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
		  json_integer_value(t) > 3600 * 1000))
		return ctl_error("timeout_ms: expected an integer from 0 to 3600000");
	if (t)
		ms = json_integer_value(t);
	if (vm_paused(c->vm))
		vm_resume(c->vm); /* a paused guest could never power off */
	ret = c->shutdown_pending ? 0 : vm_request_guest_shutdown(c->vm);
	if (ret && ret != -EBUSY)
		log_info("control: cannot deliver the power button or Ctrl-Alt-Del to the guest: %s",
			 strerror(-ret));
	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (ms % 1000) * 1000000 + 1; /* 0 would disarm */
	if (timerfd_settime(c->timer_fd, 0, &its, NULL) < 0)
		return ctl_error("cannot arm the shutdown timer: %s", strerror(errno));
	c->shutdown_pending = true;
	c->shutdown_timeout_ms = (unsigned)ms;
	log_info("control: graceful shutdown requested (power button or Ctrl-Alt-Del %s); "
		 "turning off in %lld ms "
		 "unless the guest powers off first", ret ? "not delivered" : "sent", (long long)ms);
	return ctl_ok(c);
}

/* {"cmd": "shutdown-cancel"}: a pending graceful shutdown is abandoned
 * (its deadline disarmed): the VM runs on, untouched. The key press was
 * delivered and stays so; a guest that acts on it later powers off as if
 * by itself. Refused once the VM is exiting (too late: it is going). */
static json_t *ctl_shutdown_cancel(struct control *c)
{
	struct itimerspec off = { { 0, 0 }, { 0, 0 } };

	if (vm_exiting(c->vm))
		return ctl_error("shutdown-cancel: the VM is already powering off");
	if (!c->shutdown_pending)
		return ctl_error("shutdown-cancel: no shutdown is pending");
	if (timerfd_settime(c->timer_fd, 0, &off, NULL) < 0)
		return ctl_error("cannot disarm the shutdown timer: %s", strerror(errno));
	c->shutdown_pending = false;
	log_info("control: graceful shutdown cancelled; the VM runs on");
	return ctl_ok(c);
}

static json_t *ctl_probe_open(struct control *c, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	int fd;

	if (!c->test_probe)
		return ctl_error("probe-open: disabled (worker not started with --test-probe)");
	if (!path)
		return ctl_error("path: expected a string");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return json_pack("{s:b, s:b, s:s, s:i}", "ok", 1, "opened", 0, "error",
				 strerror(errno), "errno", errno);
	close(fd);
	return json_pack("{s:b, s:b}", "ok", 1, "opened", 1);
}

/* Test-only: make a system call the sandbox forbids ("socket": an IPv4
 * socket; "unshare": a new user namespace). Under seccomp the worker ends
 * (status 4, the call's number logged) before it can answer. */
static json_t *ctl_probe_syscall(struct control *c, json_t *req)
{
	const char *call = json_string_value(json_object_get(req, "call"));
	int ret;

	if (!c->test_probe)
		return ctl_error("probe-syscall: disabled (worker not started with --test-probe)");
	if (!call || (strcmp(call, "socket") && strcmp(call, "unshare")))
		return ctl_error("call: expected \"socket\" or \"unshare\"");
	if (!strcmp(call, "socket")) {
		ret = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ret >= 0)
			close(ret);
	} else {
		ret = unshare(CLONE_NEWUSER);
	}
	if (ret < 0)
		return json_pack("{s:b, s:b, s:s}", "ok", 1, "done", 0, "error", strerror(errno));
	return json_pack("{s:b, s:b}", "ok", 1, "done", 1);
}

int ctl_take_fd(struct ctl_req *rq, unsigned idx)
{
	int fd;

	if (!rq || idx >= rq->nr_fds)
		return -1;
	fd = rq->fds[idx];
	rq->fds[idx] = -1;
	return fd;
}

unsigned ctl_nr_fds(const struct ctl_req *rq)
{
	return rq ? rq->nr_fds : 0;
}

int ctl_req_file(struct ctl_req *rq, json_t *req, int flags, char *err, size_t errlen)
{
	json_t *jfd = json_object_get(req, "fd");
	const char *path = json_string_value(json_object_get(req, "path"));
	int fd;

	if (jfd && path) {
		snprintf(err, errlen, "give either path or fd, not both");
		return -EINVAL;
	}
	if (jfd) {
		if (!json_is_integer(jfd) || json_integer_value(jfd) < 0 ||
		    json_integer_value(jfd) >= CTL_MAX_FDS) {
			snprintf(err, errlen, "fd: expected an index from 0 to %d", CTL_MAX_FDS - 1);
			return -EINVAL;
		}
		fd = ctl_take_fd(rq, (unsigned)json_integer_value(jfd));
		if (fd < 0) {
			snprintf(err, errlen, "fd: no file descriptor %lld attached to the request",
				 (long long)json_integer_value(jfd));
			return -EBADF;
		}
		return fd;
	}
	if (!path) {
		snprintf(err, errlen, "path: expected a string (or an attached fd)");
		return -EINVAL;
	}
	fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = -errno;

		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return e;
	}
	return fd;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

/* save: pause, write the state file (statefile_save: CPU, platform,
 * devices, sparse memory, fsync), then end the VM with WORKER_EXIT_SAVED
 * ("stop", the default) or let it run on. */
/* A device may refuse save and migrate (virtio-blk: a live export runs). */
static bool ctl_devices_may_save(struct control *c, char *why, size_t len)
{
	for (unsigned i = 0; i < nr_device_types; i++)
		if (device_types[i]->may_save && !device_types[i]->may_save(c->vm, why, len))
			return false;
	return true;
}

static json_t *ctl_save(struct control *c, json_t *req, struct ctl_req *rq, int *after)
{
	json_t *jstop = json_object_get(req, "stop"), *jsample = json_object_get(req, "sample_ms");
	bool stop = !jstop || json_is_true(jstop), was_paused;
	struct mem_order_sample sample = { 0 };
	struct statefile_save_opts opts = { 0 };
	unsigned sample_ms = MEM_ORDER_SAMPLE_MS_DEFAULT;
	struct timespec t0;
	char err[256];
	uint64_t bytes = 0;
	int fd, ret;

	if (jstop && !json_is_boolean(jstop))
		return ctl_error("stop: expected a boolean");
	if (jsample) {
		if (!json_is_integer(jsample) || json_integer_value(jsample) < 0 ||
		    json_integer_value(jsample) > MEM_ORDER_SAMPLE_MS_MAX)
			return ctl_error("sample_ms: expected 0 to %d", MEM_ORDER_SAMPLE_MS_MAX);
		sample_ms = (unsigned)json_integer_value(jsample);
	}
	if (!c->released)
		return ctl_error("save: the VM is still starting");
	if (!ctl_devices_may_save(c, err, sizeof(err)))
		return ctl_error("save: %s", err);
	if (c->shutdown_pending)
		return ctl_error("save: a shutdown is in progress");
	fd = ctl_req_file(rq, req, O_RDWR | O_CREAT, err, sizeof(err));
	if (fd < 0)
		return ctl_error("save: %s", err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	was_paused = vm_paused(c->vm);
	/* Which pages the guest writes now, for the restore's prefetch
	 * (docs/state-format.md): only a running guest writes. */
	if (!was_paused && sample_ms && !mem_order_sample(c->vm, sample_ms, &sample))
		opts.order_rank = sample.rank;
	vm_pause(c->vm);
	ret = statefile_save(c->vm, fd, &opts, &bytes, err, sizeof(err));
	free(sample.rank);
	close(fd);
	if (ret) {
		if (!was_paused)
			vm_resume(c->vm);
		log_err("control: save failed: %s", err);
		return ctl_error("save: %s", err);
	}
	log_info("control: state saved (%llu bytes written) in %llu ms (write sample: %llu pages "
		 "in %u ms)", (unsigned long long)bytes, (unsigned long long)ms_since(&t0),
		 (unsigned long long)sample.pages, sample.ms);
	if (stop)
		*after = WORKER_EXIT_SAVED;
	else if (!was_paused)
		vm_resume(c->vm);
	return json_pack("{s:b, s:I, s:I, s:I, s:i}", "ok", 1, "bytes", (json_int_t)bytes, "ms",
			 (json_int_t)ms_since(&t0), "order_pages", (json_int_t)sample.pages,
			 "sample_ms", (int)sample.ms);
}

static int ctl_send(int fd, json_t *rep);

/* The migration is over (on the I/O loop thread): answer the client that
 * asked; after a success the VM lives on at the destination. */
static void ctl_migrate_done(void *opaque, json_t *reply, bool ok)
{
	struct control *c = opaque;

	if (c->mig_client)
		ctl_send(c->mig_client->fd, reply);
	else
		json_decref(reply);
	c->mig_client = NULL;
	if (ok)
		vm_request_exit(c->vm, WORKER_EXIT_MIGRATED, "migrated to another host");
}

/* migrate: runs on its own thread; the reply comes from ctl_migrate_done
 * (NULL here means "later"). */
static json_t *ctl_migrate(struct control *c, json_t *req, struct ctl_req *rq)
{
	json_t *jfd = json_object_get(req, "fd");
	char err[256];
	int fd = -1, ret;

	if (!c->released)
		return ctl_error("migrate: the VM is still starting");
	if (c->shutdown_pending)
		return ctl_error("migrate: a shutdown is in progress");
	if (migrate_running(c->mig))
		return ctl_error("migrate: a migration is already in progress");
	if (!ctl_devices_may_save(c, err, sizeof(err)))
		return ctl_error("migrate: %s", err);
	if (jfd) {
		if (!json_is_integer(jfd) || json_integer_value(jfd) < 0 ||
		    (fd = ctl_take_fd(rq, (unsigned)json_integer_value(jfd))) < 0)
			return ctl_error("fd: no socket with that index attached to the request");
	}
	migrate_destroy(c->mig);
	c->mig = NULL;
	/* The pages go to the destination: filling them here is wasted. */
	guest_mem_prefetch_stop(&c->vm->mem);
	ret = migrate_start(&c->mig, c->vm, req, fd, ctl_migrate_done, c, err, sizeof(err));
	if (ret)
		return ctl_error("migrate: %s", err);
	c->mig_client = c->cur_client;
	return NULL;
}

/* The worker's own commands. A handler gets the request, its descriptors,
 * and may set *after (an exit code requested once the reply is written) or
 * *start. Device types add theirs (devtype.h: set-qos, disk-switch...). */
struct ctl_call {
	struct control *c;
	json_t *req;
	struct ctl_req *rq;
	int *after;
	bool *start;
};

#define CTL_STARTED      (1u << 0) /* refused before the start command */
#define CTL_NOT_MIGRATING (1u << 1) /* the migration owns the pause state */

struct ctl_command {
	const char *name;
	json_t *(*run)(struct ctl_call *call);
	unsigned flags;
};

static json_t *cmd_migrate(struct ctl_call *k)
{
	return ctl_migrate(k->c, k->req, k->rq);
}

static json_t *cmd_status(struct ctl_call *k)
{
	struct control *c = k->c;
	char why[256];
	json_t *rep, *pf;

	rep = json_pack("{s:b, s:s, s:s, s:i, s:I, s:i}", "ok", 1, "state", ctl_state(c),
			"name", c->name, "pid", (int)getpid(),
			"uptime_ms", (json_int_t)(c->started ? ctl_elapsed_ms(c) : 0),
			"vcpus", (int)c->vm->nr_vcpus);
	if (!rep)
		return NULL;
	vm_pause_reason(c->vm, why, sizeof(why));
	if (why[0])
		json_object_set_new(rep, "pause_reason", json_string(why));
	for (unsigned i = 0; i < nr_device_types; i++)
		if (device_types[i]->status)
			json_object_set_new(rep, device_types[i]->status_key,
					    device_types[i]->status(c->vm));
	if (c->mig)
		json_object_set_new(rep, "migration", migrate_progress(c->mig));
	if ((pf = guest_mem_prefetch_json(&c->vm->mem)))
		json_object_set_new(rep, "restore_prefetch", pf);
	return rep;
}

static json_t *cmd_start(struct ctl_call *k)
{
	struct control *c = k->c;
	uint64_t one = 1;

	if (c->started)
		return ctl_error("already started");
	*k->start = true;
	c->started = true;
	clock_gettime(CLOCK_MONOTONIC, &c->t_start);
	if (write(c->gate_fd, &one, sizeof(one)) != sizeof(one))
		vm_resume(c->vm);
	return ctl_ok(c);
}

static json_t *cmd_probe_open(struct ctl_call *k)
{
	return ctl_probe_open(k->c, k->req);
}

static json_t *cmd_probe_syscall(struct ctl_call *k)
{
	return ctl_probe_syscall(k->c, k->req);
}

static json_t *cmd_pause(struct ctl_call *k)
{
	if (!k->c->released)
		return ctl_error("pause: the VM is still starting");
	if (k->c->shutdown_pending)
		return ctl_error("pause: a shutdown is in progress");
	vm_pause(k->c->vm);
	return ctl_ok(k->c);
}

static json_t *cmd_resume(struct ctl_call *k)
{
	char why[256];

	/* A device may hold the VM paused (storage still failing). */
	for (unsigned i = 0; i < nr_device_types; i++)
		if (device_types[i]->before_resume &&
		    !device_types[i]->before_resume(k->c->vm, why, sizeof(why)))
			return ctl_error("resume: %s", why);
	vm_resume(k->c->vm);
	return ctl_ok(k->c);
}

static json_t *cmd_shutdown(struct ctl_call *k)
{
	return ctl_shutdown(k->c, k->req);
}

static json_t *cmd_shutdown_cancel(struct ctl_call *k)
{
	return ctl_shutdown_cancel(k->c);
}

static json_t *cmd_stop(struct ctl_call *k)
{
	*k->after = WORKER_EXIT_STOPPED;
	return ctl_ok(k->c);
}

static json_t *cmd_reset(struct ctl_call *k)
{
	*k->after = WORKER_EXIT_RESET;
	return ctl_ok(k->c);
}

static json_t *cmd_stats(struct ctl_call *k)
{
	return ctl_stats(k->c);
}

static json_t *cmd_save(struct ctl_call *k)
{
	return ctl_save(k->c, k->req, k->rq, k->after);
}

/* {"cmd": "lease-extend", "until_boottime_ns": N}: an HA VM's worker is
 * killed (SIGKILL, by the kernel) when CLOCK_BOOTTIME reaches N unless
 * extended again; 0 disarms. cellad sends it at every lease renewal. */
static json_t *cmd_lease_extend(struct ctl_call *k)
{
	json_t *v = json_object_get(k->req, "until_boottime_ns");
	int ret;

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return ctl_error("lease-extend: until_boottime_ns: expected an integer >= 0");
	if ((ret = ha_deadline_set(&k->c->ha, (uint64_t)json_integer_value(v))))
		return ctl_error("lease-extend: %s", strerror(-ret));
	return ctl_ok(k->c);
}

/* {"cmd": "disk-export-group", "exports": [disk-export requests, each with
 * its output as "fd" or "path"]}: every disk cut at one instant of the
 * guest (blk_group.c). The outputs are opened first: a bad one cuts none. */
static json_t *cmd_disk_export_group(struct ctl_call *k)
{
	json_t *list = json_object_get(k->req, "exports"), *x;
	int fds[VIRTIO_BLK_GROUP_MAX];
	unsigned n = 0;
	size_t i;

	if (!k->c->released || k->c->shutdown_pending)
		return ctl_error("disk-export-group: the VM is %s",
				 k->c->released ? "shutting down" : "still starting");
	if (!json_is_array(list) || !json_array_size(list) ||
	    json_array_size(list) > VIRTIO_BLK_GROUP_MAX)
		return ctl_error("exports: expected 1 to %d disk-export requests",
				 VIRTIO_BLK_GROUP_MAX);
	json_array_foreach(list, i, x) {
		char err[256];
		int fd = json_is_object(x) ? ctl_req_file(k->rq, x, O_RDWR, err, sizeof(err)) : -EINVAL;

		if (fd < 0) {
			while (n)
				close(fds[--n]);
			return ctl_error("exports[%zu]: %s", i, json_is_object(x) ? err
					 : "expected a disk-export request");
		}
		fds[n++] = fd;
	}
	return virtio_blk_export_group(k->c->vm, list, fds, n);
}

static const struct ctl_command ctl_commands[] = {
	{ "migrate", cmd_migrate, 0 },
	{ "status", cmd_status, 0 },
	{ "lease-extend", cmd_lease_extend, 0 },
	{ "start", cmd_start, 0 },
	{ "probe-open", cmd_probe_open, 0 },
	{ "probe-syscall", cmd_probe_syscall, 0 },
	{ "pause", cmd_pause, CTL_STARTED | CTL_NOT_MIGRATING },
	{ "disk-export-group", cmd_disk_export_group, CTL_STARTED | CTL_NOT_MIGRATING },
	{ "resume", cmd_resume, CTL_STARTED | CTL_NOT_MIGRATING },
	{ "shutdown", cmd_shutdown, CTL_STARTED | CTL_NOT_MIGRATING },
	{ "shutdown-cancel", cmd_shutdown_cancel, CTL_STARTED },
	{ "stop", cmd_stop, CTL_STARTED },
	{ "reset", cmd_reset, CTL_STARTED | CTL_NOT_MIGRATING },
	{ "stats", cmd_stats, CTL_STARTED },
	{ "save", cmd_save, CTL_STARTED | CTL_NOT_MIGRATING },
};

static const struct devtype_command *ctl_device_command(const char *cmd)
{
	for (unsigned i = 0; i < nr_device_types; i++)
		for (const struct devtype_command *dc = device_types[i]->commands; dc && dc->name;
		     dc++)
			if (!strcmp(dc->name, cmd))
				return dc;
	return NULL;
}

static json_t *ctl_run_device_command(struct control *c, const struct devtype_command *dc,
				      json_t *req, struct ctl_req *rq)
{
	char err[256];
	int fd = -1;

	if ((dc->flags & DEVTYPE_CMD_NOT_MIGRATING) && migrate_running(c->mig))
		return ctl_error("%s: a migration is in progress", dc->name);
	if (dc->flags & DEVTYPE_CMD_FILE) {
		fd = ctl_req_file(rq, req, O_RDWR, err, sizeof(err));
		if (fd < 0)
			return ctl_error("%s: %s", dc->name, err);
	}
	return dc->run(c->vm, req, fd);
}

/* Handle one request line. *after is set to an exit code to request once
 * the reply is written (stop, reset), else left alone. */
static json_t *ctl_handle(struct control *c, const char *line, int *after, bool *start,
			  struct ctl_req *rq)
{
	json_error_t jerr;
	json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, &jerr), *rep;
	struct ctl_call call = { c, req, rq, after, start };
	const struct ctl_command *cc = NULL;
	const struct devtype_command *dc = NULL;
	const char *cmd;

	if (!req || !json_is_object(req)) {
		json_decref(req);
		return ctl_error("request: expected a JSON object (%s)", req ? "not an object" : jerr.text);
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	for (size_t i = 0; cmd && i < ARRAY_SIZE(ctl_commands) && !cc; i++)
		if (!strcmp(ctl_commands[i].name, cmd))
			cc = &ctl_commands[i];
	if (cmd && !cc)
		dc = ctl_device_command(cmd);
	if (!cmd)
		rep = ctl_error("cmd: expected a string");
	else if (cc && (cc->flags & CTL_NOT_MIGRATING) && migrate_running(c->mig))
		rep = ctl_error("%s: a migration is in progress", cmd);
	else if ((!cc || (cc->flags & CTL_STARTED)) && !c->started)
		rep = ctl_error("%s: the VM has not been started", cmd);
	else if (cc)
		rep = cc->run(&call);
	else if (dc)
		rep = ctl_run_device_command(c, dc, req, rq);
	else
		rep = ctl_error("cmd: unknown command '%.64s'", cmd);
	json_decref(req);
	return rep;
}

static void ctl_client_drop_fds(struct ctl_client *cl);

static void ctl_client_free(struct control *c, struct ctl_client *cl)
{
	struct ctl_client **pp;

	for (pp = &c->clients; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
	if (cl->watched)
		evloop_del(c->vm->loop, cl->fd);
	ctl_client_drop_fds(cl);
	if (c->mig_client == cl)
		c->mig_client = NULL;
	close(cl->fd);
	c->nr_clients--;
	free(cl);
}

static int ctl_send(int fd, json_t *rep)
{
	char *s = json_dumps(rep, JSON_COMPACT);
	size_t len, off = 0;
	int ret = 0;

	json_decref(rep);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	s[len++] = '\n'; /* json_dumps leaves room: overwrite the NUL below */
	while (off < len) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (poll(&p, 1, 1000) <= 0) {
				ret = -ETIMEDOUT;
				break;
			}
		} else if (n < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
	}
	free(s);
	return ret;
}

static void ctl_close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void ctl_client_drop_fds(struct ctl_client *cl)
{
	for (unsigned i = 0; i < cl->nr_pending; i++)
		ctl_close_fds(cl->pending[i].fds, cl->pending[i].n);
	cl->nr_pending = 0;
}

/* recvmsg: the bytes, and any SCM_RIGHTS descriptors sent with them. */
static ssize_t ctl_recv(struct ctl_client *cl)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
	} ctrl;
	struct iovec iov = { cl->buf + cl->len, sizeof(cl->buf) - 1 - cl->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
			     .msg_controllen = sizeof(ctrl.buf) };
	ssize_t n = recvmsg(cl->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return n;
	if (mh.msg_flags & MSG_CTRUNC)
		cl->fd_overflow = true; /* the kernel closed what did not fit */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		struct ctl_fd_batch *b;
		unsigned nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (nfd > CTL_MAX_FDS)
			nfd = CTL_MAX_FDS; /* cannot be: the buffer holds no more */
		if (cl->nr_pending == ARRAY_SIZE(cl->pending)) {
			int tmp[CTL_MAX_FDS];

			memcpy(tmp, CMSG_DATA(cm), nfd * sizeof(int));
			ctl_close_fds(tmp, nfd);
			cl->fd_overflow = true;
			continue;
		}
		b = &cl->pending[cl->nr_pending++];
		b->at = cl->len;
		b->n = nfd;
		memcpy(b->fds, CMSG_DATA(cm), nfd * sizeof(int));
	}
	return n;
}

/* The descriptors of the line ending at buffer offset `end` go to rq; the
 * other batches move with the buffer, which loses `end + 1` bytes. */
static bool ctl_claim_fds(struct ctl_client *cl, size_t end, struct ctl_req *rq)
{
	unsigned keep = 0;
	bool ok = !cl->fd_overflow;

	rq->nr_fds = 0;
	for (unsigned i = 0; i < cl->nr_pending; i++) {
		struct ctl_fd_batch *b = &cl->pending[i];

		if (b->at > end) {
			b->at -= end + 1;
			cl->pending[keep++] = *b;
			continue;
		}
		for (unsigned j = 0; j < b->n; j++) {
			if (rq->nr_fds < CTL_MAX_FDS) {
				rq->fds[rq->nr_fds++] = b->fds[j];
			} else {
				close(b->fds[j]);
				ok = false;
			}
		}
	}
	cl->nr_pending = keep;
	cl->fd_overflow = false;
	return ok;
}

/* Read what the client sent and answer complete lines. Returns false when
 * the client is gone (or misbehaved) and must be freed; *start is set when
 * it sent "start". */
static bool ctl_client_serve(struct ctl_client *cl, bool *start)
{
	struct control *c = cl->c;
	ssize_t n = ctl_recv(cl);
	char *nl;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return false;
	if (n < 0)
		return true;
	cl->len += (size_t)n;
	cl->buf[cl->len] = 0;
	while ((nl = memchr(cl->buf, '\n', cl->len))) {
		int after = WORKER_EXIT_NONE;
		struct ctl_req rq;
		json_t *rep;

		*nl = 0;
		c->cur_client = cl;
		if (ctl_claim_fds(cl, (size_t)(nl - cl->buf), &rq))
			rep = ctl_handle(c, cl->buf, &after, start, &rq);
		else
			rep = ctl_error("request: more than %d file descriptors attached",
					CTL_MAX_FDS);
		/* Descriptors the command did not take are closed. */
		ctl_close_fds(rq.fds, rq.nr_fds);
		cl->len -= (size_t)(nl + 1 - cl->buf);
		memmove(cl->buf, nl + 1, cl->len);
		cl->buf[cl->len] = 0;
		if (rep && ctl_send(cl->fd, rep)) /* NULL: answered later (migrate) */
			return false;
		if (after == WORKER_EXIT_STOPPED)
			vm_request_exit(c->vm, WORKER_EXIT_STOPPED, "turned off by the host");
		else if (after == WORKER_EXIT_RESET)
			vm_request_exit(c->vm, WORKER_EXIT_RESET, "reset by the host");
		else if (after == WORKER_EXIT_SAVED)
			vm_request_exit(c->vm, WORKER_EXIT_SAVED, "state saved; the VM ends here");
	}
	if (cl->len >= sizeof(cl->buf) - 1) {
		ctl_send(cl->fd, ctl_error("request: line longer than %d bytes", CTL_LINE_MAX - 1));
		return false;
	}
	return true;
}

static void ctl_client_ready(void *opaque, uint32_t events)
{
	struct ctl_client *cl = opaque;
	bool start = false;

	(void)events;
	if (!ctl_client_serve(cl, &start))
		ctl_client_free(cl->c, cl);
}

static struct ctl_client *ctl_accept(struct control *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct ctl_client *cl;

	if (fd < 0)
		return NULL;
	if (c->nr_clients >= CTL_MAX_CLIENTS || !(cl = calloc(1, sizeof(*cl)))) {
		close(fd);
		return NULL;
	}
	cl->c = c;
	cl->fd = fd;
	cl->next = c->clients;
	c->clients = cl;
	c->nr_clients++;
	return cl;
}

static void ctl_listen_ready(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	struct ctl_client *cl = ctl_accept(c);

	(void)events;
	if (!cl)
		return;
	if (evloop_add(c->vm->loop, cl->fd, EPOLLIN, ctl_client_ready, cl) == 0)
		cl->watched = true;
	else
		ctl_client_free(c, cl);
}

static void ctl_timer_ready(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	uint64_t v;

	(void)events;
	if (read(c->timer_fd, &v, sizeof(v)) != (ssize_t)sizeof(v) || !c->shutdown_pending)
		return;
	vm_request_exit(c->vm, WORKER_EXIT_STOPPED,
			"shutdown: the guest did not power off within %u ms; turned off",
			c->shutdown_timeout_ms);
}

/* The start gate. The vCPUs were paused before they existed; "start"
 * releases them two I/O-loop batches later. Why two: cellad connects to the
 * console socket before it sends "start", so that connection is pending on
 * the UART's listening socket when "start" is read (batch N). Every later
 * epoll_wait reports that socket, so the UART has accepted its client by the
 * end of batch N+1, and the guest's first byte cannot be lost. */
static void ctl_gate_ready(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	uint64_t v, one = 1;

	(void)events;
	if (read(c->gate_fd, &v, sizeof(v)) != sizeof(v))
		return;
	if (++c->gate_step == 1 && write(c->gate_fd, &one, sizeof(one)) == sizeof(one))
		return;
	evloop_del(c->vm->loop, c->gate_fd);
	evloop_del(c->vm->loop, c->gate_timer_fd);
	c->released = true;
	vm_resume(c->vm);
}

static void ctl_gate_timeout(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	uint64_t v;

	(void)events;
	if (read(c->gate_timer_fd, &v, sizeof(v)) == sizeof(v) && !c->started)
		vm_request_exit(c->vm, WORKER_EXIT_ERROR, "no start request within %d s",
				CTL_START_TIMEOUT_S);
}

int control_attach(struct control *c, bool gated)
{
	struct itimerspec its = { .it_value = { CTL_START_TIMEOUT_S, 0 } };
	int ret;

	c->started = c->released = !gated;
	ret = evloop_add(c->vm->loop, c->listen_fd, EPOLLIN, ctl_listen_ready, c);
	if (ret)
		return ret;
	c->listen_watched = true;
	ret = evloop_add(c->vm->loop, c->timer_fd, EPOLLIN, ctl_timer_ready, c);
	if (ret || !gated)
		return ret;
	vm_pause(c->vm); /* no vCPU thread yet: they park before their first KVM_RUN */
	if ((ret = evloop_add(c->vm->loop, c->gate_fd, EPOLLIN, ctl_gate_ready, c)) ||
	    (ret = evloop_add(c->vm->loop, c->gate_timer_fd, EPOLLIN, ctl_gate_timeout, c)))
		return ret;
	if (timerfd_settime(c->gate_timer_fd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

void control_record_exit(struct control *c, int code, const char *reason)
{
	json_t *rec;
	char *s;

	if (!c || c->exit_fd < 0)
		return;
	rec = json_pack("{s:i, s:s, s:s}", "status", code, "kind", worker_exit_kind(code), "reason",
			reason ? reason : "");
	s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	if (s) {
		size_t len = strlen(s);

		if (pwrite(c->exit_fd, s, len, 0) != (ssize_t)len || fdatasync(c->exit_fd) < 0)
			log_warn("control: cannot write the exit record: %s", strerror(errno));
	}
	free(s);
	json_decref(rec);
}

void control_destroy(struct control *c)
{
	if (!c)
		return;
	migrate_destroy(c->mig); /* a running one is cancelled and joined */
	c->mig = NULL;
	while (c->clients)
		ctl_client_free(c, c->clients);
	if (c->listen_watched)
		evloop_del(c->vm->loop, c->listen_fd);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->timer_fd >= 0) {
		if (c->listen_watched)
			evloop_del(c->vm->loop, c->timer_fd);
		close(c->timer_fd);
	}
	if (c->exit_fd >= 0)
		close(c->exit_fd);
	if (c->gate_fd >= 0)
		close(c->gate_fd);
	if (c->gate_timer_fd >= 0)
		close(c->gate_timer_fd);
	if (c->status_fd >= 0)
		close(c->status_fd);
	free(c);
}
