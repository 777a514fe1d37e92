/* halog.c: the guest-side proof that an HA VM never runs twice at once
 * (tests/pool/test_pool_ha.py). Each boot draws a random boot id from
 * virtio-rng, finds the first empty sector of its virtio-blk disk (on pool
 * storage, shared by every host) and appends one record per sector from
 * there: (magic, boot id, sequence from 0, crc32), FLUSHed before the next,
 * "halog: N" on the console after each, every pause_ms. Two copies running
 * at once would overwrite each other's records or interleave them; the
 * checker (the test, on the host) requires that the records form one run
 * per boot id, each with sequences 0, 1, 2, ... and no boot id twice.
 *   pause_ms=M (default 20) count=N (0: forever) */
#include "virtio.h"
#include "virtio_blk.h"

TEST_PROGRAM("halog");

#define SECTOR 512
#define HALOG_MAGIC 0x474f4c4148414c43ull /* "CLAHALOG" */

static uint64_t boot_id(void)
{
	struct virtio_dev dev;
	struct virtq q;
	uint64_t id = 0;
	uint32_t got = 0;
	uint8_t *buf = mem_alloc(64, 64);
	struct vq_buf b = { buf, 8, true };

	if (!virtio_find(VIRTIO_ID_RNG, 0, &dev))
		fail("no virtio-rng device: the boot id comes from it");
	virtio_begin(&dev, 0);
	virtq_init(&q, &dev, 0, 16);
	virtio_driver_ok(&dev);
	if (!virtq_add(&q, &b, 1, buf))
		fail("rng: cannot queue a buffer");
	virtq_kick(&q);
	virtq_wait(&q, &got, 10000);
	if (got < 8)
		fail("rng: %u bytes", got);
	memcpy(&id, buf, 8);
	return id ? id : 1;
}

int main(int argc, char **argv)
{
	struct vblk b;
	uint64_t id = boot_id(), pause_ms = param_u64("pause_ms", 20);
	uint64_t count = param_u64("count", 0), at = 0;
	uint8_t *p = mem_alloc(SECTOR, 4096);
	uint64_t *w = (uint64_t *)p;

	if (!vblk_open(&b, 0))
		fail("no virtio-blk device on the command line ('%s')", cmdline());
	/* The first empty sector: after the records of earlier copies. */
	for (; at < b.capacity; at++) {
		if (vblk_rw(&b, VIRTIO_BLK_T_IN, at, p, SECTOR))
			fail("read sector %lu", at);
		if (w[0] != HALOG_MAGIC)
			break;
	}
	printf("halog: boot %016lx appends from sector %lu\n", id, at);
	for (uint64_t seq = 0; (!count || seq < count) && at < b.capacity; seq++, at++) {
		memset(p, 0, SECTOR);
		w[0] = HALOG_MAGIC;
		w[1] = id;
		w[2] = seq;
		((uint32_t *)p)[SECTOR / 4 - 1] = crc32(p, SECTOR - 4);
		if (vblk_rw(&b, VIRTIO_BLK_T_OUT, at, p, SECTOR) || vblk_flush(&b))
			fail("write sector %lu", at);
		printf("halog: %lu\n", seq);
		if (pause_ms)
			delay_us(pause_ms * 1000);
	}
	return report_summary();
}
