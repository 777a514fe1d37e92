/* vcpu_hotplug.c: vCPUs added to a VM after it was built (ACPI hot-plug:
 * vmm/hw/acpi/cpuhp.c; a restore whose state has hot-plugged vCPUs:
 * vm_state.c). KVM allows KVM_CREATE_VCPU on a running VM; the new vCPU is
 * set up as the boot vCPUs are (CPUID with the same topology, MSRs, FPU,
 * LAPIC) and, like any application processor, waits in KVM_RUN for the
 * guest's INIT and SIPI. The sandbox lets a VM with room for more vCPUs
 * create them (sandbox_seccomp_install). */
#include <errno.h>
#include <string.h>

#include "arch/x86/emul/emul.h"
#include "arch/x86/x86.h"
#include "log.h"
#include "vcpu.h"
#include "vm.h"

static int vcpu_hotplug_one(struct vm *vm, unsigned i, bool start)
{
	bool warned = true; /* the boot vCPUs said it already */
	struct vcpu *v;
	int ret = vcpu_create_one(vm, i, &warned);

	if (ret)
		return ret;
	v = &vm->vcpus[i];
	/* An application processor's registers: its reset state, FPU and LAPIC
	 * (no boot information: that is the BSP's). */
	ret = x86_setup_vcpu_regs(v->fd, i, NULL, &vm->mem);
	if (ret) {
		log_err("vCPU %u: register setup: %s", i, strerror(-ret));
		return ret;
	}
	/* Its emulation context was made at start, and its decoder loaded
	 * then where the worker is sandboxed (vcpus_preload_emulation: loading
	 * needs the file system). Unsandboxed, load it now. */
	if (v->emul && !v->cpuid_applied && !vm->no_new_sockets) {
		char why[160];

		if (emul_ctx_preload(v->emul, why, sizeof(why)))
			log_warn("vCPU %u: %s: emulation failures will stop the VM", i, why);
	}
	if (!start)
		return 0;
	ret = vcpu_start_one(v);
	if (ret)
		log_err("vCPU %u: cannot start its thread: %s", i, strerror(-ret));
	return ret;
}

int vcpus_hotplug(struct vm *vm, unsigned n)
{
	unsigned cur = vm->nr_vcpus;
	bool running, paused;
	int ret = 0;

	if (n < cur || n > config_cpus_possible(vm->cfg) || !cur)
		return -EINVAL;
	if (n == cur)
		return 0;
	/* Threads already run: add the new ones with every vCPU parked, so
	 * that no pause, kick or save walks the array half-way. */
	running = __atomic_load_n(&vm->vcpus[0].thread_started, __ATOMIC_ACQUIRE);
	paused = vm_paused(vm);
	if (running && !paused)
		vm_pause(vm);
	for (unsigned i = cur; i < n && !ret; i++) {
		ret = vcpu_hotplug_one(vm, i, running);
		if (!ret)
			log_info("vCPU %u added (%u of at most %u)", i, i + 1,
				 config_cpus_possible(vm->cfg));
	}
	if (running && !paused)
		vm_resume(vm);
	return ret;
}
