/* vm.h: one virtual machine: the owner of its memory, vCPUs, buses, devices
 * and I/O thread. Several VMs can live in one process (tests do). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bus.h"
#include "compiler.h"
#include "config.h"
#include "device.h"
#include "evloop.h"
#include "mem.h"
#include "phase_trace.h"
#include "vm_cpuid.h"
#include "worker_exit.h"

/* How a VM ended: enum worker_exit (lib/worker_exit.h), also cella-vm's
 * exit statuses. */

/* Fixed platform addresses. */
#define VIRTIO_MMIO_BASE  0xD0000000ULL
#define VIRTIO_MMIO_SIZE  0x1000ULL
#define VIRTIO_MMIO_END   0xFE000000ULL /* windows end below the IOAPIC */
#define VIRTIO_GSI_FIRST  5
#define VM_GSI_MAX        23 /* IOAPIC pins 0..23 */

#define VCPU_EMUL_KINDS 16 /* >= EMUL_KIND_COUNT (checked in vcpu.c) */
struct emul_ctx;

#define VCPU_THROTTLE_PERIOD_NS 10000000ULL /* 10 ms */

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	uint64_t exits_io, exits_mmio, exits_other;
	/* Emulation fallback (vmm/arch/x86/emul): KVM emulation failures this
	 * vCPU handled, in total and by instruction kind (enum emul_kind). */
	struct emul_ctx *emul;
	uint64_t emul_handled;
	uint64_t emul_by_kind[VCPU_EMUL_KINDS];
	uint64_t last_rip; /* RIP when the vCPU thread ended (for --stats) */
	bool cpuid_applied; /* KVM_GET_CPUID2 read our CPUID template back */
	uint64_t throttle_next_ns; /* CLOCK_MONOTONIC: next throttle sleep due */
	/* Tests only (CELLA_TEST_VCPU_PAUSE_GAP_US): a sleep right after each
	 * pause point, where a pause request once got lost (vcpu.c). */
	uint32_t test_pause_gap_us;
};

struct mem_order;

struct vm {
	const struct vm_config *cfg;
	int kvm_fd, vm_fd;
	int teardown_ring; /* io_uring holding the KVM descriptors (teardown.c), or -1 */
	int unused_vm_fd;  /* a standby's prepared VM that did not fit (vm_prep.h), or -1:
			    * closed with this one, through its teardown (a VM with an
			    * irqchip waits for RCU grace periods as it goes) */
	struct guest_mem mem;
	struct bus pio, mmio;
	struct evloop *loop;
	struct vcpu *vcpus;
	unsigned nr_vcpus;
	struct device *devices; /* list head, creation order */
	struct device *devices_tail;

	/* Resource allocation for devices. */
	uint64_t next_mmio;
	unsigned next_gsi;
	char *cmdline_extra; /* device announcements for the kernel command line */

	/* Exit status: set once by the first vCPU or device that ends the VM. */
	atomic_int exit_code;
	char exit_reason[160];
	pthread_mutex_t lock; /* protects exit_reason and allocation */
	int signal_fd;        /* owned by main: host signals for this VM */
	/* Further seccomp filters (struct sock_fprog) threads put on
	 * themselves as they start (vm_thread_seccomp); NULL: none. Owned
	 * by main. */
	const void *vcpu_filter;      /* each vCPU, before its first KVM_RUN */
	const void *migration_filter; /* the live-migration sender */
	const void *throttle_filter;  /* the migration's vCPU throttle thread */
	const void *prefetch_filter;  /* a restore's prefetch thread (mem_prefetch.h) */
	/* The process's seccomp allowlist is (about to be) on: no socket()
	 * or connect() (virtio-vsock then connects only through cellad). */
	bool no_new_sockets;

	/* Pause protocol: pause_requested under pause_lock; each vCPU that sees
	 * it counts itself in vcpus_parked and waits on pause_cond. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_requested;
	unsigned vcpus_parked;
	char pause_reason[256]; /* why the VM paused itself; "" for a host pause */
	/* Live-migration auto-converge (vmm/migrate): each vCPU sleeps this
	 * percentage of every VCPU_THROTTLE_PERIOD_NS at its pause point; the
	 * migration kicks the vCPUs once per period. 0: off. */
	atomic_uint throttle_pct;
	/* CELLA_TRACE_RESTORE=1: the start-up steps' clock (phase_trace.h);
	 * NULL: off. Owned by main, main thread only. */
	struct phase_trace *trace;
	/* KVM_GET_SUPPORTED_CPUID, asked once beside the VM's creation
	 * (vm_cpuid.h); the vCPUs' templates start from it. */
	struct vm_cpuid cpuid;
	/* A restore: when it began (main's clock), for the "restore: vCPUs
	 * running" line vm_run logs once the vCPU threads are started (the
	 * end of restore to running, bench/restore.py); NULL otherwise. */
	const struct timespec *restore_t0;
	/* A restore's fill order (mem_prefetch.h), for vm_run to start the
	 * fill thread with once the vCPU threads are started; NULL: none. */
	struct mem_order *prefetch_order;
};

/* Create the KVM VM, memory, irqchip and PIT, buses, I/O loop. No devices,
 * no vCPUs yet. Returns 0 or -errno (message logged). */
int vm_create(struct vm *vm, const struct vm_config *cfg) __must_check;
/* Bytes of guest RAM a VM of cfg has: its memory plus the hot-pluggable
 * region its devices reserve (virtio-mem); what a state file holds. */
uint64_t vm_config_mem_size(const struct vm_config *cfg);
/* Create devices from the configuration, load the kernel, create vCPUs. */
int vm_setup(struct vm *vm) __must_check;
/* vm_acpi.c: write the ACPI tables for the vCPUs and the virtio-mmio
 * devices created so far (0 or -errno); and the device announcements for the
 * kernel command line: vm->cmdline_extra, less its virtio_mmio.device=
 * entries for a Linux kernel not booted with acpi=off (it finds them in the
 * DSDT). Returns a malloc'd string, NULL without memory. */
int vm_setup_acpi(struct vm *vm) __must_check;
char *vm_cmdline_devices(const struct vm *vm, const char *user, bool is_linux);
/* Run vCPU threads and the I/O loop until the VM ends; returns enum vm_exit
 * or the debug-exit status. */
int vm_run(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Save/restore and migration (vm_state.c; file format in
 * vmm/state/statefile.h, docs/state-format.md).
 *
 * vm_state_save appends everything but guest RAM to w, as framed sections
 * (state_section_next reads them): "machine" (vCPU count, RAM size, device
 * list), "vcpuN" for each vCPU (registers, FPU/XSAVE, MSRs, LAPIC, events,
 * ...), "pic-master", "pic-slave", "ioapic", "pit", "clock" (kvmclock), and
 * "dev:ID" for each device (its ops->save). The VM must be paused
 * (vm_pause); each virtio device quiesces its back end itself during save.
 * Runs on any thread but a vCPU's (normally the I/O thread). 0 or -errno
 * (logged).
 *
 * vm_state_load reads such a stream into a VM created from the same
 * configuration (same vCPU count, RAM size and devices, matched by device
 * id), whose vCPUs exist but have not run. A mismatch or a corrupt stream is
 * refused naming the section (logged with log_err): -EINVAL. `format` is the
 * state file version the stream came from (STATEFILE_VERSION for a live
 * migration stream); older versions lack some sections. */
struct state_writer;
struct state_reader;
int vm_state_save(struct vm *vm, struct state_writer *w) __must_check;
/* The same for an older state file format (1: no "clock" section). */
int vm_state_save_format(struct vm *vm, struct state_writer *w, unsigned format) __must_check;
int vm_state_load(struct vm *vm, struct state_reader *r, unsigned format) __must_check;

/* Restore: like vm_create, but guest RAM is the file fd's bytes from
 * mem_off (page aligned; mem_size from the configuration) mapped
 * MAP_PRIVATE (copy-on-write, pages read lazily): nothing is read now.
 * The VM keeps its own duplicate of fd. trace: the start-up clock
 * (vm->trace), or NULL. 0 or -errno (logged). */
int vm_create_restore(struct vm *vm, const struct vm_config *cfg, int fd,
		      uint64_t mem_off, struct phase_trace *trace) __must_check;
/* Restore: like vm_setup but without loading a kernel or writing boot
 * tables: devices and vCPUs only, for vm_state_load to fill. */
int vm_setup_restore(struct vm *vm) __must_check;

/* Let the kernel finish the KVM VM after this process has exited, so that
 * its exit is not delayed by the teardown's RCU waits (teardown.c): the
 * KVM descriptors become fixed files of an io_uring that allows nothing.
 * Call once every vCPU exists and before the sandbox's seccomp filter
 * (io_uring_setup is not in it). Returns 0 or -errno (io_uring disabled:
 * vm_defer_kernel_teardown then forks a holder child instead). */
int vm_prepare_kernel_teardown(struct vm *vm) __must_check;

/* Just before vm_destroy(): with the ring, nothing to do; without it, fork
 * a child that holds only the KVM descriptors and closes them after this
 * process exits (of no use to a PID namespace's init, whose exit waits for
 * the namespace's other processes). Best effort. */
void vm_defer_kernel_teardown(struct vm *vm);

/* Put a thread filter (vm->*_filter, NULL: none) on the calling thread.
 * Returns 0 or -errno. */
int vm_thread_seccomp(const void *filter) __must_check;

/* A VM without KVM, for unit tests of devices: memory, buses and the I/O
 * loop exist; vm_fd is -1, so vm_irqfd/vm_ioeventfd succeed without doing
 * anything and vm_irq_line is a no-op. vm_destroy releases it. */
int vm_create_test(struct vm *vm, uint64_t mem_size) __must_check;

/* Pause every vCPU (they leave KVM_RUN and wait) and return once all are
 * stopped; resume lets them run again. Device back ends keep running. Both
 * are idempotent and safe from any thread but a vCPU thread. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_paused(struct vm *vm);
/* From a vCPU thread: pause the whole VM because of what that vCPU met
 * (the vCPU parks itself when it returns to its loop). The reason stays
 * readable with vm_pause_reason() until vm_resume(). */
void vm_pause_from_vcpu(struct vm *vm, unsigned self, const char *reason);
/* From the I/O thread (a device back end, e.g. virtio-blk when its storage
 * fails): pause the VM with `reason` without waiting for the vCPUs to park
 * (the caller may hold a device lock a vCPU is waiting for). A VM the host
 * already paused stays paused with its reason unchanged. */
void vm_pause_for(struct vm *vm, const char *reason);
/* Resume only if the VM paused itself for a reason starting with `prefix`
 * (the back end that paused it recovered). Returns whether it resumed. */
bool vm_resume_if(struct vm *vm, const char *prefix);
/* Copy the reason of a self-pause into buf ("" if none). */
void vm_pause_reason(struct vm *vm, char *buf, size_t len);

/* Ask the guest to shut down, the ACPI-less way, through the first device
 * whose type offers request_shutdown (devtype.h; the i8042's Ctrl-Alt-Del:
 * a Linux guest booted with reboot=k then resets, which ends the VM).
 * Returns 0, -ENODEV without such a device, -EBUSY if one is pending. */
int vm_request_guest_shutdown(struct vm *vm) __must_check;

/* End the VM (first caller wins): stops the vCPUs and the I/O loop. */
void vm_request_exit(struct vm *vm, int code, const char *fmt, ...) __printf(3, 4);
bool vm_exiting(const struct vm *vm);

/* Add a created device: calls ops->realize and links it. On failure the
 * device is destroyed. Returns 0 or -errno. */
int vm_add_device(struct vm *vm, struct device *dev) __must_check;

/* Allocate a virtio-mmio window and an interrupt line. */
int vm_alloc_mmio(struct vm *vm, uint64_t len, uint64_t *base) __must_check;
int vm_alloc_gsi(struct vm *vm, unsigned *gsi) __must_check;
/* Append " text" to the kernel command line the guest sees. */
int vm_cmdline_append(struct vm *vm, const char *fmt, ...) __printf(2, 3) __must_check;

/* Interrupts. */
int vm_irq_line(struct vm *vm, unsigned gsi, int level);
int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign) __must_check;
/* Register an ioeventfd on an MMIO (or PIO) address, with optional datamatch. */
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, bool pio, bool match,
		 uint64_t data, bool assign) __must_check;
