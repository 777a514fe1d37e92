/* balance.c: the balance planner (greedy, one best move at a time) and the
 * evacuation plan for maintenance mode (docs/pool.md, "Placement and
 * balance"). */
#include "balance.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PPM 1000000LL

typedef __int128 i128;

/* Load of a host in parts per million of its capacity. */
static int64_t mem_load(uint64_t committed, uint64_t memory)
{
	return memory ? (int64_t)(committed * (uint64_t)PPM / memory) : 0;
}

static int64_t cpu_load(uint64_t mcpu, uint32_t cpus)
{
	return cpus ? (int64_t)(mcpu * 1000 / cpus) : 0;
}

static uint32_t clamp32(uint64_t x)
{
	return x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}

static uint64_t isqrt128(unsigned __int128 x)
{
	uint64_t lo = 0, hi = UINT32_MAX; /* results here stay far below 2^32 */

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;

		if ((unsigned __int128)mid * mid <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* The load gap between two hosts: RMS of the memory and CPU differences. */
static uint32_t gap(int64_t m1, int64_t c1, int64_t m2, int64_t c2)
{
	i128 dm = m1 - m2, dc = c1 - c2;

	return clamp32(isqrt128((unsigned __int128)((dm * dm + dc * dc) / 2)));
}

/* Sums over the hosts that are up: n, sum of loads, sum of squares. */
struct sums {
	int64_t n;
	i128 s1m, s2m, s1c, s2c;
};

static i128 spread_cost(int64_t n, i128 s1, i128 s2)
{
	return n * s2 - s1 * s1; /* n^2 times the variance */
}

static uint32_t imbalance_of(const struct sums *s)
{
	if (s->n == 0)
		return 0;
	i128 cost = spread_cost(s->n, s->s1m, s->s2m) + spread_cost(s->n, s->s1c, s->s2c);

	return clamp32(isqrt128((unsigned __int128)(cost / (2 * (i128)s->n * s->n))));
}

static uint32_t spread_of(int64_t n, i128 s1, i128 s2)
{
	return n ? clamp32(isqrt128((unsigned __int128)(spread_cost(n, s1, s2) / ((i128)n * n)))) : 0;
}

static void sums_of(const struct place_host *h, size_t nr, struct sums *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < nr; i++) {
		if (h[i].state != POOL_HOST_UP)
			continue;
		int64_t m = mem_load(h[i].memory_committed_mib, h[i].memory_mib);
		int64_t c = cpu_load(h[i].cpu_load_mcpu, h[i].cpus);

		s->n++;
		s->s1m += m;
		s->s2m += (i128)m * m;
		s->s1c += c;
		s->s2c += (i128)c * c;
	}
}

uint32_t balance_imbalance(const struct place_host *hosts, size_t nr)
{
	struct sums s;

	sums_of(hosts, nr, &s);
	return imbalance_of(&s);
}

static void figures(const struct place_host *h, size_t nr, uint32_t *imb, uint32_t *mem,
		    uint32_t *cpu)
{
	struct sums s;

	sums_of(h, nr, &s);
	*imb = imbalance_of(&s);
	*mem = spread_of(s.n, s.s1m, s.s2m);
	*cpu = spread_of(s.n, s.s1c, s.s2c);
}

static void settings_of(const struct balance_settings *in, struct balance_settings *s)
{
	*s = in ? *in : (struct balance_settings){ 0 };
	if (!s->max_moves)
		s->max_moves = BALANCE_MAX_MOVES;
	if (!s->threshold_ppm)
		s->threshold_ppm = BALANCE_THRESHOLD_PPM;
	if (!s->min_gain_ppm)
		s->min_gain_ppm = BALANCE_MIN_GAIN_PPM;
	if (!s->batch)
		s->batch = BALANCE_EVACUATE_BATCH;
}

void balance_plan_free(struct balance_plan *plan)
{
	free(plan->moves);
	free(plan->stuck);
	memset(plan, 0, sizeof(*plan));
}

/* A VM as the planner tracks it. */
struct wvm {
	const struct place_vm *vm;
	size_t from, index, cur;
	int group;      /* index into the sorted groups, -1 for none */
	bool moved;
};

static int group_cmp(const void *a, const void *b)
{
	const struct wvm *const *x = a, *const *y = b;

	return strcmp((*x)->vm->group, (*y)->vm->group);
}

static bool has_group(const struct place_vm *vm)
{
	return vm->group && vm->group[0];
}

static void pct(char *buf, size_t size, int64_t ppm)
{
	snprintf(buf, size, "%lld%%", (long long)((ppm + 5000) / 10000));
}

/* Is move (vm a to host ta, cost ca) better than (b, tb, cb)? */
static bool move_better(const struct place_host *hosts, const struct wvm *a, size_t ta, i128 ca,
			const struct wvm *b, size_t tb, i128 cb)
{
	int c;

	if (ca != cb)
		return ca < cb;
	if (a->vm->memory_mib != b->vm->memory_mib)
		return a->vm->memory_mib < b->vm->memory_mib;
	c = strcmp(a->vm->name, b->vm->name);
	if (c)
		return c < 0;
	return strcmp(hosts[ta].name, hosts[tb].name) < 0;
}

int balance_plan(const struct place_host *hosts, size_t nr, const struct balance_settings *in,
		 struct balance_plan *plan)
{
	struct balance_settings s;
	struct place_host *w = NULL;
	struct wvm *vms = NULL, **sorted = NULL;
	int64_t *lm = NULL, *lc = NULL;
	uint32_t *members = NULL;
	uint32_t *gaps = NULL;       /* per (from, to), this step; UINT32_MAX: not yet */
	size_t nvms = 0, ngroups = 0;
	struct sums sum;
	int ret = -ENOMEM;

	settings_of(in, &s);
	memset(plan, 0, sizeof(*plan));
	figures(hosts, nr, &plan->imbalance_before_ppm, &plan->memory_spread_before_ppm,
		&plan->cpu_spread_before_ppm);
	for (size_t h = 0; h < nr; h++)
		nvms += hosts[h].nr_vms;
	w = calloc(nr ? nr : 1, sizeof(*w));
	vms = calloc(nvms ? nvms : 1, sizeof(*vms));
	sorted = calloc(nvms ? nvms : 1, sizeof(*sorted));
	lm = calloc(nr ? nr : 1, sizeof(*lm));
	lc = calloc(nr ? nr : 1, sizeof(*lc));
	gaps = calloc(nr ? nr * nr : 1, sizeof(*gaps));
	plan->moves = calloc(s.max_moves, sizeof(*plan->moves));
	if (!w || !vms || !sorted || !lm || !lc || !gaps || !plan->moves)
		goto out;
	memcpy(w, hosts, nr * sizeof(*w));

	/* Every VM with its group numbered (groups sorted by name), and the
	 * members of each group on each host. */
	size_t k = 0, ng = 0;

	for (size_t h = 0; h < nr; h++)
		for (size_t i = 0; i < hosts[h].nr_vms; i++)
			vms[k++] = (struct wvm){ .vm = &hosts[h].vms[i], .from = h, .index = i, .cur = h,
						 .group = -1 };
	for (size_t i = 0; i < nvms; i++)
		if (has_group(vms[i].vm))
			sorted[ng++] = &vms[i];
	qsort(sorted, ng, sizeof(*sorted), group_cmp);
	for (size_t i = 0; i < ng; i++) {
		if (i && strcmp(sorted[i]->vm->group, sorted[i - 1]->vm->group) != 0)
			ngroups++;
		sorted[i]->group = (int)ngroups;
	}
	if (ng)
		ngroups++;
	members = calloc(ngroups && nr ? nr * ngroups : 1, sizeof(*members));
	if (!members)
		goto out;
	for (size_t i = 0; i < nvms; i++)
		if (vms[i].group >= 0)
			members[vms[i].cur * ngroups + (size_t)vms[i].group]++;

	sums_of(w, nr, &sum);
	for (size_t h = 0; h < nr; h++) {
		lm[h] = mem_load(w[h].memory_committed_mib, w[h].memory_mib);
		lc[h] = cpu_load(w[h].cpu_load_mcpu, w[h].cpus);
	}

	while (plan->nr_moves < s.max_moves) {
		uint32_t now = imbalance_of(&sum);
		struct wvm *best = NULL;
		size_t best_to = 0;
		i128 best_cost = 0, cost_now;
		uint32_t best_gap = 0, best_gap_after = 0;
		struct sums best_sum = sum;

		if (now <= s.threshold_ppm)
			break;
		cost_now = spread_cost(sum.n, sum.s1m, sum.s2m) + spread_cost(sum.n, sum.s1c, sum.s2c);
		memset(gaps, 0xff, nr * nr * sizeof(*gaps));
		for (size_t i = 0; i < nvms; i++) {
			struct wvm *m = &vms[i];
			size_t f = m->cur;
			struct place_vm probe = *m->vm;

			if (m->moved || w[f].state != POOL_HOST_UP)
				continue;
			probe.group = NULL; /* the members table answers for groups */
			probe.host = NULL;
			uint64_t fmem = w[f].memory_committed_mib > probe.memory_mib ?
					w[f].memory_committed_mib - probe.memory_mib : 0;
			uint64_t fcpu = w[f].cpu_load_mcpu > probe.cpu_mcpu ?
					w[f].cpu_load_mcpu - probe.cpu_mcpu : 0;
			int64_t lmf = mem_load(fmem, w[f].memory_mib), lcf = cpu_load(fcpu, w[f].cpus);

			for (size_t t = 0; t < nr; t++) {
				struct place_verdict v;

				if (t == f || w[t].state != POOL_HOST_UP)
					continue;
				if (m->group >= 0 && members[t * ngroups + (size_t)m->group])
					continue;
				int64_t lmt = mem_load(w[t].memory_committed_mib + probe.memory_mib,
						       w[t].memory_mib);
				int64_t lct = cpu_load((uint64_t)w[t].cpu_load_mcpu + probe.cpu_mcpu, w[t].cpus);
				uint32_t *g = &gaps[f * nr + t];
				struct sums ns = sum;

				/* Hysteresis: too small a step, or a swap of roles. The
				 * gap after, squared, against (gap before - min_gain)^2. */
				if (*g == UINT32_MAX)
					*g = gap(lm[f], lc[f], lm[t], lc[t]);
				if (*g < s.min_gain_ppm)
					continue;
				i128 dm = lmf - lmt, dc = lcf - lct, lim = (i128)(*g - s.min_gain_ppm) + 1;

				if ((dm * dm + dc * dc) / 2 >= lim * lim)
					continue;
				ns.s1m += lmf + lmt - lm[f] - lm[t];
				ns.s2m += (i128)lmf * lmf + (i128)lmt * lmt - (i128)lm[f] * lm[f] -
					  (i128)lm[t] * lm[t];
				ns.s1c += lcf + lct - lc[f] - lc[t];
				ns.s2c += (i128)lcf * lcf + (i128)lct * lct - (i128)lc[f] * lc[f] -
					  (i128)lc[t] * lc[t];
				i128 cost = spread_cost(ns.n, ns.s1m, ns.s2m) +
					    spread_cost(ns.n, ns.s1c, ns.s2c);

				if (cost >= cost_now)
					continue; /* every move lowers the imbalance: no cycles */
				if (best && !move_better(hosts, m, t, cost, best, best_to, best_cost))
					continue;
				/* Placement's rules last: they cost the most. */
				place_judge(&w[t], t, &probe, NULL, &v);
				if (v.why != PLACE_OK)
					continue;
				best = m;
				best_to = t;
				best_cost = cost;
				best_sum = ns;
				best_gap = *g;
				best_gap_after = gap(lmf, lcf, lmt, lct);
			}
		}
		if (!best)
			break;
		uint32_t after = imbalance_of(&best_sum);

		size_t f = best->cur, t = best_to;
		const struct place_vm *vm = best->vm;
		struct balance_move *mv = &plan->moves[plan->nr_moves];
		char fm[24], fc[24], tm[24], tc[24];

		pct(fm, sizeof(fm), lm[f]);
		pct(fc, sizeof(fc), lc[f]);
		pct(tm, sizeof(tm), lm[t]);
		pct(tc, sizeof(tc), lc[t]);
		w[f].memory_committed_mib = w[f].memory_committed_mib > vm->memory_mib ?
					    w[f].memory_committed_mib - vm->memory_mib : 0;
		w[f].cpu_load_mcpu = w[f].cpu_load_mcpu > vm->cpu_mcpu ? w[f].cpu_load_mcpu - vm->cpu_mcpu : 0;
		w[f].vcpus_committed = w[f].vcpus_committed > vm->vcpus ? w[f].vcpus_committed - vm->vcpus : 0;
		w[t].memory_committed_mib += vm->memory_mib;
		w[t].cpu_load_mcpu += vm->cpu_mcpu;
		w[t].vcpus_committed += vm->vcpus;
		lm[f] = mem_load(w[f].memory_committed_mib, w[f].memory_mib);
		lc[f] = cpu_load(w[f].cpu_load_mcpu, w[f].cpus);
		lm[t] = mem_load(w[t].memory_committed_mib, w[t].memory_mib);
		lc[t] = cpu_load(w[t].cpu_load_mcpu, w[t].cpus);
		if (best->group >= 0) {
			members[f * ngroups + (size_t)best->group]--;
			members[t * ngroups + (size_t)best->group]++;
		}
		sum = best_sum;
		best->moved = true;
		best->cur = t;
		*mv = (struct balance_move){ .from = best->from, .vm = best->index, .to = t,
					     .batch = plan->nr_moves, .imbalance_after_ppm = after,
					     .gap_before_ppm = best_gap, .gap_after_ppm = best_gap_after };
		snprintf(mv->reason, sizeof(mv->reason),
			 "move %s (%llu MiB, %u.%02u CPUs in use) from %s (memory %s, CPU %s) to %s "
			 "(memory %s, CPU %s): their gap %u.%03u -> %u.%03u, the pool's imbalance "
			 "%u.%03u -> %u.%03u",
			 vm->name, (unsigned long long)vm->memory_mib, vm->cpu_mcpu / 1000,
			 vm->cpu_mcpu % 1000 / 10, hosts[f].name, fm, fc, hosts[t].name, tm, tc,
			 best_gap / 1000000, best_gap % 1000000 / 1000, best_gap_after / 1000000,
			 best_gap_after % 1000000 / 1000,
			 now / 1000000, now % 1000000 / 1000, after / 1000000, after % 1000000 / 1000);
		plan->nr_moves++;
	}
	figures(w, nr, &plan->imbalance_after_ppm, &plan->memory_spread_after_ppm,
		&plan->cpu_spread_after_ppm);
	plan->nr_batches = plan->nr_moves;
	if (!plan->nr_moves)
		snprintf(plan->summary, sizeof(plan->summary),
			 plan->imbalance_before_ppm <= s.threshold_ppm ?
			 "balanced: imbalance %u.%03u is within the threshold %u.%03u" :
			 "no move helps enough: imbalance %u.%03u (threshold %u.%03u), and no move "
			 "the rules allow narrows a gap between two hosts by the minimum gain",
			 plan->imbalance_before_ppm / 1000000, plan->imbalance_before_ppm % 1000000 / 1000,
			 s.threshold_ppm / 1000000, s.threshold_ppm % 1000000 / 1000);
	else
		snprintf(plan->summary, sizeof(plan->summary),
			 "%zu move%s: imbalance %u.%03u -> %u.%03u%s", plan->nr_moves,
			 plan->nr_moves == 1 ? "" : "s", plan->imbalance_before_ppm / 1000000,
			 plan->imbalance_before_ppm % 1000000 / 1000, plan->imbalance_after_ppm / 1000000,
			 plan->imbalance_after_ppm % 1000000 / 1000,
			 plan->nr_moves == s.max_moves ? " (the cap on moves per run stopped it)" : "");
	ret = 0;
out:
	if (ret)
		balance_plan_free(plan);
	free(w);
	free(vms);
	free(sorted);
	free(lm);
	free(lc);
	free(members);
	free(gaps);
	return ret;
}

int balance_evacuate(const struct place_host *hosts, size_t nr, size_t host,
		     const struct balance_settings *in, struct balance_plan *plan)
{
	struct balance_settings s;
	struct place_host *w = NULL;
	struct place_vm *copies = NULL;
	struct place_result *res = NULL;
	size_t *order = NULL, n, placed = 0;
	int ret = -ENOMEM;

	memset(plan, 0, sizeof(*plan));
	if (host >= nr)
		return -EINVAL;
	settings_of(in, &s);
	n = hosts[host].nr_vms;
	figures(hosts, nr, &plan->imbalance_before_ppm, &plan->memory_spread_before_ppm,
		&plan->cpu_spread_before_ppm);
	w = calloc(nr, sizeof(*w));
	copies = calloc(n ? n : 1, sizeof(*copies));
	res = calloc(n ? n : 1, sizeof(*res));
	order = calloc(n ? n : 1, sizeof(*order));
	plan->moves = calloc(n ? n : 1, sizeof(*plan->moves));
	plan->stuck = calloc(n ? n : 1, sizeof(*plan->stuck));
	if (!w || !copies || !res || !order || !plan->moves || !plan->stuck)
		goto out;
	memcpy(w, hosts, nr * sizeof(*w));
	w[host].state = POOL_HOST_MAINTENANCE; /* takes nothing, counts for nothing after */
	for (size_t i = 0; i < n; i++) {
		copies[i] = hosts[host].vms[i];
		copies[i].host = NULL; /* a start-time --host does not pin a VM to a host */
	}
	if (place_batch(w, nr, copies, n, res, order) < 0)
		goto out;
	for (size_t k = 0; k < n; k++) {
		size_t i = order[k];

		if (res[i].host < 0) {
			struct balance_stuck *st = &plan->stuck[plan->nr_stuck++];

			st->from = host;
			st->vm = i;
			snprintf(st->reason, sizeof(st->reason), "%s", res[i].reason);
			continue;
		}
		size_t t = (size_t)res[i].host;
		struct balance_move *mv = &plan->moves[plan->nr_moves++];

		*mv = (struct balance_move){ .from = host, .vm = i, .to = t, .batch = placed / s.batch };
		snprintf(mv->reason, sizeof(mv->reason), "evacuate %s (maintenance): %s",
			 hosts[host].name, res[i].reason);
		w[t].memory_committed_mib += copies[i].memory_mib;
		w[t].cpu_load_mcpu += copies[i].cpu_mcpu;
		w[t].vcpus_committed += copies[i].vcpus;
		placed++;
	}
	plan->nr_batches = placed ? (placed - 1) / s.batch + 1 : 0;
	figures(w, nr, &plan->imbalance_after_ppm, &plan->memory_spread_after_ppm,
		&plan->cpu_spread_after_ppm);
	for (size_t k = 0; k < plan->nr_moves; k++)
		plan->moves[k].imbalance_after_ppm = plan->imbalance_after_ppm;
	snprintf(plan->summary, sizeof(plan->summary),
		 "evacuate %s: %zu of %zu VM%s in %zu batch%s of at most %zu%s", hosts[host].name,
		 plan->nr_moves, n, n == 1 ? "" : "s", plan->nr_batches,
		 plan->nr_batches == 1 ? "" : "es", s.batch,
		 plan->nr_stuck ? "; some VMs have no host to go to (see stuck)" : "");
	ret = 0;
out:
	if (ret)
		balance_plan_free(plan);
	free(w);
	free(copies);
	free(res);
	free(order);
	return ret;
}
