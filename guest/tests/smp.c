/* smp.c: starts every application processor listed in the MP table with
 * INIT-SIPI-SIPI; each AP (start.S: real mode -> 32-bit -> long mode, ring
 * 0, own stack) takes a ticket, records its LAPIC id and checks in. The BSP
 * waits a bounded time for all of them. cpus=N makes the count a check. */
#include "hw.h"

TEST_PROGRAM("smp");


int main(int argc, char **argv)
{
	struct mp_cpu cpus[MAX_CPUS];
	int n = mptable_cpus(cpus, MAX_CPUS);
	if (n < 0)
		fail("no valid MP table in 0x9FC00-0xA0000 or 0xF0000-0xFFFFF");
	if (n > MAX_CPUS)
		fail("MP table lists %d processors, the guest supports %d", n, MAX_CPUS);
	uint64_t want = param_u64("cpus", 0);
	if (want)
		report((uint64_t)n == want, "MP table lists %d processors (cpus=%lu)", n, want);

	lapic_setup();
	uint32_t bsp = lapic_id();
	int bsp_entries = 0, aps = 0;
	for (int i = 0; i < n; i++) {
		printf("smp: cpu %d apic id %u%s%s\n", i, cpus[i].apic_id, cpus[i].bsp ? " (bsp)" : "",
		       cpus[i].enabled ? "" : " (disabled)");
		if (cpus[i].bsp)
			bsp_entries++;
	}
	report(bsp_entries == 1, "exactly one processor entry is marked BSP");

	uint64_t t0 = rdtsc();
	bool ipi_ok;
	aps = smp_start_aps(cpus, n, param_u64("timeout_ms", 10000), &ipi_ok);
	report(ipi_ok, "every INIT and SIPI was delivered");
	uint64_t cycles = rdtsc() - t0;

	uint32_t in = ap_checked_in;
	for (uint32_t i = 0; i < in && i < MAX_CPUS; i++) {
		bool listed = false;
		for (int k = 0; k < n; k++)
			listed |= cpus[k].apic_id == ap_apic_ids[i] && ap_apic_ids[i] != bsp;
		report(listed, "AP %u reports apic id %u, listed in the MP table", i, ap_apic_ids[i]);
	}
	printf("smp: %u/%d cpus checked in (%lu us)\n", in + 1, aps + 1,
	       cycles / (tsc_hz() / 1000000));
	report(in == (uint32_t)aps, "all %d APs checked in", aps);
	report(ap_ticket == in, "no AP took two tickets");
	return report_summary();
}
