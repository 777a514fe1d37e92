/* test_devtype.c: the device-type registry (each type once, unique names,
 * queue counts the transport supports), the generic device list of the
 * configuration (--device, "devices"), and the resource check at
 * validation: more devices than interrupt lines is refused naming what ran
 * out, before any VM exists. */
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
#include "devtype.h"
#include "virtio/mmio.h"
#include "vm.h"

static void test_registry(void **st)
{
	(void)st;
	assert_true(nr_device_types >= 7);
	for (unsigned i = 0; i < nr_device_types; i++) {
		const struct device_type *t = device_types[i];

		assert_non_null(t->name);
		assert_non_null(t->create);
		assert_true(t->max_instances >= 1);
		assert_ptr_equal(devtype_find(t->name), t);
		for (unsigned j = 0; j < i; j++) {
			assert_ptr_not_equal(device_types[j], t);
			if (!strcmp(device_types[j]->name, t->name))
				fail_msg("device type '%s' registered twice", t->name);
		}
		/* A type's instances come from its count or from the generic list. */
		assert_true(!t->count == !!t->config_schema);
		if (t->config_schema)
			assert_true(t->config_size > 0);
		if (t->transport == DEVTYPE_VIRTIO_MMIO) {
			assert_true(t->nr_queues >= 1 && t->nr_queues <= VIRTIO_MAX_QUEUES);
			assert_int_equal(t->gsis, 1);
			assert_int_equal(t->mmio_windows, 1);
		}
		if (t->status)
			assert_non_null(t->status_key);
		for (const struct devtype_command *c = t->commands; c && c->name; c++)
			assert_non_null(c->run);
	}
	assert_true(VIRTIO_MAX_QUEUES >= 8);
	assert_null(devtype_find("no-such-device"));
	assert_non_null(devtype_find("virtio-console"));
	assert_non_null(devtype_find("i8042")->request_shutdown);
}

static void test_device_flag(void **st)
{
	struct vm_config c;
	char err[256] = "";

	(void)st;
	config_init(&c);
	assert_int_equal(config_add_device(&c, "virtio-console,path=/tmp/a", err, sizeof(err)), 0);
	assert_int_equal(c.nr_devices, 1);
	assert_ptr_equal(c.devices[0].type, devtype_find("virtio-console"));
	assert_int_not_equal(config_add_device(&c, "virtio-console", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "has no path=FILE"));
	assert_int_not_equal(config_add_device(&c, "virtio-console,path=/a,speed=3", err,
					       sizeof(err)), 0);
	assert_non_null(strstr(err, "virtio-console: unknown option 'speed=3' (expected path=FILE)"));
	assert_int_not_equal(config_add_device(&c, "virtio-gpu,path=/a", err, sizeof(err)), 0);
	/* The list names every generic type (more come with new devices). */
	assert_non_null(strstr(err, "unknown device type 'virtio-gpu' (expected virtio-console, "));
	assert_non_null(strstr(err, "virtio-balloon"));
	assert_non_null(strstr(err, "virtio-mem"));
	/* Types configured by their own flags are not in the generic list. */
	assert_int_not_equal(config_add_device(&c, "virtio-blk,path=/a", err, sizeof(err)), 0);
	assert_int_equal(c.nr_devices, 1);
	for (unsigned i = 1; i < devtype_find("virtio-console")->max_instances; i++)
		assert_int_equal(config_add_device(&c, "virtio-console,path=/b", err, sizeof(err)),
				 0);
	assert_int_not_equal(config_add_device(&c, "virtio-console,path=/c", err, sizeof(err)), 0);
	assert_non_null(strstr(err, "at most"));
	config_free(&c);
}

/* The generic list in JSON; its errors are in test_config.c's bad_json. */
static void test_device_json(void **st)
{
	const char *good = "{\"devices\": [{\"type\": \"virtio-console\", \"path\": \"/tmp/o\"}]}";
	struct vm_config c;
	char err[256];

	(void)st;
	config_init(&c);
	assert_int_equal(config_load_json_text(&c, good, strlen(good), err, sizeof(err)), 0);
	assert_int_equal(c.nr_devices, 1);
	assert_ptr_equal(c.devices[0].type, devtype_find("virtio-console"));
	config_free(&c);
}

/* More devices than interrupt lines: refused by config_validate, naming
 * the resource, however the devices are spread over the types. */
static void test_too_many_devices(void **st)
{
	char kernel[] = "/tmp/cella-devtype-XXXXXX";
	struct vm_config c;
	char err[256] = "", spec[64];
	int fd = mkstemp(kernel);

	(void)st;
	assert_true(fd >= 0);
	close(fd);
	config_init(&c);
	c.kernel = strdup(kernel);
	c.rng = true;
	/* 16 disks + rng + 2 consoles: 19 lines, exactly what there is. The
	 * disks do not exist, which validation notices only afterwards. */
	for (unsigned i = 0; i < CONFIG_MAX_DISKS; i++) {
		snprintf(spec, sizeof(spec), "/nonexistent/d%u", i);
		assert_int_equal(config_add_disk(&c, spec, err, sizeof(err)), 0);
	}
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(config_add_device(&c, "virtio-console,path=/tmp/x", err,
						   sizeof(err)), 0);
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "disks[0].path: /nonexistent/d0"));
	assert_int_equal(config_add_device(&c, "virtio-console,path=/tmp/x", err, sizeof(err)), 0);
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_string_equal(err, "too many devices: 20 need an interrupt line, 19 are available "
				 "(GSI 5-23)");
	/* The configuration's own maxima allow more than the machine has. */
	for (unsigned i = 0; i < CONFIG_MAX_NETS; i++) {
		snprintf(spec, sizeof(spec), "tap=tap%u", i);
		assert_int_equal(config_add_net(&c, spec, err, sizeof(err)), 0);
	}
	assert_int_not_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "28 need an interrupt line, 19 are available"));
	config_free(&c);
	unlink(kernel);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_device_flag),
		cmocka_unit_test(test_device_json),
		cmocka_unit_test(test_too_many_devices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
