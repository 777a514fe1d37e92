/* test_dynmem.c: the dynamic-memory balancer's decision
 * (daemon/features/dynmem_decide.c) alone: buffer, minimum floor, weights,
 * the order of giving and giving back, hysteresis, PSI pressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dynmem_decide.h"

static const struct dm_params params = {
	.psi_threshold = 10.0, .psi_step_mib = 64, .min_change_mib = 4, .shrink_delay_ms = 5000,
};

/* A VM at its startup memory (target) with this demand. */
static struct dm_vm vm(uint64_t min, uint64_t max, uint64_t target, uint64_t demand,
		       unsigned weight)
{
	return (struct dm_vm){ .min_mib = min, .max_mib = max, .buffer_pct = 20, .weight = weight,
			       .have_demand = true, .demand_mib = demand,
			       .free_mib = target > demand ? target - demand : 0,
			       .resident_mib = target, .target_mib = target };
}

/* Plenty of host memory. */
static const struct dm_host roomy = { .available_mib = 100000, .reserve_mib = 1024,
				      .psi_some_avg10 = 0 };

static void test_buffer_and_growth(void **st)
{
	struct dm_vm v[1] = { vm(64, 1024, 200, 300, 5000) };
	struct dm_summary s;

	(void)st;
	dm_decide(&params, &roomy, v, 1, 1000, &s);
	assert_int_equal(v[0].desired_mib, 360); /* 300 + 20 % */
	assert_int_equal(v[0].new_target_mib, 360);
	assert_int_equal(v[0].reason, DM_DEMAND);
	assert_false(s.pressure);
	/* The buffer is rounded up, and the maximum caps it. */
	v[0] = vm(64, 1024, 500, 101, 5000);
	v[0].buffer_pct = 50;
	dm_decide(&params, &roomy, v, 1, 1000, &s);
	assert_int_equal(v[0].desired_mib, 152);
	v[0] = vm(64, 1024, 1000, 1000, 5000);
	dm_decide(&params, &roomy, v, 1, 1000, &s);
	assert_int_equal(v[0].desired_mib, 1024);
	assert_int_equal(v[0].new_target_mib, 1024); /* 24 MiB, the cap: made */
}

static void test_minimum_floor(void **st)
{
	struct dm_vm v[2] = { vm(256, 1024, 1024, 10, 5000), vm(128, 1024, 1024, 500, 100) };
	struct dm_host starved = { .available_mib = 0, .reserve_mib = 100000 };
	struct dm_summary s;

	(void)st;
	v[0].have_demand = true;
	dm_decide(&params, &roomy, v, 1, 1, &s); /* tiny demand: the minimum, after the delay */
	assert_int_equal(v[0].desired_mib, 256);
	assert_int_equal(v[0].new_target_mib, 1024);
	dm_decide(&params, &roomy, v, 1, 1 + params.shrink_delay_ms, &s);
	assert_int_equal(v[0].new_target_mib, 256);
	assert_int_equal(v[0].reason, DM_IDLE);
	/* A host that cannot give anything: everyone at the minimum, never below. */
	v[0] = vm(256, 1024, 1024, 10, 5000);
	dm_decide(&params, &starved, v, 2, 1, &s);
	assert_true(s.pressure);
	assert_int_equal(v[0].new_target_mib, 256);
	assert_int_equal(v[1].new_target_mib, 128);
	assert_int_equal(v[0].reason, DM_PRESSURE);
	assert_int_equal(v[1].reason, DM_PRESSURE);
}

/* Two VMs want 240 MiB each; the host can give 400: the lower weight gives
 * 80 and the higher keeps all of its own. */
static void test_weights(void **st)
{
	struct dm_vm v[2] = { vm(64, 256, 240, 200, 9000), vm(64, 256, 240, 200, 1000) };
	struct dm_host h = { .available_mib = -80, .reserve_mib = 0 };
	struct dm_summary s;

	(void)st;
	dm_decide(&params, &h, v, 2, 1, &s);
	assert_true(s.pressure);
	assert_int_equal(s.budget_mib, 400);
	assert_int_equal(s.shortfall_mib, 80);
	assert_int_equal(v[0].new_target_mib, 240);
	assert_int_equal(v[0].reason, DM_NONE);
	assert_int_equal(v[1].new_target_mib, 160);
	assert_int_equal(v[1].reason, DM_PRESSURE);
	assert_true(v[1].squeezed);
	/* Past the low weight's minimum, the higher weight gives the rest. */
	v[0] = vm(64, 256, 240, 200, 9000);
	v[1] = vm(64, 256, 240, 200, 1000);
	h.available_mib = -300;
	dm_decide(&params, &h, v, 2, 1, &s);
	assert_int_equal(v[1].new_target_mib, 64);
	assert_int_equal(v[0].new_target_mib, 240 - (300 - 176));
}

/* In one weight, the VM with the most free memory gives first, and memory
 * beyond demand goes before demand. */
static void test_most_free_first(void **st)
{
	struct dm_vm v[3] = { vm(32, 1024, 600, 100, 5000), vm(32, 1024, 300, 250, 5000),
			      vm(32, 1024, 600, 100, 5000) };
	struct dm_host h = { .available_mib = 0, .reserve_mib = 0 };
	struct dm_summary s;

	(void)st;
	v[0].buffer_pct = v[1].buffer_pct = v[2].buffer_pct = 200; /* desired 300, 750, 300 */
	v[1].target_mib = v[1].resident_mib = 750;
	v[0].target_mib = v[0].resident_mib = 300;
	v[2].target_mib = v[2].resident_mib = 300;
	h.available_mib = -400; /* budget 950 of 1350 */
	dm_decide(&params, &h, v, 3, 1, &s);
	/* VM 1 has 500 beyond its demand, the others 200: VM 1 levels down to
	 * 200 beyond demand (300 taken), then all three give the last 100. */
	assert_int_equal(v[1].new_target_mib, 250 + 200 - 34);
	assert_int_equal(v[0].new_target_mib + v[1].new_target_mib + v[2].new_target_mib, 950);
	assert_true(v[0].new_target_mib >= 100 && v[2].new_target_mib >= 100);
}

/* When the pressure ends, memory comes back to the highest weight first. */
static void test_give_back_in_weight_order(void **st)
{
	struct dm_vm v[2] = { vm(64, 256, 240, 200, 9000), vm(64, 256, 240, 200, 1000) };
	struct dm_host h = { .available_mib = -300, .reserve_mib = 0 };
	struct dm_summary s;

	(void)st;
	dm_decide(&params, &h, v, 2, 1, &s);
	for (int i = 0; i < 2; i++) {
		v[i].target_mib = v[i].resident_mib = v[i].new_target_mib;
	}
	assert_int_equal(v[0].target_mib, 116);
	assert_int_equal(v[1].target_mib, 64);
	/* Some room again (180 beyond what they hold): the high weight is whole again first. */
	h.available_mib = 180;
	dm_decide(&params, &h, v, 2, 2, &s);
	assert_int_equal(v[0].new_target_mib, 240);
	assert_int_equal(v[0].reason, DM_EASED);
	assert_int_equal(v[1].new_target_mib, 120);
	assert_int_equal(v[1].reason, DM_EASED);
	for (int i = 0; i < 2; i++)
		v[i].target_mib = v[i].new_target_mib; /* not touched yet: resident stays */
	/* The budget holds still while the guests have not used it yet. */
	dm_decide(&params, &h, v, 2, 3, &s);
	assert_int_equal(s.changes, 0);
	h.available_mib = 100000;
	dm_decide(&params, &h, v, 2, 4, &s);
	assert_int_equal(v[1].new_target_mib, 240);
	assert_int_equal(v[1].reason, DM_EASED);
	assert_false(v[1].squeezed);
}

/* Small moves are not made; a falling demand waits shrink_delay_ms, and a
 * rise in between starts the wait again. */
static void test_hysteresis(void **st)
{
	struct dm_vm v[1] = { vm(64, 1024, 360, 300, 5000) };
	struct dm_summary s;

	(void)st;
	v[0].demand_mib = 302; /* desired 363: 3 MiB more */
	dm_decide(&params, &roomy, v, 1, 1000, &s);
	assert_int_equal(v[0].reason, DM_NONE);
	assert_int_equal(v[0].new_target_mib, 360);
	v[0].demand_mib = 100; /* desired 120 */
	dm_decide(&params, &roomy, v, 1, 2000, &s);
	assert_int_equal(v[0].new_target_mib, 360);
	assert_int_equal(v[0].low_since_ms, 2000);
	dm_decide(&params, &roomy, v, 1, 6000, &s);
	assert_int_equal(v[0].new_target_mib, 360);
	v[0].demand_mib = 320; /* back up: the wait ends */
	dm_decide(&params, &roomy, v, 1, 6500, &s);
	assert_int_equal(v[0].new_target_mib, 384);
	assert_int_equal(v[0].reason, DM_DEMAND);
	assert_int_equal(v[0].low_since_ms, 0);
	v[0].target_mib = 384;
	v[0].demand_mib = 100;
	dm_decide(&params, &roomy, v, 1, 7000, &s);
	dm_decide(&params, &roomy, v, 1, 11999, &s);
	assert_int_equal(v[0].new_target_mib, 384);
	dm_decide(&params, &roomy, v, 1, 12000, &s);
	assert_int_equal(v[0].new_target_mib, 120);
	assert_int_equal(v[0].reason, DM_IDLE);
	/* The same figures again: no move back and forth. */
	v[0].target_mib = 120;
	for (uint64_t t = 13000; t < 30000; t += 1000) {
		dm_decide(&params, &roomy, v, 1, t, &s);
		assert_int_equal(s.changes, 0);
	}
}

/* PSI over the threshold frees psi_step_mib more, from the lowest weight;
 * a VM without statistics keeps its memory until pressure comes. */
static void test_psi_and_unknown(void **st)
{
	struct dm_vm v[2] = { vm(64, 1024, 240, 200, 9000), vm(64, 1024, 240, 200, 1000) };
	struct dm_host h = { .available_mib = 0, .reserve_mib = 0, .psi_some_avg10 = 25.0 };
	struct dm_summary s;

	(void)st;
	dm_decide(&params, &h, v, 2, 1, &s);
	assert_true(s.pressure);
	assert_int_equal(v[1].new_target_mib, 240 - 64);
	assert_int_equal(v[0].new_target_mib, 240);
	h.psi_some_avg10 = 5.0;
	v[0] = vm(64, 1024, 700, 0, 5000);
	v[0].have_demand = false;
	dm_decide(&params, &h, v, 1, 1, &s);
	assert_false(s.pressure);
	assert_int_equal(v[0].desired_mib, 700);
	assert_int_equal(v[0].reason, DM_NONE);
	h.available_mib = -100;
	dm_decide(&params, &h, v, 1, 2, &s);
	assert_int_equal(v[0].new_target_mib, 600);
	/* Beside a VM with free memory, the unknown one keeps its own. */
	v[0] = vm(64, 1024, 700, 0, 5000);
	v[0].have_demand = false;
	v[1] = vm(64, 1024, 300, 100, 5000); /* desired 120 */
	v[1].target_mib = 120;
	h.available_mib = -100; /* resident 1000, budget 900 of 820 wanted... */
	h.reserve_mib = 180;    /* ... now 720: 100 short */
	dm_decide(&params, &h, v, 2, 3, &s);
	assert_int_equal(s.shortfall_mib, 100);
	assert_int_equal(v[0].new_target_mib, 700 - 80);
	assert_int_equal(v[1].new_target_mib, 100);
}

/* Settings changed on a running VM: a target outside them moves at once. */
static void test_limits(void **st)
{
	struct dm_vm v[1] = { vm(512, 1024, 300, 100, 5000) };
	struct dm_summary s;

	(void)st;
	dm_decide(&params, &roomy, v, 1, 1, &s);
	assert_int_equal(v[0].new_target_mib, 512);
	assert_int_equal(v[0].reason, DM_LIMITS);
	v[0] = vm(64, 256, 300, 250, 5000);
	dm_decide(&params, &roomy, v, 1, 1, &s);
	assert_int_equal(v[0].new_target_mib, 256);
	assert_int_equal(v[0].reason, DM_LIMITS);
	assert_string_equal(dm_reason_name(DM_PRESSURE), "host-pressure");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buffer_and_growth),
		cmocka_unit_test(test_minimum_floor),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_most_free_first),
		cmocka_unit_test(test_give_back_in_weight_order),
		cmocka_unit_test(test_hysteresis),
		cmocka_unit_test(test_psi_and_unknown),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
