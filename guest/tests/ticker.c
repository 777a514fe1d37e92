/* ticker.c: an idle guest for scale tests: prints "ticker: ready", then
 * "ticker: N" every period_ms (default 1000; 1-4000) and sleeps in between
 * in ring 0 (sti; hlt until the LAPIC timer fires), so that hundreds of
 * them share a few host cores (bench/pool_scale.py, pool-scale). rounds=0
 * (the default) runs forever. */
#include "hw.h"

TEST_PROGRAM("ticker");

int main(int argc, char **argv)
{
	uint64_t period_ms = param_u64("period_ms", 1000);
	uint64_t rounds = param_u64("rounds", 0);
	/* The LAPIC timer's count is 32 bits at 1 GHz: about 4.29 s at most. */
	if (!period_ms || period_ms > 4000)
		fail("period_ms=%lu out of range (1-4000)", period_ms);
	lapic_setup();
	printf("ticker: ready period_ms=%lu\n", period_ms);
	for (uint64_t r = 1; !rounds || r <= rounds; r++) {
		/* Waits for the watchdog itself: the timer is the only wake-up. */
		wait_irq_count(WATCHDOG_VECTOR, irq_counts[WATCHDOG_VECTOR], (uint32_t)period_ms);
		printf("ticker: %lu\n", r);
	}
	printf("PASS ticker\n");
	return 0;
}
