/* cpuhp.c: vCPU hot-plug seen from a guest without an ACPI interpreter. It
 * does by hand what an OS does through the DSDT (docs/guests.md, "vCPU
 * hot-plug"): the GED's _INI (the worker then knows an OSPM listens), and
 * on each GED CPU hot-plug event what _EVT and CSCN do: select every vCPU
 * in the controller, find the ones being inserted (CINS, and CPEN with it),
 * acknowledge them (write CINS), then bring each up with INIT-SIPI-SIPI to
 * its APIC id (= its index) and wait for it to check in. Each round also
 * restarts the vCPUs added in earlier rounds, so that after a save/restore
 * or a migration between rounds they are shown to run there too.
 * rounds=N: hot-plug events to wait for; timeout_ms: for each. */
#include "hw.h"

TEST_PROGRAM("cpuhp");

#define GED_PORT        0x602
#define GED_OSPM        0x80
#define GED_EVT_CPU     0x02
#define CPUHP_PORT      0xCD8
#define CPUHP_STS       (CPUHP_PORT + 4)
#define CPEN            0x01
#define CINS            0x02
#define ICR_INIT        0x00004500
#define ICR_SIPI        0x00004600

static uint8_t cpu_status(uint32_t i)
{
	/* CSEL as ACPICA writes a 32-bit ByteAcc field: byte by byte */
	for (unsigned k = 0; k < 4; k++)
		outb((uint16_t)(CPUHP_PORT + k), (uint8_t)(i >> (8 * k)));
	return inb(CPUHP_STS);
}

static bool checked_in(uint32_t apic_id, uint32_t from)
{
	for (uint32_t t = from; t < ap_checked_in && t < MAX_CPUS; t++)
		if (ap_apic_ids[t] == apic_id)
			return true;
	return false;
}

/* INIT-SIPI-SIPI to one APIC id; true once it checked in. */
static bool start_cpu(uint32_t apic_id, uint64_t timeout_ms)
{
	uint32_t from = ap_checked_in;
	bool ok = lapic_send_ipi(apic_id, ICR_INIT);

	ok &= lapic_send_ipi(apic_id, ICR_SIPI | (AP_TRAMPOLINE_ADDR >> 12));
	delay_us(200);
	if (!checked_in(apic_id, from))
		ok &= lapic_send_ipi(apic_id, ICR_SIPI | (AP_TRAMPOLINE_ADDR >> 12));
	report(ok, "INIT and SIPI delivered to APIC id %u", apic_id);
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (!checked_in(apic_id, from) && !tsc_expired(deadline))
		cpu_relax();
	return checked_in(apic_id, from);
}

int main(int argc, char **argv)
{
	struct mp_cpu cpus[MAX_CPUS];
	int n = mptable_cpus(cpus, MAX_CPUS);
	uint64_t rounds = param_u64("rounds", 1), timeout = param_u64("timeout_ms", 300000);
	uint32_t plugged = 0;
	bool ipi_ok;

	if (n < 1 || n > 32)
		fail("MP table: %d processors", n);
	lapic_setup();
	/* The boot vCPUs first (this also puts the AP trampoline in place). */
	int aps = smp_start_aps(cpus, n, 10000, &ipi_ok);
	report(ipi_ok && ap_checked_in == (uint32_t)aps, "%d boot APs checked in", aps);
	for (int i = 0; i < n; i++)
		report(cpu_status((uint32_t)i) == CPEN, "boot vCPU %d present, not inserting", i);
	report(cpu_status((uint32_t)n) == 0, "vCPU %d not present yet", n);

	outb(GED_PORT, GED_OSPM); /* what the GED's _INI does */
	printf("cpuhp: ready, %d cpus\n", n);
	for (uint64_t r = 0; r < rounds; r++) {
		uint64_t deadline = tsc_deadline_ms(timeout);
		uint8_t evt = 0;
		uint32_t added = 0;

		while (!(evt & GED_EVT_CPU) && !tsc_expired(deadline)) {
			evt |= inb(GED_PORT); /* read to clear, as _EVT does */
			if (!(evt & GED_EVT_CPU))
				delay_us(2000);
		}
		report(evt & GED_EVT_CPU, "round %lu: the GED raised the CPU hot-plug event", r);
		if (!(evt & GED_EVT_CPU))
			break;
		/* CSCN */
		for (uint32_t i = 0; i < 32; i++) {
			uint8_t st = cpu_status(i);

			if (!(st & CINS))
				continue;
			report(st & CPEN, "vCPU %u inserting and present", i);
			outb(CPUHP_STS, CINS);
			report(!(cpu_status(i) & CINS) && (cpu_status(i) & CPEN),
			       "vCPU %u acknowledged", i);
			printf("cpuhp: vCPU %u inserted\n", i);
			added |= 1u << i;
		}
		report(added != 0, "round %lu: vCPUs being inserted were found", r);
		plugged |= added;
		for (uint32_t i = 0; i < 32; i++) {
			if (!(plugged & (1u << i)))
				continue;
			bool up = start_cpu(i, 10000);

			report(up, "vCPU %u checked in with APIC id %u", i, i);
			if (up)
				printf("cpuhp: cpu %u online\n", i);
		}
		printf("cpuhp: round %lu done\n", r);
	}
	return report_summary();
}
