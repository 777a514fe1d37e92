/* test_etcd_json.c: the etcd gateway's JSON as etcd 3.4 writes it (replies
 * captured from a real member): 64-bit numbers as strings, fields with
 * default values left out, base64 keys and values; and what we refuse
 * (bad base64, a key with a NUL, numbers that are not numbers, unknown
 * event types, a broken stream line). No etcd needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd.h"

static json_t *js(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	assert_non_null(j);
	return j;
}

static void test_base64(void **st)
{
	char *e, *d;
	size_t len;

	(void)st;
	e = etcd_b64_encode("/cella/x", 8);
	assert_string_equal(e, "L2NlbGxhL3g=");
	assert_int_equal(etcd_b64_decode(e, &d, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(d, "/cella/x", 8);
	free(d);
	free(e);
	e = etcd_b64_encode("", 0);
	assert_string_equal(e, "");
	assert_int_equal(etcd_b64_decode("", &d, &len), 0);
	assert_int_equal(len, 0);
	free(d);
	free(e);
	assert_int_equal(etcd_b64_decode("L2Nl!!", &d, &len), -EINVAL);
	assert_int_equal(etcd_b64_decode("L2Nl\nbGxh", &d, &len), -EINVAL);
	assert_null(d);
}

static void test_prefix_end(void **st)
{
	char end[32];

	(void)st;
	etcd_prefix_end("/cella/p/vms/", end);
	assert_string_equal(end, "/cella/p/vms0");
}

static void test_int64(void **st)
{
	json_t *j = js("{\"a\": \"9223372036854775807\", \"b\": 5, \"c\": \"x\", \"d\": \"\","
		       " \"e\": [1], \"f\": \"12 \"}");
	int64_t n;

	(void)st;
	assert_int_equal(etcd_json_int64(j, "a", &n), 0);
	assert_true(n == INT64_MAX);
	assert_int_equal(etcd_json_int64(j, "b", &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(etcd_json_int64(j, "absent", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(etcd_json_int64(j, "c", &n), -EINVAL);
	assert_int_equal(etcd_json_int64(j, "d", &n), -EINVAL);
	assert_int_equal(etcd_json_int64(j, "e", &n), -EINVAL);
	assert_int_equal(etcd_json_int64(j, "f", &n), -EINVAL);
	json_decref(j);
}

static void test_range(void **st)
{
	json_t *j = js("{\"header\":{\"cluster_id\":\"12315559778395787236\",\"member_id\":"
		       "\"3062271635879917315\",\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":"
		       "[{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\","
		       "\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}");
	struct etcd_kvs kvs;

	(void)st;
	assert_int_equal(etcd_json_range(j, &kvs), 0);
	assert_int_equal(kvs.revision, 2);
	assert_int_equal(kvs.n, 1);
	assert_string_equal(kvs.kv[0].key, "foo");
	assert_string_equal(kvs.kv[0].value, "bar");
	assert_int_equal(kvs.kv[0].value_len, 3);
	assert_int_equal(kvs.kv[0].mod_rev, 2);
	assert_int_equal(kvs.kv[0].version, 1);
	assert_int_equal(kvs.kv[0].lease, 0);
	assert_false(kvs.more);
	etcd_kvs_free(&kvs);
	json_decref(j);

	/* Nothing found: no kvs at all. */
	j = js("{\"header\":{\"revision\":\"7\"}}");
	assert_int_equal(etcd_json_range(j, &kvs), 0);
	assert_int_equal(kvs.n, 0);
	assert_int_equal(kvs.revision, 7);
	json_decref(j);

	/* A key with a NUL inside is none of ours; a value may hold one. */
	j = js("{\"kvs\":[{\"key\":\"YQBi\",\"value\":\"\"}]}");
	assert_int_equal(etcd_json_range(j, &kvs), -EINVAL);
	json_decref(j);
	j = js("{\"kvs\":[{\"key\":\"YQ==\",\"value\":\"YQBi\"}]}");
	assert_int_equal(etcd_json_range(j, &kvs), 0);
	assert_int_equal(kvs.kv[0].value_len, 3);
	etcd_kvs_free(&kvs);
	json_decref(j);
	j = js("{\"kvs\":{}}");
	assert_int_equal(etcd_json_range(j, &kvs), -EINVAL);
	json_decref(j);
	j = js("{\"kvs\":[{\"key\":5}]}");
	assert_int_equal(etcd_json_range(j, &kvs), -EINVAL);
	json_decref(j);
}

static void test_txn(void **st)
{
	json_t *ok = js("{\"header\":{\"revision\":\"3\"},\"succeeded\":true,\"responses\":"
			"[{\"response_put\":{\"header\":{\"revision\":\"3\"}}}]}");
	json_t *failed = js("{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":"
			    "{\"header\":{\"revision\":\"2\"}}}]}");
	json_t *bad = js("{\"succeeded\":\"yes\"}");
	bool s;
	int64_t rev;

	(void)st;
	assert_int_equal(etcd_json_txn(ok, &s, &rev), 0);
	assert_true(s);
	assert_int_equal(rev, 3);
	/* etcd leaves "succeeded" out when it is false. */
	assert_int_equal(etcd_json_txn(failed, &s, &rev), 0);
	assert_false(s);
	assert_int_equal(etcd_json_txn(bad, &s, &rev), -EINVAL);
	json_decref(ok);
	json_decref(failed);
	json_decref(bad);
}

/* A transaction's reads: the first key of each range answer, in order;
 * an empty range an empty kv; puts' answers skipped. */
static void test_txn_reads(void **st)
{
	json_t *ok = json_loads("{\"header\":{\"revision\":\"9\"},\"succeeded\":true,"
				"\"responses\":[{\"response_put\":{}},{\"response_range\":"
				"{\"kvs\":[{\"key\":\"L2Ev\",\"value\":\"YmFy\",\"create_revision\":"
				"\"5\",\"mod_revision\":\"7\",\"version\":\"2\"}]}},"
				"{\"response_range\":{}}]}", 0, NULL);
	json_t *bad = json_loads("{\"responses\":[{\"response_range\":{\"kvs\":{}}}]}", 0,
				 NULL);
	json_t *notarray = json_loads("{\"responses\":{}}", 0, NULL);
	struct etcd_kv got[3];

	(void)st;
	assert_int_equal(etcd_json_txn_reads(ok, got, 3), 0);
	assert_string_equal(got[0].key, "/a/");
	assert_string_equal(got[0].value, "bar");
	assert_int_equal(got[0].mod_rev, 7);
	assert_null(got[1].key);
	assert_null(got[2].key);
	for (int i = 0; i < 3; i++)
		etcd_kv_free(&got[i]);
	assert_int_equal(etcd_json_txn_reads(ok, got, 1), 0); /* fewer slots than reads */
	assert_string_equal(got[0].value, "bar");
	etcd_kv_free(&got[0]);
	assert_int_equal(etcd_json_txn_reads(bad, got, 1), -EINVAL);
	assert_null(got[0].key);
	assert_int_equal(etcd_json_txn_reads(notarray, got, 1), -EINVAL);
	json_decref(ok);
	json_decref(bad);
	json_decref(notarray);
}

static void test_watch_msgs(void **st)
{
	static const char created[] = "{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}";
	static const char events[] =
		"{\"result\":{\"header\":{\"revision\":\"6\"},\"events\":[{\"kv\":{\"key\":\"L2Ev\","
		"\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\",\"value\":"
		"\"YmFy\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2Ev\",\"mod_revision\":\"6\"}}]}}";
	static const char compacted[] =
		"{\"result\":{\"header\":{\"revision\":\"9\"},\"canceled\":true,"
		"\"compact_revision\":\"7\"}}";
	static const char bad_type[] =
		"{\"result\":{\"events\":[{\"type\":\"EXPLODE\",\"kv\":{\"key\":\"YQ==\"}}]}}";
	static const char error[] = "{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}";
	struct etcd_watch_msg m;

	(void)st;
	assert_int_equal(etcd_json_watch_msg(created, strlen(created), &m), 0);
	assert_true(m.created);
	assert_int_equal(m.revision, 4);
	assert_int_equal(m.nr_events, 0);
	etcd_watch_msg_free(&m);
	assert_int_equal(etcd_json_watch_msg(events, strlen(events), &m), 0);
	assert_int_equal(m.nr_events, 2);
	assert_false(m.events[0].deleted); /* PUT is the default: no "type" */
	assert_string_equal(m.events[0].kv.key, "/a/");
	assert_string_equal(m.events[0].kv.value, "bar");
	assert_true(m.events[1].deleted);
	assert_int_equal(m.events[1].kv.mod_rev, 6);
	etcd_watch_msg_free(&m);
	assert_int_equal(etcd_json_watch_msg(compacted, strlen(compacted), &m), 0);
	assert_true(m.canceled);
	assert_int_equal(m.compact_revision, 7);
	etcd_watch_msg_free(&m);
	assert_int_equal(etcd_json_watch_msg(bad_type, strlen(bad_type), &m), -EINVAL);
	assert_int_equal(etcd_json_watch_msg(error, strlen(error), &m), -EINVAL);
	assert_int_equal(etcd_json_watch_msg(events, 40, &m), -EINVAL); /* cut short */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_prefix_end),
		cmocka_unit_test(test_int64),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_txn),
		cmocka_unit_test(test_txn_reads),
		cmocka_unit_test(test_watch_msgs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
