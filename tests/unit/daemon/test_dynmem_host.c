/* test_dynmem_host.c: what the dynamic-memory balancer reads
 * (daemon/features/dynmem_host.c): /proc/meminfo and PSI text, the guest's
 * demand from its balloon status (Linux's way of counting the balloon and
 * the other), and the test pressure file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "dynmem_priv.h"

static void test_meminfo(void **st)
{
	uint64_t a = 0, t = 0;

	(void)st;
	assert_int_equal(dynmem_parse_meminfo("MemTotal:       24683496 kB\nMemFree:        "
					      "22177312 kB\nMemAvailable:   23691292 kB\n", &a, &t), 0);
	assert_int_equal(a, 23691292);
	assert_int_equal(t, 24683496);
	/* MemAvailableX is not MemAvailable; a missing one is an error. */
	assert_int_equal(dynmem_parse_meminfo("MemTotal: 10 kB\nMemAvailableX: 5 kB\n", &a, &t), -1);
	assert_int_equal(dynmem_parse_meminfo("", &a, &t), -1);
}

static void test_psi(void **st)
{
	(void)st;
	assert_true(dynmem_parse_psi("some avg10=12.50 avg60=1.00 avg300=0.00 total=5\n"
				     "full avg10=3.00 avg60=0.00 avg300=0.00 total=1\n") == 12.5);
	assert_true(dynmem_parse_psi("full avg10=3.00 avg60=0.00 avg300=0.00 total=1\n") == -1);
	assert_true(dynmem_parse_psi("") == -1);
}

static json_t *balloon(long long total_mib, long long avail_mib, long long free_mib,
		       long long actual_pages)
{
	json_t *st = json_object();

	if (total_mib >= 0)
		json_object_set_new(st, "total_memory", json_integer(total_mib << 20));
	if (avail_mib >= 0)
		json_object_set_new(st, "available_memory", json_integer(avail_mib << 20));
	if (free_mib >= 0)
		json_object_set_new(st, "free_memory", json_integer(free_mib << 20));
	return json_pack("{s:o, s:I}", "stats", st, "actual_pages", (json_int_t)actual_pages);
}

static void test_guest_demand(void **st)
{
	uint64_t d = 0, f = 0;
	json_t *b;

	(void)st;
	/* Linux with deflate-on-OOM: the 128 MiB balloon is in the total. */
	b = balloon(250, 56, 0, 128 * 256);
	assert_true(dynmem_guest_demand(b, 256, &d, &f));
	assert_int_equal(d, 250 - 56 - 128);
	json_decref(b);
	/* A driver that takes the balloon out of its total. */
	b = balloon(120, 56, 40, 128 * 256);
	assert_true(dynmem_guest_demand(b, 256, &d, &f));
	assert_int_equal(d, 64);
	assert_int_equal(f, 40);
	json_decref(b);
	/* Free only; no statistics yet; a total below what is free. */
	b = balloon(200, -1, 150, 0);
	assert_true(dynmem_guest_demand(b, 256, &d, &f));
	assert_int_equal(d, 50);
	json_decref(b);
	b = json_pack("{s:n, s:i}", "stats", "actual_pages", 0);
	assert_false(dynmem_guest_demand(b, 256, &d, &f));
	json_decref(b);
	b = balloon(10, 20, -1, 0);
	assert_true(dynmem_guest_demand(b, 256, &d, &f));
	assert_int_equal(d, 0);
	json_decref(b);
}

static void test_host_file(void **st)
{
	char path[] = "/tmp/dynmem-hostXXXXXX";
	int fd = mkstemp(path);
	uint64_t m = 0;
	double psi = -1;

	(void)st;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"memory_mib\": 208, \"psi_some_avg10\": 3.5}", 42), 42);
	close(fd);
	assert_true(dynmem_test_host_read(path, &m, &psi));
	assert_int_equal(m, 208);
	assert_true(psi == 3.5);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "{\"memory_mib\": -1}", 18), 18);
	close(fd);
	assert_false(dynmem_test_host_read(path, &m, &psi));
	unlink(path);
	assert_false(dynmem_test_host_read(path, &m, &psi));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meminfo),
		cmocka_unit_test(test_psi),
		cmocka_unit_test(test_guest_demand),
		cmocka_unit_test(test_host_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
