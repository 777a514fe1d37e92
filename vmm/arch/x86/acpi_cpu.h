/* acpi_cpu.h: vCPU hot-plug through ACPI, as QEMU's "CPU hotplug interface"
 * and Cloud Hypervisor's CpuManager do it: the register block of the CPU
 * hot-plug controller (vmm/hw/acpi/cpuhp.c) and the DSDT part that drives
 * it (acpi_cpu.c): a processor container \_SB.CPUS with one ACPI0007 device
 * per possible vCPU (_UID, _STA from the controller, _MAT: its MADT entry),
 * and CSCN, which the GED's _EVT runs on ACPI_GED_EVT_CPU_HOTPLUG to
 * notify the OS of each vCPU being inserted. docs/guests.md, "vCPU hot-plug". */
#pragma once
#include <stdint.h>

struct aml;

/* Eight I/O ports (QEMU's CPU hot-plug block sits at the same base):
 *   +0..+3  CSEL, the selected vCPU (its index = APIC id = ACPI UID); any
 *           access width; reads back.
 *   +4      the selected vCPU's status: bit 0 CPEN (present and enabled),
 *           bit 1 CINS (being inserted: the OS was not told yet). Writing
 *           CINS acknowledges the insertion (write 1 to clear); other bits
 *           are ignored (no eject).
 *   +5..+7  read 0. */
#define ACPI_CPUHP_PORT  0x0CD8
#define ACPI_CPUHP_LEN   8
#define ACPI_CPUHP_CSEL  0
#define ACPI_CPUHP_STS   4
#define ACPI_CPUHP_CPEN  0x01
#define ACPI_CPUHP_CINS  0x02

/* Append the processor container to the \_SB scope being written (nr_cpus
 * present at boot, max_cpus possible, max_cpus > nr_cpus). */
void acpi_cpu_build_container(struct aml *a, unsigned nr_cpus, unsigned max_cpus);
/* Inside the GED's _EVT, after Local0 = GSTA: If (Local0 & CPU_HOTPLUG)
 * { \_SB.CPUS.CSCN () }. */
void acpi_cpu_build_ged_event(struct aml *a);
/* The MADT local APIC entry of vCPU `index` (8 bytes): enabled, or online
 * capable (MADT revision 5: an OS may bring it up later). */
void acpi_cpu_madt_lapic(uint8_t *p, unsigned index, int enabled);
