/* place_start.c: placement of a VM when it starts (docs/pool.md,
 * "Placement on start"): the pool's records as placement.c's input (hosts
 * alive or down with their capacity, what the VMs running on each commit,
 * anti-affinity groups, the VM's storage), the hand-over of a stopped VM's
 * ownership to the chosen host (compare-and-swap of its owner key), and
 * the loading of VMs given to this host that its core does not have yet
 * (from the watch's cache: a lost hand-over message is no loss). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_records.h"
#include "log.h"
#include "placement.h"
#include "pool_priv.h"
#include "sup.h"

#define ADOPT_RETRY_MS 2000

/* The location only a VM's owner has: its local (non-pool) disks. */
static void local_location(char *dst, size_t len, const char *host)
{
	snprintf(dst, len, "local disks of %s", host);
}

/* A state in which a VM's worker runs (its memory and vCPUs are taken). */
static bool state_runs(const char *st)
{
	static const char *const run[] = { "starting", "running", "paused", "stopping",
					   "restarting", "saving", "incoming" };

	for (size_t i = 0; i < sizeof(run) / sizeof(run[0]); i++)
		if (!strcmp(st, run[i]))
			return true;
	return false;
}

int pool_place(struct pool *p, const struct sup_place_req *req, struct sup_place_out *out,
	       struct cerr *e)
{
	size_t nh = 0, nm, nv = 0;
	struct place_host *hosts = NULL;
	struct place_vm *vms = NULL, vm = { 0 };
	char (*locs)[96] = NULL, need[96];
	const char *need_list[1] = { need };
	const char **loc_ptrs = NULL;
	struct place_result r;
	const char *name;
	json_t *rec;
	int ret = 0, placed;

	memset(out, 0, sizeof(*out));
	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	pthread_mutex_lock(&p->cache_lock);
	nm = json_object_size(p->members);
	hosts = calloc(nm + 1, sizeof(*hosts));
	vms = calloc(p->nr_vms + 1, sizeof(*vms));
	locs = calloc(nm + 1, sizeof(*locs));
	loc_ptrs = calloc(nm + 1, sizeof(*loc_ptrs));
	if (!hosts || !vms || !locs || !loc_ptrs) {
		ret = cerr_set(e, CERR_INTERNAL, "", "out of memory");
		goto out;
	}
	json_object_foreach(p->members, name, rec) {
		const char *st = json_string_value(json_object_get(rec, "state"));
		const char *addr = json_string_value(json_object_get(rec, "address"));
		struct place_host *h = &hosts[nh];

		/* A start is forwarded to the chosen host: one without an API
		 * address cannot be given VMs (other than its own). */
		if (strcmp(name, p->host) && (!addr || strncmp(addr, "https://", 8))) {
			if (req->host && !strcmp(req->host, name)) {
				ret = cerr_set(e, CERR_CONFLICT, "host", "host %s has no API address "
					       "(its pool address) to forward the start to", name);
				goto out;
			}
			continue;
		}

		h->name = name; /* valid while cache_lock is held */
		h->state = !json_object_get(p->alive, name) ? POOL_HOST_DOWN :
			   st && !strcmp(st, "maintenance") ? POOL_HOST_MAINTENANCE : POOL_HOST_UP;
		h->memory_mib = (uint64_t)json_integer_value(json_object_get(rec, "memory_mib"));
		h->cpus = (uint32_t)json_integer_value(json_object_get(rec, "cpus"));
		local_location(locs[nh], sizeof(locs[nh]), name);
		loc_ptrs[nh] = locs[nh];
		h->storage = &loc_ptrs[nh];
		h->nr_storage = 1;
		h->vms = &vms[nv];
		for (size_t k = 0; k < p->nr_vms; k++) {
			const struct pool_vm *v = &p->vms[k];

			if (strcmp(v->owner, name) || !strcmp(v->uuid, req->uuid) ||
			    !state_runs(v->state))
				continue;
			h->memory_committed_mib += pool_vm_commit_mib(v);
			h->vcpus_committed += (uint32_t)v->cpus;
			vms[nv].name = v->name;
			vms[nv].memory_mib = pool_vm_commit_mib(v);
			vms[nv].vcpus = (uint32_t)v->cpus;
			vms[nv].group = v->group;
			nv++;
			h->nr_vms++;
		}
		nh++;
	}
	vm.name = req->name;
	/* A VM virtio-mem can grow is placed where its maximum fits. */
	vm.memory_mib = req->memory_max_mib > req->memory_mib ? req->memory_max_mib
							      : req->memory_mib;
	vm.vcpus = req->cpus;
	vm.group = req->group && req->group[0] ? req->group : NULL;
	vm.affinity = req->hard ? PLACE_AA_HARD : PLACE_AA_SOFT;
	vm.host = req->host && req->host[0] ? req->host : NULL;
	if (req->local_only) {
		local_location(need, sizeof(need), p->host);
		vm.storage = need_list;
		vm.nr_storage = 1;
	}
	placed = place_vm(hosts, nh, &vm, NULL, NULL, &r);
	if (vm.memory_mib > req->memory_mib) {
		size_t len = strlen(r.reason);

		snprintf(r.reason + len, sizeof(r.reason) - len, "; counted at its memory_max_mib "
			 "(%llu MiB), which virtio-mem may grow it to",
			 (unsigned long long)vm.memory_mib);
	}
	if (placed < 0) {
		atomic_fetch_add(&p->ctr.place_refused, 1);
		if (r.unknown_host)
			ret = cerr_set(e, CERR_NOT_FOUND, "host", "%s", r.reason);
		else
			ret = cerr_set(e, CERR_CAPACITY, vm.host ? "host" : "", "%s", r.reason);
		goto out;
	}
	snprintf(out->host, sizeof(out->host), "%s", hosts[r.host].name);
	snprintf(out->address, sizeof(out->address), "%s",
		 json_string_value(json_object_get(json_object_get(p->members, out->host),
						   "address")) ?: "");
	snprintf(out->reason, sizeof(out->reason), "%s", r.reason);
	atomic_fetch_add(&p->ctr.placed, 1);
	if (strcmp(out->host, p->host))
		atomic_fetch_add(&p->ctr.placed_elsewhere, 1);
out:
	pthread_mutex_unlock(&p->cache_lock);
	free(hosts);
	free(vms);
	free(locs);
	free(loc_ptrs);
	return ret;
}

int pool_give(struct pool *p, const char *uuid, const char *to)
{
	char key[POOL_KEY_MAX], rt[POOL_KEY_MAX];
	struct etcd_txn t;
	bool ok = false;
	int ret;

	if (!p->etcd)
		return -ENOTCONN;
	if (snprintf(rt, sizeof(rt), "%s/hosts/%s/runtime/%s", p->prefix, p->host, uuid) >=
	    (int)sizeof(rt))
		return -ENAMETOOLONG;
	etcd_txn_init(&t);
	/* Only while this host owns it; the new owner's own lease (HA) is
	 * bound by its ha.c. This host's runtime record goes with it. */
	ret = pool_key(p, key, "owner/%s", uuid) ?:
	      etcd_txn_compare(&t, key, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, p->host) ?:
	      etcd_txn_put(&t, key, to, strlen(to), 0) ?:
	      etcd_txn_delete(&t, rt, NULL) ?:
	      etcd_txn_commit(p->etcd, &t, &ok, NULL);
	etcd_txn_free(&t);
	if (!ret && !ok)
		ret = -EPERM;
	if (!ret)
		log_info("pool: VM %s handed over from %s to %s", uuid, p->host, to);
	return ret;
}

int pool_uuid_of(struct pool *p, const char *name, char *uuid, size_t len)
{
	int found = 0;

	uuid[0] = 0;
	if (!p->etcd)
		return 0;
	pthread_mutex_lock(&p->cache_lock);
	for (size_t i = 0; i < p->nr_vms && !found; i++)
		if (!strcmp(p->vms[i].name, name)) {
			snprintf(uuid, len, "%s", p->vms[i].uuid);
			found = 1;
		}
	pthread_mutex_unlock(&p->cache_lock);
	return found;
}

/* Read uuid's definition and owner from etcd; the core loads it if etcd
 * names this host its owner. */
static void adopt_one(struct pool *p, const struct pool_ha_ops *ha, void *opaque,
		      const char *uuid)
{
	char key[POOL_KEY_MAX];
	struct etcd_kv kv;
	struct vmdef def;
	bool mine;
	json_t *j;
	int ret;

	if (pool_key(p, key, "owner/%s", uuid) || etcd_get(p->etcd, key, &kv))
		return;
	mine = !strcmp(kv.value, p->host);
	etcd_kv_free(&kv);
	if (!mine || pool_key(p, key, "vms/%s", uuid) || etcd_get(p->etcd, key, &kv))
		return;
	j = json_loads(kv.value, 0, NULL);
	etcd_kv_free(&kv);
	ret = j ? etcd_rec_vmdef(j, &def) : -EINVAL;
	json_decref(j);
	if (ret) {
		if (!j)
			log_warn("pool: VM %s was given to this host but its definition is unreadable",
				 uuid);
		else
			vmdef_free(&def);
		return;
	}
	ha->adopt(opaque, &def);
	vmdef_free(&def);
}

void pool_place_adopt(struct pool *p)
{
	const struct pool_ha_ops *ha;
	char (*uuids)[40] = NULL;
	uint64_t now = pool_boot_ms();
	void *opaque;
	size_t n = 0;

	pthread_mutex_lock(&p->lock);
	ha = p->ha;
	opaque = p->ha_opaque;
	pthread_mutex_unlock(&p->lock);
	if (!ha || !ha->has || !ha->adopt)
		return;
	pthread_mutex_lock(&p->cache_lock);
	uuids = p->nr_vms ? calloc(p->nr_vms, sizeof(*uuids)) : NULL;
	for (size_t i = 0; uuids && i < p->nr_vms; i++) {
		struct pool_vm *v = &p->vms[i];

		if (strcmp(v->owner, p->host) || !v->name[0] ||
		    (v->adopt_tried_at && now < v->adopt_tried_at + ADOPT_RETRY_MS))
			continue;
		snprintf(uuids[n++], sizeof(uuids[0]), "%s", v->uuid);
	}
	pthread_mutex_unlock(&p->cache_lock);
	for (size_t i = 0; i < n; i++) {
		struct pool_vm *v;

		if (ha->has(opaque, uuids[i]))
			continue;
		pthread_mutex_lock(&p->cache_lock);
		if ((v = vm_find_locked(p, uuids[i])))
			v->adopt_tried_at = now;
		pthread_mutex_unlock(&p->cache_lock);
		adopt_one(p, ha, opaque, uuids[i]);
	}
	free(uuids);
}

int pool_place_op(void *ctx, const struct sup_place_req *req, struct sup_place_out *out,
		  struct cerr *e)
{
	return pool_place(ctx, req, out, e);
}

int pool_give_op(void *ctx, const char *uuid, const char *to)
{
	return pool_give(ctx, uuid, to);
}

int pool_uuid_of_op(void *ctx, const char *name, char *uuid, size_t len)
{
	return pool_uuid_of(ctx, name, uuid, len);
}
