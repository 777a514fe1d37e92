/* devtype.c: the device-type registry's queries, the resource check of a
 * configuration and device creation (see devtype.h). */
#include "devtype.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "virtio/mmio.h"
#include "vm.h"

const struct device_type *devtype_find(const char *name)
{
	for (unsigned i = 0; i < nr_device_types; i++)
		if (!strcmp(device_types[i]->name, name))
			return device_types[i];
	return NULL;
}

const struct device_type *devtype_of(const struct device *dev)
{
	return devtype_find(dev->ops->type);
}

unsigned devtype_count_one(const struct vm_config *cfg)
{
	return 1;
}

unsigned devtype_count(const struct device_type *t, const struct vm_config *cfg)
{
	unsigned n = 0;

	if (t->count)
		return t->count(cfg);
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		n += cfg->devices[i].type == t;
	return n;
}

void devtype_config_names(char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (unsigned i = 0; i < nr_device_types && n < len; i++)
		if (device_types[i]->config_schema)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
					      device_types[i]->name);
}

int devtypes_check(const struct vm_config *cfg, char *err, size_t errlen)
{
	const unsigned gsis_free = VM_GSI_MAX - VIRTIO_GSI_FIRST + 1;

	_Static_assert(VM_GSI_MAX - VIRTIO_GSI_FIRST + 1 == CONF_VIRTIO_IRQS,
		       "conf/limits.h's count of virtio interrupt lines");
	const unsigned long windows_free = (VIRTIO_MMIO_END - VIRTIO_MMIO_BASE) / VIRTIO_MMIO_SIZE;
	unsigned gsis = 0;
	unsigned long windows = 0;

	for (unsigned i = 0; i < nr_device_types; i++) {
		const struct device_type *t = device_types[i];
		unsigned n = devtype_count(t, cfg);

		if (!n)
			continue;
		if (n > t->max_instances) {
			snprintf(err, errlen, "too many %s devices: %u, at most %u", t->name, n,
				 t->max_instances);
			return -EINVAL;
		}
		if (t->nr_queues > VIRTIO_MAX_QUEUES) {
			snprintf(err, errlen, "%s: %u queues, the virtio-mmio transport has %d",
				 t->name, t->nr_queues, VIRTIO_MAX_QUEUES);
			return -EINVAL;
		}
		gsis += n * t->gsis;
		windows += (unsigned long)n * t->mmio_windows;
	}
	if (gsis > gsis_free) {
		snprintf(err, errlen, "too many devices: %u need an interrupt line, %u are available "
			 "(GSI %d-%d)", gsis, gsis_free, VIRTIO_GSI_FIRST, VM_GSI_MAX);
		return -EINVAL;
	}
	if (windows > windows_free) {
		snprintf(err, errlen, "too many devices: %lu need a virtio-mmio window, %lu are "
			 "available (0x%llx-0x%llx)", windows, windows_free,
			 (unsigned long long)VIRTIO_MMIO_BASE, (unsigned long long)VIRTIO_MMIO_END - 1);
		return -EINVAL;
	}
	return 0;
}

int devtypes_create(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;

	for (unsigned i = 0; i < nr_device_types; i++) {
		const struct device_type *t = device_types[i];
		unsigned n = 0;
		int ret;

		if (t->count) {
			for (unsigned k = t->count(cfg), j = 0; j < k; j++)
				if ((ret = t->create(vm, j, NULL)))
					return ret;
			continue;
		}
		for (unsigned j = 0; j < cfg->nr_devices; j++) {
			if (cfg->devices[j].type != t)
				continue;
			if ((ret = t->create(vm, n++, cfg->devices[j].cfg)))
				return ret;
		}
	}
	return 0;
}

json_t *devtype_cmd_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}
