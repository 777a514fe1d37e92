/* memload.c: a guest whose memory use changes on command, with a
 * virtio-balloon driver that behaves like Linux's, for dynamic memory
 * (docs/memory.md, "Dynamic memory").
 *
 * Its RAM (every page above the image) is a pool of 4 KiB pages, each
 * free, used (anonymous memory: never given up), cache (reclaimable, like
 * Linux's page cache) or in the balloon. Console commands, one a line:
 *   use N      used memory becomes N MiB (pages written with a pattern)
 *   cache N    cache becomes N MiB
 *   check      every used page still holds its pattern
 * and the command line's use=N cache=N set them at start. Pages it stops
 * using are reported free at once (free page reporting), so the host
 * drops them. The balloon follows the host's target: it takes free pages
 * first, then drops cache, never used pages (so a target below the
 * guest's use is not reached); a guest that needs pages takes cache, then
 * deflates the balloon (deflate-on-OOM). Statistics: total = the pool
 * (balloon included, as Linux counts it with deflate-on-OOM), free, and
 * available = free + cache. After each change it prints
 * "memload: used U cache C balloon B free F" (MiB). It sleeps on the
 * LAPIC timer between looks (20 ms), so idle VMs cost the host little. */
#include "hw.h"
#include "virtio.h"

TEST_PROGRAM("memload");

#define VIRTIO_ID_BALLOON 5
#define F_STATS_VQ        (1ul << 1)
#define F_DEFLATE_ON_OOM  (1ul << 2)
#define F_REPORTING       (1ul << 5)
#define PAGE              4096ul
#define BATCH             1024 /* the host takes up to 1024 PFNs a buffer */
#define REPORT_MAX        (4ul << 20)
#define S_MEMFREE         4
#define S_MEMTOT          5
#define S_AVAIL           6
#define MIB_PAGES         ((1ul << 20) / PAGE)
#define LAPIC_TIMER_PERIODIC (1u << 17)

enum { P_FREE, P_USED, P_CACHE, P_BALLOON };

struct stat_entry {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

struct ml {
	struct virtio_dev dev;
	struct virtq inflate, deflate, stats, report;
	uint8_t *pool, *state;
	uint64_t pages, count[4];
	uint32_t *pfns;
	struct stat_entry *st;
	uint64_t hz;
};

static uint8_t *page_ptr(struct ml *m, uint64_t i)
{
	return m->pool + i * PAGE;
}

static uint8_t pattern(uint64_t page)
{
	return (uint8_t)(0xa5 ^ page ^ (page >> 8));
}

static void set_state(struct ml *m, uint64_t i, uint8_t s)
{
	m->count[m->state[i]]--;
	m->count[s]++;
	m->state[i] = s;
}

static void send_pfns(struct ml *m, struct virtq *q, uint32_t n)
{
	struct vq_buf buf = { m->pfns, 4 * n, false };

	if (!virtq_add(q, &buf, 1, m->pfns))
		fail("memload: cannot queue a PFN list");
	virtq_kick(q);
	virtq_wait(q, NULL, 30000);
}

/* Report pages [first, first + n) free (they are free now). */
static void report_range(struct ml *m, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t len = MIN(n * PAGE, REPORT_MAX);
		struct vq_buf buf = { page_ptr(m, first), (uint32_t)len, true };

		if (!virtq_add(&m->report, &buf, 1, NULL))
			fail("memload: cannot queue a report");
		virtq_kick(&m->report);
		virtq_wait(&m->report, NULL, 30000);
		first += len / PAGE;
		n -= len / PAGE;
	}
}

/* Pages of state `from` become free, from the top, n of them; reported. */
static uint64_t release(struct ml *m, uint8_t from, uint64_t n)
{
	uint64_t done = 0, run_end = 0, run = 0;

	for (uint64_t i = m->pages; i-- > 0 && done < n;) {
		if (m->state[i] != from)
			continue;
		set_state(m, i, P_FREE);
		done++;
		if (run && i + 1 == run_end - run) {
			run++;
		} else {
			if (run)
				report_range(m, run_end - run, run);
			run_end = i + 1;
			run = 1;
		}
	}
	if (run)
		report_range(m, run_end - run, run);
	return done;
}

/* Take n pages out of the balloon (deflate), lowest first; they are free. */
static uint64_t deflate(struct ml *m, uint64_t n)
{
	uint64_t done = 0;
	uint32_t k = 0;

	for (uint64_t i = 0; i < m->pages && done < n; i++) {
		if (m->state[i] != P_BALLOON)
			continue;
		set_state(m, i, P_FREE);
		m->pfns[k++] = (uint32_t)((uint64_t)(uintptr_t)page_ptr(m, i) / PAGE);
		done++;
		if (k == BATCH) {
			send_pfns(m, &m->deflate, k);
			k = 0;
		}
	}
	if (k)
		send_pfns(m, &m->deflate, k);
	return done;
}

/* Put n pages in the balloon: free ones first, then cache; the highest
 * first, sent in ascending runs. */
static uint64_t inflate(struct ml *m, uint64_t n)
{
	uint64_t done = 0;

	for (int pass = 0; pass < 2 && done < n; pass++) {
		uint8_t from = pass ? P_CACHE : P_FREE;
		uint32_t k = 0;

		for (uint64_t i = 0; i < m->pages && done < n; i++) {
			if (m->state[i] != from)
				continue;
			set_state(m, i, P_BALLOON);
			m->pfns[k++] = (uint32_t)((uint64_t)(uintptr_t)page_ptr(m, i) / PAGE);
			done++;
			if (k == BATCH) {
				send_pfns(m, &m->inflate, k);
				k = 0;
			}
		}
		if (k)
			send_pfns(m, &m->inflate, k);
	}
	return done;
}

/* n more pages of state `to` (used or cache), written: free pages, then
 * cache (for used), then the balloon (deflate-on-OOM). */
static void grow(struct ml *m, uint8_t to, uint64_t n)
{
	uint64_t got = 0;

	if (m->count[P_FREE] < n && to == P_USED)
		release(m, P_CACHE, MIN(n - m->count[P_FREE], m->count[P_CACHE]));
	if (m->count[P_FREE] < n)
		deflate(m, n - m->count[P_FREE]);
	for (uint64_t i = 0; i < m->pages && got < n; i++) {
		if (m->state[i] != P_FREE)
			continue;
		set_state(m, i, to);
		memset(page_ptr(m, i), to == P_USED ? pattern(i) : 0x33, PAGE);
		got++;
	}
	if (got < n)
		printf("memload: out of memory: %lu MiB short\n", (n - got) / MIB_PAGES);
}

static void set_count(struct ml *m, uint8_t what, uint64_t mib)
{
	uint64_t want = mib * MIB_PAGES;

	if (want > m->count[what])
		grow(m, what, want - m->count[what]);
	else
		release(m, what, m->count[what] - want);
}

static void show(struct ml *m)
{
	printf("memload: used %lu cache %lu balloon %lu free %lu\n", m->count[P_USED] / MIB_PAGES,
	       m->count[P_CACHE] / MIB_PAGES, m->count[P_BALLOON] / MIB_PAGES,
	       m->count[P_FREE] / MIB_PAGES);
}

static void check(struct ml *m)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < m->pages; i++)
		if (m->state[i] == P_USED &&
		    (page_ptr(m, i)[0] != pattern(i) || page_ptr(m, i)[PAGE - 1] != pattern(i)))
			bad++;
	if (bad)
		fail("memload: %lu used pages lost their content", bad);
	printf("memload: check ok (%lu MiB)\n", m->count[P_USED] / MIB_PAGES);
}

static void send_stats(struct ml *m)
{
	struct vq_buf buf = { m->st, 3 * sizeof(*m->st), false };

	m->st[0] = (struct stat_entry){ S_MEMFREE, m->count[P_FREE] * PAGE };
	m->st[1] = (struct stat_entry){ S_MEMTOT, m->pages * PAGE };
	m->st[2] = (struct stat_entry){ S_AVAIL, (m->count[P_FREE] + m->count[P_CACHE]) * PAGE };
	if (!virtq_add(&m->stats, &buf, 1, m->st))
		fail("memload: cannot queue statistics");
	virtq_kick(&m->stats);
}

static void follow_target(struct ml *m)
{
	uint64_t target = virtio_cfg32(&m->dev, 0), have = m->count[P_BALLOON];

	if (target > have)
		inflate(m, target - have);
	else if (target < have)
		deflate(m, have - target);
	else
		return;
	mmio_write32(m->dev.base + VIRTIO_MMIO_CONFIG + 4, (uint32_t)m->count[P_BALLOON]);
	show(m);
}

static void command(struct ml *m, char *line)
{
	uint64_t n;

	if (!strncmp(line, "use ", 4) && parse_u64(line + 4, &n)) {
		set_count(m, P_USED, n);
	} else if (!strncmp(line, "cache ", 6) && parse_u64(line + 6, &n)) {
		set_count(m, P_CACHE, n);
	} else if (!strcmp(line, "check")) {
		check(m);
		return;
	} else {
		printf("memload: unknown command '%s'\n", line);
		return;
	}
	mmio_write32(m->dev.base + VIRTIO_MMIO_CONFIG + 4, (uint32_t)m->count[P_BALLOON]);
	show(m);
}

static void nap(struct ml *m, uint64_t ms)
{
	uint64_t until = rdtsc() + m->hz / 1000 * ms;

	lapic_write(LAPIC_TIMER_DIV, 0xB);
	lapic_write(LAPIC_LVT_TIMER, WATCHDOG_VECTOR | LAPIC_TIMER_PERIODIC);
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)(ms * 1000000)); /* KVM: 1 GHz */
	while (!tsc_expired(until))
		wait_for_interrupt();
	lapic_write(LAPIC_TIMER_INIT, 0);
}

int main(int argc, char **argv)
{
	struct ml m = { 0 };
	char line[64];
	size_t len = 0;
	uint64_t avail;

	(void)argc;
	(void)argv;
	if (!virtio_find(VIRTIO_ID_BALLOON, 0, &m.dev))
		fail("no virtio-balloon device on the command line ('%s')", cmdline());
	lapic_setup();
	m.hz = tsc_hz();
	virtio_begin(&m.dev, F_STATS_VQ | F_DEFLATE_ON_OOM | F_REPORTING);
	if ((m.dev.features & (F_STATS_VQ | F_REPORTING)) != (F_STATS_VQ | F_REPORTING))
		fail("memload: features 0x%lx lack stats or reporting", m.dev.features);
	virtq_init(&m.inflate, &m.dev, 0, 16);
	virtq_init(&m.deflate, &m.dev, 1, 16);
	virtq_init(&m.stats, &m.dev, 2, 4);
	virtq_init(&m.report, &m.dev, 3, 16);
	virtio_driver_ok(&m.dev);
	m.pfns = mem_alloc(4 * BATCH, 64);
	m.st = mem_alloc(64, 64);
	avail = mem_available();
	if (avail < (8ul << 20))
		fail("memload: only %lu KiB of memory", avail >> 10);
	/* One state byte per page, then the pool: the rest, 2 MiB aligned.
	 * mem_alloc clears what it gives, so the pool is taken by hand (the
	 * last allocation) to stay untouched until it is used. */
	m.pages = (avail - (4ul << 20)) / (PAGE + 1);
	m.state = mem_alloc(m.pages, 64);
	m.pool = mem_alloc(0, 2ul << 20);
	m.pages = MIN(m.pages, mem_available() / PAGE);
	m.count[P_FREE] = m.pages;
	set_count(&m, P_USED, param_u64("use", 0));
	set_count(&m, P_CACHE, param_u64("cache", 0));
	send_stats(&m);
	printf("memload: ready, %lu MiB\n", m.pages / MIB_PAGES);
	show(&m);
	for (;;) {
		int c;

		follow_target(&m);
		if (virtq_get(&m.stats, NULL, NULL))
			send_stats(&m);
		while ((c = console_getc()) >= 0) {
			if (c == '\r' || c == '\n') {
				line[len] = 0;
				if (len)
					command(&m, line);
				len = 0;
			} else if (len < sizeof(line) - 1) {
				line[len++] = (char)c;
			}
		}
		if (virtio_status(&m.dev) & VIRTIO_STATUS_NEEDS_RESET)
			fail("memload: the device asks for a reset");
		nap(&m, 20);
	}
	return report_summary();
}
