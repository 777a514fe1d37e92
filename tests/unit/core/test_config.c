/* test_config.c: configuration parsing: every error names the key and the reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static void test_json_good(void **st)
{
	struct vm_config c;
	char err[256] = "";
	const char *doc = "{\"kernel\": \"/k\", \"cmdline\": \"console=ttyS0\", \"cpus\": 4,"
			  " \"memory_mib\": 256, \"rng\": true, \"console\": \"file:/tmp/x\","
			  " \"emulation_fallback\": false,"
			  " \"disks\": [{\"path\": \"/d.img\", \"readonly\": true, \"id\": \"root\"}],"
			  " \"nets\": [{\"tap\": \"tap0\", \"mac\": \"52:54:00:12:34:56\"}]}";

	(void)st;
	config_init(&c);
	assert_int_equal(config_load_json_text(&c, doc, strlen(doc), err, sizeof(err)), 0);
	assert_string_equal(c.kernel, "/k");
	assert_int_equal(c.cpus, 4);
	assert_int_equal(c.mem_mib, 256);
	assert_true(c.rng);
	assert_false(c.emulation_fallback);
	assert_int_equal(c.console, CONSOLE_FILE);
	assert_string_equal(c.console_path, "/tmp/x");
	assert_int_equal(c.nr_disks, 1);
	assert_true(c.disks[0].readonly);
	assert_string_equal(c.disks[0].id, "root");
	assert_int_equal(c.nr_nets, 1);
	assert_true(c.nets[0].has_mac);
	assert_int_equal(c.nets[0].mac[5], 0x56);
	config_free(&c);
}

/* ACPI is on unless the configuration says "acpi": false (docs/guests.md). */
static void test_acpi_default(void **st)
{
	struct vm_config c;
	char err[256] = "";
	const char *off = "{\"acpi\": false}", *on = "{\"acpi\": true}";

	(void)st;
	config_init(&c);
	assert_true(c.acpi);
	assert_int_equal(config_load_json_text(&c, off, strlen(off), err, sizeof(err)), 0);
	assert_false(c.acpi);
	assert_int_equal(config_load_json_text(&c, on, strlen(on), err, sizeof(err)), 0);
	assert_true(c.acpi);
	config_free(&c);
}

static const struct {
	const char *json;
	const char *expect; /* substring of the error */
} bad_json[] = {
	{ "{\"kernal\": \"/k\"}", "kernal: unknown key" },
	{ "{\"cpus\": \"2\"}", "cpus: expected an integer" },
	{ "{\"cpus\": 0}", "cpus: 0 is out of range" },
	{ "{\"cpus\": 33}", "cpus: 33 is out of range" },
	{ "{\"cpus\": -1}", "cpus: -1 is out of range" },
	{ "{\"memory_mib\": 2}", "memory_mib: 2 is out of range" },
	{ "{\"memory_mib\": 1.5}", "memory_mib: expected an integer" },
	{ "{\"kernel\": 5}", "kernel: expected a string" },
	{ "{\"kernel\": \"\"}", "kernel: must not be empty" },
	{ "{\"rng\": 1}", "rng: expected true or false" },
	{ "{\"emulation_fallback\": \"no\"}", "emulation_fallback: expected true or false" },
	{ "{\"console\": \"tty\"}", "console: 'tty' is not" },
	{ "{\"disks\": {}}", "disks: expected an array" },
	{ "{\"disks\": [5]}", "disks[0]: expected an object" },
	{ "{\"disks\": [{}]}", "disks[0].path: missing" },
	{ "{\"disks\": [{\"path\": \"/a\", \"ro\": true}]}", "disks[0].ro: unknown key" },
	{ "{\"disks\": [{\"path\": \"/a\", \"readonly\": \"yes\"}]}", "disks[0].readonly: expected true or false" },
	{ "{\"disks\": [{\"path\": \"/a\", \"id\": \"123456789012345678901\"}]}", "disks[0].id: longer than 20" },
	{ "{\"nets\": [{\"mac\": \"52:54:00:00:00:01\"}]}", "nets[0].tap: missing" },
	{ "{\"nets\": [{\"backend\": \"passt\"}]}", "nets[0]: \"backend\": \"passt\" goes with" },
	{ "{\"nets\": [{\"fd\": 5}]}", "nets[0]: \"backend\": \"passt\" goes with" },
	{ "{\"nets\": [{\"backend\": \"passt\", \"fd\": -1}]}", "nets[0].fd: expected a file" },
	{ "{\"nets\": [{\"backend\": \"vde\"}]}", "nets[0].backend: not tap or passt" },
	{ "{\"nets\": [{\"backend\": \"passt\", \"fd\": 5, \"tap\": \"t\"}]}", "nets[0]: passt and tap are exclusive" },
	{ "{\"nets\": [{\"tap\": \"t\", \"mac\": \"01:00:00:00:00:01\"}]}", "nets[0].mac: not a unicast" },
	{ "{\"nets\": [{\"tap\": \"averyveryverylongtapname\"}]}", "nets[0].tap: not an interface name" },
	{ "{\"nets\": [{\"tap\": \"t/0\"}]}", "nets[0].tap: not an interface name" },
	{ "{\"nets\": [{\"tap\": \"t\", \"mac\": \"2:54:0:12:34:56\"}]}", "nets[0].mac: not a unicast" },
	{ "{\"devices\": {}}", "devices: expected an array" },
	{ "{\"devices\": [3]}", "devices[0]: expected an object" },
	{ "{\"devices\": [{\"path\": \"/a\"}]}", "devices[0].type: expected a string" },
	{ "{\"devices\": [{\"type\": \"virtio-console\"}]}", "devices[0].path: missing" },
	{ "{\"devices\": [{\"type\": \"virtio-console\", \"path\": 1}]}",
	  "devices[0].path: expected a string" },
	{ "{\"devices\": [{\"type\": \"virtio-console\", \"path\": \"/a\", \"x\": 1}]}",
	  "devices[0].x: unknown key" },
	{ "{\"devices\": [{\"type\": \"tpm\"}]}", "devices[0]: unknown device type 'tpm'" },
	{ "[1, 2]", "expected a JSON object" },
	{ "{\"cpus\": 1, \"cpus\": 2}", "duplicate" },
	{ "{\"cpus\": ", "line 1" },
	{ "", "(json)" },
};

static void test_json_bad(void **st)
{
	(void)st;
	for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
		struct vm_config c;
		char err[256] = "";

		config_init(&c);
		assert_int_not_equal(config_load_json_text(&c, bad_json[i].json,
							   strlen(bad_json[i].json), err, sizeof(err)),
				     0);
		if (!strstr(err, bad_json[i].expect))
			fail_msg("input %s: error '%s' lacks '%s'", bad_json[i].json, err,
				 bad_json[i].expect);
		config_free(&c);
	}
}

static void test_option_strings(void **st)
{
	struct vm_config c;
	char err[256] = "";

	(void)st;
	config_init(&c);
	assert_int_equal(config_add_disk(&c, "/x.img,ro,id=data", err, sizeof(err)), 0);
	assert_true(c.disks[0].readonly);
	assert_string_equal(c.disks[0].id, "data");
	assert_int_not_equal(config_add_disk(&c, "/x.img,readonly", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "unknown option 'readonly'"));
	assert_int_not_equal(config_add_disk(&c, ",ro", err, sizeof(err)), 0);
	assert_int_equal(config_add_net(&c, "tap=tap7,mac=02:00:00:00:00:07", err, sizeof(err)), 0);
	assert_int_not_equal(config_add_net(&c, "mac=02:00:00:00:00:07", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "no tap=NAME"));
	assert_int_not_equal(config_add_net(&c, "tap=t,mac=zz", err, sizeof(err)), 0);
	assert_int_equal(config_add_net(&c, "tap=tap8,tap_fd=fd:9", err, sizeof(err)), 0);
	assert_string_equal(c.nets[1].tap_fd, "fd:9");
	assert_int_not_equal(config_add_net(&c, "tap_fd=fd:9", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "no tap=NAME"));
	/* passt's stream instead of a tap (vmm/backend/passt.c) */
	assert_int_equal(config_add_net(&c, "passt=fd:11,mac=02:00:00:00:00:0b", err, sizeof(err)), 0);
	assert_string_equal(c.nets[2].passt_fd, "fd:11");
	assert_null(c.nets[2].tap);
	assert_int_not_equal(config_add_net(&c, "passt=/tmp/sock", err, sizeof(err)), 0);
	assert_int_not_equal(config_add_net(&c, "passt=fd:3,tap=t9", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "exclusive"));
	assert_int_not_equal(config_set_console(&c, "file:", err, sizeof(err)), 0);
	assert_int_equal(config_set_console(&c, "unix:/tmp/s", err, sizeof(err)), 0);
	config_free(&c);
}

static void test_disk_options(void **st)
{
	struct vm_config c;
	char err[256] = "";

	(void)st;
	config_init(&c);
	assert_int_equal(config_add_disk(&c, "/x.img,format=qcow2,iops=500,iops_burst=1000,"
					 "bps=1048576,bps_burst=2097152,cbt=on", err, sizeof(err)), 0);
	assert_string_equal(c.disks[0].format, "qcow2");
	assert_int_equal(c.disks[0].qos.iops, 500);
	assert_int_equal(c.disks[0].qos.iops_burst, 1000);
	assert_int_equal(c.disks[0].qos.bps, 1048576);
	assert_int_equal(c.disks[0].qos.bps_burst, 2097152);
	assert_true(c.disks[0].cbt);
	assert_int_equal(config_add_disk(&c, "/y.img", err, sizeof(err)), 0);
	assert_string_equal(c.disks[1].format, "");
	assert_false(c.disks[1].cbt);
	assert_int_equal(c.disks[1].qos.iops, 0);
	assert_int_not_equal(config_add_disk(&c, "/z.img,format=vmdk", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "format 'vmdk' is not raw or qcow2"));
	assert_int_not_equal(config_add_disk(&c, "/z.img,iops=fast", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "iops='fast' is not a number"));
	assert_int_not_equal(config_add_disk(&c, "/z.img,iops=-1", err, sizeof(err)), 0);
	assert_int_not_equal(config_add_disk(&c, "/z.img,bps=999999999999999999", err,
					     sizeof(err)), 0);
	assert_non_null(strstr(err, "out of range"));
	assert_int_not_equal(config_add_disk(&c, "/z.img,cbt=yes", err, sizeof(err)), 0);
	assert_int_not_equal(config_add_disk(&c, "/z.img,speed=3", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "unknown option 'speed=3'"));
	assert_int_equal(c.nr_disks, 2);
	config_free(&c);
}

static void test_disk_json(void **st)
{
	static const struct {
		const char *json, *err;
	} bad[] = {
		{ "{\"disks\": [{\"path\": \"/a\", \"format\": \"vmdk\"}]}", "disks[0].format: expected" },
		{ "{\"disks\": [{\"path\": \"/a\", \"qos\": 5}]}", "disks[0].qos: expected an object" },
		{ "{\"disks\": [{\"path\": \"/a\", \"qos\": {\"iops\": -3}}]}", "disks[0].qos.iops: -3 is out of range" },
		{ "{\"disks\": [{\"path\": \"/a\", \"qos\": {\"iops\": \"x\"}}]}", "disks[0].qos.iops: expected an integer" },
		{ "{\"disks\": [{\"path\": \"/a\", \"qos\": {\"latency\": 1}}]}", "disks[0].qos.latency: unknown key" },
		{ "{\"disks\": [{\"path\": \"/a\", \"cbt\": 1}]}", "disks[0].cbt: expected true or false" },
	};
	const char *good = "{\"disks\": [{\"path\": \"/a\", \"format\": \"raw\", \"cbt\": true, "
			   "\"qos\": {\"iops\": 100, \"iops_burst\": 10, \"bps\": 4096, "
			   "\"bps_burst\": 8192}}]}";
	struct vm_config c;
	char err[256];

	(void)st;
	config_init(&c);
	assert_int_equal(config_load_json_text(&c, good, strlen(good), err, sizeof(err)), 0);
	assert_string_equal(c.disks[0].format, "raw");
	assert_true(c.disks[0].cbt);
	assert_int_equal(c.disks[0].qos.iops, 100);
	assert_int_equal(c.disks[0].qos.iops_burst, 10);
	assert_int_equal(c.disks[0].qos.bps, 4096);
	assert_int_equal(c.disks[0].qos.bps_burst, 8192);
	config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		config_init(&c);
		err[0] = 0;
		assert_int_not_equal(config_load_json_text(&c, bad[i].json, strlen(bad[i].json), err,
							   sizeof(err)), 0);
		if (!strstr(err, bad[i].err))
			fail_msg("%s: got '%s', want '%s'", bad[i].json, err, bad[i].err);
		config_free(&c);
	}
}

/* A disk given as descriptors (cellad's way): the backing chain with the
 * names checked, and the tracking file, in the JSON and in option strings. */
static void test_disk_fds(void **st)
{
	static const struct {
		const char *json, *err;
	} bad[] = {
		{ "{\"disks\": [{\"path\": \"fd:5\", \"backing\": 3}]}", "disks[0].backing: expected an array" },
		{ "{\"disks\": [{\"path\": \"fd:5\", \"backing\": [{\"fd\": -1, \"name\": \"b\"}]}]}",
		  "disks[0].backing[0]: expected" },
		{ "{\"disks\": [{\"path\": \"fd:5\", \"backing\": [{\"fd\": 6}]}]}", "disks[0].backing[0]: expected" },
		{ "{\"disks\": [{\"path\": \"fd:5\", \"cbt_file\": 7}]}", "disks[0].cbt_file: expected a string" },
	};
	const char *good = "{\"disks\": [{\"path\": \"fd:5\", \"format\": \"qcow2\", \"cbt\": true, "
			   "\"cbt_file\": \"fd:8\", \"backing\": [{\"fd\": 6, \"name\": \"b.qcow2\"}, "
			   "{\"fd\": 7, \"name\": \"../base.raw\"}]}]}";
	struct vm_config c;
	char err[256] = "";

	(void)st;
	config_init(&c);
	/* A base directory must not turn "fd:5" into a path. */
	assert_int_equal(config_load_json_text(&c, good, strlen(good), err, sizeof(err)), 0);
	assert_string_equal(c.disks[0].path, "fd:5");
	assert_string_equal(c.disks[0].cbt_file, "fd:8");
	assert_non_null(c.disks[0].backing);
	assert_int_equal(c.disks[0].backing->nr, 2);
	assert_int_equal(c.disks[0].backing->fd[0], 6);
	assert_string_equal(c.disks[0].backing->name[0], "b.qcow2");
	assert_int_equal(c.disks[0].backing->fd[1], 7);
	assert_string_equal(c.disks[0].backing->name[1], "../base.raw");
	assert_int_equal(config_add_disk(&c, "fd:9,backing=fd:10:b.qcow2,ro,backing=fd:11,"
					 "cbt_file=fd:12,id=x", err, sizeof(err)), 0);
	assert_string_equal(c.disks[1].path, "fd:9");
	assert_true(c.disks[1].readonly);
	assert_string_equal(c.disks[1].id, "x");
	assert_string_equal(c.disks[1].cbt_file, "fd:12");
	assert_int_equal(c.disks[1].backing->nr, 2);
	assert_int_equal(c.disks[1].backing->fd[0], 10);
	assert_string_equal(c.disks[1].backing->name[0], "b.qcow2");
	assert_int_equal(c.disks[1].backing->fd[1], 11);
	assert_null(c.disks[1].backing->name[1]);
	assert_int_not_equal(config_add_disk(&c, "fd:9,backing=/b.qcow2", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "backing=/b.qcow2: expected fd:N[:NAME]"));
	assert_int_not_equal(config_add_disk(&c, "fd:9,backing=fd:x", err, sizeof(err)), 0);
	assert_int_equal(c.nr_disks, 2);
	config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		config_init(&c);
		err[0] = 0;
		assert_int_not_equal(config_load_json_text(&c, bad[i].json, strlen(bad[i].json), err,
							   sizeof(err)), 0);
		if (!strstr(err, bad[i].err))
			fail_msg("%s: got '%s', want '%s'", bad[i].json, err, bad[i].err);
		config_free(&c);
	}
}

/* One QoS limit (conf/limits.h) for the flag, the JSON file and cellad's
 * definitions (tests/daemon/test_disks.py checks cellad's side). */
static void test_qos_limit(void **st)
{
	struct vm_config c;
	char err[256], spec[96], json[160];

	(void)st;
	config_init(&c);
	snprintf(spec, sizeof(spec), "/x.img,bps=%llu", (unsigned long long)CONF_QOS_MAX);
	assert_int_equal(config_add_disk(&c, spec, err, sizeof(err)), 0);
	assert_int_equal(c.disks[0].qos.bps, CONF_QOS_MAX);
	snprintf(spec, sizeof(spec), "/x.img,iops=%llu", (unsigned long long)CONF_QOS_MAX + 1);
	assert_int_not_equal(config_add_disk(&c, spec, err, sizeof(err)), 0);
	snprintf(json, sizeof(json), "disk: iops=%llu is out of range (0 to %llu)",
		 (unsigned long long)CONF_QOS_MAX + 1, (unsigned long long)CONF_QOS_MAX);
	assert_string_equal(err, json);
	config_free(&c);

	config_init(&c);
	snprintf(json, sizeof(json), "{\"disks\": [{\"path\": \"/a\", \"qos\": {\"bps_burst\": %llu}}]}",
		 (unsigned long long)CONF_QOS_MAX);
	assert_int_equal(config_load_json_text(&c, json, strlen(json), err, sizeof(err)), 0);
	snprintf(json, sizeof(json), "{\"disks\": [{\"path\": \"/a\", \"qos\": {\"bps_burst\": %llu}}]}",
		 (unsigned long long)CONF_QOS_MAX + 1);
	assert_int_not_equal(config_load_json_text(&c, json, strlen(json), err, sizeof(err)), 0);
	snprintf(spec, sizeof(spec), "disks[0].qos.bps_burst: %llu is out of range (0 to %llu)",
		 (unsigned long long)CONF_QOS_MAX + 1, (unsigned long long)CONF_QOS_MAX);
	assert_string_equal(err, spec);
	config_free(&c);
	/* The control socket's set-qos goes through the same table. */
	assert_int_equal(config_disk_qos_set(&c.disks[0].qos, "iops", CONF_QOS_MAX), 0);
	assert_int_equal(config_disk_qos_set(&c.disks[0].qos, "iops", CONF_QOS_MAX + 1), -EINVAL);
	assert_int_equal(config_disk_qos_set(&c.disks[0].qos, "latency", 1), -ENOENT);
}

static void test_validate(void **st)
{
	struct vm_config c;
	char err[256] = "";
	char path[] = "/tmp/cella-cfg-XXXXXX";
	int fd = mkstemp(path);

	(void)st;
	assert_true(fd >= 0);
	close(fd);
	config_init(&c);
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "kernel: missing"));
	c.kernel = strdup("/nonexistent/kernel");
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "kernel: /nonexistent/kernel: No such file"));
	free(c.kernel);
	c.kernel = strdup(path);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	c.mem_mib = 1ULL << 30; /* 1 TiB: more than this host has */
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "more than the host's"));
	c.mem_mib = 64;
	assert_int_equal(config_add_disk(&c, path, err, sizeof(err)), 0);
	assert_int_equal(config_add_disk(&c, path, err, sizeof(err)), 0);
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "used twice"));
	free(c.disks[1].path);
	c.nr_disks = 1;
	c.disks[0].qos.iops_burst = 10;
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "a burst needs its rate"));
	c.disks[0].qos.iops = 5;
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_not_equal(config_validate(&(struct vm_config){ .kernel = "/" , .cpus = 1, .mem_mib = 64}, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "is a directory"));
	config_free(&c);
	unlink(path);
}

/* A multi-queue tap passed by cellad: one descriptor per queue pair. */
static void test_tap_queues(void **st)
{
	static const char *const bad[] = { "fd:5+", "fd:5++fd:6", "fd:5+fd:x", "+fd:5", "fd:-1+fd:5" };
	struct vm_config c;
	char err[256] = "";
	char path[] = "/tmp/cella-cfg-XXXXXX";
	int fd = mkstemp(path);

	(void)st;
	assert_true(fd >= 0);
	close(fd);
	config_init(&c);
	c.kernel = strdup(path);
	assert_int_equal(config_add_net(&c, "tap=mq0,tap_fd=fd:5+fd:6,queues=2", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	c.nets[0].queues = 3;
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_string_equal(err, "nets[0].tap_fd: 2 descriptors for queues=3 (one per queue pair)");
	c.nets[0].queues = 0;
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "2 descriptors for queues=1"));
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(c.nets[0].tap_fd);
		c.nets[0].tap_fd = strdup(bad[i]);
		c.nets[0].queues = 2;
		assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "is not fd:N (or fd:N+fd:M+..., one per queue)"));
	}
	config_free(&c);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_good),
		cmocka_unit_test(test_acpi_default),
		cmocka_unit_test(test_json_bad),
		cmocka_unit_test(test_option_strings),
		cmocka_unit_test(test_disk_options),
		cmocka_unit_test(test_disk_json),
		cmocka_unit_test(test_disk_fds),
		cmocka_unit_test(test_qos_limit),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_tap_queues),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
