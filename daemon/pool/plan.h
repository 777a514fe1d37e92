/* plan.h: the pool's plans of moves as JSON (docs/pool.md, "Maintenance"
 * and "Balance"): a snapshot of the pool's records (hosts and VMs, as the
 * pool's cache holds them) turned into placement's records, given to
 * balance.c, and its plan written back as JSON for the API, the CLI and the
 * executor. Pure: no I/O, no clock, no locks (tests/unit/pool/test_plan.c).
 *
 * Snapshot: {"hosts": [{"name", "state": "up"|"maintenance"|"down",
 * "memory_mib", "cpus"}], "vms": [{"name", "uuid", "host", "state",
 * "memory_mib", "cpus"}]}. A VM's state is its owner's runtime state
 * ("running", "stopped", ...).
 *
 * Load: a host's committed memory is the memory of its active VMs
 * (running, paused, starting, incoming: what admission counts); its CPU
 * load is its active VMs' vCPUs, each counted as one busy CPU (1000
 * milli-CPUs): no measured load travels in the records yet, and a vCPU is
 * what a VM may use. An evacuation places every VM of the host, stopped
 * ones too. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "placement.h"

/* Whether a VM in this runtime state counts as load (and moves live). */
bool plan_vm_active(const char *state);

/* The plan for the snapshot: evacuate NULL: balance (balance_plan);
 * otherwise every VM of that host elsewhere (balance_evacuate).
 * *out: {"kind": "balance"|"evacuate", "host"?, "moves": [{"vm", "uuid",
 * "from", "to", "batch", "live", "memory_mib", "reason"}], "stuck": [{"vm",
 * "uuid", "from", "reason"}], "batches", "imbalance_before",
 * "imbalance_after" (0..1, below), "memory_spread_before", ...,
 * "summary"}. 0, -EINVAL (bad snapshot or no such host: err says) or
 * -ENOMEM. */
int plan_make(json_t *snapshot, const char *evacuate, json_t **out, char *err,
	      size_t errlen) POOL_MUST_CHECK;
