/* elf.c: parser for x86-64 ELF kernels (vmlinux, PVH guests) over untrusted
 * bytes: loadable segments by physical address and the Xen PVH entry note. */
#include <errno.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

#define EH_SIZE      64
#define EH_CLASS     4
#define EH_DATA      5
#define EH_IDVERSION 6
#define EH_TYPE      16
#define EH_MACHINE   18
#define EH_VERSION   20
#define EH_ENTRY     24
#define EH_PHOFF     32
#define EH_PHENTSIZE 54
#define EH_PHNUM     56

#define PH_SIZE   56
#define PH_TYPE   0
#define PH_OFFSET 8
#define PH_PADDR  24
#define PH_FILESZ 32
#define PH_MEMSZ  40
#define PH_ALIGN  48

#define ELFCLASS64  2
#define ELFDATA2LSB 1
#define ET_EXEC     2
#define EM_X86_64   62
#define PT_LOAD     1
#define PT_NOTE     4

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

int elf_parse(const uint8_t *buf, size_t len, struct elf_info *out, const char **why)
{
	uint64_t phoff;
	unsigned phnum;
	int ret;

	memset(out, 0, sizeof(*out));
	if (len < 4 || memcmp(buf,
	                      "\x7f"
	                      "ELF",
	                      4) != 0)
		return reject(why, "ELF: bad magic");
	if (len < EH_SIZE)
		return reject(why, "ELF: truncated header");
	if (buf[EH_CLASS] != ELFCLASS64)
		return reject(why, "ELF: not a 64-bit ELF file");
	if (buf[EH_DATA] != ELFDATA2LSB)
		return reject(why, "ELF: not little-endian");
	if (buf[EH_IDVERSION] != 1 || le32_get(buf + EH_VERSION) != 1)
		return reject(why, "ELF: unknown ELF version");
	if (le16_get(buf + EH_MACHINE) != EM_X86_64)
		return reject(why, "ELF: not x86-64");
	if (le16_get(buf + EH_TYPE) != ET_EXEC)
		return reject(why, "ELF: not an executable (ET_EXEC)");
	if (le16_get(buf + EH_PHENTSIZE) != PH_SIZE)
		return reject(why, "ELF: bad program header size");
	phnum = le16_get(buf + EH_PHNUM);
	if (phnum == 0)
		return reject(why, "ELF: no program headers");
	if (phnum > ELF_MAX_PHDRS)
		return reject(why, "ELF: too many program headers");
	phoff = le64_get(buf + EH_PHOFF);
	if (!range_in(phoff, (uint64_t)phnum * PH_SIZE, len))
		return reject(why, "ELF: program header table outside file");
	out->entry = le64_get(buf + EH_ENTRY);

	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *ph = buf + phoff + (uint64_t)i * PH_SIZE;
		uint32_t type = le32_get(ph + PH_TYPE);
		uint64_t offset = le64_get(ph + PH_OFFSET);
		uint64_t filesz = le64_get(ph + PH_FILESZ);
		uint64_t memsz = le64_get(ph + PH_MEMSZ);
		uint64_t paddr = le64_get(ph + PH_PADDR);
		struct elf_segment *s;

		if (type != PT_LOAD && type != PT_NOTE)
			continue;
		if (!range_in(offset, filesz, len))
			return reject(why, "ELF: segment file range outside file");
		if (type == PT_NOTE) {
			uint64_t align = le64_get(ph + PH_ALIGN) == 8 ? 8 : 4;

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
	return 0;
}
