/* parttab.c: MBR and GPT partition tables, file system signatures
 * (parttab.h). Every offset is checked against the disk's size. */
#include "parttab.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define SECTOR 512u

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int add(struct parttab *pt, unsigned number, uint64_t first, uint64_t sectors,
	       uint64_t size, char *err, size_t errlen)
{
	if (first > size / SECTOR || sectors > size / SECTOR - first) {
		snprintf(err, errlen, "%s partition %u (sectors %llu+%llu) ends past the end of the "
			 "disk (%llu sectors)", pt->kind, number, (unsigned long long)first,
			 (unsigned long long)sectors, (unsigned long long)(size / SECTOR));
		return -EINVAL;
	}
	if (pt->nr >= PARTTAB_MAX)
		return 0;
	pt->p[pt->nr++] = (struct partition){ .number = number, .off = first * SECTOR,
					      .len = sectors * SECTOR };
	return 0;
}

static int gpt_read(parttab_read_fn rd, void *ctx, uint64_t size, struct parttab *pt, char *err,
		    size_t errlen)
{
	static uint8_t zero[16];
	uint8_t h[SECTOR], ent[256];
	uint32_t hsize, n, esize, crc, want;
	uint64_t lba;

	pt->kind = "gpt";
	if (size < 3 * SECTOR || rd(ctx, h, SECTOR, SECTOR))
		return snprintf(err, errlen, "gpt: the disk is too small for its header"), -EINVAL;
	if (memcmp(h, "EFI PART", 8))
		return snprintf(err, errlen, "gpt: a protective MBR but no GPT header (\"EFI PART\") "
				"in sector 1"), -EINVAL;
	hsize = le32(h + 12);
	if (hsize < 92 || hsize > SECTOR)
		return snprintf(err, errlen, "gpt: header size %u", hsize), -EINVAL;
	want = le32(h + 16);
	memset(h + 16, 0, 4);
	if ((crc = (uint32_t)crc32(0, h, hsize)) != want)
		return snprintf(err, errlen, "gpt: header checksum 0x%08x, expected 0x%08x", want,
				crc), -EINVAL;
	lba = le64(h + 72);
	n = le32(h + 80);
	esize = le32(h + 84);
	if (esize < 128 || esize > sizeof(ent) || esize % 8)
		return snprintf(err, errlen, "gpt: partition entry size %u", esize), -EINVAL;
	if (n > 1024)
		return snprintf(err, errlen, "gpt: %u partition entries (1024 at most)", n), -EINVAL;
	if (lba < 2 || lba > size / SECTOR || (uint64_t)n * esize > size - lba * SECTOR)
		return snprintf(err, errlen, "gpt: the partition entries (sector %llu) lie past the "
				"end of the disk", (unsigned long long)lba), -EINVAL;
	crc = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t first, last;

		if (rd(ctx, ent, esize, lba * SECTOR + (uint64_t)i * esize))
			return snprintf(err, errlen, "gpt: cannot read entry %u", i), -EIO;
		crc = (uint32_t)crc32(crc, ent, esize);
		if (!memcmp(ent, zero, 16))
			continue;
		first = le64(ent + 32);
		last = le64(ent + 40);
		if (last < first)
			return snprintf(err, errlen, "gpt partition %u: last sector %llu before the "
					"first %llu", i + 1, (unsigned long long)last,
					(unsigned long long)first), -EINVAL;
		if (add(pt, i + 1, first, last - first + 1, size, err, errlen))
			return -EINVAL;
	}
	if (crc != le32(h + 88))
		return snprintf(err, errlen, "gpt: partition entries checksum 0x%08x, expected "
				"0x%08x", le32(h + 88), crc), -EINVAL;
	return 0;
}

int parttab_read(parttab_read_fn rd, void *ctx, uint64_t size, struct parttab *pt, char *err,
		 size_t errlen)
{
	uint8_t s[SECTOR];

	memset(pt, 0, sizeof(*pt));
	if (size < SECTOR || rd(ctx, s, SECTOR, 0) || s[510] != 0x55 || s[511] != 0xaa)
		return -ENOENT;
	for (unsigned i = 0; i < 4; i++)
		if (s[446 + 16 * i + 4] == 0xee)
			return gpt_read(rd, ctx, size, pt, err, errlen);
	pt->kind = "mbr";
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;

		if (e[0] != 0 && e[0] != 0x80) /* a boot sector's code, not a table */
			return snprintf(err, errlen, "mbr: entry %u has status 0x%02x (not a partition "
					"table)", i + 1, e[0]), -EINVAL;
	}
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;
		uint8_t type = e[4];

		if (!type || !le32(e + 12))
			continue;
		if (type == 0x05 || type == 0x0f || type == 0x85)
			continue; /* extended: its logical partitions are not read */
		if (add(pt, i + 1, le32(e + 8), le32(e + 12), size, err, errlen))
			return -EINVAL;
	}
	return 0;
}

static bool at(parttab_read_fn rd, void *ctx, uint64_t off, uint64_t len, uint64_t where,
	       const char *magic, size_t n)
{
	char b[16];

	if (n > sizeof(b) || where > len || n > len - where || rd(ctx, b, n, off + where))
		return false;
	return !memcmp(b, magic, n);
}

const char *fs_probe(parttab_read_fn rd, void *ctx, uint64_t off, uint64_t len)
{
	uint8_t sb[0x68];

	if (len >= 2048 && !rd(ctx, sb, sizeof(sb), off + 1024) && sb[56] == 0x53 &&
	    sb[57] == 0xef) {
		if (le32(sb + 0x60) & 0x40) /* INCOMPAT_EXTENTS */
			return "ext4";
		return le32(sb + 0x5c) & 0x4 ? "ext3" : "ext2"; /* COMPAT_HAS_JOURNAL */
	}
	if (at(rd, ctx, off, len, 0, "XFSB", 4))
		return "xfs";
	if (at(rd, ctx, off, len, 0x10040, "_BHRfS_M", 8))
		return "btrfs";
	if (at(rd, ctx, off, len, 0, "LUKS\xba\xbe", 6))
		return "LUKS";
	if (at(rd, ctx, off, len, 0, "hsqs", 4))
		return "squashfs";
	if (at(rd, ctx, off, len, 512, "LABEL ONE", 9))
		return "LVM2";
	if (at(rd, ctx, off, len, 4086, "SWAPSPACE2", 10))
		return "swap";
	if (at(rd, ctx, off, len, 32769, "CD001", 5))
		return "iso9660";
	if (at(rd, ctx, off, len, 510, "\x55\xaa", 2) &&
	    (at(rd, ctx, off, len, 54, "FAT", 3) || at(rd, ctx, off, len, 82, "FAT32", 5)))
		return "vfat";
	return NULL;
}
