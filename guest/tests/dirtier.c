/* dirtier.c: dirties guest memory at a steady rate, for live-migration tests
 * and benchmarks. rate=R MiB/s over a working set of mib=N MiB (pages
 * written in order, round after round); every page carries a stamp of the
 * round that wrote it (first and last word), checked when the page comes
 * round again, so a page lost or left stale by a migration fails the
 * program. Every tick_ms it prints "dirtier: tick T round R pages P": the
 * ticks count up by one with nothing lost or repeated across a migration.
 * fill=1 first writes the whole working set once (a guest whose memory is
 * all in use); seconds=S ends it (0: forever). Runs in ring 3 at native
 * speed. */
#include "hw.h"

TEST_PROGRAM("dirtier");

#define PAGE 4096u

static inline uint64_t stamp(uint64_t round, uint64_t page)
{
	return ((round << 32) | page) * 0x9E3779B97F4A7C15ull;
}

int main(int argc, char **argv)
{
	uint64_t mib = param_u64("mib", 64);
	uint64_t rate = param_u64("rate", 16);
	uint64_t tick_ms = param_u64("tick_ms", 100);
	uint64_t seconds = param_u64("seconds", 0);
	bool fill = param_u64("fill", 0) != 0;
	uint64_t pages = (mib << 20) / PAGE;
	if (!mib || !tick_ms || pages >= (1ull << 32))
		fail("mib=%lu tick_ms=%lu out of range", mib, tick_ms);
	if ((mib << 20) > mem_available())
		fail("mib=%lu does not fit: %lu MiB of RAM free", mib, mem_available() >> 20);
	volatile uint64_t *mem = mem_alloc(mib << 20, 2u << 20);
	uint64_t hz = tsc_hz();
	/* Pages due per TSC tick, as a 32.32 fixed-point fraction. */
	uint64_t per_ms_fp = rate ? (rate << 20) / PAGE * (1ull << 32) / 1000 : 0;
	if (fill)
		for (uint64_t i = 0; i < pages; i++)
			mem[i * (PAGE / 8)] = mem[i * (PAGE / 8) + PAGE / 8 - 1] = stamp(0, i);
	printf("dirtier: ready mib=%lu rate=%lu MiB/s tick_ms=%lu\n", mib, rate, tick_ms);

	uint64_t start = rdtsc(), next_tick = start + hz / 1000 * tick_ms, tick = 0;
	uint64_t written = 0, round = 1, page = 0, due_fp = 0, last = start;
	for (;;) {
		uint64_t now = rdtsc();
		/* Whole milliseconds since the last step; the remainder waits. */
		uint64_t ms = (now - last) / (hz / 1000);
		if (ms > 1000)
			ms = 1000; /* a long pause (migration): no burst of a whole backlog */
		if (ms) {
			last += ms * (hz / 1000);
			due_fp += ms * per_ms_fp;
		}
		while (due_fp >= (1ull << 32)) {
			volatile uint64_t *p = mem + page * (PAGE / 8);
			if (round > 1 || fill) {
				uint64_t want = stamp(round - 1, page);
				if (p[0] != want || p[PAGE / 8 - 1] != want)
					fail("page %lu of round %lu: stamp 0x%lx/0x%lx, want 0x%lx", page,
					     round - 1, p[0], p[PAGE / 8 - 1], want);
			}
			p[0] = p[PAGE / 8 - 1] = stamp(round, page);
			written++;
			due_fp -= 1ull << 32;
			if (++page == pages) {
				page = 0;
				round++;
			}
		}
		if (now >= next_tick) {
			tick++;
			next_tick += hz / 1000 * tick_ms;
			printf("dirtier: tick %lu round %lu pages %lu\n", tick, round, written);
			if (seconds && tick * tick_ms >= seconds * 1000)
				break;
		}
		cpu_relax();
	}
	printf("PASS dirtier\n");
	return 0;
}
