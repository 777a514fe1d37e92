/* boot_elf.c: loads an x86 ELF kernel (ELF64 or ELF32): through PVH
 * (hvm_start_info) when it carries the Xen PHYS32_ENTRY note, else the Linux
 * boot protocol of its class at e_entry (64-bit for an x86-64 vmlinux,
 * 32-bit for an i386 one) with a zero page built from scratch, or multiboot
 * at e_entry when an ELF32 file carries a multiboot header. */
#include <errno.h>
#include <inttypes.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

/* Without a setup header to say otherwise, keep a vmlinux initrd where the
 * kernel's default initrd_addr_max (0x7fffffff) allows. */
#define ELF_LINUX_INITRD_LIMIT 0x80000000ULL
/* An i386 kernel's default initrd_addr_max is 0x37ffffff (its lowmem). */
#define ELF_LINUX32_INITRD_LIMIT 0x38000000ULL

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Segment placement rules; returns 0 or -EINVAL with the message set. */
static int check_segment(struct x86_load *ld, unsigned i, const struct elf_segment *s)
{
	uint64_t end = s->paddr + s->memsz; /* elf_parse bounds this below 2^40 */

	if (!guest_mem_ptr(ld->mem, s->paddr, s->memsz))
		return x86_load_fail(
		    ld, -EINVAL, "%s: segment %u [0x%" PRIx64 "-0x%" PRIx64 ") outside guest RAM",
		    ld->kernel_path, i, s->paddr, end);
	if (overlaps(s->paddr, s->memsz, X86_BOOT_AREA_START,
	             X86_BOOT_AREA_END - X86_BOOT_AREA_START) &&
	    !(s->paddr >= X86_TRAMPOLINE_START && end <= X86_TRAMPOLINE_END))
		return x86_load_fail(ld, -EINVAL,
		                     "%s: segment %u [0x%" PRIx64 "-0x%" PRIx64
		                     ") overlaps the boot structures at 0x500-0x2ffff",
		                     ld->kernel_path, i, s->paddr, end);
	if (overlaps(s->paddr, s->memsz, X86_EBDA_ADDR, X86_BIOS_AREA_END - X86_EBDA_ADDR))
		return x86_load_fail(ld, -EINVAL,
		                     "%s: segment %u [0x%" PRIx64 "-0x%" PRIx64
		                     ") overlaps the reserved area 0x9fc00-0xfffff (MP table)",
		                     ld->kernel_path, i, s->paddr, end);
	return 0;
}

static int write_pvh_info(struct x86_load *ld)
{
	struct x86_e820_entry e820[X86_E820_MAX];
	unsigned n = x86_e820_build(ld->mem, e820);
	uint8_t page[0x1000];
	uint8_t *si = page;

	memset(page, 0, sizeof(page));
	le32_put(si + HVM_SI_MAGIC, HVM_START_MAGIC);
	le32_put(si + HVM_SI_VERSION, 1);
	le64_put(si + HVM_SI_CMDLINE_PADDR, X86_CMDLINE_ADDR);
	le64_put(si + HVM_SI_MEMMAP_PADDR, X86_PVH_MEMMAP_ADDR);
	le32_put(si + HVM_SI_MEMMAP_ENTRIES, n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e =
		    page + (X86_PVH_MEMMAP_ADDR - X86_PVH_INFO_ADDR) + i * HVM_MEMMAP_ENTRY_SIZE;

		le64_put(e, e820[i].addr);
		le64_put(e + 8, e820[i].size);
		le32_put(e + 16, e820[i].type);
	}
	if (ld->initrd_fd >= 0) {
		uint8_t *m = page + (X86_PVH_MODLIST_ADDR - X86_PVH_INFO_ADDR);

		le32_put(si + HVM_SI_NR_MODULES, 1);
		le64_put(si + HVM_SI_MODLIST_PADDR, X86_PVH_MODLIST_ADDR);
		le64_put(m, ld->initrd_addr);
		le64_put(m + 8, ld->initrd_size);
	}
	if (guest_mem_write(ld->mem, X86_PVH_INFO_ADDR, page, sizeof(page)))
		return x86_load_fail(ld, -EFAULT, "hvm_start_info: guest RAM too small");
	return 0;
}

static int write_zero_page(struct x86_load *ld, uint64_t initrd_limit)
{
	uint8_t zp[BP_SIZE];

	/* No setup header in a vmlinux: announce a current protocol ourselves,
	 * as the kernel checks the magic and version before reading fields. */
	memset(zp, 0, sizeof(zp));
	le16_put(zp + BP_BOOT_FLAG, BP_BOOT_FLAG_MAGIC);
	le32_put(zp + BP_HEADER, BP_HDRS_MAGIC);
	le16_put(zp + BP_VERSION, BP_PROTOCOL_SYNTH);
	le32_put(zp + BP_KERNEL_ALIGNMENT, 0x1000000);
	le32_put(zp + BP_CMDLINE_SIZE, (uint32_t)(X86_CMDLINE_MAX - 1));
	le32_put(zp + BP_INITRD_ADDR_MAX, (uint32_t)(initrd_limit - 1));
	zp[BP_LOADFLAGS] = BP_LOADED_HIGH;
	x86_zero_page_common(ld, zp);
	if (guest_mem_write(ld->mem, X86_ZERO_PAGE_ADDR, zp, sizeof(zp)))
		return x86_load_fail(ld, -EFAULT, "zero page: guest RAM too small");
	return 0;
}

int x86_load_elf(struct x86_load *ld, struct x86_boot_info *out)
{
	struct elf_info elf;
	const char *why = "";
	uint64_t low_end = 0, kernel_end = 0, limit;
	int ret;

	ret = elf_parse(ld->image, ld->image_len, &elf, &why);
	if (ret)
		return x86_load_fail(ld, ret, "%s: %s", ld->kernel_path, why);
	for (unsigned i = 0; i < elf.nr_segments; i++) {
		const struct elf_segment *s = &elf.seg[i];

		ret = check_segment(ld, i, s);
		if (ret)
			return ret;
		kernel_end = MAX(kernel_end, s->paddr + s->memsz);
		if (s->paddr < MEM_4G)
			low_end = MAX(low_end, s->paddr + s->memsz);
	}
	if (!elf.has_pvh && elf.entry >= MEM_4G)
		return x86_load_fail(ld, -EINVAL,
		                     "%s: entry point 0x%" PRIx64
		                     " is above 4 GiB (not identity-mapped)",
		                     ld->kernel_path, elf.entry);
	if (elf.has_pvh || elf.multiboot)
		limit = ld->mem->low_size;
	else
		limit = elf.is32 ? ELF_LINUX32_INITRD_LIMIT : ELF_LINUX_INITRD_LIMIT;
	ret = x86_place_initrd(ld, MAX(low_end, X86_BIOS_AREA_END), limit);
	if (ret)
		return ret;

	for (unsigned i = 0; i < elf.nr_segments; i++) {
		const struct elf_segment *s = &elf.seg[i];
		uint8_t *dst = guest_mem_ptr(ld->mem, s->paddr, s->memsz);

		/* check_segment proved the range is RAM. */
		memcpy(dst, ld->image + s->offset, (size_t)s->filesz);
		memset(dst + s->filesz, 0, (size_t)(s->memsz - s->filesz));
	}
	ret = x86_write_initrd_cmdline(ld);
	if (ret)
		return ret;
	if (elf.has_pvh)
		ret = write_pvh_info(ld);
	else if (elf.multiboot)
		ret = x86_write_multiboot_info(ld);
	else
		ret = write_zero_page(ld, limit);
	if (ret)
		return ret;

	out->entry = elf.has_pvh ? elf.pvh_entry : elf.entry;
	out->kernel_end = kernel_end;
	if (elf.has_pvh) {
		/* The PVH entry is 32-bit protected mode whatever the ELF class. */
		out->mode = X86_BOOT_PVH;
		out->boot_arg = X86_PVH_INFO_ADDR;
		out->format = elf.is32 ? "ELF32 (PVH)" : "ELF (PVH)";
	} else if (elf.multiboot) {
		/* elf_parse accepts multiboot (version 1) for ELF32 only. */
		out->mode = X86_BOOT_MULTIBOOT;
		out->boot_arg = X86_MULTIBOOT_INFO_ADDR;
		out->format = "ELF32 (multiboot)";
	} else {
		out->mode = elf.is32 ? X86_BOOT_LINUX32 : X86_BOOT_LINUX64;
		out->boot_arg = X86_ZERO_PAGE_ADDR;
		out->format = elf.is32 ? "ELF32 (32-bit Linux)" : "ELF (64-bit)";
	}
	return 0;
}
