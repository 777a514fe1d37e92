/* test_qos.c: storage QoS token buckets on a fake clock: normalisation to
 * 8 KiB, bursts, steady rates, bandwidth, both limits together, oversize
 * requests, changing limits on the fly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend/qos.h"

#define MS 1000000ULL
#define S  1000000000ULL

static void test_op_cost(void **st)
{
	(void)st;
	assert_int_equal(qos_op_cost(0), 1);
	assert_int_equal(qos_op_cost(512), 1);
	assert_int_equal(qos_op_cost(8192), 1);
	assert_int_equal(qos_op_cost(8193), 2);
	assert_int_equal(qos_op_cost(65536), 8);
	assert_int_equal(qos_op_cost(1 << 20), 128);
}

static void test_unlimited(void **st)
{
	struct qos q;
	struct qos_limits l = { 0 };

	(void)st;
	qos_init(&q, &l, 0);
	assert_false(qos_enabled(&q));
	for (int i = 0; i < 100000; i++)
		assert_int_equal(qos_admit(&q, 1, 4096, 0), 0);
}

/* Admit as fast as allowed for `secs` of fake time; return ops admitted. */
static uint64_t drive(struct qos *q, uint64_t *now, uint64_t secs, uint64_t ops, uint64_t bytes)
{
	uint64_t end = *now + secs * S, n = 0;

	while (*now < end) {
		uint64_t w = qos_admit(q, ops, bytes, *now);

		if (w)
			*now += w;
		else
			n++;
	}
	return n;
}

static void test_iops_burst_then_rate(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 1000, .iops_burst = 50 };
	uint64_t now = 5 * S, n;

	(void)st;
	qos_init(&q, &l, now);
	assert_true(qos_enabled(&q));
	/* The burst passes at once, then the next request waits 1 ms. */
	for (int i = 0; i < 50; i++)
		assert_int_equal(qos_admit(&q, 1, 4096, now), 0);
	assert_int_equal(qos_admit(&q, 1, 4096, now), 1 * MS);
	assert_int_equal(qos_admit(&q, 1, 4096, now + MS), 0);
	now += MS;
	/* Steady state: 1000/s, within 1 % over 10 s. */
	n = drive(&q, &now, 10, 1, 4096);
	assert_in_range(n, 9900, 10100);
}

static void test_normalized(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 800, .iops_burst = 8 };
	uint64_t now = 0, n;

	(void)st;
	qos_init(&q, &l, now);
	/* 64 KiB requests count 8 operations: 100 of them per second. */
	n = drive(&q, &now, 10, qos_op_cost(65536), 65536);
	assert_in_range(n, 990, 1010);
}

static void test_bandwidth(void **st)
{
	struct qos q;
	struct qos_limits l = { .bps = 10 << 20, .bps_burst = 1 << 20 };
	uint64_t now = 0, n;

	(void)st;
	qos_init(&q, &l, now);
	n = drive(&q, &now, 10, 1, 1 << 20); /* 1 MiB requests: 10/s */
	assert_in_range(n, 100, 102);
}

static void test_both_limits(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 100, .bps = 100 * 65536ULL };
	uint64_t now = 0, n;

	(void)st;
	qos_init(&q, &l, now);
	/* 4 KiB requests: IOPS binds (100/s); bandwidth would allow 1600/s. */
	n = drive(&q, &now, 10, 1, 4096);
	assert_in_range(n, 990, 1020);
	/* 1 MiB requests: 128 ops each (IOPS allows 0.78/s), bandwidth 6.25/s. */
	n = drive(&q, &now, 64, qos_op_cost(1 << 20), 1 << 20);
	assert_in_range(n, 49, 52);
}

static void test_oversize_request(void **st)
{
	struct qos q;
	struct qos_limits l = { .bps = 1000, .bps_burst = 1000 };
	uint64_t now = 0, w;

	(void)st;
	qos_init(&q, &l, now);
	/* Bigger than the bucket: passes when full, leaving a debt. */
	assert_int_equal(qos_admit(&q, 1, 5000, now), 0);
	w = qos_admit(&q, 1, 100, now);
	assert_int_equal(w, 4100 * MS); /* 4000 debt + 100 at 1000 B/s */
}

static void test_set_on_the_fly(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 10, .iops_burst = 1 };
	uint64_t now = 0;

	(void)st;
	qos_init(&q, &l, now);
	assert_int_equal(qos_admit(&q, 1, 0, now), 0);
	assert_int_equal(qos_admit(&q, 1, 0, now), 100 * MS);
	l.iops = 1000;
	qos_set(&q, &l, now);
	assert_int_equal(qos_admit(&q, 1, 0, now), 1 * MS); /* level kept, faster refill */
	l = (struct qos_limits){ 0 };
	qos_set(&q, &l, now);
	assert_false(qos_enabled(&q));
	assert_int_equal(qos_admit(&q, 1, 0, now), 0);
	/* From unlimited to limited: starts with a full bucket. */
	l.iops = 5;
	l.iops_burst = 3;
	qos_set(&q, &l, now);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qos_admit(&q, 1, 0, now), 0);
	assert_int_equal(qos_admit(&q, 1, 0, now), 200 * MS);
}

static void test_default_burst(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 1000 };
	int n = 0;

	(void)st;
	qos_init(&q, &l, 0);
	while (!qos_admit(&q, 1, 0, 0))
		n++;
	assert_int_equal(n, 100); /* 100 ms worth */
}

static void test_clock_backwards(void **st)
{
	struct qos q;
	struct qos_limits l = { .iops = 10, .iops_burst = 1 };

	(void)st;
	qos_init(&q, &l, 10 * S);
	assert_int_equal(qos_admit(&q, 1, 0, 10 * S), 0);
	/* An older timestamp refills nothing and never underflows. */
	assert_int_equal(qos_admit(&q, 1, 0, 9 * S), 100 * MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_op_cost),
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_iops_burst_then_rate),
		cmocka_unit_test(test_normalized),
		cmocka_unit_test(test_bandwidth),
		cmocka_unit_test(test_both_limits),
		cmocka_unit_test(test_oversize_request),
		cmocka_unit_test(test_set_on_the_fly),
		cmocka_unit_test(test_default_burst),
		cmocka_unit_test(test_clock_backwards),
	};

	return cmocka_run_group_tests_name("qos", tests, NULL, NULL);
}
