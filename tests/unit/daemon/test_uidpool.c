/* test_uidpool.c: the per-worker uid range: every uid once, none when all
 * are taken, round-robin reuse (a freed uid comes back last), adoption of
 * a uid in use, uids outside the range ignored, an empty range. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "uidpool.h"

static void test_take_all(void **st)
{
	struct uidpool p;

	(void)st;
	assert_int_equal(uidpool_init(&p, 1000, 3), 0);
	assert_int_equal(uidpool_take(&p), 1000);
	assert_int_equal(uidpool_take(&p), 1001);
	assert_int_equal(uidpool_take(&p), 1002);
	assert_int_equal(uidpool_take(&p), -EAGAIN);
	uidpool_put(&p, 1001);
	assert_int_equal(uidpool_take(&p), 1001);
	uidpool_destroy(&p);
}

static void test_round_robin(void **st)
{
	struct uidpool p;

	(void)st;
	assert_int_equal(uidpool_init(&p, 5000, 4), 0);
	assert_int_equal(uidpool_take(&p), 5000);
	uidpool_put(&p, 5000);
	/* 5000 is free again, but the others come first. */
	assert_int_equal(uidpool_take(&p), 5001);
	assert_int_equal(uidpool_take(&p), 5002);
	assert_int_equal(uidpool_take(&p), 5003);
	assert_int_equal(uidpool_take(&p), 5000);
	uidpool_destroy(&p);
}

static void test_claim(void **st)
{
	struct uidpool p;

	(void)st;
	assert_int_equal(uidpool_init(&p, 100, 2), 0);
	assert_true(uidpool_claim(&p, 100));  /* an adopted worker's */
	assert_false(uidpool_claim(&p, 99));
	assert_false(uidpool_claim(&p, 102));
	assert_int_equal(uidpool_take(&p), 101);
	assert_int_equal(uidpool_take(&p), -EAGAIN);
	uidpool_put(&p, 4242); /* outside: ignored */
	assert_int_equal(uidpool_take(&p), -EAGAIN);
	uidpool_destroy(&p);
}

static void test_empty(void **st)
{
	struct uidpool p;

	(void)st;
	assert_int_equal(uidpool_init(&p, 200000, 0), 0);
	assert_int_equal(uidpool_take(&p), -EAGAIN);
	assert_false(uidpool_claim(&p, 200000));
	uidpool_destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_all),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_claim),
		cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
