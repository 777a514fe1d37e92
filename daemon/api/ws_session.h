/* ws_session.h: one WebSocket (RFC 6455) connection's protocol, server
 * side, with no sockets, threads or cellad state: the handshake's checks
 * and answer, and the framing (Debian's libwslay) with what the console
 * makes of each message. The event loop (ws_loop.c) gives it a socket;
 * the fuzz target (tests/fuzz/daemon/fuzz_ws.c) gives it bytes. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "compiler.h"

/* The largest message a client may send (a paste into the console, a
 * resize): a longer one is refused with close code 1009. */
#define WS_MAX_MSG 65536

/* Close codes used (RFC 6455 7.4.1). */
enum {
	WS_CLOSE_NORMAL = 1000,     /* the VM's console ended (the VM stopped) */
	WS_CLOSE_GOING_AWAY = 1001, /* cellad stops, or the client was silent too long */
	WS_CLOSE_TOO_BIG = 1009,    /* a message over WS_MAX_MSG */
	WS_CLOSE_ERROR = 1011,      /* the console's source broke off */
};

/* The handshake (RFC 6455 4.2.1) on the request's headers (NULL: absent):
 * 0 with the Sec-WebSocket-Accept value in accept (29 bytes and the NUL),
 * or -1 with the header at fault in *field and why in *why. */
int ws_handshake_check(const char *upgrade, const char *connection, const char *version,
		       const char *key, char accept[32], const char **field, const char **why)
	__must_check;

/* What a session asks of its owner. */
struct ws_session_ops {
	/* Like recv(2) and send(2) on a non-blocking socket: the byte count,
	 * 0 at the peer's end (recv), or -1 with errno (EAGAIN: not now). */
	ssize_t (*recv)(void *owner, void *buf, size_t len);
	ssize_t (*send)(void *owner, const void *buf, size_t len);
	/* A binary message, or a text message that is not a resize: bytes
	 * for the guest. */
	void (*input)(void *owner, const void *data, size_t len);
	/* A text message {"resize": [cols, rows]}. */
	void (*resize)(void *owner, unsigned cols, unsigned rows);
	/* A text message that is JSON with "resize" but not [cols, rows]
	 * (optional: NULL ignores it). */
	void (*bad)(void *owner, const char *why);
};

struct ws_session;

int ws_session_new(struct ws_session **out, const struct ws_session_ops *ops, void *owner)
	__must_check;
void ws_session_free(struct ws_session *ws);
/* Read what the socket has, calling ops for each whole message (pings
 * are answered, a close is echoed). 0, or -1: the connection is broken
 * (the peer left, or spoke something that is not WebSocket: drop it). */
int ws_session_read(struct ws_session *ws) __must_check;
/* Send what is queued until the socket would block. 0 or -1 (broken). */
int ws_session_write(struct ws_session *ws) __must_check;
/* Queue a message (copied): 0, or -1 once a close was queued. */
int ws_session_send(struct ws_session *ws, bool text, const void *data, size_t len);
/* Queue a ping (the peer's pong, like any frame, shows it is there). */
void ws_session_ping(struct ws_session *ws);
/* Queue a close with code and reason (at most 123 bytes are kept). */
void ws_session_close(struct ws_session *ws, uint16_t code, const char *reason);
/* Bytes queued and not yet handed to the socket. */
size_t ws_session_queued(struct ws_session *ws);
/* Whether so much waits for the peer (WS_BACKLOG_BYTES, or WS_BACKLOG_MSGS
 * messages: pongs, error messages) that the peer is not read until it
 * takes some: a client that sends without reading cannot grow the queue. */
#define WS_BACKLOG_BYTES (128u << 10)
#define WS_BACKLOG_MSGS  1024u
bool ws_session_backlogged(struct ws_session *ws);
bool ws_session_want_read(struct ws_session *ws);
bool ws_session_want_write(struct ws_session *ws);
/* Whether a close was sent (the session then waits for the peer's). */
bool ws_session_closing(struct ws_session *ws);
/* Whether nothing is left to read or send: the socket can go. */
bool ws_session_done(struct ws_session *ws);

/* A text message's meaning: 1 a resize (cols, rows filled), 0 input, -1 a
 * malformed resize (why filled). Exposed for the fuzz target. */
int ws_parse_resize(const void *msg, size_t len, unsigned *cols, unsigned *rows,
		    const char **why);
