/* console.c: polled 16550A output/input at 0x3F8 and a small printf.
 * Every port access is a VM exit (~25 us from ring 3 here), so output waits
 * for an empty transmitter once per 16 bytes (the FIFO depth), not per byte. */
#include "libtest.h"

#define COM1 0x3F8
#define UART_RBR 0
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define UART_FIFO 16

void console_init(void)
{
	outb(COM1 + UART_LCR, 0x03);	/* 8N1, DLAB off: the VMM ignores the rate */
	outb(COM1 + UART_FCR, 0x07);	/* enable and clear both FIFOs */
}

void console_write(const char *s, size_t len)
{
	while (len) {
		/* Bounded wait: a VMM without a UART must not hang the guest. */
		for (int spins = 0; spins < 100000; spins++)
			if (inb(COM1 + UART_LSR) & LSR_THRE)
				break;
		size_t n = len < UART_FIFO ? len : UART_FIFO;
		for (size_t i = 0; i < n; i++)
			outb(COM1 + UART_THR, (uint8_t)s[i]);
		s += n;
		len -= n;
	}
}

void putchar(int c)
{
	char ch = (char)c;
	console_write(&ch, 1);
}

int console_getc(void)
{
	if (inb(COM1 + UART_LSR) & LSR_DR)
		return inb(COM1 + UART_RBR);
	return -1;
}

/* ---- formatting ---- */
struct fmtbuf {
	char *buf;
	size_t size, len;
};

static void fmt_putc(struct fmtbuf *b, char c)
{
	if (b->len + 1 < b->size)
		b->buf[b->len] = c;
	b->len++;
}

static void fmt_num(struct fmtbuf *b, uint64_t v, bool neg, unsigned base, bool upper,
		    int width, bool zero, bool left)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (!left && !zero)
		for (; width > len; width--)
			fmt_putc(b, ' ');
	if (neg)
		fmt_putc(b, '-');
	if (!left && zero)
		for (; width > len; width--)
			fmt_putc(b, '0');
	while (n)
		fmt_putc(b, tmp[--n]);
	if (left)
		for (; width > len; width--)
			fmt_putc(b, ' ');
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct fmtbuf b = { buf, size, 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			fmt_putc(&b, *fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			fmt_num(&b, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, false, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned int);
			fmt_num(&b, v, false, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, zero, left);
			break;
		}
		case 'p':
			fmt_putc(&b, '0');
			fmt_putc(&b, 'x');
			fmt_num(&b, (uint64_t)(uintptr_t)va_arg(ap, void *), false, 16, false, width, zero, left);
			break;
		case 'c':
			fmt_putc(&b, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			if (!left)
				for (; width > len; width--)
					fmt_putc(&b, ' ');
			while (*s)
				fmt_putc(&b, *s++);
			if (left)
				for (; width > len; width--)
					fmt_putc(&b, ' ');
			break;
		}
		case '%':
			fmt_putc(&b, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			fmt_putc(&b, '%');
			fmt_putc(&b, *fmt);
			break;
		}
	}
	if (size)
		buf[b.len < size ? b.len : size - 1] = '\0';
	return (int)b.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	console_write(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}
