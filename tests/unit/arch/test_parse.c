/* test_parse.c: bzimage_parse and elf_parse on synthetic images: fields of
 * valid images and every rejection with its message. */
#include <errno.h>
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
#include "images.h"

#define IMG_CAP (256 * 1024)

static uint8_t *img(void)
{
	return test_malloc(IMG_CAP);
}

/* Parse and expect a rejection whose message contains `msg`. */
static void expect_bz_reject(const uint8_t *buf, size_t len, const char *msg)
{
	struct bzimage_info bz;
	const char *why = NULL;

	if (bzimage_parse(buf, len, &bz, &why) != -EINVAL)
		fail_msg("accepted; wanted \"%s\"", msg);
	if (!strstr(why, msg))
		fail_msg("got \"%s\", want \"%s\"", why, msg);
}

static void expect_elf_reject(const uint8_t *buf, size_t len, const char *msg)
{
	struct elf_info elf;
	const char *why = NULL;

	if (elf_parse(buf, len, &elf, &why) != -EINVAL)
		fail_msg("accepted; wanted \"%s\"", msg);
	if (!strstr(why, msg))
		fail_msg("got \"%s\", want \"%s\"", why, msg);
}

/* Kernels without a 64-bit entry (protocol 2.10/2.11, or XLF_KERNEL_64
 * clear as in an i386 kernel) are parsed for the 32-bit boot protocol. */
static void bz_entry32(void **state)
{
	uint8_t *b = img();
	struct bz_opts o = {.version = 0x020b};
	struct bzimage_info bz;
	const char *why = NULL;
	size_t len = make_bzimage(b, IMG_CAP, &o);

	assert_int_equal(bzimage_parse(b, len, &bz, &why), 0);
	assert_false(bz.entry64);
	o.version = 0x020a;
	len = make_bzimage(b, IMG_CAP, &o);
	assert_int_equal(bzimage_parse(b, len, &bz, &why), 0);
	assert_false(bz.entry64);
	o = (struct bz_opts){.no_xlf64 = true};
	len = make_bzimage(b, IMG_CAP, &o);
	assert_int_equal(bzimage_parse(b, len, &bz, &why), 0);
	assert_false(bz.entry64);
	o.no_xlf64 = false;
	len = make_bzimage(b, IMG_CAP, &o);
	assert_int_equal(bzimage_parse(b, len, &bz, &why), 0);
	assert_true(bz.entry64);
	test_free(b);
}

static void bz_valid(void **state)
{
	uint8_t *b = img();
	struct bz_opts o = {0};
	struct bzimage_info bz;
	const char *why = NULL;
	size_t len = make_bzimage(b, IMG_CAP, &o);

	assert_int_equal(bzimage_parse(b, len, &bz, &why), 0);
	assert_int_equal(bz.protocol, 0x020f);
	assert_int_equal(bz.setup_size, 5 * 512);
	assert_int_equal(bz.pm_offset, 5 * 512);
	assert_int_equal(bz.pm_size, 4096);
	assert_int_equal(bz.pref_address, 16 << 20);
	assert_int_equal(bz.init_size, 8 << 20);
	assert_int_equal(bz.initrd_addr_max, 0x37ffffff);
	assert_int_equal(bz.cmdline_size, 2047);
	assert_true(bz.relocatable);
	assert_int_equal(bz.kernel_alignment, 2 << 20);

	/* setup_sects 0 means 4; bytes after syssize (a signature) are not kernel. */
	o.setup_sects = 4;
	len = make_bzimage(b, IMG_CAP, &o);
	b[BP_SETUP_SECTS] = 0;
	memset(b + len, 0x55, 100);
	assert_int_equal(bzimage_parse(b, len + 100, &bz, &why), 0);
	assert_int_equal(bz.setup_size, 5 * 512);
	assert_int_equal(bz.pm_size, 4096);
	test_free(b);
}

static void bz_reject(void **state)
{
	uint8_t *b = img();
	struct bz_opts o = {0};
	size_t len = make_bzimage(b, IMG_CAP, &o);

	expect_bz_reject(b, 0x100, "truncated: setup header extends past end of file");
	expect_bz_reject(b, 0x250, "truncated: setup header extends past end of file");
	expect_bz_reject(b, BP_HEADER + 4, "truncated");

	b[BP_HEADER] = 'X';
	expect_bz_reject(b, len, "not a bzImage: missing HdrS magic");
	b[BP_HEADER] = 'H';
	b[BP_BOOT_FLAG] = 0;
	expect_bz_reject(b, len, "not a bzImage: missing 0xAA55 boot flag");
	b[BP_BOOT_FLAG] = 0x55;

	o.version = 0x0205;
	len = make_bzimage(b, IMG_CAP, &o);
	expect_bz_reject(b, len, "boot protocol too old (need 2.10+");
	o.version = 0x0209; /* 2.06-2.09 have no init_size */
	len = make_bzimage(b, IMG_CAP, &o);
	expect_bz_reject(b, len, "earlier ones give no init_size");
	o.version = 0;

	o.hdr_len = 0x40; /* header ends before init_size */
	len = make_bzimage(b, IMG_CAP, &o);
	expect_bz_reject(b, len, "setup header too short for its protocol version");
	o.hdr_len = 0;

	len = make_bzimage(b, IMG_CAP, &o);
	b[BP_LOADFLAGS] = 0;
	expect_bz_reject(b, len, "LOADED_HIGH clear");

	len = make_bzimage(b, IMG_CAP, &o);
	b[BP_SETUP_SECTS] = 200; /* setup past the end of the file */
	expect_bz_reject(b, len, "truncated: no protected-mode kernel after the setup code");
	b[BP_SETUP_SECTS] = 4;
	expect_bz_reject(b, len - 16, "truncated: protected-mode kernel shorter than syssize");

	le32_put(b + BP_INIT_SIZE, 0);
	expect_bz_reject(b, len, "init_size is 0");
	le32_put(b + BP_INIT_SIZE, 1 << 20);
	le32_put(b + BP_KERNEL_ALIGNMENT, 0x300000);
	expect_bz_reject(b, len, "kernel_alignment not a power of two");
	le32_put(b + BP_KERNEL_ALIGNMENT, 0x200000);
	le64_put(b + BP_PREF_ADDRESS, 0x1000010);
	expect_bz_reject(b, len, "pref_address not page aligned");
	le64_put(b + BP_PREF_ADDRESS, 0xffffffff00000000ULL);
	expect_bz_reject(b, len, "pref_address beyond 3 GiB");
	le64_put(b + BP_PREF_ADDRESS, 0x1000000);
	le32_put(b + BP_INITRD_ADDR_MAX, 0x1000);
	expect_bz_reject(b, len, "initrd_addr_max below 1 MiB");
	test_free(b);
}

/* A real distribution kernel, when one is around (never committed). */
static void bz_real_kernel(void **state)
{
	const char *path = getenv("CELLA_TEST_BZIMAGE");
	struct bzimage_info bz;
	const char *why = NULL;
	uint8_t *buf;
	long n;
	FILE *f;

	if (!path)
		path = "/boot/vmlinuz";
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr,
		        "\n*** SKIPPED: no real bzImage at %s; set CELLA_TEST_BZIMAGE to "
		        "a distribution vmlinuz (e.g. from apt-get download "
		        "linux-image-cloud-amd64) to check bzimage_parse against it ***\n\n",
		        path);
		skip();
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	if (bzimage_parse(buf, (size_t)n, &bz, &why))
		fail_msg("%s: %s", path, why);
	assert_true(bz.protocol >= 0x020c);
	assert_true(bz.pm_size > 1000000 && bz.pm_offset + bz.pm_size <= (uint64_t)n);
	assert_true(bz.init_size >= bz.pm_size);
	assert_true(bz.cmdline_size >= 255);
	print_message("%s: protocol %x, setup %u, pm %llu bytes, init_size 0x%x, pref 0x%llx\n",
	              path, bz.protocol, bz.setup_size, (unsigned long long)bz.pm_size,
	              bz.init_size, (unsigned long long)bz.pref_address);
	free(buf);
}

static void elf_valid(void **state)
{
	uint8_t *b = img();
	struct elf_opts o = {
		.entry = 0x100000,
		.nr_segs = 2,
		.seg = {{0x100000, 0x1000, 0x3000}, {0x200000, 0x800, 0x800}},
	};
	struct elf_info elf;
	const char *why = NULL;
	size_t len = make_elf(b, IMG_CAP, &o);

	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_false(elf.has_pvh);
	assert_int_equal(elf.entry, 0x100000);
	assert_int_equal(elf.nr_segments, 2);
	assert_int_equal(elf.seg[0].paddr, 0x100000);
	assert_int_equal(elf.seg[0].filesz, 0x1000);
	assert_int_equal(elf.seg[0].memsz, 0x3000);
	assert_int_equal(elf.seg[1].paddr, 0x200000);
	assert_int_equal(b[elf.seg[1].offset + 5], elf_seg_byte(1, 5));

	o.pvh = true;
	o.pvh_entry = 0x200010;
	o.entry = 0xffffffff81000000ULL; /* ignored when the PVH note is there */
	len = make_elf(b, IMG_CAP, &o);
	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_true(elf.has_pvh);
	assert_int_equal(elf.pvh_entry, 0x200010);

	o.pvh_descsz = 8;
	o.extra_note_first = true;
	len = make_elf(b, IMG_CAP, &o);
	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_true(elf.has_pvh);
	assert_int_equal(elf.pvh_entry, 0x200010);
	test_free(b);
}

static void elf_reject(void **state)
{
	uint8_t *b = img();
	struct elf_opts o = {
		.entry = 0x100000,
		.nr_segs = 1,
		.seg = {{0x100000, 0x1000, 0x1000}},
	};
	size_t len = make_elf(b, IMG_CAP, &o);

	expect_elf_reject(b, 3, "ELF: bad magic");
	expect_elf_reject(b, 40, "ELF: truncated header");
	b[4] = 3;
	expect_elf_reject(b, len, "ELF: unknown ELF class");
	b[4] = 1; /* an ELF64 body read as ELF32: its e_machine is x86-64 */
	expect_elf_reject(b, len, "ELF: not i386");
	b[4] = 2;
	b[5] = 2;
	expect_elf_reject(b, len, "ELF: not little-endian");
	b[5] = 1;
	b[6] = 0;
	expect_elf_reject(b, len, "ELF: unknown ELF version");
	b[6] = 1;
	le16_put(b + 18, 3);
	expect_elf_reject(b, len, "ELF: not x86-64");
	le16_put(b + 18, 62);
	le16_put(b + 16, 3);
	expect_elf_reject(b, len, "ELF: not an executable (ET_EXEC)");
	le16_put(b + 16, 2);
	le16_put(b + 54, 32);
	expect_elf_reject(b, len, "ELF: bad program header size");
	le16_put(b + 54, 56);
	le16_put(b + 56, 0);
	expect_elf_reject(b, len, "ELF: no program headers");
	le16_put(b + 56, 0xffff);
	expect_elf_reject(b, len, "ELF: too many program headers");
	le16_put(b + 56, 1);
	le64_put(b + 32, len - 10);
	expect_elf_reject(b, len, "ELF: program header table outside file");
	le64_put(b + 32, 0xfffffffffffffff0ULL);
	expect_elf_reject(b, len, "ELF: program header table outside file");
	le64_put(b + 32, 64);

	/* Segment fields: offset, filesz, memsz, paddr of the one PT_LOAD. */
	le64_put(b + 64 + 8, 0xfffffffffffff000ULL);
	expect_elf_reject(b, len, "ELF: segment file range outside file");
	le64_put(b + 64 + 8, 128);
	le64_put(b + 64 + 32, len);
	expect_elf_reject(b, len, "ELF: segment file range outside file");
	le64_put(b + 64 + 32, 0x1000);
	le64_put(b + 64 + 40, 0x800);
	expect_elf_reject(b, len, "ELF: segment memsz < filesz");
	le64_put(b + 64 + 40, 0x1000);
	le64_put(b + 64 + 24, 0xfffffffffffff800ULL);
	expect_elf_reject(b, len, "ELF: segment physical address out of range");
	le64_put(b + 64 + 24, 0x100000);
	le64_put(b + 24, 0x300000);
	expect_elf_reject(b, len, "ELF: entry point outside the loaded segments");
	le32_put(b + 64, 6); /* PT_PHDR: no loadable segment left */
	expect_elf_reject(b, len, "ELF: no loadable segments");

	o.nr_segs = ELF_MAX_SEGMENTS + 1;
	for (unsigned i = 0; i < o.nr_segs; i++)
		o.seg[i] = (struct elf_seg_spec){0x100000 + i * 0x1000ULL, 16, 16};
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: too many loadable segments");

	o.nr_segs = 2;
	o.seg[0] = (struct elf_seg_spec){0x100000, 16, 0x1000};
	o.seg[1] = (struct elf_seg_spec){0x100800, 16, 0x1000};
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: loadable segments overlap");

	o.seg[1] = (struct elf_seg_spec){0x200000, 16, 16};
	o.pvh = true;
	o.pvh_entry = 0x100000;
	o.pvh_descsz = 6;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: PVH entry note has a bad size");
	o.pvh_descsz = 8;
	o.pvh_entry = 0x100000000ULL;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: PVH entry point above 4 GiB");
	o.pvh_entry = 0x300000;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: entry point outside the loaded segments");
	o.pvh_entry = 0x100000;
	len = make_elf(b, IMG_CAP, &o);
	/* Note header: descsz far beyond the segment. */
	{
		uint64_t note_off = le64_get(b + 64 + 8);

		le32_put(b + note_off + 4, 0x7fffffff);
		expect_elf_reject(b, len, "ELF: note extends past its segment");
		le32_put(b + note_off + 4, 8);
		le32_put(b + note_off, 0xffffffff); /* namesz */
		expect_elf_reject(b, len, "ELF: note extends past its segment");
	}
	test_free(b);
}

/* ELF32 (i386) kernels: PVH through the note, as the PVH ABI allows and
 * QEMU boots them; an i386 vmlinux otherwise. */
static void elf32_valid(void **state)
{
	uint8_t *b = img();
	struct elf_opts o = {
		.elf32 = true,
		.entry = 0x100000,
		.nr_segs = 2,
		.seg = {{0x100000, 0x1000, 0x3000}, {0x200000, 0x800, 0x800}},
	};
	struct elf_info elf;
	const char *why = NULL;
	size_t len = make_elf(b, IMG_CAP, &o);

	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_true(elf.is32);
	assert_false(elf.has_pvh);
	assert_int_equal(elf.entry, 0x100000);
	assert_int_equal(elf.nr_segments, 2);
	assert_int_equal(elf.seg[0].paddr, 0x100000);
	assert_int_equal(elf.seg[0].filesz, 0x1000);
	assert_int_equal(elf.seg[0].memsz, 0x3000);
	assert_int_equal(elf.seg[1].paddr, 0x200000);
	assert_int_equal(b[elf.seg[1].offset + 5], elf_seg_byte(1, 5));

	o.pvh = true;
	o.pvh_entry = 0x200010;
	o.entry = 0xc1000000; /* virtual, ignored when the PVH note is there */
	len = make_elf(b, IMG_CAP, &o);
	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_true(elf.is32);
	assert_true(elf.has_pvh);
	assert_int_equal(elf.pvh_entry, 0x200010);
	o.pvh_descsz = 8;
	o.extra_note_first = true;
	len = make_elf(b, IMG_CAP, &o);
	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_int_equal(elf.pvh_entry, 0x200010);

	/* A multiboot header does not matter when the PVH note is there. */
	o.multiboot = 1;
	len = make_elf(b, IMG_CAP, &o);
	assert_int_equal(elf_parse(b, len, &elf, &why), 0);
	assert_true(elf.has_pvh);
	test_free(b);
}

static void elf32_reject(void **state)
{
	uint8_t *b = img();
	struct elf_opts o = {
		.elf32 = true,
		.entry = 0x100000,
		.nr_segs = 1,
		.seg = {{0x100000, 0x1000, 0x1000}},
	};
	size_t len = make_elf(b, IMG_CAP, &o);
	uint32_t seg_off;

	expect_elf_reject(b, 51, "ELF: truncated header");
	le16_put(b + 18, 62);
	expect_elf_reject(b, len, "ELF: not i386 (a 32-bit ELF file must be EM_386)");
	le16_put(b + 18, 3);
	le16_put(b + 42, 56);
	expect_elf_reject(b, len, "ELF: bad program header size");
	le16_put(b + 42, 32);
	le32_put(b + 28, (uint32_t)len - 10);
	expect_elf_reject(b, len, "ELF: program header table outside file");
	le32_put(b + 28, 0xfffffff0u);
	expect_elf_reject(b, len, "ELF: program header table outside file");
	le32_put(b + 28, 64);
	/* The PT_LOAD's offset, filesz, memsz, paddr. */
	seg_off = le32_get(b + 64 + 4);
	le32_put(b + 64 + 4, 0xfffff000u);
	expect_elf_reject(b, len, "ELF: segment file range outside file");
	le32_put(b + 64 + 4, seg_off);
	le32_put(b + 64 + 16, 0x1000);
	le32_put(b + 64 + 20, 0x800);
	expect_elf_reject(b, len, "ELF: segment memsz < filesz");
	le32_put(b + 64 + 20, 0x1000);
	le32_put(b + 24, 0x300000);
	expect_elf_reject(b, len, "ELF: entry point outside the loaded segments");
	le32_put(b + 24, 0x100000);

	/* Multiboot kernels without a PVH note: version 1 is accepted with the
	 * requirements the loader meets, anything else refused by name. */
	{
		struct elf_info elf;
		const char *why = NULL;
		uint32_t hdr;

		o.multiboot = 1;
		len = make_elf(b, IMG_CAP, &o);
		assert_int_equal(elf_parse(b, len, &elf, &why), 0);
		assert_int_equal(elf.multiboot, 1);
		assert_int_equal(elf.multiboot_flags, 3);
		hdr = le32_get(b + 64 + 4); /* segment 0's file offset */
		static const struct {
			uint32_t flags;
			const char *msg;
		} flag_cases[] = {
			{ 1u << 2, "requires a video mode (header flag 2)" },
			{ 1u << 16, "address fields (flag 16), which this loader does not do" },
			{ 1u << 5, "requires a feature (header flags 3-15) this loader does not" },
		};
		for (size_t i = 0; i < ARRAY_SIZE(flag_cases); i++) {
			uint32_t fl = 3 | flag_cases[i].flags;

			le32_put(b + hdr + 4, fl);
			le32_put(b + hdr + 8, (uint32_t)-(0x1BADB002u + fl));
			expect_elf_reject(b, len, flag_cases[i].msg);
		}
		/* Optional feature bits 17-31 are fine. */
		le32_put(b + hdr + 4, 3u | (1u << 20));
		le32_put(b + hdr + 8, (uint32_t)-(0x1BADB002u + (3u | (1u << 20))));
		assert_int_equal(elf_parse(b, len, &elf, &why), 0);
		o.elf32 = false;
		len = make_elf(b, IMG_CAP, &o);
		expect_elf_reject(b, len, "a 64-bit multiboot kernel: multiboot loads ELF32");
		o.elf32 = true;
	}
	o.multiboot = 2;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "multiboot2 kernel without a PVH note: the multiboot2 protocol "
	                          "is not supported");
	o.elf32 = false; /* multiboot2 allows ELF64 too */
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "multiboot2 kernel without a PVH note");
	/* A broken checksum is no multiboot header: booted as a vmlinux. */
	{
		struct elf_info elf;
		const char *why = NULL;

		o.elf32 = true;
		o.multiboot = 1;
		len = make_elf(b, IMG_CAP, &o);
		b[le32_get(b + 64 + 4) + 8] ^= 1;
		assert_int_equal(elf_parse(b, len, &elf, &why), 0);
		assert_int_equal(elf.multiboot, 0);
	}

	o = (struct elf_opts){
		.elf32 = true, .nr_segs = 1, .seg = {{0x100000, 0x1000, 0x1000}},
		.pvh = true, .pvh_entry = 0x100000, .pvh_descsz = 6,
	};
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: PVH entry note has a bad size");
	o.pvh_descsz = 8;
	o.pvh_entry = 0x100000000ULL;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: PVH entry point above 4 GiB");
	o.pvh_entry = 0x300000;
	len = make_elf(b, IMG_CAP, &o);
	expect_elf_reject(b, len, "ELF: entry point outside the loaded segments");
	o.pvh_entry = 0x100000;
	len = make_elf(b, IMG_CAP, &o);
	{
		uint32_t note_off = le32_get(b + 64 + 4);

		le32_put(b + note_off + 4, 0x7fffffff);
		expect_elf_reject(b, len, "ELF: note extends past its segment");
	}
	test_free(b);
}

/* A real vmlinux (e.g. extracted from a distribution bzImage with the
 * kernel's scripts/extract-vmlinux), when one is around. */
static void elf_real_vmlinux(void **state)
{
	const char *path = getenv("CELLA_TEST_VMLINUX");
	struct elf_info elf;
	const char *why = NULL;
	uint8_t *buf;
	long n;
	FILE *f;

	f = path ? fopen(path, "rb") : NULL;
	if (!f) {
		fprintf(stderr, "\n*** SKIPPED: set CELLA_TEST_VMLINUX to a vmlinux to check "
				"elf_parse against it ***\n\n");
		skip();
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	if (elf_parse(buf, (size_t)n, &elf, &why))
		fail_msg("%s: %s", path, why);
	assert_true(elf.nr_segments >= 2);
	assert_true(elf.entry < (1ULL << 32)); /* vmlinux e_entry is physical */
	print_message("%s: %u segments, entry 0x%llx, PVH %s 0x%llx\n", path, elf.nr_segments,
		      (unsigned long long)elf.entry, elf.has_pvh ? "yes" : "no",
		      (unsigned long long)elf.pvh_entry);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bz_valid),
		cmocka_unit_test(bz_reject),
		cmocka_unit_test(bz_real_kernel),
		cmocka_unit_test(elf_valid),
		cmocka_unit_test(elf_reject),
		cmocka_unit_test(elf32_valid),
		cmocka_unit_test(elf32_reject),
		cmocka_unit_test(bz_entry32),
		cmocka_unit_test(elf_real_vmlinux),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
