/* ws_console.c: GET /v1/vms/{name}/console/ws, a VM's serial console over
 * a WebSocket (docs/web.md, "Console over WebSocket"), and GET
 * /v1/events/ws, the event stream as one. The request was
 * authenticated and its role checked like every route's (server.c, on the
 * headers); here the handshake is checked, the console's stream opened and
 * the connection answered 101, then handed to the WebSocket loop
 * (ws_loop.c). */
#include <stdio.h>
#include <string.h>

#include "api_priv.h"
#include "vmdef.h"
#include "ws.h"
#include "ws_session.h"

bool api_ws_origin_allowed(struct api_request *r)
{
	/* A browser sends its cookies with a cross-site WebSocket handshake
	 * too (SameSite aside), and nothing like CORS stops the page that made
	 * it from reading the answer ("cross-site WebSocket hijacking"): one
	 * the session cookie authenticated must come from this server's own
	 * origin. Bearer-token and Unix-socket callers have no ambient
	 * credential: their Origin is not checked. */
	return !r->by_cookie || api_origin_ok(r->c, r->tls);
}

static enum MHD_Result refuse(struct api_request *r, const char *field, const char *why)
{
	char msg[256];
	char *s;
	json_t *o;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	/* A wrong version names the one spoken (RFC 6455 4.4). */
	if (strcmp(field, "Sec-WebSocket-Version"))
		return api_fail(r->c, 400, field, "%s", why);
	snprintf(msg, sizeof(msg), "%s: %s", field, why);
	o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", field, "reason", why, "message", msg);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Sec-WebSocket-Version", "13");
	ret = MHD_queue_response(r->c, 400, resp);
	MHD_destroy_response(resp);
	return ret;
}

static const char *header(struct api_request *r, const char *key)
{
	return MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, key);
}

/* The handshake's headers, the Origin, room in the loop: 0 with accept
 * filled, or -1 with the refusal queued in *res. */
static int ws_begin(struct api_request *r, char accept[32], enum MHD_Result *res)
{
	const char *field, *why;

	if (ws_handshake_check(header(r, "Upgrade"), header(r, "Connection"),
			       header(r, "Sec-WebSocket-Version"), header(r, "Sec-WebSocket-Key"),
			       accept, &field, &why)) {
		*res = refuse(r, field, why);
		return -1;
	}
	if (!api_ws_origin_allowed(r)) {
		*res = api_fail(r->c, 403, "Origin", "a WebSocket authenticated by the session "
				"cookie must come from this server's own pages");
		return -1;
	}
	if (!r->api || !ws_api_loop(r->api) || ws_loop_full(ws_api_loop(r->api))) {
		*res = api_fail(r->c, 503, "", "too many WebSocket connections (at most %d); try "
				"again later", WS_MAX_CONNS);
		return -1;
	}
	return 0;
}

/* The owner's GET /v1/vms/{name}/console (history, then follow), over the
 * pool's mutual TLS (pool/forward_stream.c), becomes the socket's output;
 * the owner refusing it (or not answering) refuses the handshake with its
 * answer, and past the forwarded-stream limit it is a 503. */
static enum MHD_Result ws_console_forward(struct api_request *r, const char *name,
					  long long history, const char *host, const char *addr,
					  const char accept[32])
{
	struct sup_fwd_req req = { .method = "GET", .stream = true, .role = r->role, .who = r->who };
	struct sup_stream *st = NULL;
	struct ws_pending *p;
	json_t *reply = NULL;
	struct cerr e = { 0 };
	char path[128 + VMDEF_NAME_MAX];
	long status = 0;

	snprintf(path, sizeof(path), "/v1/vms/%s/console?history=%lld&follow=true", name, history);
	req.path = path;
	if (sup_pool_forward_raw(r->sup, host, addr, &req, &status, &reply, &st, &e))
		return api_reply_error(r->c, &e);
	if (!st) {
		if (status < 200 || status > 599 || status == 200)
			status = 502;
		return api_reply_json(r->c, (unsigned)status, reply);
	}
	json_decref(reply);
	p = ws_pending_new(st, name, r->role, r->who, false);
	if (!p) {
		sup_stream_close(st);
		return api_fail(r->c, 500, "", "out of memory");
	}
	ws_pending_forward(p, host, addr);
	return api_reply_upgrade(r, accept, p);
}

enum MHD_Result h_console_ws(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct sup_stream *st = NULL;
	struct ws_pending *p;
	struct cerr e = { 0 };
	long long history = 65536;
	char accept[32], host[64], addr[256];

	(void)arg;
	if (ws_begin(r, accept, &res))
		return res;
	if (api_query_int(r, "history", 0, 1 << 30, &history, &res))
		return res;
	/* A VM another pool host runs: its console is forwarded there. */
	if (sup_pool_forward_target(r->sup, name, host, sizeof(host), addr, sizeof(addr)))
		return ws_console_forward(r, name, history, host, addr, accept);
	if (sup_console_open(r->sup, name, (size_t)history, true, &st, &e))
		return api_reply_error(r->c, &e);
	p = ws_pending_new(st, name, r->role, r->who, false);
	if (!p) {
		sup_stream_close(st);
		return api_fail(r->c, 500, "", "out of memory");
	}
	return api_reply_upgrade(r, accept, p);
}

enum MHD_Result h_events_ws(struct api_request *r, const char *name, int arg)
{
	const char *vm = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "vm");
	enum MHD_Result res = MHD_NO;
	struct sup_stream *st;
	struct ws_pending *p;
	long long since = -1;
	char accept[32];

	(void)name;
	(void)arg;
	if (ws_begin(r, accept, &res))
		return res;
	/* As GET /v1/events?follow=true (host.c). */
	if (api_query_int(r, "since", 0, (long long)1 << 62, &since, &res))
		return res;
	if (vm && !vmdef_name_valid(vm))
		return api_fail(r->c, 400, "vm", "not a valid VM name");
	if (sup_events_open(r->sup, since, vm, true, &st))
		return api_fail(r->c, 500, "", "out of memory");
	p = ws_pending_new(st, "events", r->role, r->who, true);
	if (!p) {
		sup_stream_close(st);
		return api_fail(r->c, 500, "", "out of memory");
	}
	return api_reply_upgrade(r, accept, p);
}
