/* cpuid.c: per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID: APIC ids and
 * topology (one package, one thread per core), hypervisor bit, features we
 * do not emulate hidden; checks whether this host's KVM honours it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "log.h"

#define CPUID_FIRST_NENT 128
#define CPUID_MAX_NENT   4096 /* KVM's own limit is KVM_MAX_CPUID_ENTRIES (256) */

#define CPUID1_ECX_MONITOR    (1u << 3)
#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT        (1u << 28)

#define TOPO_LEVEL_SMT  1
#define TOPO_LEVEL_CORE 2

/* Bits needed to hold ids 0..n-1. */
static unsigned id_bits(unsigned n)
{
	unsigned bits = 0;

	while ((1u << bits) < n)
		bits++;
	return bits;
}

static void set_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned index, unsigned nr_cpus)
{
	/* x2APIC topology (leaf 0xB, and 0x1F which extends it): level 0 is
	 * SMT with one thread, level 1 the cores of the single package. */
	e->edx = index; /* x2APIC id */
	switch (e->index) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (TOPO_LEVEL_SMT << 8) | 0;
		break;
	case 1:
		e->eax = id_bits(nr_cpus);
		e->ebx = nr_cpus;
		e->ecx = (TOPO_LEVEL_CORE << 8) | 1;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index; /* level type 0: invalid, ends the list */
		break;
	}
}

void x86_cpuid_apply_template(struct kvm_cpuid2 *cpuid, unsigned index, unsigned nr_cpus)
{
	for (unsigned i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 0x1:
			e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | ((nr_cpus & 0xffu) << 16);
			e->ecx |= CPUID1_ECX_HYPERVISOR;
			e->ecx &= ~CPUID1_ECX_MONITOR;
			if (nr_cpus > 1)
				e->edx |= CPUID1_EDX_HTT;
			else
				e->edx &= ~CPUID1_EDX_HTT;
			break;
		case 0x4:
			/* Deterministic cache parameters: cores per package in
			 * [31:26], sharing CPUs in [25:14]; L3 is shared by all. */
			if ((e->eax & 0x1f) == 0)
				break;
			e->eax &= 0x3fffu;
			e->eax |= (nr_cpus - 1) << 26;
			if (((e->eax >> 5) & 0x7) >= 3)
				e->eax |= (nr_cpus - 1) << 14;
			break;
		case 0x5: /* MONITOR/MWAIT parameters: hidden with the feature */
		case 0xa: /* architectural PMU: not offered */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			set_topology_leaf(e, index, nr_cpus);
			break;
		default:
			/* Everything else as KVM reports it, including its own
			 * leaves at 0x40000000 (kvmclock and PV features). */
			break;
		}
	}
}

static struct kvm_cpuid2 *cpuid_alloc(unsigned nent)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));

	if (c)
		c->nent = nent;
	return c;
}

/* KVM_GET_SUPPORTED_CPUID, growing the buffer while KVM says E2BIG. */
int x86_cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	for (unsigned nent = CPUID_FIRST_NENT; nent <= CPUID_MAX_NENT; nent *= 2) {
		struct kvm_cpuid2 *c = cpuid_alloc(nent);
		int err;

		if (!c)
			return -ENOMEM;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		err = errno;
		free(c);
		if (err != E2BIG)
			return -err;
	}
	return -E2BIG;
}

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid2 *c, uint32_t fn,
                                                uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* Compare leaf 1's APIC id and feature words with what KVM_GET_CPUID2
 * reads back: hosts whose KVM ignores KVM_SET_CPUID2 differ. */
/* KVM's PV features that a guest uses through VMCALL: PV_UNHALT (the
 * spinlock kick), PV_SEND_IPI, PV_SCHED_YIELD. */
#define KVM_PV_HYPERCALL_FEATURES ((1u << 7) | (1u << 11) | (1u << 13))

/* Clear them in leaf 0x40000001; whether any was set. */
static bool hide_pv_hypercalls(struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0x40000001 && (e->eax & KVM_PV_HYPERCALL_FEATURES)) {
			e->eax &= ~KVM_PV_HYPERCALL_FEATURES;
			return true;
		}
	}
	return false;
}

static int check_applied(int vcpu_fd, const struct kvm_cpuid2 *set, bool *applied)
{
	/* The vCPU's table is the one just set: a buffer of its size first
	 * (not the largest KVM allows, 160 KiB), larger if KVM says E2BIG. */
	struct kvm_cpuid2 *got = cpuid_alloc(set->nent + 8);
	const struct kvm_cpuid_entry2 *a, *b;
	int ret;

	if (!got)
		return -ENOMEM;
	ret = ioctl(vcpu_fd, KVM_GET_CPUID2, got) < 0 ? -errno : 0;
	if (ret == -E2BIG) {
		free(got);
		got = cpuid_alloc(CPUID_MAX_NENT);
		if (!got)
			return -ENOMEM;
		ret = ioctl(vcpu_fd, KVM_GET_CPUID2, got) < 0 ? -errno : 0;
	}
	if (ret) {
		free(got);
		return ret;
	}
	a = find_leaf(set, 1, 0);
	b = find_leaf(got, 1, 0);
	*applied = !a || (b && a->ebx == b->ebx && a->ecx == b->ecx);
	free(got);
	return 0;
}

int x86_setup_cpuid_from(const struct kvm_cpuid2 *supported, int vcpu_fd, unsigned index,
			 unsigned nr_cpus, bool ignored_before, bool *applied)
{
	struct kvm_cpuid2 *c;
	bool ok = true;
	size_t len;
	int ret;

	if (nr_cpus < 1 || nr_cpus > 255 || index >= nr_cpus)
		return -EINVAL;
	/* The template is per vCPU (APIC ids): on a copy. */
	len = sizeof(*c) + supported->nent * sizeof(struct kvm_cpuid_entry2);
	c = malloc(len);
	if (!c)
		return -ENOMEM;
	memcpy(c, supported, len);
	x86_cpuid_apply_template(c, index, nr_cpus);
	/* An earlier vCPU found the template ignored: the same KVM ignores it
	 * for this one too, so hide now and set once (below: set, read back,
	 * hide, set again; 0.12 ms a set where the host's CPUID traps). */
	if (ignored_before)
		hide_pv_hypercalls(c);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0) {
		ret = -errno;
		goto out;
	}
	ret = check_applied(vcpu_fd, c, &ok);
	if (ret)
		log_debug("vCPU %u: KVM_GET_CPUID2 failed (%d); not checking the template", index,
		          ret);
	/* A KVM that ignores the template emulates ring 0 (docs/linux-guests.md):
	 * there a guest's VMCALL is re-executed for ever (a 2-vCPU Linux hung
	 * in kvm_hypercall4 sending a PV IPI), while ring-0 CPUID still answers
	 * from this table: hide the features that need hypercalls. */
	if (!ok && !ignored_before && hide_pv_hypercalls(c)) {
		if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
			log_debug("vCPU %u: cannot hide the PV hypercall features: %s", index,
			          strerror(errno));
		else
			log_debug("vCPU %u: PV IPI, sched-yield and unhalt hidden (no hypercalls "
			          "on this host)", index);
	}
	ret = 0;
out:
	if (applied)
		*applied = ok;
	free(c);
	return ret;
}

int x86_setup_cpuid_checked(int kvm_fd, int vcpu_fd, unsigned index, unsigned nr_cpus,
                            bool *applied)
{
	struct kvm_cpuid2 *c = NULL;
	int ret;

	if (nr_cpus < 1 || nr_cpus > 255 || index >= nr_cpus)
		return -EINVAL;
	ret = x86_cpuid_get_supported(kvm_fd, &c);
	if (ret)
		return ret;
	ret = x86_setup_cpuid_from(c, vcpu_fd, index, nr_cpus, false, applied);
	free(c);
	return ret;
}

int x86_setup_cpuid(int kvm_fd, int vcpu_fd, unsigned index, unsigned nr_cpus)
{
	return x86_setup_cpuid_checked(kvm_fd, vcpu_fd, index, nr_cpus, NULL);
}
