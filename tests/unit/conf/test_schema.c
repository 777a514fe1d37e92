/* test_schema.c: the configuration schema library (conf/) on its own: the
 * disk table through the option-string parser, the JSON parser in both
 * dialects (cella-vm's "key", cellad's "field"), the CLI's untyped
 * conversion, JSON out, and the limits being the ones the tables use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "conf/disk.h"
#include "conf/memory.h"

static void test_option_string(void **st)
{
	struct disk_config d = { 0 };
	struct conf_err e;

	(void)st;
	assert_int_equal(conf_from_string(&conf_disk_schema, &d,
					  "/i.img,ro,id=root,format=qcow2,iops=5,bps_burst=7,cbt=on", &e), 0);
	assert_string_equal(d.path, "/i.img");
	assert_true(d.readonly);
	assert_string_equal(d.id, "root");
	assert_string_equal(d.format, "qcow2");
	assert_int_equal(d.qos.iops, 5);
	assert_int_equal(d.qos.bps_burst, 7);
	assert_true(d.cbt);
	assert_int_equal(conf_from_string(&conf_disk_schema, &d, "/j.img,rw,readonly=off", &e), 0);
	assert_string_equal(d.path, "/j.img"); /* the earlier string was freed */
	assert_false(d.readonly);
	assert_int_not_equal(conf_from_string(&conf_disk_schema, &d, "/j.img,id=a b", &e), 0);
	assert_string_equal(e.reason, "disk: id 'a b': expected 1-20 of A-Z a-z 0-9 . _ -");
	assert_int_not_equal(conf_from_string(&conf_disk_schema, &d, "/j.img,cbt=maybe", &e), 0);
	assert_string_equal(e.reason, "disk: cbt='maybe' is not on or off");
	assert_int_not_equal(conf_from_string(&conf_disk_schema, &d, "", &e), 0);
	assert_string_equal(e.reason, "disk: empty path in ''");
	conf_free(&conf_disk_schema, &d);
	assert_null(d.path);
}

static void test_json_dialects(void **st)
{
	static const struct {
		const char *json;
		bool api;
		const char *field, *reason;
	} bad[] = {
		{ "{\"path\": \"/a\", \"ro\": true}", false, "disks[0].ro", "unknown key" },
		{ "{\"path\": \"/a\", \"ro\": true}", true, "disks[0].ro", "unknown field" },
		{ "{}", false, "disks[0].path", "missing" },
		{ "{}", true, "disks[0].path", "required" },
		{ "{\"path\": \"/a\", \"qos\": {\"max\": 1}}", true, "disks[0].qos.max",
		  "unknown field (iops, iops_burst, bps, bps_burst)" },
		{ "{\"path\": \"/a\", \"qos\": 5}", true, "disks[0].qos",
		  "expected an object {iops, iops_burst, bps, bps_burst}" },
		{ "{\"path\": \"/a\", \"qos\": {\"iops\": \"x\"}}", true, "disks[0].qos.iops",
		  "expected an integer from 0 to 1099511627776" },
		{ "{\"path\": \"/a\", \"qos\": {\"bps\": 1099511627777}}", true, "disks[0].qos.bps",
		  "1099511627777 is out of range (0 to 1099511627776)" },
		{ "{\"path\": \"/a\", \"format\": \"vmdk\"}", true, "disks[0].format",
		  "expected \"raw\" or \"qcow2\"" },
		{ "{\"path\": \"/a\", \"id\": \"123456789012345678901\"}", true, "disks[0].id",
		  "longer than 20 bytes" },
		{ "{\"path\": \"/a\", \"readonly\": 1}", true, "disks[0].readonly",
		  "expected true or false" },
		{ "{\"path\": \"/a\\u0000b\"}", true, "disks[0].path", "contains a NUL byte" },
	};

	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *o = json_loads(bad[i].json, JSON_ALLOW_NUL, NULL);
		struct disk_config d = { 0 };
		struct conf_err e;

		assert_non_null(o);
		assert_int_not_equal(conf_from_json(&conf_disk_schema, &d, o, "disks[0]",
						    bad[i].api ? &conf_api_dialect : &conf_worker_dialect,
						    &e), 0);
		if (strcmp(e.field, bad[i].field) || strcmp(e.reason, bad[i].reason))
			fail_msg("%s: got '%s: %s', want '%s: %s'", bad[i].json, e.field, e.reason,
				 bad[i].field, bad[i].reason);
		conf_free(&conf_disk_schema, &d);
		json_decref(o);
	}
	assert_int_equal(CONF_QOS_MAX, 1099511627776ULL); /* the texts above */
}

/* The CLI's --disk: typed by the table, not checked (cellad names faults). */
static void test_string_to_json(void **st)
{
	json_t *o = conf_string_to_json(&conf_disk_schema,
					"/i.img,ro,cbt,iops=100,bps=fast,format=vmdk,speed=3,turbo");
	char *s;

	(void)st;
	assert_non_null(o);
	s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(s, "{\"cbt\":true,\"format\":\"vmdk\",\"path\":\"/i.img\","
			       "\"qos\":{\"bps\":\"fast\",\"iops\":100},\"readonly\":true,"
			       "\"speed\":\"3\",\"turbo\":true}");
	free(s);
	json_decref(o);
}

static void test_json_out(void **st)
{
	struct disk_config d = { .path = "/i.img", .id = "root", .format = "raw",
				 .qos = { .iops = 3 } };
	json_t *o = conf_to_json(&conf_disk_schema, &d);
	char *s = json_dumps(o, JSON_COMPACT);
	struct disk_config back = { 0 };
	struct conf_err e;

	(void)st;
	assert_string_equal(s, "{\"path\":\"/i.img\",\"readonly\":false,\"id\":\"root\","
			       "\"format\":\"raw\",\"qos\":{\"iops\":3,\"iops_burst\":0,\"bps\":0,"
			       "\"bps_burst\":0},\"cbt\":false}");
	assert_int_equal(conf_from_json(&conf_disk_schema, &back, o, "", &conf_api_dialect, &e), 0);
	assert_string_equal(back.path, d.path);
	assert_int_equal(back.qos.iops, 3);
	conf_free(&conf_disk_schema, &back);
	free(s);
	json_decref(o);
}

static void test_usage_and_qos(void **st)
{
	struct disk_qos_config q = { .iops_burst = 5 };
	char buf[320];

	(void)st;
	conf_usage(&conf_disk_schema, buf, sizeof(buf));
	assert_string_equal(buf, "ro, rw, readonly=on|off, id=ID, format=raw|qcow2, iops=N, "
				 "iops_burst=N, bps=N, bps_burst=N or cbt=on|off");
	assert_false(conf_qos_valid(&q, buf, sizeof(buf)));
	assert_non_null(strstr(buf, "a burst needs its rate"));
	q.iops = 1;
	assert_true(conf_qos_valid(&q, buf, sizeof(buf)));
	assert_true(conf_name_valid("disk-0.a_b", CONF_DISK_ID_MAX));
	assert_false(conf_name_valid("-disk", CONF_DISK_ID_MAX));
	assert_false(conf_name_valid("", CONF_DISK_ID_MAX));
}

/* memory.thp: a key like the others; it excludes merge and hugepages. */
static void test_memory_thp(void **st)
{
	struct mem_backing_config m = { 0 };
	struct conf_err e;
	char why[200];
	json_t *v = json_pack("{s:b}", "thp", 1);

	assert_int_equal(conf_from_json(&conf_memory_schema, &m, v, "memory", &conf_api_dialect,
					&e), 0);
	json_decref(v);
	assert_true(m.thp && !m.merge && !m.hugepages);
	assert_true(conf_memory_valid(&m, why, sizeof(why)));
	m.merge = true;
	assert_false(conf_memory_valid(&m, why, sizeof(why)));
	assert_non_null(strstr(why, "thp excludes merge"));
	m.merge = false;
	m.hugepages = true;
	assert_false(conf_memory_valid(&m, why, sizeof(why)));
	assert_non_null(strstr(why, "thp excludes hugepages"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option_string),
		cmocka_unit_test(test_json_dialects),
		cmocka_unit_test(test_string_to_json),
		cmocka_unit_test(test_json_out),
		cmocka_unit_test(test_usage_and_qos),
		cmocka_unit_test(test_memory_thp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
