/* test_cpuhp.c: the CPU hot-plug controller (hw/acpi/cpuhp.c) through the
 * PIO bus of a KVM-less VM: CSEL and the CPEN/CINS status the DSDT's CSTA
 * and CSCN read, CINS acknowledged by writing it, the cpus-set command's
 * refusals (past cpus_max, below the current count, no ACPI OS), the GED
 * event it raises, and the state (save/load, refused mismatches). Adding a
 * real vCPU needs KVM: it-cpuhp. The test VM's vCPUs are stand-ins (no KVM
 * descriptor): the controller only counts them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_cpu.h"
#include "devtype.h"
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

static void select_cpu(struct vm *vm, uint32_t i)
{
	uint8_t b[4] = { (uint8_t)i, (uint8_t)(i >> 8), (uint8_t)(i >> 16), (uint8_t)(i >> 24) };

	/* as ACPICA writes a 32-bit ByteAcc field: byte by byte */
	for (unsigned k = 0; k < 4; k++)
		outb(vm, (uint16_t)(ACPI_CPUHP_PORT + k), b[k]);
}

static uint8_t status_of(struct vm *vm, uint32_t i)
{
	select_cpu(vm, i);
	return inb(vm, ACPI_CPUHP_PORT + ACPI_CPUHP_STS);
}

/* A KVM-less VM with the ACPI device, the controller and n stand-in vCPUs. */
static void make_vm(struct vm *vm, struct vm_config *cfg, unsigned n)
{
	const struct device_type *t = devtype_find("cpuhp");

	assert_non_null(t);
	assert_int_equal(vm_create_test(vm, MiB(8)), 0);
	vm->cfg = cfg;
	vm->vcpus = calloc(config_cpus_possible(cfg), sizeof(*vm->vcpus));
	assert_non_null(vm->vcpus);
	for (unsigned i = 0; i < config_cpus_possible(cfg); i++)
		vm->vcpus[i].fd = -1;
	vm->nr_vcpus = n;
	assert_int_equal(acpi_dev_create(vm), 0);
	assert_int_equal(devtype_count(t, cfg), 1);
	assert_int_equal(t->create(vm, 0, NULL), 0);
}

static struct device *cpuhp_dev(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->type, "cpuhp"))
			return d;
	fail_msg("no cpuhp device");
	return NULL;
}

static json_t *cpus_set(struct vm *vm, json_t *cpus)
{
	const struct device_type *t = devtype_find("cpuhp");
	json_t *req = json_pack("{s:s, s:o}", "cmd", "cpus-set", "cpus", cpus), *rep;

	assert_string_equal(t->commands[0].name, "cpus-set");
	rep = t->commands[0].run(vm, req, -1);
	json_decref(req);
	assert_non_null(rep);
	return rep;
}

static void expect_refused(struct vm *vm, json_t *cpus, const char *why)
{
	json_t *rep = cpus_set(vm, cpus);
	const char *err = json_string_value(json_object_get(rep, "error"));

	assert_false(json_is_true(json_object_get(rep, "ok")));
	if (!err || !strstr(err, why))
		fail_msg("error \"%s\" lacks \"%s\"", err ? err : "(none)", why);
	json_decref(rep);
}

static void test_count(void **st)
{
	struct vm_config cfg = { .cpus = 2 };
	const struct device_type *t = devtype_find("cpuhp");

	(void)st;
	assert_non_null(t);
	assert_true(t->state_optional);
	assert_int_equal(devtype_count(t, &cfg), 0); /* no cpus_max: no device */
	cfg.cpus_max = 2;
	assert_int_equal(devtype_count(t, &cfg), 0);
	cfg.cpus_max = 3;
	assert_int_equal(devtype_count(t, &cfg), 1);
}

static void test_registers(void **st)
{
	struct vm_config cfg = { .cpus = 2, .cpus_max = 4, .acpi = true };
	uint8_t sel[4] = { 0 };
	struct vm vm;

	(void)st;
	make_vm(&vm, &cfg, 2);
	assert_int_equal(status_of(&vm, 0), ACPI_CPUHP_CPEN);
	assert_int_equal(status_of(&vm, 1), ACPI_CPUHP_CPEN);
	assert_int_equal(status_of(&vm, 2), 0);
	assert_int_equal(status_of(&vm, 3), 0);
	assert_int_equal(status_of(&vm, 0x01000000), 0); /* past the possible ones */
	/* CSEL reads back, as one 4-byte access too */
	select_cpu(&vm, 0x03020100);
	assert_true(bus_dispatch(&vm.pio, ACPI_CPUHP_PORT, sel, 4, false));
	assert_memory_equal(sel, "\x00\x01\x02\x03", 4);
	for (unsigned o = 5; o < ACPI_CPUHP_LEN; o++)
		assert_int_equal(inb(&vm, (uint16_t)(ACPI_CPUHP_PORT + o)), 0);
	/* writing CPEN (no eject) changes nothing */
	select_cpu(&vm, 1);
	outb(&vm, ACPI_CPUHP_PORT + ACPI_CPUHP_STS, 0xFF & ~ACPI_CPUHP_CINS);
	assert_int_equal(status_of(&vm, 1), ACPI_CPUHP_CPEN);
	vm_destroy(&vm);
}

static void test_refusals(void **st)
{
	struct vm_config cfg = { .cpus = 2, .cpus_max = 4, .acpi = true };
	struct vm vm;
	json_t *rep, *hp;

	(void)st;
	make_vm(&vm, &cfg, 2);
	expect_refused(&vm, json_integer(5), "past cpus_max (4)");
	expect_refused(&vm, json_integer(1), "removing vCPUs is not supported");
	expect_refused(&vm, json_integer(0), "expected an integer");
	expect_refused(&vm, json_string("3"), "expected an integer");
	expect_refused(&vm, json_integer(3), "no ACPI OS"); /* GED's _INI never ran */
	/* the current count is no change, and needs no OSPM */
	rep = cpus_set(&vm, json_integer(2));
	assert_true(json_is_true(json_object_get(rep, "ok")));
	assert_int_equal(json_integer_value(json_object_get(rep, "vcpus")), 2);
	hp = json_object_get(rep, "cpu_hotplug");
	assert_int_equal(json_integer_value(json_object_get(hp, "possible")), 4);
	assert_int_equal(json_array_size(json_object_get(hp, "present")), 2);
	assert_int_equal(json_array_size(json_object_get(hp, "inserting")), 0);
	assert_false(json_is_true(json_object_get(hp, "ospm")));
	json_decref(rep);
	/* once the OSPM listens, the GED carries the hot-plug event */
	outb(&vm, ACPI_GED_PORT, ACPI_GED_OSPM);
	assert_int_equal(acpi_dev_raise(&vm, ACPI_GED_EVT_CPU_HOTPLUG), 0);
	assert_int_equal(inb(&vm, ACPI_GED_PORT), ACPI_GED_EVT_CPU_HOTPLUG);
	assert_int_equal(inb(&vm, ACPI_GED_PORT), 0);
	vm_destroy(&vm);
}

static void put_state(struct state_writer *w, uint32_t version, uint32_t possible,
		      uint32_t present, uint32_t inserting, uint32_t selector)
{
	state_writer_init(w);
	state_put_u32(w, version);
	state_put_u32(w, possible);
	state_put_u32(w, present);
	state_put_u32(w, inserting);
	state_put_u32(w, selector);
}

static int load(struct vm *vm, struct state_writer *w)
{
	struct device *d = cpuhp_dev(vm);
	struct state_reader r;
	int ret;

	state_reader_init(&r, w->buf, w->len);
	ret = d->ops->load(d, &r);
	state_writer_free(w);
	return ret;
}

static void test_state(void **st)
{
	struct vm_config cfg = { .cpus = 2, .cpus_max = 4, .acpi = true };
	struct state_writer w;
	struct device *d;
	struct vm vm, other;

	(void)st;
	/* A VM with vCPU 2 hot-plugged and not yet announced: as saved. */
	make_vm(&vm, &cfg, 3);
	put_state(&w, 1, 4, 0x7, 0x4, 2);
	assert_int_equal(load(&vm, &w), 0);
	assert_int_equal(inb(&vm, ACPI_CPUHP_PORT), 2); /* CSEL restored */
	assert_int_equal(inb(&vm, ACPI_CPUHP_PORT + ACPI_CPUHP_STS),
			 ACPI_CPUHP_CPEN | ACPI_CPUHP_CINS);

	/* save, load into another such VM: the same */
	d = cpuhp_dev(&vm);
	state_writer_init(&w);
	assert_int_equal(d->ops->save(d, &w), 0);
	make_vm(&other, &cfg, 3);
	assert_int_equal(load(&other, &w), 0);
	assert_int_equal(status_of(&other, 2), ACPI_CPUHP_CPEN | ACPI_CPUHP_CINS);
	/* the OS acknowledges (CSCN writes CINS): inserting is over */
	outb(&other, ACPI_CPUHP_PORT + ACPI_CPUHP_STS, ACPI_CPUHP_CINS);
	assert_int_equal(status_of(&other, 2), ACPI_CPUHP_CPEN);
	assert_int_equal(status_of(&other, 1), ACPI_CPUHP_CPEN);
	/* a reset forgets pending insertions, never the vCPUs */
	d = cpuhp_dev(&vm);
	d->ops->reset(d);
	assert_int_equal(status_of(&vm, 2), ACPI_CPUHP_CPEN);
	vm_destroy(&other);

	/* refused: another version, another cpus_max, present not the VM's
	 * vCPUs, inserting a vCPU that is not present, a short state */
	put_state(&w, 2, 4, 0x7, 0, 0);
	assert_int_equal(load(&vm, &w), -EINVAL);
	put_state(&w, 1, 5, 0x7, 0, 0);
	assert_int_equal(load(&vm, &w), -EINVAL);
	put_state(&w, 1, 4, 0x3, 0, 0);
	assert_int_equal(load(&vm, &w), -EINVAL);
	put_state(&w, 1, 4, 0xF, 0, 0);
	assert_int_equal(load(&vm, &w), -EINVAL);
	put_state(&w, 1, 4, 0x7, 0x8, 0);
	assert_int_equal(load(&vm, &w), -EINVAL);
	state_writer_init(&w);
	state_put_u32(&w, 1);
	assert_int_not_equal(load(&vm, &w), 0);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
