/* test_portpol_parse.c: the port policy parser (daemon/net/portpol.c):
 * every form it accepts reads back the same, every refusal names its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "portpol.h"

static struct port_policy *parse(const char *text, struct cerr *e)
{
	json_t *j = json_loads(text, 0, NULL);
	struct port_policy *p;

	assert_non_null(j);
	memset(e, 0, sizeof(*e));
	p = portpol_parse(j, e);
	json_decref(j);
	return p;
}

/* text parses, and shows back as want (compact, sorted keys). */
static void round_trip(const char *text, const char *want)
{
	struct cerr e;
	struct port_policy *p = parse(text, &e);
	json_t *j;
	char *s;

	if (!p)
		fail_msg("%s refused: %s: %s", text, e.field, e.reason);
	j = portpol_json(p);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, want);
	/* What it shows parses to the same. */
	portpol_free(p);
	p = parse(s, &e);
	assert_non_null(p);
	portpol_free(p);
	free(s);
	json_decref(j);
}

static void refused(const char *text, const char *field)
{
	struct cerr e;
	struct port_policy *p = parse(text, &e);

	if (p)
		fail_msg("%s accepted", text);
	assert_int_equal(e.kind, CERR_INVALID);
	assert_string_equal(e.field, field);
	assert_true(e.reason[0]);
}

static void test_defaults(void **state)
{
	struct cerr e = { 0 };
	struct port_policy *p = portpol_parse(NULL, &e);
	json_t *j;

	(void)state;
	assert_non_null(p);
	j = portpol_json(p);
	assert_true(json_is_true(json_object_get(j, "mac_guard")));
	json_decref(j);
	portpol_free(p);
	round_trip("{}", "{\"mac_guard\":true}");
}

static void test_accepted(void **state)
{
	(void)state;
	round_trip("{\"vlan\": 10}", "{\"mac_guard\":true,\"vlan\":{\"access\":10}}");
	round_trip("{\"vlan\": {\"access\": 4094}}", "{\"mac_guard\":true,\"vlan\":{\"access\":4094}}");
	round_trip("{\"vlan\": {\"trunk\": [30, \"10-12\", [20, 21], 13]}}",
		   "{\"mac_guard\":true,\"vlan\":{\"trunk\":[\"10-13\",\"20-21\",30]}}");
	round_trip("{\"mac_guard\": false, \"dhcp_guard\": true, \"router_guard\": true}",
		   "{\"dhcp_guard\":true,\"mac_guard\":false,\"router_guard\":true}");
	round_trip("{\"ip_guard\": [\"10.0.0.5/24\", \"fd00::1\"]}",
		   "{\"ip_guard\":[\"10.0.0.0/24\",\"fd00::1/128\"],\"mac_guard\":true}");
	round_trip("{\"ip_guard\": []}", "{\"ip_guard\":[],\"mac_guard\":true}");
	round_trip("{\"acl\": [{\"direction\": \"out\", \"action\": \"deny\", \"remote\": \"10.0.0.0/8\", "
		   "\"protocol\": \"tcp\", \"port\": \"80-90\"}, {\"direction\": \"out\", \"action\": \"allow\", "
		   "\"remote\": \"10.0.0.0/8\", \"protocol\": \"tcp\", \"port\": 91}, {\"direction\": \"in\", "
		   "\"action\": \"allow\", \"protocol\": \"icmp\"}]}",
		   "{\"acl\":[{\"action\":\"deny\",\"direction\":\"out\",\"port\":\"80-90\",\"protocol\":\"tcp\","
		   "\"remote\":\"10.0.0.0/8\"},{\"action\":\"allow\",\"direction\":\"out\",\"port\":91,\"protocol\":"
		   "\"tcp\",\"remote\":\"10.0.0.0/8\"},{\"action\":\"allow\",\"direction\":\"in\",\"protocol\":"
		   "\"icmp\"}],\"mac_guard\":true}");
	round_trip("{\"bandwidth\": {\"max_in\": \"100M\", \"max_out\": 5000000, \"burst\": 20000}}",
		   "{\"bandwidth\":{\"burst\":20000,\"max_in\":100000000,\"max_out\":5000000},\"mac_guard\":true}");
	round_trip("{\"bandwidth\": {\"min\": \"1.5G\", \"link\": \"10G\"}}",
		   "{\"bandwidth\":{\"link\":10000000000,\"min\":1500000000},\"mac_guard\":true}");
	round_trip("{\"mirror_to\": \"mon0\"}", "{\"mac_guard\":true,\"mirror_to\":\"mon0\"}");
	/* Stateful ACLs: kept when true, the default (false) not written. */
	round_trip("{\"stateful\": true}", "{\"mac_guard\":true,\"stateful\":true}");
	round_trip("{\"stateful\": false}", "{\"mac_guard\":true}");
}

static void test_refused(void **state)
{
	(void)state;
	refused("[]", "policy");
	refused("{\"colour\": 1}", "policy.colour");
	refused("{\"vlan\": 0}", "policy.vlan");
	refused("{\"vlan\": 4095}", "policy.vlan");
	refused("{\"vlan\": \"10\"}", "policy.vlan");
	refused("{\"vlan\": {\"access\": 5000}}", "policy.vlan.access");
	refused("{\"vlan\": {\"access\": 5, \"trunk\": [1]}}", "policy.vlan");
	refused("{\"vlan\": {\"trunk\": []}}", "policy.vlan.trunk");
	refused("{\"vlan\": {\"trunk\": [10, \"12-11\"]}}", "policy.vlan.trunk[1]");
	refused("{\"vlan\": {\"trunk\": [\"5-20\", 10]}}", "policy.vlan.trunk[1]");
	refused("{\"vlan\": {\"trunk\": [\"5-20x\"]}}", "policy.vlan.trunk[0]");
	refused("{\"mac_guard\": 1}", "policy.mac_guard");
	refused("{\"ip_guard\": \"10.0.0.1\"}", "policy.ip_guard");
	refused("{\"ip_guard\": [\"10.0.0.300\"]}", "policy.ip_guard[0]");
	refused("{\"ip_guard\": [\"10.0.0.0/33\"]}", "policy.ip_guard[0]");
	refused("{\"ip_guard\": [\"10.0.0.0/\"]}", "policy.ip_guard[0]");
	refused("{\"ip_guard\": [\"10.0.0.0/8\", \"10.1.2.3\"]}", "policy.ip_guard[1]");
	refused("{\"acl\": [{\"action\": \"deny\"}]}", "policy.acl[0].direction");
	refused("{\"acl\": [{\"direction\": \"up\", \"action\": \"deny\"}]}", "policy.acl[0].direction");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"drop\"}]}", "policy.acl[0].action");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"remote\": \"x\"}]}",
		"policy.acl[0].remote");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"protocol\": \"sctp\"}]}",
		"policy.acl[0].protocol");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"protocol\": \"icmp\", \"port\": 1}]}",
		"policy.acl[0].port");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"protocol\": \"tcp\", \"port\": 0}]}",
		"policy.acl[0].port");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"protocol\": \"tcp\", \"port\": \"9-8\"}]}",
		"policy.acl[0].port");
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\", \"extra\": 1}]}", "policy.acl[0].extra");
	/* Overlaps: any/any, a prefix inside another, port ranges crossing. */
	refused("{\"acl\": [{\"direction\": \"in\", \"action\": \"deny\"}, {\"direction\": \"in\", \"action\": "
		"\"allow\", \"protocol\": \"udp\"}]}", "policy.acl[1]");
	refused("{\"acl\": [{\"direction\": \"out\", \"action\": \"deny\", \"remote\": \"10.0.0.0/8\"}, "
		"{\"direction\": \"out\", \"action\": \"allow\", \"remote\": \"10.1.0.0/16\"}]}", "policy.acl[1]");
	refused("{\"acl\": [{\"direction\": \"out\", \"action\": \"deny\", \"protocol\": \"tcp\", \"port\": "
		"\"80-90\"}, {\"direction\": \"out\", \"action\": \"allow\", \"protocol\": \"tcp\", \"port\": "
		"\"90-100\"}]}", "policy.acl[1]");
	refused("{\"bandwidth\": 5}", "policy.bandwidth");
	refused("{\"bandwidth\": {\"max_in\": 0}}", "policy.bandwidth.max_in");
	refused("{\"bandwidth\": {\"max_out\": -5}}", "policy.bandwidth.max_out");
	refused("{\"bandwidth\": {\"max_in\": \"100Q\"}}", "policy.bandwidth.max_in");
	refused("{\"bandwidth\": {\"max_in\": \"100G\"}}", "policy.bandwidth.max_in");
	refused("{\"bandwidth\": {\"min\": \"2G\", \"link\": \"1G\"}}", "policy.bandwidth.min");
	refused("{\"bandwidth\": {\"min\": \"20M\", \"max_out\": \"10M\"}}", "policy.bandwidth.min");
	refused("{\"bandwidth\": {\"burst\": 100000}}", "policy.bandwidth.burst");
	refused("{\"bandwidth\": {\"max_in\": \"1M\", \"burst\": 10}}", "policy.bandwidth.burst");
	refused("{\"bandwidth\": {\"link\": \"1G\"}}", "policy.bandwidth.link");
	refused("{\"bandwidth\": {\"speed\": 1}}", "policy.bandwidth.speed");
	refused("{\"mirror_to\": \"\"}", "policy.mirror_to");
	refused("{\"stateful\": \"yes\"}", "policy.stateful");
	refused("{\"stateful\": 1}", "policy.stateful");
	refused("{\"mirror_to\": \"a-name-far-too-long\"}", "policy.mirror_to");
	refused("{\"mirror_to\": \"bad\\\"name\"}", "policy.mirror_to");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_accepted),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
