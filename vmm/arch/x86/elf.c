/* elf.c: parser for x86 ELF kernels (ELF64 x86-64 and ELF32 i386: vmlinux,
 * PVH guests) over untrusted bytes: loadable segments by physical address,
 * the Xen PVH entry note, and a multiboot header. */
#include <errno.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

/* ELF header: e_ident, then e_type, e_machine, e_version at the same
 * offsets in both classes; the rest differs (ELF64 / ELF32). */
#define EH_CLASS     4
#define EH_DATA      5
#define EH_IDVERSION 6
#define EH_TYPE      16
#define EH_MACHINE   18
#define EH_VERSION   20
#define EH_ENTRY     24

#define EH64_SIZE      64
#define EH64_PHOFF     32
#define EH64_PHENTSIZE 54
#define EH64_PHNUM     56
#define EH32_SIZE      52
#define EH32_PHOFF     28
#define EH32_PHENTSIZE 42
#define EH32_PHNUM     44

#define PH64_SIZE   56
#define PH64_OFFSET 8
#define PH64_PADDR  24
#define PH64_FILESZ 32
#define PH64_MEMSZ  40
#define PH64_ALIGN  48
#define PH32_SIZE   32
#define PH32_OFFSET 4
#define PH32_PADDR  12
#define PH32_FILESZ 16
#define PH32_MEMSZ  20
#define PH32_ALIGN  28
#define PH_TYPE     0

#define ELFCLASS32  1
#define ELFCLASS64  2
#define ELFDATA2LSB 1
#define ET_EXEC     2
#define EM_386      3
#define EM_X86_64   62
#define PT_LOAD     1
#define PT_NOTE     4

/* Multiboot header magics (multiboot 0.6.96 section 3.1.1, multiboot2
 * section 3.1.1): a 32-bit aligned header within the first 8 KiB (v1) or
 * 64-bit aligned within the first 32 KiB (v2), magic + flags + checksum
 * summing to 0 mod 2^32. */
#define MB1_MAGIC  0x1BADB002u
#define MB1_SEARCH 8192
#define MB1_FLAG_PAGE_ALIGN  (1u << 0)
#define MB1_FLAG_MEMINFO     (1u << 1)
#define MB1_FLAG_VIDEO       (1u << 2)
#define MB1_FLAGS_REQUIRED   0xffffu
#define MB1_FLAG_AOUT_KLUDGE (1u << 16)
#define MB2_MAGIC  0xE85250D6u
#define MB2_SEARCH 32768

/* Program headers beyond this are refused outright: a kernel has a handful. */
#define ELF_MAX_PHDRS 64
/* Physical addresses at or above 1 TiB are not something we would ever load. */
#define ELF_MAX_PADDR (1ULL << 40)

static int reject(const char **why, const char *msg)
{
	*why = msg;
	return -EINVAL;
}

/* True when [off, off+size) lies inside a buffer of len bytes. */
static bool range_in(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

/* Scan one PT_NOTE segment's bytes for XEN_ELFNOTE_PHYS32_ENTRY. */
static int scan_notes(const uint8_t *p, uint64_t size, uint64_t align, struct elf_info *out,
                      const char **why)
{
	uint64_t pos = 0;

	while (size - pos >= 12) {
		uint32_t namesz = le32_get(p + pos);
		uint32_t descsz = le32_get(p + pos + 4);
		uint32_t type = le32_get(p + pos + 8);
		/* namesz/descsz are 32-bit, so these sums cannot overflow 64 bits. */
		uint64_t name_off = pos + 12;
		uint64_t desc_off = name_off + ALIGN_UP((uint64_t)namesz, align);
		uint64_t next = desc_off + ALIGN_UP((uint64_t)descsz, align);

		if (desc_off > size || descsz > size - desc_off)
			return reject(why, "ELF: note extends past its segment");
		if (!out->has_pvh && type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(p + name_off, "Xen", 4) == 0) {
			uint64_t entry;

			if (descsz == 4)
				entry = le32_get(p + desc_off);
			else if (descsz == 8)
				entry = le64_get(p + desc_off);
			else
				return reject(why, "ELF: PVH entry note has a bad size");
			if (entry >= MEM_4G)
				return reject(why, "ELF: PVH entry point above 4 GiB");
			out->has_pvh = true;
			out->pvh_entry = entry;
		}
		if (next >= size)
			break;
		pos = next;
	}
	return 0;
}

static bool entry_in_segments(const struct elf_info *out, uint64_t entry)
{
	for (unsigned i = 0; i < out->nr_segments; i++) {
		const struct elf_segment *s = &out->seg[i];

		if (entry >= s->paddr && entry - s->paddr < s->memsz)
			return true;
	}
	return false;
}

/* Multiboot kernels this loader can enter: version 1, ELF32, and of the
 * header's requirement flags 0-15 (which a loader must meet or refuse,
 * multiboot 3.1.2) only page-aligned modules (0) and memory information (1). */
static int check_multiboot(const struct elf_info *e, const char **why)
{
	uint32_t fl = e->multiboot_flags;

	if (e->multiboot == 2)
		return reject(why, "ELF: a multiboot2 kernel without a PVH note: the multiboot2 "
		                   "protocol is not supported (add XEN_ELFNOTE_PHYS32_ENTRY)");
	if (e->multiboot != 1)
		return 0;
	if (!e->is32)
		return reject(why, "ELF: a 64-bit multiboot kernel: multiboot loads ELF32 files "
		                   "only (add XEN_ELFNOTE_PHYS32_ENTRY)");
	if (fl & MB1_FLAG_VIDEO)
		return reject(why, "ELF: the multiboot kernel requires a video mode (header flag "
		                   "2), which this loader does not set up");
	if (fl & MB1_FLAG_AOUT_KLUDGE)
		return reject(why, "ELF: the multiboot kernel asks to be loaded by its header's "
		                   "address fields (flag 16), which this loader does not do");
	if (fl & MB1_FLAGS_REQUIRED & ~(MB1_FLAG_PAGE_ALIGN | MB1_FLAG_MEMINFO))
		return reject(why, "ELF: the multiboot kernel requires a feature (header flags "
		                   "3-15) this loader does not know");
	return 0;
}

/* Field positions of one ELF class; word-sized fields are 4 or 8 bytes. */
struct elf_layout {
	unsigned eh_size, phoff, phentsize, phnum, ph_size;
	unsigned ph_offset, ph_paddr, ph_filesz, ph_memsz, ph_align;
	uint16_t machine;
	bool is64;
};

static const struct elf_layout elf64_layout = {
	EH64_SIZE, EH64_PHOFF, EH64_PHENTSIZE, EH64_PHNUM, PH64_SIZE,
	PH64_OFFSET, PH64_PADDR, PH64_FILESZ, PH64_MEMSZ, PH64_ALIGN, EM_X86_64, true,
};
static const struct elf_layout elf32_layout = {
	EH32_SIZE, EH32_PHOFF, EH32_PHENTSIZE, EH32_PHNUM, PH32_SIZE,
	PH32_OFFSET, PH32_PADDR, PH32_FILESZ, PH32_MEMSZ, PH32_ALIGN, EM_386, false,
};

static uint64_t word_get(const struct elf_layout *l, const uint8_t *p)
{
	return l->is64 ? le64_get(p) : le32_get(p);
}

/* Look for a multiboot header with a valid checksum: 1 or 2 for the
 * protocol version, 0 for none. v1: magic, flags, checksum (*flags set);
 * v2: magic, architecture, header_length, checksum. */
static unsigned find_multiboot(const uint8_t *buf, size_t len, uint32_t *flags)
{
	for (size_t off = 0; off < MB2_SEARCH && off <= len && len - off >= 12; off += 4) {
		uint32_t magic = le32_get(buf + off);
		uint32_t sum = magic + le32_get(buf + off + 4) + le32_get(buf + off + 8);

		if (magic == MB1_MAGIC && off < MB1_SEARCH && sum == 0) {
			*flags = le32_get(buf + off + 4);
			return 1;
		}
		if (magic == MB2_MAGIC && off % 8 == 0 && len - off >= 16 &&
		    (uint32_t)(sum + le32_get(buf + off + 12)) == 0)
			return 2;
	}
	return 0;
}

int elf_parse(const uint8_t *buf, size_t len, struct elf_info *out, const char **why)
{
	const struct elf_layout *l;
	uint64_t phoff;
	unsigned phnum;
	int ret;

	memset(out, 0, sizeof(*out));
	if (len < 4 || memcmp(buf,
	                      "\x7f"
	                      "ELF",
	                      4) != 0)
		return reject(why, "ELF: bad magic");
	if (len < EH32_SIZE)
		return reject(why, "ELF: truncated header");
	if (buf[EH_CLASS] == ELFCLASS64)
		l = &elf64_layout;
	else if (buf[EH_CLASS] == ELFCLASS32)
		l = &elf32_layout;
	else
		return reject(why, "ELF: unknown ELF class (neither 32- nor 64-bit)");
	if (len < l->eh_size)
		return reject(why, "ELF: truncated header");
	if (buf[EH_DATA] != ELFDATA2LSB)
		return reject(why, "ELF: not little-endian");
	if (buf[EH_IDVERSION] != 1 || le32_get(buf + EH_VERSION) != 1)
		return reject(why, "ELF: unknown ELF version");
	if (le16_get(buf + EH_MACHINE) != l->machine)
		return reject(why, l->is64 ? "ELF: not x86-64 (a 64-bit ELF file must be EM_X86_64)"
		                           : "ELF: not i386 (a 32-bit ELF file must be EM_386)");
	if (le16_get(buf + EH_TYPE) != ET_EXEC)
		return reject(why, "ELF: not an executable (ET_EXEC)");
	if (le16_get(buf + l->phentsize) != l->ph_size)
		return reject(why, "ELF: bad program header size");
	phnum = le16_get(buf + l->phnum);
	if (phnum == 0)
		return reject(why, "ELF: no program headers");
	if (phnum > ELF_MAX_PHDRS)
		return reject(why, "ELF: too many program headers");
	phoff = word_get(l, buf + l->phoff);
	if (!range_in(phoff, (uint64_t)phnum * l->ph_size, len))
		return reject(why, "ELF: program header table outside file");
	out->is32 = !l->is64;
	out->entry = word_get(l, buf + EH_ENTRY);

	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *ph = buf + phoff + (uint64_t)i * l->ph_size;
		uint32_t type = le32_get(ph + PH_TYPE);
		uint64_t offset = word_get(l, ph + l->ph_offset);
		uint64_t filesz = word_get(l, ph + l->ph_filesz);
		uint64_t memsz = word_get(l, ph + l->ph_memsz);
		uint64_t paddr = word_get(l, ph + l->ph_paddr);
		struct elf_segment *s;

		if (type != PT_LOAD && type != PT_NOTE)
			continue;
		if (!range_in(offset, filesz, len))
			return reject(why, "ELF: segment file range outside file");
		if (type == PT_NOTE) {
			uint64_t align = word_get(l, ph + l->ph_align) == 8 ? 8 : 4;

			ret = scan_notes(buf + offset, filesz, align, out, why);
			if (ret)
				return ret;
			continue;
		}
		if (memsz < filesz)
			return reject(why, "ELF: segment memsz < filesz");
		if (memsz == 0)
			continue;
		if (paddr >= ELF_MAX_PADDR || memsz > ELF_MAX_PADDR - paddr)
			return reject(why, "ELF: segment physical address out of range");
		if (out->nr_segments == ELF_MAX_SEGMENTS)
			return reject(why, "ELF: too many loadable segments");
		for (unsigned j = 0; j < out->nr_segments; j++) {
			const struct elf_segment *o = &out->seg[j];

			if (paddr < o->paddr + o->memsz && o->paddr < paddr + memsz)
				return reject(why, "ELF: loadable segments overlap");
		}
		s = &out->seg[out->nr_segments++];
		s->paddr = paddr;
		s->offset = offset;
		s->filesz = filesz;
		s->memsz = memsz;
	}
	if (out->nr_segments == 0)
		return reject(why, "ELF: no loadable segments");
	if (out->has_pvh ? !entry_in_segments(out, out->pvh_entry)
	                 : !entry_in_segments(out, out->entry))
		return reject(why, "ELF: entry point outside the loaded segments");
	/* Without the PVH note a multiboot kernel is entered by the multiboot
	 * contract (EAX magic, EBX info), not as a vmlinux. */
	if (!out->has_pvh) {
		out->multiboot = find_multiboot(buf, len, &out->multiboot_flags);
		return check_multiboot(out, why);
	}
	return 0;
}
