/* balance.h: plans of moves for the pool (issue 13): `cella pool balance`
 * (DRS-like: even out memory and CPU load) and `cella host maintenance H on`
 * (every VM off H, in ordered batches). Pure, like placement.h: the pool
 * layer fills place_host records (with each host's VMs and their load),
 * gets a plan with a reason per move and the projected imbalance before and
 * after, shows it (--dry-run) or carries it out. docs/pool.md, "Placement
 * and balance", has the rules. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "placement.h"

/* Defaults (a field left 0 takes them). */
#define BALANCE_MAX_MOVES      8       /* moves per run */
#define BALANCE_THRESHOLD_PPM  50000   /* imbalance 0.05: below it nothing moves */
#define BALANCE_MIN_GAIN_PPM   20000   /* a move must narrow its two hosts' gap by 0.02 */
#define BALANCE_EVACUATE_BATCH 4       /* live migrations at once in an evacuation */

struct balance_settings {
	size_t max_moves;
	uint32_t threshold_ppm;
	uint32_t min_gain_ppm;      /* see balance_plan */
	size_t batch;               /* evacuation: moves per batch */
};

struct balance_move {
	size_t from, vm;            /* the VM: hosts[from].vms[vm] */
	size_t to;
	size_t batch;               /* evacuation: its batch (0, 1, ...); balance: its rank */
	uint32_t imbalance_after_ppm; /* balance: the pool's imbalance once it is done */
	uint32_t gap_before_ppm, gap_after_ppm; /* balance: between its two hosts */
	char reason[640];
};

/* Evacuation: a VM no host can take, and why (place_result's words). */
struct balance_stuck {
	size_t from, vm;
	char reason[512];
};

struct balance_plan {
	struct balance_move *moves;
	size_t nr_moves;
	struct balance_stuck *stuck;
	size_t nr_stuck;
	size_t nr_batches;
	/* The imbalance (below) of the hosts that are up, before and after the
	 * plan; and each resource's spread alone (standard deviation of the
	 * hosts' load, parts per million of capacity). */
	uint32_t imbalance_before_ppm, imbalance_after_ppm;
	uint32_t memory_spread_before_ppm, memory_spread_after_ppm;
	uint32_t cpu_spread_before_ppm, cpu_spread_after_ppm;
	char summary[256];
};

/* The pool's imbalance: over the hosts that are up, the root mean square of
 * the standard deviations of their memory load (committed / physical
 * memory) and CPU load (used / CPUs), in parts per million; 0 when even.
 * Hosts are read as they are; a plan's figures include its moves. */
uint32_t balance_imbalance(const struct place_host *hosts, size_t nr);

/* Plan moves that even out the load: at each step the single move that
 * lowers the imbalance most, as long as the imbalance is above the
 * threshold, up to max_moves. Hysteresis, so that a plan carried out is not
 * followed by moves back: a move must narrow the load gap between its two
 * hosts (the root mean square of their memory and CPU load differences) by
 * at least min_gain, which a VM that merely swaps which host is the busier
 * does not; and every move lowers the imbalance, so runs cannot cycle. The
 * gain is per move, not of the whole pool's imbalance, so that it does not
 * shrink as the pool grows.
 * A VM moves at most once in a plan; only between hosts that are up; never
 * to a host without its storage, without room for it (placement's rules)
 * or with a member of its anti-affinity group. Ties: the smaller VM, then
 * VM name, then host name. Returns 0 (plan filled, maybe empty) or -ENOMEM;
 * free the plan with balance_plan_free. */
int balance_plan(const struct place_host *hosts, size_t nr, const struct balance_settings *s,
		 struct balance_plan *plan) POOL_MUST_CHECK;

/* Plan the evacuation of hosts[host] (maintenance mode): each of its VMs
 * placed on another host that is up, by placement's rules with the room
 * earlier moves took, in placement's batch order (priority, memory, name),
 * in batches of s->batch. VMs nobody can take are listed in stuck with the
 * reasons. Returns 0, -EINVAL (no such host) or -ENOMEM. */
int balance_evacuate(const struct place_host *hosts, size_t nr, size_t host,
		     const struct balance_settings *s, struct balance_plan *plan) POOL_MUST_CHECK;

void balance_plan_free(struct balance_plan *plan);
