/* fuzz_ws.c: what cellad reads from a WebSocket client (daemon/api/
 * ws_session.c: libwslay's framing driven as the event loop drives it, the
 * resize messages, the handshake's header checks), on arbitrary bytes.
 * The first byte picks how the bytes arrive (chunk sizes, a handshake
 * instead of frames); the rest is what the client sends. Whatever comes,
 * input handed on never exceeds what was sent, resizes are in range, and
 * a handshake accepted answers with a 28-character key. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
	const uint8_t *data;
	size_t len, off, chunk;
	size_t sent, send_room, input;
};

static ssize_t f_recv(void *owner, void *buf, size_t len)
{
	struct feed *f = owner;
	size_t n = f->len - f->off;

	if (!n) {
		errno = EAGAIN;
		return -1;
	}
	n = n < len ? n : len;
	n = n < f->chunk ? n : f->chunk;
	memcpy(buf, f->data + f->off, n);
	f->off += n;
	return (ssize_t)n;
}

static ssize_t f_send(void *owner, const void *buf, size_t len)
{
	struct feed *f = owner;
	size_t n = len < f->send_room ? len : f->send_room;

	(void)buf;
	if (!n) {
		errno = EAGAIN;
		return -1;
	}
	f->send_room -= n;
	f->sent += n;
	return (ssize_t)n;
}

static void f_input(void *owner, const void *data, size_t len)
{
	struct feed *f = owner;

	(void)data;
	f->input += len;
	if (f->input > f->len)
		abort(); /* more input than was sent */
}

static void f_resize(void *owner, unsigned cols, unsigned rows)
{
	(void)owner;
	if (!cols || !rows || cols > 65535 || rows > 65535)
		abort();
}

static const struct ws_session_ops ops = {
	.recv = f_recv, .send = f_send, .input = f_input, .resize = f_resize,
};

static void handshake(const uint8_t *data, size_t size)
{
	char buf[512], *parts[4] = { NULL }, *p, accept[32];
	const char *field, *why;
	size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;

	memcpy(buf, data, n);
	buf[n] = 0;
	p = buf;
	for (int i = 0; i < 4 && p; i++) {
		parts[i] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = 0;
	}
	if (!ws_handshake_check(parts[0], parts[1], parts[2], parts[3], accept, &field, &why) &&
	    strlen(accept) != 28)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct feed f = { 0 };
	struct ws_session *ws;
	unsigned cols, rows;
	const char *why;

	if (size < 1)
		return 0;
	if (data[0] & 0x80) {
		handshake(data + 1, size - 1);
		return 0;
	}
	if (ws_parse_resize(data + 1, size - 1, &cols, &rows, &why) == 1)
		f_resize(NULL, cols, rows);
	f.data = data + 1;
	f.len = size - 1;
	f.chunk = (size_t)(data[0] & 0x0f) * 97 + 1;
	if (ws_session_new(&ws, &ops, &f))
		return 0;
	(void)ws_session_send(ws, false, "console output", 14);
	for (int round = 0; round < 64; round++) {
		size_t before = f.off;

		f.send_room = (size_t)(data[0] & 0x70) + 7;
		if (ws_session_want_read(ws) && ws_session_read(ws))
			break;
		if (ws_session_write(ws))
			break;
		if (ws_session_done(ws) || (f.off == before && f.off == f.len))
			break;
	}
	ws_session_close(ws, 1000, "the VM is stopped");
	f.send_room = 1 << 20;
	if (ws_session_write(ws) == 0 && ws_session_want_write(ws))
		abort(); /* room enough for all that was queued */
	ws_session_free(ws);
	return 0;
}
