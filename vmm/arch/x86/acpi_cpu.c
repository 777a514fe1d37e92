/* acpi_cpu.c: the DSDT's processor container for vCPU hot-plug (contracts
 * and the register block in acpi_cpu.h). What iasl -d shows:
 *
 *   Device (CPUS) {
 *       Name (_HID, "ACPI0010")  Name (_CID, EisaId ("PNP0A05"))
 *       Mutex (CPLK, 0x00)
 *       OperationRegion (PRST, SystemIO, 0x0CD8, 0x08)
 *       Field (PRST, ByteAcc, NoLock, WriteAsZeros) { CSEL, 32, CPEN, 1, CINS, 1 }
 *       Method (CSTA, 1, Serialized) {   // _STA of vCPU Arg0: 0x0F present, 0 absent
 *           Acquire (CPLK, 0xFFFF)  CSEL = Arg0  Local0 = Zero
 *           If ((CPEN == One)) { Local0 = 0x0F }
 *           Release (CPLK)  Return (Local0)
 *       }
 *       Method (CSCN, 0, Serialized) {   // one block per possible vCPU
 *           Acquire (CPLK, 0xFFFF)
 *           CSEL = n  If ((CINS == One)) { Notify (Cnnn, One)  CINS = One }  ...
 *           Release (CPLK)
 *       }
 *       Device (C000) { Name (_HID, "ACPI0007")  Name (_UID, Zero)
 *           Name (_MAT, Buffer (0x08) { 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 })
 *           Method (_STA, 0, NotSerialized) { Return (CSTA (Zero)) } }
 *       ...
 *   }
 *
 * CSCN is unrolled (no While): at most 32 vCPUs, and each block is the same
 * few bytes iasl would write for it. Notify (Cnnn, One) is a Device Check:
 * the OS evaluates _STA, finds the vCPU present, reads _MAT for its APIC id
 * (enabled there, as QEMU and Cloud Hypervisor write it: Linux refuses a
 * disabled _MAT entry) and brings it up. */
#include <stdio.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_aml.h"
#include "arch/x86/acpi_cpu.h"
#include "arch/x86/x86_priv.h"

#define AML_EXT_MUTEX   0x01
#define AML_EXT_ACQUIRE 0x23
#define AML_EXT_RELEASE 0x27
#define AML_LEQUAL      0x93
#define AML_PARENT      0x5E /* ParentPrefixChar '^' */
#define FIELD_BYTEACC_WRITEASZEROS 0x41 /* ByteAcc, NoLock, WriteAsZeros (UpdateRule 2) */
#define STA_PRESENT     0x0F            /* present, enabled, shown, functioning */
#define NOTIFY_DEVICE_CHECK 1

#define MADT_LAPIC                0
#define MADT_LAPIC_ENABLED        1u
#define MADT_LAPIC_ONLINE_CAPABLE 2u

void acpi_cpu_madt_lapic(uint8_t *p, unsigned index, int enabled)
{
	p[0] = MADT_LAPIC;
	p[1] = 8;
	p[2] = (uint8_t)index; /* ACPI processor UID */
	p[3] = (uint8_t)index; /* APIC id, as in the MP table */
	le32_put(p + 4, enabled ? MADT_LAPIC_ENABLED : MADT_LAPIC_ONLINE_CAPABLE);
}

static void acquire(struct aml *a)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_ACQUIRE);
	aml_path(a, "CPLK");
	aml_byte(a, 0xFF); /* Timeout: a WordData, 0xFFFF waits for ever */
	aml_byte(a, 0xFF);
}

static void release(struct aml *a)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_RELEASE);
	aml_path(a, "CPLK");
}

static void store_int(struct aml *a, uint64_t v, const char *name)
{
	aml_byte(a, AML_STORE);
	aml_integer(a, v);
	aml_path(a, name);
}

static void build_csta(struct aml *a)
{
	size_t m = aml_method_begin(a, "CSTA", 1, true), cond;

	acquire(a);
	aml_byte(a, AML_STORE);
	aml_byte(a, AML_ARG0);
	aml_path(a, "CSEL");
	aml_byte(a, AML_STORE);
	aml_integer(a, 0);
	aml_byte(a, AML_LOCAL0);
	aml_byte(a, AML_IF);
	cond = aml_pkg_begin(a);
	aml_byte(a, AML_LEQUAL);
	aml_path(a, "CPEN");
	aml_integer(a, 1);
	aml_byte(a, AML_STORE);
	aml_integer(a, STA_PRESENT);
	aml_byte(a, AML_LOCAL0);
	aml_pkg_end(a, cond);
	release(a);
	aml_byte(a, AML_RETURN);
	aml_byte(a, AML_LOCAL0);
	aml_pkg_end(a, m);
}

static void cpu_name(char out[5], unsigned i)
{
	snprintf(out, 5, "C%03X", i & 0xfff);
}

static void build_cscn(struct aml *a, unsigned max_cpus)
{
	size_t m = aml_method_begin(a, "CSCN", 0, true), cond;
	char name[5];

	acquire(a);
	for (unsigned i = 0; i < max_cpus; i++) {
		cpu_name(name, i);
		store_int(a, i, "CSEL");
		aml_byte(a, AML_IF);
		cond = aml_pkg_begin(a);
		aml_byte(a, AML_LEQUAL);
		aml_path(a, "CINS");
		aml_integer(a, 1);
		aml_byte(a, AML_NOTIFY);
		aml_path(a, name);
		aml_integer(a, NOTIFY_DEVICE_CHECK);
		store_int(a, 1, "CINS"); /* acknowledge: write 1 to clear */
		aml_pkg_end(a, cond);
	}
	release(a);
	aml_pkg_end(a, m);
}

static void build_cpu(struct aml *a, unsigned i)
{
	uint8_t mat[8];
	size_t dev, buf, m;
	char name[5];

	cpu_name(name, i);
	dev = aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_string(a, "ACPI0007");
	aml_name(a, "_UID");
	aml_integer(a, i);
	aml_name(a, "_MAT");
	aml_byte(a, AML_BUFFER);
	buf = aml_pkg_begin(a);
	aml_integer(a, sizeof(mat));
	acpi_cpu_madt_lapic(mat, i, 1);
	aml_bytes(a, mat, sizeof(mat));
	aml_pkg_end(a, buf);
	m = aml_method_begin(a, "_STA", 0, false);
	aml_byte(a, AML_RETURN);
	aml_path(a, "CSTA");
	aml_integer(a, i);
	aml_pkg_end(a, m);
	aml_pkg_end(a, dev);
}

void acpi_cpu_build_container(struct aml *a, unsigned nr_cpus, unsigned max_cpus)
{
	size_t dev, fld;

	(void)nr_cpus; /* _STA asks the controller, which knows who is present */
	dev = aml_device_begin(a, "CPUS");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0010");
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A05");
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_MUTEX);
	aml_path(a, "CPLK");
	aml_byte(a, 0); /* SyncLevel 0 */
	aml_io_region(a, "PRST", ACPI_CPUHP_PORT, ACPI_CPUHP_LEN);
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_FIELD);
	fld = aml_pkg_begin(a);
	aml_path(a, "PRST");
	aml_byte(a, FIELD_BYTEACC_WRITEASZEROS);
	aml_path(a, "CSEL");
	aml_byte(a, 32);
	aml_path(a, "CPEN");
	aml_byte(a, 1);
	aml_path(a, "CINS");
	aml_byte(a, 1);
	aml_pkg_end(a, fld);
	build_csta(a);
	build_cscn(a, max_cpus);
	for (unsigned i = 0; i < max_cpus; i++)
		build_cpu(a, i);
	aml_pkg_end(a, dev);
}

void acpi_cpu_build_ged_event(struct aml *a)
{
	size_t cond;

	aml_byte(a, AML_IF);
	cond = aml_pkg_begin(a);
	aml_byte(a, AML_AND);
	aml_byte(a, AML_LOCAL0);
	aml_integer(a, ACPI_GED_EVT_CPU_HOTPLUG);
	aml_byte(a, 0); /* no target */
	/* ^^CPUS.CSCN from \_SB.GED0._EVT: the shortest path, which iasl
	 * writes for \_SB.CPUS.CSCN too (byte-for-byte equal tables). */
	aml_byte(a, AML_PARENT);
	aml_byte(a, AML_PARENT);
	aml_path(a, "CPUS.CSCN");
	aml_pkg_end(a, cond);
}
