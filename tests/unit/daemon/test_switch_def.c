/* test_switch_def.c: a switch's definition (daemon/net/switch.c): what the
 * API's body may say, the errors' fields, and the bridge names (IFNAMSIZ). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "switch.h"

static int parse(const char *text, struct sw_def *d, struct cerr *e)
{
	json_t *j = json_loads(text, 0, NULL);
	int ret;

	assert_non_null(j);
	memset(e, 0, sizeof(*e));
	ret = sw_def_parse(j, d, e);
	json_decref(j);
	return ret;
}

static void test_valid(void **state)
{
	struct sw_def d;
	struct cerr e;
	json_t *j;

	(void)state;
	assert_int_equal(parse("{\"name\":\"sw0\",\"type\":\"private\"}", &d, &e), 0);
	assert_int_equal(d.type, SW_PRIVATE);
	assert_string_equal(d.bridge, "cbr-sw0");
	assert_int_equal(parse("{\"name\":\"lab\",\"type\":\"internal\",\"address\":"
			       "\"10.0.0.1/24\"}", &d, &e), 0);
	assert_string_equal(d.address, "10.0.0.1/24");
	assert_int_equal(parse("{\"name\":\"v6\",\"type\":\"internal\",\"address\":"
			       "\"fd00::1/64\"}", &d, &e), 0);
	assert_int_equal(parse("{\"name\":\"up\",\"type\":\"external\",\"uplink\":\"eth1\","
			       "\"stateful\":true}", &d, &e), 0);
	assert_string_equal(d.uplink, "eth1");
	assert_true(d.stateful);
	/* The stored record reads back the same. */
	j = sw_def_json(&d);
	{
		struct sw_def d2;

		assert_int_equal(sw_def_parse(j, &d2, &e), 0);
		assert_memory_equal(&d, &d2, sizeof(d));
	}
	json_decref(j);
}

static void test_refused(void **state)
{
	static const struct { const char *body, *field; } cases[] = {
		{ "[]", "" },
		{ "{\"type\":\"private\"}", "name" },
		{ "{\"name\":\"\",\"type\":\"private\"}", "name" },
		{ "{\"name\":\"-x\",\"type\":\"private\"}", "name" },
		{ "{\"name\":\"a/b\",\"type\":\"private\"}", "name" },
		{ "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"type\":\"private\"}", "name" },
		{ "{\"name\":\"x\"}", "type" },
		{ "{\"name\":\"x\",\"type\":\"hub\"}", "type" },
		{ "{\"name\":\"x\",\"type\":7}", "type" },
		{ "{\"name\":\"x\",\"type\":\"external\"}", "uplink" },
		{ "{\"name\":\"x\",\"type\":\"external\",\"uplink\":\"\"}", "uplink" },
		{ "{\"name\":\"x\",\"type\":\"external\",\"uplink\":\"a-very-long-ifname\"}", "uplink" },
		{ "{\"name\":\"x\",\"type\":\"external\",\"uplink\":\"..\"}", "uplink" },
		{ "{\"name\":\"x\",\"type\":\"private\",\"uplink\":\"eth0\"}", "uplink" },
		{ "{\"name\":\"x\",\"type\":\"private\",\"stateful\":\"on\"}", "stateful" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"10.0.0.1\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"10.0.0.256/24\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"10.0.0.1/33\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"10.0.0.1/0\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"10.0.0.1/24x\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"internal\",\"address\":\"fd00::1/129\"}", "address" },
		{ "{\"name\":\"x\",\"type\":\"external\",\"uplink\":\"e\",\"address\":\"1.2.3.4/8\"}",
		  "address" },
		{ "{\"name\":\"x\",\"type\":\"private\",\"mtu\":1500}", "mtu" },
	};
	struct sw_def d;
	struct cerr e;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].body, &d, &e), -1);
		if (strcmp(e.field, cases[i].field))
			fail_msg("%s: field \"%s\", wanted \"%s\" (%s)", cases[i].body, e.field,
				 cases[i].field, e.reason);
		assert_int_equal(e.kind, CERR_INVALID);
		assert_true(e.reason[0] != 0);
	}
}

static void test_bridge_names(void **state)
{
	char a[IFNAMSIZ], b[IFNAMSIZ];

	(void)state;
	sw_bridge_name("abcdefghijk", a); /* 4 + 11 = 15: fits */
	assert_string_equal(a, "cbr-abcdefghijk");
	sw_bridge_name("abcdefghijkl", a);
	assert_int_equal(strlen(a), 15);
	assert_memory_equal(a, "cbr-abcde.", 10);
	sw_bridge_name("abcdefghijkm", b);
	assert_string_not_equal(a, b); /* same prefix, different hash */
	sw_bridge_name("abcdefghijkl", b);
	assert_string_equal(a, b);     /* stable */
	assert_true(sw_name_valid("a.b_c-d"));
	assert_false(sw_name_valid("a b"));
	assert_false(sw_name_valid(".a"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_bridge_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
