/* legacy.h: the emulated PC devices every VM has: COM1 16550A UART, i8042
 * (reset line), debug-exit port 0xF4, power-off port 0x604 and reset port 0xCF9. */
#pragma once
#include <stdint.h>

#include "compiler.h"
#include "config.h"

struct vm;
struct device;

#define UART_COM1_BASE 0x3F8
#define UART_COM1_IRQ  4
#define DEBUG_EXIT_PORT 0xF4
#define PM1_CNT_PORT    0x604
#define RESET_PORT      0xCF9

/* Individual constructors (also used by unit tests). in_fd/out_fd may be -1. */
int uart_create(struct vm *vm, uint16_t base, unsigned gsi, enum console_kind kind,
		const char *path) __must_check;
int i8042_create(struct vm *vm) __must_check;
/* Queue Ctrl-Alt-Del on the keyboard (IRQ 1). -EBUSY if the guest has not
 * consumed the previous one. */
int i8042_ctrl_alt_del(struct device *dev) __must_check;
int platform_ports_create(struct vm *vm) __must_check;
/* The ACPI sleep registers and GED (hw/acpi; arch/x86/acpi.h). */
int acpi_dev_create(struct vm *vm) __must_check;
/* Set GED events (ACPI_GED_EVT_*) and pulse its interrupt, for another
 * platform device (the vCPU hot-plug controller, hw/acpi/cpuhp.c). 0, or
 * -ENODEV when no OSPM listens (it never ran the GED's _INI: acpi=off, a
 * kernel without ACPI, a guest still booting) or the VM has no ACPI
 * device. events 0: only that answer. */
int acpi_dev_raise(struct vm *vm, uint8_t events) __must_check;
