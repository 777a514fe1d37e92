/* sup_place.c: the core's side of placement on start (docs/pool.md,
 * "Placement on start"): a start in a pool asks the pool for a host; this
 * host starts the VM, or hands it over (its owner key swapped to the chosen
 * host while it is stopped and no action runs on it, then forgotten here,
 * its records kept) and forwards the start there. And the receiving side:
 * VMs given to this host are loaded (never started) from the pool's
 * records. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "storage.h"
#include "sup_priv.h"

#define PLACE_LOAD_WAIT_MS 10000
#define PLACE_LOAD_POLL_MS 50

bool sup_place_has(struct sup *s, const char *uuid)
{
	bool has = false;

	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *vm = s->vms; vm && !has; vm = vm->next)
		has = !strcmp(vm->def.uuid, uuid);
	pthread_mutex_unlock(&s->reg_lock);
	return has;
}

void sup_place_adopt(struct sup *s, const struct vmdef *def)
{
	char detail[128];
	bool uuid = false, name = false;

	pthread_mutex_lock(&s->reg_lock);
	for (struct vmrt *vm = s->vms; vm; vm = vm->next) {
		uuid = uuid || !strcmp(vm->def.uuid, def->uuid);
		name = name || !strcmp(vm->def.name, def->name);
	}
	pthread_mutex_unlock(&s->reg_lock);
	if (uuid) /* here already (e.g. moving in) */
		return;
	if (name) {
		log_err("vm %s: given to this host, but another VM of that name is here: not loaded",
			def->name);
		return;
	}
	if (!sup_register_def(s, def)) {
		log_err("vm %s: given to this host, but cannot be registered", def->name);
		return;
	}
	snprintf(detail, sizeof(detail), "its owner key names this host: loaded (not started)");
	log_info("vm %s: %s", def->name, detail);
	sup_emit_named(s, def->name, "defined", "vm-received", detail);
}

static const char *pool_me(struct sup *s)
{
	const struct sup_pool_ops *ops = s->conf.pool;

	return ops && ops->host && ops->place && ops->give && ops->uuid_of && ops->owner_now ?
	       ops->host(s->conf.pool_ctx) : NULL;
}

/* body {host?, uuid?}: the requested host ("" none) and, from an owner
 * handing the VM over, its uuid ("" none). */
static int parse_body(json_t *body, bool pool, char *host, size_t hlen, char *uuid,
		      size_t ulen, struct cerr *e)
{
	const char *key;
	json_t *v;

	host[0] = uuid[0] = 0;
	if (!body)
		return 0;
	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach(body, key, v) {
		const char *str = json_string_value(v);
		bool is_host = !strcmp(key, "host");

		if (!is_host && strcmp(key, "uuid"))
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		if (!pool)
			return cerr_set(e, CERR_INVALID, key, "only in a pool");
		if (!str || !*str || strlen(str) >= (is_host ? hlen : ulen) || strchr(str, '/'))
			return cerr_set(e, CERR_INVALID, key, is_host ? "expected the name of a host "
					"of the pool" : "expected the VM's UUID");
		snprintf(is_host ? host : uuid, is_host ? hlen : ulen, "%s", str);
	}
	return 0;
}

/* A disk (or a saved state) that only this host has: the VM starts here. */
static bool local_only(struct sup *s, const struct vmrt *vm)
{
	if (vm->state == VS_SAVED)
		return true;
	for (unsigned i = 0; i < vm->def.nr_disks; i++)
		if (!s->conf.storage || !storage_on_pool(s->conf.storage, vm->def.disks[i].path))
			return true;
	return false;
}

/* The VM called name is not here: given to this host and not loaded yet
 * (wait for the pool's thread to load it), or owned by another host now.
 * The VM pinned and locked, or NULL with e. */
static struct vmrt *lock_given(struct sup *s, const char *me, const char *name,
			       const char *given, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char uuid[40], owner[64];
	struct vmrt *vm = NULL;
	int ret;

	/* The uuid the handing owner sent, or the cache's (a start sent here
	 * by a user: the watch has brought the VM, or it is unknown). */
	if (given[0])
		snprintf(uuid, sizeof(uuid), "%s", given);
	else if (ops->uuid_of(s->conf.pool_ctx, name, uuid, sizeof(uuid)) <= 0)
		return NULL; /* e: not found */
	ret = ops->owner_now(s->conf.pool_ctx, uuid, owner, sizeof(owner));
	if (ret) {
		sup_store_cerr(s, e, ret, "cannot read the VM's owner");
		return NULL;
	}
	if (strcmp(owner, me)) {
		cerr_set(e, CERR_CONFLICT, "", "VM %s is owned by host %s now (placement handed "
			 "it over, or another start won): start it there", name,
			 owner[0] ? owner : "(nobody)");
		return NULL;
	}
	for (int waited = 0; waited < PLACE_LOAD_WAIT_MS; waited += PLACE_LOAD_POLL_MS) {
		struct timespec ts = { 0, PLACE_LOAD_POLL_MS * 1000000L };
		struct cerr ignore = { 0 };

		if ((vm = sup_vm_lock_name(s, name, &ignore)))
			return vm;
		nanosleep(&ts, NULL); /* the pool's thread loads it (ha.c's period) */
	}
	cerr_set(e, CERR_UNAVAILABLE, "", "VM %s was given to this host and is not loaded yet: "
		 "try again", name);
	return NULL;
}

/* etcd must name this host the owner of vm (locked). 0, or -1 with e. */
static int check_owner(struct sup *s, struct vmrt *vm, const char *me, struct cerr *e)
{
	char owner[64];
	int ret = s->conf.pool->owner_now(s->conf.pool_ctx, vm->def.uuid, owner, sizeof(owner));

	if (ret)
		return sup_store_cerr(s, e, ret, "cannot read the VM's owner");
	if (strcmp(owner, me))
		return cerr_set(e, CERR_CONFLICT, "", "VM %s is owned by host %s now, not by this "
				"host: start it there", vm->def.name, owner[0] ? owner : "(nobody)");
	return 0;
}

static void add_placement(json_t *out, const struct sup_place_out *po)
{
	if (json_is_object(out))
		json_object_set_new(out, "placement", json_pack("{s:s, s:s}", "host", po->host,
								"reason", po->reason));
}

/* Hand the stopped VM (locked, pinned; unlocked on return) to po->host,
 * then forward the start there. */
static int hand_over(struct sup *s, struct vmrt *vm, const struct sup_place_out *po,
		     enum role role, const char *who, long *status, json_t **out, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char url[128], name[sizeof(vm->def.name)], uuid[sizeof(vm->def.uuid)], detail[600];
	json_t *body, *reply = NULL;
	char *text;
	int ret;

	snprintf(name, sizeof(name), "%s", vm->def.name);
	snprintf(uuid, sizeof(uuid), "%s", vm->def.uuid);
	vm->busy = true; /* no other action (a start here) until it is gone */
	vm->acts++;
	pthread_mutex_unlock(&vm->lock);
	ret = ops->give(s->conf.pool_ctx, uuid, po->host);
	if (ret && ret != -EPERM) {
		/* A commit whose reply was lost (repeated on another member,
		 * its compare then fails) may have been applied: etcd says. */
		char now[64];

		if (!ops->owner_now(s->conf.pool_ctx, uuid, now, sizeof(now)) &&
		    !strcmp(now, po->host))
			ret = 0;
	}
	pthread_mutex_lock(&vm->lock);
	if (ret) {
		vm->busy = false;
		vm->acts++;
		sup_vm_changed(vm);
		sup_vm_unlock(s, vm);
		if (ret == -EPERM)
			return cerr_set(e, CERR_CONFLICT, "", "this host does not own VM %s now: "
					"another host does", name);
		return sup_store_cerr(s, e, ret, "cannot hand the VM over");
	}
	snprintf(detail, sizeof(detail), "to %s: %.500s", po->host, po->reason);
	sup_forget(s, vm, "vm-handed-over", detail);
	sup_vm_unlock(s, vm);
	snprintf(url, sizeof(url), "/v1/vms/%s/start", name);
	body = json_pack("{s:s, s:s}", "host", po->host, "uuid", uuid);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	/* The chosen host loads it from the pool's records if the watch has
	 * not brought it yet (lock_given), and starts it. */
	ret = ops->forward(s->conf.pool_ctx, po->host, po->address, "POST", url, text, role, who,
			   status, &reply, e);
	free(text);
	if (ret) {
		snprintf(e->reason + strlen(e->reason), sizeof(e->reason) - strlen(e->reason),
			 " (the VM is host %s's now, stopped)", po->host);
		return -1;
	}
	add_placement(reply, po);
	*out = reply;
	return 0;
}

int sup_place_start(struct sup *s, const char *name, json_t *body, enum role role,
		    const char *who, long *status, json_t **out, bool *pending, struct cerr *e)
{
	const char *me = pool_me(s);
	struct sup_place_req req = { 0 };
	struct sup_place_out po;
	char host[64], group[sizeof(((struct vmdef *)0)->anti_affinity)], detail[600];
	char uuid[40], vname[VMDEF_NAME_MAX + 1], given[40];
	struct vmrt *vm;
	int ret;

	*status = 200;
	*out = NULL;
	*pending = false;
	if (parse_body(body, me != NULL, host, sizeof(host), given, sizeof(given), e))
		return -1;
	if (!me)
		return sup_action(s, name, SUP_START, NULL, out, pending, e);
	vm = sup_vm_lock_name(s, name, e);
	if (!vm && !(vm = lock_given(s, me, name, given, e)))
		return -1;
	if (given[0] && strcmp(given, vm->def.uuid)) {
		cerr_set(e, CERR_CONFLICT, "uuid", "VM %s here is not the one given (%s)", name,
			 given);
		sup_vm_unlock(s, vm);
		return -1;
	}
	if (vm->busy || vm->def.replica.on) {
		if (vm->def.replica.on) {
			sup_refuse_replica(vm, e);
			sup_vm_unlock(s, vm);
			return -1;
		}
		cerr_set(e, CERR_STATE, "state", "another action on this VM is in progress");
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		sup_vm_unlock(s, vm);
		return -1;
	}
	if (lifecycle_request_check(REQ_START, vm->state, e)) {
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		sup_vm_unlock(s, vm);
		return -1;
	}
	/* Registered here and not busy means owned here, but etcd is the
	 * judge (a hand-over whose reply was lost): read it once per start. */
	if ((ret = check_owner(s, vm, me, e))) {
		sup_vm_unlock(s, vm);
		return ret;
	}
	snprintf(uuid, sizeof(uuid), "%s", vm->def.uuid);
	snprintf(vname, sizeof(vname), "%s", vm->def.name);
	snprintf(group, sizeof(group), "%s", vm->def.anti_affinity);
	req.uuid = uuid;
	req.name = vname;
	req.memory_mib = vm->def.memory_mib;
	req.memory_max_mib = vm->def.memory_max_mib;
	req.cpus = vm->def.cpus;
	req.group = group;
	req.hard = vm->def.anti_affinity_hard;
	req.local_only = local_only(s, vm);
	req.host = host[0] ? host : NULL;
	if (s->conf.pool->place(s->conf.pool_ctx, &req, &po, e)) {
		sup_vm_unlock(s, vm);
		return -1;
	}
	snprintf(detail, sizeof(detail), "%s: %.500s", po.host, po.reason);
	log_info("vm %s: placement: %s", vname, detail);
	sup_emit(s, vm, "vm-placed", detail);
	if (strcmp(po.host, me))
		return hand_over(s, vm, &po, role, who, status, out, e);
	sup_vm_unlock(s, vm);
	ret = sup_action(s, vname, SUP_START, NULL, out, pending, e);
	if (ret && e->kind == CERR_NOT_FOUND)
		return cerr_set(e, CERR_CONFLICT, "", "VM %s was handed over to another host while "
				"this start was placed: start it there", vname);
	if (!ret)
		add_placement(*out, &po);
	return ret;
}

int sup_place_name_taken(struct sup *s, const char *name, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char host[64] = "", addr[256];
	struct cerr ignore = { 0 };

	if (ops && ops->owner_of &&
	    ops->owner_of(s->conf.pool_ctx, name, host, sizeof(host), addr, sizeof(addr),
			  &ignore) > 0)
		return cerr_set(e, CERR_EXISTS, "name", "a VM called %s exists in the pool, on host "
				"%s: names are unique pool-wide", name, host);
	return cerr_set(e, CERR_EXISTS, "name", "a VM called %s exists in the pool (on another "
			"host): names are unique pool-wide", name);
}
