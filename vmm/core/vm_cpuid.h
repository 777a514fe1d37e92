/* vm_cpuid.h: KVM_GET_SUPPORTED_CPUID asked once per VM, on a thread of its
 * own while the VM is created (it costs about 0.5 ms where the host's CPUID
 * traps, as much as creating the VM itself), so that the vCPUs find it ready
 * where a second CPU is free. */
#pragma once
#include <pthread.h>
#include <stdbool.h>

struct kvm_cpuid2;
struct vm;

enum { VM_CPUID_PENDING, VM_CPUID_BUSY, VM_CPUID_DONE };

struct vm_cpuid {
	pthread_mutex_t lock;
	int state;                     /* VM_CPUID_*, under lock */
	int err;                       /* the ioctl's -errno, or 0 */
	struct kvm_cpuid2 *supported;  /* once DONE without err */
	pthread_t thread;
	bool inited, thread_started;
};

/* After vm->kvm_fd is open: start asking KVM on a thread (none if it cannot
 * start: the first vCPU asks then). */
void vm_cpuid_start(struct vm *vm);
/* Instead of vm_cpuid_start: a copy of table, the answer asked before the
 * VM (a standby worker, vmm/standby.c); no thread. The copy failing, the
 * first vCPU asks. */
void vm_cpuid_preset(struct vm *vm, const struct kvm_cpuid2 *table);
/* The host's supported CPUID table (vm->cpuid.supported): the thread's
 * answer if it has one, else asked here (the thread is never waited for:
 * one not yet scheduled, or preempted, never holds the vCPUs up). Main
 * thread. 0 or -errno. */
int vm_cpuid_supported(struct vm *vm, const struct kvm_cpuid2 **out) __attribute__((warn_unused_result));
/* Join the thread (before a sandbox or the seccomp filter, which want the
 * process single-threaded; else vm_destroy does); the table stays. */
void vm_cpuid_join(struct vm *vm);
/* Join and free (vm_destroy). */
void vm_cpuid_free(struct vm *vm);
