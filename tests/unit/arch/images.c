/* images.c: builders for synthetic bzImage and ELF kernels (see images.h). */
#include "images.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/x86_priv.h"

void bz_opts_default(struct bz_opts *o)
{
	if (!o->version)
		o->version = 0x020f;
	if (!o->setup_sects)
		o->setup_sects = 4;
	if (!o->pm_size)
		o->pm_size = 4096;
	if (!o->init_size)
		o->init_size = 8u << 20;
	if (!o->pref_address)
		o->pref_address = 16u << 20;
	if (!o->kernel_alignment)
		o->kernel_alignment = 2u << 20;
	if (!o->initrd_addr_max)
		o->initrd_addr_max = 0x37ffffff;
	if (!o->cmdline_size)
		o->cmdline_size = 2047;
	if (!o->hdr_len)
		o->hdr_len = 0x6a;
}

size_t make_bzimage(uint8_t *buf, size_t cap, const struct bz_opts *in)
{
	struct bz_opts o = *in;
	size_t setup, len;

	bz_opts_default(&o);
	setup = (o.setup_sects + 1) * 512;
	len = setup + o.pm_size;
	if (len > cap || setup < 0x300)
		return 0;
	memset(buf, 0, setup);
	buf[BP_SETUP_SECTS] = (uint8_t)o.setup_sects;
	le32_put(buf + BP_SYSSIZE, (uint32_t)(o.pm_size / 16));
	le16_put(buf + BP_VID_MODE, 0xffff);
	le16_put(buf + BP_BOOT_FLAG, 0xAA55);
	buf[BP_JUMP] = 0xeb;
	buf[BP_JUMP + 1] = o.hdr_len;
	le32_put(buf + BP_HEADER, BP_HDRS_MAGIC);
	le16_put(buf + BP_VERSION, o.version);
	buf[BP_LOADFLAGS] = BP_LOADED_HIGH;
	le32_put(buf + BP_CODE32_START, 0x100000);
	le32_put(buf + BP_INITRD_ADDR_MAX, o.initrd_addr_max);
	le32_put(buf + BP_KERNEL_ALIGNMENT, o.kernel_alignment);
	buf[BP_RELOCATABLE] = o.not_relocatable ? 0 : 1;
	le16_put(buf + BP_XLOADFLAGS, o.no_xlf64 ? 0 : BP_XLF_KERNEL_64);
	le32_put(buf + BP_CMDLINE_SIZE, o.cmdline_size);
	le64_put(buf + BP_PREF_ADDRESS, o.pref_address);
	le32_put(buf + BP_INIT_SIZE, o.init_size);
	for (size_t j = 0; j < o.pm_size; j++)
		buf[setup + j] = bz_pm_byte(j);
	return len;
}

static size_t align16(size_t x)
{
	return (x + 15) & ~(size_t)15;
}

/* Word-sized ELF fields: 8 bytes in ELF64, 4 in ELF32. */
static void put_word(uint8_t *p, bool elf32, uint64_t v)
{
	if (elf32)
		le32_put(p, (uint32_t)v);
	else
		le64_put(p, v);
}

size_t make_elf(uint8_t *buf, size_t cap, const struct elf_opts *o)
{
	bool e32 = o->elf32;
	unsigned phsize = e32 ? 32 : 56;
	unsigned nph = o->nr_segs + (o->pvh ? 1 : 0);
	size_t phoff = 64, off = align16(phoff + nph * phsize), note_off = off, note_len = 0;
	size_t seg0_off;
	uint8_t *ph;

	if (o->pvh) {
		unsigned descsz = o->pvh_descsz ? o->pvh_descsz : 4;

		note_len = (o->extra_note_first ? 12 + 4 + 4 : 0) + 12 + 4 + ((descsz + 3) & ~3u);
		off = align16(note_off + note_len);
	}
	for (unsigned i = 0; i < o->nr_segs; i++)
		off = align16(off + o->seg[i].filesz);
	if (off > cap)
		return 0;
	memset(buf, 0, off);
	memcpy(buf,
	       "\x7f"
	       "ELF",
	       4);
	buf[4] = e32 ? 1 : 2; /* ELFCLASS32 / ELFCLASS64 */
	buf[5] = 1;           /* little-endian */
	buf[6] = 1;
	le16_put(buf + 16, 2);             /* ET_EXEC */
	le16_put(buf + 18, e32 ? 3 : 62);  /* EM_386 / EM_X86_64 */
	le32_put(buf + 20, 1);
	put_word(buf + 24, e32, o->entry);
	if (e32) {
		le32_put(buf + 28, (uint32_t)phoff);
		le16_put(buf + 40, 52);
		le16_put(buf + 42, 32);
		le16_put(buf + 44, (uint16_t)nph);
	} else {
		le64_put(buf + 32, phoff);
		le16_put(buf + 52, 64);
		le16_put(buf + 54, 56);
		le16_put(buf + 56, (uint16_t)nph);
	}

	ph = buf + phoff;
	if (o->pvh) {
		unsigned descsz = o->pvh_descsz ? o->pvh_descsz : 4;
		uint8_t *n = buf + note_off;

		le32_put(ph, 4); /* PT_NOTE */
		if (e32) {
			le32_put(ph + 4, (uint32_t)note_off);
			le32_put(ph + 16, (uint32_t)note_len);
			le32_put(ph + 20, (uint32_t)note_len);
			le32_put(ph + 28, 4);
		} else {
			le64_put(ph + 8, note_off);
			le64_put(ph + 32, note_len);
			le64_put(ph + 40, note_len);
			le64_put(ph + 48, 4);
		}
		ph += phsize;
		if (o->extra_note_first) {
			le32_put(n, 4);
			le32_put(n + 4, 4);
			le32_put(n + 8, 3); /* NT_GNU_BUILD_ID, say */
			memcpy(n + 12, "GNU", 4);
			le32_put(n + 16, 0xdeadbeef);
			n += 20;
		}
		le32_put(n, 4);
		le32_put(n + 4, descsz);
		le32_put(n + 8, 18);
		memcpy(n + 12, "Xen", 4);
		if (descsz == 8)
			le64_put(n + 16, o->pvh_entry);
		else
			le32_put(n + 16, (uint32_t)o->pvh_entry);
	}
	off = align16(note_off + note_len);
	seg0_off = off;
	for (unsigned i = 0; i < o->nr_segs; i++) {
		const struct elf_seg_spec *s = &o->seg[i];

		le32_put(ph, 1); /* PT_LOAD */
		if (e32) {
			le32_put(ph + 4, (uint32_t)off);
			le32_put(ph + 8, (uint32_t)(s->paddr + 0xc0000000ULL));
			le32_put(ph + 12, (uint32_t)s->paddr);
			le32_put(ph + 16, (uint32_t)s->filesz);
			le32_put(ph + 20, (uint32_t)s->memsz);
			le32_put(ph + 24, 7);
			le32_put(ph + 28, 0x1000);
		} else {
			le32_put(ph + 4, 7);
			le64_put(ph + 8, off);
			le64_put(ph + 16, s->paddr + 0xffffffff80000000ULL);
			le64_put(ph + 24, s->paddr);
			le64_put(ph + 32, s->filesz);
			le64_put(ph + 40, s->memsz);
			le64_put(ph + 48, 0x1000);
		}
		for (uint64_t j = 0; j < s->filesz; j++)
			buf[off + j] = elf_seg_byte(i, j);
		off = align16(off + s->filesz);
		ph += phsize;
	}
	/* A multiboot header at the start of segment 0 (8-byte aligned, inside
	 * the first 8 KiB as both versions require). */
	if (o->multiboot && o->nr_segs && o->seg[0].filesz >= 16) {
		uint8_t *m = buf + seg0_off;

		if (o->multiboot == 2) {
			le32_put(m, 0xE85250D6u);
			le32_put(m + 4, 0);
			le32_put(m + 8, 16);
			le32_put(m + 12, (uint32_t)-(0xE85250D6u + 16));
		} else {
			le32_put(m, 0x1BADB002u);
			le32_put(m + 4, 3);
			le32_put(m + 8, (uint32_t)-(0x1BADB002u + 3));
		}
	}
	return off;
}

char *write_temp(const void *buf, size_t len)
{
	char dir[] = "/tmp/cella-arch-XXXXXX";
	char *path;
	FILE *f;

	if (!mkdtemp(dir))
		return NULL;
	if (asprintf(&path, "%s/image", dir) < 0)
		return NULL;
	f = fopen(path, "wb");
	if (!f) {
		free(path);
		return NULL;
	}
	if (len && fwrite(buf, 1, len, f) != len) {
		fclose(f);
		free(path);
		return NULL;
	}
	fclose(f);
	return path;
}

void rm_temp(char *path)
{
	char *slash;

	if (!path)
		return;
	unlink(path);
	slash = strrchr(path, '/');
	if (slash) {
		*slash = '\0';
		rmdir(path);
	}
	free(path);
}
