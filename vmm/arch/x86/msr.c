/* msr.c: the boot MSRs every vCPU starts with (as Firecracker sets them);
 * MSRs the host's KVM refuses are skipped and logged at debug level. */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "log.h"

#define MSR_IA32_TSC          0x00000010
#define MSR_IA32_SYSENTER_CS  0x00000174
#define MSR_IA32_SYSENTER_ESP 0x00000175
#define MSR_IA32_SYSENTER_EIP 0x00000176
#define MSR_IA32_MISC_ENABLE  0x000001a0
#define MSR_IA32_CR_PAT       0x00000277
#define MSR_MTRR_DEF_TYPE     0x000002ff
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1ULL
#define PAT_DEFAULT             0x0007040600070406ULL /* WB WT UC- UC, twice */
#define MTRR_ENABLE             (1ULL << 11)
#define MTRR_TYPE_WB            0x6ULL

const struct x86_msr_init x86_boot_msrs[] = {
    {MSR_IA32_SYSENTER_CS, 0, "IA32_SYSENTER_CS"},
    {MSR_IA32_SYSENTER_ESP, 0, "IA32_SYSENTER_ESP"},
    {MSR_IA32_SYSENTER_EIP, 0, "IA32_SYSENTER_EIP"},
    {MSR_STAR, 0, "STAR"},
    {MSR_CSTAR, 0, "CSTAR"},
    {MSR_KERNEL_GS_BASE, 0, "KERNEL_GS_BASE"},
    {MSR_SYSCALL_MASK, 0, "SYSCALL_MASK"},
    {MSR_LSTAR, 0, "LSTAR"},
    {MSR_IA32_TSC, 0, "IA32_TSC"},
    {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING, "IA32_MISC_ENABLE"},
    {MSR_IA32_CR_PAT, PAT_DEFAULT, "IA32_PAT"},
    /* MTRRs on, default type write-back: without it Linux maps RAM UC. */
    {MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB, "MTRRdefType"},
};
const size_t x86_nr_boot_msrs = ARRAY_SIZE(x86_boot_msrs);

int x86_setup_msrs(int vcpu_fd)
{
	size_t n = ARRAY_SIZE(x86_boot_msrs), first = 0;
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));

	if (!msrs)
		return -ENOMEM;
	/* KVM_SET_MSRS stops at the first MSR it refuses and returns how many
	 * it set: skip that one and go on with the rest. */
	while (first < n) {
		int ret;

		msrs->nmsrs = (uint32_t)(n - first);
		for (size_t i = first; i < n; i++) {
			msrs->entries[i - first].index = x86_boot_msrs[i].index;
			msrs->entries[i - first].data = x86_boot_msrs[i].value;
		}
		ret = ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
		if (ret < 0) {
			ret = -errno;
			free(msrs);
			return ret;
		}
		first += (size_t)ret;
		if (first < n) {
			log_debug("KVM refused MSR %s (0x%x); skipping it",
			          x86_boot_msrs[first].name, x86_boot_msrs[first].index);
			first++;
		}
	}
	free(msrs);
	return 0;
}
