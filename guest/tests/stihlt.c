/* stihlt.c: is "sti; hlt" atomic here? The STI interrupt shadow makes it so
 * on hardware: an interrupt already pending at the sti is taken once the
 * hlt has begun, and ends it. A host that delivers it between the two
 * instructions leaves the hlt waiting for another interrupt: with a
 * one-shot timer as the only source, for ever (a guest that "halted for
 * good"). Each of n rounds arms the one-shot LAPIC timer for `count` ticks,
 * waits in ring 3 (IF=0) until the interrupt is pending in the IRR, then
 * waits in ring 0 (wait_for_interrupt: sti; hlt) and checks where the
 * interrupt landed:
 *   "stihlt: n=N pending=P before_hlt=B ring3=R" and PASS when B == 0.
 * fixup=1 (default): the handler skips a hlt it interrupted (libtest's
 * workaround; the guest goes on and counts); fixup=0: it does not, and a
 * round that hits the race never ends (the test of the hang itself). */
#include "hw.h"

TEST_PROGRAM("stihlt");

#define VEC 0x40
#define LAPIC_IRR 0x200

static bool pending(void)
{
	return lapic_read(LAPIC_IRR + 0x10 * (VEC / 32)) & (1u << (VEC % 32));
}

int main(int argc, char **argv)
{
	uint64_t n = param_u64("n", 2000), count = param_u64("count", 2000);
	uint64_t pend = 0, ring3 = 0, timeouts = 0;

	wait_hlt_fixup = param_u64("fixup", 1) != 0;
	lapic_setup();
	printf("stihlt: n=%lu count=%lu fixup=%d\n", n, count, wait_hlt_fixup);
	for (uint64_t i = 1; i <= n; i++) {
		uint32_t before = irq_counts[VEC];
		uint64_t deadline = tsc_deadline_ms(1000);

		lapic_timer_oneshot(VEC, (uint32_t)count);
		while (!pending() && irq_counts[VEC] == before && !tsc_expired(deadline))
			cpu_relax();
		if (irq_counts[VEC] != before) {
			ring3++; /* taken in ring 3 despite IF=0: nothing to wait for */
			continue;
		}
		if (!pending()) {
			timeouts++;
			continue;
		}
		pend++;
		wait_for_interrupt();
		if (i % 500 == 0)
			printf("stihlt: %lu rounds, %lu interrupts before the hlt\n", i,
			       (uint64_t)irq_before_hlt);
	}
	printf("stihlt: n=%lu pending=%lu before_hlt=%lu ring3=%lu timeouts=%lu\n", n, pend,
	       (uint64_t)irq_before_hlt, ring3, timeouts);
	report(timeouts == 0, "the timer fired every round");
	report(irq_before_hlt == 0, "sti; hlt atomic: %lu of %lu pending interrupts taken before "
	       "the hlt", (uint64_t)irq_before_hlt, pend);
	return report_summary();
}
