/* test_etcd_cache.c: the local cache a pool member starts from while etcd
 * is away (daemon/store/etcd_cache.c): a dump parses back whole; another
 * version, pool or host is refused; entries that are not whole (a
 * definition under another uuid, a broken runtime record) are left out
 * and counted. And etcd_stats.c's counting. No etcd needed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd_cache.h"
#include "etcd_stats.h"

#define UUID "11111111-1111-4111-8111-111111111111"
#define VM "{\"uuid\":\"" UUID "\",\"name\":\"alpha\",\"cpus\":2,\"memory_mib\":256," \
	   "\"kernel\":\"/boot/k\",\"initrd\":null,\"cmdline\":\"\",\"rng\":true," \
	   "\"autostart\":false,\"restart_policy\":\"on-crash\",\"cpu_weight\":300," \
	   "\"cpu_max\":50,\"checkpoint\":null,\"disks\":[],\"nics\":[]}"
#define RT "{\"state\":\"running\",\"pid\":4242,\"pid_start\":9,\"started_at\":1700000000," \
	   "\"exit_status\":-1,\"exit_reason\":\"\",\"restarts\":3}"

static int parse(const char *s, json_t **vms, unsigned *skipped)
{
	return etcd_cache_parse(s, strlen(s), "/cella/p", "h1", vms, skipped);
}

static void test_round_trip(void **st)
{
	const char *s = "{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":{\""
			UUID "\":{\"vm\":" VM ",\"runtime\":" RT "}}}";
	json_t *vms, *again;
	unsigned skipped;
	char *d;

	(void)st;
	assert_int_equal(parse(s, &vms, &skipped), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(json_object_size(vms), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		json_object_get(vms, UUID), "runtime"), "pid")), 4242);
	d = etcd_cache_dump("/cella/p", "h1", vms);
	assert_non_null(d);
	assert_int_equal(parse(d, &again, &skipped), 0);
	assert_true(json_equal(vms, again));
	free(d);
	json_decref(vms);
	json_decref(again);
}

static void test_refused(void **st)
{
	static const char *const bad[] = {
		"", "[]", "{}", "not json",
		"{\"cella_pool_cache\":2,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":{}}",
		"{\"cella_pool_cache\":1,\"prefix\":\"/cella/q\",\"host\":\"h1\",\"vms\":{}}",
		"{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h2\",\"vms\":{}}",
		"{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":[]}",
		"{\"cella_pool_cache\":\"1\",\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":{}}",
		/* a duplicate key */
		("{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"host\":\"h1\","
		 "\"vms\":{}}"),
	};
	json_t *vms;
	unsigned skipped;

	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], &vms, &skipped), -EINVAL);
		assert_null(vms);
	}
}

static void test_entries_left_out(void **st)
{
	const char *s = "{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":{"
			"\"other\":{\"vm\":" VM ",\"runtime\":null},"          /* uuid differs */
			"\"a/b\":{\"vm\":" VM "},"                               /* not a key part */
			"\"" UUID "\":{\"vm\":" VM ",\"runtime\":{\"pid\":\"x\"}}," /* bad record */
			"\"22\":{\"vm\":{\"name\":1}},"                          /* not a definition */
			"\"33\":7}}";
	json_t *vms;
	unsigned skipped;

	(void)st;
	assert_int_equal(parse(s, &vms, &skipped), 0);
	assert_int_equal(json_object_size(vms), 0);
	assert_int_equal(skipped, 5);
	json_decref(vms);
	s = "{\"cella_pool_cache\":1,\"prefix\":\"/cella/p\",\"host\":\"h1\",\"vms\":{\"" UUID
	    "\":{\"vm\":" VM "}}}";
	assert_int_equal(parse(s, &vms, &skipped), 0);
	assert_int_equal(skipped, 0);
	assert_true(json_is_null(json_object_get(json_object_get(vms, UUID), "runtime")));
	json_decref(vms);
}

static void test_stats(void **st)
{
	struct etcd_stats s = { 0 };

	(void)st;
	assert_int_equal(etcd_req_kind_of("/v3/kv/range"), ETCD_REQ_RANGE);
	assert_int_equal(etcd_req_kind_of("/v3/lease/keepalive"), ETCD_REQ_LEASE_KEEPALIVE);
	assert_int_equal(etcd_req_kind_of("/v3/kv/compaction"), ETCD_REQ_OTHER);
	assert_string_equal(etcd_req_kind_name(ETCD_REQ_TXN), "txn");
	assert_true(etcd_stats_reachable(&s));
	assert_true(etcd_stats_reachable(NULL));
	etcd_stats_count(&s, "/v3/kv/put", -ECONNREFUSED, true);
	assert_false(etcd_stats_reachable(&s));
	assert_true(atomic_load(&s.away_since_ms) > 0);
	etcd_stats_count(&s, "/v3/kv/put", -ENOENT, false);
	assert_true(etcd_stats_reachable(&s));
	assert_int_equal(atomic_load(&s.away_since_ms), 0);
	etcd_stats_count(&s, "/v3/kv/range", 0, false);
	assert_int_equal(atomic_load(&s.requests[ETCD_REQ_PUT]), 2);
	assert_int_equal(atomic_load(&s.errors[ETCD_REQ_PUT]), 2);
	assert_int_equal(atomic_load(&s.requests[ETCD_REQ_RANGE]), 1);
	assert_int_equal(atomic_load(&s.errors[ETCD_REQ_RANGE]), 0);
	etcd_stats_count(NULL, "/v3/kv/range", 0, false); /* no stats: nothing */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_entries_left_out),
		cmocka_unit_test(test_stats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
