/* replica_vmdef.c: the replica as a VM definition on the target
 * (docs/replica.md, "The replica as a VM definition"). A replica kept here
 * is both its record (replicas/NAME/replica.json, replica_in.c) and a VM
 * NAME defined here with the source's UUID, powered off and marked a
 * replica (vmdef.replica: the source, the latest point), whose disks are
 * the latest point's layers. The core refuses to start or change such a VM
 * (sup_refuse_replica); a failover turns it into an ordinary VM on its run
 * layers, `replica delete` removes it.
 *
 * The two writes (record, definition) are ordered so that a cellad that
 * dies between them leaves a state its successor completes
 * (sup_replica_in_resume): the record is written first on creation,
 * failover and adoption, and goes first (renamed away) on deletion; at
 * start, each record is matched with its definition. Callers hold rep_lock
 * (then a VM's lock: rep_lock -> vm->lock, as the failover always did). */
#include "replica_in.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "replica_priv.h"
#include "replica_vmdef.h"

static const char *rec_str(json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

static const char *rec_uuid(json_t *rec)
{
	return json_string_value(json_object_get(json_object_get(rec, "vm"), "uuid")) ?: "";
}

/* The latest point every disk has, into point ("" none). */
static void latest_point(struct sup *s, const char *name, json_t *rec, char *point, size_t len)
{
	json_t *st = rep_in_status(s, name, rec), *pts = json_object_get(st, "points");

	snprintf(point, len, "%s", json_string_value(json_array_get(pts, json_array_size(pts) - 1))
		 ?: "");
	json_decref(st);
}

/* The definition of replica name: the source's, off, never started by
 * itself, its disks the point's layers (the stores before a first point),
 * marked. NULL when out of memory. */
static json_t *replica_body(struct sup *s, const char *name, json_t *rec, const char *point)
{
	json_t *vmj = json_deep_copy(json_object_get(rec, "vm")), *dk;
	size_t i;

	if (!vmj)
		return NULL;
	json_object_set_new(vmj, "autostart", json_false());
	json_object_set_new(vmj, "ha", json_false());
	json_object_set_new(vmj, "replica", json_pack("{s:o, s:o}", "source", rec_str(rec, "from")
						      ? json_string(rec_str(rec, "from")) : json_null(),
						      "last_point", point[0] ? json_string(point)
						      : json_null()));
	json_array_foreach(json_object_get(vmj, "disks"), i, dk) {
		const char *id = json_string_value(json_object_get(dk, "id")) ?: "";
		char path[PATH_MAX] = "", file[96], err[256];
		struct replica *r = NULL;
		struct cerr e = { 0 };

		if (point[0] && !rep_in_store_open(s, name, id, &r, &e) &&
		    replica_point_path(r, point, path, sizeof(path), err, sizeof(err)))
			path[0] = 0;
		replica_close(r);
		snprintf(file, sizeof(file), "disk-%s", id);
		if (!path[0] && rep_in_dir(s, name, file, path, sizeof(path)))
			continue;
		json_object_set_new(dk, "path", json_string(path));
		json_object_set_new(dk, "format", json_string("qcow2"));
	}
	return vmj;
}

/* Replace vm's definition by body's (vm locked): stored first. 0 or -1. */
static int put_def(struct sup *s, struct vmrt *vm, json_t *body, struct cerr *e)
{
	struct vmdef next;
	int ret;

	if (vmdef_from_json(&next, body, e) ||
	    (!next.replica.on && sup_check_paths(s, &next, NULL, ROLE_ADMIN, e))) {
		vmdef_free(&next);
		return -1;
	}
	ret = store_vm_put(s->db, &next);
	if (ret) {
		vmdef_free(&next);
		return sup_store_cerr(s, e, ret, "cannot store the definition");
	}
	vmdef_free(&vm->def);
	vm->def = next;
	sup_vm_changed(vm);
	return 0;
}

int rep_vmdef_check(struct sup *s, const char *name, const char *uuid, struct cerr *e)
{
	struct cerr ve = { 0 };
	struct vmrt *vm = sup_vm_lock_name(s, name, &ve);
	size_t n;
	struct vmrt **all;
	int ret = 0;

	if (vm) {
		if (!vm->def.replica.on || strcmp(vm->def.uuid, uuid))
			ret = cerr_set(e, CERR_EXISTS, "vm", "a VM called '%s' is defined here (%s): "
				       "a replica of the VM needs its name (replicate to another "
				       "host, or delete or rename this one)", name,
				       vm->def.replica.on ? "the replica of another VM" :
				       "not a replica");
		sup_vm_unlock(s, vm);
		return ret;
	}
	all = sup_vm_pin_all(s, &n);
	for (size_t i = 0; i < n && !ret; i++) {
		pthread_mutex_lock(&all[i]->lock);
		if (!all[i]->deleted && !strcmp(all[i]->def.uuid, uuid))
			ret = cerr_set(e, CERR_EXISTS, "vm", "VM '%s' here has the UUID of '%s' (%s): a "
				       "replica keeps its VM's UUID, so it cannot be kept here",
				       all[i]->def.name, name, uuid);
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return ret;
}

int rep_vmdef_define(struct sup *s, const char *name, json_t *rec, bool adopt, struct cerr *e)
{
	char point[CBT_NAME_MAX], detail[300];
	struct cerr ve = { 0 };
	json_t *body;
	struct vmrt *vm;
	int ret = -1;

	latest_point(s, name, rec, point, sizeof(point));
	body = replica_body(s, name, rec, point);
	if (!body)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	snprintf(detail, sizeof(detail), "a replica of the VM on %s", rec_str(rec, "from") ?:
		 "another host");
	vm = sup_vm_lock_name(s, name, &ve);
	if (!vm) {
		vm = sup_register(s, body, EV_DEFINE, detail, ROLE_ADMIN, e);
		if (vm)
			ret = 0;
		else if (s->conf.pool && (e->kind == CERR_EXISTS || e->kind == CERR_CONFLICT)) {
			char why[sizeof(e->reason)];

			snprintf(why, sizeof(why), "%s", e->reason);
			cerr_set(e, CERR_CONFLICT, "vm", "%.200s; names are unique in a pool, so "
				 "the replica of a VM of this pool cannot be kept on a host of it: "
				 "replicate to a host outside the pool, or in another pool", why);
		}
	} else if (strcmp(vm->def.uuid, rec_uuid(rec)) || (!vm->def.replica.on && !adopt) ||
		   state_active(vm->state) || vm->busy) {
		cerr_set(e, CERR_EXISTS, "vm", "VM '%s' here is %s: it cannot be the replica's "
			 "definition", name, strcmp(vm->def.uuid, rec_uuid(rec)) ? "another VM (its "
			 "UUID differs)" : !vm->def.replica.on && !adopt ? "not a replica" :
			 "in use (running, or busy)");
	} else if (!(ret = put_def(s, vm, body, e)) && adopt) {
		sup_emit(s, vm, "changed", detail);
	}
	if (vm)
		sup_vm_unlock(s, vm);
	json_decref(body);
	return ret;
}

void rep_vmdef_point(struct sup *s, const char *name, json_t *rec)
{
	char point[CBT_NAME_MAX];
	struct cerr e = { 0 };
	struct vmrt *vm;
	json_t *body;

	latest_point(s, name, rec, point, sizeof(point));
	vm = sup_vm_lock_name(s, name, &e);
	if (!vm)
		return;
	/* One store write per point every disk has: the disks shown stay the
	 * latest point's layers. */
	if (vm->def.replica.on && !strcmp(vm->def.uuid, rec_uuid(rec)) &&
	    strcmp(vm->def.replica.last_point, point) && (body = replica_body(s, name, rec, point))) {
		if (put_def(s, vm, body, &e))
			log_warn("replica %s: its definition still shows point %s: %s", name,
				 vm->def.replica.last_point, e.reason);
		json_decref(body);
	}
	sup_vm_unlock(s, vm);
}

int rep_vmdef_release(struct sup *s, const char *name, json_t *vmj, const char *detail,
		      struct cerr *e)
{
	struct cerr ve = { 0 };
	struct vmrt *vm = sup_vm_lock_name(s, name, &ve);
	int ret;

	if (!vm) { /* a replica made before definitions (or lost): defined now */
		vm = sup_register(s, vmj, EV_DEFINE, detail, ROLE_ADMIN, e);
		if (!vm)
			return -1;
		sup_vm_unlock(s, vm);
		return 0;
	}
	if (!vm->def.replica.on || strcmp(vm->def.uuid, json_string_value(json_object_get(vmj,
										    "uuid")) ?: "")) {
		cerr_set(e, CERR_EXISTS, "name", "VM '%s' here is not this replica's definition "
			 "(%s): delete or rename it first", name, vm->def.replica.on ?
			 "another VM's replica" : "an ordinary VM");
		sup_vm_unlock(s, vm);
		return -1;
	}
	ret = put_def(s, vm, vmj, e);
	if (!ret)
		sup_emit(s, vm, "changed", detail);
	sup_vm_unlock(s, vm);
	return ret;
}

void rep_vmdef_remove(struct sup *s, const char *name, const char *uuid)
{
	struct cerr e = { 0 };
	struct vmrt *vm = sup_vm_lock_name(s, name, &e);

	if (!vm)
		return;
	if (vm->def.replica.on && !strcmp(vm->def.uuid, uuid) && !state_active(vm->state) &&
	    sup_remove(s, vm, "deleted", "its replica was deleted"))
		log_warn("replica %s: its definition stays (the store refused); it goes at the next "
			 "start of cellad", name);
	sup_vm_unlock(s, vm);
}

/* The failed-over VM's definition: the record's, on its run layers. */
json_t *rep_vmdef_run_body(struct sup *s, const char *name, json_t *rec, const char *point)
{
	json_t *vmj = json_deep_copy(json_object_get(rec, "vm")), *dk;
	size_t i;

	json_array_foreach(json_object_get(vmj, "disks"), i, dk) {
		char file[128], path[PATH_MAX];

		snprintf(file, sizeof(file), "run-%s-%s.qcow2", json_string_value(json_object_get(dk,
			 "id")) ?: "", point);
		if (rep_in_dir(s, name, file, path, sizeof(path))) {
			json_decref(vmj);
			return NULL;
		}
		json_object_set_new(dk, "path", json_string(path));
		json_object_set_new(dk, "format", json_string("qcow2"));
	}
	return vmj;
}

/* At start: each record matched with its definition (see the top). */
static void resume_one(struct sup *s, const char *name, json_t *rec)
{
	const char *state = rec_str(rec, "state") ?: "replicating";
	struct cerr e = { 0 };
	struct vmrt *vm = sup_vm_lock_name(s, name, &e);
	bool marked = vm && vm->def.replica.on && !strcmp(vm->def.uuid, rec_uuid(rec));
	bool plain = vm && !vm->def.replica.on && !strcmp(vm->def.uuid, rec_uuid(rec)) &&
		     !state_active(vm->state);

	if (vm)
		sup_vm_unlock(s, vm);
	if (!strcmp(state, "replicating")) {
		/* No definition: created (or made by an older cellad) without
		 * one; an ordinary one of the same VM: an adoption cut short. */
		if ((!vm || plain) && rep_vmdef_define(s, name, rec, plain, &e))
			log_warn("replica %s: no VM definition for it: %s", name, e.reason);
		else if (!vm || plain)
			log_info("replica %s: its VM definition %s", name, plain ? "marked a replica "
				 "(an adoption cut short)" : "made");
		else if (marked)
			rep_vmdef_point(s, name, rec);
	} else if (!strcmp(state, "failed-over") && marked) {
		/* The failover recorded, its definition not turned yet. */
		const char *point = rec_str(rec, "failed_over_point") ?: "";
		json_t *body = rep_vmdef_run_body(s, name, rec, point);
		char path[PATH_MAX];
		struct stat st;
		bool whole = body != NULL;
		size_t i;
		json_t *dk;

		json_array_foreach(json_object_get(body, "disks"), i, dk) {
			snprintf(path, sizeof(path), "%s", json_string_value(json_object_get(dk, "path")));
			whole &= !stat(path, &st);
		}
		if (whole && !rep_vmdef_release(s, name, body, "failed over from its replica "
						"(finished at cellad's start)", &e))
			log_warn("replica %s: failover to point %s finished: VM %s is defined here", name,
				 point, name);
		else
			log_err("replica %s: failed over to point %s, but its VM definition is still the "
				"replica's (%s): fail over again", name, point, whole ? e.reason :
				"a run layer is missing");
		json_decref(body);
	}
}

void sup_replica_in_resume(struct sup *s)
{
	char dir[PATH_MAX];
	struct vmrt **all;
	struct dirent *de;
	size_t n;
	DIR *d;

	pthread_mutex_lock(&s->rep_lock);
	d = rep_in_root(s, dir, sizeof(dir)) ? NULL : opendir(dir);
	while (d && (de = readdir(d))) {
		struct cerr e = { 0 };
		json_t *rec;

		if (!vmdef_name_valid(de->d_name) ||
		    !(rec = rep_in_rec_load(s, de->d_name, &e)))
			continue;
		/* NAME.gone, NAME.pre-reverse-T: kept aside, not replicas */
		if (!strcmp(json_string_value(json_object_get(json_object_get(rec, "vm"), "name")) ?:
			    "", de->d_name) && !rep_broker_foreign(s, de->d_name))
			resume_one(s, de->d_name, rec);
		json_decref(rec);
	}
	if (d)
		closedir(d);
	/* A definition marked a replica whose record went: a deletion cut short. */
	all = sup_vm_pin_all(s, &n);
	for (size_t i = 0; i < n; i++) {
		struct cerr e = { 0 };
		json_t *rec = NULL;
		char name[VMDEF_NAME_MAX + 1], uuid[40];
		bool orphan;

		pthread_mutex_lock(&all[i]->lock);
		orphan = !all[i]->deleted && all[i]->def.replica.on;
		/* only a definition whose disks were the replica's stores */
		for (unsigned k = 0; orphan && k < all[i]->def.nr_disks; k++)
			orphan = !rep_in_dir(s, all[i]->def.name, NULL, dir, sizeof(dir)) &&
				 !strncmp(all[i]->def.disks[k].path, dir, strlen(dir)) &&
				 all[i]->def.disks[k].path[strlen(dir)] == '/';
		snprintf(name, sizeof(name), "%s", all[i]->def.name);
		snprintf(uuid, sizeof(uuid), "%s", all[i]->def.uuid);
		pthread_mutex_unlock(&all[i]->lock);
		if (orphan && (rec = rep_in_rec_load(s, name, &e)) && !strcmp(rec_uuid(rec), uuid))
			orphan = false;
		json_decref(rec);
		if (orphan) {
			log_warn("replica %s: its record is gone (a deletion cut short): the "
				 "definition goes too", name);
			rep_vmdef_remove(s, name, uuid);
		}
	}
	sup_vm_unpin_all(s, all, n);
	pthread_mutex_unlock(&s->rep_lock);
}
