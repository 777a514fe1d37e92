/* blkbench.c: virtio-blk throughput and latency on the first disk, each
 * test between "blkbench: begin <test>" / "blkbench: end <test>" markers,
 * followed by "blkbench: <test> ops=N bytes=B tsc=T us=U".
 *   randread-qd1, randread-qd32: ops=N (default 2000) 4 KiB reads at
 *   random 4 KiB offsets inside the first span=M MiB (default: whole disk);
 *   randwrite-qd1, randwrite-qd32: the same with 4 KiB writes;
 *   seqwrite, seqread: mib=M (default 64) in 1 MiB requests from sector 0.
 *   tests=a,b,... picks a subset. The disk's contents are overwritten. */
#include "virtio_blk.h"

TEST_PROGRAM("blkbench");

#define QD_MAX 32
#define BLOCK 4096

static bool wanted(const char *test)
{
	const char *list = param_get("tests");
	if (!list)
		return true;
	size_t n = strlen(test);
	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, test, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

static void begin(const char *test) { printf("blkbench: begin %s\n", test); }

static void finish(const char *test, uint64_t ops, uint64_t bytes, uint64_t tsc)
{
	printf("blkbench: end %s\n", test);
	printf("blkbench: %s ops=%lu bytes=%lu tsc=%lu us=%lu\n", test, ops, bytes, tsc,
	       tsc / (tsc_hz() / 1000000));
}

/* Reaps every completion there is; returns how many, failing on errors. */
static uint64_t reap(struct vblk *b)
{
	uint64_t n = 0;
	int slot;
	while ((slot = vblk_poll(b)) >= 0) {
		if (b->reqs[slot].status)
			fail("request failed with status %u", b->reqs[slot].status);
		n++;
	}
	return n;
}

static void randio(struct vblk *b, const char *test, uint32_t type, int qd, uint64_t ops,
		   uint64_t span_blocks, uint8_t *bufs)
{
	uint64_t rng = param_u64("seed", 1) * 0x9E3779B97F4A7C15ull + (uint64_t)qd;
	uint64_t submitted = 0, done = 0;
	uint64_t deadline = tsc_deadline_ms(VBLK_TIMEOUT_MS * 10);
	begin(test);
	uint64_t t = rdtsc();
	while (done < ops) {
		bool queued = false;
		while (submitted < ops && submitted - done < (uint64_t)qd) {
			int slot = vblk_free_slot(b);
			uint64_t blk = splitmix64(&rng) % span_blocks;
			if (slot < 0 || !vblk_submit(b, slot, type, blk * (BLOCK / 512),
						     bufs + (uint64_t)slot * BLOCK, BLOCK))
				break;
			submitted++;
			queued = true;
		}
		if (queued)
			vblk_kick(b);
		uint64_t n;
		while (!(n = reap(b))) {
			if (tsc_expired(deadline))
				fail("%s: stuck with %lu requests in flight", test, submitted - done);
			cpu_relax();
		}
		done += n;
	}
	finish(test, done, done * BLOCK, rdtsc() - t);
}

static void sequential(struct vblk *b, const char *test, uint32_t type, uint64_t bytes,
		       uint8_t *buf)
{
	begin(test);
	uint64_t t = rdtsc(), ops = 0;
	for (uint64_t off = 0; off < bytes; off += b->max_bytes, ops++) {
		uint32_t n = (uint32_t)MIN((uint64_t)b->max_bytes, bytes - off);
		int st = vblk_rw(b, type, off / 512, buf, n);
		if (st)
			fail("%s at sector %lu: status %d", test, off / 512, st);
	}
	finish(test, ops, bytes, rdtsc() - t);
}

int main(int argc, char **argv)
{
	struct vblk b;
	if (!vblk_open(&b, 0))
		fail("no virtio-blk device on the command line ('%s')", cmdline());
	uint64_t ops = param_u64("ops", 2000);
	uint64_t mib = param_u64("mib", 64);
	uint64_t disk_bytes = b.capacity * 512;
	uint64_t span = MIN(param_u64("span", disk_bytes >> 20) << 20, disk_bytes);
	printf("blkbench: disk %lu MiB, span %lu MiB, %lu random ops, %lu MiB sequential\n",
	       disk_bytes >> 20, span >> 20, ops, mib);
	if (span < BLOCK || (mib << 20) > disk_bytes)
		fail("disk of %lu bytes too small for span/mib", disk_bytes);

	uint8_t *bufs = mem_alloc((uint64_t)QD_MAX * BLOCK, 4096);
	uint8_t *big = mem_alloc(1u << 20, 4096);
	for (uint32_t i = 0; i < (1u << 20); i += 8)
		*(uint64_t *)(big + i) = i * 0x9E3779B97F4A7C15ull;

	if (wanted("seqwrite") && !b.ro)
		sequential(&b, "seqwrite", VIRTIO_BLK_T_OUT, mib << 20, big);
	if (wanted("seqread"))
		sequential(&b, "seqread", VIRTIO_BLK_T_IN, mib << 20, big);
	if (wanted("randread-qd1"))
		randio(&b, "randread-qd1", VIRTIO_BLK_T_IN, 1, ops, span / BLOCK, bufs);
	if (wanted("randread-qd32"))
		randio(&b, "randread-qd32", VIRTIO_BLK_T_IN, QD_MAX, ops, span / BLOCK, bufs);
	/* Only when asked: the default run keeps its historical set. */
	if (param_get("tests") && wanted("randwrite-qd1") && !b.ro)
		randio(&b, "randwrite-qd1", VIRTIO_BLK_T_OUT, 1, ops, span / BLOCK, bufs);
	if (param_get("tests") && wanted("randwrite-qd32") && !b.ro)
		randio(&b, "randwrite-qd32", VIRTIO_BLK_T_OUT, QD_MAX, ops, span / BLOCK, bufs);
	report(true, "benchmarks ran");
	return report_summary();
}
