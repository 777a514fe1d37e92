/* cgroup.c: worker CPU weight/cap, memory and pids limits through cgroup v2 or v1. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define V2_ROOT "/sys/fs/cgroup/unified"
#define V2_PURE "/sys/fs/cgroup"
#define V1_CPU  "/sys/fs/cgroup/cpu"
#define V1_MEM  "/sys/fs/cgroup/memory"
#define V1_PIDS "/sys/fs/cgroup/pids"
#define CFS_PERIOD_US 100000

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : (n < 0 ? -errno : -EIO);
}

static bool has_controller(const char *root, const char *name)
{
	char path[300], buf[512] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strstr(buf, name) != NULL;
}

static bool has_controllers(const char *root)
{
	return has_controller(root, "cpu") && has_controller(root, "memory");
}

static int make_dir(const char *path)
{
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

void cgroups_init(struct cgroups *cg, const char *parent, uint64_t overhead_mib)
{
	const char *v2 = has_controllers(V2_ROOT) ? V2_ROOT : has_controllers(V2_PURE) ? V2_PURE
										      : NULL;
	int ret;

	memset(cg, 0, sizeof(*cg));
	cg->overhead_mib = overhead_mib;
	if (v2) {
		snprintf(cg->cpu_dir, sizeof(cg->cpu_dir), "%s/%s", v2, parent);
		snprintf(cg->mem_dir, sizeof(cg->mem_dir), "%s/%s", v2, parent);
		ret = make_dir(cg->cpu_dir);
		if (!ret)
			ret = write_file(cg->cpu_dir, "cgroup.subtree_control", "+cpu +memory");
		if (!ret) {
			cg->mode = CGROUP_V2;
			if (has_controller(v2, "pids") &&
			    !write_file(cg->cpu_dir, "cgroup.subtree_control", "+pids"))
				snprintf(cg->pids_dir, sizeof(cg->pids_dir), "%s", cg->cpu_dir);
			else
				log_warn("cgroup v2: no pids controller: workers run without pids.max");
			return;
		}
		log_warn("cgroup v2 at %s: %s; trying v1", cg->cpu_dir, strerror(-ret));
	}
	snprintf(cg->cpu_dir, sizeof(cg->cpu_dir), "%s/%s", V1_CPU, parent);
	snprintf(cg->mem_dir, sizeof(cg->mem_dir), "%s/%s", V1_MEM, parent);
	ret = make_dir(cg->cpu_dir);
	if (!ret)
		ret = make_dir(cg->mem_dir);
	if (!ret) {
		cg->mode = CGROUP_V1;
		snprintf(cg->pids_dir, sizeof(cg->pids_dir), "%s/%s", V1_PIDS, parent);
		if (make_dir(cg->pids_dir)) {
			log_warn("cgroups: cannot create %s: workers run without pids.max",
				 cg->pids_dir);
			cg->pids_dir[0] = 0;
		}
		return;
	}
	log_warn("cgroups: cannot create %s or %s (%s): VMs run without CPU and memory limits",
		 cg->cpu_dir, cg->mem_dir, strerror(-ret));
	cg->mode = CGROUP_NONE;
}

const char *cgroups_mode_name(const struct cgroups *cg)
{
	return cg->mode == CGROUP_V2 ? "v2" : cg->mode == CGROUP_V1 ? "v1" : "none";
}

static void vm_dirs(const struct cgroups *cg, const char *id, char *cpu, char *mem, size_t len)
{
	snprintf(cpu, len, "%s/%s", cg->cpu_dir, id);
	snprintf(mem, len, "%s/%s", cg->mem_dir, id);
}

int cgroups_vm_set_cpu(struct cgroups *cg, const char *id, unsigned cpus, unsigned weight,
		       unsigned max_pct)
{
	char cpu[400], mem[400], val[64];
	uint64_t quota = (uint64_t)CFS_PERIOD_US * cpus * max_pct / 100;
	int ret;

	if (cg->mode == CGROUP_NONE)
		return 0;
	vm_dirs(cg, id, cpu, mem, sizeof(cpu));
	if (cg->mode == CGROUP_V2) {
		snprintf(val, sizeof(val), "%u", weight);
		ret = write_file(cpu, "cpu.weight", val);
		if (!ret) {
			if (max_pct >= 100)
				snprintf(val, sizeof(val), "max %d", CFS_PERIOD_US);
			else
				snprintf(val, sizeof(val), "%" PRIu64 " %d", quota, CFS_PERIOD_US);
			ret = write_file(cpu, "cpu.max", val);
		}
		return ret;
	}
	/* v1 shares: weight 100 (the default) = 1024 shares, as v2 maps them. */
	snprintf(val, sizeof(val), "%u", MAX(2u, weight * 1024 / 100));
	ret = write_file(cpu, "cpu.shares", val);
	if (!ret) {
		snprintf(val, sizeof(val), "%d", CFS_PERIOD_US);
		ret = write_file(cpu, "cpu.cfs_period_us", val);
	}
	if (!ret) {
		if (max_pct >= 100)
			snprintf(val, sizeof(val), "-1");
		else
			snprintf(val, sizeof(val), "%" PRIu64, MAX(quota, (uint64_t)1000));
		ret = write_file(cpu, "cpu.cfs_quota_us", val);
	}
	return ret;
}

int cgroups_vm_attach(struct cgroups *cg, const char *id, pid_t pid, unsigned cpus,
		      uint64_t memory_mib, unsigned weight, unsigned max_pct)
{
	char cpu[400], mem[400], pids[400], val[64];
	int ret;

	if (cg->mode == CGROUP_NONE)
		return 0;
	vm_dirs(cg, id, cpu, mem, sizeof(cpu));
	if ((ret = make_dir(cpu)) || (ret = make_dir(mem)))
		return ret;
	ret = cgroups_vm_set_cpu(cg, id, cpus, weight, max_pct);
	if (ret)
		return ret;
	snprintf(val, sizeof(val), "%" PRIu64, (memory_mib + cg->overhead_mib) << 20);
	ret = write_file(mem, cg->mode == CGROUP_V2 ? "memory.max" : "memory.limit_in_bytes", val);
	if (ret)
		return ret;
	if (cg->pids_dir[0]) {
		snprintf(pids, sizeof(pids), "%s/%s", cg->pids_dir, id);
		if ((ret = make_dir(pids)))
			return ret;
		snprintf(val, sizeof(val), "%d", CGROUP_PIDS_MAX);
		if ((ret = write_file(pids, "pids.max", val)))
			return ret;
	}
	snprintf(val, sizeof(val), "%d", (int)pid);
	ret = write_file(cpu, "cgroup.procs", val);
	if (!ret && cg->mode == CGROUP_V1)
		ret = write_file(mem, "cgroup.procs", val);
	if (!ret && cg->mode == CGROUP_V1 && cg->pids_dir[0])
		ret = write_file(pids, "cgroup.procs", val);
	return ret;
}

int64_t cgroups_vm_memory(struct cgroups *cg, const char *id)
{
	char cpu[400], mem[400], path[512];
	long long v = -1;
	FILE *f;

	if (cg->mode == CGROUP_NONE)
		return -ENOTSUP;
	vm_dirs(cg, id, cpu, mem, sizeof(cpu));
	snprintf(path, sizeof(path), "%s/%s", mem,
		 cg->mode == CGROUP_V2 ? "memory.current" : "memory.usage_in_bytes");
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fscanf(f, "%lld", &v) != 1)
		v = -EIO;
	fclose(f);
	return v;
}

void cgroups_vm_remove(struct cgroups *cg, const char *id)
{
	char cpu[400], mem[400];

	if (cg->mode == CGROUP_NONE)
		return;
	vm_dirs(cg, id, cpu, mem, sizeof(cpu));
	rmdir(cpu);
	if (strcmp(cpu, mem))
		rmdir(mem);
	if (cg->mode == CGROUP_V1 && cg->pids_dir[0]) {
		char pids[400];

		snprintf(pids, sizeof(pids), "%s/%s", cg->pids_dir, id);
		rmdir(pids);
	}
}
