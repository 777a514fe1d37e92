/* away.c: the pool's status when etcd cannot be reached (docs/pool.md,
 * "When etcd is away"): answered from the watch's cache, with this host
 * isolated and every record marked stale, instead of a 503. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "etcd_stats.h"
#include "pool_priv.h"

const char *pool_own_isolated(struct pool *p)
{
	enum fence_phase ph;

	pthread_mutex_lock(&p->lock);
	ph = p->phase;
	pthread_mutex_unlock(&p->lock);
	if (ph != FENCE_HELD || !etcd_stats_reachable(p->conf.etcd ? p->conf.etcd->stats : NULL))
		return "isolated";
	return NULL;
}

int pool_status_cached(struct pool *p, json_t **out, struct cerr *e)
{
	json_t *hosts = json_array(), *owned = json_object(), *rec;
	const char *name;
	bool me_seen = false;

	*out = NULL;
	if (!hosts || !owned) {
		json_decref(hosts);
		json_decref(owned);
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	}
	pthread_mutex_lock(&p->cache_lock);
	for (size_t i = 0; i < p->nr_vms; i++) {
		const struct pool_vm *v = &p->vms[i];
		json_t *list;

		if (!v->owner[0])
			continue;
		list = json_object_get(owned, v->owner);
		if (!list)
			json_object_set_new(owned, v->owner, list = json_array());
		json_array_append_new(list, json_string(v->name[0] ? v->name : v->uuid));
	}
	json_object_foreach(p->members, name, rec) {
		json_t *h = json_deep_copy(rec), *vms = json_object_get(owned, name);
		const char *state = json_string_value(json_object_get(rec, "state"));
		bool me = !strcmp(name, p->host);

		if (!h)
			continue;
		me_seen |= me;
		json_object_set_new(h, "name", json_string(name));
		/* Others as last seen: their leases may have lapsed since. */
		json_object_set_new(h, "state", json_string(
			me ? "isolated" : !json_object_get(p->alive, name) ? "down"
			: state && !strcmp(state, "maintenance") ? "maintenance" : "up"));
		json_object_set_new(h, "stale", json_true());
		json_object_set(h, "vms", vms ? vms : json_array());
		if (!vms)
			json_decref(json_object_get(h, "vms"));
		json_array_append_new(hosts, h);
	}
	pthread_mutex_unlock(&p->cache_lock);
	if (!me_seen) /* a record this host never read: itself at least */
		json_array_append_new(hosts, json_pack("{s:s, s:s, s:I, s:i, s:s, s:b, s:o}", "name",
						       p->host, "address", p->address, "memory_mib",
						       (json_int_t)p->conf.memory_mib, "cpus",
						       (int)p->conf.cpus, "state", "isolated",
						       "stale", 1, "vms", json_array()));
	json_decref(owned);
	*out = json_pack("{s:s, s:s, s:b, s:s, s:o}", "pool", p->prefix, "host", p->host, "stale", 1,
			 "etcd", "unreachable", "hosts", hosts);
	if (*out)
		pool_status_add_use(p, *out);
	return *out ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}
