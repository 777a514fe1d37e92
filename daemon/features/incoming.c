/* incoming.c: the destination's side of a move (move.c is the source's).
 *
 * prepare: the VM is defined here in state "incoming" (same definition; its
 * disks on shared storage by the same paths, or with include_storage new
 * images of the same virtual size and format in state_dir/vms/<uuid>/).
 * Live: cellad listens on an ephemeral TCP port of the address the source
 * reached it at, and spawns the worker with --incoming fd:4 and the TLS
 * files; the console is attached before the answer, so that the guest's
 * first output here is kept. A watcher thread asks the worker for its
 * status, which it answers once the VM runs: the VM is then "running".
 * Quick: no worker; the state file (and disk images) arrive as uploads,
 * and commit restores the VM from them.
 * commit: the source says the move is done (live: wait until it runs).
 * abort, or the worker ending first: everything made here goes.
 *
 * From prepare until the VM runs here (or goes), a "move-in" job records
 * the images made here: a cellad that died in between is followed by one
 * that keeps a VM that arrived and removes the rest (move_in_recover). */
#include "sup_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "move_pool.h"
#include "wctl.h"

#define COMMIT_WAIT_MS 30000
#define STATE_SLACK    (64ULL << 20) /* state file: guest memory + this at most */

struct sup_incoming {
	bool quick, storage, have_state;
	uint64_t disk_size[VMDEF_MAX_DISKS];
	bool disk_uploaded[VMDEF_MAX_DISKS];
	char *created[VMDEF_MAX_DISKS]; /* images made here (deleted on failure) */
	char pool_from[64];              /* a move inside the pool: the source host, else "" */
	uint64_t owner_retry_ns;         /* pool: when to try taking the ownership again */
	struct job job;                  /* "move-in", open until the VM runs or goes */
};

static void incoming_free(struct sup_incoming *in)
{
	if (!in)
		return;
	for (unsigned i = 0; i < VMDEF_MAX_DISKS; i++)
		free(in->created[i]);
	free(in);
}

/* The move-in is over, one way or the other (lock held). */
static void incoming_done(struct sup *s, struct vmrt *vm)
{
	if (vm->incoming)
		job_close(s, &vm->incoming->job);
	incoming_free(vm->incoming);
	vm->incoming = NULL;
}

static void vm_file(struct sup *s, const struct vmrt *vm, const char *leaf, char *out, size_t len)
{
	snprintf(out, len, "%s/vms/%s/%s", s->conf.state_dir, vm->def.uuid, leaf);
}

/* Delete what a failed move left here (lock held). */
static void discard_files(struct sup *s, struct vmrt *vm)
{
	struct sup_incoming *in = vm->incoming;
	char path[600];

	vm_file(s, vm, "incoming.state.part", path, sizeof(path));
	unlink(path);
	for (unsigned i = 0; in && i < VMDEF_MAX_DISKS; i++) {
		if (!in->created[i])
			continue;
		snprintf(path, sizeof(path), "%s.part", in->created[i]);
		unlink(path);
		unlink(in->created[i]);
	}
	snprintf(path, sizeof(path), "%s/vms/%s", s->conf.state_dir, vm->def.uuid);
	rmdir(path); /* only if empty: never someone else's files */
}

static void drop(struct sup *s, struct vmrt *vm, const char *why)
{
	if (vm->deleted)
		return;
	discard_files(s, vm);
	if (vm->incoming)
		job_close(s, &vm->incoming->job);
	if (vm->incoming && vm->incoming->pool_from[0]) {
		/* The pool's records are the source's: only this host's go. */
		move_pool_in_drop(s, vm, why);
		return;
	}
	if (sup_remove(s, vm, "deleted", why))
		log_err("vm %s: cannot delete the half-moved VM", vm->def.name);
}

static void incoming_failed(struct sup *s, struct vmrt *vm, const char *detail)
{
	lifecycle_fire(s, vm, EV_INCOMING_FAILED, detail);
	/* An API call in flight (prepare, commit, abort) drops it itself. */
	if (!vm->busy)
		drop(s, vm, "the move did not complete");
}

/* Request -------------------------------------------------------------------- */

static bool uuid_like(const char *u)
{
	if (!u || strlen(u) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if (!(i == 8 || i == 13 || i == 18 || i == 23 ? u[i] == '-'
							       : !!strchr("0123456789abcdefABCDEF", u[i])))
			return false;
	return true;
}

/* include_storage: the disks get new images here, of the source's virtual
 * size and format; the definition's paths are rewritten to them. */
static int make_images(struct sup *s, json_t *def, json_t *sizes, struct sup_incoming *in,
		       struct cerr *e)
{
	const char *uuid = json_string_value(json_object_get(def, "uuid"));
	json_t *disks = json_object_get(def, "disks"), *d;
	char dir[512], path[600], err[256];
	size_t i;

	if (!uuid_like(uuid))
		return cerr_set(e, CERR_INVALID, "vm.uuid", "expected a UUID");
	if (!json_is_object(sizes))
		return cerr_set(e, CERR_INVALID, "disk_sizes", "required with include_storage: "
				"{disk id: virtual size in bytes}");
	snprintf(dir, sizeof(dir), "%s/vms", s->conf.state_dir);
	mkdir(dir, 0750);
	snprintf(dir, sizeof(dir), "%s/vms/%s", s->conf.state_dir, uuid);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", dir, strerror(errno));
	json_array_foreach(disks, i, d) {
		const char *id = json_string_value(json_object_get(d, "id"));
		const char *fmt = json_string_value(json_object_get(d, "format")) ?: "raw";
		json_t *size = json_object_get(sizes, id ? id : "");
		struct disk_create_opts o = { .fmt = strcmp(fmt, "qcow2") ? DISK_FMT_RAW
									   : DISK_FMT_QCOW2 };

		if (i >= VMDEF_MAX_DISKS || !id || !vmdef_name_valid(id))
			return cerr_set(e, CERR_INVALID, "vm.disks", "every disk needs a valid id");
		if (!json_is_integer(size) || json_integer_value(size) <= 0 ||
		    json_integer_value(size) > (json_int_t)1 << 50)
			return cerr_set(e, CERR_INVALID, "disk_sizes", "%s: expected its virtual size", id);
		o.size = (uint64_t)json_integer_value(size);
		snprintf(path, sizeof(path), "%s/%s.%s", dir, id, o.fmt == DISK_FMT_RAW ? "raw"
										       : "qcow2");
		if (access(path, F_OK) == 0)
			return cerr_set(e, CERR_EXISTS, "vm.disks", "%s exists already", path);
		if (disk_create(path, &o, err, sizeof(err)))
			return cerr_set(e, CERR_INTERNAL, "vm.disks", "%s: %s", path, err);
		in->created[i] = strdup(path);
		in->disk_size[i] = o.size;
		json_object_set_new(d, "path", json_string(path));
	}
	return 0;
}

static int parse_prepare(struct sup *s, json_t *body, json_t **def, struct sup_incoming *in,
			 struct cerr *e)
{
	json_t *sizes = NULL, *v;
	const char *key;

	json_object_foreach(body, key, v) {
		if (!strcmp(key, "vm")) {
			if (!json_is_object(v))
				return cerr_set(e, CERR_INVALID, key, "expected the VM's definition");
			*def = json_deep_copy(v);
		} else if (!strcmp(key, "mode")) {
			if (!json_is_string(v) || (strcmp(json_string_value(v), "live") &&
						   strcmp(json_string_value(v), "quick")))
				return cerr_set(e, CERR_INVALID, key, "expected \"live\" or \"quick\"");
			in->quick = !strcmp(json_string_value(v), "quick");
		} else if (!strcmp(key, "include_storage")) {
			if (!json_is_boolean(v))
				return cerr_set(e, CERR_INVALID, key, "expected true or false");
			in->storage = json_is_true(v);
		} else if (!strcmp(key, "disk_sizes")) {
			sizes = v;
		} else if (!strcmp(key, "pool_from")) {
			if (!json_is_string(v) || !vmdef_name_valid(json_string_value(v)))
				return cerr_set(e, CERR_INVALID, key, "expected the source's host name");
			snprintf(in->pool_from, sizeof(in->pool_from), "%s", json_string_value(v));
		} else {
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		}
	}
	if (!*def)
		return cerr_set(e, CERR_INVALID, "vm", "required");
	if (move_pool_refuse_maint(s, "take VMs moved here", e))
		return -1;
	if (in->pool_from[0] && move_pool_in_check(s, json_string_value(json_object_get(*def, "uuid")),
						   in->pool_from, e))
		return -1;
	if (!in->quick && (!s->conf.tls_cert || !s->conf.tls_key || !s->conf.tls_ca))
		return cerr_set(e, CERR_CONFLICT, "tls", "this host has no migration TLS material (cellad "
				"--tls-cert, --tls-key, --tls-ca): it takes quick moves only");
	if (in->storage)
		return make_images(s, *def, sizes, in, e);
	return 0;
}

/* Live ------------------------------------------------------------------------ */

/* A listening socket on this host's address the source reached us at
 * (any address when the request came over the Unix socket). */
static int listen_incoming(const char *local, char *addr, size_t addrlen, int *port,
			   struct cerr *e)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd, hi;

	if (local[0] && inet_pton(AF_INET, local, &sin.sin_addr) != 1)
		return cerr_set(e, CERR_INTERNAL, "", "bad local address %s", local);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		cerr_set(e, CERR_INTERNAL, "", "cannot listen for the migration stream: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Above the worker's fixed descriptors (3, 4), so that the child's
	 * dup2 of one cannot clobber the other. */
	hi = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	close(fd);
	if (hi < 0)
		return cerr_set(e, CERR_INTERNAL, "", "fcntl: %s", strerror(errno));
	snprintf(addr, addrlen, "%s", local[0] ? local : "127.0.0.1");
	*port = ntohs(sin.sin_port);
	return hi;
}

struct watcher {
	struct sup *s;
	struct vmrt *vm;
	unsigned gen;
	int pidfd;
	char ctl[512];
};

/* A VM moved inside the pool runs here (lock held): the switch-over is
 * over, so this host takes its ownership at once rather than wait for the
 * source's commit (a source that died just after the switch-over would
 * leave it unowned here): an HA worker gets its deadline, the owner key
 * passes by compare-and-swap (move_pool_in_commit; a key that names
 * neither host ends the copy here). If etcd cannot be reached now, the
 * source's commit (or its recovery) tries again. */
static void arrived_in_pool(struct sup *s, struct vmrt *vm)
{
	char from[sizeof(vm->incoming->pool_from)];
	bool storage = vm->incoming->storage;
	struct cerr e = { 0 };

	snprintf(from, sizeof(from), "%s", vm->incoming->pool_from);
	if (move_pool_in_commit(s, vm, from, storage, &e)) {
		log_warn("vm %s: moved in, but its ownership did not pass yet: %s", vm->def.name,
			 e.reason);
		return;
	}
	if (vm->incoming) /* the source's commit may have ended it meanwhile */
		incoming_done(s, vm);
}

/* The worker answers its control socket once the VM runs here. */
static void *watch_thread(void *opaque)
{
	struct watcher *w = opaque;
	struct sup *s = w->s;
	struct vmrt *vm = w->vm;
	json_t *req = json_pack("{s:s}", "cmd", "status"), *reply = NULL;
	int fd = wctl_connect(w->ctl), ret = fd < 0 ? fd : 0;

	if (!ret)
		ret = wctl_call(fd, req, (int)s->conf.move_timeout_s * 1000, w->pidfd, &reply);
	if (!ret && !json_is_true(json_object_get(reply, "ok")))
		ret = -EPROTO;
	json_decref(req);
	json_decref(reply);
	if (fd >= 0)
		close(fd);
	close(w->pidfd);
	pthread_mutex_lock(&vm->lock);
	if (vm->gen == w->gen && vm->state == VS_INCOMING && !ret) {
		clock_gettime(CLOCK_MONOTONIC, &vm->started_mono);
		vm->started_at = sup_now_wall();
		if (!vm->incoming->pool_from[0]) {
			incoming_done(s, vm);
			lifecycle_fire(s, vm, EV_STARTED, "moved in");
		} else {
			lifecycle_fire(s, vm, EV_STARTED, "moved in");
			arrived_in_pool(s, vm);
		}
	} else if (vm->gen == w->gen && vm->state == VS_INCOMING && vm->pid) {
		log_warn("vm %s: the incoming worker did not start the VM (%s); ending it",
			 vm->def.name, strerror(-ret));
		kill(vm->pid, SIGKILL); /* the monitor settles it: the move failed */
	}
	sup_vm_unlock(s, vm);
	free(w);
	return NULL;
}

static int start_watcher(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	struct watcher *w = calloc(1, sizeof(*w));
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	if (!w)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	*w = (struct watcher){ .s = s, .vm = vm, .gen = vm->gen, .pidfd = dup(vm->pidfd) };
	sup_paths(s, vm, ".ctl", w->ctl, sizeof(w->ctl));
	sup_vm_ref(s, vm);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = w->pidfd < 0 ? -1 : pthread_create(&t, &attr, watch_thread, w);
	pthread_attr_destroy(&attr);
	if (ret) {
		sup_vm_unref(s, vm);
		if (w->pidfd >= 0)
			close(w->pidfd);
		free(w);
		return cerr_set(e, CERR_INTERNAL, "", "cannot start the incoming watcher");
	}
	return 0;
}

/* The console socket appears while the worker sets the VM up; attach
 * before the VM can run (lock held, dropped while waiting). */
static int attach_console(struct sup *s, struct vmrt *vm, unsigned gen, struct cerr *e)
{
	uint64_t deadline = sup_mono_ns() + (uint64_t)s->conf.start_timeout_s * 1000000000ULL;

	for (;;) {
		int pidfd, ret = sup_console_attach(s, vm);

		if (!ret)
			return 0;
		if (ret != -ENOENT && ret != -ECONNREFUSED)
			return cerr_set(e, CERR_INTERNAL, "", "console: %s", strerror(-ret));
		if (sup_mono_ns() > deadline)
			return cerr_set(e, CERR_INTERNAL, "", "the incoming worker did not set up in %u s",
					s->conf.start_timeout_s);
		pidfd = dup(vm->pidfd);
		pthread_mutex_unlock(&vm->lock);
		/* Wakes early if the worker dies. */
		poll(&(struct pollfd){ .fd = pidfd, .events = POLLIN }, 1, 5);
		close(pidfd);
		pthread_mutex_lock(&vm->lock);
		if (vm->gen != gen || vm->state != VS_INCOMING || !vm->pid)
			return cerr_set(e, CERR_INTERNAL, "", "the incoming worker ended: %s", vm->exit_reason);
	}
}

static int prepare_live(struct sup *s, struct vmrt *vm, const char *local, json_t *out,
			struct cerr *e)
{
	char addr[64];
	int port = 0, fd = listen_incoming(local, addr, sizeof(addr), &port, e);

	if (fd < 0)
		return -1;
	vm->gen++;
	vm->incoming_fd = fd;
	vm->stop_requested = vm->reset_requested = vm->restore = false;
	if (sup_spawn(s, vm, e)) {
		close(fd);
		vm->incoming_fd = -1;
		return -1;
	}
	close(fd); /* the worker has it */
	vm->incoming_fd = -1;
	sup_persist(s, vm);
	if (attach_console(s, vm, vm->gen, e) || start_watcher(s, vm, e))
		return -1;
	json_object_set_new(out, "address", json_string(addr));
	json_object_set_new(out, "port", json_integer(port));
	return 0;
}

int sup_incoming_prepare(struct sup *s, json_t *body, const char *local_addr, json_t **out,
			 struct cerr *e)
{
	struct sup_incoming *in = calloc(1, sizeof(*in));
	json_t *def = NULL, *o;
	struct vmrt *vm = NULL;
	int ret = -1;

	if (!in)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	if (parse_prepare(s, body, &def, in, e))
		goto fail;
	/* Admission: the host must have room for it before anything is made
	 * (vmdef_from_json checks the field itself). */
	{
		json_t *m = json_object_get(def, "memory_mib");
		json_t *max = json_object_get(def, "memory_max_mib");
		json_int_t need = json_integer_value(m);

		/* As at a start: its hot-plug ceiling where it has one. */
		if (json_is_integer(max) && json_integer_value(max) > need)
			need = json_integer_value(max);
		if (json_is_integer(m) && need > 0 && admission_check(s, (uint64_t)need, e))
			goto fail;
	}
	/* A peer (admin) moves it in: its paths were the source's to check. */
	vm = (in->pool_from[0] ? sup_register_shared : sup_register)(
		s, def, EV_MOVE_IN, in->quick ? "quick" : "live", ROLE_ADMIN, e);
	if (!vm) {
		if (!in->storage && !strncmp(e->field, "disks", 5))
			snprintf(e->reason + strlen(e->reason), sizeof(e->reason) - strlen(e->reason),
				 " (the disks must be on storage both hosts share, by the same "
				 "path; or move with include_storage)");
		goto fail;
	}
	vm->incoming = in;
	in = NULL;
	{
		json_t *made = json_array();

		for (unsigned i = 0; i < VMDEF_MAX_DISKS; i++)
			if (vm->incoming->created[i])
				json_array_append_new(made, json_string(vm->incoming->created[i]));
		json_t *data = json_pack("{s:o}", "created", made);

		ret = job_open(s, vm, "move-in", data, &vm->incoming->job, e);
		json_decref(data);
	}
	if (ret) {
		drop(s, vm, "the move could not be recorded");
		goto out;
	}
	vm->busy = true;
	o = json_pack("{s:s, s:s, s:s}", "name", vm->def.name, "uuid", vm->def.uuid, "state",
		      "incoming");
	ret = vm->incoming->quick ? 0 : prepare_live(s, vm, local_addr, o, e);
	vm->busy = false;
	sup_vm_changed(vm);
	if (ret) {
		json_decref(o);
		if (vm->pid)
			kill(vm->pid, SIGKILL); /* the monitor settles and drops it */
		else
			drop(s, vm, "the move could not be prepared");
		goto out;
	}
	*out = o;
	goto out;
fail:
	for (unsigned i = 0; in && i < VMDEF_MAX_DISKS; i++)
		if (in->created[i])
			unlink(in->created[i]);
	incoming_free(in);
out:
	if (vm)
		sup_vm_unlock(s, vm);
	json_decref(def);
	return ret;
}

/* Commit and abort ------------------------------------------------------------ */

static struct vmrt *lookup_incoming(struct sup *s, const char *name, struct cerr *e)
{
	struct vmrt *vm = sup_lookup_idle(s, name, e);

	if (vm && !vm->incoming && vm->state != VS_RUNNING) {
		cerr_set(e, CERR_STATE, "state", "'%s' is not a VM moving in", name);
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		sup_vm_unlock(s, vm);
		return NULL;
	}
	return vm; /* pinned and locked */
}

static bool arrived(struct vmrt *vm, unsigned gen)
{
	(void)gen;
	return vm->state != VS_INCOMING || vm->deleted;
}

/* Quick: the uploaded state becomes the saved state; start restores it. */
static int commit_quick(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	struct sup_incoming *in = vm->incoming;

	if (!in->have_state)
		return cerr_set(e, CERR_STATE, "state", "the saved state has not been uploaded");
	for (unsigned i = 0; in->storage && i < vm->def.nr_disks; i++)
		if (!in->disk_uploaded[i])
			return cerr_set(e, CERR_CONFLICT, "disks", "disk %s has not been uploaded",
					vm->def.disks[i].id);
	vm->restore = true;
	vm->stop_requested = vm->reset_requested = false;
	vm->start_ns = sup_mono_ns();
	vm->first_out_ns = 0;
	lifecycle_fire(s, vm, EV_INCOMING_QUICK, "moved in (quick)");
	pthread_mutex_unlock(&vm->lock);
	if (sup_launch(s, vm, e)) {
		pthread_mutex_lock(&vm->lock);
		return -1;
	}
	pthread_mutex_lock(&vm->lock);
	return 0;
}

int sup_incoming_commit(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct vmrt *vm;
	int ret = 0;

	vm = lookup_incoming(s, name, e);
	if (!vm)
		return -1;
	vm->busy = true;
	vm->acts++;
	if (vm->incoming && vm->incoming->quick && vm->state == VS_INCOMING)
		ret = commit_quick(s, vm, e);
	else
		sup_wait_until(s, vm, arrived, 0, COMMIT_WAIT_MS);
	if (!ret && vm->state != VS_RUNNING)
		ret = cerr_set(e, CERR_INTERNAL, "", "the VM is not running here (%s): %s",
			       vm_state_name(vm->state), vm->exit_reason);
	/* Inside a pool the VM becomes this host's now: its owner key passes
	 * from the source (compare-and-swap). */
	if (!ret && vm->incoming && vm->incoming->pool_from[0])
		ret = move_pool_in_commit(s, vm, vm->incoming->pool_from, vm->incoming->storage, e);
	if (!ret) {
		incoming_done(s, vm);
		*out = sup_vm_json(s, vm);
	}
	vm->acts++;
	vm->busy = false;
	sup_vm_changed(vm);
	if (ret && vm->state == VS_STOPPED && vm->incoming && !vm->pid)
		drop(s, vm, "the move did not complete"); /* the worker ended while we waited */
	sup_vm_unlock(s, vm);
	return ret;
}

int sup_incoming_abort(struct sup *s, const char *name, struct cerr *e)
{
	struct vmrt *vm;
	unsigned gen;

	vm = lookup_incoming(s, name, e);
	if (vm && (!vm->incoming || (vm->incoming->pool_from[0] && vm->state == VS_RUNNING))) {
		/* Committed, or it runs here (a pool move not committed yet):
		 * the source's worker has ended; never drop it. */
		cerr_set(e, CERR_STATE, "state", "'%s' has moved in and runs here", name);
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		sup_vm_unlock(s, vm);
		vm = NULL;
	}
	if (!vm)
		return -1;
	vm->busy = true;
	gen = vm->gen;
	if (vm->pid) {
		kill(vm->pid, SIGKILL);
		if (!sup_wait_until(s, vm, sup_worker_gone, gen, 10000))
			log_warn("vm %s: the incoming worker did not go", name);
	}
	vm->busy = false;
	sup_vm_changed(vm);
	if (vm->state == VS_RUNNING) {
		/* It ran before the kill: the source had finished after all. */
		sup_vm_unlock(s, vm);
		return cerr_set(e, CERR_STATE, "state", "'%s' started here before the abort", name);
	}
	drop(s, vm, "move aborted");
	sup_vm_unlock(s, vm);
	return 0;
}

/* Uploads (quick) ----------------------------------------------------------- */

int sup_incoming_upload_open(struct sup *s, const char *name, const char *disk, int *fd,
			     uint64_t *max, struct cerr *e)
{
	char path[600];
	struct vmrt *vm;
	int idx = -1;

	vm = lookup_incoming(s, name, e);
	if (vm && (!vm->incoming || !vm->incoming->quick || vm->state != VS_INCOMING)) {
		cerr_set(e, CERR_STATE, "state", "'%s' is not a VM moving in by a quick move", name);
		sup_vm_unlock(s, vm);
		vm = NULL;
	}
	if (vm && disk && ((idx = vmdef_disk_find(&vm->def, disk)) < 0 ||
			   !vm->incoming->storage)) {
		cerr_set(e, idx < 0 ? CERR_NOT_FOUND : CERR_CONFLICT, "disk", idx < 0 ? "no disk '%.32s'"
			 : "disk %.32s: the move does not include storage", disk);
		sup_vm_unlock(s, vm);
		vm = NULL;
	}
	if (!vm)
		return -1;
	if (disk) {
		snprintf(path, sizeof(path), "%s.part", vm->def.disks[idx].path);
		/* A qcow2 file is at most a little over its virtual size. */
		*max = vm->incoming->disk_size[idx] + vm->incoming->disk_size[idx] / 8 +
		       STATE_SLACK;
	} else {
		sup_vm_dir(s, vm, path, sizeof(path));
		vm_file(s, vm, "incoming.state.part", path, sizeof(path));
		*max = (vm->def.memory_mib << 20) + STATE_SLACK;
	}
	*fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	sup_vm_unlock(s, vm);
	if (*fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", path, strerror(errno));
	return 0;
}

int sup_incoming_upload_done(struct sup *s, const char *name, const char *disk, int fd,
			     uint64_t bytes, bool ok, struct cerr *e)
{
	char part[620], final[600];
	struct vmrt *vm;
	int idx = -1, ret = -1;

	if (ok && fsync(fd) < 0) {
		cerr_set(e, CERR_NO_SPACE, "", "cannot sync the upload: %s", strerror(errno));
		ok = false;
	}
	close(fd);
	if (!ok)
		return -1;
	vm = lookup_incoming(s, name, e);
	if (vm && (!vm->incoming || vm->state != VS_INCOMING)) {
		cerr_set(e, CERR_STATE, "state", "'%s' is no longer moving in", name);
		goto out;
	}
	if (vm && disk && (idx = vmdef_disk_find(&vm->def, disk)) < 0) {
		cerr_set(e, CERR_NOT_FOUND, "disk", "no disk '%.32s'", disk);
		goto out;
	}
	if (!vm)
		return -1;
	if (disk) {
		snprintf(final, sizeof(final), "%s", vm->def.disks[idx].path);
		snprintf(part, sizeof(part), "%s.part", final);
	} else {
		vm_file(s, vm, "incoming.state.part", part, sizeof(part));
		sup_saved_path(s, vm, final, sizeof(final));
	}
	if (rename(part, final) < 0) {
		cerr_set(e, CERR_INTERNAL, "", "cannot put %s in place: %s", final, strerror(errno));
		goto out;
	}
	if (disk)
		vm->incoming->disk_uploaded[idx] = true;
	else
		vm->incoming->have_state = true;
	log_info("vm %s: received %s (%llu bytes)", name, disk ? disk : "the saved state",
		 (unsigned long long)bytes);
	ret = 0;
out:
	sup_vm_unlock(s, vm);
	return ret;
}

/* Recovery ------------------------------------------------------------------ */

/* A move in that a crash interrupted. Adoption already asked the worker:
 * a VM that arrived answers and runs here (finished); an incoming worker
 * that does not answer was killed and its VM dropped, or is being dropped.
 * Either way the images made here for it go (rolled back). */
static enum job_outcome move_in_recover(struct sup *s, struct vmrt *vm,
					const struct store_job *job, char *detail, size_t len)
{
	json_t *made = json_object_get(job->data, "created"), *p;
	size_t i;

	if (vm && vm->state == VS_RUNNING) {
		snprintf(detail, len, "the VM arrived and runs here");
		return JOB_FINISHED;
	}
	if (vm && vm->pid) {
		kill(vm->pid, SIGKILL);
		sup_wait_until(s, vm, sup_worker_gone, vm->gen, 10000);
	}
	json_array_foreach(made, i, p) {
		char part[600];

		if (!json_is_string(p))
			continue;
		snprintf(part, sizeof(part), "%s.part", json_string_value(p));
		unlink(part);
		unlink(json_string_value(p));
	}
	if (vm && !vm->deleted) {
		if (vm->state == VS_INCOMING)
			lifecycle_fire(s, vm, EV_INCOMING_FAILED, "cellad restarted during the move");
		drop(s, vm, "the move did not complete");
	}
	snprintf(detail, len, "the half-moved VM and %zu image(s) made for it were removed",
		 json_array_size(made));
	return JOB_ROLLED_BACK;
}

const struct job_kind move_in_job = { "move-in", move_in_recover, true };

/* A pool move whose ownership did not pass when the VM arrived (etcd
 * away): the pool still names the source; try again, once a second (the
 * pool's HA thread asks, lock held). */
static void owned_elsewhere(struct sup *s, struct vmrt *vm, const char *owner)
{
	struct sup_incoming *in = vm->incoming;

	if (!in->pool_from[0] || vm->state != VS_RUNNING || vm->busy ||
	    strcmp(owner, in->pool_from) || sup_mono_ns() < in->owner_retry_ns)
		return;
	in->owner_retry_ns = sup_mono_ns() + 1000000000ULL;
	arrived_in_pool(s, vm);
}

const struct sup_hooks incoming_hooks = {
	.incoming_worker_ended = incoming_failed,
	.incoming_free = incoming_free,
	.incoming_owned_elsewhere = owned_elsewhere,
};
