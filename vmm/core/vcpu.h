/* vcpu.h: vCPU threads and the KVM_RUN exit loop. */
#pragma once
#include "compiler.h"

struct vm;
struct vcpu;
struct x86_boot_info;

/* Create cfg->cpus vCPUs with CPUID, MSRs and boot registers. 0 or -errno. */
int vcpus_create(struct vm *vm, const struct x86_boot_info *bi) __must_check;
/* Start one thread per vCPU. */
int vcpus_start(struct vm *vm) __must_check;
/* Make a vCPU leave KVM_RUN promptly (from any thread). */
void vcpu_kick(struct vcpu *vcpu);
void vcpus_join(struct vm *vm);
void vcpus_destroy(struct vm *vm);
