/* test_boot32.c: x86_load_kernel on the 32-bit kernels the boot ABIs allow:
 * ELF32 PVH kernels (entered like ELF64 ones), an i386 vmlinux and a bzImage
 * without a 64-bit entry (the 32-bit Linux boot protocol), an ELF32
 * multiboot kernel (its information structure), and the images refused by
 * name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "boot_fixture.h"
#include "images.h"

static int setup_2g(void **state)
{
	return bf_setup_mem(state, GiB(2));
}

/* A small initrd file: "INITRD" then zeros. */
static char *make_initrd(size_t size)
{
	uint8_t *b = calloc(1, size);
	char *path;

	assert_non_null(b);
	memcpy(b, "INITRD", 6);
	path = write_temp(b, size);
	free(b);
	assert_non_null(path);
	return path;
}

static void elf32_pvh(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.elf32 = true,
		.entry = 0xc1000000, /* virtual: the PVH note's entry wins */
		.nr_segs = 2,
		.seg = {{0x100000, 0x1000, 0x3000}, {0x200000, 0x100, 0x100}},
		.pvh = true,
		.pvh_entry = 0x100040,
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(8192);
	const uint8_t *si, *seg, *mod;
	char err[256];

	assert_int_equal(bf_load(f, k, rd, "pvh32"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_PVH);
	assert_int_equal(f->bi.entry, 0x100040);
	assert_int_equal(f->bi.boot_arg, X86_PVH_INFO_ADDR);
	assert_int_equal(f->bi.kernel_end, 0x200100);
	assert_string_equal(f->bi.format, "ELF32 (PVH)");
	seg = bf_gp(f, 0x100000, 0x3000);
	for (unsigned j = 0; j < 0x1000; j++)
		assert_int_equal(seg[j], elf_seg_byte(0, j));
	for (unsigned j = 0x1000; j < 0x3000; j++)
		assert_int_equal(seg[j], 0);
	assert_int_equal(*bf_gp(f, 0x200000 + 7, 1), elf_seg_byte(1, 7));
	si = bf_gp(f, X86_PVH_INFO_ADDR, HVM_SI_SIZE);
	assert_int_equal(le32_get(si + HVM_SI_MAGIC), HVM_START_MAGIC);
	assert_int_equal(le64_get(si + HVM_SI_CMDLINE_PADDR), X86_CMDLINE_ADDR);
	assert_string_equal((const char *)bf_gp(f, X86_CMDLINE_ADDR, 6), "pvh32");
	assert_int_equal(le32_get(si + HVM_SI_MEMMAP_ENTRIES), 3);
	assert_int_equal(le32_get(si + HVM_SI_NR_MODULES), 1);
	mod = bf_gp(f, le64_get(si + HVM_SI_MODLIST_PADDR), HVM_MODLIST_ENTRY_SIZE);
	assert_int_equal(le64_get(mod), MiB(128) - 8192);
	assert_memory_equal(bf_gp(f, MiB(128) - 8192, 6), "INITRD", 6);
	assert_int_equal(x86_check_kernel(k, err, sizeof(err)), 0);
	rm_temp(k);
	rm_temp(rd);
}

/* An i386 vmlinux: e_entry (physical startup_32) in 32-bit protected mode
 * with a zero page in ESI; the initrd stays below the i386 lowmem limit. */
static void elf32_linux(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.elf32 = true,
		.entry = 0x1000000,
		.nr_segs = 1,
		.seg = {{0x1000000, 0x2000, 0x4000}},
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(4096);
	const uint8_t *zp;

	assert_int_equal(bf_load(f, k, rd, "console=ttyS0"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_LINUX32);
	assert_int_equal(f->bi.entry, 0x1000000);
	assert_int_equal(f->bi.boot_arg, X86_ZERO_PAGE_ADDR);
	assert_string_equal(f->bi.format, "ELF32 (32-bit Linux)");
	zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
	assert_int_equal(le32_get(zp + BP_HEADER), BP_HDRS_MAGIC);
	assert_int_equal(le32_get(zp + BP_INITRD_ADDR_MAX), 0x37ffffff);
	assert_int_equal(le32_get(zp + BP_RAMDISK_IMAGE), 0x38000000 - 4096);
	assert_int_equal(le32_get(zp + BP_RAMDISK_SIZE), 4096);
	assert_memory_equal(bf_gp(f, 0x38000000 - 4096, 6), "INITRD", 6);
	assert_string_equal((const char *)bf_gp(f, le32_get(zp + BP_CMD_LINE_PTR), 14),
	                    "console=ttyS0");
	assert_int_equal(*bf_gp(f, 0x1000000 + 9, 1), elf_seg_byte(0, 9));
	rm_temp(k);
	rm_temp(rd);
}

/* bzImages without XLF_KERNEL_64, or of protocol 2.10/2.11: the 32-bit
 * protocol at code32_start (the load address), not load + 0x200. */
static void bzimage_entry32(void **state)
{
	struct fixture *f = *state;
	static const struct bz_opts cases[] = {
		{.no_xlf64 = true},
		{.version = 0x020b},
		{.version = 0x020a},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct bz_opts o = cases[i];
		size_t len = make_bzimage(f->img, IMG_CAP, &o);
		char *k = write_temp(f->img, len);
		const uint8_t *zp;

		assert_int_equal(bf_load(f, k, NULL, "quiet"), 0);
		assert_int_equal(f->bi.mode, X86_BOOT_LINUX32);
		assert_int_equal(f->bi.entry, 0x1000000); /* pref_address, no +0x200 */
		assert_int_equal(f->bi.boot_arg, X86_ZERO_PAGE_ADDR);
		assert_string_equal(f->bi.format, "bzImage (32-bit entry)");
		zp = bf_gp(f, X86_ZERO_PAGE_ADDR, BP_SIZE);
		assert_int_equal(le32_get(zp + BP_CODE32_START), 0x1000000);
		assert_int_equal(*bf_gp(f, 0x1000000 + 5, 1), bz_pm_byte(5));
		rm_temp(k);
	}
}

/* An ELF32 kernel with a multiboot header and no PVH note: EAX magic, EBX =
 * the multiboot information, filled as multiboot 0.6.96 section 3.3 says. */
static void elf32_multiboot(void **state)
{
	struct fixture *f = *state;
	struct elf_opts o = {
		.elf32 = true,
		.entry = 0x100020,
		.nr_segs = 1,
		.seg = {{0x100000, 0x100, 0x2000}},
		.multiboot = 1,
	};
	size_t len = make_elf(f->img, IMG_CAP, &o);
	char *k = write_temp(f->img, len), *rd = make_initrd(8192);
	const uint8_t *mbi, *mm, *mod;
	uint32_t hdr;

	assert_int_equal(bf_load(f, k, rd, "mb cmdline"), 0);
	assert_int_equal(f->bi.mode, X86_BOOT_MULTIBOOT);
	assert_int_equal(f->bi.entry, 0x100020);
	assert_int_equal(f->bi.boot_arg, X86_MULTIBOOT_INFO_ADDR);
	assert_string_equal(f->bi.format, "ELF32 (multiboot)");
	mbi = bf_gp(f, X86_MULTIBOOT_INFO_ADDR, 0x1000);
	/* mem, cmdline, mods, mmap, boot_loader_name */
	assert_int_equal(le32_get(mbi), (1u << 0) | (1u << 2) | (1u << 3) | (1u << 6) | (1u << 9));
	assert_int_equal(le32_get(mbi + 4), 639);
	assert_int_equal(le32_get(mbi + 8), (MiB(128) - MiB(1)) >> 10);
	assert_string_equal((const char *)bf_gp(f, le32_get(mbi + 16), 11), "mb cmdline");
	assert_int_equal(le32_get(mbi + 20), 1);
	mod = bf_gp(f, le32_get(mbi + 24), 16);
	assert_int_equal(le32_get(mod), MiB(128) - 8192);
	assert_int_equal(le32_get(mod + 4), MiB(128));
	assert_string_equal((const char *)bf_gp(f, le32_get(mod + 8), 7), "initrd");
	assert_memory_equal(bf_gp(f, le32_get(mod), 6), "INITRD", 6);
	assert_int_equal(le32_get(mbi + 44), 3 * 24);
	mm = bf_gp(f, le32_get(mbi + 48), 3 * 24);
	assert_int_equal(le32_get(mm), 20);
	assert_int_equal(le64_get(mm + 4), 0);
	assert_int_equal(le64_get(mm + 12), 0x9fc00);
	assert_int_equal(le32_get(mm + 20), 1);
	assert_int_equal(le64_get(mm + 24 + 4), 0x9fc00);
	assert_int_equal(le32_get(mm + 24 + 20), 2);
	assert_int_equal(le64_get(mm + 48 + 4), MiB(1));
	assert_int_equal(le64_get(mm + 48 + 12), MiB(127));
	assert_string_equal((const char *)bf_gp(f, le32_get(mbi + 64), 6), "cella");

	/* Without an initrd: no modules. */
	assert_int_equal(bf_load(f, k, NULL, NULL), 0);
	mbi = bf_gp(f, X86_MULTIBOOT_INFO_ADDR, 64);
	assert_int_equal(le32_get(mbi) & (1u << 3), 0);
	assert_int_equal(le32_get(mbi + 20), 0);
	rm_temp(k);

	/* A requirement the loader does not meet (a video mode): refused. */
	hdr = le32_get(f->img + 64 + 4);
	le32_put(f->img + hdr + 4, 7);
	le32_put(f->img + hdr + 8, (uint32_t)-(0x1BADB002u + 7));
	k = write_temp(f->img, len);
	assert_true(bf_load(f, k, NULL, "") < 0);
	assert_non_null(strstr(f->err, "requires a video mode (header flag 2)"));
	rm_temp(k);
	rm_temp(rd);
}

static void refusals(void **state)
{
	struct fixture *f = *state;
	static const struct {
		struct elf_opts o;
		const char *msg;
	} cases[] = {
		{{.elf32 = true, .entry = 0x100000, .nr_segs = 1, .seg = {{0x100000, 64, 64}},
		  .multiboot = 2},
		 ": ELF: a multiboot2 kernel without a PVH note"},
		{{.elf32 = true, .nr_segs = 1, .seg = {{0x100000, 64, 64}}, .pvh = true,
		  .pvh_entry = 0x100000, .pvh_descsz = 2},
		 ": ELF: PVH entry note has a bad size"},
		{{.elf32 = true, .nr_segs = 1, .seg = {{0x7000, 64, 64}}, .pvh = true,
		  .pvh_entry = 0x7000},
		 "overlaps the boot structures at 0x500-0x2ffff"},
		{{.elf32 = true, .nr_segs = 1, .seg = {{0x9000000, 64, 64}}, .pvh = true,
		  .pvh_entry = 0x9000000},
		 "outside guest RAM"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = make_elf(f->img, IMG_CAP, &cases[i].o);
		char *k = write_temp(f->img, len);
		char err[256];
		int ret = bf_load(f, k, NULL, "");

		if (ret >= 0 || !strstr(f->err, cases[i].msg))
			fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, ret, f->err,
			         cases[i].msg);
		/* The cheap pre-check refuses what the parser refuses. */
		if (i < 2) {
			assert_true(x86_check_kernel(k, err, sizeof(err)) < 0);
			assert_non_null(strstr(err, cases[i].msg));
		}
		rm_temp(k);
	}
	/* An old bzImage names the missing feature and the file's version. */
	{
		struct bz_opts o = {.version = 0x0208};
		size_t len = make_bzimage(f->img, IMG_CAP, &o);
		char *k = write_temp(f->img, len);

		assert_true(bf_load(f, k, NULL, "") < 0);
		assert_non_null(strstr(f->err, "boot protocol too old (need 2.10+, Linux 2.6.31 or "
		                                "later: earlier ones give no init_size) (file has "
		                                "boot protocol 2.08)"));
		rm_temp(k);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(elf32_pvh, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(elf32_linux, setup_2g, bf_teardown),
		cmocka_unit_test_setup_teardown(bzimage_entry32, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(elf32_multiboot, bf_setup_128m, bf_teardown),
		cmocka_unit_test_setup_teardown(refusals, bf_setup_128m, bf_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
