/* placement.c: choosing a host for a VM, alone or in a batch by priority
 * (docs/pool.md, "Placement and balance"). */
#include "placement.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PPM 1000000LL

static const char *const why_names[PLACE_WHY_COUNT] = {
	[PLACE_OK] = "ok",
	[PLACE_NOT_REQUESTED] = "not-requested",
	[PLACE_MAINTENANCE] = "maintenance",
	[PLACE_ISOLATED] = "isolated",
	[PLACE_DOWN] = "down",
	[PLACE_NO_STORAGE] = "no-storage",
	[PLACE_NO_MEMORY] = "no-memory",
	[PLACE_NO_CPU] = "no-cpu",
	[PLACE_ANTI_AFFINITY] = "anti-affinity",
};

static const char *const state_names[POOL_HOST_STATE_COUNT] = {
	[POOL_HOST_UP] = "up",
	[POOL_HOST_MAINTENANCE] = "maintenance",
	[POOL_HOST_ISOLATED] = "isolated",
	[POOL_HOST_DOWN] = "down",
};

const char *place_why_name(enum place_why why)
{
	return (unsigned)why < PLACE_WHY_COUNT ? why_names[why] : "?";
}

const char *pool_host_state_name(enum pool_host_state s)
{
	return (unsigned)s < POOL_HOST_STATE_COUNT ? state_names[s] : "?";
}

/* Append to buf (NUL-terminated, size bytes) without ever overflowing; text
 * that does not fit is cut and ends in "...". */
static void __attribute__((format(printf, 3, 4)))
append(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strnlen(buf, size);
	va_list ap;
	int n;

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= size - len && size >= 4)
		memcpy(buf + size - 4, "...", 4);
}

uint64_t place_host_memory_limit(const struct place_host *h)
{
	uint32_t pct = h->memory_overcommit_pct ? h->memory_overcommit_pct : 100;

	return h->memory_mib * pct / 100;
}

static bool has_group(const struct place_vm *vm)
{
	return vm->group && vm->group[0];
}

static bool same_group(const struct place_vm *a, const struct place_vm *b)
{
	return has_group(b) && strcmp(a->group, b->group) == 0 &&
	       !(a->name && b->name && strcmp(a->name, b->name) == 0);
}

static uint32_t group_members(const struct place_host *h, size_t index, const struct place_vm *vm,
			      const struct place_extra *extra)
{
	uint32_t n = 0;

	if (!has_group(vm))
		return 0;
	for (size_t i = 0; i < h->nr_vms; i++)
		n += same_group(vm, &h->vms[i]);
	if (extra && extra->vms)
		for (size_t i = 0; i < extra->nr_vms; i++)
			n += extra->vm_host[i] == index && same_group(vm, extra->vms[i]);
	return n;
}

static bool mounts(const struct place_host *h, const char *storage)
{
	for (size_t i = 0; i < h->nr_storage; i++)
		if (strcmp(h->storage[i], storage) == 0)
			return true;
	return false;
}

void place_judge(const struct place_host *h, size_t index, const struct place_vm *vm,
		 const struct place_extra *extra, struct place_verdict *v)
{
	uint64_t limit = place_host_memory_limit(h);
	uint64_t mem = h->memory_committed_mib;
	uint64_t vcpus = h->vcpus_committed;
	int64_t load = h->cpu_load_mcpu, cpu_cap = (int64_t)h->cpus * 1000;

	if (extra) {
		mem += extra->memory_mib ? extra->memory_mib[index] : 0;
		vcpus += extra->vcpus ? extra->vcpus[index] : 0;
		load += extra->cpu_mcpu ? extra->cpu_mcpu[index] : 0;
	}
	memset(v, 0, sizeof(*v));
	v->memory_free_mib = mem < limit ? limit - mem : 0;
	v->vcpus_free = UINT32_MAX;
	if (h->vcpu_ratio_pct) {
		uint64_t allowed = (uint64_t)h->cpus * h->vcpu_ratio_pct / 100;

		v->vcpus_free = vcpus < allowed ? (uint32_t)(allowed - vcpus) : 0;
	}
	v->group_members = group_members(h, index, vm, extra);

	switch (h->state) {
	case POOL_HOST_UP:
		break;
	case POOL_HOST_MAINTENANCE:
		v->why = PLACE_MAINTENANCE;
		return;
	case POOL_HOST_ISOLATED:
		v->why = PLACE_ISOLATED;
		return;
	default:
		v->why = PLACE_DOWN;
		return;
	}
	for (size_t i = 0; i < vm->nr_storage; i++) {
		if (!mounts(h, vm->storage[i])) {
			v->why = PLACE_NO_STORAGE;
			v->missing_storage = vm->storage[i];
			return;
		}
	}
	if (vm->vcpus > h->cpus || vm->vcpus > v->vcpus_free) {
		v->why = PLACE_NO_CPU;
		return;
	}
	if (vm->memory_mib > v->memory_free_mib) {
		v->why = PLACE_NO_MEMORY;
		return;
	}
	if (v->group_members && vm->affinity == PLACE_AA_HARD) {
		v->why = PLACE_ANTI_AFFINITY;
		return;
	}
	/* Headroom left after placing, memory and CPU alike, each in parts per
	 * million of the host's capacity: relative, so that a large host and a
	 * small one fill evenly. CPU may be overused (negative headroom); the
	 * memory check above keeps memory within its limit. */
	int64_t mem_left = (int64_t)(v->memory_free_mib - vm->memory_mib);
	int64_t score = limit ? mem_left * PPM / (int64_t)limit : 0;

	if (cpu_cap)
		score += (cpu_cap - load - (int64_t)vm->cpu_mcpu) * PPM / cpu_cap;
	v->score = score;
}

void place_verdict_format(const struct place_host *h, const struct place_vm *vm,
			  const struct place_verdict *v, char *buf, size_t size)
{
	if (!size)
		return;
	buf[0] = 0;
	switch (v->why) {
	case PLACE_OK:
		append(buf, size, "%s: can take it (%llu MiB free, %u members of its group)", h->name,
		       (unsigned long long)v->memory_free_mib, v->group_members);
		break;
	case PLACE_NOT_REQUESTED:
		append(buf, size, "%s: not the requested host", h->name);
		break;
	case PLACE_MAINTENANCE:
	case PLACE_ISOLATED:
	case PLACE_DOWN:
		append(buf, size, "%s: %s", h->name, pool_host_state_name(h->state));
		break;
	case PLACE_NO_STORAGE:
		append(buf, size, "%s: storage %s not mounted", h->name, v->missing_storage);
		break;
	case PLACE_NO_MEMORY:
		append(buf, size, "%s: %llu MiB free, %llu MiB needed", h->name,
		       (unsigned long long)v->memory_free_mib, (unsigned long long)vm->memory_mib);
		break;
	case PLACE_NO_CPU:
		if (vm->vcpus > h->cpus)
			append(buf, size, "%s: %u CPUs, %u vCPUs needed", h->name, h->cpus, vm->vcpus);
		else
			append(buf, size, "%s: %u vCPUs free under its ratio, %u needed", h->name,
			       v->vcpus_free, vm->vcpus);
		break;
	case PLACE_ANTI_AFFINITY:
		append(buf, size, "%s: runs %u member%s of anti-affinity group %s", h->name,
		       v->group_members, v->group_members == 1 ? "" : "s", vm->group);
		break;
	default:
		append(buf, size, "%s: ?", h->name);
		break;
	}
}

/* Is candidate a better host than best for vm? Fewer members of the group
 * first (the soft rule), then the higher score, then the name. */
static bool better(const struct place_host *hosts, const struct place_verdict *v, size_t cand,
		   size_t best)
{
	if (v[cand].group_members != v[best].group_members)
		return v[cand].group_members < v[best].group_members;
	if (v[cand].score != v[best].score)
		return v[cand].score > v[best].score;
	int c = strcmp(hosts[cand].name, hosts[best].name);

	return c ? c < 0 : cand < best;
}

static void describe_vm(const struct place_vm *vm, char *buf, size_t size)
{
	snprintf(buf, size, "%s (%llu MiB, %u vCPU%s%s%s)", vm->name ? vm->name : "the VM",
		 (unsigned long long)vm->memory_mib, vm->vcpus, vm->vcpus == 1 ? "" : "s",
		 has_group(vm) ? ", anti-affinity group " : "", has_group(vm) ? vm->group : "");
}

static int place_core(const struct place_host *hosts, size_t nr, const struct place_vm *vm,
		      const struct place_extra *extra, struct place_verdict *v,
		      struct place_result *r)
{
	char what[200], line[200];
	size_t best = nr, ties = 0, override = nr;

	memset(r, 0, sizeof(*r));
	r->host = -1;
	describe_vm(vm, what, sizeof(what));
	if (vm->host) {
		for (size_t i = 0; i < nr; i++)
			if (strcmp(hosts[i].name, vm->host) == 0)
				override = i;
		if (override == nr) {
			r->unknown_host = true;
			for (size_t i = 0; i < nr; i++) {
				place_judge(&hosts[i], i, vm, extra, &v[i]);
				v[i].why = PLACE_NOT_REQUESTED;
			}
			append(r->reason, sizeof(r->reason), "cannot place %s: no host named %s in the pool",
			       what, vm->host);
			return -1;
		}
	}
	for (size_t i = 0; i < nr; i++) {
		place_judge(&hosts[i], i, vm, extra, &v[i]);
		if (override != nr && i != override && v[i].why == PLACE_OK)
			v[i].why = PLACE_NOT_REQUESTED;
		if (v[i].why != PLACE_OK)
			continue;
		r->eligible++;
		if (best == nr || better(hosts, v, i, best))
			best = i;
	}
	if (best == nr) {
		if (override != nr) {
			place_verdict_format(&hosts[override], vm, &v[override], line, sizeof(line));
			append(r->reason, sizeof(r->reason), "cannot place %s on %s as requested: %s", what,
			       vm->host, line);
			return -1;
		}
		append(r->reason, sizeof(r->reason), "no host can take %s", what);
		for (size_t i = 0; i < nr; i++) {
			place_verdict_format(&hosts[i], vm, &v[i], line, sizeof(line));
			append(r->reason, sizeof(r->reason), "%s %s", i ? ";" : ":", line);
		}
		if (!nr)
			append(r->reason, sizeof(r->reason), ": the pool has no host");
		return -1;
	}
	for (size_t i = 0; i < nr; i++)
		ties += i != best && v[i].why == PLACE_OK && v[i].score == v[best].score &&
			v[i].group_members == v[best].group_members;
	r->host = (int)best;
	r->affinity_broken = v[best].group_members > 0;

	const struct place_host *h = &hosts[best];
	uint64_t free_after = v[best].memory_free_mib - vm->memory_mib;

	if (override != nr)
		append(r->reason, sizeof(r->reason), "placed %s on %s as requested", what, h->name);
	else
		append(r->reason, sizeof(r->reason),
		       "placed %s on %s, the most headroom of %zu eligible host%s", what, h->name,
		       r->eligible, r->eligible == 1 ? "" : "s");
	append(r->reason, sizeof(r->reason), " (%llu MiB free after placing", (unsigned long long)free_after);
	if (h->cpus) {
		int64_t load = h->cpu_load_mcpu + (extra && extra->cpu_mcpu ? extra->cpu_mcpu[best] : 0);
		int64_t cpu_free = (int64_t)h->cpus * 1000 - load - vm->cpu_mcpu;

		append(r->reason, sizeof(r->reason), ", %lld.%02lld CPUs idle",
		       (long long)(cpu_free / 1000), (long long)((cpu_free < 0 ? -cpu_free : cpu_free) % 1000 / 10));
	}
	append(r->reason, sizeof(r->reason), ")");
	if (ties)
		append(r->reason, sizeof(r->reason), "; tied with %zu other%s, the first name wins", ties,
		       ties == 1 ? "" : "s");
	if (r->affinity_broken)
		append(r->reason, sizeof(r->reason),
		       override != nr ? "; soft anti-affinity group %s not honoured: %s runs %u member%s" :
		       "; soft anti-affinity group %s not honoured: every eligible host runs a member, "
		       "%s the fewest (%u member%s)",
		       vm->group, h->name, v[best].group_members, v[best].group_members == 1 ? "" : "s");
	else if (has_group(vm))
		append(r->reason, sizeof(r->reason), "; no other member of anti-affinity group %s there",
		       vm->group);
	return (int)best;
}

int place_vm(const struct place_host *hosts, size_t nr, const struct place_vm *vm,
	     const struct place_extra *extra, struct place_verdict *verdicts,
	     struct place_result *r)
{
	struct place_verdict small[64], *v = verdicts;
	int ret;

	if (!v) {
		v = nr <= 64 ? small : calloc(nr, sizeof(*v));
		if (!v) {
			memset(r, 0, sizeof(*r));
			r->host = -1;
			snprintf(r->reason, sizeof(r->reason), "cannot place: out of memory");
			return -1;
		}
	}
	ret = place_core(hosts, nr, vm, extra, v, r);
	if (v != verdicts && v != small)
		free(v);
	return ret;
}

/* The batch's order; each key carries its VM (qsort has no context). */
struct batch_key {
	const struct place_vm *vm;
	size_t index;
};

static int batch_cmp(const void *a, const void *b)
{
	const struct batch_key *x = a, *y = b;
	int c;

	if (x->vm->priority != y->vm->priority)
		return x->vm->priority > y->vm->priority ? -1 : 1;
	if (x->vm->memory_mib != y->vm->memory_mib)
		return x->vm->memory_mib > y->vm->memory_mib ? -1 : 1;
	c = strcmp(x->vm->name ? x->vm->name : "", y->vm->name ? y->vm->name : "");
	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

int place_batch(const struct place_host *hosts, size_t nr_hosts, const struct place_vm *vms,
		size_t nr_vms, struct place_result *results, size_t *order)
{
	struct place_extra extra = { 0 };
	struct batch_key *keys = calloc(nr_vms ? nr_vms : 1, sizeof(*keys));
	const struct place_vm **placed = calloc(nr_vms ? nr_vms : 1, sizeof(*placed));
	size_t *placed_host = calloc(nr_vms ? nr_vms : 1, sizeof(*placed_host));
	struct place_verdict *v = calloc(nr_hosts ? nr_hosts : 1, sizeof(*v));
	int n = 0;

	extra.memory_mib = calloc(nr_hosts ? nr_hosts : 1, sizeof(*extra.memory_mib));
	extra.vcpus = calloc(nr_hosts ? nr_hosts : 1, sizeof(*extra.vcpus));
	extra.cpu_mcpu = calloc(nr_hosts ? nr_hosts : 1, sizeof(*extra.cpu_mcpu));
	if (!keys || !placed || !placed_host || !v || !extra.memory_mib || !extra.vcpus ||
	    !extra.cpu_mcpu) {
		n = -ENOMEM;
		goto out;
	}
	extra.vms = placed;
	extra.vm_host = placed_host;
	for (size_t i = 0; i < nr_vms; i++)
		keys[i] = (struct batch_key){ &vms[i], i };
	qsort(keys, nr_vms, sizeof(*keys), batch_cmp);
	for (size_t k = 0; k < nr_vms; k++) {
		size_t i = keys[k].index;
		int h = place_core(hosts, nr_hosts, &vms[i], &extra, v, &results[i]);

		if (order)
			order[k] = i;
		if (h < 0)
			continue;
		extra.memory_mib[h] += vms[i].memory_mib;
		extra.vcpus[h] += vms[i].vcpus;
		extra.cpu_mcpu[h] += vms[i].cpu_mcpu;
		placed[extra.nr_vms] = &vms[i];
		placed_host[extra.nr_vms] = (size_t)h;
		extra.nr_vms++;
		n++;
	}
out:
	free(keys);
	free(placed);
	free(placed_host);
	free(v);
	free(extra.memory_mib);
	free(extra.vcpus);
	free(extra.cpu_mcpu);
	return n;
}
