/* boot_bzimage.c: loads a bzImage for the 64-bit Linux boot protocol, or the
 * 32-bit one for kernels without a 64-bit entry (i386, protocol 2.10/2.11):
 * the protected-mode kernel at 1 MiB (or its preferred address) and the zero
 * page. */
#include <errno.h>
#include <inttypes.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

/* Entry of the 64-bit kernel relative to its load address (boot.rst). */
#define BZ_ENTRY64_OFFSET 0x200

int x86_load_bzimage(struct x86_load *ld, struct x86_boot_info *out)
{
	struct bzimage_info bz;
	const char *why = "";
	uint8_t zp[BP_SIZE];
	uint64_t need, load, run_at, kernel_end, hdr_end;
	int ret;

	ret = bzimage_parse(ld->image, ld->image_len, &bz, &why);
	if (ret) {
		if (bz.protocol)
			return x86_load_fail(ld, ret, "%s: %s (file has boot protocol %u.%02u)",
			                     ld->kernel_path, why, bz.protocol >> 8,
			                     bz.protocol & 0xff);
		return x86_load_fail(ld, ret, "%s: %s", ld->kernel_path, why);
	}
	if (ld->cmdline_len > bz.cmdline_size)
		return x86_load_fail(
		    ld, -E2BIG, "%s: command line is %zu bytes; this kernel accepts at most %u",
		    ld->kernel_path, ld->cmdline_len, bz.cmdline_size);

	/* The kernel needs init_size bytes from where it runs. Its decompressor
	 * moves itself to max(load address aligned up, pref_address) first, so
	 * that is where its footprint ends, whatever the load address. */
	need = MAX((uint64_t)bz.init_size, bz.pm_size);
	load = X86_KERNEL_ADDR;
	if (bz.relocatable && bz.pref_address >= X86_KERNEL_ADDR &&
	    bz.pref_address % bz.kernel_alignment == 0 &&
	    bz.pref_address + need <= ld->mem->low_size)
		load = bz.pref_address;
	run_at = load;
	if (bz.relocatable)
		run_at = ALIGN_UP(run_at, (uint64_t)bz.kernel_alignment);
	run_at = MAX(run_at, bz.pref_address);
	kernel_end = run_at + need;
	if (kernel_end > ld->mem->low_size)
		return x86_load_fail(ld, -ENOMEM,
		                     "%s: kernel needs RAM up to 0x%" PRIx64
		                     " but RAM below 3 GiB ends at 0x%" PRIx64,
		                     ld->kernel_path, kernel_end, ld->mem->low_size);
	/* initrd_addr_max is the highest byte the initrd may occupy. */
	ret = x86_place_initrd(ld, kernel_end, (uint64_t)bz.initrd_addr_max + 1);
	if (ret)
		return ret;

	if (guest_mem_write(ld->mem, load, ld->image + bz.pm_offset, (size_t)bz.pm_size))
		return x86_load_fail(ld, -EFAULT, "%s: kernel does not fit in guest RAM",
		                     ld->kernel_path);
	ret = x86_write_initrd_cmdline(ld);
	if (ret)
		return ret;

	/* Zero page: the file's setup header, then the loader's fields. */
	memset(zp, 0, sizeof(zp));
	hdr_end = BP_HEADER + (uint64_t)ld->image[BP_JUMP + 1];
	memcpy(zp + BP_HDR, ld->image + BP_HDR, (size_t)(hdr_end - BP_HDR));
	x86_zero_page_common(ld, zp);
	zp[BP_LOADFLAGS] |= BP_LOADED_HIGH | BP_CAN_USE_HEAP;
	le16_put(zp + BP_HEAP_END_PTR, BP_HEAP_END);
	le32_put(zp + BP_CODE32_START, (uint32_t)load);
	if (guest_mem_write(ld->mem, X86_ZERO_PAGE_ADDR, zp, sizeof(zp)))
		return x86_load_fail(ld, -EFAULT, "zero page: guest RAM too small");

	/* boot.rst "32-bit BOOT PROTOCOL": enter at code32_start. */
	out->mode = bz.entry64 ? X86_BOOT_LINUX64 : X86_BOOT_LINUX32;
	out->entry = bz.entry64 ? load + BZ_ENTRY64_OFFSET : load;
	out->boot_arg = X86_ZERO_PAGE_ADDR;
	out->kernel_end = kernel_end;
	out->format = bz.entry64 ? "bzImage" : "bzImage (32-bit entry)";
	return 0;
}
