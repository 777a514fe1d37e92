/* memidle.c: the density guest. It touches mib=N MiB of RAM (every 4 KiB
 * page written with a pattern that depends only on seed=S and the page's
 * index, so VMs with the same seed hold identical pages that page sharing
 * can merge), optionally gives them back through virtio-balloon free page
 * reporting (report=1: the guest "frees" what it touched, as a Linux guest
 * reports pages it freed), prints "memidle: idle touched=N reported=R" and
 * then halts for ever (cli; hlt): an idle VM that costs the host no CPU,
 * only the memory it still holds. All the writing runs in ring 3. */
#include "virtio.h"

TEST_PROGRAM("memidle");

#define VIRTIO_ID_BALLOON 5
#define F_REPORTING       (1ul << 5)
#define PAGE              4096ul
#define CHUNK             (2ul << 20) /* reporting granularity, as Linux's */

static uint64_t page_word(uint64_t seed, uint64_t page)
{
	return ((seed << 40) | page) * 0x9E3779B97F4A7C15ull;
}

/* Reports [mem, mem + bytes) free in 2 MiB ranges; returns the bytes the
 * device took. Without the reporting queue (stats off) it is queue 2. */
static uint64_t report_free(uint8_t *mem, uint64_t bytes)
{
	struct virtio_dev dev;
	struct virtq q;
	uint64_t done = 0;

	if (!virtio_find(VIRTIO_ID_BALLOON, 0, &dev))
		fail("report=1 needs a virtio-balloon device ('%s')", cmdline());
	virtio_begin(&dev, F_REPORTING);
	if (!(dev.features & F_REPORTING))
		fail("the balloon does not offer free page reporting (0x%lx)", dev.features);
	virtq_init(&q, &dev, 2, 4);
	virtio_driver_ok(&dev);
	for (uint64_t off = 0; off < bytes; off += CHUNK) {
		struct vq_buf buf = { mem + off, (uint32_t)MIN(CHUNK, bytes - off), true };

		if (!virtq_add(&q, &buf, 1, NULL))
			fail("cannot queue a report");
		virtq_kick(&q);
		virtq_wait(&q, NULL, 120000); /* a loaded host may starve the worker */
		done += buf.len;
	}
	if (virtio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET)
		fail("the balloon asks for a reset");
	return done;
}

int main(int argc, char **argv)
{
	uint64_t mib = param_u64("mib", 32), seed = param_u64("seed", 0);
	uint64_t report = param_u64("report", 0), reported = 0;
	uint8_t *mem;

	if (!mib || (mib << 20) + (1 << 20) > mem_available())
		fail("mib=%lu does not fit: %lu MiB of RAM free", mib, mem_available() >> 20);
	mem = mem_alloc(mib << 20, CHUNK);
	for (uint64_t p = 0; p < (mib << 20) / PAGE; p++) {
		volatile uint64_t *w = (volatile uint64_t *)(mem + p * PAGE);

		for (uint64_t i = 0; i < PAGE / 8; i++)
			w[i] = page_word(seed, p) ^ i;
	}
	if (report)
		reported = report_free(mem, mib << 20);
	printf("memidle: idle touched=%lu reported=%lu\n", mib, reported >> 20);
	for (;;)
		ring0_request(REQ_HALT, 0, 0);
	return 0;
}
