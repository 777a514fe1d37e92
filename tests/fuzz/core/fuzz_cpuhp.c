/* fuzz_cpuhp.c: the vCPU hot-plug controller (vmm/hw/acpi/cpuhp.c) in a
 * KVM-less VM: the input's first byte picks the vCPU counts, then comes a
 * saved controller state to load (what a state file or a migration stream
 * hands it: 20 bytes), then guest port accesses (offset, width, direction,
 * data), as a hostile guest makes them. A loaded state must name exactly
 * the VM's vCPUs; a status read must only show present vCPUs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_cpu.h"
#include "devtype.h"
#include "hw/legacy.h"
#include "state/state.h"
#include "vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct device_type *t = devtype_find("cpuhp");
	struct vm_config cfg = { .acpi = true };
	struct state_reader r;
	struct device *dev = NULL;
	struct vm vm;

	if (size < 1 || !t)
		return 0;
	cfg.cpus = 1 + data[0] % 8;
	cfg.cpus_max = cfg.cpus + 1 + (data[0] >> 3) % 24;
	data++;
	size--;
	if (vm_create_test(&vm, MiB(2)))
		return 0;
	vm.cfg = &cfg;
	/* stand-in vCPUs (no KVM descriptor): the controller only counts them */
	vm.vcpus = calloc(cfg.cpus_max, sizeof(*vm.vcpus));
	if (!vm.vcpus)
		goto out;
	for (unsigned i = 0; i < cfg.cpus_max; i++)
		vm.vcpus[i].fd = -1;
	vm.nr_vcpus = cfg.cpus + (size ? data[0] % (cfg.cpus_max - cfg.cpus + 1) : 0);
	if (acpi_dev_create(&vm) || t->create(&vm, 0, NULL))
		goto out;
	for (struct device *d = vm.devices; d; d = d->next)
		if (!strcmp(d->ops->type, "cpuhp"))
			dev = d;
	if (!dev)
		goto out;
	if (size >= 20) {
		state_reader_init(&r, data, 20);
		(void)!dev->ops->load(dev, &r);
		data += 20;
		size -= 20;
	}
	while (size >= 3) {
		uint8_t off = data[0] % (ACPI_CPUHP_LEN + 2), len = (uint8_t)(1u << (data[1] % 3));
		bool write = data[1] & 0x80;
		uint8_t buf[4] = { data[2], data[2], data[2], data[2] };

		(void)bus_dispatch(&vm.pio, ACPI_CPUHP_PORT + off, buf, len, write);
		if (!write && off == ACPI_CPUHP_STS && len == 1 &&
		    (buf[0] & ~(ACPI_CPUHP_CPEN | ACPI_CPUHP_CINS)))
			__builtin_trap(); /* only the two status bits */
		data += 3;
		size -= 3;
	}
	/* whatever happened, every present vCPU exists */
	for (uint32_t i = 0; i < 32; i++) {
		uint8_t sel[4] = { (uint8_t)i, 0, 0, 0 }, st = 0;

		(void)bus_dispatch(&vm.pio, ACPI_CPUHP_PORT, sel, 4, true);
		(void)bus_dispatch(&vm.pio, ACPI_CPUHP_PORT + ACPI_CPUHP_STS, &st, 1, false);
		if ((st & ACPI_CPUHP_CPEN) && i >= vm.nr_vcpus)
			__builtin_trap();
		if ((st & ACPI_CPUHP_CINS) && !(st & ACPI_CPUHP_CPEN))
			__builtin_trap();
	}
out:
	vm_destroy(&vm);
	return 0;
}
