/* i8042.c: the PS/2 controller, enough for Linux to probe it, to reset the
 * machine through it (command 0xFE, or output port bit 0 cleared), and to
 * deliver Ctrl-Alt-Del from the host: the ACPI-less way to ask a Linux guest
 * to shut down (as Firecracker does). The keyboard answers no commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtype.h"
#include "hw/legacy.h"
#include "log.h"
#include "state/state.h"
#include "vm.h"

#define I8042_DATA   0x60
#define I8042_CMD    0x64
#define STATUS_OBF   0x01
#define STATUS_SYS   0x04
#define STATUS_CMD   0x08
#define CTR_KBD_INT     0x01
#define CTR_KBD_DISABLE 0x10
#define CTR_XLATE       0x40
#define I8042_KBD_IRQ   1
#define I8042_KBD_QUEUE 16
#define CTR_AUX_DISABLE 0x20
#define I8042_STATE_VERSION 2

struct i8042 {
	struct device dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ctr;         /* controller configuration byte */
	uint8_t pending_cmd; /* command waiting for its data byte, or 0 */
	uint8_t out[4];      /* controller replies, read first */
	unsigned out_len;
	uint8_t kbd[I8042_KBD_QUEUE]; /* scancodes from the host side */
	unsigned kbd_len;
	uint8_t status_cmd;  /* STATUS_CMD if the last write went to port 0x64 */
};

static void i8042_push(struct i8042 *k, uint8_t v)
{
	if (k->out_len < sizeof(k->out))
		k->out[k->out_len++] = v;
}

/* One edge on IRQ 1 while keyboard bytes wait and the guest wants them. */
static void i8042_kbd_irq(struct i8042 *k)
{
	if (k->kbd_len && !k->out_len && (k->ctr & CTR_KBD_INT) && !(k->ctr & CTR_KBD_DISABLE)) {
		if (vm_irq_line(k->vm, I8042_KBD_IRQ, 1) || vm_irq_line(k->vm, I8042_KBD_IRQ, 0))
			log_debug("i8042: cannot raise IRQ 1");
	}
}

int i8042_ctrl_alt_del(struct device *dev)
{
	/* Ctrl, Alt, Del pressed and released; set 2, or set 1 when the guest
	 * turned on translation. */
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	struct i8042 *k = container_of(dev, struct i8042, dev);
	const uint8_t *codes;
	size_t n;
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	codes = (k->ctr & CTR_XLATE) ? set1 : set2;
	n = (k->ctr & CTR_XLATE) ? sizeof(set1) : sizeof(set2);
	if (k->kbd_len + n > sizeof(k->kbd)) {
		ret = -EBUSY; /* the guest has not read the previous sequence */
	} else {
		memcpy(k->kbd + k->kbd_len, codes, n);
		k->kbd_len += (unsigned)n;
		i8042_kbd_irq(k);
	}
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20: /* read configuration byte */
		i8042_push(k, k->ctr);
		break;
	case 0x60: /* write configuration byte: data follows */
	case 0xD1: /* write output port: data follows */
		k->pending_cmd = cmd;
		break;
	case 0xA7: k->ctr |= CTR_AUX_DISABLE; break;
	case 0xA8: k->ctr &= (uint8_t)~CTR_AUX_DISABLE; break;
	case 0xAD: k->ctr |= CTR_KBD_DISABLE; break;
	case 0xAE: k->ctr &= (uint8_t)~CTR_KBD_DISABLE; break;
	case 0xA9: /* aux port test: 0xFF = no mouse port */
		i8042_push(k, 0xFF);
		break;
	case 0xAA: /* controller self test */
		i8042_push(k, 0x55);
		break;
	case 0xAB: /* keyboard port test: ok */
		i8042_push(k, 0x00);
		break;
	case 0xFE: /* pulse the reset line */
		vm_request_exit(k->vm, WORKER_EXIT_RESET, "guest requested a reset (i8042)");
		break;
	default:
		/* Other pulse-output commands (0xF0-0xFD) reset when bit 0 is clear. */
		if (cmd >= 0xF0 && !(cmd & 1))
			vm_request_exit(k->vm, WORKER_EXIT_RESET, "guest requested a reset (i8042)");
		break;
	}
}

static void i8042_access(struct i8042 *k, uint16_t port, uint8_t *data, uint32_t len,
			 bool is_write)
{
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&k->lock);
	if (port == I8042_CMD && is_write) {
		k->status_cmd = STATUS_CMD;
		i8042_command(k, data[0]);
	} else if (port == I8042_CMD) {
		data[0] = (uint8_t)(STATUS_SYS | k->status_cmd |
				    (k->out_len || k->kbd_len ? STATUS_OBF : 0));
	} else if (is_write) {
		k->status_cmd = 0;
		if (k->pending_cmd == 0x60) {
			k->ctr = data[0];
			i8042_kbd_irq(k);
		} else if (k->pending_cmd == 0xD1) {
			if (!(data[0] & 1))
				vm_request_exit(k->vm, WORKER_EXIT_RESET,
						"guest requested a reset (i8042 output port)");
		}
		/* Bytes for the keyboard itself are dropped: no keyboard attached. */
		k->pending_cmd = 0;
	} else if (k->out_len) {
		data[0] = k->out[0];
		memmove(k->out, k->out + 1, --k->out_len);
		i8042_kbd_irq(k);
	} else if (k->kbd_len) {
		data[0] = k->kbd[0];
		memmove(k->kbd, k->kbd + 1, --k->kbd_len);
		i8042_kbd_irq(k);
	} else {
		data[0] = 0;
	}
	pthread_mutex_unlock(&k->lock);
}

static void i8042_data_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	(void)off;
	i8042_access(opaque, I8042_DATA, data, len, is_write);
}

static void i8042_cmd_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	(void)off;
	i8042_access(opaque, I8042_CMD, data, len, is_write);
}

static int i8042_realize(struct device *dev, struct vm *vm)
{
	struct i8042 *k = container_of(dev, struct i8042, dev);
	int ret;

	k->vm = vm;
	ret = bus_register(&vm->pio, I8042_DATA, 1, i8042_data_io, k, "i8042-data");
	if (ret)
		return ret;
	return bus_register(&vm->pio, I8042_CMD, 1, i8042_cmd_io, k, "i8042-cmd");
}

static void i8042_reset(struct device *dev)
{
	struct i8042 *k = container_of(dev, struct i8042, dev);

	pthread_mutex_lock(&k->lock);
	k->ctr = CTR_AUX_DISABLE;
	k->pending_cmd = 0;
	k->out_len = 0;
	k->kbd_len = 0;
	k->status_cmd = 0;
	pthread_mutex_unlock(&k->lock);
}

static int i8042_save(struct device *dev, struct state_writer *w)
{
	struct i8042 *k = container_of(dev, struct i8042, dev);

	pthread_mutex_lock(&k->lock);
	state_put_u32(w, I8042_STATE_VERSION);
	state_put_u8(w, k->ctr);
	state_put_u8(w, k->pending_cmd);
	state_put_u8(w, k->status_cmd);
	state_put_u8(w, (uint8_t)k->out_len);
	state_put_bytes(w, k->out, k->out_len);
	state_put_u8(w, (uint8_t)k->kbd_len);
	state_put_bytes(w, k->kbd, k->kbd_len);
	pthread_mutex_unlock(&k->lock);
	return state_writer_error(w);
}

static int i8042_load(struct device *dev, struct state_reader *r)
{
	struct i8042 *k = container_of(dev, struct i8042, dev);
	uint8_t n;
	uint32_t version = state_get_u32(r);

	/* Version 1 (no keyboard queue) still loads. */
	if (version != 1 && version != I8042_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	k->ctr = state_get_u8(r);
	k->pending_cmd = state_get_u8(r);
	k->status_cmd = state_get_u8(r) & STATUS_CMD;
	n = state_get_u8(r);
	if (n > sizeof(k->out)) {
		state_reader_fail(r);
		n = 0;
	}
	k->out_len = n;
	state_get_bytes(r, k->out, n);
	k->kbd_len = 0;
	if (version >= 2) {
		n = state_get_u8(r);
		if (n > sizeof(k->kbd)) {
			state_reader_fail(r);
			n = 0;
		}
		k->kbd_len = n;
		state_get_bytes(r, k->kbd, n);
	}
	pthread_mutex_unlock(&k->lock);
	return state_reader_error(r);
}

static void i8042_destroy(struct device *dev)
{
	struct i8042 *k = container_of(dev, struct i8042, dev);

	pthread_mutex_destroy(&k->lock);
	free(k);
}

static const struct device_ops i8042_ops = {
	.type = "i8042",
	.realize = i8042_realize,
	.reset = i8042_reset,
	.save = i8042_save,
	.load = i8042_load,
	.destroy = i8042_destroy,
};

int i8042_create(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->dev.ops = &i8042_ops;
	snprintf(k->dev.id, sizeof(k->dev.id), "i8042");
	pthread_mutex_init(&k->lock, NULL);
	k->ctr = CTR_AUX_DISABLE;
	return vm_add_device(vm, &k->dev);
}

static int i8042_type_create(struct vm *vm, unsigned index, const void *config)
{
	return i8042_create(vm);
}

/* Graceful shutdown without ACPI: Ctrl-Alt-Del. */
const struct device_type devtype_i8042 = {
	.name = "i8042",
	.transport = DEVTYPE_PLATFORM,
	.max_instances = 1,
	.count = devtype_count_one,
	.create = i8042_type_create,
	.request_shutdown = i8042_ctrl_alt_del,
};
