/* dynmem_decide.c: the dynamic-memory balancer's decision (dynmem_decide.h):
 * desired memory from demand and buffer, the host's budget, the shortfall
 * taken by weight, and the hysteresis that keeps targets from
 * oscillating. Pure: tested alone (tests/unit/daemon/test_dynmem.c). */
#include "dynmem_decide.h"

#include <stdlib.h>

const char *dm_reason_name(enum dm_reason r)
{
	static const char *const names[] = { "none", "demand", "idle", "host-pressure",
					     "pressure-eased", "limits" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

static uint64_t clamp_u64(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* demand + buffer% (rounded up), within [min, max]; without statistics the
 * VM keeps what it has. */
static uint64_t desired_of(const struct dm_vm *v)
{
	uint64_t want;

	if (!v->have_demand)
		return clamp_u64(v->target_mib, v->min_mib, v->max_mib);
	want = v->demand_mib + (v->demand_mib * v->buffer_pct + 99) / 100;
	return clamp_u64(want, v->min_mib, v->max_mib);
}

/* Take up to *need MiB from the VMs idx[0..k), never below floor[]: the VM
 * with the most above its floor first, levelling them (water-filling). */
static void level_down(const size_t *idx, size_t k, const uint64_t *floor, uint64_t *alloc,
		       uint64_t *need)
{
	while (*need) {
		uint64_t top = 0, second = 0, each, step;
		size_t cnt = 0;

		for (size_t j = 0; j < k; j++) {
			size_t i = idx[j];
			uint64_t room = alloc[i] > floor[i] ? alloc[i] - floor[i] : 0;

			if (room > top) {
				second = top;
				top = room;
				cnt = 1;
			} else if (room == top && room) {
				cnt++;
			} else if (room > second) {
				second = room;
			}
		}
		if (!top)
			return;
		each = (*need + cnt - 1) / cnt;
		step = top - second < each ? top - second : each;
		for (size_t j = 0; j < k && *need; j++) {
			size_t i = idx[j];
			uint64_t room = alloc[i] > floor[i] ? alloc[i] - floor[i] : 0, take;

			if (room != top)
				continue;
			take = step < *need ? step : *need;
			alloc[i] -= take;
			*need -= take;
		}
	}
}

/* The allocation when the VMs want more than the budget: by weight tiers,
 * lowest first; in a tier the memory beyond demand, then down to minimum. */
static void take_shortfall(struct dm_vm *vms, size_t n, uint64_t *alloc, uint64_t need)
{
	size_t *order = malloc(n * sizeof(*order)), *tier, k;
	uint64_t *floor = malloc(n * sizeof(*floor));

	if (!order || !floor) { /* cannot plan: everyone to the minimum is safe */
		for (size_t i = 0; i < n; i++)
			alloc[i] = vms[i].min_mib;
		free(order);
		free(floor);
		return;
	}
	for (size_t i = 0; i < n; i++) { /* insertion sort by weight: stable */
		size_t j = i;

		while (j && vms[order[j - 1]].weight > vms[i].weight) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (size_t t = 0; t < n && need; t += k) {
		tier = order + t;
		k = 0;
		while (t + k < n && vms[order[t + k]].weight == vms[order[t]].weight)
			k++;
		for (size_t j = 0; j < k; j++) { /* first what is beyond demand */
			const struct dm_vm *v = &vms[tier[j]];
			/* A VM whose demand is unknown (no statistics yet) gives
			 * only in the second round. */
			uint64_t f = !v->have_demand ? alloc[tier[j]]
				     : v->demand_mib > v->min_mib ? v->demand_mib : v->min_mib;

			floor[tier[j]] = f < alloc[tier[j]] ? f : alloc[tier[j]];
		}
		level_down(tier, k, floor, alloc, &need);
		for (size_t j = 0; j < k; j++) /* then down to the minimum */
			floor[tier[j]] = vms[tier[j]].min_mib;
		level_down(tier, k, floor, alloc, &need);
	}
	free(order);
	free(floor);
}

void dm_decide(const struct dm_params *p, const struct dm_host *h, struct dm_vm *vms, size_t n,
	       uint64_t now_ms, struct dm_summary *sum)
{
	uint64_t *alloc = calloc(n ? n : 1, sizeof(*alloc)), resident = 0;
	bool psi = h->psi_some_avg10 >= 0 && h->psi_some_avg10 >= p->psi_threshold;

	sum->desired_mib = 0;
	sum->changes = 0;
	sum->shortfall_mib = 0;
	for (size_t i = 0; i < n; i++) {
		vms[i].desired_mib = desired_of(&vms[i]);
		sum->desired_mib += vms[i].desired_mib;
		resident += vms[i].resident_mib;
	}
	sum->pressure = h->available_mib < (int64_t)h->reserve_mib || psi;
	sum->budget_mib = (int64_t)resident + h->available_mib - (int64_t)h->reserve_mib -
			  (psi ? (int64_t)p->psi_step_mib : 0);
	for (size_t i = 0; i < n; i++)
		vms[i].new_target_mib = alloc ? vms[i].desired_mib : vms[i].min_mib;
	if (alloc && (int64_t)sum->desired_mib > sum->budget_mib) {
		sum->shortfall_mib = sum->desired_mib - (uint64_t)(sum->budget_mib > 0 ? sum->budget_mib : 0);
		for (size_t i = 0; i < n; i++)
			alloc[i] = vms[i].desired_mib;
		take_shortfall(vms, n, alloc, sum->shortfall_mib);
		for (size_t i = 0; i < n; i++)
			vms[i].new_target_mib = alloc[i];
	}
	free(alloc);
	/* Short now, or would be if the VMs had what they want. */
	sum->pressure = sum->pressure || sum->shortfall_mib;

	for (size_t i = 0; i < n; i++) {
		struct dm_vm *v = &vms[i];
		uint64_t want = v->new_target_mib, cur = v->target_mib;
		bool short_now = want < v->desired_mib;

		v->new_target_mib = cur;
		v->reason = DM_NONE;
		if (cur < v->min_mib || cur > v->max_mib) {
			v->new_target_mib = want;
			v->reason = DM_LIMITS;
			v->low_since_ms = 0;
		} else if (want > cur) {
			v->low_since_ms = 0;
			if (want - cur >= p->min_change_mib || want == v->max_mib) {
				v->new_target_mib = want;
				v->reason = v->squeezed ? DM_EASED : DM_DEMAND;
			}
		} else if (want < cur && cur - want >= p->min_change_mib) {
			if (short_now || sum->pressure || sum->shortfall_mib) { /* the host needs it now */
				v->new_target_mib = want;
				v->reason = DM_PRESSURE;
				v->low_since_ms = 0;
			} else {
				if (!v->low_since_ms)
					v->low_since_ms = now_ms;
				if (now_ms - v->low_since_ms >= p->shrink_delay_ms) {
					v->new_target_mib = want;
					v->reason = DM_IDLE;
					v->low_since_ms = 0;
				}
			}
		} else {
			v->low_since_ms = 0;
		}
		v->squeezed = v->new_target_mib < v->desired_mib && (short_now || v->squeezed);
		if (v->reason != DM_NONE && v->new_target_mib != cur)
			sum->changes++;
		else
			v->reason = DM_NONE;
	}
}
