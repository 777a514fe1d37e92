/* gen_corpus.c: writes the seed corpora for fuzz_bzimage and fuzz_elf (small
 * valid images and near misses) into DIR/corpus-bzimage and DIR/corpus-elf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "images.h"

#define CAP (64 * 1024)

static void put(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	if (len == 0) {
		fprintf(stderr, "%s: image did not build\n", name);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	uint8_t *buf = calloc(1, CAP);
	char bzdir[4096], elfdir[4096];
	const char *root = argc > 1 ? argv[1] : ".";
	size_t len;

	snprintf(bzdir, sizeof(bzdir), "%s/corpus-bzimage", root);
	snprintf(elfdir, sizeof(elfdir), "%s/corpus-elf", root);
	mkdir(bzdir, 0755);
	mkdir(elfdir, 0755);

	{
		struct bz_opts o = {.pm_size = 512};
		put(bzdir, "relocatable", buf, make_bzimage(buf, CAP, &o));
		o.not_relocatable = true;
		put(bzdir, "fixed", buf, make_bzimage(buf, CAP, &o));
		o = (struct bz_opts){.pm_size = 512, .setup_sects = 1, .hdr_len = 0x7e};
		len = make_bzimage(buf, CAP, &o);
		memset(buf + len, 0xa5, 64); /* trailing signature bytes */
		put(bzdir, "signed", buf, len + 64);
		o = (struct bz_opts){.pm_size = 256, .version = 0x0205};
		put(bzdir, "old-protocol", buf, make_bzimage(buf, CAP, &o));
		o = (struct bz_opts){.pm_size = 256, .init_size = 200u << 20};
		put(bzdir, "too-big", buf, make_bzimage(buf, CAP, &o));
		o = (struct bz_opts){.pm_size = 256, .no_xlf64 = true};
		put(bzdir, "entry32-i386", buf, make_bzimage(buf, CAP, &o));
		o = (struct bz_opts){.pm_size = 256, .version = 0x020b};
		put(bzdir, "entry32-2.11", buf, make_bzimage(buf, CAP, &o));
		o = (struct bz_opts){.pm_size = 256, .version = 0x0209};
		put(bzdir, "no-init-size", buf, make_bzimage(buf, CAP, &o));
	}
	{
		struct elf_opts o = {
			.nr_segs = 2,
			.seg = {{0x100000, 256, 0x2000}, {0x8000, 32, 64}},
			.pvh = true,
			.pvh_entry = 0x100010,
		};
		put(elfdir, "pvh", buf, make_elf(buf, CAP, &o));
		o.pvh_descsz = 8;
		o.extra_note_first = true;
		put(elfdir, "pvh-note64", buf, make_elf(buf, CAP, &o));
		o = (struct elf_opts){.entry = 0x1000000,
		                      .nr_segs = 3,
		                      .seg = {{0x1000000, 128, 128},
		                              {0x1200000, 64, 0x1000},
		                              {0x1400000, 0, 0x10000}}};
		put(elfdir, "vmlinux", buf, make_elf(buf, CAP, &o));
		o = (struct elf_opts){.entry = 0x7000, .nr_segs = 1, .seg = {{0x7000, 64, 64}}};
		put(elfdir, "boot-area", buf, make_elf(buf, CAP, &o));
		o = (struct elf_opts){.elf32 = true,
		                      .nr_segs = 2,
		                      .seg = {{0x100000, 256, 0x2000}, {0x8000, 32, 64}},
		                      .pvh = true,
		                      .pvh_entry = 0x100010};
		put(elfdir, "pvh32", buf, make_elf(buf, CAP, &o));
		o.pvh_descsz = 8;
		o.extra_note_first = true;
		put(elfdir, "pvh32-note64", buf, make_elf(buf, CAP, &o));
		o = (struct elf_opts){.elf32 = true,
		                      .entry = 0x1000000,
		                      .nr_segs = 2,
		                      .seg = {{0x1000000, 128, 128}, {0x1200000, 64, 0x1000}}};
		put(elfdir, "vmlinux32", buf, make_elf(buf, CAP, &o));
		o.multiboot = 1;
		len = make_elf(buf, CAP, &o);
		put(elfdir, "multiboot", buf, len);
		{
			/* Header flags 0-2: a video mode too, which is refused. */
			uint8_t *h = buf + (buf[68] | buf[69] << 8); /* segment 0's offset */

			h[4] = 7;
			h[8] = (uint8_t)(-(0x1BADB002u + 7) & 0xff);
			h[9] = (uint8_t)((-(0x1BADB002u + 7) >> 8) & 0xff);
			h[10] = (uint8_t)((-(0x1BADB002u + 7) >> 16) & 0xff);
			h[11] = (uint8_t)((-(0x1BADB002u + 7) >> 24) & 0xff);
			put(elfdir, "multiboot-video", buf, len);
		}
		o.multiboot = 2;
		put(elfdir, "multiboot2", buf, make_elf(buf, CAP, &o));
		o = (struct elf_opts){.elf32 = true,
		                      .nr_segs = 1,
		                      .seg = {{0x100000, 64, 64}},
		                      .pvh = true,
		                      .pvh_entry = 0x100000,
		                      .pvh_descsz = 2};
		put(elfdir, "pvh32-bad-note", buf, make_elf(buf, CAP, &o));
	}
	free(buf);
	return 0;
}
