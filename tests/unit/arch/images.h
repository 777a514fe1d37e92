/* images.h: synthetic bzImage and ELF kernels for the arch unit tests and
 * the fuzz seed generator. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bz_opts {
	uint16_t version;      /* boot protocol, default 0x020f */
	unsigned setup_sects;  /* default 4 */
	size_t pm_size;        /* protected-mode bytes, default 4096 */
	uint32_t init_size;    /* default 8 MiB */
	uint64_t pref_address; /* default 16 MiB */
	bool not_relocatable;
	uint32_t kernel_alignment; /* default 2 MiB */
	uint32_t initrd_addr_max;  /* default 0x37ffffff */
	uint32_t cmdline_size;     /* default 2047 */
	bool no_xlf64;
	uint8_t hdr_len; /* byte at 0x201, default 0x6a */
};
/* Fill defaults for every zero field. */
void bz_opts_default(struct bz_opts *o);
/* Build a bzImage into buf (cap bytes); returns its length or 0 if too big.
 * The protected-mode part is filled with bytes (i * 7 + 3). */
size_t make_bzimage(uint8_t *buf, size_t cap, const struct bz_opts *o);

#define IMG_MAX_SEGS 20
struct elf_seg_spec {
	uint64_t paddr, filesz, memsz;
};
struct elf_opts {
	uint64_t entry;
	unsigned nr_segs;
	struct elf_seg_spec seg[IMG_MAX_SEGS];
	bool pvh;
	uint64_t pvh_entry;
	unsigned pvh_descsz;   /* 4 (default) or 8 */
	bool extra_note_first; /* put an unrelated "GNU" note before the PVH one */
	bool elf32;            /* ELFCLASS32 EM_386 instead of ELFCLASS64 EM_X86_64 */
	unsigned multiboot;    /* 1 or 2: a multiboot(2) header opens segment 0 */
};
/* Build an ELF64 x86-64 (or, with elf32, ELF32 i386) ET_EXEC into buf. Segment i's file bytes are
 * (j + i * 13) & 0xff. Returns the length or 0 if too big. Offsets of the
 * parts are fixed: ehdr at 0, phdrs at 64 (PT_NOTE first when pvh). */
size_t make_elf(uint8_t *buf, size_t cap, const struct elf_opts *o);

/* Byte j of ELF segment i, as make_elf writes it. */
static inline uint8_t elf_seg_byte(unsigned i, uint64_t j)
{
	return (uint8_t)(j + i * 13);
}
static inline uint8_t bz_pm_byte(uint64_t j)
{
	return (uint8_t)(j * 7 + 3);
}

/* Write len bytes to a new file in a private temporary directory; returns a
 * malloc'd path (free with rm_temp). */
char *write_temp(const void *buf, size_t len);
void rm_temp(char *path);
