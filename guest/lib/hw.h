/* hw.h: the guest's view of the platform: LAPIC, IOAPIC, MP table, and a
 * bump allocator for DMA memory (identity mapped, so virt == phys). */
#pragma once
#include "libtest.h"

/* ---- memory ---- */
/* Zeroed, aligned memory after the image, within the PVH memory map (or the
 * first 64 MiB when there is none). Never freed. Fails the test when out. */
void *mem_alloc(uint64_t size, uint64_t align);
/* Bytes left for mem_alloc. */
uint64_t mem_available(void);

/* ---- local APIC (xAPIC MMIO at 0xFEE00000) ---- */
#define LAPIC_ID      0x020
#define LAPIC_TPR     0x080
#define LAPIC_EOI_REG 0x0B0
#define LAPIC_SVR     0x0F0
#define LAPIC_ICR_LO  0x300
#define LAPIC_ICR_HI  0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR  0x390
#define LAPIC_TIMER_DIV  0x3E0
#define SPURIOUS_VECTOR 0xFF

static inline uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static inline uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

/* Software-enables the LAPIC, TPR 0, LINT0/LINT1 masked, and masks the
 * legacy PICs so that only IOAPIC and LAPIC sources interrupt. */
void lapic_setup(void);
/* Sends an IPI (ICR low word as in the SDM) to one APIC id; returns false
 * if the delivery-status bit did not clear. */
bool lapic_send_ipi(uint32_t apic_id, uint32_t icr_lo);
/* One-shot LAPIC timer (divide by 1) raising vector after count ticks. */
void lapic_timer_oneshot(uint8_t vector, uint32_t count);

/* ---- IOAPIC ---- */
/* Routes GSI gsi (0-23 on the IOAPIC at 0xFEC00000, 24-47 on a second one
 * at 0xFEC10000 as QEMU microvm has) to vector on apic_id, edge-triggered,
 * active high, unmasked. */
void ioapic_route(uint32_t gsi, uint8_t vector, uint32_t apic_id);
void ioapic_mask(uint32_t gsi);
uint64_t ioapic_read_entry(uint32_t gsi);

/* Waits in ring 0 (sti; hlt) until irq_counts[vector] differs from seen,
 * with the LAPIC timer as a watchdog after about timeout_ms; returns the
 * new count, or seen if it timed out. */
uint32_t wait_irq_count(uint8_t vector, uint32_t seen, uint32_t timeout_ms);
#define WATCHDOG_VECTOR 0xFE

/* ---- MP table ---- */
struct mp_cpu {
	uint8_t apic_id;
	bool bsp;
	bool enabled;
};
/* Finds the MP floating pointer in 0x9FC00-0xA0000 or 0xF0000-0xFFFFF,
 * checks the checksums and lists the processor entries. Returns the count,
 * or -1 when there is no valid table. */
int mptable_cpus(struct mp_cpu *cpus, int max);

/* ---- application processors ---- */
extern volatile uint32_t ap_ticket, ap_checked_in;
extern volatile uint32_t ap_apic_ids[MAX_CPUS];
/* Starts every enabled non-BSP processor of cpus[] with INIT-SIPI-SIPI
 * (trampoline copied to AP_TRAMPOLINE_ADDR) and waits up to timeout_ms for
 * them to check in. Returns the number of APs it started; *ipi_ok is false if
 * an IPI was not delivered. LAPIC must be set up (lapic_setup). */
int smp_start_aps(const struct mp_cpu *cpus, int n, uint64_t timeout_ms, bool *ipi_ok);
