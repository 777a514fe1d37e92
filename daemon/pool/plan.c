/* plan.c: the pool's records as placement's, and balance.c's plans as JSON
 * (plan.h). */
#include "plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"

bool plan_vm_active(const char *state)
{
	static const char *const active[] = { "running", "paused", "starting", "restarting",
					      "incoming", "stopping" };

	for (size_t i = 0; state && i < sizeof(active) / sizeof(active[0]); i++)
		if (!strcmp(state, active[i]))
			return true;
	return false;
}

static enum pool_host_state host_state(const char *s)
{
	return !s || !strcmp(s, "up") ? POOL_HOST_UP
	       : !strcmp(s, "maintenance") ? POOL_HOST_MAINTENANCE
	       : !strcmp(s, "isolated") ? POOL_HOST_ISOLATED : POOL_HOST_DOWN;
}

/* The snapshot's records as placement's (pointers into the snapshot). */
struct recs {
	struct place_host *hosts;
	size_t nr_hosts;
	struct place_vm *vms;   /* grouped by host: hosts[i].vms points in here */
	json_t **vm_json;       /* the snapshot's VM for each vms[] entry */
	size_t nr_vms;
};

static void recs_free(struct recs *r)
{
	free(r->hosts);
	free(r->vms);
	free(r->vm_json);
}

static int recs_fill(json_t *snap, const char *evacuate, struct recs *r, char *err, size_t errlen)
{
	json_t *hosts = json_object_get(snap, "hosts"), *vms = json_object_get(snap, "vms"), *h, *v;
	size_t i, k, n = 0;

	memset(r, 0, sizeof(*r));
	if (!json_is_array(hosts) || !json_is_array(vms)) {
		snprintf(err, errlen, "the pool's records: expected hosts and vms");
		return -EINVAL;
	}
	r->hosts = calloc(json_array_size(hosts) + 1, sizeof(*r->hosts));
	r->vms = calloc(json_array_size(vms) + 1, sizeof(*r->vms));
	r->vm_json = calloc(json_array_size(vms) + 1, sizeof(*r->vm_json));
	if (!r->hosts || !r->vms || !r->vm_json)
		return -ENOMEM;
	json_array_foreach(hosts, i, h) {
		struct place_host *ph = &r->hosts[r->nr_hosts];
		const char *name = json_string_value(json_object_get(h, "name"));
		json_int_t mem = json_integer_value(json_object_get(h, "memory_mib"));
		json_int_t cpus = json_integer_value(json_object_get(h, "cpus"));

		if (!name || mem < 0 || cpus < 0 || cpus > UINT32_MAX) {
			snprintf(err, errlen, "the pool's records: host %zu is malformed", i);
			return -EINVAL;
		}
		ph->name = name;
		ph->state = host_state(json_string_value(json_object_get(h, "state")));
		ph->memory_mib = (uint64_t)mem;
		ph->cpus = (uint32_t)cpus;
		ph->vms = &r->vms[n];
		/* Its VMs, next to each other in r->vms. */
		json_array_foreach(vms, k, v) {
			const char *owner = json_string_value(json_object_get(v, "host"));
			const char *vname = json_string_value(json_object_get(v, "name"));
			const char *st = json_string_value(json_object_get(v, "state"));
			json_int_t vm_mem = json_integer_value(json_object_get(v, "memory_mib"));
			json_int_t vm_cpus = json_integer_value(json_object_get(v, "cpus"));
			bool active = plan_vm_active(st), leaving = evacuate && !strcmp(name, evacuate);
			struct place_vm *pv;

			if (!owner || strcmp(owner, name) || !vname || !*vname)
				continue;
			if (vm_mem < 0 || vm_cpus < 0 || vm_cpus > 4096) {
				snprintf(err, errlen, "the pool's records: VM %.64s is malformed", vname);
				return -EINVAL;
			}
			/* Balance moves running VMs only; an evacuation all of H's. */
			if (!active && !leaving)
				continue;
			pv = &r->vms[n];
			pv->name = vname;
			pv->memory_mib = (uint64_t)vm_mem;
			pv->vcpus = (uint32_t)vm_cpus;
			pv->cpu_mcpu = active ? (uint32_t)vm_cpus * 1000u : 0;
			r->vm_json[n++] = v;
			ph->nr_vms++;
			if (active) {
				ph->memory_committed_mib += pv->memory_mib;
				ph->vcpus_committed += pv->vcpus;
				ph->cpu_load_mcpu += pv->cpu_mcpu;
			}
		}
		r->nr_hosts++;
	}
	r->nr_vms = n;
	return 0;
}

static double ppm(uint32_t x)
{
	return (double)x / 1e6;
}

static json_t *plan_to_json(const struct recs *r, const struct balance_plan *bp,
			    const char *evacuate)
{
	json_t *moves = json_array(), *stuck = json_array(), *o;

	for (size_t i = 0; i < bp->nr_moves; i++) {
		const struct balance_move *m = &bp->moves[i];
		const struct place_host *from = &r->hosts[m->from];
		json_t *vj = r->vm_json[(size_t)(from->vms - r->vms) + m->vm];
		const char *st = json_string_value(json_object_get(vj, "state"));

		json_array_append_new(moves, json_pack(
			"{s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:s}", "vm", from->vms[m->vm].name,
			"uuid", json_string_value(json_object_get(vj, "uuid")) ?: "", "from",
			from->name, "to", r->hosts[m->to].name, "batch", (json_int_t)m->batch, "live",
			plan_vm_active(st), "memory_mib", (json_int_t)from->vms[m->vm].memory_mib,
			"reason", m->reason));
	}
	for (size_t i = 0; i < bp->nr_stuck; i++) {
		const struct balance_stuck *st = &bp->stuck[i];
		const struct place_host *from = &r->hosts[st->from];
		json_t *vj = r->vm_json[(size_t)(from->vms - r->vms) + st->vm];

		json_array_append_new(stuck, json_pack(
			"{s:s, s:s, s:s, s:s}", "vm", from->vms[st->vm].name, "uuid",
			json_string_value(json_object_get(vj, "uuid")) ?: "", "from", from->name,
			"reason", st->reason));
	}
	o = json_pack("{s:s, s:o, s:o, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "kind",
		      evacuate ? "evacuate" : "balance", "moves", moves, "stuck", stuck, "batches",
		      (json_int_t)bp->nr_batches, "imbalance_before", ppm(bp->imbalance_before_ppm),
		      "imbalance_after", ppm(bp->imbalance_after_ppm), "memory_spread_before",
		      ppm(bp->memory_spread_before_ppm), "memory_spread_after",
		      ppm(bp->memory_spread_after_ppm), "cpu_spread_before",
		      ppm(bp->cpu_spread_before_ppm), "cpu_spread_after",
		      ppm(bp->cpu_spread_after_ppm), "summary", bp->summary);
	if (o && evacuate)
		json_object_set_new(o, "host", json_string(evacuate));
	return o;
}

int plan_make(json_t *snapshot, const char *evacuate, json_t **out, char *err, size_t errlen)
{
	struct balance_settings set = { 0 };
	struct balance_plan bp;
	struct recs r;
	size_t target = 0;
	int ret;

	*out = NULL;
	err[0] = 0;
	ret = recs_fill(snapshot, evacuate, &r, err, errlen);
	if (!ret && evacuate) {
		for (target = 0; target < r.nr_hosts && strcmp(r.hosts[target].name, evacuate);
		     target++)
			;
		if (target == r.nr_hosts) {
			snprintf(err, errlen, "no host named '%.64s' in the pool", evacuate);
			ret = -EINVAL;
		}
	}
	if (!ret)
		ret = evacuate ? balance_evacuate(r.hosts, r.nr_hosts, target, &set, &bp)
			       : balance_plan(r.hosts, r.nr_hosts, &set, &bp);
	if (!ret) {
		*out = plan_to_json(&r, &bp, evacuate);
		balance_plan_free(&bp);
		if (!*out)
			ret = -ENOMEM;
	}
	if (ret == -ENOMEM && !err[0])
		snprintf(err, errlen, "out of memory");
	recs_free(&r);
	return ret;
}
