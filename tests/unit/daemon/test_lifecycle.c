/* test_lifecycle.c: cellad's lifecycle table (daemon/core/lifecycle_table.c):
 * every (state, event) pair either leads to a defined state or is refused;
 * every request is allowed or refused naming the current state; names are
 * unique and round-trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lifecycle.h"

static void test_every_pair(void **unused)
{
	unsigned allowed = 0, refused = 0, reached = 0;

	(void)unused;
	for (int st = 0; st < VS_COUNT; st++) {
		for (int ev = 0; ev < EV_COUNT; ev++) {
			enum vm_state next = VS_COUNT;

			if (lifecycle_next((enum vm_state)st, (enum vm_event)ev, &next) == 0) {
				assert_true(next < VS_COUNT);
				assert_int_not_equal(next, VS_NONE); /* nothing leads back out */
				reached |= 1u << next;
				allowed++;
			} else {
				assert_int_equal(next, VS_COUNT); /* untouched on refusal */
				refused++;
			}
		}
	}
	assert_true(allowed > 0 && refused > 0);
	/* Every real state can be reached. */
	for (int st = 0; st < VS_COUNT; st++)
		if (st != VS_NONE)
			assert_true(reached & (1u << st));
	/* Out-of-range input is refused, not read past the table. */
	assert_int_equal(lifecycle_next(VS_COUNT, EV_START, &(enum vm_state){0}), -1);
	assert_int_equal(lifecycle_next(VS_DEFINED, EV_COUNT, &(enum vm_state){0}), -1);
}

static void test_expected_paths(void **unused)
{
	static const struct {
		enum vm_state from;
		enum vm_event ev;
		int to; /* -1: refused */
	} cases[] = {
		{ VS_NONE, EV_DEFINE, VS_DEFINED },
		{ VS_NONE, EV_MOVE_IN, VS_INCOMING },
		{ VS_DEFINED, EV_START, VS_STARTING },
		{ VS_SAVED, EV_START, VS_STARTING },
		{ VS_STARTING, EV_STARTED, VS_RUNNING },
		{ VS_INCOMING, EV_STARTED, VS_RUNNING },
		{ VS_RUNNING, EV_PAUSE, VS_PAUSED },
		{ VS_PAUSED, EV_RESUME, VS_RUNNING },
		{ VS_RUNNING, EV_STOP, VS_STOPPING },
		{ VS_STOPPING, EV_EXIT_STOPPED, VS_STOPPED },
		{ VS_RUNNING, EV_EXIT_CRASHED, VS_CRASHED },
		{ VS_PAUSED, EV_EXIT_SAVED, VS_SAVED },
		{ VS_STARTING, EV_RESTORE_CRASHED, VS_SAVED },
		{ VS_CRASHED, EV_RESTART, VS_STARTING },
		{ VS_SAVED, EV_STATE_DELETED, VS_STOPPED },
		{ VS_INCOMING, EV_INCOMING_FAILED, VS_STOPPED },
		{ VS_RUNNING, EV_HOST_REBOOTED, VS_STOPPED },
		{ VS_STOPPING, EV_STOP_CANCELLED, VS_RUNNING },
		/* Refusals. */
		{ VS_DEFINED, EV_STARTED, -1 },
		{ VS_RUNNING, EV_START, -1 },
		{ VS_RUNNING, EV_DEFINE, -1 },
		{ VS_STOPPED, EV_PAUSE, -1 },
		{ VS_PAUSED, EV_PAUSE, -1 },
		{ VS_DEFINED, EV_EXIT_CRASHED, -1 },
		{ VS_STOPPED, EV_STATE_DELETED, -1 },
		{ VS_RUNNING, EV_CHECKPOINT_APPLIED, -1 },
		{ VS_STOPPED, EV_INCOMING_FAILED, -1 },
		{ VS_RUNNING, EV_STOP_CANCELLED, -1 },
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum vm_state next;
		int ret = lifecycle_next(cases[i].from, cases[i].ev, &next);

		if (cases[i].to < 0) {
			assert_int_equal(ret, -1);
		} else {
			assert_int_equal(ret, 0);
			assert_int_equal(next, cases[i].to);
		}
	}
}

static void test_requests(void **unused)
{
	(void)unused;
	for (int r = 0; r < REQ_COUNT; r++) {
		unsigned ok = 0;

		for (int st = 0; st < VS_COUNT; st++) {
			struct cerr e = { 0 };

			if (lifecycle_request_check((enum vm_request)r, (enum vm_state)st, &e) == 0) {
				assert_int_equal(e.kind, CERR_NONE);
				assert_int_not_equal(st, VS_NONE);
				ok++;
			} else {
				char want[64];

				assert_int_equal(e.kind, CERR_STATE);
				assert_string_equal(e.state, vm_state_name((enum vm_state)st));
				assert_string_equal(e.field, "state");
				snprintf(want, sizeof(want), "a VM that is %s",
					 vm_state_name((enum vm_state)st));
				assert_non_null(strstr(e.reason, want));
				assert_non_null(strstr(e.reason, vm_request_verb((enum vm_request)r)));
			}
		}
		assert_true(ok > 0); /* every request is possible somewhere */
	}
	/* The API's documented rules. */
	assert_int_equal(lifecycle_request_check(REQ_START, VS_RUNNING, &(struct cerr){0}), -1);
	assert_int_equal(lifecycle_request_check(REQ_KILL, VS_STARTING, &(struct cerr){0}), 0);
	assert_int_equal(lifecycle_request_check(REQ_DELETE, VS_PAUSED, &(struct cerr){0}), -1);
	assert_int_equal(lifecycle_request_check(REQ_MOVE_QUICK, VS_SAVED, &(struct cerr){0}), 0);
	assert_int_equal(lifecycle_request_check(REQ_MOVE_LIVE, VS_SAVED, &(struct cerr){0}), -1);
}

static void test_names(void **unused)
{
	(void)unused;
	for (int a = 0; a < VS_COUNT; a++) {
		enum vm_state back;

		assert_non_null(vm_state_name((enum vm_state)a));
		for (int b = a + 1; b < VS_COUNT; b++)
			assert_string_not_equal(vm_state_name((enum vm_state)a),
						vm_state_name((enum vm_state)b));
		if (a == VS_NONE) {
			/* Never stored, so never parsed back. */
			assert_int_equal(vm_state_parse("none", &back), -1);
			continue;
		}
		assert_int_equal(vm_state_parse(vm_state_name((enum vm_state)a), &back), 0);
		assert_int_equal(back, a);
	}
	assert_int_equal(vm_state_parse("bogus", &(enum vm_state){0}), -1);
	for (int ev = 0; ev < EV_COUNT; ev++)
		assert_true(strlen(vm_event_name((enum vm_event)ev)) > 0);
	for (int k = 0; k < CERR_KIND_COUNT; k++)
		assert_true(strlen(cerr_kind_name((enum cerr_kind)k)) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_pair),
		cmocka_unit_test(test_expected_paths),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
