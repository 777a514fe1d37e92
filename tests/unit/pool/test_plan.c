/* test_plan.c: daemon/pool/plan.c: the pool's records (as the cache gives
 * them) turned into balance.c's plans and back into JSON: an evacuation
 * places every VM of the host, stopped ones too, in batches, and lists
 * what nobody can take; a balance moves running VMs only, from the busy
 * host to the idle one, and lowers the imbalance; malformed records and
 * an unknown host are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <errno.h>

#include <cmocka.h>

#include "plan.h"

static json_t *host(const char *name, const char *state, int mem, int cpus)
{
	return json_pack("{s:s, s:s, s:i, s:i}", "name", name, "state", state, "memory_mib", mem,
			 "cpus", cpus);
}

static json_t *vm(const char *name, const char *on, const char *state, int mem)
{
	char uuid[40];

	snprintf(uuid, sizeof(uuid), "uuid-%s", name);
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "name", name, "uuid", uuid, "host", on,
			 "state", state, "memory_mib", mem, "cpus", 1);
}

static json_t *pool3(void)
{
	json_t *s = json_pack("{s:[ooo], s:[]}", "hosts", host("a", "maintenance", 1024, 4),
			      host("b", "up", 1024, 4), host("c", "up", 1024, 4), "vms");
	json_t *vms = json_object_get(s, "vms");

	for (int i = 0; i < 6; i++) {
		char n[8];

		snprintf(n, sizeof(n), "v%d", i);
		json_array_append_new(vms, vm(n, "a", i == 5 ? "stopped" : "running", 128));
	}
	json_array_append_new(vms, vm("big", "a", "running", 4096)); /* fits nowhere */
	json_array_append_new(vms, vm("w", "b", "running", 128));
	return s;
}

static void test_evacuate(void **state)
{
	json_t *s = pool3(), *out = NULL, *mv;
	char err[256];
	size_t i;
	int batches = 0;

	(void)state;
	assert_int_equal(plan_make(s, "a", &out, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(out, "kind")), "evacuate");
	assert_string_equal(json_string_value(json_object_get(out, "host")), "a");
	/* Six placed (the stopped one too, not live), the big one stuck. */
	assert_int_equal(json_array_size(json_object_get(out, "moves")), 6);
	assert_int_equal(json_array_size(json_object_get(out, "stuck")), 1);
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(json_object_get(out, "stuck"), 0), "vm")), "big");
	assert_non_null(strstr(json_string_value(json_object_get(
		json_array_get(json_object_get(out, "stuck"), 0), "reason")), "MiB"));
	json_array_foreach(json_object_get(out, "moves"), i, mv) {
		const char *to = json_string_value(json_object_get(mv, "to"));
		const char *name = json_string_value(json_object_get(mv, "vm"));

		assert_string_equal(json_string_value(json_object_get(mv, "from")), "a");
		assert_true(!strcmp(to, "b") || !strcmp(to, "c"));
		assert_int_equal(json_is_true(json_object_get(mv, "live")), strcmp(name, "v5") != 0);
		assert_non_null(strstr(json_string_value(json_object_get(mv, "uuid")), name));
		if (json_integer_value(json_object_get(mv, "batch")) + 1 > batches)
			batches = (int)json_integer_value(json_object_get(mv, "batch")) + 1;
	}
	/* BALANCE_EVACUATE_BATCH (4) at a time. */
	assert_int_equal(batches, 2);
	assert_int_equal(json_integer_value(json_object_get(out, "batches")), 2);
	json_decref(out);
	json_decref(s);
}

static void test_balance(void **state)
{
	json_t *s = json_pack("{s:[oo], s:[]}", "hosts", host("a", "up", 1024, 2),
			      host("b", "up", 1024, 2), "vms"), *out = NULL, *mv;
	json_t *vms = json_object_get(s, "vms");
	char err[256];
	size_t i;

	(void)state;
	json_array_append_new(vms, vm("r1", "a", "running", 256));
	json_array_append_new(vms, vm("r2", "a", "running", 256));
	json_array_append_new(vms, vm("s1", "a", "stopped", 256)); /* not load, never moved */
	assert_int_equal(plan_make(s, NULL, &out, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(out, "kind")), "balance");
	assert_int_equal(json_array_size(json_object_get(out, "moves")), 1);
	json_array_foreach(json_object_get(out, "moves"), i, mv) {
		assert_string_equal(json_string_value(json_object_get(mv, "from")), "a");
		assert_string_equal(json_string_value(json_object_get(mv, "to")), "b");
		assert_string_not_equal(json_string_value(json_object_get(mv, "vm")), "s1");
		assert_true(json_is_true(json_object_get(mv, "live")));
		assert_non_null(json_string_value(json_object_get(mv, "reason")));
	}
	assert_true(json_real_value(json_object_get(out, "imbalance_after")) <
		    json_real_value(json_object_get(out, "imbalance_before")));
	json_decref(out);
	json_decref(s);
}

static void test_even_pool(void **state)
{
	json_t *s = json_pack("{s:[oo], s:[oo]}", "hosts", host("a", "up", 1024, 2),
			      host("b", "up", 1024, 2), "vms", vm("x", "a", "running", 128),
			      vm("y", "b", "running", 128)), *out = NULL;
	char err[256];

	(void)state;
	assert_int_equal(plan_make(s, NULL, &out, err, sizeof(err)), 0);
	assert_int_equal(json_array_size(json_object_get(out, "moves")), 0);
	json_decref(out);
	json_decref(s);
}

static void test_refused(void **state)
{
	json_t *s = pool3(), *out = NULL, *bad;
	char err[256];

	(void)state;
	assert_int_equal(plan_make(s, "nope", &out, err, sizeof(err)), -EINVAL);
	assert_null(out);
	assert_non_null(strstr(err, "no host named 'nope'"));
	bad = json_pack("{s:s}", "hosts", "x");
	assert_int_equal(plan_make(bad, NULL, &out, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	bad = json_pack("{s:[{s:i}], s:[]}", "hosts", "memory_mib", 5, "vms");
	assert_int_equal(plan_make(bad, NULL, &out, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	bad = json_pack("{s:[o], s:[{s:s, s:s, s:i, s:i}]}", "hosts", host("a", "up", 10, 1), "vms",
			"name", "v", "host", "a", "memory_mib", -1, "cpus", 1);
	assert_int_equal(plan_make(bad, NULL, &out, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	json_decref(s);
}

static void test_active(void **state)
{
	(void)state;
	assert_true(plan_vm_active("running"));
	assert_true(plan_vm_active("paused"));
	assert_false(plan_vm_active("stopped"));
	assert_false(plan_vm_active(""));
	assert_false(plan_vm_active(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evacuate), cmocka_unit_test(test_balance),
		cmocka_unit_test(test_even_pool), cmocka_unit_test(test_refused),
		cmocka_unit_test(test_active),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
