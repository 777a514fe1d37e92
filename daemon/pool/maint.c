/* maint.c: the pool's side of moves inside a pool, maintenance mode and
 * balance (docs/pool.md, "Moves inside a pool", "Maintenance mode",
 * "Balance"): a host record's state changed by compare-and-swap, a VM's
 * ownership passed from host to host by compare-and-swap, and plans made
 * by plan.c over the pool's cache (vms.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_records.h"
#include "log.h"
#include "plan.h"
#include "pool_priv.h"

int pool_member_get(struct pool *p, const char *host, char *address, size_t alen, char *state,
		    size_t slen)
{
	json_t *rec;
	int ret = -ENOENT;

	if (!p->etcd)
		return -ENOENT;
	pthread_mutex_lock(&p->cache_lock);
	rec = json_object_get(p->members, host);
	if (json_is_object(rec)) {
		const char *st = json_string_value(json_object_get(rec, "state"));

		snprintf(address, alen, "%s",
			 json_string_value(json_object_get(rec, "address")) ?: "");
		snprintf(state, slen, "%s", !json_object_get(p->alive, host) ? "down"
					    : st && !strcmp(st, "maintenance") ? "maintenance" : "up");
		ret = 0;
	}
	pthread_mutex_unlock(&p->cache_lock);
	return ret;
}

int pool_member_state_set(struct pool *p, const char *host, const char *state, struct cerr *e)
{
	char key[POOL_KEY_MAX], *s = NULL;
	struct etcd_txn t;
	struct etcd_kv kv;
	bool ok = false;
	json_t *rec;
	int ret;

	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	for (int tries = 0; tries < 5; tries++) {
		if ((ret = pool_key(p, key, "members/%s", host)))
			return cerr_set(e, CERR_INVALID, "host", "name too long");
		ret = etcd_get(p->etcd, key, &kv);
		if (ret == -ENOENT)
			return cerr_set(e, CERR_NOT_FOUND, "host", "no host named '%.64s' in the pool",
					host);
		if (ret)
			return pool_store_cerr(e, ret);
		rec = json_loads(kv.value, 0, NULL);
		if (!json_is_object(rec)) {
			json_decref(rec);
			etcd_kv_free(&kv);
			return cerr_set(e, CERR_INTERNAL, "", "host %s's record is not JSON", host);
		}
		json_object_set_new(rec, "state", json_string(state));
		s = json_dumps(rec, JSON_COMPACT);
		json_decref(rec);
		/* Compare the record's revision: a host rewriting its record
		 * (pool.c keeps the state) or another change in between makes
		 * this try again on the new record. */
		etcd_txn_init(&t);
		ret = !s ? -ENOMEM
			 : etcd_txn_compare(&t, key, ETCD_CMP_MOD, ETCD_CMP_EQUAL, kv.mod_rev, NULL) ?:
			   etcd_txn_put(&t, key, s, strlen(s), 0) ?:
			   etcd_txn_commit(p->etcd, &t, &ok, NULL);
		etcd_txn_free(&t);
		etcd_kv_free(&kv);
		free(s);
		if (ret)
			return pool_store_cerr(e, ret);
		if (ok)
			break;
	}
	if (!ok)
		return cerr_set(e, CERR_CONFLICT, "", "host %s's record kept changing; try again", host);
	/* The cache follows through the watch; say it now for this host's
	 * own checks (a start refused right after). */
	pthread_mutex_lock(&p->cache_lock);
	rec = json_object_get(p->members, host);
	if (json_is_object(rec))
		json_object_set_new(rec, "state", json_string(state));
	pthread_mutex_unlock(&p->cache_lock);
	log_info("pool: host %s is %s", host, state);
	return 0;
}

/* Compare the owner key's value with `from`, put `to` (with lease). */
static int owner_swap(struct pool *p, const char *uuid, const char *from, const char *to,
		      int64_t lease)
{
	char key[POOL_KEY_MAX];
	struct etcd_txn t;
	bool ok = false;
	int ret;

	etcd_txn_init(&t);
	ret = pool_key(p, key, "owner/%s", uuid) ?:
	      etcd_txn_compare(&t, key, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, from) ?:
	      etcd_txn_put(&t, key, to, strlen(to), lease) ?:
	      etcd_txn_commit(p->etcd, &t, &ok, NULL);
	etcd_txn_free(&t);
	if (!ret && !ok)
		ret = -EAGAIN;
	if (!ret)
		log_info("pool: VM %s's owner is %s now (was %s)", uuid, to, from);
	return ret;
}

int pool_owner_pass(struct pool *p, const char *uuid, const char *from, bool on_lease)
{
	int64_t lease = 0;

	if (!p->etcd)
		return -ENOENT;
	if (on_lease) {
		pthread_mutex_lock(&p->lock);
		lease = p->lease;
		pthread_mutex_unlock(&p->lock);
		if (!lease)
			return -ENOLINK; /* no lease (fenced): cannot own an HA VM now */
	}
	return owner_swap(p, uuid, from, p->host, lease);
}

int pool_runtime_drop(struct pool *p, const char *uuid)
{
	char key[POOL_KEY_MAX];

	if (!p->etcd)
		return -ENOENT;
	if (snprintf(key, sizeof(key), "%s/hosts/%s/runtime/%s", p->prefix, p->host, uuid) >=
	    (int)sizeof(key))
		return -ENAMETOOLONG;
	return etcd_delete(p->etcd, key, NULL, NULL, NULL);
}

int pool_vm_def(struct pool *p, const char *uuid, struct vmdef *def)
{
	char key[POOL_KEY_MAX];
	struct etcd_kv kv;
	json_t *j;
	int ret;

	if (!p->etcd)
		return -ENOENT;
	if ((ret = pool_key(p, key, "vms/%s", uuid)) || (ret = etcd_get(p->etcd, key, &kv)))
		return ret;
	j = json_loads(kv.value, 0, NULL);
	etcd_kv_free(&kv);
	ret = j ? etcd_rec_vmdef(j, def) : -EINVAL;
	json_decref(j);
	return ret;
}

/* The cache as plan.c's snapshot (cache_lock held). */
static json_t *snapshot_locked(struct pool *p)
{
	json_t *hosts = json_array(), *vms = json_array(), *rec;
	const char *name;

	json_object_foreach(p->members, name, rec) {
		const char *st = json_string_value(json_object_get(rec, "state"));

		json_array_append_new(hosts, json_pack(
			"{s:s, s:s, s:I, s:I}", "name", name, "state",
			!json_object_get(p->alive, name) ? "down"
			: st && !strcmp(st, "maintenance") ? "maintenance" : "up",
			"memory_mib", json_integer_value(json_object_get(rec, "memory_mib")), "cpus",
			json_integer_value(json_object_get(rec, "cpus"))));
	}
	for (size_t i = 0; i < p->nr_vms; i++) {
		const struct pool_vm *v = &p->vms[i];

		if (!v->owner[0] || !v->name[0])
			continue;
		json_array_append_new(vms, json_pack(
			"{s:s, s:s, s:s, s:s, s:I, s:i}", "name", v->name, "uuid", v->uuid, "host",
			v->owner, "state", v->state, "memory_mib", (json_int_t)pool_vm_commit_mib(v), "cpus",
			v->cpus));
	}
	return json_pack("{s:o, s:o}", "hosts", hosts, "vms", vms);
}

int pool_plan(struct pool *p, const char *evacuate, json_t **out, struct cerr *e)
{
	char err[256];
	json_t *snap;
	int ret;

	*out = NULL;
	if (!p->etcd)
		return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool");
	pthread_mutex_lock(&p->cache_lock);
	snap = snapshot_locked(p);
	pthread_mutex_unlock(&p->cache_lock);
	if (!snap)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	ret = plan_make(snap, evacuate, out, err, sizeof(err));
	json_decref(snap);
	if (ret == -EINVAL)
		return cerr_set(e, CERR_NOT_FOUND, "host", "%s", err);
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "%s", err);
	return 0;
}
