/* x86.h: everything x86-specific that the core VM calls: kernel loading and
 * boot structures, MP table, CPUID, MSRs and initial vCPU register state.
 *
 * Low-memory layout used by the loaders (guest-physical):
 *   0x00500  boot GDT (64-bit boot)          0x06000  PVH hvm_start_info + memmap
 *   0x07000  Linux zero page (boot_params)   0x08000  free for the guest (AP trampoline)
 *   0x09000  PML4, 0x0A000 PDPT, 0x0B000-0x0EFFF four PDs (64-bit boot)
 *   0x20000  kernel command line (up to 64 KiB)
 *   0x9FC00  MP floating pointer + MP table (EBDA), reserved to 1 MiB in e820
 *   0x100000 kernel; initrd at the top of low RAM (below initrd_addr_max)
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "mem.h"

#define X86_BOOT_GDT_ADDR     0x500ULL
#define X86_PVH_INFO_ADDR     0x6000ULL
#define X86_ZERO_PAGE_ADDR    0x7000ULL
#define X86_PML4_ADDR         0x9000ULL
#define X86_CMDLINE_ADDR      0x20000ULL
#define X86_CMDLINE_MAX       0x10000ULL
#define X86_EBDA_ADDR         0x9FC00ULL
#define X86_KERNEL_ADDR       0x100000ULL
#define X86_BOOT_STACK_TOP    0x20000ULL /* initial RSP; grows down into 0xF000-0x1FFFF */

enum x86_boot_mode {
	X86_BOOT_PVH,     /* 32-bit protected mode, paging off, EBX = hvm_start_info */
	X86_BOOT_LINUX64, /* long mode, identity map 0-4 GiB, RSI = boot_params */
	X86_BOOT_LINUX32, /* 32-bit protected mode, paging off, ESI = boot_params */
	X86_BOOT_MULTIBOOT, /* 32-bit protected mode, paging off, EAX = 0x2BADB002,
			     * EBX = multiboot information */
};

struct x86_boot_info {
	enum x86_boot_mode mode;
	uint64_t entry;     /* RIP at start */
	uint64_t boot_arg;  /* EBX (PVH, multiboot), RSI (Linux64) or ESI (Linux32) */
	uint64_t kernel_end;/* first byte after the kernel's memory (bzImage: its
			     * init_size footprint, where it decompresses) */
	const char *format; /* "bzImage", "bzImage (32-bit entry)", "ELF (PVH)",
			     * "ELF32 (PVH)", "ELF (64-bit)", "ELF32 (32-bit Linux)",
			     * "ELF32 (multiboot)" */
};

/* Kernel image parsers: pure functions over bytes, fuzzed. Return 0, or
 * -EINVAL with *why set to a static message naming what is wrong. */
struct bzimage_info {
	uint16_t protocol;     /* boot protocol version, e.g. 0x020f */
	uint32_t setup_size;   /* bytes of real-mode setup (incl. boot sector) */
	uint64_t pm_offset;    /* file offset of the protected-mode kernel */
	uint64_t pm_size;
	uint64_t pref_address; /* where the kernel wants to be loaded */
	uint32_t init_size;    /* memory the kernel needs from its load address */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	bool relocatable;
	uint32_t kernel_alignment;
	bool entry64;          /* XLF_KERNEL_64 (2.12+): 64-bit entry at +0x200;
				* else the 32-bit boot protocol at +0 */
};
int bzimage_parse(const uint8_t *buf, size_t len, struct bzimage_info *out,
		  const char **why) __must_check;

#define ELF_MAX_SEGMENTS 16
struct elf_segment {
	uint64_t paddr, offset, filesz, memsz;
};
struct elf_info {
	bool is32;             /* ELFCLASS32 (i386) rather than ELFCLASS64 (x86-64) */
	unsigned multiboot;    /* multiboot header version found (only looked for
				* without a PVH note; only 1 is accepted) */
	uint32_t multiboot_flags; /* its header's flags (version 1) */
	uint64_t entry;        /* e_entry (physical for vmlinux) */
	bool has_pvh;          /* XEN_ELFNOTE_PHYS32_ENTRY found */
	uint64_t pvh_entry;
	unsigned nr_segments;
	struct elf_segment seg[ELF_MAX_SEGMENTS];
};
int elf_parse(const uint8_t *buf, size_t len, struct elf_info *out, const char **why) __must_check;

/* Load kernel (bzImage or ELF, detected by content), optional initrd and the
 * command line into guest memory; write the zero page or hvm_start_info with
 * the e820 map. Returns 0 or -errno with a message in err naming the file and
 * what is wrong (e.g. "kernel.bin: not a kernel image: no bzImage (HdrS) or ELF
 * magic"). What is checked is listed in docs/boot.md. */
int x86_load_kernel(struct guest_mem *mem, const char *kernel_path, const char *initrd_path,
		    const char *cmdline, struct x86_boot_info *out, char *err,
		    size_t errlen) __must_check;

/* Tell the loaded kernel where the ACPI RSDP is, the way its boot protocol
 * carries it: hvm_start_info.rsdp_paddr (PVH) or boot_params.acpi_rsdp_addr
 * (Linux 32/64-bit entry); nothing for multiboot, which has no field (the
 * guest scans 0xE0000-0xFFFFF). Call after x86_load_kernel. 0 or -errno. */
int x86_boot_set_rsdp(struct guest_mem *mem, const struct x86_boot_info *bi,
		      uint64_t rsdp_addr) __must_check;

/* Check, without any guest memory, that kernel_path is a kernel image this
 * loader understands (bzImage or ELF, headers intact). Cheap: maps the file
 * and runs the parsers over it. Returns 0, or -errno with "PATH: reason" in
 * err. Used to refuse a bad image before a VM is created. */
int x86_check_kernel(const char *kernel_path, char *err, size_t errlen) __must_check;

/* Write the MP floating pointer and table for nr_cpus CPUs (APIC ids 0..n-1),
 * one IOAPIC (id nr_cpus, 0xFEC00000) with 24 pins all routed as ISA edge
 * interrupts (IRQ n on pin n, but the PIT's IRQ 0 on pin 2 and no entry for
 * the cascade IRQ 2), ExtINT on LINT0 and NMI on LINT1. nr_cpus is 1..32.
 * Returns 0 or -errno. */
int x86_setup_mptable(struct guest_mem *mem, unsigned nr_cpus) __must_check;

/* CPUID for one vCPU: KVM_GET_SUPPORTED_CPUID with per-vCPU APIC ids and
 * topology, the hypervisor leaves kept (kvmclock), features we do not
 * emulate hidden (PMU, MONITOR/MWAIT, ...). kvm_fd is /dev/kvm. */
int x86_setup_cpuid(int kvm_fd, int vcpu_fd, unsigned index, unsigned nr_cpus) __must_check;
/* The same; *applied (may be NULL) tells whether KVM_GET_CPUID2 reads the
 * template back. It is false on hosts whose KVM accepts KVM_SET_CPUID2 but
 * ignores it (see docs/boot.md): log that once, it is not an error. */
int x86_setup_cpuid_checked(int kvm_fd, int vcpu_fd, unsigned index, unsigned nr_cpus,
			    bool *applied) __must_check;
struct kvm_cpuid2;
/* KVM_GET_SUPPORTED_CPUID of kvm_fd (/dev/kvm) into a malloc'd table
 * (*out, the caller frees it). It is the same for every vCPU of a host, and
 * costs a host CPUID per leaf (about 0.5 ms where those trap): ask once per
 * VM. 0 or -errno. */
int x86_cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out) __must_check;
/* x86_setup_cpuid_checked from a table that x86_cpuid_get_supported gave
 * (not changed: the vCPU's template is made on a copy). ignored_before: an
 * earlier vCPU of this VM found the template ignored (*applied false), so
 * the features that need hypercalls are hidden before the one set rather
 * than in a second one. */
int x86_setup_cpuid_from(const struct kvm_cpuid2 *supported, int vcpu_fd, unsigned index,
			 unsigned nr_cpus, bool ignored_before, bool *applied) __must_check;
/* The Linux command-line options ("clearcpuid=131,137,141,151,308 noxsave")
 * that hide, from the guest side, the features of cpuid (what the vCPU's
 * CPUID shows) that this host's KVM cannot run at CPL0, runs only slowly
 * through the emulation fallback, or that the template hides; "" when none
 * is shown. For hosts whose KVM ignores the template's feature bits
 * (cpuid_linux.c). 0, or -ENOSPC when buf is too small. */
int x86_linux_hiding_args(const struct kvm_cpuid2 *cpuid, char *buf, size_t len) __must_check;

/* Initial MSRs (SYSENTER/STAR..., MISC_ENABLE fast strings, TSC, PAT). */
int x86_setup_msrs(int vcpu_fd) __must_check;

/* Registers of the boot vCPU (index 0) for the given boot info; APs (index>0)
 * are left in the reset state to wait for INIT/SIPI. Also programs LAPIC
 * LINT0 as ExtINT and LINT1 as NMI, and the FPU defaults. For LINUX64 this
 * writes the page tables and GDT into guest memory. */
int x86_setup_vcpu_regs(int vcpu_fd, unsigned index, const struct x86_boot_info *bi,
			struct guest_mem *mem) __must_check;

/* Save/load of vCPU and in-kernel platform state (cpustate.c), the payloads
 * of the "vcpuN", "pic-master", "pic-slave", "ioapic", "pit" and "clock"
 * sections (vm_state.c frames them). Save functions return 0 or -errno
 * (logged). Load functions check the whole payload first and return 0 or
 * -EINVAL with the reason in err; with a vcpu_fd/vm_fd of -1 they only
 * check (unit tests, fuzzing). chip is KVM_IRQCHIP_PIC_MASTER (0),
 * KVM_IRQCHIP_PIC_SLAVE (1) or KVM_IRQCHIP_IOAPIC (2). */
struct state_writer;
struct state_reader;
int x86_vcpu_state_save(int kvm_fd, int vm_fd, int vcpu_fd, struct state_writer *w) __must_check;
int x86_vcpu_state_load(int vm_fd, int vcpu_fd, struct state_reader *r, char *err,
			size_t errlen) __must_check;
int x86_irqchip_save(int vm_fd, unsigned chip, struct state_writer *w) __must_check;
int x86_irqchip_load(int vm_fd, unsigned chip, struct state_reader *r, char *err,
		     size_t errlen) __must_check;
int x86_pit_save(int vm_fd, struct state_writer *w) __must_check;
int x86_pit_load(int vm_fd, struct state_reader *r, char *err, size_t errlen) __must_check;
int x86_clock_save(int vm_fd, struct state_writer *w) __must_check;
int x86_clock_load(int vm_fd, struct state_reader *r, char *err, size_t errlen) __must_check;
