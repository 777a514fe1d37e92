/* balloon.c: a minimal virtio-balloon driver. It touches a pool of pages
 * (pool_mib, default 16), reports the first report_mib of it as free
 * (free page reporting, 2 MiB ranges), answers statistics requests, and
 * follows the host's target for ever: inflating takes pages from the end
 * of the pool, deflating gives them back and writes them again. After each
 * change it checks that every page it still owns holds its pattern (so a
 * save/restore that lost or mixed pages fails) and prints
 * "balloon: actual N pages". All the work runs in ring 3. */
#include "virtio.h"

TEST_PROGRAM("balloon");

#define VIRTIO_ID_BALLOON 5
#define F_STATS_VQ        (1ul << 1)
#define F_DEFLATE_ON_OOM  (1ul << 2)
#define F_REPORTING       (1ul << 5)
#define PAGE              4096ul
#define BATCH             256
#define S_MEMFREE         4
#define S_MEMTOT          5

struct stat_entry {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

struct balloon {
	struct virtio_dev dev;
	struct virtq inflate, deflate, stats, report;
	uint8_t *pool;
	uint64_t pool_pages, report_pages, actual;
	uint32_t *pfns;
	struct stat_entry *st;
	uint64_t stats_sent;
};

static uint8_t pattern(uint64_t page)
{
	return (uint8_t)(0x5a ^ page);
}

static uint8_t *page_ptr(struct balloon *b, uint64_t i)
{
	return b->pool + i * PAGE;
}

/* Balloon page k (k = 0 first inflated) is pool page pool_pages - 1 - k. */
static uint64_t balloon_page(struct balloon *b, uint64_t k)
{
	return b->pool_pages - 1 - k;
}

static void send_pfns(struct balloon *b, struct virtq *q, uint64_t first_k, uint32_t n)
{
	struct vq_buf buf = { b->pfns, 4 * n, false };

	for (uint32_t i = 0; i < n; i++)
		b->pfns[i] = (uint32_t)((uint64_t)page_ptr(b, balloon_page(b, first_k + i)) / PAGE);
	if (!virtq_add(q, &buf, 1, b->pfns))
		fail("balloon: cannot queue a PFN list");
	virtq_kick(q);
	virtq_wait(q, NULL, 10000);
}

static void send_stats(struct balloon *b)
{
	struct vq_buf buf = { b->st, 2 * sizeof(*b->st), false };

	b->st[0] = (struct stat_entry){ S_MEMFREE, (b->pool_pages - b->actual) * PAGE };
	b->st[1] = (struct stat_entry){ S_MEMTOT, b->pool_pages * PAGE };
	if (!virtq_add(&b->stats, &buf, 1, b->st))
		fail("balloon: cannot queue statistics");
	virtq_kick(&b->stats);
	b->stats_sent++;
}

static void report_free(struct balloon *b)
{
	uint64_t chunk = (2ul << 20) / PAGE;

	for (uint64_t p = 0; p < b->report_pages; p += chunk) {
		uint64_t n = MIN(chunk, b->report_pages - p);
		struct vq_buf buf = { page_ptr(b, p), (uint32_t)(n * PAGE), true };

		if (!virtq_add(&b->report, &buf, 1, NULL))
			fail("balloon: cannot queue a report");
		virtq_kick(&b->report);
		virtq_wait(&b->report, NULL, 10000);
	}
	printf("balloon: reported %lu MiB\n", b->report_pages * PAGE >> 20);
}

/* Every page the driver owns and did not report holds its pattern. */
static void verify(struct balloon *b)
{
	for (uint64_t i = b->report_pages; i < b->pool_pages - b->actual; i++)
		if (page_ptr(b, i)[0] != pattern(i) || page_ptr(b, i)[PAGE - 1] != pattern(i))
			fail("balloon: page %lu lost its content (0x%x)", i, page_ptr(b, i)[0]);
}

static void follow(struct balloon *b, uint64_t target)
{
	target = MIN(target, b->pool_pages - b->report_pages);
	while (b->actual < target) {
		uint32_t n = (uint32_t)MIN((uint64_t)BATCH, target - b->actual);

		send_pfns(b, &b->inflate, b->actual, n);
		b->actual += n;
	}
	while (b->actual > target) {
		uint32_t n = (uint32_t)MIN((uint64_t)BATCH, b->actual - target);

		b->actual -= n;
		send_pfns(b, &b->deflate, b->actual, n);
		/* Ours again: use them. */
		for (uint32_t i = 0; i < n; i++) {
			uint64_t pg = balloon_page(b, b->actual + i);

			memset(page_ptr(b, pg), pattern(pg), PAGE);
		}
	}
	mmio_write32(b->dev.base + VIRTIO_MMIO_CONFIG + 4, (uint32_t)b->actual);
	verify(b);
	printf("balloon: actual %lu pages\n", b->actual);
}

int main(int argc, char **argv)
{
	struct balloon b = { 0 };
	uint64_t pool_mib = param_u64("pool_mib", 16), report_mib = param_u64("report_mib", 0);
	uint64_t last_target = ~0ul;

	if (!virtio_find(VIRTIO_ID_BALLOON, 0, &b.dev))
		fail("no virtio-balloon device on the command line ('%s')", cmdline());
	if (report_mib > pool_mib || (pool_mib << 20) + (1 << 20) > mem_available())
		fail("pool_mib=%lu report_mib=%lu do not fit", pool_mib, report_mib);
	b.pool_pages = (pool_mib << 20) / PAGE;
	b.report_pages = (report_mib << 20) / PAGE;
	b.pool = mem_alloc(pool_mib << 20, 2 << 20);
	b.pfns = mem_alloc(4 * BATCH, 64);
	b.st = mem_alloc(64, 64);
	for (uint64_t i = 0; i < b.pool_pages; i++)
		memset(page_ptr(&b, i), pattern(i), PAGE);
	printf("balloon: touched %lu MiB\n", pool_mib);

	virtio_begin(&b.dev, F_STATS_VQ | F_DEFLATE_ON_OOM | F_REPORTING);
	if ((b.dev.features & (F_STATS_VQ | F_REPORTING)) != (F_STATS_VQ | F_REPORTING))
		fail("balloon: features 0x%lx lack stats or reporting", b.dev.features);
	virtq_init(&b.inflate, &b.dev, 0, 16);
	virtq_init(&b.deflate, &b.dev, 1, 16);
	virtq_init(&b.stats, &b.dev, 2, 4);
	virtq_init(&b.report, &b.dev, 3, 16);
	virtio_driver_ok(&b.dev);
	send_stats(&b);
	if (b.report_pages)
		report_free(&b);
	printf("balloon: ready\n");
	for (;;) {
		uint64_t target = virtio_cfg32(&b.dev, 0);

		if (target != last_target) {
			follow(&b, target);
			last_target = target;
		}
		if (virtq_get(&b.stats, NULL, NULL)) {
			send_stats(&b);
			printf("balloon: stats sent %lu\n", b.stats_sent);
		}
		if (virtio_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET)
			fail("balloon: the device asks for a reset");
		delay_us(5000);
	}
	return report_summary();
}
