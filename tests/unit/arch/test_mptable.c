/* test_mptable.c: x86_setup_mptable, parsed back from guest memory the way
 * a guest finds it: floating pointer, checksums, and every entry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

struct parsed {
	unsigned cpus, bsps, buses, ioapics, ioints, lints;
	uint8_t ioapic_id;
	uint8_t pin_of_irq[MP_IOAPIC_PINS]; /* 0xff: no entry */
	uint8_t lint_type[2];
};

static void parse_back(const struct guest_mem *mem, unsigned nr_cpus, struct parsed *out)
{
	const uint8_t *fps = guest_mem_ptr(mem, X86_EBDA_ADDR, MP_FPS_SIZE);
	const uint8_t *hdr, *p, *end;
	uint16_t len, count;

	memset(out, 0, sizeof(*out));
	memset(out->pin_of_irq, 0xff, sizeof(out->pin_of_irq));
	assert_non_null(fps);
	assert_memory_equal(fps, "_MP_", 4);
	assert_int_equal(fps[8], 1);
	assert_int_equal(fps[9], 4);
	assert_int_equal(mp_checksum(fps, MP_FPS_SIZE), 0);
	assert_int_equal(fps[11], 0); /* feature 1: configuration table present */

	hdr = guest_mem_ptr(mem, le32_get(fps + 4), MP_HDR_SIZE);
	assert_non_null(hdr);
	assert_memory_equal(hdr, "PCMP", 4);
	assert_int_equal(hdr[6], 4);
	len = le16_get(hdr + 4);
	count = le16_get(hdr + 34);
	assert_int_equal(le32_get(hdr + 36), 0xFEE00000);
	hdr = guest_mem_ptr(mem, le32_get(fps + 4), len);
	assert_non_null(hdr);
	assert_int_equal(mp_checksum(hdr, len), 0);
	/* Everything stays inside the reserved KiB below 640 KiB. */
	assert_true(le32_get(fps + 4) + len <= 0xA0000);
	assert_int_equal(MP_FPS_SIZE + len, mp_table_size(nr_cpus));

	p = hdr + MP_HDR_SIZE;
	end = hdr + len;
	for (unsigned i = 0; i < count; i++) {
		assert_true(p < end);
		switch (p[0]) {
		case MP_ENTRY_CPU:
			assert_int_equal(p[1], out->cpus); /* APIC ids 0..n-1 in order */
			assert_true(p[3] & MP_CPU_ENABLED);
			if (p[3] & MP_CPU_BSP) {
				assert_int_equal(p[1], 0);
				out->bsps++;
			}
			out->cpus++;
			p += MP_CPU_SIZE;
			break;
		case MP_ENTRY_BUS:
			assert_memory_equal(p + 2, "ISA   ", 6);
			out->buses++;
			p += MP_BUS_SIZE;
			break;
		case MP_ENTRY_IOAPIC:
			out->ioapic_id = p[1];
			assert_int_equal(p[2], 0x11);
			assert_int_equal(p[3] & 1, 1);
			assert_int_equal(le32_get(p + 4), 0xFEC00000);
			out->ioapics++;
			p += MP_IOAPIC_SIZE;
			break;
		case MP_ENTRY_IOINT:
			assert_int_equal(p[1], MP_INT_INT);
			assert_int_equal(le16_get(p + 2), 0); /* conforming */
			assert_int_equal(p[4], 0);            /* ISA bus */
			assert_int_equal(p[6], out->ioapic_id);
			assert_true(p[5] < MP_IOAPIC_PINS);
			assert_int_equal(out->pin_of_irq[p[5]], 0xff);
			out->pin_of_irq[p[5]] = p[7];
			out->ioints++;
			p += MP_INT_SIZE;
			break;
		case MP_ENTRY_LINT:
			assert_int_equal(p[6], 0xff); /* all local APICs */
			assert_true(p[7] < 2);
			out->lint_type[p[7]] = p[1];
			out->lints++;
			p += MP_INT_SIZE;
			break;
		default:
			fail_msg("unknown entry type %u", p[0]);
		}
	}
	assert_ptr_equal(p, end);
}

static void mptable_counts(void **state)
{
	static const unsigned sizes[] = {1, 2, 4, 31, 32};
	struct guest_mem mem;

	assert_int_equal(guest_mem_init(&mem, MiB(2)), 0);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		unsigned n = sizes[i];
		struct parsed p;

		memset(guest_mem_ptr(&mem, X86_EBDA_ADDR, 1024), 0xcc, 1024);
		assert_int_equal(x86_setup_mptable(&mem, n), 0);
		parse_back(&mem, n, &p);
		assert_int_equal(p.cpus, n);
		assert_int_equal(p.bsps, 1);
		assert_int_equal(p.buses, 1);
		assert_int_equal(p.ioapics, 1);
		assert_int_equal(p.ioapic_id, n);
		assert_int_equal(p.ioints, 23);
		assert_int_equal(p.lints, 2);
		assert_int_equal(p.lint_type[0], MP_INT_EXTINT);
		assert_int_equal(p.lint_type[1], MP_INT_NMI);
		assert_int_equal(p.pin_of_irq[0], 2); /* PIT */
		assert_int_equal(p.pin_of_irq[2], 0xff);
		for (unsigned irq = 1; irq < MP_IOAPIC_PINS; irq++)
			if (irq != 2)
				assert_int_equal(p.pin_of_irq[irq], irq);
	}
	guest_mem_destroy(&mem);
}

static void mptable_bad_count(void **state)
{
	struct guest_mem mem;

	assert_int_equal(guest_mem_init(&mem, MiB(2)), 0);
	assert_int_equal(x86_setup_mptable(&mem, 0), -EINVAL);
	assert_int_equal(x86_setup_mptable(&mem, 33), -EINVAL);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mptable_counts),
		cmocka_unit_test(mptable_bad_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
