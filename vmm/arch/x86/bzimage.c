/* bzimage.c: parser for the Linux bzImage setup header (boot protocol 2.10+:
 * the 64-bit entry when XLF_KERNEL_64 announces it, else the 32-bit one),
 * over untrusted bytes. */
#include <errno.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

/* The last setup-header field we read is init_size (protocol 2.10+). */
#define BZ_HDR_NEED_END (BP_INIT_SIZE + 4)

static int reject(const char **why, const char *msg)
{
	*why = msg;
	return -EINVAL;
}

int bzimage_parse(const uint8_t *buf, size_t len, struct bzimage_info *out, const char **why)
{
	size_t hdr_end;
	unsigned setup_sects;
	uint64_t syssize_bytes;

	memset(out, 0, sizeof(*out));
	if (len < BP_HEADER + 4)
		return reject(why, "truncated: setup header extends past end of file");
	if (le32_get(buf + BP_HEADER) != BP_HDRS_MAGIC)
		return reject(why, "not a bzImage: missing HdrS magic");
	if (le16_get(buf + BP_BOOT_FLAG) != BP_BOOT_FLAG_MAGIC)
		return reject(why, "not a bzImage: missing 0xAA55 boot flag");
	/* boot.rst: the header ends at 0x202 + the byte at 0x201. */
	hdr_end = BP_HEADER + (size_t)buf[BP_JUMP + 1];
	if (hdr_end > len)
		return reject(why, "truncated: setup header extends past end of file");
	if (hdr_end < BP_VERSION + 2)
		return reject(why, "bzImage: setup header too short");
	out->protocol = le16_get(buf + BP_VERSION);
	/* init_size (2.10+) tells how much memory the kernel needs where it
	 * decompresses; without it neither the kernel's footprint nor a safe
	 * initrd address is known. */
	if (out->protocol < 0x020a)
		return reject(why, "boot protocol too old (need 2.10+, Linux 2.6.31 or later: "
		                   "earlier ones give no init_size)");
	if (hdr_end < BZ_HDR_NEED_END)
		return reject(why, "bzImage: setup header too short for its protocol version");
	/* The 64-bit entry at load address + 0x200 is announced by
	 * XLF_KERNEL_64, which exists since protocol 2.12; other kernels (i386
	 * ones, x86-64 ones before 2.12) take the 32-bit boot protocol. */
	out->entry64 = out->protocol >= 0x020c &&
	               (le16_get(buf + BP_XLOADFLAGS) & BP_XLF_KERNEL_64);
	if (!(buf[BP_LOADFLAGS] & BP_LOADED_HIGH))
		return reject(why,
		              "bzImage: kernel not built to load at 1 MiB (LOADED_HIGH clear)");

	setup_sects = buf[BP_SETUP_SECTS];
	if (setup_sects == 0)
		setup_sects = 4; /* boot.rst: 0 means 4 */
	out->setup_size = (setup_sects + 1) * 512u;
	if (out->setup_size < hdr_end)
		return reject(why, "bzImage: setup_sects smaller than the setup header");
	if (out->setup_size >= len)
		return reject(why, "truncated: no protected-mode kernel after the setup code");
	out->pm_offset = out->setup_size;
	out->pm_size = len - out->setup_size;
	/* syssize counts 16-byte paragraphs of the protected-mode part; bytes
	 * past it (e.g. an appended signature) are not part of the kernel. */
	syssize_bytes = (uint64_t)le32_get(buf + BP_SYSSIZE) * 16;
	if (syssize_bytes > out->pm_size)
		return reject(why, "truncated: protected-mode kernel shorter than syssize");
	if (syssize_bytes)
		out->pm_size = syssize_bytes;

	out->initrd_addr_max = le32_get(buf + BP_INITRD_ADDR_MAX);
	out->cmdline_size = le32_get(buf + BP_CMDLINE_SIZE);
	out->relocatable = buf[BP_RELOCATABLE] != 0;
	out->kernel_alignment = le32_get(buf + BP_KERNEL_ALIGNMENT);
	out->pref_address = le64_get(buf + BP_PREF_ADDRESS);
	out->init_size = le32_get(buf + BP_INIT_SIZE);
	if (out->init_size == 0)
		return reject(why, "bzImage: init_size is 0");
	if (out->relocatable &&
	    (out->kernel_alignment == 0 || (out->kernel_alignment & (out->kernel_alignment - 1))))
		return reject(why, "bzImage: kernel_alignment not a power of two");
	if (out->pref_address & 0xfff)
		return reject(why, "bzImage: pref_address not page aligned");
	if (out->pref_address >= MEM_HOLE_START)
		return reject(why, "bzImage: pref_address beyond 3 GiB");
	if (out->initrd_addr_max < X86_BIOS_AREA_END)
		return reject(why, "bzImage: initrd_addr_max below 1 MiB");
	return 0;
}
