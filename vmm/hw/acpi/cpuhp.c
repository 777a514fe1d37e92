/* cpuhp.c: the CPU hot-plug controller behind the DSDT's \_SB.CPUS
 * (vmm/arch/x86/acpi_cpu.h has the register block): which vCPUs are
 * present (CPEN) and which the OS has not been told about yet (CINS), and
 * the control command that adds vCPUs to a running VM:
 *
 *   {"cmd": "cpus-set", "cpus": N}  ->  {"ok": true, "vcpus": N, "cpu_hotplug": {...}}
 *
 * creates vCPUs up to N (vcpus_hotplug: each waits for INIT/SIPI), marks
 * them present and inserting, and raises the GED's CPU hot-plug event; the
 * guest's _EVT runs CSCN, which notifies each inserted vCPU's ACPI0007
 * device and acknowledges it. There is no eject: N below the current count
 * is refused. The device exists only in a VM with room for more vCPUs
 * (cpus_max above cpus), and is state_optional: a state saved before it
 * existed loads, every vCPU present. docs/guests.md, "vCPU hot-plug". */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/acpi_cpu.h"
#include "devtype.h"
#include "hw/legacy.h"
#include "log.h"
#include "state/state.h"
#include "vcpu.h"
#include "vm.h"

#define CPUHP_STATE_VERSION 1

struct cpuhp_dev {
	struct device dev;
	struct vm *vm;
	pthread_mutex_t lock;
	unsigned possible;  /* vCPUs the tables describe */
	uint32_t present;   /* CPEN: one bit per vCPU index */
	uint32_t inserting; /* CINS: added, the OS not told yet */
	uint32_t selector;  /* CSEL */
};

static const struct device_ops cpuhp_ops;

static uint32_t mask_below(unsigned n)
{
	return n >= 32 ? 0xffffffffu : (1u << n) - 1;
}

static struct cpuhp_dev *cpuhp_of(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops == &cpuhp_ops)
			return container_of(d, struct cpuhp_dev, dev);
	return NULL;
}

static void cpuhp_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct cpuhp_dev *d = opaque;

	pthread_mutex_lock(&d->lock);
	for (uint32_t k = 0; k < len; k++) {
		uint64_t o = off + k;
		uint32_t bit = d->selector < d->possible ? 1u << d->selector : 0;

		if (o < ACPI_CPUHP_STS) {
			unsigned shift = 8 * (unsigned)o;

			if (is_write)
				d->selector = (d->selector & ~(0xffu << shift)) |
					      (uint32_t)data[k] << shift;
			else
				data[k] = (uint8_t)(d->selector >> shift);
		} else if (o == ACPI_CPUHP_STS) {
			if (is_write) {
				if (data[k] & ACPI_CPUHP_CINS)
					d->inserting &= ~bit; /* acknowledged */
			} else {
				data[k] = (uint8_t)((d->present & bit ? ACPI_CPUHP_CPEN : 0) |
						    (d->inserting & bit ? ACPI_CPUHP_CINS : 0));
			}
		} else if (!is_write) {
			data[k] = 0;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

static json_t *bits_json(uint32_t bits)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < 32; i++)
		if (bits & (1u << i))
			json_array_append_new(a, json_integer(i));
	return a;
}

static json_t *cpuhp_status(struct vm *vm)
{
	struct cpuhp_dev *d = cpuhp_of(vm);
	json_t *j;

	if (!d)
		return json_null();
	pthread_mutex_lock(&d->lock);
	j = json_pack("{s:i, s:i, s:o, s:o, s:b}", "possible", (int)d->possible, "vcpus",
		      (int)vm->nr_vcpus, "present", bits_json(d->present), "inserting",
		      bits_json(d->inserting), "ospm", acpi_dev_raise(vm, 0) == 0);
	pthread_mutex_unlock(&d->lock);
	return j;
}

static json_t *cmd_cpus_set(struct vm *vm, json_t *req, int fd)
{
	struct cpuhp_dev *d = cpuhp_of(vm);
	json_t *v = json_object_get(req, "cpus"), *rep;
	unsigned cur = vm->nr_vcpus;
	json_int_t n;
	int ret;

	(void)fd;
	if (!d)
		return devtype_cmd_error("cpus-set: this VM has no vCPU hot-plug (cpus_max)");
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return devtype_cmd_error("cpus: expected an integer from 1 to %u", d->possible);
	n = json_integer_value(v);
	if (n > (json_int_t)d->possible)
		return devtype_cmd_error("cpus: %lld is past cpus_max (%u)", (long long)n,
					 d->possible);
	if (n < (json_int_t)cur)
		return devtype_cmd_error("cpus: %lld is below the VM's %u vCPUs: removing vCPUs "
					 "is not supported (no eject)", (long long)n, cur);
	if (n > (json_int_t)cur && acpi_dev_raise(vm, 0))
		return devtype_cmd_error("cpus: the guest runs no ACPI OS (it never initialised "
					 "the GED: acpi=off, a kernel without ACPI, or still "
					 "booting): it would not see a new vCPU");
	ret = vcpus_hotplug(vm, (unsigned)n);
	if (vm->nr_vcpus > cur) {
		uint32_t added = mask_below(vm->nr_vcpus) & ~mask_below(cur);

		pthread_mutex_lock(&d->lock);
		d->present |= added;
		d->inserting |= added;
		pthread_mutex_unlock(&d->lock);
		if (acpi_dev_raise(vm, ACPI_GED_EVT_CPU_HOTPLUG))
			log_warn("cpuhp: the guest's ACPI OS is gone: vCPUs %u-%u wait for it", cur,
				 vm->nr_vcpus - 1);
		log_info("cpuhp: vCPUs %u-%u hot-plugged (%u of at most %u)", cur,
			 vm->nr_vcpus - 1, vm->nr_vcpus, d->possible);
	}
	if (ret)
		return devtype_cmd_error("cpus: cannot add vCPU %u: %s", vm->nr_vcpus,
					 strerror(-ret));
	rep = json_pack("{s:b, s:i}", "ok", 1, "vcpus", (int)vm->nr_vcpus);
	if (rep)
		json_object_set_new(rep, "cpu_hotplug", cpuhp_status(vm));
	return rep;
}

static int cpuhp_realize(struct device *dev, struct vm *vm)
{
	struct cpuhp_dev *d = container_of(dev, struct cpuhp_dev, dev);

	d->vm = vm;
	d->possible = config_cpus_possible(vm->cfg);
	d->present = mask_below(vm->cfg->cpus);
	return bus_register(&vm->pio, ACPI_CPUHP_PORT, ACPI_CPUHP_LEN, cpuhp_io, d, "acpi-cpuhp");
}

static void cpuhp_reset(struct device *dev)
{
	struct cpuhp_dev *d = container_of(dev, struct cpuhp_dev, dev);

	/* The vCPUs stay: a reset guest finds them present in its tables'
	 * container (no event pending). */
	pthread_mutex_lock(&d->lock);
	d->inserting = 0;
	d->selector = 0;
	pthread_mutex_unlock(&d->lock);
}

static int cpuhp_save(struct device *dev, struct state_writer *w)
{
	struct cpuhp_dev *d = container_of(dev, struct cpuhp_dev, dev);

	pthread_mutex_lock(&d->lock);
	state_put_u32(w, CPUHP_STATE_VERSION);
	state_put_u32(w, d->possible);
	state_put_u32(w, d->present);
	state_put_u32(w, d->inserting);
	state_put_u32(w, d->selector);
	pthread_mutex_unlock(&d->lock);
	return state_writer_error(w);
}

/* The vCPUs exist by now (the machine section made them): present must
 * name exactly those. */
static int cpuhp_load(struct device *dev, struct state_reader *r)
{
	struct cpuhp_dev *d = container_of(dev, struct cpuhp_dev, dev);
	uint32_t version, possible, present, inserting, selector;

	version = state_get_u32(r);
	possible = state_get_u32(r);
	present = state_get_u32(r);
	inserting = state_get_u32(r);
	selector = state_get_u32(r);
	if (state_reader_error(r))
		return state_reader_error(r);
	if (version != CPUHP_STATE_VERSION) {
		log_err("cpuhp: state version %u, this cella-vm reads %u", version,
			CPUHP_STATE_VERSION);
		return -EINVAL;
	}
	if (possible != d->possible || present != mask_below(d->vm->nr_vcpus) ||
	    (inserting & ~present)) {
		log_err("cpuhp: the saved controller (%u possible, present 0x%x, inserting 0x%x) "
			"does not fit this VM (%u possible, %u vCPUs)", possible, present,
			inserting, d->possible, d->vm->nr_vcpus);
		return -EINVAL;
	}
	pthread_mutex_lock(&d->lock);
	d->present = present;
	d->inserting = inserting;
	d->selector = selector;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void cpuhp_destroy(struct device *dev)
{
	struct cpuhp_dev *d = container_of(dev, struct cpuhp_dev, dev);

	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct device_ops cpuhp_ops = {
	.type = "cpuhp",
	.realize = cpuhp_realize,
	.reset = cpuhp_reset,
	.save = cpuhp_save,
	.load = cpuhp_load,
	.destroy = cpuhp_destroy,
};

static int cpuhp_type_create(struct vm *vm, unsigned index, const void *config)
{
	struct cpuhp_dev *d = calloc(1, sizeof(*d));

	(void)index;
	(void)config;
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->dev.ops = &cpuhp_ops;
	snprintf(d->dev.id, sizeof(d->dev.id), "cpuhp");
	return vm_add_device(vm, &d->dev);
}

static unsigned cpuhp_count(const struct vm_config *cfg)
{
	return config_cpus_possible(cfg) > cfg->cpus ? 1 : 0;
}

static const struct devtype_command cpuhp_commands[] = {
	{ "cpus-set", cmd_cpus_set, DEVTYPE_CMD_NOT_MIGRATING },
	{ NULL, NULL, 0 },
};

const struct device_type devtype_cpuhp = {
	.name = "cpuhp",
	.transport = DEVTYPE_PLATFORM,
	.max_instances = 1,
	.state_optional = true, /* states saved before vCPU hot-plug existed load */
	.count = cpuhp_count,
	.create = cpuhp_type_create,
	.commands = cpuhp_commands,
	.status_key = "cpu_hotplug",
	.status = cpuhp_status,
};
