/* vcpu.h: vCPU threads and the KVM_RUN exit loop. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "compiler.h"

struct vm;
struct vcpu;
struct x86_boot_info;

/* Create cfg->cpus vCPUs with CPUID, MSRs and their emulation-fallback
 * contexts; warns once when this host's KVM ignores the CPUID template.
 * 0 or -errno. */
int vcpus_create(struct vm *vm) __must_check;
/* Create vCPU i (= vm->nr_vcpus, below config_cpus_possible) with its CPUID,
 * MSRs and emulation context, and publish it (nr_vcpus = i + 1); warns once
 * through *cpuid_warned. On failure the slot stays empty. 0 or -errno. */
int vcpu_create_one(struct vm *vm, unsigned i, bool *cpuid_warned) __must_check;
/* Start one vCPU's thread (a hot-plugged one). 0 or -errno. */
int vcpu_start_one(struct vcpu *vcpu) __must_check;
/* vcpu_hotplug.c: bring the VM to n vCPUs (n <= config_cpus_possible):
 * the new ones are created in their reset state, waiting for INIT/SIPI
 * like any application processor, and their threads start at once when the
 * VM runs (the VM is paused meanwhile), else with the others at vm_run
 * (a restore whose state has hot-plugged vCPUs). Never removes any: n
 * below the count is -EINVAL. 0 or -errno (logged). */
int vcpus_hotplug(struct vm *vm, unsigned n) __must_check;
/* Boot registers (after the kernel is loaded). 0 or -errno. */
int vcpus_setup_regs(struct vm *vm, const struct x86_boot_info *bi) __must_check;
/* When the CPUID template was not applied: the Linux command-line options
 * that hide, from the guest side, the features the guest sees but this
 * host's KVM cannot emulate at CPL0 or that the template hides
 * ("clearcpuid=131,137,141,151,308 noxsave": x86_linux_hiding_args); "" when nothing needs hiding.
 * Call after vcpus_create. Returns 0 or -errno. */
int vcpus_feature_hiding_args(struct vm *vm, char *buf, size_t len) __must_check;
/* Start one thread per vCPU. */
int vcpus_start(struct vm *vm) __must_check;
/* Load the instruction decoder of the emulation fallback now, where this
 * host's KVM is an emulating one (it ignored the CPUID template): needed
 * before a sandbox hides the library. Elsewhere it loads on first use. */
void vcpus_preload_emulation(struct vm *vm);
/* Make a vCPU leave KVM_RUN promptly (from any thread). */
void vcpu_kick(struct vcpu *vcpu);
void vcpus_join(struct vm *vm);
/* Called by a vCPU thread outside KVM_RUN: blocks while the VM is paused. */
void vcpu_pause_point(struct vcpu *vcpu);
void vcpus_destroy(struct vm *vm);
