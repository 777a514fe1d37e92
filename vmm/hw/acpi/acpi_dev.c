/* acpi_dev.c: the hardware-reduced ACPI platform device behind the tables of
 * arch/x86/acpi.c: the FADT's sleep control register (SLP_TYP 5 with SLP_EN
 * powers the VM off, as a guest power-off), its sleep status register, and
 * the Generic Event Device's event register and interrupt, through which the
 * host presses the power button (graceful shutdown: request_shutdown). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "devtype.h"
#include "log.h"
#include "state/state.h"
#include "vm.h"

#define ACPI_DEV_STATE_VERSION 1

static const struct device_ops acpi_dev_ops;

struct acpi_dev {
	struct device dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ged_pending; /* ACPI_GED_EVT_* not yet read by the guest */
	bool ospm;           /* the GED's _INI ran: an ACPI OS is listening */
};

static void sleep_ctl_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct acpi_dev *d = opaque;
	unsigned typ;

	(void)off;
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	typ = (data[0] & ACPI_SLP_TYP_MASK) >> ACPI_SLP_TYP_SHIFT;
	if (!(data[0] & ACPI_SLP_EN))
		return;
	if (typ == ACPI_S5_TYP)
		vm_request_exit(d->vm, WORKER_EXIT_POWEROFF, "guest powered off (ACPI S5)");
	else
		log_info("acpi: the guest asked for sleep type %u, which is not offered; ignored", typ);
}

static void sleep_sts_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	(void)opaque;
	(void)off;
	if (!is_write)
		memset(data, 0, len); /* WAK_STS never set: there is no wake from S5 */
}

static void ged_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct acpi_dev *d = opaque;

	(void)off;
	pthread_mutex_lock(&d->lock);
	if (is_write) {
		if (data[0] & ACPI_GED_OSPM) {
			if (!d->ospm)
				log_debug("acpi: the guest's OSPM initialised the GED");
			d->ospm = true;
		}
	} else {
		memset(data, 0, len);
		data[0] = d->ged_pending; /* read to clear */
		d->ged_pending = 0;
	}
	pthread_mutex_unlock(&d->lock);
}

static int acpi_dev_press_power_button(struct device *dev)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (!d->ospm)
		ret = -ENODEV; /* no ACPI guest (acpi=off, or none in its kernel) */
	else if (d->ged_pending & ACPI_GED_EVT_POWER_BUTTON)
		ret = -EBUSY;
	else
		d->ged_pending |= ACPI_GED_EVT_POWER_BUTTON;
	pthread_mutex_unlock(&d->lock);
	if (ret == -ENODEV)
		return ret;
	/* Pulse the line again for a press still pending too: an edge that
	 * came while the guest had the pin masked is lost, the event is not. */
	if (vm_irq_line(d->vm, ACPI_GED_GSI, 1) || vm_irq_line(d->vm, ACPI_GED_GSI, 0))
		log_info("acpi: cannot raise the GED interrupt (GSI %u)", ACPI_GED_GSI);
	if (!ret)
		log_info("acpi: power button pressed");
	return ret;
}

int acpi_dev_raise(struct vm *vm, uint8_t events)
{
	struct acpi_dev *d = NULL;
	int ret = 0;

	for (struct device *dev = vm->devices; dev && !d; dev = dev->next)
		if (dev->ops == &acpi_dev_ops)
			d = container_of(dev, struct acpi_dev, dev);
	if (!d)
		return -ENODEV;
	pthread_mutex_lock(&d->lock);
	if (!d->ospm)
		ret = -ENODEV;
	else
		d->ged_pending |= events;
	pthread_mutex_unlock(&d->lock);
	if (ret || !events)
		return ret;
	if (vm_irq_line(vm, ACPI_GED_GSI, 1) || vm_irq_line(vm, ACPI_GED_GSI, 0))
		log_info("acpi: cannot raise the GED interrupt (GSI %u)", ACPI_GED_GSI);
	return 0;
}

static int acpi_dev_realize(struct device *dev, struct vm *vm)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);
	int ret;

	d->vm = vm;
	ret = bus_register(&vm->pio, ACPI_SLEEP_CTL_PORT, 1, sleep_ctl_io, d, "acpi-sleep-ctl");
	if (!ret)
		ret = bus_register(&vm->pio, ACPI_SLEEP_STS_PORT, 1, sleep_sts_io, d, "acpi-sleep-sts");
	if (!ret)
		ret = bus_register(&vm->pio, ACPI_GED_PORT, 1, ged_io, d, "acpi-ged");
	return ret;
}

static void acpi_dev_reset(struct device *dev)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);

	pthread_mutex_lock(&d->lock);
	d->ged_pending = 0;
	d->ospm = false;
	pthread_mutex_unlock(&d->lock);
}

static int acpi_dev_save(struct device *dev, struct state_writer *w)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);

	pthread_mutex_lock(&d->lock);
	state_put_u32(w, ACPI_DEV_STATE_VERSION);
	state_put_u32(w, d->ged_pending);
	state_put_u32(w, d->ospm);
	pthread_mutex_unlock(&d->lock);
	return state_writer_error(w);
}

static int acpi_dev_load(struct device *dev, struct state_reader *r)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);
	uint32_t pending, ospm;

	if (state_get_u32(r) != ACPI_DEV_STATE_VERSION)
		return -EINVAL;
	pending = state_get_u32(r);
	ospm = state_get_u32(r);
	if (state_reader_error(r))
		return state_reader_error(r);
	if (pending > 0xff || ospm > 1)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	d->ged_pending = (uint8_t)pending;
	d->ospm = ospm;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void acpi_dev_destroy(struct device *dev)
{
	struct acpi_dev *d = container_of(dev, struct acpi_dev, dev);

	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct device_ops acpi_dev_ops = {
	.type = "acpi",
	.realize = acpi_dev_realize,
	.reset = acpi_dev_reset,
	.save = acpi_dev_save,
	.load = acpi_dev_load,
	.destroy = acpi_dev_destroy,
};

int acpi_dev_create(struct vm *vm)
{
	struct acpi_dev *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->dev.ops = &acpi_dev_ops;
	snprintf(d->dev.id, sizeof(d->dev.id), "acpi");
	return vm_add_device(vm, &d->dev);
}

static int acpi_type_create(struct vm *vm, unsigned index, const void *config)
{
	(void)index;
	(void)config;
	return acpi_dev_create(vm);
}

/* Before the i8042 in vmm/meson.build: graceful shutdown presses the power
 * button when an ACPI OS listens, else falls through to Ctrl-Alt-Del. */
const struct device_type devtype_acpi = {
	.name = "acpi",
	.transport = DEVTYPE_PLATFORM,
	.max_instances = 1,
	.state_optional = true, /* states saved before cella-vm had it load */
	.count = devtype_count_one,
	.create = acpi_type_create,
	.request_shutdown = acpi_dev_press_power_button,
};
