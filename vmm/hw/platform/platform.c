/* platform.c: the small fixed ports of the platform: debug exit (0xF4, as
 * QEMU's isa-debug-exit), ACPI-style PM1a control (0x604: SLP_EN powers off)
 * and the reset control register (0xCF9). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtype.h"
#include "hw/legacy.h"
#include "log.h"
#include "state/state.h"
#include "vm.h"

#define PM1_SLP_EN 0x2000
#define RST_CPU    0x04

struct platform_ports {
	struct device dev;
	struct vm *vm;
};

static uint64_t le_value(const uint8_t *data, uint32_t len)
{
	uint64_t v = 0;

	for (uint32_t i = 0; i < len && i < 8; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static void debug_exit_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct platform_ports *p = opaque;
	uint64_t v;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	v = le_value(data, len);
	vm_request_exit(p->vm, (int)(((v << 1) | 1) & 0xff),
			"guest wrote 0x%llx to the debug-exit port",
			(unsigned long long)v);
	(void)off;
}

static void pm1_cnt_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct platform_ports *p = opaque;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (off == 0 && len >= 2 && (le_value(data, len) & PM1_SLP_EN))
		vm_request_exit(p->vm, WORKER_EXIT_POWEROFF, "guest powered off");
}

static void reset_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct platform_ports *p = opaque;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (data[0] & RST_CPU)
		vm_request_exit(p->vm, WORKER_EXIT_RESET, "guest requested a reset (port 0xCF9)");
	(void)off;
}

static int platform_realize(struct device *dev, struct vm *vm)
{
	struct platform_ports *p = container_of(dev, struct platform_ports, dev);
	int ret;

	p->vm = vm;
	ret = bus_register(&vm->pio, DEBUG_EXIT_PORT, 4, debug_exit_io, p, "debug-exit");
	if (!ret)
		ret = bus_register(&vm->pio, PM1_CNT_PORT, 2, pm1_cnt_io, p, "pm1-cnt");
	if (!ret)
		ret = bus_register(&vm->pio, RESET_PORT, 1, reset_io, p, "reset");
	return ret;
}

static void platform_reset(struct device *dev)
{
	(void)dev; /* stateless */
}

static int platform_save(struct device *dev, struct state_writer *w)
{
	(void)dev;
	state_put_u32(w, 1);
	return state_writer_error(w);
}

static int platform_load(struct device *dev, struct state_reader *r)
{
	(void)dev;
	if (state_get_u32(r) != 1)
		return -EINVAL;
	return state_reader_error(r);
}

static void platform_destroy(struct device *dev)
{
	free(container_of(dev, struct platform_ports, dev));
}

static const struct device_ops platform_ops = {
	.type = "platform-ports",
	.realize = platform_realize,
	.reset = platform_reset,
	.save = platform_save,
	.load = platform_load,
	.destroy = platform_destroy,
};

int platform_ports_create(struct vm *vm)
{
	struct platform_ports *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->dev.ops = &platform_ops;
	snprintf(p->dev.id, sizeof(p->dev.id), "platform");
	return vm_add_device(vm, &p->dev);
}

static int platform_type_create(struct vm *vm, unsigned index, const void *config)
{
	return platform_ports_create(vm);
}

const struct device_type devtype_platform = {
	.name = "platform-ports",
	.transport = DEVTYPE_PLATFORM,
	.max_instances = 1,
	.count = devtype_count_one,
	.create = platform_type_create,
};
