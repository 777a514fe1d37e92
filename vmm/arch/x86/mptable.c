/* mptable.c: Intel MultiProcessor Specification 1.4 tables (floating
 * pointer and configuration table) describing the vCPUs and the IOAPIC. */
#include <errno.h>

#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return sum;
}

size_t mp_table_size(unsigned nr_cpus)
{
	return MP_FPS_SIZE + MP_HDR_SIZE + nr_cpus * MP_CPU_SIZE + MP_BUS_SIZE + MP_IOAPIC_SIZE +
	       MP_NR_IOINTS * MP_INT_SIZE + 2 * MP_INT_SIZE;
}

static uint8_t *put_int(uint8_t *p, uint8_t type, uint8_t int_type, uint8_t src_irq, uint8_t dst_id,
                        uint8_t dst_pin)
{
	p[0] = type;
	p[1] = int_type;
	le16_put(p + 2, 0); /* polarity and trigger: conforming to the bus */
	p[4] = MP_ISA_BUS_ID;
	p[5] = src_irq;
	p[6] = dst_id;
	p[7] = dst_pin;
	return p + MP_INT_SIZE;
}

int x86_setup_mptable(struct guest_mem *mem, unsigned nr_cpus)
{
	uint8_t buf[MP_AREA_SIZE];
	uint8_t *fps = buf, *hdr = buf + MP_FPS_SIZE, *p;
	unsigned entries = 0;
	size_t table_len;

	if (nr_cpus < 1 || nr_cpus > MP_MAX_CPUS)
		return -EINVAL;
	memset(buf, 0, sizeof(buf));

	/* Configuration table entries, in the order the spec recommends. */
	p = hdr + MP_HDR_SIZE;
	for (unsigned i = 0; i < nr_cpus; i++) {
		p[0] = MP_ENTRY_CPU;
		p[1] = (uint8_t)i; /* local APIC id */
		p[2] = MP_LAPIC_VERSION;
		p[3] = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0);
		le32_put(p + 4, MP_CPU_SIGNATURE);
		le32_put(p + 8, MP_CPU_FEATURES);
		p += MP_CPU_SIZE;
		entries++;
	}
	p[0] = MP_ENTRY_BUS;
	p[1] = MP_ISA_BUS_ID;
	memcpy(p + 2, "ISA   ", 6);
	p += MP_BUS_SIZE;
	entries++;

	p[0] = MP_ENTRY_IOAPIC;
	p[1] = (uint8_t)nr_cpus; /* IOAPIC id: after the local APIC ids */
	p[2] = MP_IOAPIC_VERSION;
	p[3] = MP_IOAPIC_ENABLED;
	le32_put(p + 4, MP_IOAPIC_ADDR);
	p += MP_IOAPIC_SIZE;
	entries++;

	/* ISA IRQ n on pin n, except that the PIT's IRQ 0 arrives on pin 2
	 * (KVM's in-kernel IOAPIC wires it there, like PC chipsets) and IRQ 2,
	 * the PIC cascade, has no entry of its own (as SeaBIOS does). */
	for (unsigned irq = 0; irq < MP_IOAPIC_PINS; irq++) {
		if (irq == 2)
			continue;
		p = put_int(p, MP_ENTRY_IOINT, MP_INT_INT, (uint8_t)irq, (uint8_t)nr_cpus,
		            (uint8_t)(irq == 0 ? 2 : irq));
		entries++;
	}
	/* Virtual wire: the PIC through LINT0, NMI on LINT1, for all CPUs. */
	p = put_int(p, MP_ENTRY_LINT, MP_INT_EXTINT, 0, MP_ALL_LAPICS, 0);
	p = put_int(p, MP_ENTRY_LINT, MP_INT_NMI, 0, MP_ALL_LAPICS, 1);
	entries += 2;
	table_len = (size_t)(p - hdr);

	memcpy(hdr, "PCMP", 4);
	le16_put(hdr + 4, (uint16_t)table_len);
	hdr[6] = MP_SPEC_REV;
	memcpy(hdr + 8, "CELLA   ", 8);
	memcpy(hdr + 16, "CELLA VM    ", 12);
	le16_put(hdr + 34, (uint16_t)entries);
	le32_put(hdr + 36, MP_LAPIC_ADDR);
	hdr[7] = (uint8_t)-mp_checksum(hdr, table_len);

	memcpy(fps, "_MP_", 4);
	le32_put(fps + 4, (uint32_t)(X86_EBDA_ADDR + MP_FPS_SIZE));
	fps[8] = 1; /* length in 16-byte units */
	fps[9] = MP_SPEC_REV;
	/* Feature bytes 0: a configuration table is present; IMCR absent
	 * (virtual wire mode). */
	fps[10] = (uint8_t)-mp_checksum(fps, MP_FPS_SIZE);

	return guest_mem_write(mem, X86_EBDA_ADDR, buf, MP_FPS_SIZE + table_len);
}
