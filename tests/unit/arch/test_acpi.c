/* test_acpi.c: the ACPI tables of acpi.c. Without tools: checksums, the
 * pointer chain RSDP -> XSDT -> FADT/MADT, FADT -> DSDT, every MADT entry.
 * With iasl (Debian's acpica-tools): each table is disassembled with
 * `iasl -d`, the disassembly is checked for what the guest must find (the
 * HW-reduced flag, the sleep registers, every local APIC, COM1, every
 * virtio-mmio window and its interrupt, the GED and power button, \_S5), and
 * recompiled: the recompiled table must equal ours byte for byte (but for
 * the checksum and the compiler id/revision, which iasl writes as its own).
 * Without iasl that part skips loudly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_aml.h"
#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

static const struct acpi_mmio_dev devs[] = {
	{ 0xD0000000, 0x1000, 5 },
	{ 0xD0001000, 0x1000, 6 },
	{ 0xD0002000, 0x1000, 7 },
};

static uint8_t sum(const uint8_t *p, size_t n)
{
	return mp_checksum(p, n);
}

static const uint8_t *table_at(const uint8_t *buf, const struct acpi_layout *l, uint64_t gpa,
			       const char *sig)
{
	const uint8_t *t;

	assert_true(gpa >= ACPI_TABLES_ADDR && gpa - ACPI_TABLES_ADDR + 36 <= l->len);
	t = buf + (gpa - ACPI_TABLES_ADDR);
	assert_memory_equal(t, sig, 4);
	assert_true(gpa - ACPI_TABLES_ADDR + le32_get(t + 4) <= l->len);
	assert_int_equal(sum(t, le32_get(t + 4)), 0);
	return t;
}

static void test_structure(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_config cfg = { .nr_cpus = 4, .mmio = devs, .nr_mmio = 3 };
	struct acpi_layout l;
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt, *p, *end;
	unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0;

	(void)st;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	rsdp = buf + l.rsdp;
	assert_memory_equal(rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(rsdp, 20), 0);
	assert_int_equal(sum(rsdp, 36), 0);
	assert_int_equal(rsdp[15], 2);
	assert_int_equal(l.rsdp % 16, 0); /* found by the 16-byte scan */
	xsdt = table_at(buf, &l, le64_get(rsdp + 24), "XSDT");
	assert_int_equal(le32_get(xsdt + 4), 36 + 16);
	fadt = table_at(buf, &l, le64_get(xsdt + 36), "FACP");
	madt = table_at(buf, &l, le64_get(xsdt + 44), "APIC");
	assert_int_equal(le32_get(fadt + 4), 276);
	assert_true(le32_get(fadt + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
	assert_int_equal(fadt[244], 1);
	assert_int_equal(le64_get(fadt + 248), ACPI_SLEEP_CTL_PORT);
	assert_int_equal(le64_get(fadt + 260), ACPI_SLEEP_STS_PORT);
	dsdt = table_at(buf, &l, le64_get(fadt + 140), "DSDT");
	assert_ptr_equal(dsdt, buf + l.dsdt);

	assert_int_equal(le32_get(madt + 36), 0xFEE00000);
	p = madt + 44;
	end = madt + le32_get(madt + 4);
	while (p < end) {
		assert_true(p[1] >= 2 && p + p[1] <= end);
		switch (p[0]) {
		case 0:
			assert_int_equal(p[3], lapics); /* APIC ids 0..n-1 */
			assert_int_equal(le32_get(p + 4), 1);
			lapics++;
			break;
		case 1:
			assert_int_equal(p[2], cfg.nr_cpus);
			assert_int_equal(le32_get(p + 4), 0xFEC00000);
			ioapics++;
			break;
		case 2:
			assert_int_equal(p[3], 0);
			assert_int_equal(le32_get(p + 4), 2);
			isos++;
			break;
		case 4:
			assert_int_equal(p[5], 1);
			nmis++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", p[0]);
		}
		p += p[1];
	}
	assert_int_equal(lapics, 4);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
	assert_int_equal(nmis, 1);
}

static void test_limits(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_mmio_dev many[ACPI_MAX_MMIO];
	struct acpi_config cfg = { .nr_cpus = ACPI_MAX_CPUS, .mmio = many, .nr_mmio = ACPI_MAX_MMIO };
	struct acpi_mmio_dev high = { 0xFFFFF000, 0x2000, 5 };
	struct acpi_layout l;

	(void)st;
	for (unsigned i = 0; i < ACPI_MAX_MMIO; i++)
		many[i] = (struct acpi_mmio_dev){ 0xD0000000 + i * 0x1000, 0x1000, 5 + i % 19 };
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	assert_true(l.len < ACPI_TABLES_MAX);
	assert_true(ACPI_TABLES_ADDR + ACPI_TABLES_MAX <= 0x100000);
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, 600, &l), -ENOSPC);
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, l.len - 1, &l), -ENOSPC);
	cfg.nr_cpus = 0;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), -EINVAL);
	cfg.nr_cpus = ACPI_MAX_CPUS + 1;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), -EINVAL);
	cfg.nr_cpus = 1;
	cfg.nr_mmio = ACPI_MAX_MMIO + 1;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), -EINVAL);
	cfg.mmio = &high;
	cfg.nr_mmio = 1;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), -EINVAL);
}

/* PkgLength and integer encodings at their boundaries. */
static void test_aml_encodings(void **st)
{
	uint8_t buf[8192];
	struct aml a;
	size_t s;

	(void)st;
	aml_init(&a, buf, sizeof(buf));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 2);
	aml_integer(&a, 0x100);
	aml_integer(&a, 0x10000);
	aml_integer(&a, 0x100000000ULL);
	assert_int_equal(a.len, 1 + 1 + 2 + 3 + 5 + 9);
	assert_int_equal(buf[2], 0x0A);
	assert_int_equal(buf[4], 0x0B);
	assert_int_equal(buf[7], 0x0C);
	assert_int_equal(buf[12], 0x0E);

	for (size_t body = 60; body < 70; body++) {
		aml_init(&a, buf, sizeof(buf));
		s = aml_pkg_begin(&a);
		for (size_t i = 0; i < body; i++)
			aml_byte(&a, 0xAB);
		aml_pkg_end(&a, s);
		if (body + 1 < 0x40) {
			assert_int_equal(a.len, body + 1);
			assert_int_equal(buf[0], body + 1);
		} else {
			assert_int_equal(a.len, body + 2);
			assert_int_equal(buf[0] >> 6, 1);
			assert_int_equal((buf[0] & 0xf) | (buf[1] << 4), body + 2);
		}
	}
	aml_init(&a, buf, sizeof(buf));
	s = aml_pkg_begin(&a);
	for (size_t i = 0; i < 5000; i++)
		aml_byte(&a, 0);
	aml_pkg_end(&a, s);
	assert_int_equal(a.len, 5003);
	assert_int_equal(buf[0] >> 6, 2);
	assert_int_equal((buf[0] & 0xf) | (buf[1] << 4) | (buf[2] << 12), 5003);

	aml_init(&a, buf, 3);
	aml_string(&a, "long");
	assert_int_equal(aml_error(&a), -ENOSPC);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP0501");
	assert_int_equal(a.len, 5);
	assert_memory_equal(buf, "\x0c\x41\xd0\x05\x01", 5);
}

/* ---- iasl ---- */

static char *iasl_path(void)
{
	static char path[] = "/usr/bin/iasl";

	return access(path, X_OK) == 0 ? path : NULL;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = 0;
	fclose(f);
	if (n)
		*n = (size_t)len;
	return buf;
}

static void run(const char *dir, const char *args)
{
	char cmd[1024];
	int rc;

	snprintf(cmd, sizeof(cmd), "cd %s && iasl %s >iasl.log 2>&1", dir, args);
	rc = system(cmd);
	if (rc != 0) {
		char log[600];
		char *out;

		snprintf(log, sizeof(log), "%s/iasl.log", dir);
		out = read_file(log, NULL);
		fprintf(stderr, "%s\n", out);
		free(out);
		fail_msg("`%s` failed (%d)", cmd, rc);
	}
}

/* Disassemble one table, check its text, recompile it and compare. */
static char *round_trip(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	char args[600];
	char *dsl, *aml;
	size_t len = le32_get(t + 4), alen;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	write_file(path, t, len);
	snprintf(args, sizeof(args), "-d %s.dat", name);
	run(dir, args);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	dsl = read_file(path, NULL);
	/* Recompile into <name>.aml next to it (the DSDT with the ASL
	 * compiler, the others with the data table compiler). */
	snprintf(args, sizeof(args), "-p %s %s.dsl", name, name);
	run(dir, args);
	snprintf(path, sizeof(path), "%s/%s.aml", dir, name);
	aml = read_file(path, &alen);
	if (alen != len)
		fail_msg("%s: iasl recompiled %zu bytes, ours are %zu", name, alen, len);
	/* Equal but for the checksum (9) and compiler id/revision (28-35). */
	assert_memory_equal(aml, t, 9);
	assert_memory_equal(aml + 10, t + 10, 18);
	assert_memory_equal(aml + 36, t + 36, len - 36);
	free(aml);
	return dsl;
}

static void expect(const char *dsl, const char *what)
{
	if (!strstr(dsl, what))
		fail_msg("disassembly lacks \"%s\":\n%s", what, dsl);
}

static void test_iasl(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_config cfg = { .nr_cpus = 2, .mmio = devs, .nr_mmio = 3 };
	struct acpi_layout l;
	char dir[] = "/tmp/cella-acpi-XXXXXX", cmd[600];
	char *dsl;

	(void)st;
	if (!iasl_path()) {
		fprintf(stderr, "SKIP: iasl not found (Debian package acpica-tools; "
				"scripts/setup.sh installs it): the tables are not checked "
				"against its disassembly\n");
		skip();
	}
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	assert_non_null(mkdtemp(dir));

	dsl = round_trip(dir, "dsdt", buf + l.dsdt);
	expect(dsl, "Scope (_SB)");
	expect(dsl, "Device (COM1)");
	expect(dsl, "Name (_HID, EisaId (\"PNP0501\")");
	expect(dsl, "IO (Decode16,\n                    0x03F8,             // Range Minimum");
	expect(dsl, "IRQNoFlags ()\n                    {4}");
	for (unsigned i = 0; i < 3; i++) {
		char want[300];

		snprintf(want, sizeof(want), "Device (VR%02X)\n        {\n            "
			 "Name (_HID, \"LNRO0005\")", i);
		expect(dsl, want);
		snprintf(want, sizeof(want), "Memory32Fixed (ReadWrite,\n                    "
			 "0x%08X,         // Address Base\n                    0x00001000,         "
			 "// Address Length", (unsigned)devs[i].base);
		expect(dsl, want);
		snprintf(want, sizeof(want), "Interrupt (ResourceConsumer, Edge, ActiveHigh, "
			 "Exclusive, ,, )\n                {\n                    0x%08X,\n",
			 devs[i].gsi);
		expect(dsl, want);
	}
	expect(dsl, "Device (PWRB)\n        {\n            Name (_HID, EisaId (\"PNP0C0C\")");
	expect(dsl, "Name (_HID, \"ACPI0013\" /* Generic Event Device */)");
	expect(dsl, "OperationRegion (GDST, SystemIO, 0x0602, One)");
	expect(dsl, "Method (_EVT, 1, Serialized)");
	expect(dsl, "Notify (PWRB, 0x80)");
	expect(dsl, "Name (_S5, Package (0x04)  // _S5_: S5 System State\n    {\n        0x05, ");
	free(dsl);

	/* ACPICA itself (acpiexec, same package) loads the DSDT and runs its
	 * methods: the GED's _INI and _EVT (SystemIO simulated) and \_S5. */
	if (access("/usr/bin/acpiexec", X_OK) == 0) {
		static const char cmds[] = "execute \\_SB.GED0._INI\nexecute \\_SB.GED0._EVT 3\n"
					   "execute \\_S5\nquit\n";
		char path[512], *out;

		snprintf(path, sizeof(path), "%s/cmds", dir);
		write_file(path, cmds, strlen(cmds));
		snprintf(cmd, sizeof(cmd), "cd %s && acpiexec -di dsdt.dat <cmds >exec.log 2>&1", dir);
		assert_int_equal(system(cmd), 0);
		snprintf(path, sizeof(path), "%s/exec.log", dir);
		out = read_file(path, NULL);
		expect(out, "6 Devices,   1 Regions,    2 Methods"); /* COM1, 3 VRnn, PWRB, GED0 */
		expect(out, "No object was returned from evaluation of \\_SB.GED0._INI");
		expect(out, "No object was returned from evaluation of \\_SB.GED0._EVT");
		expect(out, "[Package] Contains 4 Elements:\n    [Integer] = 0000000000000005");
		if (strstr(out, "Exception") || strstr(out, "ACPI Error"))
			fail_msg("acpiexec reported an error:\n%s", out);
		free(out);
	}

	dsl = round_trip(dir, "facp", buf + l.fadt);
	expect(dsl, "Hardware Reduced (V5) : 1");
	expect(dsl, "Reset Register Supported (V2) : 1");
	expect(dsl, "Sleep Control Register : [Generic Address Structure]");
	expect(dsl, "Sleep Status Register : [Generic Address Structure]");
	expect(dsl, "Address : 0000000000000600");
	expect(dsl, "Address : 0000000000000601");
	expect(dsl, "Address : 0000000000000CF9");
	free(dsl);

	dsl = round_trip(dir, "apic", buf + l.madt);
	expect(dsl, "Local Apic Address : FEE00000");
	expect(dsl, "Local Apic ID : 00");
	expect(dsl, "Local Apic ID : 01");
	expect(dsl, "I/O Apic ID : 02");
	expect(dsl, "Interrupt : 00000002");
	free(dsl);

	dsl = round_trip(dir, "xsdt", buf + l.xsdt);
	free(dsl);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_aml_encodings),
		cmocka_unit_test(test_iasl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
