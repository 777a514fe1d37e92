/* cgroup.h: per-VM CPU, memory and task limits for workers: cgroup v2 where
 * its cpu and memory controllers are available, else cgroup v1 (cpu, memory,
 * and pids where mounted).
 * Limits follow Hyper-V's Set-VMProcessor: a relative weight and a cap in
 * percent of the VM's vCPUs. Where nothing is writable, limits are skipped
 * with one warning. Owned by the supervisor; not thread-safe. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "compiler.h"

enum cgroup_mode { CGROUP_NONE, CGROUP_V1, CGROUP_V2 };

struct cgroups {
	enum cgroup_mode mode;
	char cpu_dir[256];  /* v1: .../cpu/<parent>; v2: .../<parent> */
	char mem_dir[256];  /* v1: .../memory/<parent>; v2: same as cpu_dir */
	char pids_dir[256]; /* v1: .../pids/<parent>; v2: same as cpu_dir; "": no pids limit */
	uint64_t overhead_mib; /* allowed on top of guest memory */
};

/* Detect the hierarchy and create `parent` below it. Never fails: on
 * trouble mode is CGROUP_NONE and the reason is logged. */
void cgroups_init(struct cgroups *cg, const char *parent, uint64_t overhead_mib);
const char *cgroups_mode_name(const struct cgroups *cg);

/* Tasks (threads included) a worker's group may hold: pids.max. The same
 * figure as cella-vm's RLIMIT_NPROC (vmm/sandbox/sandbox.h): vCPU and I/O
 * threads plus io_uring's workers, which grow with the host's CPUs. */
#define CGROUP_PIDS_MAX 1024

/* Create the VM's group `id`, set its limits, move pid into it. */
int cgroups_vm_attach(struct cgroups *cg, const char *id, pid_t pid, unsigned cpus,
		      uint64_t memory_mib, unsigned weight, unsigned max_pct) __must_check;
/* Re-apply CPU limits to a running VM. */
int cgroups_vm_set_cpu(struct cgroups *cg, const char *id, unsigned cpus, unsigned weight,
		       unsigned max_pct) __must_check;
/* Memory charged to the group (bytes), or -errno. */
int64_t cgroups_vm_memory(struct cgroups *cg, const char *id);
/* Remove the group once its processes are gone (best effort). */
void cgroups_vm_remove(struct cgroups *cg, const char *id);
