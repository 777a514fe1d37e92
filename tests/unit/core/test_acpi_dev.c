/* test_acpi_dev.c: the ACPI platform device (hw/acpi) through the PIO bus of
 * a KVM-less VM: S5 through the sleep control register, the GED's
 * power-button event (pressed only once an OSPM ran the GED's _INI, else
 * graceful shutdown falls through to the i8042's Ctrl-Alt-Del), and its
 * state across save/load. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "hw/legacy.h"
#include "state/state.h"
#include "vm.h"

static uint8_t inb(struct vm *vm, uint16_t port)
{
	uint8_t v = 0xAA;

	assert_true(bus_dispatch(&vm->pio, port, &v, 1, false));
	return v;
}

static void outb(struct vm *vm, uint16_t port, uint8_t v)
{
	assert_true(bus_dispatch(&vm->pio, port, &v, 1, true));
}

static void test_s5_powers_off(void **st)
{
	struct vm vm;

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(acpi_dev_create(&vm), 0);
	assert_int_equal(inb(&vm, ACPI_SLEEP_STS_PORT), 0);
	/* SLP_TYP 5 without SLP_EN, then another sleep type: nothing. */
	outb(&vm, ACPI_SLEEP_CTL_PORT, ACPI_S5_TYP << ACPI_SLP_TYP_SHIFT);
	outb(&vm, ACPI_SLEEP_CTL_PORT, (3 << ACPI_SLP_TYP_SHIFT) | ACPI_SLP_EN);
	assert_false(vm_exiting(&vm));
	/* What Linux writes for S5: SLP_TYP from \_S5 | SLP_EN. */
	outb(&vm, ACPI_SLEEP_CTL_PORT, (ACPI_S5_TYP << ACPI_SLP_TYP_SHIFT) | ACPI_SLP_EN);
	assert_true(vm_exiting(&vm));
	assert_int_equal(atomic_load(&vm.exit_code), WORKER_EXIT_POWEROFF);
	vm_destroy(&vm);
}

static void test_power_button(void **st)
{
	struct vm vm, other;
	struct state_writer w;
	struct state_reader r;
	struct device *acpi;

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(acpi_dev_create(&vm), 0);
	acpi = vm.devices;
	assert_int_equal(i8042_create(&vm), 0);
	outb(&vm, 0x64, 0x60);
	outb(&vm, 0x60, 0x01); /* keyboard interrupt on, no translation */

	/* No OSPM yet (acpi=off, or a kernel without ACPI): Ctrl-Alt-Del. */
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);
	assert_int_equal(inb(&vm, 0x64) & 1, 1); /* scancodes queued */
	assert_int_equal(inb(&vm, ACPI_GED_PORT), 0);
	while (inb(&vm, 0x64) & 1)
		(void)inb(&vm, 0x60);

	/* The GED's _INI ran: the button is pressed instead, and once. */
	outb(&vm, ACPI_GED_PORT, ACPI_GED_OSPM);
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);
	assert_int_equal(inb(&vm, 0x64) & 1, 0); /* no key this time */
	assert_int_equal(vm_request_guest_shutdown(&vm), -EBUSY); /* not read yet */

	/* The pending press survives save/load. */
	state_writer_init(&w);
	assert_int_equal(acpi->ops->save(acpi, &w), 0);
	assert_int_equal(vm_create_test(&other, MiB(8)), 0);
	assert_int_equal(acpi_dev_create(&other), 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(other.devices->ops->load(other.devices, &r), 0);
	assert_int_equal(inb(&other, ACPI_GED_PORT), ACPI_GED_EVT_POWER_BUTTON);
	assert_int_equal(inb(&other, ACPI_GED_PORT), 0); /* read to clear */
	assert_int_equal(vm_request_guest_shutdown(&other), 0); /* OSPM restored */
	vm_destroy(&other);
	state_writer_free(&w);

	/* _EVT reads the register: the press is consumed, a next one goes. */
	assert_int_equal(inb(&vm, ACPI_GED_PORT), ACPI_GED_EVT_POWER_BUTTON);
	assert_int_equal(inb(&vm, ACPI_GED_PORT), 0);
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);

	/* A reset forgets the OSPM: the next boot must announce itself. */
	acpi->ops->reset(acpi);
	assert_int_equal(inb(&vm, ACPI_GED_PORT), 0);
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);
	assert_int_equal(inb(&vm, 0x64) & 1, 1); /* Ctrl-Alt-Del again */
	vm_destroy(&vm);
}

static void test_bad_state(void **st)
{
	struct vm vm;
	struct state_writer w;
	struct state_reader r;

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(acpi_dev_create(&vm), 0);
	state_writer_init(&w);
	state_put_u32(&w, 1);
	state_put_u32(&w, 0x100); /* pending beyond a byte */
	state_put_u32(&w, 1);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vm.devices->ops->load(vm.devices, &r), -EINVAL);
	state_writer_free(&w);
	state_writer_init(&w);
	state_put_u32(&w, 2); /* unknown version */
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vm.devices->ops->load(vm.devices, &r), -EINVAL);
	state_writer_free(&w);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s5_powers_off),
		cmocka_unit_test(test_power_button),
		cmocka_unit_test(test_bad_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
