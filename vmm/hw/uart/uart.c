/* uart.c: 16550A UART (COM1) with FIFO, interrupts and loopback, and its
 * console back ends: stdio, an output file, or a Unix socket with one client. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "fdspec.h"
#include "devtype.h"
#include "hw/legacy.h"
#include "log.h"
#include "state/state.h"
#include "vm.h"

#define UART_RX_BUF 1024
#define UART_TX_BUF 4096 /* output waiting for a slow console reader */
#define UART_STATE_VERSION 1

/* Register offsets and bits (16550A data sheet). */
#define UART_RBR 0
#define UART_IER 1
#define UART_IIR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7
#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_FIFO 0xC0
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

struct uart {
	struct device dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t base;
	unsigned gsi;
	/* Guest-visible registers. */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, msr_delta;
	bool thr_pending; /* THRE interrupt pending until IIR read or THR write */
	int irq_level;
	uint8_t rx[UART_RX_BUF];
	unsigned rx_head, rx_count;
	/* Output the console could not take yet. While it is full, LSR.THRE is
	 * clear, so a guest that polls THRE (as drivers do) waits: back-pressure
	 * instead of lost output or a vCPU blocked in write(). */
	uint8_t tx[UART_TX_BUF];
	unsigned tx_head, tx_count;
	bool tx_watched;
	uint64_t tx_overruns; /* bytes written while THRE was clear: dropped */
	/* Console back end. */
	enum console_kind kind;
	char *path;
	int in_fd, out_fd, listen_fd;
	bool in_watched;
	bool in_eof;
	bool tty_saved;
	struct termios saved_tty;
};

static void uart_update_irq(struct uart *u)
{
	bool pending = ((u->ier & IER_RDI) && u->rx_count) ||
		       ((u->ier & IER_THRI) && u->thr_pending && u->tx_count < UART_TX_BUF);
	int level = pending ? 1 : 0;

	/* Only OUT2 gates the interrupt on a PC; Linux sets it, our test guest polls. */
	if (level != u->irq_level) {
		u->irq_level = level;
		if (vm_irq_line(u->vm, u->gsi, level))
			log_debug("uart: KVM_IRQ_LINE failed");
	}
}

static uint8_t uart_iir(struct uart *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((u->ier & IER_RDI) && u->rx_count)
		return fifo | IIR_RDI;
	if ((u->ier & IER_THRI) && u->thr_pending && u->tx_count < UART_TX_BUF)
		return fifo | IIR_THRI;
	return fifo | IIR_NONE;
}

static uint8_t uart_msr(struct uart *u)
{
	uint8_t msr;

	if (u->mcr & MCR_LOOP) {
		/* Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
		msr = (uint8_t)(((u->mcr & 0x02) << 3) | ((u->mcr & 0x01) << 5) |
				((u->mcr & 0x04) << 4) | ((u->mcr & 0x08) << 4));
	} else {
		msr = 0xB0; /* DCD, DSR, CTS: a terminal is always there */
	}
	return msr | u->msr_delta;
}

static void uart_rx_push(struct uart *u, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && u->rx_count < UART_RX_BUF; i++) {
		u->rx[(u->rx_head + u->rx_count) % UART_RX_BUF] = p[i];
		u->rx_count++;
	}
}

/* Write without blocking: 1 written, 0 the console cannot take it now, -1 gone. */
static int uart_try_write(struct uart *u, const uint8_t *p, size_t n, size_t *done)
{
	ssize_t r;

	*done = 0;
	if (u->kind == CONSOLE_UNIX) {
		r = send(u->out_fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	} else {
		struct pollfd pfd = { .fd = u->out_fd, .events = POLLOUT };

		/* stdout may be shared with our parent: never make it O_NONBLOCK.
		 * A pipe or tty that polls writable takes at least one byte. */
		if (poll(&pfd, 1, 0) == 0)
			return 0;
		r = write(u->out_fd, p, u->kind == CONSOLE_FILE ? n : 1);
	}
	if (r > 0) {
		*done = (size_t)r;
		return 1;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return -1;
}

static void uart_tx_ready(void *opaque, uint32_t events);

/* Drain the output buffer as far as the console takes it (lock held). */
static void uart_tx_drain(struct uart *u)
{
	while (u->tx_count && u->out_fd >= 0) {
		size_t chunk = MIN(u->tx_count, UART_TX_BUF - u->tx_head), done;
		int r = uart_try_write(u, u->tx + u->tx_head, chunk, &done);

		if (r < 0) {
			u->tx_count = 0; /* console gone: nobody to deliver to */
			break;
		}
		if (r == 0)
			break;
		u->tx_head = (unsigned)((u->tx_head + done) % UART_TX_BUF);
		u->tx_count -= (unsigned)done;
	}
	if (u->tx_count && !u->tx_watched && u->out_fd >= 0 &&
	    evloop_add(u->vm->loop, u->out_fd, EPOLLOUT, uart_tx_ready, u) == 0)
		u->tx_watched = true;
	if (!u->tx_count && u->tx_watched) {
		evloop_del(u->vm->loop, u->out_fd);
		u->tx_watched = false;
	}
}

static void uart_tx_ready(void *opaque, uint32_t events)
{
	struct uart *u = opaque;

	(void)events;
	pthread_mutex_lock(&u->lock);
	uart_tx_drain(u);
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_output(struct uart *u, uint8_t c)
{
	size_t done;

	if (u->out_fd < 0)
		return;
	if (u->tx_count == 0) {
		int r = uart_try_write(u, &c, 1, &done);

		if (r != 0) {
			if (r < 0)
				log_debug("uart: console write: %s", strerror(errno));
			return;
		}
	}
	if (u->tx_count == UART_TX_BUF) {
		u->tx_overruns++;
		return;
	}
	u->tx[(u->tx_head + u->tx_count) % UART_TX_BUF] = c;
	u->tx_count++;
	uart_tx_drain(u);
}

static void uart_input_ready(void *opaque, uint32_t events);
static void uart_close_client(struct uart *u);

/* Watch console input again once the guest has drained the buffer (lock held). */
static void uart_maybe_rewatch(struct uart *u)
{
	if (!u->in_watched && !u->in_eof && u->in_fd >= 0 && u->rx_count < UART_RX_BUF / 2) {
		if (evloop_add(u->vm->loop, u->in_fd, EPOLLIN, uart_input_ready, u) == 0)
			u->in_watched = true;
	}
}

static void uart_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct uart *u = opaque;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&u->lock);
	if (is_write) {
		uint8_t v = data[0];

		switch (off) {
		case UART_RBR:
			if (u->lcr & LCR_DLAB) {
				u->dll = v;
			} else if (u->mcr & MCR_LOOP) {
				uart_rx_push(u, &v, 1);
				u->thr_pending = true;
			} else {
				uart_output(u, v);
				u->thr_pending = true; /* transmitted at once: THR empty again */
			}
			break;
		case UART_IER:
			if (u->lcr & LCR_DLAB) {
				u->dlm = v;
			} else {
				/* Enabling THRI while THR is empty raises it at once (16550A). */
				if (!(u->ier & IER_THRI) && (v & IER_THRI))
					u->thr_pending = true;
				u->ier = v & 0x0F;
			}
			break;
		case UART_IIR: /* FCR */
			u->fcr = v & 0xC9;
			if (v & FCR_CLEAR_RX) {
				u->rx_count = 0;
				uart_maybe_rewatch(u);
			}
			break;
		case UART_LCR:
			u->lcr = v;
			break;
		case UART_MCR:
			u->mcr = v & 0x1F;
			break;
		case UART_SCR:
			u->scr = v;
			break;
		default:
			break; /* LSR and MSR are read-only */
		}
	} else {
		uint8_t v = 0;

		switch (off) {
		case UART_RBR:
			if (u->lcr & LCR_DLAB) {
				v = u->dll;
			} else if (u->rx_count) {
				v = u->rx[u->rx_head];
				u->rx_head = (u->rx_head + 1) % UART_RX_BUF;
				u->rx_count--;
				uart_maybe_rewatch(u);
			}
			break;
		case UART_IER:
			v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
			break;
		case UART_IIR:
			v = uart_iir(u);
			if ((v & 0x0F) == IIR_THRI)
				u->thr_pending = false;
			break;
		case UART_LCR:
			v = u->lcr;
			break;
		case UART_MCR:
			v = u->mcr;
			break;
		case UART_LSR:
			v = (u->tx_count < UART_TX_BUF ? LSR_THRE : 0) | (u->tx_count ? 0 : LSR_TEMT) |
			    (u->rx_count ? LSR_DR : 0);
			break;
		case UART_MSR:
			v = uart_msr(u);
			u->msr_delta = 0;
			break;
		case UART_SCR:
			v = u->scr;
			break;
		}
		data[0] = v;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_input_ready(void *opaque, uint32_t events)
{
	struct uart *u = opaque;
	uint8_t buf[256];
	ssize_t n;
	size_t space;

	pthread_mutex_lock(&u->lock);
	space = UART_RX_BUF - u->rx_count;
	if (space == 0) {
		/* Stop reading until the guest drains: back-pressure, not loss. */
		evloop_del(u->vm->loop, u->in_fd);
		u->in_watched = false;
		pthread_mutex_unlock(&u->lock);
		return;
	}
	n = read(u->in_fd, buf, MIN(space, sizeof(buf)));
	if (n > 0) {
		uart_rx_push(u, buf, (size_t)n);
		uart_update_irq(u);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		/* End of input (or a dead client): stop watching this fd. */
		evloop_del(u->vm->loop, u->in_fd);
		u->in_watched = false;
		if (u->kind == CONSOLE_UNIX) {
			uart_close_client(u);
		} else {
			u->in_eof = true;
		}
	}
	(void)events;
	pthread_mutex_unlock(&u->lock);
}

/* Forget the Unix-socket client (lock held). */
static void uart_close_client(struct uart *u)
{
	if (u->in_watched)
		evloop_del(u->vm->loop, u->in_fd);
	if (u->tx_watched)
		evloop_del(u->vm->loop, u->out_fd);
	if (u->in_fd >= 0)
		close(u->in_fd);
	if (u->out_fd >= 0)
		close(u->out_fd);
	u->in_fd = u->out_fd = -1;
	u->in_watched = u->tx_watched = false;
	u->tx_count = 0;
}

/* Take a waiting client, if any (lock not held). false: none. */
static bool uart_accept_one(struct uart *u)
{
	int fd = accept4(u->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return false;
	pthread_mutex_lock(&u->lock);
	/* One client at a time: the newest one wins. */
	uart_close_client(u);
	u->in_fd = fd;
	/* A second descriptor for output, so epoll can watch it on its own. */
	u->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	u->in_eof = false;
	uart_maybe_rewatch(u);
	pthread_mutex_unlock(&u->lock);
	return true;
}

static void uart_accept(void *opaque, uint32_t events)
{
	(void)events;
	uart_accept_one(opaque);
}

/* Before the vCPUs start: a client that connected while the worker was
 * busy elsewhere (an incoming migration is received before the I/O loop
 * runs) is taken now, else the guest's first output after the resume is
 * written to nobody (daemon-move lost a memwriter round that way). */
static void uart_prerun(struct device *dev)
{
	struct uart *u = (struct uart *)dev;

	if (u->kind == CONSOLE_UNIX && u->listen_fd >= 0)
		while (uart_accept_one(u))
			;
}

static int uart_open_console(struct uart *u)
{
	switch (u->kind) {
	case CONSOLE_STDIO:
		u->in_fd = STDIN_FILENO;
		u->out_fd = STDOUT_FILENO;
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &u->saved_tty) == 0) {
			struct termios raw = u->saved_tty;

			/* Raw input for the guest; keep ISIG so ^C still stops cella-vm. */
			raw.c_iflag &= ~(tcflag_t)(ICRNL | IXON | INLCR | IGNCR);
			raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ECHONL | IEXTEN);
			raw.c_cc[VMIN] = 1;
			raw.c_cc[VTIME] = 0;
			if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
				u->tty_saved = true;
		}
		fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
		return 0;
	case CONSOLE_FILE:
	{
		char why[256];

		/* "fd:N": a log file cellad opened for the worker. */
		u->out_fd = fdspec_open(u->path, O_WRONLY | O_CREAT | O_APPEND, 0640, 0, why,
					sizeof(why));
		if (u->out_fd < 0) {
			log_err("console file %s", why);
			return u->out_fd;
		}
		return 0;
	}
	case CONSOLE_UNIX: {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int passed;

		if (fdspec_is_fd(u->path, &passed)) {
			/* A listening socket cellad bound in its run_dir (which
			 * the worker cannot reach); main closes the original. */
			int acc = 0;
			socklen_t len = sizeof(acc);

			if (passed < 0 || getsockopt(passed, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 ||
			    !acc) {
				log_err("console socket %s: not a listening socket", u->path);
				return -EBADF;
			}
			u->listen_fd = fcntl(passed, F_DUPFD_CLOEXEC, 3);
			if (u->listen_fd < 0 ||
			    fcntl(u->listen_fd, F_SETFL, fcntl(u->listen_fd, F_GETFL) | O_NONBLOCK) < 0)
				return -errno;
			return evloop_add(u->vm->loop, u->listen_fd, EPOLLIN, uart_accept, u);
		}
		if (strlen(u->path) >= sizeof(sa.sun_path)) {
			log_err("console socket path too long: %s", u->path);
			return -ENAMETOOLONG;
		}
		strcpy(sa.sun_path, u->path);
		u->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (u->listen_fd < 0)
			return -errno;
		unlink(u->path);
		if (bind(u->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(u->listen_fd, 4) < 0) {
			log_err("console socket %s: %s", u->path, strerror(errno));
			return -errno;
		}
		return evloop_add(u->vm->loop, u->listen_fd, EPOLLIN, uart_accept, u);
	}
	case CONSOLE_NONE:
		return 0;
	}
	return -EINVAL;
}

static int uart_realize(struct device *dev, struct vm *vm)
{
	struct uart *u = container_of(dev, struct uart, dev);
	int ret;

	u->vm = vm;
	ret = uart_open_console(u);
	if (ret)
		return ret;
	pthread_mutex_lock(&u->lock);
	uart_maybe_rewatch(u);
	pthread_mutex_unlock(&u->lock);
	return bus_register(&vm->pio, u->base, 8, uart_io, u, "uart");
}

static void uart_reset(struct device *dev)
{
	struct uart *u = container_of(dev, struct uart, dev);

	pthread_mutex_lock(&u->lock);
	u->ier = u->lcr = u->mcr = u->scr = u->fcr = u->msr_delta = 0;
	u->dll = 12; /* 9600 baud divisor, as after power-on */
	u->dlm = 0;
	u->thr_pending = false;
	u->rx_count = u->rx_head = 0;
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static int uart_save(struct device *dev, struct state_writer *w)
{
	struct uart *u = container_of(dev, struct uart, dev);

	pthread_mutex_lock(&u->lock);
	state_put_u32(w, UART_STATE_VERSION);
	state_put_u8(w, u->ier);
	state_put_u8(w, u->lcr);
	state_put_u8(w, u->mcr);
	state_put_u8(w, u->scr);
	state_put_u8(w, u->dll);
	state_put_u8(w, u->dlm);
	state_put_u8(w, u->fcr);
	state_put_u8(w, u->thr_pending);
	state_put_u32(w, u->rx_count);
	for (unsigned i = 0; i < u->rx_count; i++)
		state_put_u8(w, u->rx[(u->rx_head + i) % UART_RX_BUF]);
	pthread_mutex_unlock(&u->lock);
	return state_writer_error(w);
}

static int uart_load(struct device *dev, struct state_reader *r)
{
	struct uart *u = container_of(dev, struct uart, dev);
	uint32_t count;

	if (state_get_u32(r) != UART_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	u->ier = state_get_u8(r) & 0x0F;
	u->lcr = state_get_u8(r);
	u->mcr = state_get_u8(r) & 0x1F;
	u->scr = state_get_u8(r);
	u->dll = state_get_u8(r);
	u->dlm = state_get_u8(r);
	u->fcr = state_get_u8(r) & 0xC9;
	u->thr_pending = state_get_u8(r) != 0;
	count = state_get_u32(r);
	if (count > UART_RX_BUF)
		state_reader_fail(r);
	u->rx_head = 0;
	u->rx_count = 0;
	for (uint32_t i = 0; i < count && !state_reader_error(r); i++) {
		uint8_t c = state_get_u8(r);

		uart_rx_push(u, &c, 1);
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return state_reader_error(r);
}

/* What the guest wrote last may still be queued when the VM ends: the guest
 * writes a byte at a time, and each byte is its own message on a Unix
 * socket, so a console reader that lags (a loaded host) fills the socket
 * after a few hundred bytes. Deliver the rest before closing, waiting at
 * most UART_FLUSH_MS in all for the reader. */
#define UART_FLUSH_MS 2000

static void uart_flush_out(struct uart *u)
{
	int waited = 0;

	uart_tx_drain(u);
	while (u->tx_count && u->out_fd >= 0 && waited < UART_FLUSH_MS) {
		struct pollfd pfd = { .fd = u->out_fd, .events = POLLOUT };
		int r = poll(&pfd, 1, 50);

		if (r < 0 && errno != EINTR)
			break;
		waited += r == 0 ? 50 : 0;
		if (r > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)))
			break;
		uart_tx_drain(u);
	}
	if (u->tx_count)
		log_warn("serial: %u output bytes not delivered: the console reader did not take them",
			 u->tx_count);
}

static void uart_destroy(struct device *dev)
{
	struct uart *u = container_of(dev, struct uart, dev);

	uart_flush_out(u);
	if (u->vm && u->vm->loop) {
		if (u->in_watched)
			evloop_del(u->vm->loop, u->in_fd);
		if (u->tx_watched)
			evloop_del(u->vm->loop, u->out_fd);
		if (u->listen_fd >= 0)
			evloop_del(u->vm->loop, u->listen_fd);
	}
	if (u->tx_overruns)
		log_warn("serial: %llu output bytes dropped: the guest wrote while THRE was clear",
			 (unsigned long long)u->tx_overruns);
	if (u->tty_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &u->saved_tty);
	if (u->kind == CONSOLE_STDIO)
		fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) & ~O_NONBLOCK);
	if (u->kind == CONSOLE_FILE && u->out_fd >= 0)
		close(u->out_fd);
	if (u->kind == CONSOLE_UNIX) {
		if (u->in_fd >= 0)
			close(u->in_fd);
		if (u->out_fd >= 0)
			close(u->out_fd);
		if (u->listen_fd >= 0) {
			close(u->listen_fd);
			if (!fdspec_is_fd(u->path, &(int){ 0 }))
				unlink(u->path); /* a passed socket's name is its owner's */
		}
	}
	pthread_mutex_destroy(&u->lock);
	free(u->path);
	free(u);
}

static const struct device_ops uart_ops = {
	.type = "uart16550a",
	.realize = uart_realize,
	.reset = uart_reset,
	.save = uart_save,
	.load = uart_load,
	.destroy = uart_destroy,
	.prerun = uart_prerun,
};

int uart_create(struct vm *vm, uint16_t base, unsigned gsi, enum console_kind kind,
		const char *path)
{
	struct uart *u = calloc(1, sizeof(*u));

	if (!u)
		return -ENOMEM;
	u->dev.ops = &uart_ops;
	snprintf(u->dev.id, sizeof(u->dev.id), "serial%u", base == UART_COM1_BASE ? 0 : 1);
	pthread_mutex_init(&u->lock, NULL);
	u->base = base;
	u->gsi = gsi;
	u->kind = kind;
	u->path = path ? strdup(path) : NULL;
	u->in_fd = u->out_fd = u->listen_fd = -1;
	u->dll = 12;
	return vm_add_device(vm, &u->dev);
}

static int uart_type_create(struct vm *vm, unsigned index, const void *config)
{
	return uart_create(vm, UART_COM1_BASE, UART_COM1_IRQ, vm->cfg->console,
			   vm->cfg->console_path);
}

const struct device_type devtype_uart = {
	.name = "uart16550a",
	.transport = DEVTYPE_PLATFORM,
	.max_instances = 1,
	.count = devtype_count_one,
	.create = uart_type_create,
};
