/* memwriter.c: keeps rewriting mib=N MiB of RAM and checks, before each
 * round, that the previous round's contents are all still there: lost,
 * stale or duplicated pages after a checkpoint/restore or a migration show
 * up as a mismatch. Word i of round r is ((r << 40) | i) * an odd constant,
 * distinct for every (r, i). rounds=0 runs forever; pause_ms=M waits
 * between rounds. Prints "memwriter: round R checksum C" per round. */
#include "hw.h"

TEST_PROGRAM("memwriter");

static inline uint64_t word_value(uint64_t round, uint64_t i)
{
	return ((round << 40) | i) * 0x9E3779B97F4A7C15ull;
}

int main(int argc, char **argv)
{
	uint64_t mib = param_u64("mib", 16);
	uint64_t rounds = param_u64("rounds", 3);
	uint64_t pause_ms = param_u64("pause_ms", 0);
	uint64_t words = (mib << 20) / 8;
	if (!mib || words >= (1ull << 40))
		fail("mib=%lu out of range", mib);
	if ((mib << 20) > mem_available())
		fail("mib=%lu does not fit: %lu MiB of RAM free", mib, mem_available() >> 20);
	volatile uint64_t *mem = mem_alloc(mib << 20, 2u << 20);
	printf("memwriter: ready mib=%lu rounds=%lu base=%p\n", mib, rounds, (void *)mem);

	for (uint64_t r = 1; !rounds || r <= rounds; r++) {
		if (r > 1) {
			for (uint64_t i = 0; i < words; i++) {
				uint64_t want = word_value(r - 1, i);
				if (mem[i] != want) {
					uint64_t got = mem[i];
					fail("round %lu: word %lu at %p is 0x%lx, want 0x%lx (round %lu index %lu)",
					     r - 1, i, (void *)&mem[i], got, want,
					     (got * 0xF1DE83E19937733Dul) >> 40, /* decoded with the inverse */
					     (got * 0xF1DE83E19937733Dul) & ((1ul << 40) - 1));
				}
			}
		}
		uint64_t sum = 0;
		for (uint64_t i = 0; i < words; i++) {
			uint64_t v = word_value(r, i);
			mem[i] = v;
			sum = ((sum << 1) | (sum >> 63)) ^ v;
		}
		printf("memwriter: round %lu checksum 0x%016lx\n", r, sum);
		if (pause_ms)
			delay_us(pause_ms * 1000);
	}
	printf("PASS memwriter\n");
	return 0;
}
