/* x86_priv.h: layouts and helpers shared by the x86 platform files and their
 * unit tests (boot_params offsets, hvm_start_info, e820, CPUID template). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compiler.h"
#include "mem.h"

/* Little-endian field access on byte buffers: no alignment assumptions. */
static inline uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}
static inline uint64_t le64_get(const uint8_t *p)
{
	return (uint64_t)le32_get(p) | ((uint64_t)le32_get(p + 4) << 32);
}
static inline void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void le32_put(uint8_t *p, uint32_t v)
{
	le16_put(p, (uint16_t)v);
	le16_put(p + 2, (uint16_t)(v >> 16));
}
static inline void le64_put(uint8_t *p, uint64_t v)
{
	le32_put(p, (uint32_t)v);
	le32_put(p + 4, (uint32_t)(v >> 32));
}

/* struct boot_params (the "zero page"), Documentation/arch/x86/zero-page.rst
 * and boot.rst. Offsets are from the start of the 4 KiB page; the setup
 * header lives at the same offsets inside a bzImage file. */
#define BP_SIZE              0x1000
#define BP_ACPI_RSDP_ADDR    0x070 /* u64: boot_params.acpi_rsdp_addr (Linux 5.0+) */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES      0x1e8 /* u8 */
#define BP_HDR               0x1f1 /* start of struct setup_header */
#define BP_SETUP_SECTS       0x1f1 /* u8 */
#define BP_SYSSIZE           0x1f4 /* u32, 16-byte units */
#define BP_VID_MODE          0x1fa /* u16 */
#define BP_BOOT_FLAG         0x1fe /* u16, 0xAA55 */
#define BP_JUMP              0x200 /* u16; byte 0x201 gives the header length */
#define BP_HEADER            0x202 /* u32, "HdrS" */
#define BP_VERSION           0x206 /* u16 */
#define BP_TYPE_OF_LOADER    0x210 /* u8 */
#define BP_LOADFLAGS         0x211 /* u8 */
#define BP_CODE32_START      0x214 /* u32 */
#define BP_RAMDISK_IMAGE     0x218 /* u32 */
#define BP_RAMDISK_SIZE      0x21c /* u32 */
#define BP_HEAP_END_PTR      0x224 /* u16 */
#define BP_CMD_LINE_PTR      0x228 /* u32 */
#define BP_INITRD_ADDR_MAX   0x22c /* u32 */
#define BP_KERNEL_ALIGNMENT  0x230 /* u32 */
#define BP_RELOCATABLE       0x234 /* u8 */
#define BP_XLOADFLAGS        0x236 /* u16 */
#define BP_CMDLINE_SIZE      0x238 /* u32 */
#define BP_PREF_ADDRESS      0x258 /* u64 */
#define BP_INIT_SIZE         0x260 /* u32 */
#define BP_E820_TABLE        0x2d0 /* 128 x struct boot_e820_entry (20 bytes) */
#define BP_E820_MAX          128

#define BP_HDRS_MAGIC       0x53726448u /* "HdrS" */
#define BP_BOOT_FLAG_MAGIC  0xAA55
#define BP_LOADED_HIGH      0x01
#define BP_CAN_USE_HEAP     0x80
#define BP_XLF_KERNEL_64    0x01
#define BP_LOADER_UNDEFINED 0xff
/* heap_end_ptr: end of the setup heap relative to the real-mode code
 * (boot.rst example: 0xe000 - 0x200); unused on the 64-bit path but the
 * kernel reads it when CAN_USE_HEAP is set. */
#define BP_HEAP_END (0xe000 - 0x200)
/* Protocol version we announce in a zero page built from scratch (vmlinux). */
#define BP_PROTOCOL_SYNTH 0x020f

/* e820 entry types (also the hvm_memmap_table_entry types). */
#define E820_RAM      1
#define E820_RESERVED 2

#define X86_BIOS_AREA_END 0x100000ULL

struct x86_e820_entry {
	uint64_t addr, size;
	uint32_t type;
};
#define X86_E820_MAX 4

/* The guest's memory map: RAM below the EBDA, the EBDA..1 MiB hole as
 * reserved, RAM from 1 MiB to the end of low RAM, and RAM above 4 GiB.
 * Returns the number of entries (<= X86_E820_MAX). */
unsigned x86_e820_build(const struct guest_mem *mem, struct x86_e820_entry *out);

/* hvm_start_info (Xen public arch-x86/hvm/start_info.h), version 1. */
#define HVM_START_MAGIC        0x336ec578u
#define HVM_SI_SIZE            56
#define HVM_SI_MAGIC           0
#define HVM_SI_VERSION         4
#define HVM_SI_FLAGS           8
#define HVM_SI_NR_MODULES      12
#define HVM_SI_MODLIST_PADDR   16
#define HVM_SI_CMDLINE_PADDR   24
#define HVM_SI_RSDP_PADDR      32
#define HVM_SI_MEMMAP_PADDR    40
#define HVM_SI_MEMMAP_ENTRIES  48
#define HVM_MEMMAP_ENTRY_SIZE  24 /* addr u64, size u64, type u32, reserved u32 */
#define HVM_MODLIST_ENTRY_SIZE 32 /* paddr, size, cmdline_paddr, reserved: u64 */
/* Where things go inside the 4 KiB page at X86_PVH_INFO_ADDR. */
#define X86_PVH_MEMMAP_ADDR  (X86_PVH_INFO_ADDR + HVM_SI_SIZE)
#define X86_PVH_MODLIST_ADDR (X86_PVH_MEMMAP_ADDR + X86_E820_MAX * HVM_MEMMAP_ENTRY_SIZE)

/* ELF note that carries the PVH 32-bit entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Low-memory areas the loaders protect. */
#define X86_BOOT_AREA_START  0x500ULL
#define X86_BOOT_AREA_END    0x30000ULL /* GDT .. end of command line */
#define X86_TRAMPOLINE_START 0x8000ULL  /* left to the guest (AP startup) */
#define X86_TRAMPOLINE_END   0x9000ULL
#define X86_PDPT_ADDR        (X86_PML4_ADDR + 0x1000)
#define X86_PD_ADDR          (X86_PML4_ADDR + 0x2000) /* four pages */

/* Boot GDT: null, null, code 0x10, data 0x18, TSS 0x20 (16 bytes in long mode). */
#define X86_GDT_ENTRIES 6
#define X86_SEL_CODE    0x10
#define X86_SEL_DATA    0x18
#define X86_SEL_TSS     0x20

/* Write the boot GDT for the mode at X86_BOOT_GDT_ADDR; for LINUX64 also the
 * identity page tables (0-4 GiB, 2 MiB pages) at X86_PML4_ADDR.
 * Returns 0 or -EFAULT when low memory is too small. */
struct x86_boot_info;
int x86_write_boot_tables(struct guest_mem *mem, const struct x86_boot_info *bi) __must_check;

/* GDT descriptor for a flat segment (base 0, limit 4 GiB) or the TSS. */
uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

/* CPUID template applied to KVM's supported list for vCPU `index` of
 * `nr_cpus`: APIC ids, topology leaves, hypervisor bit, hidden features.
 * Pure: used by x86_setup_cpuid and the unit tests. */
struct kvm_cpuid2;
void x86_cpuid_apply_template(struct kvm_cpuid2 *cpuid, unsigned index, unsigned nr_cpus);

/* The boot MSRs and their values, shared with the unit tests. */
struct x86_msr_init {
	uint32_t index;
	uint64_t value;
	const char *name;
};
extern const struct x86_msr_init x86_boot_msrs[];
extern const size_t x86_nr_boot_msrs;

/* One x86_load_kernel call: its inputs, the open initrd and the error
 * buffer. Shared by boot.c (files, initrd, command line, e820) and the
 * format loaders boot_bzimage.c and boot_elf.c. */
struct x86_load {
	struct guest_mem *mem;
	const char *kernel_path;
	const char *initrd_path; /* NULL: no initrd */
	const char *cmdline;     /* never NULL */
	size_t cmdline_len;      /* strlen(cmdline) */
	const uint8_t *image;    /* the whole kernel file */
	size_t image_len;
	int initrd_fd; /* -1 without initrd */
	uint64_t initrd_size;
	uint64_t initrd_addr; /* set by x86_place_initrd */
	char *err;
	size_t errlen;
};

/* Format the error message into ld->err; returns ret. */
int x86_load_fail(struct x86_load *ld, int ret, const char *fmt, ...) __printf(3, 4);

/* Choose the initrd's address: page aligned, ending at or below `limit`
 * (exclusive) and starting at or above `kernel_end`. No-op without initrd.
 * Returns 0 or -ENOMEM with the message set. */
int x86_place_initrd(struct x86_load *ld, uint64_t kernel_end, uint64_t limit) __must_check;

/* Copy the initrd (after x86_place_initrd) and the command line into guest
 * memory. Returns 0 or -errno with the message set. */
int x86_write_initrd_cmdline(struct x86_load *ld) __must_check;

/* Fill the loader-owned fields of a zero page: type_of_loader, command
 * line, ramdisk, e820 map. */
void x86_zero_page_common(const struct x86_load *ld, uint8_t *zp);

/* Multiboot information (boot_multiboot.c) at X86_MULTIBOOT_INFO_ADDR, after
 * x86_place_initrd. Returns 0 or -EFAULT with the message set. */
#define X86_MULTIBOOT_INFO_ADDR X86_PVH_INFO_ADDR
#define X86_MULTIBOOT_MAGIC     0x2BADB002u
int x86_write_multiboot_info(struct x86_load *ld) __must_check;

int x86_load_bzimage(struct x86_load *ld, struct x86_boot_info *out) __must_check;
int x86_load_elf(struct x86_load *ld, struct x86_boot_info *out) __must_check;
