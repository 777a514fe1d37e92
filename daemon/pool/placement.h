/* placement.h: where a VM of the pool runs (issue 13): the choice of a host
 * by free memory and CPU, under the hard rules (host state, storage,
 * capacity) and the anti-affinity groups, with a reason for the choice and a
 * typed reason for every host refused; and the batch placement of a failed
 * host's HA VMs, by restart priority, capacity consumed as they are placed.
 *
 * Pure: inputs are structs the pool layer fills from its records, outputs
 * are decisions; no I/O, no clock, no global state. Every figure is an
 * integer (MiB, milli-CPUs, percent, parts per million) and every tie is
 * broken by host name, so any two hosts that run this on the same records
 * reach the same decision. The rules are in docs/pool.md, "Placement and
 * balance". */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POOL_MUST_CHECK __attribute__((warn_unused_result))

enum pool_host_state {
	POOL_HOST_UP = 0,
	POOL_HOST_MAINTENANCE, /* keeps its VMs until evacuated; takes no new ones */
	POOL_HOST_ISOLATED,    /* cannot renew its lease: takes nothing */
	POOL_HOST_DOWN,
	POOL_HOST_STATE_COUNT
};

/* How a VM's anti-affinity group binds. SOFT ("should", the default, like
 * vSphere's DRS and HA which may break a rule rather than leave a VM off):
 * hosts without a member of the group are preferred; when every host that
 * can take the VM has one, the host with the fewest members takes it and
 * the result says so. HARD ("must"): a host with a member is refused. */
enum place_affinity {
	PLACE_AA_SOFT = 0,
	PLACE_AA_HARD,
};

/* A VM: one that runs on a host (place_host.vms) or one to place. */
struct place_vm {
	const char *name;         /* unique in the pool */
	uint64_t memory_mib;      /* committed memory */
	uint32_t vcpus;
	uint32_t cpu_mcpu;        /* CPU it uses (measured; for a VM to place, expected), milli-CPUs */
	const char *group;        /* anti-affinity group, NULL or "" for none */
	enum place_affinity affinity;
	const char *const *storage; /* storage locations its disks are on */
	size_t nr_storage;
	const char *host;         /* --host override: only this host; NULL for none */
	int priority;             /* HA restart priority: higher is placed first */
};

struct place_host {
	const char *name;         /* unique in the pool */
	enum pool_host_state state;
	uint64_t memory_mib;      /* physical memory VMs may use */
	uint64_t memory_committed_mib; /* committed to its VMs (and reservations) */
	uint32_t memory_overcommit_pct; /* committable = memory_mib * pct / 100; 0 means 100 */
	uint32_t cpus;
	uint32_t cpu_load_mcpu;   /* CPU in use, milli-CPUs */
	uint32_t vcpus_committed;
	uint32_t vcpu_ratio_pct;  /* vCPUs allowed = cpus * pct / 100; 0: no limit */
	const char *const *storage; /* storage locations it mounts */
	size_t nr_storage;
	const struct place_vm *vms; /* its VMs (their groups count for anti-affinity) */
	size_t nr_vms;
};

/* Why a host cannot (or did not) take the VM; PLACE_OK when it can. */
enum place_why {
	PLACE_OK = 0,
	PLACE_NOT_REQUESTED,  /* --host names another host */
	PLACE_MAINTENANCE,
	PLACE_ISOLATED,
	PLACE_DOWN,
	PLACE_NO_STORAGE,     /* a storage location the VM needs is not mounted there */
	PLACE_NO_MEMORY,      /* committed + the VM's memory exceeds what may be committed */
	PLACE_NO_CPU,         /* more vCPUs than the host has CPUs, or than its vCPU ratio allows */
	PLACE_ANTI_AFFINITY,  /* a member of the VM's group runs there (hard rule) */
	PLACE_WHY_COUNT
};

/* One host's answer for one VM, with the figures its reason quotes. */
struct place_verdict {
	enum place_why why;
	const char *missing_storage; /* PLACE_NO_STORAGE: the first one missing */
	uint64_t memory_free_mib;    /* committable memory free before placing */
	uint32_t vcpus_free;         /* before placing; UINT32_MAX without a vCPU limit */
	uint32_t group_members;      /* members of the VM's group already there */
	int64_t score;               /* PLACE_OK: headroom after placing, higher is better */
};

/* Extra load placed on hosts by earlier decisions that the records do not
 * show yet (a batch, a plan): per host, NULL for none. */
struct place_extra {
	uint64_t *memory_mib;
	uint32_t *vcpus;
	uint32_t *cpu_mcpu;
	/* VMs placed so far and their hosts, for their groups. */
	const struct place_vm *const *vms;
	const size_t *vm_host;
	size_t nr_vms;
};

struct place_result {
	int host;                 /* index of the chosen host, -1 when refused */
	bool affinity_broken;     /* soft rule: placed beside a member of its group */
	bool unknown_host;        /* --host names no host of the pool */
	size_t eligible;          /* hosts that could take it */
	char reason[512];         /* the choice, or why nobody can take it, in words */
};

const char *place_why_name(enum place_why why);   /* "maintenance", "no-memory", ... */
const char *pool_host_state_name(enum pool_host_state s); /* "up", "maintenance", ... */

/* Committable memory of a host (capacity times its overcommit ratio). */
uint64_t place_host_memory_limit(const struct place_host *h);

/* Judge one host for vm (extra: load not in the records, may be NULL;
 * index: h's index, for extra). Fills v. */
void place_judge(const struct place_host *h, size_t index, const struct place_vm *vm,
		 const struct place_extra *extra, struct place_verdict *v);

/* Write one host's verdict in words ("h2: 1024 MiB free, 4096 MiB needed"). */
void place_verdict_format(const struct place_host *h, const struct place_vm *vm,
			  const struct place_verdict *v, char *buf, size_t size);

/* Place vm on one of hosts[nr]. verdicts: NULL or nr entries, filled for
 * every host (the typed reasons of a refusal, or why others lost). Returns
 * the chosen index (also in r->host) or -1 when no host can take it, with
 * r->reason saying why in words. Deterministic: the best score wins, ties go
 * to the host whose name sorts first. */
int place_vm(const struct place_host *hosts, size_t nr, const struct place_vm *vm,
	     const struct place_extra *extra, struct place_verdict *verdicts,
	     struct place_result *r);

/* Batch placement (HA restarts, evacuations): vms[nr_vms] placed in order of
 * priority (higher first), then memory (larger first), then name, each on
 * the hosts with the capacity the earlier ones took. results[i] is vms[i]'s
 * (input order); order, if not NULL, receives the indices in the order they
 * were placed. Returns the number placed, or -ENOMEM. */
int place_batch(const struct place_host *hosts, size_t nr_hosts, const struct place_vm *vms,
		size_t nr_vms, struct place_result *results, size_t *order) POOL_MUST_CHECK;
