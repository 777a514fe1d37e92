/* maint.c: maintenance mode and balance for a pool (docs/pool.md,
 * "Maintenance mode", "Balance"): the plan from the pool layer (plan.c
 * over the pool's cache), carried out batch by batch: running VMs by live
 * moves inside the pool (move_pool.c; each one a move-out job, recovered
 * like any move), stopped VMs on pool storage handed over by a
 * compare-and-swap of their owner key (the new owner is asked to load
 * them), a VM of another host moved by its owner (the request forwarded
 * to it). Events: pool-host-maintenance, vm-evacuated, vm-balanced. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "move_pool.h"
#include "sup_priv.h"

struct step {
	struct sup *s;
	json_t *mv;         /* the plan's move (borrowed) */
	const char *event;  /* vm-evacuated, vm-balanced */
	json_t *result;     /* {vm, from, to, ok, error?, ...} */
	pthread_t thread;
	bool started;
};

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "";
}

/* Ask `to` to load a VM it owns now (a stopped VM handed over). */
static int ask_load(struct sup *s, const char *to, const char *uuid, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char addr[256], state[32], url[128];
	json_t *reply = NULL;
	long status = 0;
	int ret;

	if (ops->member(s->conf.pool_ctx, to, addr, sizeof(addr), state, sizeof(state)))
		return cerr_set(e, CERR_NOT_FOUND, "to", "no host %s in the pool", to);
	snprintf(url, sizeof(url), "/v1/pool/vms/%s/load", uuid);
	ret = sup_pool_forward(s, to, addr, "POST", url, NULL, ROLE_ADMIN, "a maintenance hand-over",
			       &status, &reply, e);
	if (!ret && (status < 200 || status >= 300))
		ret = cerr_set(e, CERR_PEER, "to", "host %s did not load the VM (HTTP %ld)", to,
			       status);
	json_decref(reply);
	return ret;
}

/* A stopped VM of this host to `to`: its disks must be on pool storage
 * (the same path there); the owner key passes, then `to` loads it. */
static int hand_over(struct sup *s, const char *name, const char *to, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char uuid[40], detail[160];
	struct vmdef probe;
	struct vmrt *vm;
	int ret;

	vm = sup_lookup_idle(s, name, e);
	if (!vm)
		return -1;
	if (state_active(vm->state)) {
		sup_vm_unlock(s, vm);
		return cerr_set(e, CERR_STATE, "state", "%s runs now: it moves live", name);
	}
	probe = vm->def; /* shallow, read only: the check of an HA VM's disks */
	probe.ha = true;
	if (sup_check_ha(s, &probe, e)) {
		sup_vm_unlock(s, vm);
		return -1;
	}
	snprintf(uuid, sizeof(uuid), "%s", vm->def.uuid);
	ret = ops->give(s->conf.pool_ctx, uuid, to); /* placement's hand-over */
	if (ret) {
		sup_vm_unlock(s, vm);
		return sup_store_cerr(s, e, ret == -EAGAIN ? -EPERM : ret, "cannot hand the VM over");
	}
	snprintf(detail, sizeof(detail), "to %.64s (stopped: handed over)", to);
	move_pool_forget(s, vm, detail);
	sup_vm_unlock(s, vm);
	/* The owner key names `to` now: it loads the VM (or, if it cannot be
	 * asked now, when it finds the key naming it). */
	if (ask_load(s, to, uuid, e))
		log_warn("vm %s: handed over to %s, which was not told to load it: %s", name, to,
			 e->reason);
	return 0;
}

/* Whether this host's stopped VM can be handed over: every disk on pool
 * storage (the check of an HA VM's disks). 0, or -1 with e. */
static int handable(struct sup *s, const char *name, struct cerr *e)
{
	struct vmdef probe;
	struct vmrt *vm = sup_vm_lock_name(s, name, e);
	int ret;

	if (!vm)
		return -1;
	probe = vm->def; /* shallow, read only */
	probe.ha = true;
	ret = sup_check_ha(s, &probe, e);
	sup_vm_unlock(s, vm);
	return ret;
}

/* Stopped VMs of this host the plan would hand over but whose disks are
 * not on pool storage stay: out of the moves, into stuck, with the reason. */
static void keep_local(struct sup *s, json_t *plan)
{
	json_t *moves = json_object_get(plan, "moves"), *stuck = json_object_get(plan, "stuck");
	int kept = 0;

	for (size_t i = 0; i < json_array_size(moves);) {
		json_t *mv = json_array_get(moves, i);
		struct cerr e = { 0 };

		if (json_is_true(json_object_get(mv, "live")) || !handable(s, str(mv, "vm"), &e)) {
			i++;
			continue;
		}
		json_array_append_new(stuck, json_pack(
			"{s:s, s:s, s:s, s:s+}", "vm", str(mv, "vm"), "uuid", str(mv, "uuid"), "from",
			str(mv, "from"), "reason", "stopped, and it cannot be handed over: ", e.reason));
		json_array_remove(moves, i);
		kept++;
	}
	if (kept) {
		char sum[400];

		snprintf(sum, sizeof(sum), "%s; %d stopped VM%s stay%s (disks not on pool storage)",
			 str(plan, "summary"), kept, kept > 1 ? "s" : "", kept > 1 ? "" : "s");
		json_object_set_new(plan, "summary", json_string(sum));
	}
}

static void *step_run(void *arg)
{
	struct step *st = arg;
	struct sup *s = st->s;
	const char *vm = str(st->mv, "vm"), *from = str(st->mv, "from"), *to = str(st->mv, "to");
	const char *me = move_pool_me(s) ?: "";
	bool live = json_is_true(json_object_get(st->mv, "live"));
	json_t *body = json_pack("{s:s}", "to", to), *out = NULL;
	struct cerr e = { 0 };
	uint64_t t0 = sup_mono_ns();
	int ret;

	if (strcmp(from, me)) {
		/* Another host's VM: its owner moves it. */
		char addr[256], state[32], url[128], *b = json_dumps(body, JSON_COMPACT);
		long status = 0;

		ret = s->conf.pool->member(s->conf.pool_ctx, from, addr, sizeof(addr), state,
					   sizeof(state));
		snprintf(url, sizeof(url), "/v1/vms/%s/move", vm);
		ret = ret ? cerr_set(&e, CERR_NOT_FOUND, "from", "no host %s", from)
			  : sup_pool_forward(s, from, addr, "POST", url, b, ROLE_ADMIN, "pool balance",
					     &status, &out, &e);
		if (!ret && (status < 200 || status >= 300)) {
			const char *msg = json_string_value(json_object_get(
				json_object_get(out, "error"), "message"));

			ret = cerr_set(&e, CERR_PEER, "", "host %s: %s (HTTP %ld)", from,
				       msg ? msg : "no message", status);
		}
		free(b);
	} else if (live) {
		ret = sup_move(s, vm, body, &out, &e);
	} else {
		ret = hand_over(s, vm, to, &e);
	}
	st->result = json_pack("{s:s, s:s, s:s, s:b, s:I}", "vm", vm, "from", from, "to", to, "ok",
			       !ret, "ms", (json_int_t)((sup_mono_ns() - t0) / 1000000));
	if (ret) {
		json_object_set_new(st->result, "error", json_string(e.reason));
		log_warn("vm %s: %s to %s failed: %s", vm, st->event, to, e.reason);
	} else {
		char detail[900];

		if (json_is_integer(json_object_get(out, "downtime_ms")))
			json_object_set(st->result, "downtime_ms", json_object_get(out, "downtime_ms"));
		snprintf(detail, sizeof(detail), "from %.64s to %.64s: %.700s", from, to,
			 str(st->mv, "reason"));
		sup_emit_named(s, vm, "", st->event, detail);
	}
	json_decref(out);
	json_decref(body);
	return NULL;
}

/* Carry out the plan's moves, a batch at a time (the moves of one batch
 * at once): the results, in plan order. */
static json_t *run_plan(struct sup *s, json_t *plan, const char *event, const atomic_bool *stop)
{
	json_t *moves = json_object_get(plan, "moves"), *results = json_array(), *mv;
	size_t n = json_array_size(moves), i;
	json_int_t batches = 0;
	struct step *steps = calloc(n ? n : 1, sizeof(*steps));

	if (!steps || !results) {
		free(steps);
		return results;
	}
	json_array_foreach(moves, i, mv)
		if (json_integer_value(json_object_get(mv, "batch")) + 1 > batches)
			batches = json_integer_value(json_object_get(mv, "batch")) + 1;
	for (json_int_t b = 0; b < batches && !(stop && atomic_load(stop)); b++) {
		json_array_foreach(moves, i, mv) {
			if (json_integer_value(json_object_get(mv, "batch")) != b)
				continue;
			steps[i] = (struct step){ .s = s, .mv = mv, .event = event };
			steps[i].started = !pthread_create(&steps[i].thread, NULL, step_run, &steps[i]);
			if (!steps[i].started)
				step_run(&steps[i]); /* no thread: in line */
		}
		for (i = 0; i < n; i++)
			if (steps[i].started) {
				pthread_join(steps[i].thread, NULL);
				steps[i].started = false;
			}
	}
	for (i = 0; i < n; i++)
		json_array_append_new(results, steps[i].result ? steps[i].result : json_null());
	free(steps);
	return results;
}

static int need_pool(struct sup *s, struct cerr *e)
{
	if (!move_pool_me(s) || !s->conf.pool->plan)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool (docs/pool.md: "
				"cella pool create, cella pool join)");
	return 0;
}

int sup_pool_host_target(struct sup *s, const char *host, char *address, size_t alen)
{
	const char *me = move_pool_me(s);
	char state[32];

	if (!me || !strcmp(host, me) ||
	    s->conf.pool->member(s->conf.pool_ctx, host, address, alen, state, sizeof(state)))
		return 0;
	return 1;
}

static int maintenance(struct sup *s, const char *host, json_t *body, const atomic_bool *stop,
		       json_t **out, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	json_t *v = json_object_get(body, "state"), *plan = NULL, *results;
	const char *me, *k;
	char detail[128];
	bool on;
	json_t *x;

	*out = NULL;
	if (need_pool(s, e))
		return -1;
	me = move_pool_me(s);
	json_object_foreach(body, k, x)
		if (strcmp(k, "state"))
			return cerr_set(e, CERR_INVALID, k, "unknown field");
	if (!json_is_string(v) || (strcmp(json_string_value(v), "on") &&
				   strcmp(json_string_value(v), "off")))
		return cerr_set(e, CERR_INVALID, "state", "expected \"on\" or \"off\"");
	if (strcmp(host, me))
		return cerr_set(e, CERR_NOT_FOUND, "host", "host %.64s is not this host (%s) and not "
				"a host of the pool", host, me);
	on = !strcmp(json_string_value(v), "on");
	if (ops->member_state_set(s->conf.pool_ctx, me, on ? "maintenance" : "up", e))
		return -1;
	snprintf(detail, sizeof(detail), "%s %s", me, on ? "on" : "off");
	sup_pool_event(s, "pool-host-maintenance", detail);
	if (!on) {
		*out = json_pack("{s:s, s:s}", "host", me, "state", "up");
		return 0;
	}
	/* Evacuate: what the plan places goes, batch by batch; what nobody
	 * can take stays (stuck, with the reasons). Running it again moves
	 * what is left. */
	if (ops->plan(s->conf.pool_ctx, me, &plan, e))
		return -1;
	keep_local(s, plan);
	log_info("pool: host %s in maintenance: %s", me,
		 json_string_value(json_object_get(plan, "summary")) ?: "");
	results = run_plan(s, plan, "vm-evacuated", stop);
	*out = json_pack("{s:s, s:s, s:o, s:o}", "host", me, "state", "maintenance", "plan", plan,
			 "results", results);
	return 0;
}

int sup_maintenance(struct sup *s, const char *host, json_t *body, json_t **out, struct cerr *e)
{
	return maintenance(s, host, body, NULL, out, e);
}

/* A cellad that starts on a host in maintenance that still runs VMs (it
 * stopped in the middle of an evacuation, or the state was set while it
 * was away) carries the evacuation on, from a thread of its own. */
struct maint_resume {
	struct sup *s;
	pthread_t thread;
	atomic_bool stop;
};

static bool runs_vms(struct sup *s)
{
	json_t *list = sup_list(s), *v;
	bool any = false;
	size_t i;

	json_array_foreach(list, i, v)
		any = any || !strcmp(str(v, "state"), "running") || !strcmp(str(v, "state"), "paused");
	json_decref(list);
	return any;
}

static void *resume_thread(void *arg)
{
	struct maint_resume *r = arg;
	struct sup *s = r->s;
	const char *me = move_pool_me(s);
	char addr[256], state[32];
	json_t *body, *out = NULL;
	struct cerr e = { 0 };

	if (!me || !s->conf.pool->member ||
	    s->conf.pool->member(s->conf.pool_ctx, me, addr, sizeof(addr), state, sizeof(state)) ||
	    strcmp(state, "maintenance") || !runs_vms(s))
		return NULL;
	log_info("pool: host %s is in maintenance and runs VMs: the evacuation goes on", me);
	body = json_pack("{s:s}", "state", "on");
	if (maintenance(s, me, body, &r->stop, &out, &e))
		log_warn("pool: host %s: the evacuation could not go on: %s", me, e.reason);
	json_decref(body);
	json_decref(out);
	return NULL;
}

struct maint_resume *sup_maint_resume_start(struct sup *s)
{
	struct maint_resume *r;

	if (!move_pool_me(s) || !(r = calloc(1, sizeof(*r))))
		return NULL;
	r->s = s;
	atomic_init(&r->stop, false);
	if (pthread_create(&r->thread, NULL, resume_thread, r)) {
		free(r);
		return NULL;
	}
	return r;
}

void sup_maint_resume_stop(struct maint_resume *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true); /* no new batch; the one under way ends */
	pthread_join(r->thread, NULL);
	free(r);
}

int sup_balance(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	json_t *plan = NULL, *v;
	bool dry = false;
	const char *k;

	*out = NULL;
	if (need_pool(s, e))
		return -1;
	json_object_foreach(body, k, v) {
		if (strcmp(k, "dry_run"))
			return cerr_set(e, CERR_INVALID, k, "unknown field");
		if (!json_is_boolean(v))
			return cerr_set(e, CERR_INVALID, k, "expected true or false");
		dry = json_is_true(v);
	}
	if (s->conf.pool->plan(s->conf.pool_ctx, NULL, &plan, e))
		return -1;
	json_object_set_new(plan, "dry_run", json_boolean(dry));
	if (!dry)
		json_object_set_new(plan, "results", run_plan(s, plan, "vm-balanced", NULL));
	*out = plan;
	return 0;
}

int sup_pool_load(struct sup *s, const char *uuid, json_t **out, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char owner[64] = "";
	struct vmdef def;
	struct vmrt *vm;
	int ret;

	*out = NULL;
	if (need_pool(s, e))
		return -1;
	ret = ops->owner_now(s->conf.pool_ctx, uuid, owner, sizeof(owner));
	if (ret)
		return sup_store_cerr(s, e, ret, "cannot read the VM's owner");
	if (strcmp(owner, move_pool_me(s)))
		return cerr_set(e, CERR_CONFLICT, "", "the pool says host %s owns VM %s, not this one",
				owner[0] ? owner : "(nobody)", uuid);
	pthread_mutex_lock(&s->reg_lock);
	for (vm = s->vms; vm && strcmp(vm->def.uuid, uuid); vm = vm->next)
		;
	pthread_mutex_unlock(&s->reg_lock);
	if (vm) /* loaded already (idempotent) */
		return (*out = json_pack("{s:s, s:b}", "uuid", uuid, "loaded", 0)) ? 0 : -1;
	ret = ops->vm_def(s->conf.pool_ctx, uuid, &def);
	if (ret)
		return sup_store_cerr(s, e, ret, "cannot read the VM's definition");
	vm = sup_register_def(s, &def);
	if (vm)
		sup_emit_named(s, def.name, "defined", "vm-handed-over", "owned by this host now");
	*out = json_pack("{s:s, s:s, s:b}", "uuid", uuid, "name", def.name, "loaded", 1);
	vmdef_free(&def);
	if (!vm)
		return cerr_set(e, CERR_EXISTS, "", "cannot register the VM here (a VM of its name?)");
	return 0;
}
