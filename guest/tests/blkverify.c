/* blkverify.c: virtio-blk under storage trouble, with no timeouts (a VM that
 * the host pauses while its storage is gone must simply carry on later).
 *   mode=fill seed=S mib=N qd=Q: write the first N MiB with the blk.c sector
 *        pattern, 64 KiB per request, Q in flight, "blkverify: progress M"
 *        every MiB; FLUSH; read everything back and check every sector;
 *        prints "blkverify: fill mib=N seed=S crc32=0x..." and PASS.
 *   mode=seq seed=S slots=N batch=B qd=Q rounds=R stride=X: crash consistency.
 *        Round r writes 4 KiB slot (r * 2654435761) % N (at slot * X bytes,
 *        default 4 KiB; a large stride spreads qcow2 metadata) holding (magic,
 *        r, slot, seed, pattern, crc32); after every B writes have
 *        completed it FLUSHes and prints "flushed r". R = 0: forever.
 *        verify=1 (with R > 0): after the last round, read every slot
 *        back and check it holds exactly the last round that wrote it
 *        (a stale block fails too: live migration with storage).
 *        resume=1: first read every slot, find the newest round M there and
 *        check every slot holds the last of rounds 1..M that wrote it
 *        ("blkverify: resumed at round M: ... (K bad)"), then go on from
 *        M + 1 (a VM failed over, then back: one history across hosts).
 *        shutdown=1: after each flushed batch, a key from the keyboard
 *        controller (the host's Ctrl-Alt-Del, a graceful stop) ends the
 *        rounds: "blkverify: shut down after round r", then power-off.
 *   mode=seqcheck ...: the same parameters; reads every slot back and
 *        checks it holds a valid block (or zeroes if never written).
 * Sector pattern: see blk.c. */
#include "virtio_blk.h"

TEST_PROGRAM("blkverify");

#define SECTOR 512
#define REQ (64u << 10)
#define SLOT 4096u
#define SEQ_MAGIC 0x5145534c4c4543ull /* "CELLSEQ" */

static int wait_one(struct vblk *b)
{
	int slot;
	while ((slot = vblk_poll(b)) < 0)
		__asm__ volatile("pause");
	return slot;
}

static void fill(struct vblk *b, uint64_t seed, uint64_t mib, unsigned qd)
{
	uint64_t bytes = mib << 20, next = 0, done = 0, last_mib = 0;
	uint8_t *bufs = mem_alloc((uint64_t)qd * REQ, 4096);
	uint64_t off_of[VBLK_MAX_INFLIGHT];
	uint32_t crc = 0;

	while (done < bytes) {
		int slot;
		while (next < bytes && (slot = vblk_free_slot(b)) >= 0 && slot < (int)qd) {
			uint8_t *p = bufs + (uint64_t)slot * REQ;
			for (uint32_t i = 0; i < REQ; i += SECTOR)
				vblk_sector_fill(p + i, (next + i) / SECTOR, seed);
			off_of[slot] = next;
			if (!vblk_submit(b, slot, VIRTIO_BLK_T_OUT, next / SECTOR, p, REQ))
				fail("ring full");
			next += REQ;
		}
		vblk_kick(b);
		slot = wait_one(b);
		if (b->reqs[slot].status)
			fail("write at %lu: status %d", off_of[slot], b->reqs[slot].status);
		done += REQ;
		if ((done >> 20) != last_mib) {
			last_mib = done >> 20;
			printf("blkverify: progress %lu\n", last_mib);
		}
	}
	report(vblk_flush(b) == 0, "FLUSH after %lu MiB", mib);
	uint64_t bad = 0;
	for (uint64_t off = 0; off < bytes; off += REQ) {
		uint8_t *p = bufs, want[SECTOR];
		int st = vblk_rw(b, VIRTIO_BLK_T_IN, off / SECTOR, p, REQ);
		if (st)
			fail("read at %lu: status %d", off, st);
		for (uint32_t i = 0; i < REQ; i += SECTOR) {
			vblk_sector_fill(want, (off + i) / SECTOR, seed);
			if (memcmp(want, p + i, SECTOR) && bad++ < 5)
				printf("blkverify: sector %lu is wrong\n", (off + i) / SECTOR);
		}
		crc = crc32_update(crc, p, REQ);
	}
	report(bad == 0, "read back %lu MiB: %lu bad sectors", mib, bad);
	printf("blkverify: fill mib=%lu seed=%lu crc32=0x%08x\n", mib, seed, crc);
}

static void seq_block(uint8_t *p, uint64_t r, uint64_t slot, uint64_t seed)
{
	uint64_t *w = (uint64_t *)p, st = seed ^ r;
	w[0] = SEQ_MAGIC;
	w[1] = r;
	w[2] = slot;
	w[3] = seed;
	for (unsigned i = 4; i < SLOT / 8 - 1; i++)
		w[i] = splitmix64(&st);
	((uint32_t *)p)[SLOT / 4 - 2] = 0;
	((uint32_t *)p)[SLOT / 4 - 1] = crc32(p, SLOT - 4);
}

static uint64_t stride_sectors(void)
{
	uint64_t x = param_u64("stride", SLOT);
	if (x < SLOT || x % SLOT)
		fail("stride=%lu must be a multiple of %u", x, SLOT);
	return x / SECTOR;
}

#define I8042_STATUS 0x64
#define I8042_DATA   0x60
#define PM1A_CNT     0x604
#define PM1_SLP_EN   0x2000

static uint64_t seqresume(struct vblk *b, uint64_t seed, uint64_t slots);

static uint64_t seq(struct vblk *b, uint64_t seed, uint64_t slots, unsigned batch, unsigned qd,
		    uint64_t rounds)
{
	uint8_t *bufs = mem_alloc((uint64_t)qd * SLOT, 4096);
	uint64_t r = 0, stride = stride_sectors();
	bool on_key = param_u64("shutdown", 0) != 0;

	if ((slots - 1) * stride + SLOT / SECTOR > b->capacity)
		fail("slots=%lu does not fit the disk", slots);
	if (param_u64("resume", 0))
		r = seqresume(b, seed, slots);
	printf("blkverify: seq slots=%lu batch=%u qd=%u seed=%lu\n", slots, batch, qd, seed);
	while (!rounds || r < rounds) {
		unsigned issued = 0, completed = 0;
		while (completed < batch) {
			int slot;
			while (issued < batch && (slot = vblk_free_slot(b)) >= 0 && slot < (int)qd) {
				uint64_t n = ++r, s = (n * 2654435761ull) % slots;
				seq_block(bufs + (uint64_t)slot * SLOT, n, s, seed);
				if (!vblk_submit(b, slot, VIRTIO_BLK_T_OUT, s * stride,
						 bufs + (uint64_t)slot * SLOT, SLOT))
					fail("ring full");
				issued++;
			}
			vblk_kick(b);
			slot = wait_one(b);
			if (b->reqs[slot].status)
				fail("write: status %d", b->reqs[slot].status);
			completed++;
		}
		int st = vblk_flush(b);
		if (st)
			fail("FLUSH: status %d", st);
		printf("flushed %lu\n", r);
		if (on_key && (inb(I8042_STATUS) & 1)) {
			(void)inb(I8042_DATA);
			printf("blkverify: shut down after round %lu\n", r);
			outw(PM1A_CNT, PM1_SLP_EN);
			fail("still running after the power-off request");
		}
	}
	return r; /* a whole number of batches: may pass `rounds` */
}

/* After R rounds: every slot holds the last round that wrote it. */
static void seqverify(struct vblk *b, uint64_t seed, uint64_t slots, uint64_t rounds)
{
	uint64_t *last = mem_alloc(slots * 8, 8), bad = 0, stride = stride_sectors();
	uint8_t *p = mem_alloc(SLOT, 4096);

	for (uint64_t s = 0; s < slots; s++)
		last[s] = 0;
	for (uint64_t n = 1; n <= rounds; n++)
		last[(n * 2654435761ull) % slots] = n;
	for (uint64_t s = 0; s < slots; s++) {
		const uint64_t *w = (const uint64_t *)p;
		if (vblk_rw(b, VIRTIO_BLK_T_IN, s * stride, p, SLOT))
			fail("read slot %lu", s);
		bool ok = last[s] ? w[0] == SEQ_MAGIC && w[1] == last[s] && w[2] == s &&
					    w[3] == seed &&
					    ((const uint32_t *)p)[SLOT / 4 - 1] == crc32(p, SLOT - 4)
				  : !w[0] && !w[1];
		if (!ok && bad++ < 5)
			printf("blkverify: slot %lu holds round %lu, want %lu\n", s, w[1], last[s]);
	}
	report(bad == 0, "after %lu rounds every slot holds its last write (%lu bad)", rounds,
	       bad);
}

/* resume=1: the newest round on the disk, after checking that every slot
 * holds the last of rounds 1..newest that wrote it. */
static uint64_t seqresume(struct vblk *b, uint64_t seed, uint64_t slots)
{
	uint64_t *held = mem_alloc(slots * 8, 8), newest = 0, bad = 0, stride = stride_sectors();
	uint8_t *p = mem_alloc(SLOT, 4096);

	for (uint64_t s = 0; s < slots; s++) {
		const uint64_t *w = (const uint64_t *)p;
		if (vblk_rw(b, VIRTIO_BLK_T_IN, s * stride, p, SLOT))
			fail("read slot %lu", s);
		held[s] = 0;
		if (!w[0] && !w[1])
			continue;
		if (w[0] != SEQ_MAGIC || w[2] != s || w[3] != seed ||
		    ((const uint32_t *)p)[SLOT / 4 - 1] != crc32(p, SLOT - 4)) {
			if (bad++ < 5)
				printf("blkverify: slot %lu is torn or foreign\n", s);
			continue;
		}
		held[s] = w[1];
		if (w[1] > newest)
			newest = w[1];
	}
	for (uint64_t n = newest; n >= 1; n--) { /* the last writer of each slot, newest first */
		uint64_t s = (n * 2654435761ull) % slots;
		if (held[s] == n)
			held[s] = ~0ull; /* matched */
		else if (held[s] != ~0ull) {
			if (bad++ < 5)
				printf("blkverify: slot %lu holds round %lu, want %lu\n", s, held[s], n);
			held[s] = ~0ull;
		}
	}
	for (uint64_t s = 0; s < slots; s++)
		if (held[s] != 0 && held[s] != ~0ull && bad++ < 5)
			printf("blkverify: slot %lu holds round %lu, never its last\n", s, held[s]);
	printf("blkverify: resumed at round %lu: every slot holds its last write (%lu bad)\n",
	       newest, bad);
	report(bad == 0, "resumed at round %lu, every slot holds its last write", newest);
	return newest;
}

static void seqcheck(struct vblk *b, uint64_t seed, uint64_t slots)
{
	uint8_t *p = mem_alloc(SLOT, 4096);
	uint64_t bad = 0, written = 0, stride = stride_sectors();
	for (uint64_t s = 0; s < slots; s++) {
		const uint64_t *w = (const uint64_t *)p;
		if (vblk_rw(b, VIRTIO_BLK_T_IN, s * stride, p, SLOT))
			fail("read slot %lu", s);
		if (!w[0] && !w[1])
			continue;
		written++;
		if (w[0] != SEQ_MAGIC || w[2] != s || w[3] != seed ||
		    ((const uint32_t *)p)[SLOT / 4 - 1] != crc32(p, SLOT - 4)) {
			if (bad++ < 5)
				printf("blkverify: slot %lu is torn or foreign\n", s);
		}
	}
	report(bad == 0, "%lu slots written, %lu bad", written, bad);
	uint64_t want = param_u64("expect", 0);
	if (want)
		report(written == want, "%lu slots written, expected %lu", written, want);
}

int main(int argc, char **argv)
{
	struct vblk b;
	const char *mode = param_str("mode", "fill");
	uint64_t seed = param_u64("seed", 1);
	unsigned qd = (unsigned)param_u64("qd", 8);

	if (!vblk_open(&b, 0))
		fail("no virtio-blk device on the command line ('%s')", cmdline());
	if (!qd || qd > VBLK_MAX_INFLIGHT)
		fail("qd=%u out of range", qd);
	if (!strcmp(mode, "fill")) {
		uint64_t mib = param_u64("mib", 8);
		if (!mib || (mib << 20) / SECTOR > b.capacity)
			fail("mib=%lu does not fit the disk", mib);
		fill(&b, seed, mib, qd);
	} else if (!strcmp(mode, "seq")) {
		uint64_t slots = param_u64("slots", 2048), rounds = param_u64("rounds", 0);
		uint64_t done = seq(&b, seed, slots, (unsigned)param_u64("batch", 16), qd, rounds);
		if (rounds && param_u64("verify", 0))
			seqverify(&b, seed, slots, done);
	} else if (!strcmp(mode, "seqcheck")) {
		seqcheck(&b, seed, param_u64("slots", 2048));
	} else {
		fail("unknown mode=%s (fill, seq, seqcheck)", mode);
	}
	return report_summary();
}
