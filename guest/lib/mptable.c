/* mptable.c: find the Intel MP table and list its processors. */
#include "hw.h"

struct mp_floating {
	char signature[4];	/* "_MP_" */
	uint32_t config_paddr;
	uint8_t length;		/* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t features[5];
} __attribute__((packed));

struct mp_config {
	char signature[4];	/* "PCMP" */
	uint16_t base_length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_paddr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

static uint8_t sum8(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;
	while (n--)
		s += *b++;
	return s;
}

static const struct mp_floating *mp_scan(uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a + 16 <= end; a += 16) {
		const struct mp_floating *f = (const void *)(uintptr_t)a;
		if (!memcmp(f->signature, "_MP_", 4) && f->length == 1 && !sum8(f, 16))
			return f;
	}
	return NULL;
}

int mptable_cpus(struct mp_cpu *cpus, int max)
{
	const struct mp_floating *f = mp_scan(0x9FC00, 0xA0000);
	if (!f)
		f = mp_scan(0xF0000, 0x100000);
	if (!f || !f->config_paddr)
		return -1;
	const struct mp_config *c = (const void *)(uintptr_t)f->config_paddr;
	if (memcmp(c->signature, "PCMP", 4) || sum8(c, c->base_length))
		return -1;
	const uint8_t *e = (const uint8_t *)(c + 1);
	const uint8_t *end = (const uint8_t *)c + c->base_length;
	int n = 0;
	/* Walk by length, like Linux: qboot (QEMU microvm) leaves entry_count 0. */
	while (e < end) {
		if (e[0] == 0) {	/* processor, 20 bytes */
			if (n < max) {
				cpus[n].apic_id = e[1];
				cpus[n].enabled = e[3] & 1;
				cpus[n].bsp = e[3] & 2;
			}
			n++;
			e += 20;
		} else {
			e += 8;		/* bus, IOAPIC, interrupt entries */
		}
	}
	return n;
}
