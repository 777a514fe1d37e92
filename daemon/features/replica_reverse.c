/* replica_reverse.c: reverse replication (docs/replica.md, "Planned
 * failover and reverse replication"). After a failover the VM runs on the
 * old target (B); `reverse`, run there, makes the old primary (A) keep a
 * replica of it and starts replicating to A:
 *
 *   B: POST A /v1/replicas/NAME/adopt {from, uuid, point, keep, disk_sizes}
 *   A: the VM NAME, off, becomes the replica's record; each of its disks
 *      becomes a point store. When A's change tracking vouches that a disk
 *      has not changed since `point` (the point B failed over to: B's disks
 *      track changes from it), the disk is that point, without a copy: the
 *      base of a new store (a qcow2 layer over the disk), or, when the disk
 *      is itself a failover's layer over A's store (a failback), the next
 *      point of that store. Otherwise the store starts empty: a full copy.
 *   B: replication enabled towards A (replica_out.c): it follows A's latest
 *      point, so its first set is an incremental since `point`.
 *
 * Serialised with the rest of the replicas by rep_lock. */
#include "sup_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"
#include "replica.h"
#include "replica_priv.h"
#include "replica_vmdef.h"
#include "replica_xfer.h"

struct adopt_disk {
	char id[40];
	char *path;
	int fmt;
	bool cbt;
	uint64_t size;
};

/* Whether disk d's tracking vouches it has not changed since point's cut
 * (the point is valid and its bitmap empty); why not in why. */
static bool unchanged_since(const struct adopt_disk *d, const char *point, char *why,
			    size_t len)
{
	struct disk *img;
	struct cbt *c;
	const uint8_t *bits;
	char err[256];
	uint64_t nb, size;
	int ret;

	if (!d->cbt) {
		snprintf(why, len, "disk %s has no change tracking here", d->id);
		return false;
	}
	if (disk_open(&img, d->path, d->fmt, DISK_RDONLY, err, sizeof(err))) {
		snprintf(why, len, "disk %s: %s", d->id, err);
		return false;
	}
	size = disk_size(img);
	disk_close(img);
	if (size != d->size) {
		snprintf(why, len, "disk %s has %llu bytes here, %llu there", d->id,
			 (unsigned long long)size, (unsigned long long)d->size);
		return false;
	}
	if (cbt_open(&c, d->path, size, err, sizeof(err))) {
		snprintf(why, len, "disk %s: change tracking: %s", d->id, err);
		return false;
	}
	bits = cbt_point_bits(c, point, &ret);
	nb = cbt_nr_blocks(c);
	for (uint64_t i = 0; bits && i < (nb + 7) / 8; i++)
		if (bits[i]) {
			snprintf(why, len, "disk %s changed here after point %s", d->id, point);
			bits = NULL;
			ret = 0;
			break;
		}
	if (!bits && ret)
		snprintf(why, len, "disk %s: %s point %s here", d->id, ret == -ESTALE ?
			 "the tracking lost (host crash)" : "no", point);
	cbt_close(c, true);
	return bits != NULL;
}

/* Is path the layer a failover made here for disk id (in replica dir)? */
static bool is_run_layer(struct sup *s, const char *name, const char *id, const char *path)
{
	char prefix[PATH_MAX], file[64];

	if ((size_t)snprintf(file, sizeof(file), "run-%s-", id) >= sizeof(file) ||
	    rep_in_dir(s, name, file, prefix, sizeof(prefix)))
		return false;
	return !strncmp(path, prefix, strlen(prefix));
}

static int store_of(struct sup *s, const char *name, const char *id, bool create,
		    struct replica **r, struct cerr *e)
{
	char file[64], path[PATH_MAX], err[256];
	int ret;

	if ((size_t)snprintf(file, sizeof(file), "disk-%s", id) >= sizeof(file))
		return cerr_set(e, CERR_INVALID, "disk", "id too long");
	if (rep_in_dir(s, name, file, path, sizeof(path)))
		return cerr_set(e, CERR_INVALID, "name", "name too long");
	ret = replica_open(r, path, create, err, sizeof(err));
	return ret ? cerr_set(e, ret == -EBUSY ? CERR_UNAVAILABLE : CERR_INTERNAL, "", "%s", err)
		   : 0;
}

/* The stores of the record, zero-copy (see the top). failed_over: the
 * point the disks' layers rest on (a failback), or NULL. */
static int adopt_stores(struct sup *s, const char *name, struct adopt_disk *dk, unsigned nr,
			const char *point, const char *failed_over, struct cerr *e)
{
	char err[256], cbtp[PATH_MAX + 8];
	struct replica *r;
	int ret;

	for (unsigned i = 0; i < nr; i++) {
		if (store_of(s, name, dk[i].id, !failed_over, &r, e))
			return -1;
		if (failed_over) {
			ret = replica_drop_after(r, failed_over, err, sizeof(err));
			if (!ret)
				ret = replica_adopt_layer(r, dk[i].path, point, err, sizeof(err));
			if (!ret) {
				snprintf(cbtp, sizeof(cbtp), "%s.cbt", dk[i].path);
				unlink(cbtp);
			}
		} else {
			ret = replica_adopt_base(r, dk[i].path, dk[i].fmt, point, err, sizeof(err));
		}
		replica_close(r);
		if (ret)
			return cerr_set(e, CERR_INTERNAL, "", "disk %s: %s", dk[i].id, err);
	}
	return 0;
}

static int rm_tree(const char *path)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", path);
	return system(cmd);
}

int sup_replica_adopt(struct sup *s, const char *name, json_t *body, json_t **out,
		      struct cerr *e)
{
	const char *from = json_string_value(json_object_get(body, "from"));
	const char *uuid = json_string_value(json_object_get(body, "uuid"));
	const char *point = json_string_value(json_object_get(body, "point"));
	json_t *sizes = json_object_get(body, "disk_sizes"), *jkeep = json_object_get(body, "keep");
	json_t *rec = NULL, *def = NULL, *conf = NULL, *v;
	struct adopt_disk dk[VMDEF_MAX_DISKS];
	char dir[PATH_MAX], aside[PATH_MAX + 64], why[384] = "", failed_over[CBT_NAME_MAX] = "";
	const char *k;
	unsigned nr = 0;
	bool vouched, fresh = false;
	struct vmrt *vm;
	struct cerr ve = { 0 };
	int ret = -1;

	*out = NULL;
	json_object_foreach(body, k, v)
		if (strcmp(k, "from") && strcmp(k, "uuid") && strcmp(k, "point") &&
		    strcmp(k, "disk_sizes") && strcmp(k, "keep"))
			return cerr_set(e, CERR_INVALID, k, "unknown field");
	if (!from || !uuid || !json_is_object(sizes) || (point && !replica_name_ok(point)) ||
	    (jkeep && (!json_is_integer(jkeep) || json_integer_value(jkeep) < 1 ||
		       json_integer_value(jkeep) > 1000)))
		return cerr_set(e, CERR_INVALID, !from ? "from" : !uuid ? "uuid" :
				!json_is_object(sizes) ? "disk_sizes" : jkeep && !json_is_integer(jkeep)
				? "keep" : "point", "expected {from, uuid, point?, keep?, disk_sizes}");
	/* Done already (an answer lost): the record is there, the VM gone. */
	pthread_mutex_lock(&s->rep_lock);
	rec = rep_in_rec_load(s, name, &ve);
	vm = sup_vm_lock_name(s, name, &ve);
	if (!vm) {
		if (rec && !strcmp(json_string_value(json_object_get(json_object_get(rec, "vm"),
								       "uuid")) ?: "", uuid) &&
		    !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "replicating")) {
			*out = rep_in_status(s, name, rec);
			ret = 0;
		} else {
			cerr_set(e, CERR_NOT_FOUND, "name", "no VM '%s' here to keep a replica in",
				 name);
		}
		goto unlock;
	}
	if (vm->def.replica.on && rec && !strcmp(vm->def.uuid, uuid) &&
	    !strcmp(json_string_value(json_object_get(json_object_get(rec, "vm"), "uuid")) ?: "",
		    uuid) &&
	    !strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "replicating")) {
		sup_vm_unlock(s, vm); /* done already: the VM is the replica's definition */
		*out = rep_in_status(s, name, rec);
		ret = 0;
		goto unlock;
	}
	if (strcmp(vm->def.uuid, uuid) || state_active(vm->state) || vm->def.replica.on) {
		if (state_active(vm->state))
			cerr_set(e, CERR_STATE, "name", "VM '%s' runs here: it cannot become a replica "
				 "of the one on %s (turn it off first: both must not run)", name, from);
		else if (strcmp(vm->def.uuid, uuid))
			cerr_set(e, CERR_CONFLICT, "name", "VM '%s' here is another VM than the one on "
				 "%s (its UUID differs)", name, from);
		else
			cerr_set(e, CERR_CONFLICT, "name", "VM '%s' here is a replica already, not in "
				 "the state a reverse needs (cella replica show %s here)", name, name);
		sup_vm_unlock(s, vm);
		goto unlock;
	}
	def = vmdef_to_json(&vm->def);
	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		json_t *sz = json_object_get(sizes, vm->def.disks[i].id);

		snprintf(dk[nr].id, sizeof(dk[nr].id), "%s", vm->def.disks[i].id);
		dk[nr].path = strdup(vm->def.disks[i].path);
		dk[nr].fmt = sup_disk_fmt(&vm->def.disks[i]);
		dk[nr].cbt = vm->def.disks[i].cbt;
		dk[nr].size = (uint64_t)json_integer_value(sz);
		nr++;
		if (!json_is_integer(sz) && !why[0])
			snprintf(why, sizeof(why), "disk %s is not on %s", vm->def.disks[i].id, from);
	}
	sup_vm_unlock(s, vm);
	for (unsigned i = 0; i < nr; i++)
		if (!dk[i].path) {
			cerr_set(e, CERR_INTERNAL, "", "out of memory");
			goto unlock;
		}
	if (json_object_size(sizes) != nr && !why[0])
		snprintf(why, sizeof(why), "the VMs' disks differ");
	/* Replication from here to there ends (an unplanned failover's source
	 * back: its shipper resumed). */
	if (!rep_out_detach(s, name, &conf, &ve)) {
		snprintf(dir, sizeof(dir), "%s/vms/%s/replica.json", s->conf.state_dir, uuid);
		unlink(dir);
		rep_spool_drop(s, uuid, NULL);
	}
	if (rec) {
		bool run = !strcmp(json_string_value(json_object_get(rec, "state")) ?: "",
				   "failed-over");

		for (unsigned i = 0; run && i < nr; i++)
			run = is_run_layer(s, name, dk[i].id, dk[i].path);
		if (!run) {
			cerr_set(e, CERR_EXISTS, "name", "a replica of '%s' is here already (cella "
				 "replica delete first)", name);
			goto unlock;
		}
		snprintf(failed_over, sizeof(failed_over), "%s",
			 json_string_value(json_object_get(rec, "failed_over_point")) ?: "");
	}
	vouched = point && !why[0];
	for (unsigned i = 0; vouched && i < nr; i++)
		vouched = unchanged_since(&dk[i], point, why, sizeof(why));
	if (!point && !why[0])
		snprintf(why, sizeof(why), "no common point");
	if (rep_in_dir(s, name, NULL, dir, sizeof(dir))) {
		cerr_set(e, CERR_INVALID, "name", "name too long");
		goto unlock;
	}
	if (rec && !vouched) {
		/* A failback that cannot be incremental: the old layers aside. */
		snprintf(aside, sizeof(aside), "%s.pre-reverse-%lld", dir, (long long)sup_now_wall());
		if (rename(dir, aside)) {
			cerr_set(e, CERR_INTERNAL, "", "%s: %s", dir, strerror(errno));
			goto unlock;
		}
		log_warn("replica %s: the VM's old layers kept in %s", name, aside);
	}
	if (!rec || !vouched) {
		if (rep_in_root(s, aside, sizeof(aside)))
			aside[0] = 0;
		if ((mkdir(aside, 0700) && errno != EEXIST) || (mkdir(dir, 0700) && errno != EEXIST)) {
			cerr_set(e, CERR_NO_SPACE, "", "cannot make %s: %s", dir, strerror(errno));
			goto unlock;
		}
		fresh = true;
	}
	if (vouched && adopt_stores(s, name, dk, nr, point, rec ? failed_over : NULL, e)) {
		if (!rec)
			rm_tree(dir);
		goto unlock;
	}
	json_decref(rec);
	rec = json_pack("{s:O, s:O, s:s, s:i, s:s, s:I, s:s?, s:s?}", "vm", def, "disk_sizes", sizes,
			"from", from, "keep", jkeep ? (int)json_integer_value(jkeep) : 24, "state",
			"replicating", "created_at", (json_int_t)sup_now_wall(), "reversed_at_point",
			vouched ? point : NULL, "resync_reason", vouched ? NULL : why);
	if (rep_in_rec_save(s, name, rec, e)) {
		if (fresh && !vouched)
			rm_tree(dir);
		goto unlock;
	}
	/* The VM is the replica now (replica_vmdef.c): marked, on the store's
	 * points, it does not start here. The record went first: a cellad that
	 * dies here marks it at its start. */
	if (rep_vmdef_define(s, name, rec, true, e)) {
		char why2[sizeof(e->reason)];

		snprintf(why2, sizeof(why2), "%s", e->reason);
		cerr_set(e, CERR_INTERNAL, "", "cannot make VM '%s' the replica's definition (%s): "
			 "do not start it (its disks are the replica's now)", name, why2);
		goto unlock;
	}
	{
		char detail[512];

		snprintf(detail, sizeof(detail), vouched ? "from %s since point %s (no copy)" :
			 "from %s: a full resynchronisation (%s)", from, vouched ? point : why);
		sup_emit_named(s, name, "", vouched ? "replica-reversed" : "replica-reversed-full",
			       detail);
		if (vouched)
			log_info("replica %s: kept here for %s since point %s, without a copy", name,
				 from, point);
		else
			log_warn("replica %s: kept here for %s; a full copy comes: %s", name, from,
				 why);
	}
	*out = rep_in_status(s, name, rec);
	json_object_set_new(*out, "full", json_boolean(!vouched));
	if (!vouched)
		json_object_set_new(*out, "warning", json_sprintf("a full resynchronisation: %s",
								   why));
	ret = 0;
unlock:
	pthread_mutex_unlock(&s->rep_lock);
	for (unsigned i = 0; i < nr; i++)
		free(dk[i].path);
	json_decref(rec);
	json_decref(def);
	json_decref(conf);
	return ret;
}

int sup_replica_reverse(struct sup *s, const char *name, json_t *body, json_t **out,
			struct cerr *e)
{
	json_t *rec, *req = NULL, *reply = NULL, *eb = NULL, *st = NULL, *v;
	const char *to = json_string_value(json_object_get(body, "to")), *k;
	char host[64], point[CBT_NAME_MAX] = "", me[256] = "", uuid[37] = "";
	struct vmrt *vm;
	long status;
	int ret = -1;

	*out = NULL;
	json_object_foreach(body, k, v)
		if (strcmp(k, "to") && strcmp(k, "interval_ms") && strcmp(k, "keep") &&
		    strcmp(k, "compression") && strcmp(k, "max_bandwidth"))
			return cerr_set(e, CERR_INVALID, k, "unknown field");
	if (json_object_get(body, "to") && (!to || !to[0] || strlen(to) >= sizeof(host)))
		return cerr_set(e, CERR_INVALID, "to", "the old primary's name here (cella host list)");
	pthread_mutex_lock(&s->rep_lock);
	rec = rep_in_rec_load(s, name, e);
	if (rec && strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "failed-over")) {
		cerr_set(e, CERR_STATE, "name", "the replica of '%s' here was not failed over: "
			 "reverse replication runs where the VM was failed over to", name);
		json_decref(rec);
		rec = NULL;
	}
	if (rec) {
		snprintf(host, sizeof(host), "%s", to ?: json_string_value(json_object_get(rec, "from"))
			 ?: "");
		snprintf(point, sizeof(point), "%s",
			 json_string_value(json_object_get(rec, "failed_over_point")) ?: "");
		snprintf(uuid, sizeof(uuid), "%s", json_string_value(json_object_get(
			json_object_get(rec, "vm"), "uuid")) ?: "");
		req = json_pack("{s:s, s:O, s:O?}", "point", point, "disk_sizes",
				json_object_get(rec, "disk_sizes"), "keep", json_object_get(rec, "keep"));
	}
	pthread_mutex_unlock(&s->rep_lock);
	json_decref(rec);
	if (!req)
		return -1;
	if (!host[0]) {
		cerr_set(e, CERR_INVALID, "to", "the old primary's host name is not known: give it");
		goto out;
	}
	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		goto out;
	if (strcmp(vm->def.uuid, uuid) || (vm->state != VS_RUNNING && vm->state != VS_PAUSED)) {
		cerr_set(e, CERR_STATE, "name", strcmp(vm->def.uuid, uuid) ? "VM '%s' here is not "
			 "the one failed over from its replica (its UUID differs)" : "VM '%s' does not "
			 "run: start it first (replication follows a running VM's disks)", name);
		sup_vm_unlock(s, vm);
		goto out;
	}
	json_object_set_new(req, "uuid", json_string(vm->def.uuid));
	sup_vm_unlock(s, vm);
	if (gethostname(me, sizeof(me) - 1))
		me[0] = 0;
	json_object_set_new(req, "from", json_string(me));
	{
		char path[128];

		snprintf(path, sizeof(path), "/v1/replicas/%s/adopt", name);
		if (rep_peer_call(s, host, "POST", path, req, 120, &reply, &status, e))
			goto out;
	}
	/* Replication to the old primary, which has the common point (or none). */
	eb = json_deep_copy(body);
	json_object_set_new(eb, "to", json_string(host));
	if (sup_replica_enable(s, name, eb, &st, e))
		goto out;
	{
		char detail[256];
		bool full = json_is_true(json_object_get(reply, "full"));

		snprintf(detail, sizeof(detail), full ? "to %s: a full resynchronisation" :
			 "to %s since point %s", host, point);
		sup_emit_named(s, name, "", full ? "replica-reverse-full" : "replica-reverse", detail);
	}
	*out = json_pack("{s:s, s:s?, s:O, s:O?, s:O}", "to", host, "since",
			 json_is_true(json_object_get(reply, "full")) ? NULL : point, "full",
			 json_object_get(reply, "full") ?: json_false(), "warning",
			 json_object_get(reply, "warning"), "replication", st);
	ret = 0;
out:
	json_decref(req);
	json_decref(reply);
	json_decref(eb);
	json_decref(st);
	return ret;
}
