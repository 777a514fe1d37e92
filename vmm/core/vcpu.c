/* vcpu.c: vCPU creation, threads, and the exit loop that dispatches I/O to the buses. */
#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/seccomp.h>

#include "arch/x86/emul/emul.h"
#include "arch/x86/x86.h"
#include "log.h"
#include "vm.h"

/* Signal used to kick vCPU threads out of KVM_RUN; its handler does nothing. */
#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

_Static_assert(EMUL_KIND_COUNT <= VCPU_EMUL_KINDS, "VCPU_EMUL_KINDS too small");

static int vcpu_emul_make(struct vm *vm, struct vcpu *v);

int vcpus_create(struct vm *vm)
{
	unsigned n = vm->cfg->cpus;
	bool cpuid_warned = false;

	/* Room for every vCPU the VM may get (hot-plug: vcpu_hotplug.c), so
	 * that the array never moves under the threads that walk it. */
	vm->vcpus = calloc(config_cpus_possible(vm->cfg), sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		int ret = vcpu_create_one(vm, i, &cpuid_warned);

		if (ret)
			return ret;
	}
	/* The emulation contexts of the vCPUs a hot-plug may add, made now:
	 * vcpus_preload_emulation loads their decoder with the others', before
	 * the sandbox (loading it later needs the file system). */
	for (unsigned i = n; vm->cfg->emulation_fallback && i < config_cpus_possible(vm->cfg); i++) {
		int ret = vcpu_emul_make(vm, &vm->vcpus[i]);

		if (ret)
			return ret;
	}
	return 0;
}

static int vcpu_emul_make(struct vm *vm, struct vcpu *v)
{
	int ret;

	v->emul = calloc(1, sizeof(*v->emul));
	if (!v->emul)
		return -ENOMEM;
	ret = emul_ctx_init(v->emul, &vm->mem);
	if (ret) {
		free(v->emul);
		v->emul = NULL;
	}
	return ret;
}

/* Undo a vcpu_create_one that failed half-way: the slot is empty again. */
static void vcpu_clear(struct vcpu *v)
{
	struct emul_ctx *emul = v->emul; /* made (and loaded) at start: kept */

	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	memset(v, 0, sizeof(*v));
	v->emul = emul;
}

static int vcpu_init(struct vm *vm, struct vcpu *v, unsigned i, int mmap_size, bool *cpuid_warned)
{
	int ret;

	v->vm = vm;
	v->index = i;
	v->cpuid_applied = true;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0) {
		log_err("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		return -errno;
	}
	v->run_size = (size_t)mmap_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		log_err("mmap of vCPU %u run area: %s", i, strerror(errno));
		return -errno;
	}
	phase_mark(vm->trace, "vcpu_create");
	if (vm->cfg->emulation_fallback && !v->emul) {
		ret = vcpu_emul_make(vm, v);
		if (ret)
			return ret;
	}
	phase_mark(vm->trace, "emul_ctx");
	/* The topology counts every possible vCPU, so that a hot-plugged one
	 * fits what the guest saw at boot. */
	{
		const struct kvm_cpuid2 *supported;

		ret = vm_cpuid_supported(vm, &supported);
		phase_mark(vm->trace, "cpuid_supported");
		if (!ret)
			ret = x86_setup_cpuid_from(supported, v->fd, i,
						   config_cpus_possible(vm->cfg),
						   i > 0 && !vm->vcpus[0].cpuid_applied,
						   &v->cpuid_applied);
	}
	if (ret < 0) {
		log_err("vCPU %u: CPUID setup: %s", i, strerror(-ret));
		return ret;
	}
	if (!v->cpuid_applied && !*cpuid_warned) {
		log_warn("CPUID template not applied by this host's KVM: the guest sees the "
			 "host's CPU features");
		*cpuid_warned = true;
	}
	phase_mark(vm->trace, "cpuid");
	ret = x86_setup_msrs(v->fd);
	phase_mark(vm->trace, "msrs");
	if (ret)
		log_err("vCPU %u: MSR setup: %s", i, strerror(-ret));
	return ret;
}

int vcpu_create_one(struct vm *vm, unsigned i, bool *cpuid_warned)
{
	int mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct vcpu *v;
	int ret;

	if (mmap_size <= 0) {
		log_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -errno;
	}
	if (i != vm->nr_vcpus || i >= config_cpus_possible(vm->cfg))
		return -EINVAL;
	v = &vm->vcpus[i];
	v->fd = -1;
	ret = vcpu_init(vm, v, i, mmap_size, cpuid_warned);
	if (ret) {
		vcpu_clear(v);
		return ret;
	}
	/* Published once complete: at a hot-plug, other threads walk
	 * vcpus[0..nr_vcpus) (kicks, stats) while this one is added. */
	__atomic_store_n(&vm->nr_vcpus, i + 1, __ATOMIC_RELEASE);
	return 0;
}

void vcpus_preload_emulation(struct vm *vm)
{
	unsigned n = vm->cfg ? config_cpus_possible(vm->cfg) : vm->nr_vcpus;

	/* Every slot's: the vCPUs a hot-plug may add too (vcpus_create). */
	for (unsigned i = 0; i < n && vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		bool applied = i < vm->nr_vcpus ? v->cpuid_applied : vm->vcpus[0].cpuid_applied;
		char why[160];

		/* A KVM that ignores CPUID is an emulating one: instructions it
		 * cannot run will come. */
		if (applied || !v->emul)
			continue;
		if (emul_ctx_preload(v->emul, why, sizeof(why)))
			log_warn("vCPU %u: %s: emulation failures will stop the VM", i, why);
	}
}

int vcpus_setup_regs(struct vm *vm, const struct x86_boot_info *bi)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int ret = x86_setup_vcpu_regs(vm->vcpus[i].fd, i, bi, &vm->mem);

		if (ret) {
			log_err("vCPU %u: register setup: %s", i, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vcpus_feature_hiding_args(struct vm *vm, char *buf, size_t len)
{
	struct kvm_cpuid2 *c;
	const unsigned nent = 256;
	int ret;

	buf[0] = 0;
	if (!vm->nr_vcpus || vm->vcpus[0].cpuid_applied)
		return 0;
	c = calloc(1, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return -ENOMEM;
	c->nent = nent;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_CPUID2, c) < 0) {
		ret = -errno;
		free(c);
		return ret;
	}
	ret = x86_linux_hiding_args(c, buf, len);
	free(c);
	return ret;
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep ins/outs) arrives as `count` back-to-back items. */
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, is_write)) {
			if (!is_write)
				memset(data, 0xff, run->io.size);
		}
		data += run->io.size;
	}
	v->exits_io++;
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;

	if (!bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
			  run->mmio.is_write)) {
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, len);
		log_debug("vCPU %u: unhandled MMIO %s at 0x%llx", v->index,
			  run->mmio.is_write ? "write" : "read",
			  (unsigned long long)run->mmio.phys_addr);
	}
	v->exits_mmio++;
}

static void vcpu_report_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char bytes[64] = "";
	uint64_t rip = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0) {
		/* Show the instruction bytes when RIP maps directly (identity or flat). */
		const uint8_t *p = guest_mem_ptr(&v->vm->mem, sregs.cs.base + rip, 15);

		if (p) {
			size_t off = 0;

			for (int i = 0; i < 15; i++)
				off += (size_t)snprintf(bytes + off, sizeof(bytes) - off, "%02x ",
							p[i]);
		}
	}
	vm_request_exit(v->vm, WORKER_EXIT_UNHANDLED,
			"vCPU %u: KVM internal error (suberror %u) at RIP 0x%llx, bytes: %s",
			v->index, run->internal.suberror, (unsigned long long)rip,
			bytes[0] ? bytes : "unavailable");
}

/* KVM's emulator gave up on an instruction: carry it out in the VMM
 * (vmm/arch/x86/emul), or stop the VM with a report of what it was. */
static void vcpu_handle_emulation_failure(struct vcpu *v)
{
	struct emul_report rep;
	char line[512];
	int r;

	if (!v->emul) {
		vcpu_report_internal_error(v);
		return;
	}
	r = emul_kvm_handle(v->emul, v->fd, &rep);
	if (r == EMUL_DONE || r == EMUL_EXCEPTION) {
		v->emul_handled++;
		if ((unsigned)rep.kind < VCPU_EMUL_KINDS)
			v->emul_by_kind[rep.kind]++;
		if (r == EMUL_EXCEPTION && rep.kind != EMUL_KIND_INT3)
			log_debug("vCPU %u: emulated %s at RIP 0x%llx raised vector %d", v->index,
				  emul_kind_name(rep.kind), (unsigned long long)rep.rip,
				  rep.vector);
		return;
	}
	emul_report_format(&rep, line, sizeof(line));
	if (r < 0) {
		log_err("vCPU %u: emulation fallback failed: %s", v->index, line);
		vm_request_exit(v->vm, WORKER_EXIT_ERROR, "vCPU %u: emulation fallback failed: %s",
				v->index, rep.why);
		return;
	}
	/* The whole report goes to the log; the exit reason is its short form. */
	if (v->vm->cfg->pause_on_unhandled) {
		/* Kept for inspection (state, memory, a checkpoint); resuming runs
		 * the same instruction again. Paused before the log line, so that
		 * whoever reads the line finds the VM paused. */
		char reason[256];

		snprintf(reason, sizeof(reason), "vCPU %u: instruction not emulated: %.200s", v->index,
			 line);
		vm_pause_from_vcpu(v->vm, v->index, reason);
		log_err("vCPU %u: instruction not emulated, VM paused: %s", v->index, line);
		return;
	}
	log_err("vCPU %u: instruction not emulated, VM stopped: %s", v->index, line);
	vm_request_exit(v->vm, WORKER_EXIT_UNHANDLED,
			"vCPU %u: instruction not emulated at RIP 0x%llx (%s)", v->index,
			(unsigned long long)rep.rip, rep.mnemonic[0] ? rep.mnemonic : "unknown bytes");
}

static void vcpu_handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_exit(v->vm, WORKER_EXIT_POWEROFF, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_exit(v->vm, WORKER_EXIT_RESET, "guest requested a reset");
		break;
	case KVM_SYSTEM_EVENT_CRASH:
		vm_request_exit(v->vm, WORKER_EXIT_CRASH, "guest crashed (KVM system event)");
		break;
	default:
		log_warn("vCPU %u: unknown system event %u", v->index, v->run->system_event.type);
	}
}

/* Auto-converge during live migration: give up throttle_pct percent of
 * each period (at most once per period, however often this vCPU exits). */
static void vcpu_throttle(struct vcpu *v)
{
	unsigned pct = atomic_load_explicit(&v->vm->throttle_pct, memory_order_relaxed);
	struct timespec now, ts;
	uint64_t ns, sleep_ns;

	if (!pct)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	if (ns < v->throttle_next_ns)
		return;
	sleep_ns = VCPU_THROTTLE_PERIOD_NS * MIN(pct, 99u) / 100;
	v->throttle_next_ns = ns + VCPU_THROTTLE_PERIOD_NS;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)sleep_ns;
	nanosleep(&ts, NULL);
}

void vcpu_pause_point(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_requested && !vm_exiting(vm)) {
		vm->vcpus_parked++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_requested && !vm_exiting(vm))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->vcpus_parked--;
	}
	/* A kick that arrived for the pause must not end the next KVM_RUN; one
	 * for a pause requested from now on must. Cleared under the lock: a
	 * pause sets its flag under it and kicks after, so its kick comes after
	 * this store. (Cleared after the unlock, a kick landing in between was
	 * undone: the vCPU ran on until its next exit while vm_pause waited,
	 * the I/O loop with it; a guest polling a virtqueue in ring 3, which
	 * makes no exit, then waited for ever on a completion that loop owed
	 * it: worker and guest stuck.) */
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->pause_lock);
	if (v->test_pause_gap_us) {
		struct timespec gap = { 0, (long)v->test_pause_gap_us * 1000 };

		nanosleep(&gap, NULL);
	}
	vcpu_throttle(v);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;
	char name[16];
	int err;

	{
		const char *gap = getenv("CELLA_TEST_VCPU_PAUSE_GAP_US");

		v->test_pause_gap_us = gap ? (uint32_t)strtoul(gap, NULL, 10) % 1000000u : 0;
	}
	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(pthread_self(), name);
	err = vm_thread_seccomp(vm->vcpu_filter);
	if (err) {
		vm_request_exit(vm, WORKER_EXIT_ERROR, "vCPU %u: seccomp: %s", v->index,
				strerror(-err));
		return NULL;
	}
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!vm_exiting(vm)) {
		int ret;

		vcpu_pause_point(v);
		if (vm_exiting(vm))
			break;
		ret = ioctl(v->fd, KVM_RUN, 0);

		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				continue;
			}
			vm_request_exit(vm, WORKER_EXIT_ERROR, "vCPU %u: KVM_RUN: %s", v->index,
					strerror(errno));
			break;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			vcpu_handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			vcpu_handle_mmio(v);
			break;
		case KVM_EXIT_HLT:
			/* Only without an in-kernel LAPIC; treat as power-off. */
			vm_request_exit(vm, WORKER_EXIT_POWEROFF, "vCPU %u halted", v->index);
			break;
		case KVM_EXIT_SHUTDOWN:
			vm_request_exit(vm, WORKER_EXIT_CRASH, "guest crash: triple fault on vCPU %u",
					v->index);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vcpu_handle_system_event(v);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			if (v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
				vcpu_handle_emulation_failure(v);
			else
				vcpu_report_internal_error(v);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vm_request_exit(vm, WORKER_EXIT_ERROR,
					"vCPU %u: VM entry failed (hardware reason 0x%llx)", v->index,
					(unsigned long long)v->run->fail_entry
						.hardware_entry_failure_reason);
			break;
		case KVM_EXIT_INTR:
			break;
		default:
			v->exits_other++;
			vm_request_exit(vm, WORKER_EXIT_ERROR, "vCPU %u: unexpected KVM exit %u",
					v->index, v->run->exit_reason);
		}
	}
	{
		/* Where the guest was when the VM ended: --stats shows it, which
		 * tells a hung guest's loop from a slow one. */
		struct kvm_regs regs;

		if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
			v->last_rip = regs.rip;
	}
	return NULL;
}

int vcpus_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigset_t set, old;

	/* No SA_RESTART: KVM_RUN must return EINTR when kicked. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	/* Threads start with the kick signal blocked and unblock it themselves,
	 * so other threads (I/O loop, main) never receive it. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);

		if (ret) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			return -ret;
		}
		v->thread_started = true;
	}
	return 0;
}

int vcpu_start_one(struct vcpu *v)
{
	sigset_t set, old;
	int ret;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return -ret;
	__atomic_store_n(&v->thread_started, true, __ATOMIC_RELEASE);
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->run)
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpus_join(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started) {
			pthread_join(v->thread, NULL);
			v->thread_started = false;
		}
	}
}

void vcpus_destroy(struct vm *vm)
{
	if (!vm->vcpus)
		return;
	vcpus_join(vm);
	/* Slots no hot-plug used: their emulation contexts only. */
	for (unsigned i = vm->nr_vcpus; vm->cfg && i < config_cpus_possible(vm->cfg); i++) {
		if (vm->vcpus[i].emul) {
			emul_ctx_destroy(vm->vcpus[i].emul);
			free(vm->vcpus[i].emul);
		}
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->run)
			munmap(v->run, v->run_size);
		if (v->fd >= 0)
			close(v->fd);
		if (v->emul) {
			emul_ctx_destroy(v->emul);
			free(v->emul);
		}
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nr_vcpus = 0;
}
