/* acpi.c: hardware-reduced ACPI tables (ACPI 6.5), as Firecracker and Cloud
 * Hypervisor give their microVMs: RSDP -> XSDT -> FADT (HW_REDUCED_ACPI,
 * sleep control/status registers, reset register) and MADT (the local APICs,
 * the IOAPIC, the MP table's interrupt override); FADT -> DSDT (COM1, each
 * virtio-mmio window as LNRO0005, the power button and the GED that presses
 * it, \_S5). The layout is documented in docs/guests.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_aml.h"
#include "arch/x86/acpi_cpu.h"
#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"
#include "hw/legacy.h"

#define HDR_LEN       36
#define RSDP_LEN      36
#define FADT_LEN      276
#define FADT_REVISION 6
#define FADT_MINOR    5
#define MADT_REVISION 5
#define DSDT_REVISION 2

/* FADT flags and IA-PC boot architecture flags */
#define FADT_PWR_BUTTON      (1u << 4)
#define FADT_SLP_BUTTON      (1u << 5)
#define FADT_RESET_REG_SUP   (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define BOOT_VGA_NOT_PRESENT (1u << 2)
#define BOOT_MSI_NOT_SUPP    (1u << 3)
#define BOOT_CMOS_RTC_ABSENT (1u << 5)

#define MADT_PCAT_COMPAT 1u
#define MADT_IOAPIC      1
#define MADT_ISO         2
#define MADT_LAPIC_NMI   4

static uint8_t acpi_sum(const uint8_t *p, size_t len)
{
	return mp_checksum(p, len);
}

static void put_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev, const char *table_id)
{
	memcpy(t, sig, 4);
	le32_put(t + 4, len);
	t[8] = rev;
	t[9] = 0;
	memcpy(t + 10, "CELLA ", 6);
	memcpy(t + 16, table_id, 8);
	le32_put(t + 24, 1); /* OEM revision */
	memcpy(t + 28, "CELA", 4);
	le32_put(t + 32, 1); /* creator revision */
}

static void finish(uint8_t *t, uint32_t len)
{
	le32_put(t + 4, len);
	t[9] = (uint8_t)-acpi_sum(t, len);
}

/* Generic Address Structure: an 8-bit register in I/O space. */
static void put_gas_io8(uint8_t *p, uint16_t port)
{
	p[0] = 1; /* SystemIO */
	p[1] = 8; /* bit width */
	p[2] = 0; /* bit offset */
	p[3] = 1; /* byte access */
	le64_put(p + 4, port);
}

static size_t build_fadt(uint8_t *t, uint64_t dsdt)
{
	memset(t, 0, FADT_LEN);
	put_header(t, "FACP", FADT_LEN, FADT_REVISION, "CELLAFAC");
	le16_put(t + 109, BOOT_VGA_NOT_PRESENT | BOOT_MSI_NOT_SUPP | BOOT_CMOS_RTC_ABSENT);
	le32_put(t + 112, FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP | FADT_PWR_BUTTON |
				  FADT_SLP_BUTTON);
	put_gas_io8(t + 116, ACPI_RESET_PORT);
	t[128] = ACPI_RESET_VALUE;
	t[131] = FADT_MINOR;
	le64_put(t + 140, dsdt); /* X_DSDT */
	put_gas_io8(t + 244, ACPI_SLEEP_CTL_PORT);
	put_gas_io8(t + 256, ACPI_SLEEP_STS_PORT);
	memcpy(t + 268, "CELLAVMM", 8); /* hypervisor vendor identity */
	finish(t, FADT_LEN);
	return FADT_LEN;
}

/* vCPUs the tables describe: the hot-pluggable ones too (acpi_cpu.h). */
static unsigned possible_cpus(const struct acpi_config *cfg)
{
	return cfg->max_cpus > cfg->nr_cpus ? cfg->max_cpus : cfg->nr_cpus;
}

static size_t build_madt(uint8_t *t, unsigned nr_cpus, unsigned max_cpus)
{
	uint8_t *p = t + HDR_LEN + 8;

	memset(t, 0, HDR_LEN + 8);
	put_header(t, "APIC", 0, MADT_REVISION, "CELLAAPI");
	le32_put(t + 36, MP_LAPIC_ADDR);
	le32_put(t + 40, MADT_PCAT_COMPAT); /* the 8259s of KVM's irqchip exist */
	for (unsigned i = 0; i < max_cpus; i++) {
		acpi_cpu_madt_lapic(p, i, i < nr_cpus);
		p += 8;
	}
	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = (uint8_t)max_cpus; /* IOAPIC id: the MP table's, past every APIC id */
	p[3] = 0;
	le32_put(p + 4, MP_IOAPIC_ADDR);
	le32_put(p + 8, 0); /* GSI base */
	p += 12;
	/* The PIT's IRQ 0 arrives on pin 2 (the MP table's one exception). */
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0; /* ISA */
	p[3] = 0; /* IRQ 0 */
	le32_put(p + 4, 2);
	le16_put(p + 8, 0); /* conforming polarity and trigger */
	p += 10;
	/* NMI on LINT1 of every local APIC (UID 0xFF: all) */
	p[0] = MADT_LAPIC_NMI;
	p[1] = 6;
	p[2] = 0xFF;
	le16_put(p + 3, 0);
	p[5] = 1;
	p += 6;
	finish(t, (uint32_t)(p - t));
	return (size_t)(p - t);
}

static void dev_uid_hid(struct aml *a, const char *hid, bool eisa, unsigned uid)
{
	aml_name(a, "_HID");
	if (eisa)
		aml_eisaid(a, hid);
	else
		aml_string(a, hid);
	aml_name(a, "_UID");
	aml_integer(a, uid);
}

static void build_dsdt_body(struct aml *a, const struct acpi_config *cfg)
{
	size_t sb, dev, res, body, m, cond, pkg;
	char name[8];

	sb = aml_scope_begin(a, "_SB_"); /* at the root: iasl drops the "\\" too */

	dev = aml_device_begin(a, "COM1");
	dev_uid_hid(a, "PNP0501", true, 0);
	aml_name(a, "_CRS");
	res = aml_resources_begin(a, &body);
	aml_res_io(a, UART_COM1_BASE, 8);
	aml_res_irq_noflags(a, UART_COM1_IRQ);
	aml_resources_end(a, res, body);
	aml_pkg_end(a, dev);

	for (unsigned i = 0; i < cfg->nr_mmio; i++) {
		snprintf(name, sizeof(name), "VR%02X", i & 0xff);
		dev = aml_device_begin(a, name);
		dev_uid_hid(a, "LNRO0005", false, i);
		aml_name(a, "_CRS");
		res = aml_resources_begin(a, &body);
		aml_res_mem32_fixed(a, (uint32_t)cfg->mmio[i].base, cfg->mmio[i].size);
		aml_res_interrupt_edge(a, cfg->mmio[i].gsi);
		aml_resources_end(a, res, body);
		aml_pkg_end(a, dev);
	}

	dev = aml_device_begin(a, "PWRB");
	dev_uid_hid(a, "PNP0C0C", true, 0);
	aml_pkg_end(a, dev);

	/* The Generic Event Device: its interrupt runs _EVT, which reads (and
	 * so clears) the event register and notifies the power button. _INI
	 * tells the worker that an OSPM evaluates this namespace, so graceful
	 * shutdown presses the button rather than Ctrl-Alt-Del. */
	if (possible_cpus(cfg) > cfg->nr_cpus)
		acpi_cpu_build_container(a, cfg->nr_cpus, possible_cpus(cfg));

	dev = aml_device_begin(a, "GED0");
	dev_uid_hid(a, "ACPI0013", false, 0);
	aml_name(a, "_CRS");
	res = aml_resources_begin(a, &body);
	aml_res_interrupt_edge(a, ACPI_GED_GSI);
	aml_resources_end(a, res, body);
	aml_io_region(a, "GDST", ACPI_GED_PORT, 1);
	aml_field(a, "GDST", "GSTA", 8);
	m = aml_method_begin(a, "_INI", 0, false);
	aml_byte(a, AML_STORE);
	aml_integer(a, ACPI_GED_OSPM);
	aml_path(a, "GSTA");
	aml_pkg_end(a, m);
	m = aml_method_begin(a, "_EVT", 1, true);
	aml_byte(a, AML_STORE);
	aml_path(a, "GSTA");
	aml_byte(a, AML_LOCAL0);
	aml_byte(a, AML_IF);
	cond = aml_pkg_begin(a);
	aml_byte(a, AML_AND);
	aml_byte(a, AML_LOCAL0);
	aml_integer(a, ACPI_GED_EVT_POWER_BUTTON);
	aml_byte(a, 0); /* no target */
	aml_byte(a, AML_NOTIFY);
	aml_path(a, "PWRB");
	aml_integer(a, 0x80); /* "status change": the button was pressed */
	aml_pkg_end(a, cond);
	if (possible_cpus(cfg) > cfg->nr_cpus)
		acpi_cpu_build_ged_event(a);
	aml_pkg_end(a, m);
	aml_pkg_end(a, dev);

	aml_pkg_end(a, sb);

	/* \_S5: SLP_TYP for the sleep control register */
	aml_name(a, "_S5_");
	aml_byte(a, AML_PACKAGE);
	pkg = aml_pkg_begin(a);
	aml_byte(a, 4);
	aml_integer(a, ACPI_S5_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_pkg_end(a, pkg);
}

int acpi_build_tables(const struct acpi_config *cfg, uint64_t base, uint8_t *buf, size_t cap,
		      struct acpi_layout *out)
{
	struct acpi_layout l;
	struct aml a;
	size_t off;
	uint8_t *t;

	if (!cfg || cfg->nr_cpus < 1 || cfg->nr_cpus > ACPI_MAX_CPUS ||
	    cfg->max_cpus > ACPI_MAX_CPUS ||
	    cfg->nr_mmio > ACPI_MAX_MMIO || (cfg->nr_mmio && !cfg->mmio))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nr_mmio; i++)
		if (cfg->mmio[i].base + cfg->mmio[i].size > 0x100000000ULL)
			return -EINVAL; /* Memory32Fixed */
	/* Fixed-size tables first, the DSDT (whose size depends on the
	 * devices) last. */
	l.rsdp = 0;
	l.xsdt = 64;
	l.fadt = l.xsdt + 64;
	l.madt = l.fadt + ALIGN_UP(FADT_LEN, 16);
	l.dsdt = l.madt + ALIGN_UP(HDR_LEN + 8 + ACPI_MAX_CPUS * 8 + 12 + 10 + 6, 16);
	if (cap < l.dsdt + HDR_LEN)
		return -ENOSPC;
	memset(buf, 0, l.dsdt);

	/* DSDT */
	t = buf + l.dsdt;
	put_header(t, "DSDT", 0, DSDT_REVISION, "CELLADSD");
	aml_init(&a, t + HDR_LEN, cap - l.dsdt - HDR_LEN);
	build_dsdt_body(&a, cfg);
	if (aml_error(&a))
		return -ENOSPC;
	finish(t, (uint32_t)(HDR_LEN + a.len));
	l.len = l.dsdt + HDR_LEN + a.len;

	build_fadt(buf + l.fadt, base + l.dsdt);
	build_madt(buf + l.madt, cfg->nr_cpus, possible_cpus(cfg));

	/* XSDT: FADT, MADT */
	t = buf + l.xsdt;
	put_header(t, "XSDT", 0, 1, "CELLAXSD");
	off = HDR_LEN;
	le64_put(t + off, base + l.fadt);
	off += 8;
	le64_put(t + off, base + l.madt);
	off += 8;
	finish(t, (uint32_t)off);

	/* RSDP (revision 2: the XSDT; no RSDT) */
	t = buf + l.rsdp;
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, "CELLA ", 6);
	t[15] = 2;
	le32_put(t + 20, RSDP_LEN);
	le64_put(t + 24, base + l.xsdt);
	t[8] = (uint8_t)-acpi_sum(t, 20);
	t[32] = (uint8_t)-acpi_sum(t, RSDP_LEN);

	if (out)
		*out = l;
	return 0;
}

int x86_setup_acpi(struct guest_mem *mem, const struct acpi_config *cfg)
{
	uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_layout l;
	int ret = acpi_build_tables(cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l);

	if (ret)
		return ret;
	return guest_mem_write(mem, ACPI_TABLES_ADDR, buf, l.len);
}
