/* standby_prep.c: cella-vm --standby --mem MIB (standby.h): the standby's
 * VM made ready for a RAM size before the request (memory slots over a
 * reserved range, irqchip, PIT: vmm/core/vm_prep.h), which is what costs a
 * large restore's request most on a host without two-dimensional paging
 * (KVM fills per-slot arrays as the slot is registered). */
#include "standby.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "conf/limits.h"
#include "log.h"
#include "vm_prep.h"

int standby_prep_option(int argc, char **argv, int *i, uint64_t *mem_mib)
{
	const char *v;
	char *end;
	unsigned long long n;
	struct sysinfo si;

	if (!strcmp(argv[*i], "--mem")) {
		if (*i + 1 >= argc) {
			fputs("cella-vm: --standby --mem needs the guest's RAM in MiB\n", stderr);
			return -1;
		}
		v = argv[++*i];
	} else if (!strncmp(argv[*i], "--mem=", 6)) {
		v = argv[*i] + 6;
	} else {
		return 0;
	}
	if (*mem_mib) {
		fputs("cella-vm: --standby: --mem is given twice\n", stderr);
		return -1;
	}
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || v[0] == '+') {
		fprintf(stderr, "cella-vm: --standby --mem: expected the guest's RAM in MiB, got '%s'\n",
			v);
		return -1;
	}
	if (n < CONF_MIN_MEM_MIB || n > CONF_MAX_MEM_MIB) {
		fprintf(stderr, "cella-vm: --standby --mem: %llu is out of range (%d to %d)\n", n,
			CONF_MIN_MEM_MIB, CONF_MAX_MEM_MIB);
		return -1;
	}
	/* What the restore's configuration check would refuse: KVM's per-slot
	 * arrays for it would be made for nothing. */
	if (sysinfo(&si) == 0 && n > ((uint64_t)si.totalram * si.mem_unit >> 20)) {
		fprintf(stderr, "cella-vm: --standby --mem: %llu MiB is more than the host's %llu MiB\n",
			n, (unsigned long long)((uint64_t)si.totalram * si.mem_unit >> 20));
		return -1;
	}
	*mem_mib = n;
	return 1;
}

void standby_prepare(struct standby *sb, int kvm_fd, uint64_t mem_mib)
{
	struct timespec t0, t1;
	struct vm_prep *p;
	char err[256];
	int ret;

	if (!mem_mib || sb->vm_fd <= 0)
		return; /* no VM: the restore's KVM_CREATE_VM reports why */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	p = malloc(sizeof(*p));
	if (!p) {
		log_warn("standby: out of memory: not prepared for %llu MiB",
			 (unsigned long long)mem_mib);
		return;
	}
	ret = vm_prep_make(p, sb->vm_fd, mem_mib, err, sizeof(err));
	if (ret) {
		/* The VM may hold part of it: a new one, as without --mem. */
		log_warn("standby: not prepared for %llu MiB: %s", (unsigned long long)mem_mib, err);
		free(p);
		close(sb->vm_fd);
		sb->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
		if (sb->vm_fd < 0)
			sb->vm_fd = 0;
		return;
	}
	sb->prep = p;
	sb->vm_fd = 0; /* the prepared VM's now */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("standby: prepared for %llu MiB (memory slots, irqchip, PIT) in %.3f ms",
		 (unsigned long long)mem_mib,
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
}

void standby_prep_free(struct standby *sb)
{
	if (!sb->prep)
		return;
	vm_prep_release(sb->prep);
	free(sb->prep);
	sb->prep = NULL;
}
