/* sup.c: the VM registry and the lifecycle state machine: defined ->
 * starting -> running <-> paused -> stopping -> stopped, plus crashed. Every
 * action checks the state first and refuses with 409 naming it. */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "deadline.h"
#include "log.h"
#include "disk.h"
#include "storage.h"
#include "ksm.h"
#include "wctl.h"
#include "standby_pool.h"

#define WORKER_TIMEOUT_MS 10000

uint64_t sup_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int64_t sup_now_wall(void)
{
	return (int64_t)time(NULL);
}

void sup_free_attached(struct sup *s, struct vmrt *vm)
{
	if (vm->incoming && s->conf.hooks && s->conf.hooks->incoming_free)
		s->conf.hooks->incoming_free(vm->incoming);
	vm->incoming = NULL;
}

void sup_vm_ref(struct sup *s, struct vmrt *vm)
{
	pthread_mutex_lock(&s->reg_lock);
	vm->refs++;
	pthread_mutex_unlock(&s->reg_lock);
}

void sup_vm_unref(struct sup *s, struct vmrt *vm)
{
	pthread_mutex_lock(&s->reg_lock);
	vm->refs--;
	pthread_cond_broadcast(&s->unpinned);
	pthread_mutex_unlock(&s->reg_lock);
}

void sup_vm_changed(struct vmrt *vm)
{
	pthread_cond_broadcast(&vm->changed);
	sup_streams_wake(vm->readers);
}

struct vmrt *sup_vm_lock_name(struct sup *s, const char *name, struct cerr *e)
{
	struct vmrt *vm;

	pthread_mutex_lock(&s->reg_lock);
	for (vm = s->vms; vm; vm = vm->next)
		if (!strcmp(vm->def.name, name))
			break;
	if (vm)
		vm->refs++;
	pthread_mutex_unlock(&s->reg_lock);
	if (vm) {
		pthread_mutex_lock(&vm->lock);
		if (!vm->deleted)
			return vm;
		sup_vm_unlock(s, vm); /* removed while we waited for it */
	}
	cerr_set(e, CERR_NOT_FOUND, "name", "no VM named '%.64s'", name);
	return NULL;
}

void sup_vm_unlock(struct sup *s, struct vmrt *vm)
{
	pthread_mutex_unlock(&vm->lock);
	sup_vm_unref(s, vm);
}

struct vmrt **sup_vm_pin_all(struct sup *s, size_t *n)
{
	struct vmrt **all = NULL;
	size_t count = 0, i = 0;

	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *vm = s->vms; vm; vm = vm->next)
		count++;
	all = count ? calloc(count, sizeof(*all)) : NULL;
	for (struct vmrt *vm = s->vms; vm && all; vm = vm->next) {
		vm->refs++;
		all[i++] = vm;
	}
	pthread_mutex_unlock(&s->reg_lock);
	*n = i;
	return all;
}

void sup_vm_unpin_all(struct sup *s, struct vmrt **vms, size_t n)
{
	pthread_mutex_lock(&s->reg_lock);
	for (size_t i = 0; i < n; i++)
		vms[i]->refs--;
	pthread_cond_broadcast(&s->unpinned);
	pthread_mutex_unlock(&s->reg_lock);
	free(vms);
}

void sup_emit(struct sup *s, struct vmrt *vm, const char *event, const char *detail)
{
	sup_emit_named(s, vm ? vm->def.name : "", vm ? vm_state_name(vm->state) : "", event, detail);
}

void sup_emit_named(struct sup *s, const char *vm, const char *state, const char *event,
		    const char *detail)
{
	sup_emit_extra(s, vm, state, event, detail, NULL);
}

void sup_emit_extra(struct sup *s, const char *vm, const char *state, const char *event,
		    const char *detail, json_t *extra)
{
	struct sup_event *ev;
	struct timespec ts;
	char when[40];
	struct tm tm;
	json_t *o;
	char *js;

	pthread_mutex_lock(&s->ev_lock);
	ev = &s->events[s->next_seq % SUP_EVENTS];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ", ts.tv_nsec / 1000000);
	o = json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)s->next_seq, "time", when,
		      "event", event, "vm", vm, "state", state);
	if (detail && *detail)
		json_object_set_new(o, "detail", json_string(detail));
	if (extra)
		json_object_update_missing(o, extra);
	json_decref(extra);
	js = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	free(s->events[s->next_seq % SUP_EVENTS].line);
	ev->seq = s->next_seq++;
	snprintf(ev->vm, sizeof(ev->vm), "%s", vm);
	ev->line = NULL;
	if (js && asprintf(&ev->line, "%s\n", js) < 0)
		ev->line = NULL;
	free(js);
	pthread_cond_broadcast(&s->ev_changed);
	sup_streams_wake(s->ev_readers);
	pthread_mutex_unlock(&s->ev_lock);
	log_info("vm %s: %s%s%s", vm[0] ? vm : "-", event, detail && *detail ? ": " : "",
		 detail ? detail : "");
}

void sup_persist(struct sup *s, struct vmrt *vm)
{
	struct store_runtime rt = {
		.pid = vm->pid, .pid_start = vm->pid_start, .started_at = vm->started_at,
		.exit_status = vm->exit_status, .restarts = vm->restarts,
	};

	snprintf(rt.state, sizeof(rt.state), "%s", vm_state_name(vm->state));
	snprintf(rt.exit_reason, sizeof(rt.exit_reason), "%s", vm->exit_reason);
	if (store_runtime_put(s->db, vm->def.uuid, &rt))
		log_warn("vm %s: cannot record the runtime state", vm->def.name);
}

int sup_store_cerr(struct sup *s, struct cerr *e, int err, const char *what)
{
	if (store_unreachable(err))
		return cerr_set(e, CERR_UNAVAILABLE, "", "%s: the %s store is unreachable (%s); "
			        "try again when it is back", what, store_name(s->db), strerror(-err));
	if (err == -EPERM)
		return cerr_set(e, CERR_CONFLICT, "", "%s: the VM belongs to another host of the pool",
				what);
	if (err == -EAGAIN)
		return cerr_set(e, CERR_CONFLICT, "", "%s: changed by another writer meanwhile; "
				"try again", what);
	if (err == -EEXIST)
		return cerr_set(e, CERR_EXISTS, "", "%s: %s", what, strerror(-err));
	return cerr_set(e, CERR_INTERNAL, "", "%s: %s", what, strerror(-err));
}

static int64_t uptime_ms(const struct vmrt *vm)
{
	struct timespec now;

	if (vm->state != VS_RUNNING && vm->state != VS_PAUSED && vm->state != VS_STOPPING)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - vm->started_mono.tv_sec) * 1000 +
	       (now.tv_nsec - vm->started_mono.tv_nsec) / 1000000;
}

json_t *sup_vm_json(struct sup *s, struct vmrt *vm)
{
	json_t *o = vmdef_to_json(&vm->def);
	json_t *last = json_null();

	(void)s;
	if (vm->exit_status >= 0)
		last = json_pack("{s:i, s:s}", "status", vm->exit_status, "reason", vm->exit_reason);
	json_object_set_new(o, "state", json_string(vm_state_name(vm->state)));
	json_object_set_new(o, "pid", vm->pid ? json_integer(vm->pid) : json_null());
	json_object_set_new(o, "uptime_ms", json_integer(uptime_ms(vm)));
	json_object_set_new(o, "started_at", vm->started_at ? json_integer(vm->started_at)
							    : json_null());
	json_object_set_new(o, "restarts", json_integer(vm->restarts));
	json_object_set_new(o, "last_exit", last);
	json_object_set_new(o, "pause_reason", vm->state == VS_PAUSED && vm->pause_reason[0]
				? json_string(vm->pause_reason) : json_null());
	json_object_set_new(o, "checkpoint", vm->def.checkpoint[0] ? json_string(vm->def.checkpoint)
							    : json_null());
	if (vm->def.vsock_cid) { /* where host agents connect (docs/virtio.md) */
		char path[512];

		sup_paths(s, vm, ".vsock", path, sizeof(path));
		json_object_set_new(json_object_get(o, "vsock"), "uds_path", json_string(path));
	}
	if (vm->disk_status)
		sup_merge_disk_status(o, vm->disk_status);
	if (vm->pid) /* page sharing: the worker's KSM counters (docs/memory.md) */
		json_object_set_new(o, "ksm", ksm_proc_json(vm->pid));
	return o;
}

json_t *sup_list(struct sup *s)
{
	json_t *arr = json_array();
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&all[i]->lock);
		if (!all[i]->deleted)
			json_array_append_new(arr, sup_vm_json(s, all[i]));
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return arr;
}

int sup_get(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct vmrt *vm = sup_vm_lock_name(s, name, e);

	if (!vm)
		return -1;
	*out = sup_vm_json(s, vm);
	sup_vm_unlock(s, vm);
	return 0;
}

static struct vmrt *vmrt_new(void)
{
	struct vmrt *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	vm->pidfd = vm->console_fd = vm->incoming_fd = -1;
	vm->exit_status = -1;
	vm->state = VS_NONE;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->changed, NULL);
	vm->w_pid.kind = WATCH_PID;
	vm->w_pid.vm = vm;
	vm->w_con.kind = WATCH_CONSOLE;
	vm->w_con.vm = vm;
	return vm;
}

static struct vmrt *register_vm(struct sup *s, json_t *body, enum vm_event ev,
				const char *detail, enum role role, bool write, struct cerr *e);

struct vmrt *sup_register(struct sup *s, json_t *body, enum vm_event ev, const char *detail,
			  enum role role, struct cerr *e)
{
	return register_vm(s, body, ev, detail, role, true, e);
}

struct vmrt *sup_register_shared(struct sup *s, json_t *body, enum vm_event ev,
				 const char *detail, enum role role, struct cerr *e)
{
	return register_vm(s, body, ev, detail, role, false, e);
}

static struct vmrt *register_vm(struct sup *s, json_t *body, enum vm_event ev,
				const char *detail, enum role role, bool write, struct cerr *e)
{
	struct vmrt *vm = vmrt_new(), **pp;
	int ret;

	if (!vm) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		return NULL;
	}
	/* (A switch NIC needs its switch here: a move in is refused early.) */
	if (vmdef_from_json(&vm->def, body, e) || sup_check_paths(s, &vm->def, NULL, role, e) ||
	    sup_nics_check(s, &vm->def, e) || sup_usernet_probe(&vm->def, e))
		goto fail;
	/* The name is taken and stored under the registry lock: two defines of
	 * one name cannot both pass. */
	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *o = s->vms; o; o = o->next) {
		if (!strcmp(o->def.name, vm->def.name) || !strcmp(o->def.uuid, vm->def.uuid)) {
			bool by_name = !strcmp(o->def.name, vm->def.name);

			cerr_set(e, CERR_EXISTS, by_name ? "name" : "uuid", "a VM with this %s exists",
				 by_name ? "name" : "UUID");
			pthread_mutex_unlock(&s->reg_lock);
			goto fail;
		}
	}
	ret = write ? store_vm_put(s->db, &vm->def) : 0;
	if (ret) {
		pthread_mutex_unlock(&s->reg_lock);
		if (ret == -EEXIST) /* the pool's name index (core/sup_place.c) */
			sup_place_name_taken(s, vm->def.name, e);
		else
			sup_store_cerr(s, e, ret, "cannot store the definition");
		goto fail;
	}
	for (pp = &s->vms; *pp; pp = &(*pp)->next)
		;
	*pp = vm;
	vm->refs = 1; /* the caller's */
	pthread_mutex_lock(&vm->lock); /* nobody else has it yet: no wait */
	pthread_mutex_unlock(&s->reg_lock);
	if (lifecycle_fire(s, vm, ev, detail))
		sup_persist(s, vm);
	return vm;
fail:
	vmdef_free(&vm->def);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->changed);
	free(vm);
	return NULL;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int sup_disk_fmt(const struct vmdef_disk *dk)
{
	return dk->format == VMDEF_FMT_QCOW2 ? DISK_FMT_QCOW2 : DISK_FMT_RAW;
}

int sup_check_paths(struct sup *s, const struct vmdef *next, const struct vmdef *prev,
		    enum role role, struct cerr *e)
{
	const struct storage *st = s->conf.storage;
	static const struct storage none;

	if (!st)
		st = &none;
	if ((!prev || !same(prev->kernel, next->kernel)) && next->kernel &&
	    storage_check(st, role, "kernel", next->kernel, -1, false, e))
		return -1;
	if ((!prev || !same(prev->initrd, next->initrd)) && next->initrd &&
	    storage_check(st, role, "initrd", next->initrd, -1, false, e))
		return -1;
	for (unsigned i = 0; i < next->nr_disks; i++) {
		char field[48];
		bool known = false;

		for (unsigned j = 0; prev && j < prev->nr_disks && !known; j++)
			known = same(prev->disks[j].path, next->disks[i].path);
		snprintf(field, sizeof(field), "disks[%u].path", i);
		if (!known && storage_check(st, role, field, next->disks[i].path,
					    sup_disk_fmt(&next->disks[i]), true, e))
			return -1;
	}
	return sup_check_ha(s, next, e);
}

int sup_check_ha(struct sup *s, const struct vmdef *d, struct cerr *e)
{
	const struct storage *st = s->conf.storage;

	if (!d->ha)
		return 0;
	if (!s->conf.pool || !s->conf.pool->host(s->conf.pool_ctx))
		return cerr_set(e, CERR_INVALID, "ha", "high availability needs a pool: this host "
				"is in none (cella pool create, cella pool join)");
	for (unsigned i = 0; i < d->nr_disks; i++) {
		char field[48];

		snprintf(field, sizeof(field), "disks[%u].path", i);
		if (!st || !storage_on_pool(st, d->disks[i].path))
			return cerr_set(e, CERR_INVALID, field, "%s is not on pool storage: an HA VM's "
					"disks must all be in a storage location marked \"pool\": true "
					"(mounted on every host), so another host can run it",
					d->disks[i].path);
	}
	return 0;
}

int sup_define(struct sup *s, json_t *body, enum role role, json_t **out, struct cerr *e)
{
	struct vmrt *vm;

	if (json_object_get(body, "replica"))
		return cerr_set(e, CERR_INVALID, "replica", "set by replication only (cella replica "
				"enable on the source host)");
	vm = sup_register(s, body, EV_DEFINE, NULL, role, e);

	if (!vm)
		return -1;
	*out = sup_vm_json(s, vm);
	sup_vm_unlock(s, vm);
	return 0;
}

int sup_refuse(struct vmrt *vm, struct cerr *e, const char *what)
{
	cerr_set(e, CERR_STATE, "state", "cannot %s a VM that is %s", what, vm_state_name(vm->state));
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	return -1;
}

int sup_refuse_replica(struct vmrt *vm, struct cerr *e)
{
	const struct vmdef_replica *r = &vm->def.replica;

	cerr_set(e, CERR_STATE, "replica", "VM '%s' is a replica of the VM on %s: it does not start "
		 "or change here; fail over to it (cella replica failover %s, or --test for a "
		 "copy), or remove it with cella replica delete %s", vm->def.name,
		 r->source[0] ? r->source : "another host", vm->def.name, vm->def.name);
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	return -1;
}

int sup_refuse_busy(struct vmrt *vm, struct cerr *e)
{
	cerr_set(e, CERR_STATE, "state", "another action on this VM is in progress");
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	return -1;
}

/* The VM called name, unless it is unknown or another action on it is in
 * progress (e filled, NULL). Pinned and locked: sup_vm_unlock. */
struct vmrt *sup_lookup_idle(struct sup *s, const char *name, struct cerr *e)
{
	struct vmrt *vm = sup_vm_lock_name(s, name, e);

	if (vm && (vm->busy || vm->def.replica.on)) {
		if (vm->busy)
			sup_refuse_busy(vm, e);
		else
			sup_refuse_replica(vm, e);
		sup_vm_unlock(s, vm);
		return NULL;
	}
	return vm;
}

int sup_change(struct sup *s, const char *name, json_t *body, enum role role, json_t **out,
	       struct cerr *e)
{
	struct vmdef next;
	struct vmrt *vm;
	bool limits = false;
	int ret = -1;

	if (sup_vmem_wants(body)) {
		ret = sup_vmem_resize(s, name, body, out, e);
		if (ret != 1)
			return ret;
		ret = -1;
	}
	if (sup_cpuhp_wants(body)) {
		ret = sup_cpuhp_set(s, name, body, out, e);
		if (ret != 1)
			return ret;
		ret = -1;
	}
	vm = sup_lookup_idle(s, name, e);
	if (!vm)
		return -1;
	if (vmdef_copy(&next, &vm->def)) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		goto out;
	}
	/* A saved state holds the devices and memory as defined: same rule. */
	if (vmdef_patch(&next, body, state_active(vm->state) || vm->state == VS_SAVED, &limits, e)) {
		if (e->kind == CERR_STATE || e->kind == CERR_CONFLICT)
			snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		vmdef_free(&next);
		goto out;
	}
	if (sup_check_paths(s, &next, &vm->def, role, e) || sup_nics_check(s, &next, e)) {
		vmdef_free(&next);
		goto out;
	}
	ret = store_vm_put(s->db, &next);
	if (ret) {
		sup_store_cerr(s, e, ret, "cannot store the definition");
		ret = -1;
		vmdef_free(&next);
		goto out;
	}
	vmdef_free(&vm->def);
	vm->def = next;
	if (limits && vm->pid && cgroups_vm_set_cpu(&s->cg, vm->def.uuid, vm->def.cpus,
						    vm->def.cpu_weight, vm->def.cpu_max))
		log_warn("vm %s: cannot apply the new CPU limits", vm->def.name);
	sup_emit(s, vm, "changed", NULL);
	*out = sup_vm_json(s, vm);
	ret = 0;
out:
	sup_vm_unlock(s, vm);
	return ret;
}

int sup_remove(struct sup *s, struct vmrt *vm, const char *event, const char *detail)
{
	int ret = store_vm_delete(s->db, vm->def.uuid);

	if (ret)
		return ret;
	sup_forget(s, vm, event, detail);
	return 0;
}

void sup_forget(struct sup *s, struct vmrt *vm, const char *event, const char *detail)
{
	struct vmrt **pp;
	char path[512];

	pthread_mutex_lock(&s->reg_lock);
	for (pp = &s->vms; *pp && *pp != vm; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = vm->next;
	vm->deleted = true;
	vm->next = s->zombies;
	s->zombies = vm;
	pthread_mutex_unlock(&s->reg_lock);
	sup_vm_changed(vm);
	sup_paths(s, vm, ".exit", path, sizeof(path));
	unlink(path);
	sup_paths(s, vm, ".json", path, sizeof(path));
	unlink(path);
	sup_paths(s, vm, ".vsock", path, sizeof(path));
	unlink(path);
	sup_saved_path(s, vm, path, sizeof(path));
	unlink(path);
	sup_emit(s, vm, event, detail);
}

int sup_delete(struct sup *s, const char *name, struct cerr *e)
{
	struct vmrt *vm;
	int ret = -1;

	vm = sup_lookup_idle(s, name, e);
	if (!vm)
		return -1;
	if (lifecycle_request_check(REQ_DELETE, vm->state, e))
		goto out;
	ret = sup_remove(s, vm, "deleted", NULL);
	if (ret) {
		sup_store_cerr(s, e, ret, "cannot delete the definition");
		ret = -1;
		goto out;
	}
	ret = 0;
out:
	sup_vm_unlock(s, vm);
	return ret;
}

/* Wait (lock held) until pred holds or timeout_ms passes. */
bool sup_wait_until(struct sup *s, struct vmrt *vm, bool (*pred)(struct vmrt *, unsigned),
		       unsigned arg, int timeout_ms)
{
	struct timespec dl = deadline_after_ms(timeout_ms);

	while (!pred(vm, arg)) {
		if (pthread_cond_timedwait(&vm->changed, &vm->lock, &dl) == ETIMEDOUT)
			return pred(vm, arg);
	}
	return true;
}

bool sup_worker_gone(struct vmrt *vm, unsigned gen)
{
	(void)gen;
	return !state_active(vm->state);
}

static bool restarted(struct vmrt *vm, unsigned gen)
{
	return (vm->gen != gen && vm->state != VS_STARTING) || !state_active(vm->state);
}

/* Send one command to the worker without the lock (fds attached, if any). */
int sup_worker_cmd(struct sup *s, struct vmrt *vm, json_t *req, const int *fds, unsigned nfds,
		   int timeout_ms, json_t **reply, struct cerr *e)
{
	char path[512];
	int ret;

	sup_paths(s, vm, ".ctl", path, sizeof(path));
	pthread_mutex_unlock(&vm->lock);
	ret = wctl_request_fds(path, req, fds, nfds, timeout_ms, reply);
	pthread_mutex_lock(&vm->lock);
	json_decref(req);
	if (!ret && !json_is_true(json_object_get(*reply, "ok"))) {
		cerr_set(e, CERR_INTERNAL, "", "worker refused: %s",
			 json_string_value(json_object_get(*reply, "error")) ?: "?");
		json_decref(*reply);
		*reply = NULL;
		return -1;
	}
	if (ret) {
		cerr_set(e, CERR_INTERNAL, "", "worker control socket: %s", strerror(-ret));
		return -1;
	}
	return 0;
}

static int worker_cmd(struct sup *s, struct vmrt *vm, json_t *req, json_t **reply, struct cerr *e)
{
	return sup_worker_cmd(s, vm, req, NULL, 0, WORKER_TIMEOUT_MS, reply, e);
}

int sup_act_kill(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	unsigned gen = vm->gen;
	json_t *reply = NULL;

	vm->stop_requested = true;
	if (vm->state == VS_STARTING) {
		/* The start handshake owns the control connection: SIGTERM ends a
		 * gated worker too (status 12). */
		if (vm->pid)
			kill(vm->pid, SIGTERM);
	} else if (worker_cmd(s, vm, json_pack("{s:s}", "cmd", "stop"), &reply, e))
		log_warn("vm %s: stop through the control socket failed: %s", vm->def.name,
			 e->reason);
	json_decref(reply);
	if (!sup_wait_until(s, vm, sup_worker_gone, gen, WORKER_TIMEOUT_MS) && vm->pid) {
		log_warn("vm %s: worker %d did not exit; killing it", vm->def.name, vm->pid);
		kill(vm->pid, SIGKILL);
		if (!sup_wait_until(s, vm, sup_worker_gone, gen, WORKER_TIMEOUT_MS))
			return cerr_set(e, CERR_INTERNAL, "", "the worker did not exit");
	}
	return 0;
}

static int act_stop(struct sup *s, struct vmrt *vm, json_t *body, bool *pending, struct cerr *e)
{
	json_int_t timeout_s = s->conf.shutdown_timeout_s;
	json_t *t = json_is_object(body) ? json_object_get(body, "timeout_s") : NULL;
	json_t *reply = NULL;
	const char *key;
	json_t *v;

	if (body && !json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach(body, key, v) {
		if (strcmp(key, "timeout_s"))
			return cerr_set(e, CERR_INVALID, key, "unknown field");
	}
	if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
		  json_integer_value(t) > 3600))
		return cerr_set(e, CERR_INVALID, "timeout_s", "expected an integer from 0 to 3600");
	if (t)
		timeout_s = json_integer_value(t);
	vm->stop_requested = true;
	lifecycle_fire(s, vm, EV_STOP, NULL);
	if (worker_cmd(s, vm, json_pack("{s:s, s:I}", "cmd", "shutdown", "timeout_ms",
					timeout_s * 1000), &reply, e)) {
		log_warn("vm %s: graceful shutdown failed (%s); turning it off", vm->def.name,
			 e->reason);
		return sup_act_kill(s, vm, e);
	}
	json_decref(reply);
	*pending = true;
	return 0;
}

static int act_pause(struct sup *s, struct vmrt *vm, bool pause, struct cerr *e)
{
	unsigned gen = vm->gen;
	json_t *reply = NULL;

	if (worker_cmd(s, vm, json_pack("{s:s}", "cmd", pause ? "pause" : "resume"), &reply, e))
		return -1;
	json_decref(reply);
	if (vm->gen == gen && (vm->state == VS_RUNNING || vm->state == VS_PAUSED)) {
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", pause ? "api" : "");
		lifecycle_fire(s, vm, pause ? EV_PAUSE : EV_RESUME, NULL);
	}
	return 0;
}

static int act_reset(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	unsigned gen = vm->gen;
	json_t *reply = NULL;

	vm->reset_requested = true;
	if (worker_cmd(s, vm, json_pack("{s:s}", "cmd", "reset"), &reply, e)) {
		vm->reset_requested = false;
		return -1;
	}
	json_decref(reply);
	if (!sup_wait_until(s, vm, restarted, gen, (int)s->conf.start_timeout_s * 1000 + 5000))
		return cerr_set(e, CERR_INTERNAL, "", "the VM did not come back from the reset");
	if (vm->state != VS_RUNNING)
		return cerr_set(e, CERR_INTERNAL, "", "the VM did not come back from the reset: %s",
				vm->exit_reason);
	return 0;
}

/* The lifecycle request each action makes (lifecycle_table.c says when). */
static const enum vm_request action_request[] = {
	[SUP_START] = REQ_START, [SUP_STOP] = REQ_STOP,   [SUP_KILL] = REQ_KILL,
	[SUP_RESET] = REQ_RESET, [SUP_PAUSE] = REQ_PAUSE, [SUP_RESUME] = REQ_RESUME,
	[SUP_SAVE] = REQ_SAVE,   [SUP_DELETE_STATE] = REQ_DELETE_STATE,
};

int sup_action(struct sup *s, const char *name, enum sup_action a, json_t *body, json_t **out,
	       bool *pending, struct cerr *e)
{
	struct vmrt *vm;
	struct job job;
	bool took_busy;
	int ret = -1;

	*pending = false;
	if (a != SUP_STOP && body && (!json_is_object(body) || json_object_size(body)))
		return cerr_set(e, CERR_INVALID, json_is_object(body) ? json_object_iter_key(
						   json_object_iter(body)) : "",
				json_is_object(body) ? "unknown field" : "expected an empty body");
	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	/* Turning off overrides a graceful stop or a start in progress. */
	if (vm->busy && !(a == SUP_KILL && (vm->state == VS_STOPPING || vm->state == VS_STARTING))) {
		sup_refuse_busy(vm, e);
		goto out;
	}
	if (vm->def.replica.on) {
		sup_refuse_replica(vm, e);
		goto out;
	}
	if (lifecycle_request_check(action_request[a], vm->state, e))
		goto out;
	if (a == SUP_START && sup_pool_refuse_maint(s, "start VMs", e))
		goto out;
	if (a == SUP_START && !vm->ha_taken && sup_ha_check_owner(s, vm, e))
		goto out;
	vm->ha_taken = false;
	if (a == SUP_START && admission_reserve(s, vm, e))
		goto out;
	took_busy = !vm->busy;
	vm->busy = true;
	vm->acts++;
	switch (a) {
	case SUP_START:
		/* A job: a cellad that dies here is followed by one that reports
		 * how the start ended (adoption finished it, or the worker did
		 * not live). */
		if (job_begin(s, vm, "start", NULL, &job, e)) {
			admission_release(s, vm);
			break;
		}
		vm->restore = vm->state == VS_SAVED;
		vm->stop_requested = vm->reset_requested = false;
		vm->burst = 0;
		vm->start_ns = sup_mono_ns();
		vm->first_out_ns = 0;
		lifecycle_fire(s, vm, EV_START, NULL);
		pthread_mutex_unlock(&vm->lock);
		ret = sup_launch(s, vm, e);
		pthread_mutex_lock(&vm->lock);
		job_end(s, &job);
		break;
	case SUP_STOP:
		if (job_begin(s, vm, "stop", NULL, &job, e))
			break;
		ret = act_stop(s, vm, body, pending, e);
		job_end(s, &job);
		break;
	case SUP_KILL:
		ret = sup_act_kill(s, vm, e);
		break;
	case SUP_RESET:
		ret = act_reset(s, vm, e);
		break;
	case SUP_PAUSE:
	case SUP_RESUME:
		ret = act_pause(s, vm, a == SUP_PAUSE, e);
		break;
	case SUP_SAVE:
		ret = sup_act_save(s, vm, e);
		break;
	case SUP_DELETE_STATE:
		ret = sup_act_delete_state(s, vm, e);
		break;
	}
	vm->acts++;
	if (took_busy)
		vm->busy = false;
	sup_vm_changed(vm);
	if (!ret)
		*out = sup_vm_json(s, vm);
	else if (!e->state[0])
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
out:
	sup_vm_unlock(s, vm);
	return ret;
}

static int read_boot_id(const char *path, char *out, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, len - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

struct load_ctx {
	struct sup *s;
	bool rebooted;
};

static int sup_load_one(void *opaque, struct vmdef *def, const struct store_runtime *rt)
{
	struct load_ctx *lc = opaque;
	struct sup *s = lc->s;
	struct vmrt *vm = vmrt_new(), **pp;
	enum vm_state st;

	if (!vm)
		return -ENOMEM;
	if (vmdef_copy(&vm->def, def)) {
		free(vm);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->reg_lock);
	for (pp = &s->vms; *pp; pp = &(*pp)->next)
		;
	*pp = vm;
	vm->refs++;
	pthread_mutex_unlock(&s->reg_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm_state_parse(rt->state, &st))
		st = VS_DEFINED;
	lifecycle_load(s, vm, st);
	vm->exit_status = rt->exit_status;
	vm->restarts = rt->restarts;
	snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s", rt->exit_reason);
	if (lc->rebooted && state_active(vm->state)) {
		vm->exit_status = 255; /* unknown: the worker went down with the host */
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "the host rebooted");
		lifecycle_fire(s, vm, EV_HOST_REBOOTED, NULL);
	} else if (state_active(vm->state)) {
		sup_adopt(s, vm, rt);
	}
	sup_vm_unlock(s, vm);
	return 0;
}

struct vmrt *sup_register_def(struct sup *s, const struct vmdef *def)
{
	struct load_ctx lc = { .s = s };
	struct store_runtime rt = { .state = "defined", .exit_status = -1 };
	struct vmdef copy;
	struct vmrt *vm;

	if (vmdef_copy(&copy, def))
		return NULL;
	if (sup_load_one(&lc, &copy, &rt)) {
		vmdef_free(&copy);
		return NULL;
	}
	vmdef_free(&copy);
	pthread_mutex_lock(&s->reg_lock);
	for (vm = s->vms; vm && strcmp(vm->def.uuid, def->uuid); vm = vm->next)
		;
	pthread_mutex_unlock(&s->reg_lock);
	return vm;
}

static void wake_all(struct sup *s)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&all[i]->lock);
		sup_vm_changed(all[i]);
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	pthread_mutex_lock(&s->ev_lock);
	pthread_cond_broadcast(&s->ev_changed);
	sup_streams_wake(s->ev_readers);
	pthread_mutex_unlock(&s->ev_lock);
}

int sup_create(struct sup **out, const struct sup_conf *conf, struct store *db)
{
	struct sup *s = calloc(1, sizeof(*s));
	struct load_ctx lc = { .s = s };
	char boot[64] = "", last[64] = "";
	int ret;

	if (!s)
		return -ENOMEM;
	s->conf = *conf;
	s->db = db;
	s->next_seq = 1;
	s->epfd = -1;
	sup_images_init(s);
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	s->started_wall = sup_now_wall();
	pthread_mutex_init(&s->reg_lock, NULL);
	pthread_cond_init(&s->unpinned, NULL);
	pthread_cond_init(&s->poll_wake, NULL);
	pthread_mutex_init(&s->ev_lock, NULL);
	pthread_mutex_init(&s->jobs_lock, NULL);
	pthread_mutex_init(&s->adm_lock, NULL);
	pthread_mutex_init(&s->rep_lock, NULL);
	pthread_mutex_init(&s->rep_out_lock, NULL);
	{
		uint64_t host = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20;
		uint64_t cap = conf->memory_capacity_mib ? conf->memory_capacity_mib : host;
		double ratio = conf->memory_overcommit > 0 ? conf->memory_overcommit : 1.0;

		s->capacity_mib = (uint64_t)((double)cap * ratio);
	}
	pthread_cond_init(&s->ev_changed, NULL);
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cgroups_init(&s->cg, conf->cgroup_parent, conf->memory_overhead_mib);
	if (uidpool_init(&s->uids, conf->sandbox_uid_base,
			 conf->sandbox && !conf->sandbox_user ? conf->sandbox_uid_count : 0)) {
		free(s);
		return -ENOMEM;
	}
	if (read_boot_id(conf->boot_id_path, boot, sizeof(boot)))
		log_warn("cannot read the boot id from %s: autostart disabled", conf->boot_id_path);
	if (store_meta_get(db, "boot_id", last, sizeof(last)) == 0 && boot[0] && strcmp(boot, last))
		lc.rebooted = true;
	ret = sup_monitor_start(s);
	if (ret) {
		uidpool_destroy(&s->uids);
		free(s);
		return ret;
	}
	/* Bridges first: adopted workers' ports go back on them. */
	sup_switches_load(s);
	ret = store_load(db, sup_load_one, &lc);
	if (!ret && boot[0] && store_meta_set(db, "boot_id", boot))
		log_warn("cannot record the boot id");
	/* Workers are adopted or settled: finish or roll back what the last
	 * cellad left half done. */
	if (!ret)
		job_recover_all(s);
	if (!ret && lc.rebooted) {
		size_t n;
		struct vmrt **all = sup_vm_pin_all(s, &n);

		log_info("host boot since the last run: starting autostart VMs");
		for (size_t i = 0; i < n; i++) {
			struct vmrt *vm = all[i];

			pthread_mutex_lock(&vm->lock);
			struct cerr ae = { 0 };

			if (vm->def.replica.on) {
				/* a replica never starts by itself */
			} else if (!vm->deleted && vm->def.autostart && !state_active(vm->state) &&
			    admission_reserve(s, vm, &ae)) {
				log_warn("vm %s: not started: %s", vm->def.name, ae.reason);
			} else if (!vm->deleted && vm->def.autostart && !state_active(vm->state)) {
				vm->restore = vm->state == VS_SAVED;
				lifecycle_fire(s, vm, EV_START, "autostart");
				sup_launch_async(s, vm);
			}
			pthread_mutex_unlock(&vm->lock);
		}
		sup_vm_unpin_all(s, all, n);
	}
	if (!ret) {
		/* Restores take one instead of a cold start (docs/cellad.md). */
		int want = conf->standby_workers;

		if (want < 0)
			want = access("/dev/kvm", R_OK | W_OK) == 0;
		if (standby_pool_start(s, (unsigned)want, &s->standby))
			log_warn("standby workers: cannot start their keeper: restores start cold");
	}
	if (!ret)
		ret = sup_poller_start(s);
	if (ret) {
		sup_destroy(s);
		return ret;
	}
	sup_replica_in_resume(s);
	sup_replica_out_resume(s);
	*out = s;
	return 0;
}

void sup_quiesce(struct sup *s)
{
	s->shutting_down = true;
	wake_all(s);
}

void sup_destroy(struct sup *s)
{
	struct vmrt *vm, *n;

	if (!s)
		return;
	s->shutting_down = true;
	wake_all(s);
	sup_images_stop(s);
	sup_replica_out_stop_all(s);
	/* Start threads hold references: let them finish (their workers keep
	 * running either way) before the registry goes away. */
	pthread_mutex_lock(&s->reg_lock);
	for (int tries = 0; tries < 2 * (int)s->conf.start_timeout_s + 10; tries++) {
		struct timespec dl;
		bool busy = false;

		for (vm = s->vms; vm; vm = vm->next)
			busy |= vm->refs > 0;
		if (!busy)
			break;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 1;
		pthread_cond_timedwait(&s->unpinned, &s->reg_lock, &dl);
	}
	pthread_mutex_unlock(&s->reg_lock);
	/* None is left behind: a standby is no VM to adopt. */
	standby_pool_stop(s->standby);
	s->standby = NULL;
	sup_poller_stop(s);
	sup_monitor_stop(s);
	for (int i = 0; i < SUP_EVENTS; i++)
		free(s->events[i].line);
	for (vm = s->vms; vm; vm = n) {
		n = vm->next;
		if (vm->pidfd >= 0)
			close(vm->pidfd);
		if (vm->console_fd >= 0)
			close(vm->console_fd);
		conbuf_free(&vm->con);
		json_decref(vm->disk_status);
		sup_free_attached(s, vm);
		vmdef_free(&vm->def);
		free(vm);
	}
	for (vm = s->zombies; vm; vm = n) {
		n = vm->next;
		sup_free_attached(s, vm);
		json_decref(vm->disk_status);
		conbuf_free(&vm->con);
		vmdef_free(&vm->def);
		free(vm);
	}
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	uidpool_destroy(&s->uids);
	json_decref(s->switches);
	/* The lock and condition stay: HTTP threads may still be finishing. */
	free(s);
}

/* Start and stop as jobs: the worker carries on without cellad, and
 * adoption (before recovery) already settled what it did; recovery says so. */
static enum job_outcome start_recover(struct sup *s, struct vmrt *vm, const struct store_job *job,
				      char *detail, size_t len)
{
	(void)s;
	(void)job;
	if (vm->state == VS_RUNNING || vm->state == VS_PAUSED) {
		snprintf(detail, len, "the VM runs (its worker was adopted)");
		return JOB_FINISHED;
	}
	snprintf(detail, len, "the VM did not start; it is %s", vm_state_name(vm->state));
	return JOB_ROLLED_BACK;
}

static enum job_outcome stop_recover(struct sup *s, struct vmrt *vm, const struct store_job *job,
				     char *detail, size_t len)
{
	(void)s;
	(void)job;
	if (vm->state == VS_RUNNING || vm->state == VS_PAUSED) {
		snprintf(detail, len, "the stop did not reach the worker; the VM is %s",
			 vm_state_name(vm->state));
		return JOB_ROLLED_BACK;
	}
	snprintf(detail, len, "the VM is %s", vm_state_name(vm->state));
	return JOB_FINISHED;
}

const struct job_kind start_job = { "start", start_recover };
const struct job_kind stop_job = { "stop", stop_recover };
