/* test_legacy.c: UART, i8042 and platform ports driven through the PIO bus of a KVM-less VM. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "hw/legacy.h"
#include "state/state.h"
#include "vm.h"

static uint8_t inb(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;

	assert_true(bus_dispatch(&vm->pio, port, &v, 1, false));
	return v;
}

static void outb(struct vm *vm, uint16_t port, uint8_t v)
{
	assert_true(bus_dispatch(&vm->pio, port, &v, 1, true));
}

static void test_uart_output_and_registers(void **st)
{
	struct vm vm;
	char path[] = "/tmp/cella-uart-XXXXXX";
	char buf[16] = "";
	int fd = mkstemp(path);

	(void)st;
	assert_true(fd >= 0);
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(uart_create(&vm, UART_COM1_BASE, UART_COM1_IRQ, CONSOLE_FILE, path), 0);
	for (const char *p = "hi\n"; *p; p++)
		outb(&vm, 0x3f8, (uint8_t)*p);
	assert_int_equal(read(fd, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "hi\n");
	/* LSR: transmitter empty, no data. */
	assert_int_equal(inb(&vm, 0x3fd), 0x60);
	/* Divisor latch. */
	outb(&vm, 0x3fb, 0x80);
	outb(&vm, 0x3f8, 0x01);
	outb(&vm, 0x3f9, 0x00);
	assert_int_equal(inb(&vm, 0x3f8), 0x01);
	outb(&vm, 0x3fb, 0x03);
	/* Scratch register. */
	outb(&vm, 0x3ff, 0x5a);
	assert_int_equal(inb(&vm, 0x3ff), 0x5a);
	/* FIFO enabled shows in IIR bits 7:6 (16550A detection). */
	outb(&vm, 0x3fa, 0x07);
	assert_int_equal(inb(&vm, 0x3fa) & 0xc0, 0xc0);
	/* THRE interrupt: raised when enabled, cleared by reading IIR. */
	outb(&vm, 0x3f9, 0x02);
	assert_int_equal(inb(&vm, 0x3fa) & 0x0f, 0x02);
	assert_int_equal(inb(&vm, 0x3fa) & 0x0f, 0x01);
	/* Loopback: MCR bits appear in MSR, bytes written come back. */
	outb(&vm, 0x3fc, 0x1f);
	assert_int_equal(inb(&vm, 0x3fe) & 0xf0, 0xf0);
	outb(&vm, 0x3fc, 0x10);
	assert_int_equal(inb(&vm, 0x3fe) & 0xf0, 0x00);
	outb(&vm, 0x3f8, 'Z');
	assert_int_equal(inb(&vm, 0x3fd) & 1, 1);
	assert_int_equal(inb(&vm, 0x3f8), 'Z');
	assert_int_equal(inb(&vm, 0x3fd) & 1, 0);
	/* Wider accesses are ignored, reads give all ones. */
	{
		uint8_t w[2] = { 0, 0 };

		assert_true(bus_dispatch(&vm.pio, 0x3f8, w, 2, false));
		assert_int_equal(w[0], 0xff);
	}
	vm_destroy(&vm);
	close(fd);
	unlink(path);
}

static void *loop_thread(void *arg)
{
	return (void *)(intptr_t)evloop_run(arg);
}

static void test_uart_socket_input(void **st)
{
	struct vm vm;
	char dir[] = "/tmp/cella-uart-sock-XXXXXX";
	char path[128];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;
	int c;
	char got[64] = "";
	size_t n = 0;

	(void)st;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/console.sock", dir);
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(uart_create(&vm, UART_COM1_BASE, UART_COM1_IRQ, CONSOLE_UNIX, path), 0);
	assert_int_equal(pthread_create(&t, NULL, loop_thread, vm.loop), 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(c, "hello", 5), 5);
	/* Poll the guest-visible LSR until all bytes arrived (I/O thread delivers them). */
	for (int spins = 0; n < 5 && spins < 50000000; spins++) {
		if (inb(&vm, 0x3fd) & 1)
			got[n++] = (char)inb(&vm, 0x3f8);
		else
			sched_yield();
	}
	assert_string_equal(got, "hello");
	/* Output reaches the client. */
	outb(&vm, 0x3f8, '!');
	{
		struct pollfd p = { .fd = c, .events = POLLIN };
		char ch = 0;

		assert_int_equal(poll(&p, 1, 5000), 1);
		assert_int_equal(read(c, &ch, 1), 1);
		assert_int_equal(ch, '!');
	}
	close(c);
	evloop_stop(vm.loop);
	pthread_join(t, NULL);
	vm_destroy(&vm);
	assert_int_equal(access(path, F_OK), -1); /* socket removed */
	rmdir(dir);
}

/* A console client that stops reading must not block the vCPU nor lose
 * output: THRE clears once the buffer is full, and everything arrives in
 * order when the client reads again. */
static void test_uart_backpressure(void **st)
{
	struct vm vm;
	char dir[] = "/tmp/cella-uart-bp-XXXXXX";
	char path[128];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;
	int c, rcv = 4096;
	long written = 0, got = 0;
	uint8_t buf[4096];

	(void)st;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/console.sock", dir);
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(uart_create(&vm, UART_COM1_BASE, UART_COM1_IRQ, CONSOLE_UNIX, path), 0);
	assert_int_equal(pthread_create(&t, NULL, loop_thread, vm.loop), 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* Until the I/O thread has accepted the client, output has nowhere to
	 * go: send a marker byte until one arrives, then drain the markers. */
	for (int spins = 0; spins < 1000000; spins++) {
		struct pollfd p = { .fd = c, .events = POLLIN };

		outb(&vm, 0x3f8, 'A');
		if (poll(&p, 1, 1) == 1)
			break;
	}
	outb(&vm, 0x3f8, 'B'); /* end of markers */
	for (bool end = false; !end;) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		ssize_t n;

		assert_int_equal(poll(&p, 1, 10000), 1);
		n = read(c, buf, sizeof(buf));
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++) {
			assert_true(buf[i] == 'A' || (buf[i] == 'B' && i == n - 1));
			end = buf[i] == 'B';
		}
	}
	written = 0;
	/* Write like a polling driver until THRE clears (socket and buffer full). */
	while (written < 64L << 20) {
		if (!(inb(&vm, 0x3fd) & 0x20))
			break;
		outb(&vm, 0x3f8, (uint8_t)(written % 251));
		written++;
	}
	assert_true(written < 64L << 20);
	assert_int_equal(inb(&vm, 0x3fd) & 0x60, 0); /* neither THRE nor TEMT */
	/* Read everything back, in order. */
	while (got < written) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		ssize_t n;

		assert_int_equal(poll(&p, 1, 10000), 1);
		n = read(c, buf, sizeof(buf));
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != (uint8_t)((got + i) % 251))
				fail_msg("byte %ld is %u, want %u", got + i, buf[i],
					 (unsigned)((got + i) % 251));
		got += n;
	}
	assert_int_equal(got, written);
	/* Drained: the transmitter is empty again. */
	for (int spins = 0; spins < 50000000 && (inb(&vm, 0x3fd) & 0x60) != 0x60; spins++)
		sched_yield();
	assert_int_equal(inb(&vm, 0x3fd) & 0x60, 0x60);
	close(c);
	evloop_stop(vm.loop);
	pthread_join(t, NULL);
	vm_destroy(&vm);
	rmdir(dir);
}

static void test_uart_save_load(void **st)
{
	struct vm a, b;
	struct state_writer w;
	struct state_reader r;

	(void)st;
	assert_int_equal(vm_create_test(&a, MiB(8)), 0);
	assert_int_equal(vm_create_test(&b, MiB(8)), 0);
	assert_int_equal(uart_create(&a, UART_COM1_BASE, UART_COM1_IRQ, CONSOLE_NONE, NULL), 0);
	assert_int_equal(uart_create(&b, UART_COM1_BASE, UART_COM1_IRQ, CONSOLE_NONE, NULL), 0);
	outb(&a, 0x3fb, 0x03);
	outb(&a, 0x3ff, 0x42);
	outb(&a, 0x3fc, 0x10);
	outb(&a, 0x3f8, 'q'); /* loopback: one byte pending in the receiver */
	state_writer_init(&w);
	assert_int_equal(a.devices->ops->save(a.devices, &w), 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(b.devices->ops->load(b.devices, &r), 0);
	assert_int_equal(inb(&b, 0x3ff), 0x42);
	assert_int_equal(inb(&b, 0x3fb), 0x03);
	assert_int_equal(inb(&b, 0x3f8), 'q');
	/* Truncated and corrupt streams are refused. */
	state_reader_init(&r, w.buf, w.len - 1);
	assert_int_not_equal(b.devices->ops->load(b.devices, &r), 0);
	w.buf[0] = 99;
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(b.devices->ops->load(b.devices, &r), -EINVAL);
	state_writer_free(&w);
	vm_destroy(&a);
	vm_destroy(&b);
}

static void test_i8042_reset(void **st)
{
	struct vm vm;

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(i8042_create(&vm), 0);
	outb(&vm, 0x64, 0xaa); /* self test */
	assert_int_equal(inb(&vm, 0x64) & 1, 1);
	assert_int_equal(inb(&vm, 0x60), 0x55);
	assert_int_equal(inb(&vm, 0x64) & 1, 0);
	outb(&vm, 0x64, 0x60);
	outb(&vm, 0x60, 0x47);
	outb(&vm, 0x64, 0x20);
	assert_int_equal(inb(&vm, 0x60), 0x47);
	assert_false(vm_exiting(&vm));
	outb(&vm, 0x64, 0xfe);
	assert_true(vm_exiting(&vm));
	assert_int_equal(atomic_load(&vm.exit_code), WORKER_EXIT_RESET);
	vm_destroy(&vm);
}

static void test_i8042_ctrl_alt_del(void **st)
{
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	struct vm vm, other;
	struct state_writer w;
	struct state_reader r;

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(vm_request_guest_shutdown(&vm), -ENODEV);
	assert_int_equal(i8042_create(&vm), 0);
	outb(&vm, 0x64, 0x60);
	outb(&vm, 0x60, 0x01); /* keyboard interrupt on, no translation */
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);
	assert_int_equal(vm_request_guest_shutdown(&vm), -EBUSY); /* not read yet */
	for (size_t i = 0; i < sizeof(set2); i++) {
		assert_int_equal(inb(&vm, 0x64) & 1, 1);
		assert_int_equal(inb(&vm, 0x60), set2[i]);
	}
	assert_int_equal(inb(&vm, 0x64) & 1, 0);
	/* With translation on, the guest gets set 1 codes. */
	outb(&vm, 0x64, 0x60);
	outb(&vm, 0x60, 0x41);
	assert_int_equal(vm_request_guest_shutdown(&vm), 0);
	/* Pending scancodes survive save/load. */
	state_writer_init(&w);
	assert_int_equal(vm.devices->ops->save(vm.devices, &w), 0);
	assert_int_equal(vm_create_test(&other, MiB(8)), 0);
	assert_int_equal(i8042_create(&other), 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(other.devices->ops->load(other.devices, &r), 0);
	for (size_t i = 0; i < sizeof(set1); i++)
		assert_int_equal(inb(&other, 0x60), set1[i]);
	/* A controller reply comes before queued keyboard bytes. */
	outb(&vm, 0x64, 0xaa);
	assert_int_equal(inb(&vm, 0x60), 0x55);
	assert_int_equal(inb(&vm, 0x60), set1[0]);
	state_writer_free(&w);
	vm_destroy(&other);
	vm_destroy(&vm);
}

static void test_platform_ports(void **st)
{
	struct vm vm;
	uint8_t v4[4] = { 0x21, 0, 0, 0 };
	uint8_t pm[2] = { 0x00, 0x20 };

	(void)st;
	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(platform_ports_create(&vm), 0);
	assert_true(bus_dispatch(&vm.pio, DEBUG_EXIT_PORT, v4, 4, true));
	assert_int_equal(atomic_load(&vm.exit_code), (0x21 << 1) | 1);
	assert_string_equal(worker_exit_kind(0x43), "debug exit");
	vm_destroy(&vm);

	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(platform_ports_create(&vm), 0);
	assert_true(bus_dispatch(&vm.pio, PM1_CNT_PORT, pm, 2, true));
	assert_int_equal(atomic_load(&vm.exit_code), WORKER_EXIT_POWEROFF);
	vm_destroy(&vm);

	assert_int_equal(vm_create_test(&vm, MiB(8)), 0);
	assert_int_equal(platform_ports_create(&vm), 0);
	outb(&vm, RESET_PORT, 0x02); /* no RST_CPU bit: nothing happens */
	assert_false(vm_exiting(&vm));
	outb(&vm, RESET_PORT, 0x06);
	assert_int_equal(atomic_load(&vm.exit_code), WORKER_EXIT_RESET);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uart_output_and_registers),
		cmocka_unit_test(test_uart_socket_input),
		cmocka_unit_test(test_uart_backpressure),
		cmocka_unit_test(test_uart_save_load),
		cmocka_unit_test(test_i8042_reset),
		cmocka_unit_test(test_i8042_ctrl_alt_del),
		cmocka_unit_test(test_platform_ports),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
