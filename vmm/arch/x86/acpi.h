/* acpi.h: the hardware-reduced ACPI tables cella-vm gives x86 guests
 * (RSDP, XSDT, FADT, MADT, DSDT; docs/guests.md), and the fixed ports and
 * interrupt of the ACPI platform device (vmm/hw/acpi) they describe. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "mem.h"

/* Tables live in the BIOS area a guest scans for the RSDP (0xE0000-0xFFFFF,
 * reserved in e820); the RSDP comes first. */
#define ACPI_TABLES_ADDR 0xE0000ULL
#define ACPI_TABLES_MAX  0x8000u
#define ACPI_RSDP_ADDR   ACPI_TABLES_ADDR /* what the boot protocols point to */

/* The ACPI platform device: 8-bit sleep control and status registers
 * (FADT), the GED's event register and its interrupt. */
#define ACPI_SLEEP_CTL_PORT 0x600
#define ACPI_SLEEP_STS_PORT 0x601
#define ACPI_GED_PORT       0x602
#define ACPI_GED_GSI        3 /* an ISA line nothing else uses (no COM2) */
#define ACPI_RESET_PORT     0xCF9
#define ACPI_RESET_VALUE    0x06

/* Sleep control register (ACPI 6.5, 4.8.3.7): SLP_TYP in bits 2-4, SLP_EN
 * bit 5; the DSDT's \_S5 names SLP_TYP 5. */
#define ACPI_SLP_TYP_SHIFT 2
#define ACPI_SLP_TYP_MASK  0x1c
#define ACPI_SLP_EN        0x20
#define ACPI_S5_TYP        5
/* GED event register: reading returns the pending events and clears them;
 * the GED's _INI writes ACPI_GED_OSPM (the guest's OSPM is running). */
#define ACPI_GED_EVT_POWER_BUTTON 0x01
#define ACPI_GED_EVT_CPU_HOTPLUG  0x02 /* the DSDT's _EVT runs \_SB.CPUS.CSCN */
#define ACPI_GED_OSPM             0x80

#define ACPI_MAX_CPUS 32
#define ACPI_MAX_MMIO 32

struct acpi_mmio_dev {
	uint64_t base;
	uint32_t size;
	unsigned gsi;
};

struct acpi_config {
	unsigned nr_cpus;
	unsigned max_cpus; /* > nr_cpus: vCPU hot-plug (acpi_cpu.h); 0: nr_cpus */
	const struct acpi_mmio_dev *mmio;
	unsigned nr_mmio;
};

/* Where each table landed, as offsets into the buffer (tests). */
struct acpi_layout {
	size_t rsdp, xsdt, fadt, madt, dsdt;
	size_t len; /* bytes used */
};

/* Build every table into buf (cap bytes) as they will sit at guest-physical
 * `base`: pure, no guest access. 0, -EINVAL for a bad configuration (no or
 * too many vCPUs or devices), -ENOSPC if buf is too small. */
int acpi_build_tables(const struct acpi_config *cfg, uint64_t base, uint8_t *buf, size_t cap,
		      struct acpi_layout *out) __must_check;
/* Build them and write them at ACPI_TABLES_ADDR. 0 or -errno. */
int x86_setup_acpi(struct guest_mem *mem, const struct acpi_config *cfg) __must_check;
