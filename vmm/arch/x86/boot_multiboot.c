/* boot_multiboot.c: the multiboot (version 0.6.96) information structure
 * for an ELF32 kernel with a multiboot header and no PVH note: memory sizes,
 * the command line, the initrd as module 0, the e820 map and the loader's
 * name, in the page the PVH start info would otherwise use. */
#include <errno.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

/* struct multiboot_info fields (multiboot 3.3) and their flags bits. */
#define MBI_FLAGS        0
#define MBI_MEM_LOWER    4
#define MBI_MEM_UPPER    8
#define MBI_CMDLINE      16
#define MBI_MODS_COUNT   20
#define MBI_MODS_ADDR    24
#define MBI_MMAP_LENGTH  44
#define MBI_MMAP_ADDR    48
#define MBI_LOADER_NAME  64
#define MBI_F_MEM        (1u << 0)
#define MBI_F_CMDLINE    (1u << 2)
#define MBI_F_MODS       (1u << 3)
#define MBI_F_MMAP       (1u << 6)
#define MBI_F_LOADER     (1u << 9)

/* Where the parts go inside the page at X86_MULTIBOOT_INFO_ADDR. */
#define MB_MMAP_OFF   0x80  /* entries: size (20), base u64, length u64, type u32 */
#define MB_MMAP_ENTRY 24
#define MB_MOD_OFF    0x100 /* mod_start, mod_end, string, reserved */
#define MB_MODSTR_OFF 0x110
#define MB_NAME_OFF   0x120

int x86_write_multiboot_info(struct x86_load *ld)
{
	struct x86_e820_entry e820[X86_E820_MAX];
	unsigned n = x86_e820_build(ld->mem, e820);
	const uint64_t base = X86_MULTIBOOT_INFO_ADDR;
	uint8_t page[0x1000];
	uint32_t flags = MBI_F_MEM | MBI_F_CMDLINE | MBI_F_MMAP | MBI_F_LOADER;

	memset(page, 0, sizeof(page));
	/* KiB of RAM below the EBDA, and from 1 MiB up to the first hole. */
	le32_put(page + MBI_MEM_LOWER, (uint32_t)(X86_EBDA_ADDR >> 10));
	le32_put(page + MBI_MEM_UPPER, (uint32_t)((ld->mem->low_size - X86_BIOS_AREA_END) >> 10));
	le32_put(page + MBI_CMDLINE, (uint32_t)X86_CMDLINE_ADDR);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = page + MB_MMAP_OFF + i * MB_MMAP_ENTRY;

		le32_put(e, MB_MMAP_ENTRY - 4);
		le64_put(e + 4, e820[i].addr);
		le64_put(e + 12, e820[i].size);
		le32_put(e + 20, e820[i].type);
	}
	le32_put(page + MBI_MMAP_LENGTH, n * MB_MMAP_ENTRY);
	le32_put(page + MBI_MMAP_ADDR, (uint32_t)(base + MB_MMAP_OFF));
	if (ld->initrd_fd >= 0) {
		/* Below the end of low RAM (x86_place_initrd), so 32 bits hold it. */
		flags |= MBI_F_MODS;
		le32_put(page + MBI_MODS_COUNT, 1);
		le32_put(page + MBI_MODS_ADDR, (uint32_t)(base + MB_MOD_OFF));
		le32_put(page + MB_MOD_OFF, (uint32_t)ld->initrd_addr);
		le32_put(page + MB_MOD_OFF + 4, (uint32_t)(ld->initrd_addr + ld->initrd_size));
		le32_put(page + MB_MOD_OFF + 8, (uint32_t)(base + MB_MODSTR_OFF));
		memcpy(page + MB_MODSTR_OFF, "initrd", 7);
	}
	memcpy(page + MB_NAME_OFF, "cella", 6);
	le32_put(page + MBI_LOADER_NAME, (uint32_t)(base + MB_NAME_OFF));
	le32_put(page + MBI_FLAGS, flags);
	if (guest_mem_write(ld->mem, base, page, sizeof(page)))
		return x86_load_fail(ld, -EFAULT, "multiboot information: guest RAM too small");
	return 0;
}
