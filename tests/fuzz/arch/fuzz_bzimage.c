/* fuzz_bzimage.c: bzimage_parse over arbitrary bytes, its invariants, and
 * x86_load_kernel on the same bytes. */
#include "fuzz_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bzimage_info bz;
	const char *why = NULL;

	if (bzimage_parse(data, size, &bz, &why) == 0) {
		if (bz.pm_offset > size || bz.pm_size > size - bz.pm_offset || bz.pm_size == 0)
			abort();
		if (bz.setup_size != bz.pm_offset || bz.protocol < 0x020a || bz.init_size == 0)
			abort();
		if (bz.entry64 && bz.protocol < 0x020c)
			abort();
	} else if (!why || !why[0]) {
		abort();
	}
	fuzz_load(data, size);
	return 0;
}
