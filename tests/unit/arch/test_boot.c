/* test_boot.c: x86_load_kernel on synthetic kernels in temporary files:
 * what lands in guest memory, the zero page and PVH start info, initrd
 * placement, and every refusal with its message. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "boot_fixture.h"
#include "images.h"

static int setup_5g(void **state)
{
	return bf_setup_mem(state, GiB(5));
}

/* An initrd file of `size` bytes: a pattern at the start and end, sparse between. */
static char *make_initrd(uint64_t size)
{
	char *path = write_temp("", 0);
	int fd;

	assert_non_null(path);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, "INITRD", 6, 0), 6);
	if (size >= 12)
		assert_int_equal(pwrite(fd, "ENDEND", 6, (off_t)size - 6), 6);
	close(fd);
	return path;
}

static void expect_load_fail(struct fixture *f, const char *kernel, const char *initrd,
                             const char *cmdline, const char *msg)
{
	int ret = bf_load(f, kernel, initrd, cmdline);

	if (ret >= 0)
		fail_msg("loaded; wanted error \"%s\"", msg);
	if (!strstr(f->err, msg))
		fail_msg("got \"%s\", want \"%s\"", f->err, msg);
}

static void check_e820(const uint8_t *zp, uint64_t low, uint64_t high)
{
	unsigned n = zp[BP_E820_ENTRIES];
	const uint8_t *e = zp + BP_E820_TABLE;

	assert_int_equal(n, high ? 4 : 3);
	assert_int_equal(le64_get(e), 0);
	assert_int_equal(le64_get(e + 8), 0x9fc00);
	assert_int_equal(le32_get(e + 16), E820_RAM);
	assert_int_equal(le64_get(e + 20), 0x9fc00);
	assert_int_equal(le64_get(e + 28), 0x100000 - 0x9fc00);
	assert_int_equal(le32_get(e + 36), E820_RESERVED);
	assert_int_equal(le64_get(e + 40), 0x100000);
	assert_int_equal(le64_get(e + 48), low - 0x100000);
	assert_int_equal(le32_get(e + 56), E820_RAM);
	if (high) {
		assert_int_equal(le64_get(e + 60), MEM_4G);
		assert_int_equal(le64_get(e + 68), high);
		assert_int_equal(le32_get(e + 76), E820_RAM);
	}
}

static void check_initrd(struct fixture *f, uint64_t addr, uint64_t size)
{
	assert_int_equal(addr % 4096, 0);
	assert_memory_equal(bf_gp(f, addr, 6), "INITRD", 6);
	assert_memory_equal(bf_gp(f, addr + size - 6, 6), "ENDEND", 6);
}

static void bzimage_128m(void **state)
{
	struct fixture *f = *state;
	struct bz_opts o = {0};
	size_t len = make_bzimage(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(MiB(1) + 5);
	const uint8_t *zp, *pm;
	uint64_t rd_addr = ALIGN_DOWN(MiB(128) - (MiB(1) + 5), 4096ULL);

	assert_int_equal(bf_load(f, k, rd, "console=ttyS0 quiet"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_LINUX64);
	assert_int_equal(f->bi.entry, 0x1000000 + 0x200); /* pref_address: relocatable, fits */
	assert_int_equal(f->bi.boot_arg, X86_ZERO_PAGE_ADDR);
	assert_int_equal(f->bi.kernel_end, 0x1000000 + MiB(8));
	assert_string_equal(f->bi.format, "bzImage");

	pm = bf_gp(f, 0x1000000, 4096);
	for (unsigned j = 0; j < 4096; j++)
		assert_int_equal(pm[j], bz_pm_byte(j));
	assert_int_equal(*bf_gp(f, 0x1000000 + 4096, 1), 0);

	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	assert_int_equal(le16_get(zp + BP_BOOT_FLAG), 0xAA55);
	assert_int_equal(le32_get(zp + BP_HEADER), BP_HDRS_MAGIC);
	assert_int_equal(le16_get(zp + BP_VERSION), 0x020f);
	assert_int_equal(le32_get(zp + BP_INIT_SIZE), MiB(8)); /* header copied */
	assert_int_equal(le16_get(zp + BP_VID_MODE), 0xffff);
	assert_int_equal(zp[BP_TYPE_OF_LOADER], 0xff);
	assert_int_equal(zp[BP_LOADFLAGS], BP_LOADED_HIGH | BP_CAN_USE_HEAP);
	assert_int_equal(le16_get(zp + BP_HEAP_END_PTR), 0xe000 - 0x200);
	assert_int_equal(le32_get(zp + BP_CMD_LINE_PTR), X86_CMDLINE_ADDR);
	assert_int_equal(le64_get(zp + BP_ACPI_RSDP_ADDR), 0);
	assert_int_equal(x86_boot_set_rsdp(&f->mem, &f->bi, 0xE0000), 0); /* acpi_rsdp_addr */
	assert_int_equal(le64_get(zp + BP_ACPI_RSDP_ADDR), 0xE0000);
	assert_int_equal(le32_get(zp + BP_HEADER), BP_HDRS_MAGIC);
	assert_string_equal((const char *)bf_gp(f, X86_CMDLINE_ADDR, 20), "console=ttyS0 quiet");
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), rd_addr);
	assert_int_equal(le32_get(zp + BP_RAMDISK_SIZE), MiB(1) + 5);
	check_initrd(f, rd_addr, MiB(1) + 5);
	check_e820(zp, MiB(128), 0);
	/* Nothing beyond the header was copied from the setup code. */
	assert_int_equal(zp[0x300], 0);

	/* No initrd, no command line: empty string, ramdisk fields 0. */
	memset(guest_mem_ptr(&f->mem, X86_ZERO_PAGE_ADDR, BP_SIZE), 0x5a, BP_SIZE);
	assert_int_equal(bf_load(f, k, NULL, NULL), 0);
	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), 0);
	assert_int_equal(le32_get(zp + BP_RAMDISK_SIZE), 0);
	assert_int_equal(*bf_gp(f, X86_CMDLINE_ADDR, 1), 0);
	rm_temp(k);
	rm_temp(rd);
}

static void bzimage_5g(void **state)
{
	struct fixture *f = *state;
	struct bz_opts o = {0};
	size_t len = make_bzimage(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(MiB(3));
	const uint8_t *zp;

	assert_int_equal(f->mem.low_size, GiB(3));
	assert_int_equal(bf_load(f, k, rd, "x"), 0);
	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	check_e820(zp, GiB(3), GiB(2));
	/* Below initrd_addr_max (0x37ffffff), not the top of low RAM. */
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), 0x38000000 - MiB(3));
	check_initrd(f, 0x38000000 - MiB(3), MiB(3));
	rm_temp(rd);

	/* Too big for initrd_addr_max even though RAM is plentiful. */
	rd = make_initrd(MiB(900));
	expect_load_fail(f, k, rd, "", "does not fit below 0x37ffffff");
	assert_non_null(strstr(f->err, "900 MiB"));
	assert_non_null(strstr(f->err, rd));
	rm_temp(rd);
	rm_temp(k);
}

static void bzimage_placement(void **state)
{
	struct fixture *f = *state;
	struct bz_opts o = {.not_relocatable = true};
	size_t len = make_bzimage(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd;

	/* Not relocatable: loaded at 1 MiB; it still runs at pref_address. */
	assert_int_equal(bf_load(f, k, NULL, ""), 0);
	assert_int_equal(f->bi.entry, 0x100200);
	assert_int_equal(f->bi.kernel_end, 0x1000000 + MiB(8));
	assert_int_equal(*bf_gp(f, 0x100000, 1), bz_pm_byte(0));
	assert_int_equal(le32_get(bf_gp(f, X86_ZERO_PAGE_ADDR + BP_CODE32_START, 4)), 0x100000);

	/* Kernel + initrd that do not fit in 128 MiB. */
	rd = make_initrd(MiB(110));
	expect_load_fail(f, k, rd, "", "does not fit below 0x7ffffff above the kernel");
	rm_temp(rd);
	rm_temp(k);

	/* A kernel whose init_size exceeds RAM. */
	o = (struct bz_opts){.init_size = MiB(200)};
	len = make_bzimage(f->img, IMG_CAP, &o);
	k = write_temp(f->img, len);
	expect_load_fail(f, k, NULL, "", "kernel needs RAM up to 0xd800000");
	rm_temp(k);

	/* Command line longer than the kernel's cmdline_size. */
	o = (struct bz_opts){.cmdline_size = 10};
	len = make_bzimage(f->img, IMG_CAP, &o);
	k = write_temp(f->img, len);
	assert_int_equal(bf_load(f, k, NULL, "0123456789"), 0);
	expect_load_fail(f, k, NULL, "0123456789a",
	                 "command line is 11 bytes; this kernel "
	                 "accepts at most 10");
	rm_temp(k);
}

static void load_errors(void **state)
{
	struct fixture *f = *state;
	struct bz_opts o = {0};
	size_t len = make_bzimage(f->img, IMG_CAP, &o);
	char *k, *big;

	expect_load_fail(f, "/nonexistent/vmlinuz", NULL, "",
	                 "/nonexistent/vmlinuz: No such file or directory");
	expect_load_fail(f, "/tmp", NULL, "", "/tmp: not a regular file");

	k = write_temp(f->img, len);
	expect_load_fail(f, k, "/nonexistent/initrd", "",
	                 "initrd /nonexistent/initrd: No such file or directory");
	big = malloc(X86_CMDLINE_MAX + 1);
	memset(big, 'a', X86_CMDLINE_MAX);
	big[X86_CMDLINE_MAX] = 0;
	expect_load_fail(f, k, NULL, big, "command line is 65536 bytes; at most 65535 fit");
	free(big);
	rm_temp(k);

	k = write_temp("", 0);
	expect_load_fail(f, k, NULL, "", ": empty file");
	rm_temp(k);

	k = write_temp("MZ this is not a kernel at all", 30);
	expect_load_fail(f, k, NULL, "", ": not a kernel image: no bzImage (HdrS) or ELF magic");
	assert_int_equal(strncmp(f->err, k, strlen(k)), 0);
	rm_temp(k);

	/* Looks like a bzImage but stops inside the setup header. */
	k = write_temp(f->img, 0x240);
	expect_load_fail(f, k, NULL, "", ": truncated: setup header extends past end of file");
	rm_temp(k);

	o.version = 0x0205;
	len = make_bzimage(f->img, IMG_CAP, &o);
	k = write_temp(f->img, len);
	expect_load_fail(f, k, NULL, "",
	                 "earlier ones give no init_size) (file has boot protocol 2.05)");
	rm_temp(k);

	k = write_temp("\x7f"
	               "ELF\x01",
	               5);
	expect_load_fail(f, k, NULL, "", ": ELF: truncated header");
	rm_temp(k);
}

static void elf_pvh(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.nr_segs = 2,
		.seg = {{0x100000, 0x1000, 0x3000}, {0x8000, 0x100, 0x200}},
		.pvh = true,
		.pvh_entry = 0x100040,
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(4096 * 3);
	const uint8_t *si, *mm, *mod, *seg;
	uint64_t rd_addr = MiB(128) - 4096 * 3;

	memset(guest_mem_ptr(&f->mem, 0x100000, 0x3000), 0xaa, 0x3000);
	assert_int_equal(bf_load(f, k, rd, "pvh cmdline"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_PVH);
	assert_int_equal(f->bi.entry, 0x100040);
	assert_int_equal(f->bi.boot_arg, X86_PVH_INFO_ADDR);
	assert_int_equal(f->bi.kernel_end, 0x103000);
	assert_string_equal(f->bi.format, "ELF (PVH)");

	seg = bf_gp(f, 0x100000, 0x3000);
	for (unsigned j = 0; j < 0x1000; j++)
		assert_int_equal(seg[j], elf_seg_byte(0, j));
	for (unsigned j = 0x1000; j < 0x3000; j++)
		assert_int_equal(seg[j], 0); /* bss cleared */
	assert_int_equal(*bf_gp(f, 0x8000 + 0x42, 1), elf_seg_byte(1, 0x42));

	si = bf_gp(f, X86_PVH_INFO_ADDR, HVM_SI_SIZE);
	assert_int_equal(le32_get(si + HVM_SI_MAGIC), 0x336ec578);
	assert_int_equal(le32_get(si + HVM_SI_VERSION), 1);
	assert_int_equal(le64_get(si + HVM_SI_CMDLINE_PADDR), X86_CMDLINE_ADDR);
	assert_string_equal((const char *)bf_gp(f, X86_CMDLINE_ADDR, 12), "pvh cmdline");
	assert_int_equal(le64_get(si + HVM_SI_RSDP_PADDR), 0);
	assert_int_equal(le64_get(si + HVM_SI_MEMMAP_PADDR), X86_PVH_INFO_ADDR + HVM_SI_SIZE);
	assert_int_equal(le32_get(si + HVM_SI_MEMMAP_ENTRIES), 3);
	mm = bf_gp(f, le64_get(si + HVM_SI_MEMMAP_PADDR), 3 * HVM_MEMMAP_ENTRY_SIZE);
	assert_int_equal(le64_get(mm), 0);
	assert_int_equal(le64_get(mm + 8), 0x9fc00);
	assert_int_equal(le32_get(mm + 16), 1);
	assert_int_equal(le64_get(mm + 24), 0x9fc00);
	assert_int_equal(le32_get(mm + 40), 2);
	assert_int_equal(le64_get(mm + 48), 0x100000);
	assert_int_equal(le64_get(mm + 56), MiB(127));
	assert_int_equal(le32_get(mm + 64), 1);
	assert_int_equal(le32_get(si + HVM_SI_NR_MODULES), 1);
	mod = bf_gp(f, le64_get(si + HVM_SI_MODLIST_PADDR), HVM_MODLIST_ENTRY_SIZE);
	assert_true(le64_get(si + HVM_SI_MODLIST_PADDR) >=
	            X86_PVH_INFO_ADDR + HVM_SI_SIZE + 3 * HVM_MEMMAP_ENTRY_SIZE);
	assert_int_equal(le64_get(mod), rd_addr);
	assert_int_equal(le64_get(mod + 8), 4096 * 3);
	assert_int_equal(le64_get(mod + 16), 0);
	check_initrd(f, rd_addr, 4096 * 3);

	/* Without initrd: no modules. */
	assert_int_equal(bf_load(f, k, NULL, NULL), 0);
	si = bf_gp(f, X86_PVH_INFO_ADDR, HVM_SI_SIZE);
	assert_int_equal(le32_get(si + HVM_SI_NR_MODULES), 0);
	assert_int_equal(le64_get(si + HVM_SI_MODLIST_PADDR), 0);

	/* With ACPI tables the RSDP's address goes in rsdp_paddr. */
	assert_int_equal(x86_boot_set_rsdp(&f->mem, &f->bi, 0xE0000), 0);
	assert_int_equal(le64_get(si + HVM_SI_RSDP_PADDR), 0xE0000);
	assert_int_equal(le32_get(si + HVM_SI_MEMMAP_ENTRIES), 3); /* nothing else touched */
	rm_temp(k);
	rm_temp(rd);
}

static void elf_pvh_5g(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.nr_segs = 1,
		.seg = {{0x100000, 0x100, 0x100}},
		.pvh = true,
		.pvh_entry = 0x100000,
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(MiB(2));
	const uint8_t *si, *mm;

	assert_int_equal(bf_load(f, k, rd, ""), 0);
	si = bf_gp(f, X86_PVH_INFO_ADDR, HVM_SI_SIZE);
	assert_int_equal(le32_get(si + HVM_SI_MEMMAP_ENTRIES), 4);
	mm = bf_gp(f, le64_get(si + HVM_SI_MEMMAP_PADDR), 4 * HVM_MEMMAP_ENTRY_SIZE);
	assert_int_equal(le64_get(mm + 48 + 8), GiB(3) - MiB(1));
	assert_int_equal(le64_get(mm + 72), MEM_4G);
	assert_int_equal(le64_get(mm + 80), GiB(2));
	assert_int_equal(le32_get(mm + 88), 1);
	/* PVH: the initrd goes to the top of low RAM. */
	check_initrd(f, GiB(3) - MiB(2), MiB(2));
	rm_temp(k);
	rm_temp(rd);

	/* A segment in high RAM is fine for PVH when the entry is low... */
	o = (struct elf_opts){.nr_segs = 2,
	                      .seg = {{0x100000, 0x100, 0x100}, {MEM_4G + MiB(1), 16, 16}},
	                      .pvh = true,
	                      .pvh_entry = 0x100000};
	len = make_elf(f->img, IMG_CAP, &o);
	k = write_temp(f->img, len);
	assert_int_equal(bf_load(f, k, NULL, ""), 0);
	assert_int_equal(*bf_gp(f, MEM_4G + MiB(1) + 3, 1), elf_seg_byte(1, 3));
	rm_temp(k);
	/* ...but a 64-bit entry point up there is not identity-mapped. */
	o.pvh = false;
	o.entry = MEM_4G + MiB(1);
	len = make_elf(f->img, IMG_CAP, &o);
	k = write_temp(f->img, len);
	expect_load_fail(f, k, NULL, "", "is above 4 GiB (not identity-mapped)");
	rm_temp(k);
}

static void elf_linux64(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.entry = 0x1000000,
		.nr_segs = 1,
		.seg = {{0x1000000, 0x2000, 0x2000}},
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(MiB(1));
	const uint8_t *zp;

	assert_int_equal(bf_load(f, k, rd, "root=/dev/vda"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_LINUX64);
	assert_int_equal(f->bi.entry, 0x1000000);
	assert_int_equal(f->bi.boot_arg, X86_ZERO_PAGE_ADDR);
	assert_string_equal(f->bi.format, "ELF (64-bit)");
	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	assert_int_equal(le16_get(zp + BP_BOOT_FLAG), 0xAA55);
	assert_int_equal(le32_get(zp + BP_HEADER), BP_HDRS_MAGIC);
	assert_int_equal(le16_get(zp + BP_VERSION), 0x020f);
	assert_int_equal(le32_get(zp + BP_KERNEL_ALIGNMENT), 0x1000000);
	assert_int_equal(zp[BP_TYPE_OF_LOADER], 0xff);
	assert_int_equal(le32_get(zp + BP_CMD_LINE_PTR), X86_CMDLINE_ADDR);
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), MiB(127));
	assert_int_equal(le32_get(zp + BP_RAMDISK_SIZE), MiB(1));
	check_initrd(f, MiB(127), MiB(1));
	check_e820(zp, MiB(128), 0);

	/* Kernel and initrd that do not fit together. */
	o.seg[0] = (struct elf_seg_spec){0x1000000, 0x2000, MiB(100)};
	len = make_elf(f->img, IMG_CAP, &o);
	rm_temp(k);
	k = write_temp(f->img, len);
	rm_temp(rd);
	rd = make_initrd(MiB(20));
	expect_load_fail(f, k, rd, "",
	                 "20 MiB does not fit below 0x7ffffff above the kernel "
	                 "(which ends at 0x7400000)");
	rm_temp(rd);
	rm_temp(k);
}

static void elf_placement_errors(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint64_t paddr, memsz;
		const char *msg;
	} cases[] = {
		{0x8000000, 0x1000, "segment 0 [0x8000000-0x8001000) outside guest RAM"},
		{0x7ffff00, 0x1000, "outside guest RAM"},
		{0xd0000000, 0x1000, "outside guest RAM"},
		{0x7000, 0x100, "overlaps the boot structures at 0x500-0x2ffff"},
		{0x400, 0x200, "overlaps the boot structures"},
		{0x2ff00, 0x1000, "overlaps the boot structures"},
		{0x8800, 0x1000, "overlaps the boot structures"}, /* leaves the trampoline page */
		{0x9f000, 0x1000, "overlaps the reserved area 0x9fc00-0xfffff"},
		{0xff000, 0x2000, "overlaps the reserved area"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct elf_opts o = {
			.nr_segs = 1,
			.seg = {{cases[i].paddr, 16, cases[i].memsz}},
			.pvh = true,
			.pvh_entry = cases[i].paddr,
		};
		size_t len = make_elf(f->img, IMG_CAP, &o);
		char *k = write_temp(f->img, len);

		expect_load_fail(f, k, NULL, "", cases[i].msg);
		rm_temp(k);
	}
}

/* A real distribution kernel, when one is around (never committed). */
static void bzimage_real(void **state)
{
	struct fixture *f = *state;
	const char *k = getenv("CELLA_TEST_BZIMAGE");
	char *rd = make_initrd(MiB(1));
	const uint8_t *zp;

	if (!k)
		k = "/boot/vmlinuz";
	if (access(k, R_OK) != 0) {
		fprintf(stderr,
		        "\n*** SKIPPED: no real bzImage at %s; set CELLA_TEST_BZIMAGE to a "
		        "distribution vmlinuz to load one ***\n\n",
		        k);
		rm_temp(rd);
		skip();
	}
	if (bf_load(f, k, rd, "console=ttyS0"))
		fail_msg("%s", f->err);
	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	assert_int_equal(f->bi.mode, X86_BOOT_LINUX64);
	assert_int_equal(f->bi.entry, le64_get(zp + BP_PREF_ADDRESS) + 0x200);
	assert_int_equal(f->bi.kernel_end,
	                 le64_get(zp + BP_PREF_ADDRESS) + le32_get(zp + BP_INIT_SIZE));
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), MiB(127));
	check_initrd(f, MiB(127), MiB(1));
	check_e820(zp, MiB(128), 0);
	print_message("%s: loaded at 0x%llx, ends 0x%llx\n", k,
	              (unsigned long long)f->bi.entry - 0x200,
	              (unsigned long long)f->bi.kernel_end);
	rm_temp(rd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(bzimage_128m, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(bzimage_5g, setup_5g, bf_teardown),
		cmocka_unit_test_setup_teardown(bzimage_placement, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(load_errors, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(bzimage_real, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(elf_pvh, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(elf_pvh_5g, setup_5g, bf_teardown),
		cmocka_unit_test_setup_teardown(elf_linux64, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(elf_placement_errors, bf_setup_128m, bf_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
