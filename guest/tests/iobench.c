/* iobench.c: exit-cost microbenchmarks from ring 3, each between
 * "iobench: begin <test>" and "iobench: end <test>" markers so the host can
 * time it from the serial stream; the guest's own TSC count follows as
 * "iobench: <test> ops=N tsc=T".
 *   pio-out / pio-in: ops=N (default 10000) accesses to port=P (default
 *   0x80, which cella and QEMU both ignore); mmio-read: N reads of the
 *   first virtio-mmio device's MagicValue; ring0-call: N/10 ud2 requests. */
#include "virtio.h"

TEST_PROGRAM("iobench");

static void begin(const char *t) { printf("iobench: begin %s\n", t); }

static void end(const char *t, uint64_t ops, uint64_t tsc)
{
	printf("iobench: end %s\n", t);
	printf("iobench: %s ops=%lu tsc=%lu ns/op=%lu\n", t, ops, tsc,
	       ops ? tsc * 1000 / (tsc_hz() / 1000000) / ops : 0);
}

int main(int argc, char **argv)
{
	uint64_t ops = param_u64("ops", 10000);
	uint16_t port = (uint16_t)param_u64("port", 0x80);
	uint64_t t;
	volatile uint8_t sink = 0;

	printf("iobench: tsc_hz=%lu\n", tsc_hz());
	begin("pio-out");
	t = rdtsc();
	for (uint64_t i = 0; i < ops; i++)
		outb(port, 0);
	end("pio-out", ops, rdtsc() - t);

	begin("pio-in");
	t = rdtsc();
	for (uint64_t i = 0; i < ops; i++)
		sink = inb(port);
	end("pio-in", ops, rdtsc() - t);

	struct virtio_dev devs[VIRTIO_MAX_DEVS];
	if (virtio_devices(devs, VIRTIO_MAX_DEVS) > 0) {
		uint32_t bad = 0;
		begin("mmio-read");
		t = rdtsc();
		for (uint64_t i = 0; i < ops; i++)
			bad |= mmio_read32(devs[0].base) ^ 0x74726976;
		end("mmio-read", ops, rdtsc() - t);
		report(!bad, "MMIO reads returned the virtio magic");
	} else {
		report_info("no virtio-mmio device: mmio-read skipped");
	}

	uint64_t calls = ops / 10 ? ops / 10 : 1;
	begin("ring0-call");
	t = rdtsc();
	for (uint64_t i = 0; i < calls; i++)
		ring0_request(REQ_NOP, 0, 0);
	end("ring0-call", calls, rdtsc() - t);
	(void)sink;
	report(true, "benchmarks ran");
	return report_summary();
}
