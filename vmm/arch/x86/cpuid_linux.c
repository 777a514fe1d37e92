/* cpuid_linux.c: the Linux command-line options (clearcpuid=, noxsave) that
 * hide CPU features from a guest kernel where this host's KVM does not let
 * the CPUID template hide them. Measured on the project's emulating KVM
 * (tests/unit/emul/test_emul_kvm.c, docs/linux-guests.md "Which CPUID Linux
 * sees"): CPUID at CPL0, where Linux identifies the CPU (boot_cpu_data, and
 * from it the alternatives), answers from the KVM_SET_CPUID2 table except
 * for the feature bits, which are the host's whatever the table says. So a
 * feature is hidden from Linux there only by Linux itself. */
#include <errno.h>
#include <stdio.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"

/* Features a Linux guest would use that this host's KVM cannot carry out at
 * CPL0 (measured: see docs/linux-guests.md), or that only run slowly through
 * the emulation fallback, or that the CPUID template hides. Numbers are
 * Linux's X86_FEATURE_* bits (word * 32 + bit), which every kernel's
 * clearcpuid= accepts; words 4 and 9 are CPUID 1.ECX and CPUID 7.0.EBX,
 * fixed by the hardware layout. */
static const struct {
	uint32_t leaf;
	char reg;        /* 'c': ECX, 'b': EBX */
	unsigned bit;
	unsigned linux_bit;
	const char *name;
} hidden_features[] = {
	{ 1, 'c', 3, 4 * 32 + 3, "monitor" },  /* the template hides MONITOR/MWAIT */
	/* Debian's kernels run BLAKE2s (the random number generator's hash)
	 * with SSSE3 in ring 0, ~900 SSE instructions a 64-byte block, each
	 * an emulation failure here; without SSSE3 they use the C version. */
	{ 1, 'c', 9, 4 * 32 + 9, "ssse3" },
	{ 1, 'c', 13, 4 * 32 + 13, "cx16" },   /* cmpxchg16b */
	{ 1, 'c', 23, 4 * 32 + 23, "popcnt" },
	{ 7, 'b', 20, 9 * 32 + 20, "smap" },   /* clac/stac */
};
#define CPUID1_ECX_XSAVE (1u << 26)

int x86_linux_hiding_args(const struct kvm_cpuid2 *c, char *buf, size_t len)
{
	size_t off = 0;
	bool first = true;

	if (len)
		buf[0] = 0;
	for (size_t f = 0; f < ARRAY_SIZE(hidden_features); f++) {
		for (unsigned i = 0; i < c->nent; i++) {
			const struct kvm_cpuid_entry2 *e = &c->entries[i];
			uint32_t r = hidden_features[f].reg == 'c' ? e->ecx : e->ebx;

			if (e->function != hidden_features[f].leaf || e->index != 0 ||
			    !(r & (1u << hidden_features[f].bit)))
				continue;
			off += (size_t)snprintf(buf + off, len > off ? len - off : 0, "%s%u",
						first ? "clearcpuid=" : ",",
						hidden_features[f].linux_bit);
			first = false;
		}
	}
	/* noxsave: no xsave/xrstor (the fallback has only the standard form;
	 * Linux prefers xsaves/xrstors), and AVX and later go with it. */
	for (unsigned i = 0; i < c->nent; i++) {
		if (c->entries[i].function == 1 && (c->entries[i].ecx & CPUID1_ECX_XSAVE))
			off += (size_t)snprintf(buf + off, len > off ? len - off : 0, "%snoxsave",
						first ? "" : " ");
	}
	return off < len ? 0 : -ENOSPC;
}
