/* ws_session.c: a WebSocket connection's protocol (ws_session.h): the
 * handshake's checks, and libwslay's event API driven through the owner's
 * recv/send, each whole message turned into console input or a resize.
 * The framing (masking, lengths, fragments, control frames, the close
 * handshake, the 1009 for an oversized message) is wslay's. */
#include "ws_session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws_session {
	wslay_event_context_ptr ctx;
	const struct ws_session_ops *ops;
	void *owner;
};

/* Whether the comma-separated header value list holds token (any case). */
static bool has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);

	while (list && *list) {
		size_t n;

		list += strspn(list, " \t,");
		n = strcspn(list, ",");
		while (n && (list[n - 1] == ' ' || list[n - 1] == '\t'))
			n--;
		if (n == tl && !strncasecmp(list, token, tl))
			return true;
		list += strcspn(list, ",");
	}
	return false;
}

int ws_handshake_check(const char *upgrade, const char *connection, const char *version,
		       const char *key, char accept[32], const char **field, const char **why)
{
	gnutls_datum_t in, raw = { 0 }, b64 = { 0 };
	unsigned char digest[20];
	char buf[64 + sizeof(WS_GUID)];
	size_t kl;

	*field = "";
	*why = "";
	if (!upgrade || !has_token(upgrade, "websocket")) {
		*field = "Upgrade";
		*why = "a WebSocket handshake needs 'Upgrade: websocket'";
		return -1;
	}
	if (!connection || !has_token(connection, "upgrade")) {
		*field = "Connection";
		*why = "a WebSocket handshake needs 'Connection: Upgrade'";
		return -1;
	}
	if (!version || strcmp(version, "13")) {
		*field = "Sec-WebSocket-Version";
		*why = "only WebSocket version 13 (RFC 6455) is spoken";
		return -1;
	}
	*field = "Sec-WebSocket-Key";
	*why = "expected the base64 of 16 random bytes";
	if (!key)
		return -1;
	key += strspn(key, " \t");
	kl = strcspn(key, " \t");
	if (kl != 24 || key[kl + strspn(key + kl, " \t")])
		return -1;
	in.data = (unsigned char *)(uintptr_t)key;
	in.size = (unsigned)kl;
	if (gnutls_base64_decode2(&in, &raw) < 0)
		return -1;
	gnutls_free(raw.data);
	if (raw.size != 16)
		return -1;
	memcpy(buf, key, kl);
	memcpy(buf + kl, WS_GUID, sizeof(WS_GUID) - 1);
	if (gnutls_hash_fast(GNUTLS_DIG_SHA1, buf, kl + sizeof(WS_GUID) - 1, digest) < 0) {
		*why = "cannot compute the answer (SHA-1)";
		return -1;
	}
	in.data = digest;
	in.size = sizeof(digest);
	if (gnutls_base64_encode2(&in, &b64) < 0 || b64.size >= 32) {
		gnutls_free(b64.data);
		*why = "cannot compute the answer (base64)";
		return -1;
	}
	memcpy(accept, b64.data, b64.size);
	accept[b64.size] = 0;
	gnutls_free(b64.data);
	*field = "";
	*why = "";
	return 0;
}

int ws_parse_resize(const void *msg, size_t len, unsigned *cols, unsigned *rows,
		    const char **why)
{
	const char *p = msg;
	json_t *j, *r;
	int ret = 0;

	/* Only a JSON object can be a resize: other text is typed input. */
	while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		p++;
		len--;
	}
	if (!len || *p != '{')
		return 0;
	j = json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return 0;
	r = json_object_get(j, "resize");
	if (!json_is_object(j) || !r) {
		json_decref(j);
		return 0;
	}
	*why = "resize: expected [cols, rows], each from 1 to 65535";
	if (json_is_array(r) && json_array_size(r) == 2 && json_is_integer(json_array_get(r, 0)) &&
	    json_is_integer(json_array_get(r, 1))) {
		json_int_t c = json_integer_value(json_array_get(r, 0));
		json_int_t w = json_integer_value(json_array_get(r, 1));

		if (c >= 1 && c <= 65535 && w >= 1 && w <= 65535) {
			*cols = (unsigned)c;
			*rows = (unsigned)w;
			*why = "";
			ret = 1;
		} else {
			ret = -1;
		}
	} else {
		ret = -1;
	}
	json_decref(j);
	return ret;
}

/* wslay's callbacks ------------------------------------------------------ */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		       void *user)
{
	struct ws_session *ws = user;
	ssize_t n;

	(void)flags;
	if (ws_session_backlogged(ws)) { /* read again once the peer took some */
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	n = ws->ops->recv(ws->owner, buf, len);
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
		       void *user)
{
	struct ws_session *ws = user;
	ssize_t n = ws->ops->send(ws->owner, data, len);

	(void)flags;
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		   void *user)
{
	struct ws_session *ws = user;
	unsigned cols = 0, rows = 0;
	const char *why = "";

	(void)ctx;
	if (arg->opcode == WSLAY_BINARY_FRAME) {
		ws->ops->input(ws->owner, arg->msg, arg->msg_length);
	} else if (arg->opcode == WSLAY_TEXT_FRAME) {
		switch (ws_parse_resize(arg->msg, arg->msg_length, &cols, &rows, &why)) {
		case 1:
			ws->ops->resize(ws->owner, cols, rows);
			break;
		case 0:
			ws->ops->input(ws->owner, arg->msg, arg->msg_length);
			break;
		default:
			if (ws->ops->bad)
				ws->ops->bad(ws->owner, why);
		}
	}
	/* Pings are answered and closes echoed by wslay; pongs need nothing. */
}

int ws_session_new(struct ws_session **out, const struct ws_session_ops *ops, void *owner)
{
	static const struct wslay_event_callbacks cb = {
		.recv_callback = on_recv,
		.send_callback = on_send,
		.on_msg_recv_callback = on_msg,
	};
	struct ws_session *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return -ENOMEM;
	ws->ops = ops;
	ws->owner = owner;
	if (wslay_event_context_server_init(&ws->ctx, &cb, ws)) {
		free(ws);
		return -ENOMEM;
	}
	/* Whole messages are buffered (a fragmented one too) up to this. */
	wslay_event_config_set_max_recv_msg_length(ws->ctx, WS_MAX_MSG);
	*out = ws;
	return 0;
}

void ws_session_free(struct ws_session *ws)
{
	if (!ws)
		return;
	wslay_event_context_free(ws->ctx);
	free(ws);
}

int ws_session_read(struct ws_session *ws)
{
	return wslay_event_recv(ws->ctx) ? -1 : 0;
}

int ws_session_write(struct ws_session *ws)
{
	return wslay_event_send(ws->ctx) ? -1 : 0;
}

int ws_session_send(struct ws_session *ws, bool text, const void *data, size_t len)
{
	struct wslay_event_msg m = { .opcode = text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
				     .msg = data, .msg_length = len };

	return wslay_event_queue_msg(ws->ctx, &m) ? -1 : 0;
}

void ws_session_ping(struct ws_session *ws)
{
	struct wslay_event_msg m = { .opcode = WSLAY_PING, .msg = (const uint8_t *)"", .msg_length = 0 };

	(void)wslay_event_queue_msg(ws->ctx, &m);
}

void ws_session_close(struct ws_session *ws, uint16_t code, const char *reason)
{
	size_t n = reason ? strlen(reason) : 0;

	/* Fails only when a close is already queued or sent: that one stands. */
	(void)wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, MIN(n, (size_t)123));
}

size_t ws_session_queued(struct ws_session *ws)
{
	return wslay_event_get_queued_msg_length(ws->ctx);
}

bool ws_session_backlogged(struct ws_session *ws)
{
	return wslay_event_get_queued_msg_length(ws->ctx) >= WS_BACKLOG_BYTES ||
	       wslay_event_get_queued_msg_count(ws->ctx) >= WS_BACKLOG_MSGS;
}

bool ws_session_want_read(struct ws_session *ws)
{
	return wslay_event_want_read(ws->ctx);
}

bool ws_session_want_write(struct ws_session *ws)
{
	return wslay_event_want_write(ws->ctx);
}

bool ws_session_closing(struct ws_session *ws)
{
	return wslay_event_get_close_sent(ws->ctx);
}

bool ws_session_done(struct ws_session *ws)
{
	return !wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx);
}
