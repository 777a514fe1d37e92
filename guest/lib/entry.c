/* entry.c: the first C code, in ring 3: console, boot info, command line,
 * then the program's main(). */
#include "libtest.h"

int cmdline_init(const char *src, char ***argv);
void libtest_start(void);

static const struct hvm_start_info *start_info;
static bool ram_found;
static uint64_t ram_base, ram_size;

/* Largest RAM range above the image, read once at start: the boot area
 * the VMM put the map in may be reused later (smp's trampoline). */
static void ram_scan(void)
{
	const struct hvm_memmap_entry *map;
	uint64_t lo = ALIGN_UP((uint64_t)(uintptr_t)_end, 4096);

	if (start_info->version < 1 || !start_info->memmap_paddr)
		return;
	map = (const struct hvm_memmap_entry *)(uintptr_t)start_info->memmap_paddr;
	for (uint32_t i = 0; i < start_info->memmap_entries; i++) {
		if (map[i].type != 1)
			continue;
		uint64_t b = map[i].addr, e = map[i].addr + map[i].size;
		if (e <= lo)
			continue;
		if (b < lo)
			b = lo;
		if (e > 0x100000000ull)	/* only the identity-mapped 4 GiB */
			e = 0x100000000ull;
		if (e > b && e - b > ram_size) {
			ram_base = b;
			ram_size = e - b;
			ram_found = true;
		}
	}
}

void libtest_start(void)
{
	char **argv;
	console_init();
	start_info = (const struct hvm_start_info *)(uintptr_t)boot_start_info;
	if (!start_info || start_info->magic != HVM_START_MAGIC)
		fail("no PVH start info (EBX=%p)", (void *)start_info);
	int argc = cmdline_init((const char *)(uintptr_t)start_info->cmdline_paddr, &argv);
	ram_scan();
	exit(main(argc, argv));
}

bool ram_free_range(uint64_t *base, uint64_t *size)
{
	*base = ram_base;
	*size = ram_size;
	return ram_found;
}
