/* apic.c: LAPIC and IOAPIC programming from ring 3 (MMIO pages are user
 * accessible), the bump allocator, and the interrupt wait helper. */
#include "hw.h"

#define IOAPIC2_BASE 0xFEC10000
#define IOREGSEL 0x00
#define IOWIN    0x10

static uint64_t mem_next, mem_limit;

static void mem_init(void)
{
	uint64_t base, size;
	if (!ram_free_range(&base, &size)) {
		base = ALIGN_UP((uint64_t)(uintptr_t)_end, 4096);
		size = (64ull << 20) - base;
	}
	mem_next = base;
	mem_limit = base + size;
}

void *mem_alloc(uint64_t size, uint64_t align)
{
	if (!mem_next)
		mem_init();
	uint64_t p = ALIGN_UP(mem_next, align ? align : 8);
	if (p + size > mem_limit || p + size < p)
		fail("out of guest memory: want %lu bytes, %lu left", size, mem_limit - mem_next);
	mem_next = p + size;
	memset((void *)(uintptr_t)p, 0, size);
	return (void *)(uintptr_t)p;
}

uint64_t mem_available(void)
{
	if (!mem_next)
		mem_init();
	return mem_limit - mem_next;
}

void lapic_setup(void)
{
	outb(0x21, 0xFF);	/* mask both 8259s (ignored when absent) */
	outb(0xA1, 0xFF);
	lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_LINT0, 0x10000);
	lapic_write(LAPIC_LVT_LINT1, 0x10000);
}

bool lapic_send_ipi(uint32_t apic_id, uint32_t icr_lo)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_lo);
	for (int i = 0; i < 1000; i++)
		if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
			return true;
	return false;
}

void lapic_timer_oneshot(uint8_t vector, uint32_t count)
{
	lapic_write(LAPIC_TIMER_DIV, 0xB);
	lapic_write(LAPIC_LVT_TIMER, vector);
	lapic_write(LAPIC_TIMER_INIT, count);
}

static uint64_t ioapic_base(uint32_t gsi, uint32_t *pin)
{
	*pin = gsi % 24;
	return gsi < 24 ? IOAPIC_BASE : IOAPIC2_BASE;
}

static void ioapic_write(uint64_t base, uint32_t reg, uint32_t v)
{
	mmio_write32(base + IOREGSEL, reg);
	mmio_write32(base + IOWIN, v);
}

static uint32_t ioapic_read(uint64_t base, uint32_t reg)
{
	mmio_write32(base + IOREGSEL, reg);
	return mmio_read32(base + IOWIN);
}

void ioapic_route(uint32_t gsi, uint8_t vector, uint32_t apic_id)
{
	uint32_t pin;
	uint64_t base = ioapic_base(gsi, &pin);
	ioapic_write(base, 0x10 + 2 * pin + 1, apic_id << 24);
	ioapic_write(base, 0x10 + 2 * pin, vector);	/* fixed, physical, edge, high */
}

void ioapic_mask(uint32_t gsi)
{
	uint32_t pin;
	uint64_t base = ioapic_base(gsi, &pin);
	ioapic_write(base, 0x10 + 2 * pin, 0x10000);
}

uint64_t ioapic_read_entry(uint32_t gsi)
{
	uint32_t pin;
	uint64_t base = ioapic_base(gsi, &pin);
	return ioapic_read(base, 0x10 + 2 * pin) | (uint64_t)ioapic_read(base, 0x11 + 2 * pin) << 32;
}

uint32_t wait_irq_count(uint8_t vector, uint32_t seen, uint32_t timeout_ms)
{
	/* KVM's LAPIC timer ticks at 1 GHz with divide-by-1; elsewhere the
	 * watchdog is only approximate, which is all it needs to be. */
	uint32_t wd = irq_counts[WATCHDOG_VECTOR];
	uint64_t ticks = (uint64_t)timeout_ms * 1000000;
	lapic_timer_oneshot(WATCHDOG_VECTOR, ticks > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)ticks);
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (irq_counts[vector] == seen && irq_counts[WATCHDOG_VECTOR] == wd) {
		/* Ring 3 runs with IF=0, so an interrupt raised since the check
		 * stays pending until the sti in ring 0: no lost wake-up. */
		wait_for_interrupt();
		if (tsc_expired(deadline))
			break;
	}
	lapic_write(LAPIC_TIMER_INIT, 0);
	return irq_counts[vector];
}

#define ICR_INIT 0x00004500 /* INIT, level assert */
#define ICR_SIPI 0x00004600 /* start-up; low byte = vector (page) */

extern const char ap_trampoline[], ap_trampoline_end[];

int smp_start_aps(const struct mp_cpu *cpus, int n, uint64_t timeout_ms, bool *ipi_ok)
{
	uint32_t bsp = lapic_id();
	int aps = 0;

	*ipi_ok = true;
	/* The trampoline must sit at SIPI vector 0x08 << 12. */
	memcpy((void *)(uintptr_t)AP_TRAMPOLINE_ADDR, ap_trampoline,
	       (size_t)(ap_trampoline_end - ap_trampoline));
	for (int i = 0; i < n; i++) {
		if (!cpus[i].enabled || cpus[i].apic_id == bsp)
			continue;
		aps++;
		*ipi_ok &= lapic_send_ipi(cpus[i].apic_id, ICR_INIT);
		*ipi_ok &= lapic_send_ipi(cpus[i].apic_id, ICR_SIPI | (AP_TRAMPOLINE_ADDR >> 12));
		delay_us(200);
		if (ap_checked_in < (uint32_t)aps) /* the second SIPI, as the MP spec asks */
			*ipi_ok &= lapic_send_ipi(cpus[i].apic_id,
						  ICR_SIPI | (AP_TRAMPOLINE_ADDR >> 12));
	}
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (ap_checked_in < (uint32_t)aps && !tsc_expired(deadline))
		cpu_relax();
	return aps;
}
