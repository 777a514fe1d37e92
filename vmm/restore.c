/* restore.c: cella-vm --restore's steps around creating the VM (restore.h). */
#include "restore.h"

#include <fcntl.h>
#include <stdio.h>

#include "config.h"
#include "fdspec.h"
#include "log.h"
#include "mem_prefetch.h"
#include "state/memorder.h"
#include "state/statefile.h"
#include "vm.h"

static double ms_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* --restore: open and check the state file (header, every section's
 * checksum) and that it fits the configuration. No guest memory is read.
 * 0, or -1 after logging why (configuration error: exit status 2). */
int restore_open(const char *spec, const struct vm_config *cfg, struct statefile *sf)
{
	char err[256];
	int fd;

	fd = fdspec_open(spec, O_RDONLY, 0, FDSPEC_REG, err, sizeof(err));
	if (fd < 0) {
		log_err("--restore %s", err);
		return -1;
	}
	if (statefile_open(sf, fd, err, sizeof(err))) {
		log_err("--restore %s: %s", spec, err);
		return -1;
	}
	/* More vCPUs than configured: hot-plugged ones (vm_state_load adds them). */
	if (sf->info.nr_vcpus < cfg->cpus || sf->info.nr_vcpus > config_cpus_possible(cfg) ||
	    sf->info.mem_size != vm_config_mem_size(cfg)) {
		log_err("--restore %s: state: the saved VM has %u vCPUs and %llu MiB, the "
			"configuration %u and %llu MiB", spec, sf->info.nr_vcpus,
			(unsigned long long)(sf->info.mem_size >> 20), cfg->cpus,
			(unsigned long long)(vm_config_mem_size(cfg) >> 20));
		statefile_close(sf);
		return -1;
	}
	return 0;
}

/* --restore after vm_create_restore: devices and vCPUs from the
 * configuration, then the file's state on top. */
int restore_setup(struct vm *vm, struct statefile *sf, const struct timespec *t0,
			 struct mem_order *order)
{
	struct timespec t1, t2;
	char err[256];
	int ret = vm_setup_restore(vm);

	if (ret)
		return ret;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ret = statefile_load(vm, sf);
	phase_mark(vm->trace, "state_load");
	/* The prefetch's order, which starts once the worker is sandboxed. */
	if (!ret && (ret = statefile_mem_order(sf, order, err, sizeof(err))))
		log_err("%s", err);
	/* Nothing touches guest RAM from here until the prefetch starts:
	 * the setup phase's fault thread may go (joined before the sandbox). */
	guest_mem_prefetch_setup_ending(&vm->mem);
	phase_mark(vm->trace, "mem_order");
	clock_gettime(CLOCK_MONOTONIC, &t2);
	statefile_close(sf); /* the VM keeps its own descriptor (and lock) */
	if (ret) {
		vm_request_exit(vm, WORKER_EXIT_CONFIG, "the state file cannot be restored");
		return ret;
	}
	log_info("restore: state loaded in %.3f ms (setup %.3f ms, load %.3f ms)",
		 ms_between(t0, &t2), ms_between(t0, &t1), ms_between(&t1, &t2));
	return 0;
}
