/* dynmem_decide.h: the dynamic-memory balancer's decision (docs/memory.md,
 * "Dynamic memory"): from each VM's demand and settings and the host's
 * memory, the memory each VM should have now. Pure: no I/O, no clock, no
 * locks; features/dynmem.c feeds it every period and applies the result. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a VM's target changed. */
enum dm_reason {
	DM_NONE,       /* no change */
	DM_DEMAND,     /* the guest needs more (demand + buffer grew) */
	DM_IDLE,       /* the guest needs less, for shrink_delay_ms: memory taken back */
	DM_PRESSURE,   /* the host is short: taken from the lowest weights first */
	DM_EASED,      /* the host has room again: given back, highest weight first */
	DM_LIMITS,     /* the target was outside [minimum, maximum] (settings changed) */
};

const char *dm_reason_name(enum dm_reason r);

struct dm_params {
	double psi_threshold;     /* PSI "some avg10" (%) from which the host is under pressure */
	uint64_t psi_step_mib;    /* memory to free while PSI is over it (on top of the reserve) */
	uint64_t min_change_mib;  /* smaller moves are not made (hysteresis) */
	uint64_t shrink_delay_ms; /* how long demand must stay low before memory is taken back */
};

/* One VM. The caller fills the inputs; the state members are the
 * balancer's memory of the VM between periods (start them at 0). */
struct dm_vm {
	/* settings */
	uint64_t min_mib, max_mib; /* effective: minimum <= startup <= maximum */
	unsigned buffer_pct;       /* Hyper-V's buffer: memory beyond demand, in % of demand */
	unsigned weight;           /* 1..10000: who keeps memory when the host is short */
	/* measured */
	bool have_demand;          /* the guest's statistics arrived */
	uint64_t demand_mib;       /* memory the guest uses (total - available) */
	uint64_t free_mib;         /* memory the guest has free (for the order of giving) */
	uint64_t resident_mib;     /* guest memory the host holds for it now */
	uint64_t target_mib;       /* the memory it has now (the last target set) */
	/* state, kept by the caller */
	uint64_t low_since_ms;     /* when its demand fell below its target (0: it did not) */
	bool squeezed;             /* holds less than it wants because the host is short */
	/* result */
	uint64_t desired_mib;      /* demand + buffer, within [min, max] */
	uint64_t new_target_mib;   /* what to set (== target_mib when nothing changes) */
	enum dm_reason reason;
};

struct dm_host {
	int64_t available_mib; /* MemAvailable */
	uint64_t reserve_mib;  /* what the host keeps for itself */
	double psi_some_avg10; /* /proc/pressure/memory "some avg10", in % (-1: unknown) */
};

struct dm_summary {
	bool pressure;          /* MemAvailable under the reserve, or PSI over its threshold */
	int64_t budget_mib;     /* the memory the dynamic VMs may have together */
	uint64_t desired_mib;   /* what they would like together */
	uint64_t shortfall_mib; /* desired - budget, when positive */
	unsigned changes;       /* VMs whose target changes */
};

/* The balancer's decision at time now_ms (any monotonic clock, > 0) for n
 * VMs: sets each vm's desired_mib, new_target_mib and reason and updates
 * its state; fills *sum. The budget is the memory the VMs hold now plus
 * what the host can spare (MemAvailable - reserve, less psi_step_mib under
 * PSI pressure): it holds still while the balloons move memory back and
 * forth, so the decision does not feed on itself. When the VMs want more
 * than the budget, the shortfall is taken tier by tier from the lowest
 * weight up: in a tier first the memory beyond demand (the VM with the most
 * free memory first; a VM without statistics keeps its memory in this
 * round), then down to each VM's minimum; no VM ever goes below its
 * minimum, even when the budget cannot be met. */
void dm_decide(const struct dm_params *p, const struct dm_host *h, struct dm_vm *vms, size_t n,
	       uint64_t now_ms, struct dm_summary *sum);
