/* irq.c: interrupt delivery, each case waiting in ring 0 (sti; hlt) with a
 * LAPIC-timer watchdog so a lost interrupt fails instead of hanging:
 *   - LAPIC timer while ring 3 runs with IF=1 (delivered from CPL3);
 *   - the same while halted in ring 0;
 *   - 16550 THR-empty interrupt through IOAPIC pin 4 (uart=0 skips it);
 *   - the first virtio device's used-buffer interrupt through its
 *     command-line IRQ on the IOAPIC, twice (needs --rng or another
 *     device; rng preferred). */
#include "virtio.h"

TEST_PROGRAM("irq");

#define VEC_TIMER  0x40
#define VEC_UART   0x41
#define VEC_VIRTIO 0x42
#define COM1 0x3F8

/* The timer is also the watchdog, so this one waits without it; it runs
 * only after the ring-3 case showed that the timer fires at all. */
static void test_lapic_timer(void)
{
	uint32_t before = irq_counts[VEC_TIMER];
	lapic_timer_oneshot(VEC_TIMER, 1000000);	/* 1 ms on KVM */
	uint64_t deadline = tsc_deadline_ms(2000);
	while (irq_counts[VEC_TIMER] == before && !tsc_expired(deadline))
		wait_for_interrupt();
	report(irq_counts[VEC_TIMER] == before + 1, "LAPIC timer interrupt while halted in ring 0");
}

static bool test_ring3_delivery(void)
{
	uint32_t before = irq_counts[VEC_TIMER];
	ring3_set_if(true);
	lapic_timer_oneshot(VEC_TIMER, 1000000);
	uint64_t deadline = tsc_deadline_ms(2000);
	while (irq_counts[VEC_TIMER] == before && !tsc_expired(deadline))
		cpu_relax();
	ring3_set_if(false);
	return report(irq_counts[VEC_TIMER] == before + 1, "LAPIC timer interrupt taken in ring 3");
}

static void test_uart(void)
{
	ioapic_route(4, VEC_UART, lapic_id());
	uint32_t before = irq_counts[VEC_UART];
	outb(COM1 + 1, 0x02);	/* IER: THR empty; raises at once when THR is empty */
	uint32_t after = wait_irq_count(VEC_UART, before, 2000);
	uint8_t iir = inb(COM1 + 2);	/* reading IIR clears a THRE interrupt */
	outb(COM1 + 1, 0x00);
	ioapic_mask(4);
	report(after > before, "UART THR-empty interrupt on IOAPIC pin 4 (count %u, IIR 0x%02x)",
	       after - before, iir);
}

static void test_virtio(void)
{
	struct virtio_dev dev;
	struct virtq q;
	if (!virtio_find(VIRTIO_ID_RNG, 0, &dev)) {
		report_info("no virtio-rng device: virtio interrupt not tested");
		return;
	}
	virtio_begin(&dev, 0);
	virtq_init(&q, &dev, 0, 16);
	virtio_driver_ok(&dev);
	ioapic_route(dev.irq, VEC_VIRTIO, lapic_id());
	uint8_t *buf = mem_alloc(64, 64);
	for (int i = 0; i < 2; i++) {
		uint32_t before = irq_counts[VEC_VIRTIO];
		struct vq_buf b = { buf, 64, true };
		virtq_add(&q, &b, 1, buf);
		virtq_kick(&q);
		uint32_t after = wait_irq_count(VEC_VIRTIO, before, 5000);
		uint32_t isr = virtio_ack_interrupt(&dev);
		uint32_t len = 0;
		bool done = virtq_get(&q, &len, NULL);
		report(after == before + 1 && (isr & 1) && done,
		       "virtio-rng used-buffer interrupt %d on GSI %u (count %u, ISR 0x%x, %u bytes)",
		       i + 1, dev.irq, after - before, isr, len);
		if (!done)
			virtq_wait(&q, NULL, 5000);
	}
	ioapic_mask(dev.irq);
}

int main(int argc, char **argv)
{
	lapic_setup();
	printf("irq: bsp apic id %u, LAPIC version 0x%x\n", lapic_id(), lapic_read(0x30));
	if (test_ring3_delivery())
		test_lapic_timer();
	if (param_u64("uart", 1))
		test_uart();
	test_virtio();
	report(irq_counts[WATCHDOG_VECTOR] == 0, "watchdog never fired");
	report(irq_counts[SPURIOUS_VECTOR] == 0, "no spurious interrupts");
	return report_summary();
}
