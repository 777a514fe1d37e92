/* test_poll_rate.c: the status poller's round period (daemon/worker/poll_rate.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "poll_rate.h"

static void test_few_vms_every_500_ms(void **state)
{
	(void)state;
	assert_int_equal(poll_round_ms(0), 500);
	assert_int_equal(poll_round_ms(1), 500);
	assert_int_equal(poll_round_ms(100), 500);
}

/* Past 100 VMs the poller stays at POLL_MAX_PER_S requests a second. */
static void test_many_vms_bounded_rate(void **state)
{
	(void)state;
	assert_int_equal(poll_round_ms(101), 505);
	assert_int_equal(poll_round_ms(500), 2500);
	assert_int_equal(poll_round_ms(4096), 20480);
	for (size_t n = 1; n <= 12000; n += 37) /* 12000: the 60 s cap */
		assert_true(n * 1000 / poll_round_ms(n) <= POLL_MAX_PER_S);
	assert_int_equal(poll_round_ms(1000000), 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_few_vms_every_500_ms),
		cmocka_unit_test(test_many_vms_bounded_rate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
