/* fuzz_elf.c: elf_parse over arbitrary bytes (program headers and notes
 * included), its invariants, and x86_load_kernel on the same bytes. */
#include "fuzz_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_info elf;
	const char *why = NULL;

	if (elf_parse(data, size, &elf, &why) == 0) {
		if (elf.nr_segments == 0 || elf.nr_segments > ELF_MAX_SEGMENTS)
			abort();
		for (unsigned i = 0; i < elf.nr_segments; i++) {
			const struct elf_segment *s = &elf.seg[i];

			if (s->offset > size || s->filesz > size - s->offset ||
			    s->memsz < s->filesz)
				abort();
			if (s->paddr + s->memsz < s->paddr)
				abort();
			for (unsigned j = 0; j < i; j++)
				if (s->paddr < elf.seg[j].paddr + elf.seg[j].memsz &&
				    elf.seg[j].paddr < s->paddr + s->memsz)
					abort();
		}
		if (elf.has_pvh && elf.pvh_entry >= (1ULL << 32))
			abort();
		if (elf.is32 && (elf.entry >= (1ULL << 32) ||
		                 elf.seg[elf.nr_segments - 1].paddr >= (1ULL << 32)))
			abort();
		/* Only multiboot version 1, ELF32, with the requirements met. */
		if (elf.multiboot && (elf.multiboot != 1 || !elf.is32 ||
		                      (elf.multiboot_flags & 0x1fffcu)))
			abort();
	} else if (!why || !why[0]) {
		abort();
	}
	fuzz_load(data, size);
	return 0;
}
