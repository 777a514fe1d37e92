/* test_acpi_cpu.c: the tables of a VM with hot-pluggable vCPUs (acpi_cpu.c):
 * the MADT lists every possible vCPU (the ones beyond the boot count online
 * capable), the DSDT has the processor container, its ACPI0007 devices with
 * _MAT, CSTA/CSCN and the GED's call of CSCN; a VM without hot-plug gets
 * exactly the tables it had before. With iasl: the DSDT and MADT are
 * disassembled, checked and recompiled byte for byte; with acpiexec, ACPICA
 * runs _STA of each vCPU, CSCN and the GED's _EVT against a simulated
 * register block. Without the tools that part skips loudly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_cpu.h"
#include "arch/x86/x86_priv.h"

static const struct acpi_mmio_dev devs[] = {
	{ 0xD0000000, 0x1000, 5 },
};

static const uint8_t *madt_of(const uint8_t *buf, const struct acpi_layout *l)
{
	return buf + l->madt;
}

static void test_madt(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_config cfg = { .nr_cpus = 2, .max_cpus = 5, .mmio = devs, .nr_mmio = 1 };
	struct acpi_layout l;
	const uint8_t *madt, *p, *end;
	unsigned lapics = 0;

	(void)st;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	madt = madt_of(buf, &l);
	assert_memory_equal(madt, "APIC", 4);
	assert_int_equal(madt[8], 5); /* revision 5: the online-capable flag exists */
	p = madt + 44;
	end = madt + le32_get(madt + 4);
	for (; p < end; p += p[1]) {
		if (p[0] == 0) {
			assert_int_equal(p[2], lapics);
			assert_int_equal(p[3], lapics);
			/* enabled for the boot vCPUs, online capable for the rest */
			assert_int_equal(le32_get(p + 4), lapics < 2 ? 1 : 2);
			lapics++;
		} else if (p[0] == 1) {
			assert_int_equal(p[2], 5); /* IOAPIC id past every APIC id */
		}
	}
	assert_int_equal(lapics, 5);
	/* The DSDT has the container and each vCPU. */
	assert_non_null(memmem(buf + l.dsdt, l.len - l.dsdt, "CPUS", 4));
	assert_non_null(memmem(buf + l.dsdt, l.len - l.dsdt, "C004", 4));
	assert_null(memmem(buf + l.dsdt, l.len - l.dsdt, "C005", 4));
}

/* Hot-plug off (max_cpus 0 or equal to nr_cpus): the tables are the ones
 * of a VM that never had it. */
static void test_no_hotplug_unchanged(void **st)
{
	static uint8_t a[ACPI_TABLES_MAX], b[ACPI_TABLES_MAX];
	struct acpi_config cfg = { .nr_cpus = 3, .mmio = devs, .nr_mmio = 1 };
	struct acpi_layout la, lb;

	(void)st;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, a, sizeof(a), &la), 0);
	cfg.max_cpus = 3;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, b, sizeof(b), &lb), 0);
	assert_int_equal(la.len, lb.len);
	assert_memory_equal(a, b, la.len);
	assert_null(memmem(a + la.dsdt, la.len - la.dsdt, "CPUS", 4));
	cfg.max_cpus = 1; /* below nr_cpus: nr_cpus stands */
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, b, sizeof(b), &lb), 0);
	assert_memory_equal(a, b, la.len);
}

static void test_limits(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_mmio_dev many[ACPI_MAX_MMIO];
	struct acpi_config cfg = { .nr_cpus = 1, .max_cpus = ACPI_MAX_CPUS, .mmio = many,
				   .nr_mmio = ACPI_MAX_MMIO };
	struct acpi_layout l;

	(void)st;
	for (unsigned i = 0; i < ACPI_MAX_MMIO; i++)
		many[i] = (struct acpi_mmio_dev){ 0xD0000000 + i * 0x1000, 0x1000, 5 + i % 19 };
	/* The largest machine still fits the BIOS area. */
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	assert_true(l.len < ACPI_TABLES_MAX);
	cfg.max_cpus = ACPI_MAX_CPUS + 1;
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), -EINVAL);
}

/* ---- iasl and acpiexec ---- */

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
	char cmd[1024], log[600];
	char *out;

	snprintf(cmd, sizeof(cmd), "cd %s && iasl %s >iasl.log 2>&1", dir, args);
	if (system(cmd) == 0)
		return;
	snprintf(log, sizeof(log), "%s/iasl.log", dir);
	out = read_file(log, NULL);
	fprintf(stderr, "%s\n", out);
	free(out);
	fail_msg("`%s` failed", cmd);
}

static char *round_trip(const char *dir, const char *name, const uint8_t *t)
{
	char path[512], args[600];
	char *dsl, *aml;
	size_t len = le32_get(t + 4), alen;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	write_file(path, t, len);
	snprintf(args, sizeof(args), "-d %s.dat", name);
	run(dir, args);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	dsl = read_file(path, NULL);
	snprintf(args, sizeof(args), "-p %s %s.dsl", name, name);
	run(dir, args);
	snprintf(path, sizeof(path), "%s/%s.aml", dir, name);
	aml = read_file(path, &alen);
	if (alen != len) {
		fprintf(stderr, "%s\n", dsl);
		fail_msg("%s: iasl recompiled %zu bytes, ours are %zu", name, alen, len);
	}
	/* Equal but for the checksum (9) and compiler id/revision (28-35). */
	assert_memory_equal(aml, t, 9);
	assert_memory_equal(aml + 10, t + 10, 18);
	if (memcmp(aml + 36, t + 36, len - 36)) {
		for (size_t i = 36; i < len; i++)
			if (aml[i] != t[i]) {
				fprintf(stderr, "%s\n", dsl);
				fail_msg("%s: byte %zu: iasl 0x%02x, ours 0x%02x", name, i,
					 (uint8_t)aml[i], t[i]);
			}
	}
	free(aml);
	return dsl;
}

static void expect(const char *text, const char *what)
{
	if (!strstr(text, what)) {
		fprintf(stderr, "%s\n", text);
		fail_msg("output lacks \"%s\"", what);
	}
}

static void test_iasl(void **st)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	struct acpi_config cfg = { .nr_cpus = 2, .max_cpus = 4, .mmio = devs, .nr_mmio = 1 };
	struct acpi_layout l;
	char dir[] = "/tmp/cella-acpi-cpu-XXXXXX", cmd[700], path[512];
	char *dsl, *out;

	(void)st;
	if (access("/usr/bin/iasl", X_OK) != 0) {
		fprintf(stderr, "SKIP: iasl not found (Debian package acpica-tools; "
				"scripts/setup.sh installs it): the hot-plug AML is not checked\n");
		skip();
	}
	assert_int_equal(acpi_build_tables(&cfg, ACPI_TABLES_ADDR, buf, sizeof(buf), &l), 0);
	assert_non_null(mkdtemp(dir));

	dsl = round_trip(dir, "dsdt", buf + l.dsdt);
	expect(dsl, "Device (CPUS)");
	expect(dsl, "Name (_HID, \"ACPI0010\"");
	expect(dsl, "Name (_CID, EisaId (\"PNP0A05\")");
	expect(dsl, "Mutex (CPLK, 0x00)");
	expect(dsl, "OperationRegion (PRST, SystemIO, 0x0CD8, 0x08)");
	expect(dsl, "Field (PRST, ByteAcc, NoLock, WriteAsZeros)");
	expect(dsl, "CSEL,   32");
	expect(dsl, "Method (CSTA, 1, Serialized)");
	expect(dsl, "Method (CSCN, 0, Serialized)");
	expect(dsl, "Notify (C003, One)");
	expect(dsl, "^^CPUS.CSCN ()");
	for (unsigned i = 0; i < 4; i++) {
		char want[300];

		snprintf(want, sizeof(want), "Device (C%03X)", i);
		expect(dsl, want);
		snprintf(want, sizeof(want), "Return (CSTA (%s))",
			 i == 0 ? "Zero" : i == 1 ? "One" : i == 2 ? "0x02" : "0x03");
		expect(dsl, want);
		/* _MAT: the vCPU's MADT entry, enabled */
		snprintf(want, sizeof(want), "0x00, 0x08, 0x%02X, 0x%02X, 0x01, 0x00, 0x00, 0x00",
			 i, i);
		expect(dsl, want);
	}
	free(dsl);

	dsl = round_trip(dir, "apic", buf + l.madt);
	expect(dsl, "Local Apic ID : 03");
	expect(dsl, "Processor Enabled : 0");
	expect(dsl, "Runtime Online Capable : 1");
	expect(dsl, "I/O Apic ID : 04");
	free(dsl);

	/* ACPICA runs the methods (its SystemIO is simulated memory: nothing
	 * is present, so _STA answers 0 and CSCN notifies no one). */
	if (access("/usr/bin/acpiexec", X_OK) == 0) {
		static const char cmds[] = "execute \\_SB.CPUS.C000._STA\n"
					   "execute \\_SB.CPUS.C003._STA\n"
					   "execute \\_SB.CPUS.CSCN\n"
					   "execute \\_SB.GED0._EVT 3\n"
					   "execute \\_SB.CPUS.C002._MAT\n"
					   "quit\n";

		snprintf(path, sizeof(path), "%s/cmds", dir);
		write_file(path, cmds, strlen(cmds));
		snprintf(cmd, sizeof(cmd), "cd %s && acpiexec -di dsdt.dat <cmds >exec.log 2>&1",
			 dir);
		assert_int_equal(system(cmd), 0);
		snprintf(path, sizeof(path), "%s/exec.log", dir);
		out = read_file(path, NULL);
		expect(out, "Evaluation of \\_SB.CPUS.C000._STA returned object");
		expect(out, "Evaluation of \\_SB.CPUS.C003._STA returned object");
		expect(out, "No object was returned from evaluation of \\_SB.CPUS.CSCN");
		expect(out, "No object was returned from evaluation of \\_SB.GED0._EVT");
		expect(out, "[Buffer] Length 08 = ");
		if (strstr(out, "Exception") || strstr(out, "ACPI Error"))
			fail_msg("acpiexec reported an error:\n%s", out);
		free(out);
	} else {
		fprintf(stderr, "SKIP: acpiexec not found: the methods are not run\n");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_madt),
		cmocka_unit_test(test_no_hotplug_unchanged),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_iasl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
