/* sup_ha.c: the core's side of HA fencing (docs/pool.md, "High
 * availability"): hand every HA worker the deadline the pool's lease allows
 * (lease-extend: the worker's own timer kills it then, cellad or not), and
 * stop them all when the host fences itself. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sup_priv.h"
#include "wctl.h"

#define HA_CTL_TIMEOUT_MS 500
#define HA_REAP_TIMEOUT_MS 5000

static bool ha_worker(const struct vmrt *vm)
{
	return vm->def.ha && vm->pid && state_active(vm->state);
}

uint64_t sup_ha_deadline_ns(struct sup *s)
{
	const struct sup_pool_ops *ops = s->conf.pool;

	return ops && ops->ha_deadline_ns ? ops->ha_deadline_ns(s->conf.pool_ctx) : 0;
}

int sup_ha_check_owner(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char owner[64] = "";
	int ret;

	if (!vm->def.ha || !ops || !ops->owner_now || !ops->host || !ops->host(s->conf.pool_ctx))
		return 0;
	ret = ops->owner_now(s->conf.pool_ctx, vm->def.uuid, owner, sizeof(owner));
	if (ret < 0)
		return sup_store_cerr(s, e, ret, "cannot read the VM's owner");
	if (strcmp(owner, ops->host(s->conf.pool_ctx)))
		return cerr_set(e, CERR_CONFLICT, "", "this host does not own HA VM %s now (%s): "
				"its ownership lapsed with this host's lease; the pool places it "
				"again", vm->def.name, owner[0] ? owner : "nobody owns it");
	return 0;
}

void sup_ha_extend(struct sup *s, uint64_t until_ns)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];
		char path[512], name[sizeof(vm->def.name)];
		json_t *req, *reply = NULL;
		int ret;

		pthread_mutex_lock(&vm->lock);
		if (!ha_worker(vm) || vm->state == VS_STARTING || vm->state == VS_INCOMING) {
			/* A starting worker gets its deadline in the start
			 * handshake, before its gate opens; one moving in at
			 * the commit (features/move_pool.c). */
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		sup_paths(s, vm, ".ctl", path, sizeof(path));
		snprintf(name, sizeof(name), "%s", vm->def.name);
		pthread_mutex_unlock(&vm->lock);
		req = json_pack("{s:s, s:I}", "cmd", "lease-extend", "until_boottime_ns",
				(json_int_t)until_ns);
		ret = wctl_request(path, req, HA_CTL_TIMEOUT_MS, &reply);
		json_decref(req);
		if (!ret && !json_is_true(json_object_get(reply, "ok")))
			ret = -EPROTO;
		json_decref(reply);
		/* Not fatal: the worker keeps its earlier deadline and dies by
		 * it if no later extension reaches it. */
		if (ret)
			log_warn("vm %s: cannot extend its HA deadline: %s", name, strerror(-ret));
	}
	sup_vm_unpin_all(s, all, n);
}

static uint64_t boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sup_ha_fence(struct sup *s, const char *reason)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);
	int *pidfds = calloc(n ? n : 1, sizeof(*pidfds));
	uint64_t gone;

	/* SIGKILL every HA worker first, so that they die in parallel. */
	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];

		pidfds[i] = -1;
		pthread_mutex_lock(&vm->lock);
		if (ha_worker(vm)) {
			vm->stop_requested = true; /* no restart policy brings it back here */
			vm->ha_fenced = true;
			kill(vm->pid, SIGKILL);
			pidfds[i] = vm->pidfd >= 0 ? dup(vm->pidfd) : -1;
		}
		pthread_mutex_unlock(&vm->lock);
	}
	/* Gone: a pidfd is readable once its process has exited (its files,
	 * io_uring included, released), before anyone reaps it. */
	for (size_t i = 0; i < n; i++) {
		struct pollfd pfd = { .fd = pidfds[i], .events = POLLIN };

		if (pidfds[i] < 0)
			continue;
		if (poll(&pfd, 1, HA_REAP_TIMEOUT_MS) != 1)
			log_err("vm %s: fenced worker not gone after %d ms", all[i]->def.name,
				HA_REAP_TIMEOUT_MS);
		close(pidfds[i]);
	}
	gone = boot_ms();
	free(pidfds);
	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];
		char detail[300];

		pthread_mutex_lock(&vm->lock);
		if (!vm->ha_fenced) {
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		vm->ha_fenced = false;
		/* The monitor records the exit (a store write that may wait
		 * for etcd): the event comes after it. */
		if (!sup_wait_until(s, vm, sup_worker_gone, vm->gen, HA_REAP_TIMEOUT_MS))
			log_warn("vm %s: fenced worker's exit not recorded yet", vm->def.name);
		/* Recorded as fenced, not stopped: the host that takes the VM over
		 * reads this record to know it was up (ha.c, ha_was_up), and must
		 * start it. */
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "fenced: %.240s", reason);
		sup_persist(s, vm);
		snprintf(detail, sizeof(detail), "%.280s", reason);
		log_warn("vm %s: fenced (%s)", vm->def.name, reason);
		sup_emit(s, vm, "vm-fenced", detail);
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return gone;
}

bool sup_ha_running(struct sup *s)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);
	bool any = false;

	for (size_t i = 0; i < n && !any; i++) {
		pthread_mutex_lock(&all[i]->lock);
		any = ha_worker(all[i]);
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return any;
}

size_t sup_ha_running_uuids(struct sup *s, char (*uuids)[40], size_t max)
{
	size_t n, k = 0;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&all[i]->lock);
		/* One moving in is the source's until its commit. */
		if (ha_worker(all[i]) && all[i]->state != VS_INCOMING) {
			if (k < max)
				snprintf(uuids[k], sizeof(uuids[k]), "%s", all[i]->def.uuid);
			k++;
		}
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return k;
}

void sup_ha_take(struct sup *s, const struct vmdef *def, const char *from, const char *reason,
		 bool start)
{
	char detail[600], name[sizeof(def->name)];
	struct vmrt *vm = NULL;
	json_t *out = NULL;
	bool pending = false;
	struct cerr e = { 0 };

	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *o = s->vms; o; o = o->next)
		if (!strcmp(o->def.uuid, def->uuid) || !strcmp(o->def.name, def->name))
			vm = o;
	pthread_mutex_unlock(&s->reg_lock);
	if (vm && strcmp(vm->def.uuid, def->uuid)) {
		log_err("vm %s: taken over from %s, but a VM of that name runs here: not started",
			def->name, from);
		return;
	}
	if (!vm && !(vm = sup_register_def(s, def))) {
		log_err("vm %s: taken over from %s, but cannot be registered here", def->name, from);
		return;
	}
	snprintf(name, sizeof(name), "%s", def->name);
	/* The pool took it by compare-and-swap a moment ago: the start
	 * need not read the owner key again (the worker's HA deadline covers
	 * a lease lost meanwhile). */
	pthread_mutex_lock(&vm->lock);
	vm->ha_taken = start;
	pthread_mutex_unlock(&vm->lock);
	snprintf(detail, sizeof(detail), "from %s to %s: %.480s%s", from,
		 s->conf.pool && s->conf.pool->host ? s->conf.pool->host(s->conf.pool_ctx) ?: "?" : "?",
		 reason, start ? "" : " (it was not running: not started)");
	sup_emit_named(s, name, "defined", "vm-failed-over", detail);
	log_warn("vm %s: failed over %s", name, detail);
	if (start && sup_action(s, name, SUP_START, NULL, &out, &pending, &e))
		log_err("vm %s: taken over, but cannot start: %s", name, e.reason);
	json_decref(out);
}

void sup_ha_drop(struct sup *s, const char *uuid, const char *owner)
{
	struct vmrt *vm = NULL;
	char detail[128];

	pthread_mutex_lock(&s->reg_lock);
	for (vm = s->vms; vm && strcmp(vm->def.uuid, uuid); vm = vm->next)
		;
	if (vm)
		vm->refs++;
	pthread_mutex_unlock(&s->reg_lock);
	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	if (!vm->deleted && vm->incoming && s->conf.hooks &&
	    s->conf.hooks->incoming_owned_elsewhere) {
		s->conf.hooks->incoming_owned_elsewhere(s, vm, owner);
	} else if (!vm->deleted && !vm->busy && !state_active(vm->state)) {
		snprintf(detail, sizeof(detail), "owned by %.64s now: forgotten here", owner);
		log_warn("vm %s: %s", vm->def.name, detail);
		sup_forget(s, vm, "vm-owned-elsewhere", detail);
	} else if (!vm->deleted && state_active(vm->state) && !vm->busy && vm->def.ha &&
		   !vm->incoming) { /* a VM moving in is the source's until the commit */
		log_err("vm %s: runs here but host %s owns it", vm->def.name, owner);
	}
	sup_vm_unlock(s, vm);
}
