/* usage.c: what each pool host's VMs use, added to the pool's status for
 * the web console's dashboard (docs/web.md, "The pool on the dashboard"):
 * from the watch's cache (no etcd request), so GET /v1/pool costs the
 * same as before. */
#include <string.h>

#include "pool_priv.h"

/* A VM that holds its memory and vCPUs: as the dashboard's own host
 * counts them (running or paused). */
static bool holds(const char *state)
{
	return !strcmp(state, "running") || !strcmp(state, "paused");
}

static json_t *use_of(struct pool *p, const char *host)
{
	json_t *states = json_object(), *use;
	json_int_t mem = 0;
	int cpus = 0, ha = 0;

	if (!states)
		return NULL;
	for (size_t i = 0; i < p->nr_vms; i++) {
		const struct pool_vm *v = &p->vms[i];
		const char *st = v->state[0] ? v->state : "unknown";

		if (strcmp(v->owner, host))
			continue;
		json_object_set_new(states, st, json_integer(
			json_integer_value(json_object_get(states, st)) + 1));
		ha += v->ha;
		if (holds(st)) {
			cpus += v->cpus;
			mem += (json_int_t)pool_vm_commit_mib(v);
		}
	}
	use = json_pack("{s:i, s:I, s:i, s:i, s:o}", "cpus", cpus, "memory_mib", mem, "running",
			(int)json_integer_value(json_object_get(states, "running")), "ha_vms",
			ha, "states", states);
	return use;
}

void pool_status_add_use(struct pool *p, json_t *status)
{
	json_t *hosts = json_object_get(status, "hosts"), *h;
	enum fence_phase ph;
	size_t i;

	pthread_mutex_lock(&p->cache_lock);
	json_array_foreach(hosts, i, h) {
		const char *name = json_string_value(json_object_get(h, "name"));
		json_t *use = name ? use_of(p, name) : NULL;

		if (use)
			json_object_set_new(h, "use", use);
	}
	pthread_mutex_unlock(&p->cache_lock);
	pthread_mutex_lock(&p->lock);
	ph = p->phase;
	pthread_mutex_unlock(&p->lock);
	json_object_set_new(status, "lease", json_string(fence_phase_name(ph)));
}
