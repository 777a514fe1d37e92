/* blk.c: data integrity on the first virtio-blk disk.
 *   mode=write  seed=S mib=N: fill the first N MiB with the sector pattern,
 *               read it back, FLUSH; then WRITE_ZEROES and DISCARD on the
 *               128 KiB after it when the device offers them.
 *   mode=verify seed=S mib=N: read back and check (e.g. after a reboot).
 *   mode=readonly: the disk must be read-only and refuse a write.
 * Sector s holds: u64 s, u64 seed, 61 u64 from splitmix64 seeded with
 * seed ^ (s * 0xD1B54A32D192ED03), then u32 crc32 of the first 504 bytes
 * and u32 0x6c6c6563 ("cell"). Both modes print the crc32 of the whole
 * region, which the host recomputes from the image file. */
#include "virtio_blk.h"

TEST_PROGRAM("blk");

#define SECTOR 512
#define CHUNK (1u << 20)
#define EXTRA_SECTORS 256	/* 128 KiB after the region: zeroes, then discard */

/* Returns 0 if the sector is right, else a short reason code. */
static const char *sector_check(const uint8_t *p, uint64_t s, uint64_t seed)
{
	static uint8_t want[SECTOR];
	const uint64_t *w = (const uint64_t *)p;
	if (w[0] != s)
		return "wrong sector number";
	if (w[1] != seed)
		return "wrong seed";
	if (((const uint32_t *)(p + 504))[0] != crc32(p, 504))
		return "bad checksum";
	vblk_sector_fill(want, s, seed);
	if (memcmp(want, p, SECTOR))
		return "wrong data";
	return NULL;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Reads [0, bytes) and checks every sector; returns the region's crc32. */
static uint32_t verify_region(struct vblk *b, uint8_t *buf, uint64_t bytes, uint64_t seed,
			      uint64_t *bad)
{
	uint32_t crc = 0;
	*bad = 0;
	for (uint64_t off = 0; off < bytes; off += CHUNK) {
		uint32_t n = (uint32_t)MIN((uint64_t)CHUNK, bytes - off);
		int st = vblk_rw(b, VIRTIO_BLK_T_IN, off / SECTOR, buf, n);
		if (st)
			fail("read at sector %lu failed with status %d", off / SECTOR, st);
		for (uint32_t i = 0; i < n; i += SECTOR) {
			uint64_t s = (off + i) / SECTOR;
			const char *why = sector_check(buf + i, s, seed);
			if (why && (*bad)++ < 5)
				printf("blk: sector %lu: %s (first word 0x%lx)\n", s, why,
				       *(uint64_t *)(buf + i));
		}
		crc = crc32_update(crc, buf, n);
	}
	return crc;
}

static void test_id(struct vblk *b)
{
	char id[21];
	int st = vblk_get_id(b, id);
	report(st == VIRTIO_BLK_S_OK || st == VIRTIO_BLK_S_UNSUPP, "GET_ID status %d", st);
	if (st == VIRTIO_BLK_S_OK)
		printf("blk: id '%s'\n", id);
}

static void test_zeroes_and_discard(struct vblk *b, uint8_t *buf, uint64_t first, uint64_t seed)
{
	uint32_t half = EXTRA_SECTORS / 2;
	if (first + EXTRA_SECTORS > b->capacity) {
		report_info("disk too small for the WRITE_ZEROES/DISCARD area: skipped");
		return;
	}
	for (uint32_t i = 0; i < EXTRA_SECTORS; i++)
		vblk_sector_fill(buf + i * SECTOR, first + i, seed);
	report(vblk_rw(b, VIRTIO_BLK_T_OUT, first, buf, EXTRA_SECTORS * SECTOR) == 0,
	       "write the WRITE_ZEROES/DISCARD area");
	if (vblk_has(b, VIRTIO_BLK_F_WRITE_ZEROES) && b->max_write_zeroes_sectors >= half) {
		int st = vblk_range(b, VIRTIO_BLK_T_WRITE_ZEROES, first, half);
		report(st == 0, "WRITE_ZEROES %u sectors at %lu: status %d", half, first, st);
		memset(buf, 0xAA, half * SECTOR);
		st = vblk_rw(b, VIRTIO_BLK_T_IN, first, buf, half * SECTOR);
		report(st == 0 && all_zero(buf, half * SECTOR), "zeroed sectors read back as zeros");
	} else {
		report_info("WRITE_ZEROES not offered (max %u sectors): skipped",
			    b->max_write_zeroes_sectors);
	}
	if (vblk_has(b, VIRTIO_BLK_F_DISCARD) && b->max_discard_sectors >= half) {
		int st = vblk_range(b, VIRTIO_BLK_T_DISCARD, first + half, half);
		report(st == 0, "DISCARD %u sectors at %lu: status %d", half, first + half, st);
	} else {
		report_info("DISCARD not offered (max %u sectors): skipped", b->max_discard_sectors);
	}
}

int main(int argc, char **argv)
{
	struct vblk b;
	const char *mode = param_str("mode", "write");
	uint64_t seed = param_u64("seed", 1);
	uint64_t mib = param_u64("mib", 4);
	uint64_t bytes = mib << 20;

	if (!vblk_open(&b, 0))
		fail("no virtio-blk device on the command line ('%s')", cmdline());
	printf("blk: device at 0x%lx irq %u capacity %lu sectors features 0x%lx%s\n", b.dev.base,
	       b.dev.irq, b.capacity, b.dev.features, b.ro ? " (read-only)" : "");
	uint8_t *buf = mem_alloc(CHUNK, 4096);
	test_id(&b);

	if (!strcmp(mode, "readonly")) {
		report(b.ro, "device offers VIRTIO_BLK_F_RO");
		int st = vblk_rw(&b, VIRTIO_BLK_T_IN, 0, buf, 4096);
		report(st == 0, "read works (status %d)", st);
		st = vblk_rw(&b, VIRTIO_BLK_T_OUT, 0, buf, 4096);
		report(st == VIRTIO_BLK_S_IOERR || st == VIRTIO_BLK_S_UNSUPP,
		       "write is refused (status %d)", st);
		return report_summary();
	}

	if (!mib || bytes / SECTOR > b.capacity)
		fail("mib=%lu does not fit the disk (%lu sectors)", mib, b.capacity);

	if (!strcmp(mode, "write")) {
		if (b.ro)
			fail("the disk is read-only");
		uint32_t crc = 0;
		for (uint64_t off = 0; off < bytes; off += CHUNK) {
			uint32_t n = (uint32_t)MIN((uint64_t)CHUNK, bytes - off);
			for (uint32_t i = 0; i < n; i += SECTOR)
				vblk_sector_fill(buf + i, (off + i) / SECTOR, seed);
			int st = vblk_rw(&b, VIRTIO_BLK_T_OUT, off / SECTOR, buf, n);
			if (st)
				fail("write at sector %lu failed with status %d", off / SECTOR, st);
			crc = crc32_update(crc, buf, n);
		}
		report(true, "wrote %lu MiB", mib);
		uint64_t bad;
		uint32_t crc2 = verify_region(&b, buf, bytes, seed, &bad);
		report(bad == 0 && crc2 == crc, "read back in the same boot: %lu bad sectors", bad);
		if (vblk_has(&b, VIRTIO_BLK_F_FLUSH))
			report(vblk_flush(&b) == 0, "FLUSH");
		else
			report_info("FLUSH not offered");
		test_zeroes_and_discard(&b, buf, bytes / SECTOR, seed);
		if (vblk_has(&b, VIRTIO_BLK_F_FLUSH))
			report(vblk_flush(&b) == 0, "final FLUSH");
		printf("blk: write mib=%lu seed=%lu crc32=0x%08x\n", mib, seed, crc);
	} else if (!strcmp(mode, "verify")) {
		uint64_t bad;
		uint32_t crc = verify_region(&b, buf, bytes, seed, &bad);
		report(bad == 0, "verify %lu MiB: %lu bad sectors", mib, bad);
		if (vblk_has(&b, VIRTIO_BLK_F_WRITE_ZEROES) &&
		    bytes / SECTOR + EXTRA_SECTORS <= b.capacity) {
			int st = vblk_rw(&b, VIRTIO_BLK_T_IN, bytes / SECTOR, buf,
					 EXTRA_SECTORS / 2 * SECTOR);
			report(st == 0 && all_zero(buf, EXTRA_SECTORS / 2 * SECTOR),
			       "zeroed area still reads as zeros");
		}
		printf("blk: verify mib=%lu seed=%lu crc32=0x%08x\n", mib, seed, crc);
	} else {
		fail("unknown mode=%s (write, verify, readonly)", mode);
	}
	report(!(virtio_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET), "device did not ask for a reset");
	return report_summary();
}
