/* server.c: HTTP request plumbing for cellad: listeners, body collection,
 * routing (404 for unknown routes, 405 for wrong methods), bearer-token
 * checks on TCP (on the headers, before any body is read), strict framing
 * (RFC 9112: Content-Length with Transfer-Encoding, or two different
 * Content-Lengths, are refused; so are control characters in the decoded
 * path), timeouts and per-client connection limits, JSON responses and
 * errors, streamed responses. */
#include "api.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api_priv.h"
#include "log.h"
#include "unixsock.h"
#include "ws.h"

struct listener {
	struct api *api;
	bool need_token;
	bool tls;           /* HTTPS (the TCP listener); the loopback one is plain HTTP */
	struct MHD_Daemon *d;
};

struct api {
	struct api_conf conf;
	struct sup *sup;
	struct listener unix_l, tcp_l, http_l;
	struct auth *auth; /* the web console's users and sessions */
	/* Streams, parked or not (stream_ctx), and the ticker that resumes them;
	 * requests whose handler runs on its own thread, counted. */
	pthread_mutex_t st_lock;
	pthread_cond_t st_cond;
	struct stream_ctx *streams;
	bool stopping;
	pthread_t ticker;
	bool ticker_started;
	unsigned handlers; /* (st_lock) handler threads running */
	char *cert_pem, *key_pem, *ca_pem; /* TCP's TLS material, read at start */
	int ui_dirfd;                      /* conf.ui_dir (O_PATH), or -1 */
	struct ws_loop *ws;                /* every WebSocket's one thread (ws.h) */
};

struct req {
	char *body;
	size_t len;
	bool too_big;
	bool refused;       /* answered on the headers (400, 401, 403): the body is dropped */
	enum role role; /* the caller's, from its identity */
	bool dispatched;    /* its handler runs (or ran) on a thread of its own */
	enum MHD_Result result; /* what the handler returned */
	struct api_request ar;  /* the handler's request (lives with the connection) */
	bool peer;          /* TCP: a certificate of the peers' CA */
	bool forwarded;     /* TCP: from a pool host, with the caller's role */
	struct ws_pending *ws; /* a WebSocket handshake answered, not yet upgraded */
	bool by_cookie;     /* TCP: a session cookie gave the role (sid, session) */
	char sid[AUTH_SID_LEN + 1];
	struct auth_session session;
	char who[96];
	/* streamed uploads */
	bool upload, up_opened, up_failed;
	int up_fd;
	uint64_t up_bytes, up_max;
	struct cerr up_err;
};

/* Responses ---------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Server", "cellad/0.1.0");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result api_reply_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct MHD_Response *r;
	size_t len;

	json_decref(body);
	if (!s)
		return queue(c, status, MHD_create_response_from_buffer(0, (void *)"",
									 MHD_RESPMEM_PERSISTENT));
	len = strlen(s);
	s = realloc(s, len + 2);
	if (!s)
		return MHD_NO;
	s[len++] = '\n';
	s[len] = 0;
	r = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
	if (r)
		MHD_add_response_header(r, "Content-Type", "application/json");
	return queue(c, status, r);
}

enum MHD_Result api_reply_error(struct MHD_Connection *c, const struct cerr *e)
{
	json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", e->field, "reason", e->reason,
			      "message", "");
	json_t *err = json_object_get(o, "error");
	char msg[512];

	snprintf(msg, sizeof(msg), "%s%s%s", e->field, e->field[0] ? ": " : "", e->reason);
	json_object_set_new(err, "message", json_string(msg));
	if (e->state[0])
		json_object_set_new(err, "state", json_string(e->state));
	return api_reply_json(c, api_http_status(e->kind), o);
}

enum MHD_Result api_fail(struct MHD_Connection *c, int http, const char *field, const char *fmt,
			 ...)
{
	json_t *o;
	char reason[384], msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	field = field ? field : "";
	snprintf(msg, sizeof(msg), "%s%s%s", field, field[0] ? ": " : "", reason);
	o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", field, "reason", reason, "message",
		      msg);
	return api_reply_json(c, (unsigned)http, o);
}

enum MHD_Result api_reply_text(struct MHD_Connection *c, unsigned status, char *text,
			       const char *type)
{
	struct MHD_Response *r;

	if (!text)
		return api_fail(c, 500, "", "out of memory");
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (r)
		MHD_add_response_header(r, "Content-Type", type);
	return queue(c, status, r);
}

/* Streams (console, events) hold no thread: with nothing to send, the
 * content reader parks its connection (MHD_suspend_connection) and arms a
 * wake; new output, an event, the VM's end or cellad stopping resumes it.
 * A ticker resumes parked streams every STREAM_TICK_S too, for the events'
 * heartbeat and to notice clients that left (MHD does not watch a parked
 * socket). */
#define STREAM_TICK_S      5
#define STREAM_HEARTBEAT_S 15

struct stream_ctx {
	struct api *api;
	struct MHD_Connection *c;
	struct sup_stream *r;
	int fd;             /* the client's socket, to notice it leaving */
	bool heartbeat;     /* events: "\n" after STREAM_HEARTBEAT_S of silence */
	time_t last;        /* CLOCK_MONOTONIC seconds of the last bytes sent */
	struct stream_ctx *next; /* api->streams (api->st_lock) */
};

static time_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* The core (or the ticker) says there may be more: resume the connection
 * the reader parked. Called exactly once per arm. */
static void stream_wake(void *arg)
{
	struct stream_ctx *sc = arg;

	MHD_resume_connection(sc->c);
}

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_ctx *sc = cls;
	struct pollfd p = { .fd = sc->fd, .events = POLLRDHUP };
	ssize_t n;

	(void)pos;
	if (sc->fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = sup_stream_read(sc->r, buf, max, 0);
	if (n > 0) {
		sc->last = mono_s();
		return n;
	}
	if (n < 0) /* -2: a forwarded stream's owner broke it off: so does this one */
		return n == -2 ? MHD_CONTENT_READER_END_WITH_ERROR
			       : MHD_CONTENT_READER_END_OF_STREAM;
	if (sc->heartbeat && mono_s() - sc->last >= STREAM_HEARTBEAT_S) {
		sc->last = mono_s();
		buf[0] = '\n';
		return 1;
	}
	/* Nothing now: park until woken. Data that came between the read and
	 * the arm makes arm fail: resume at once then. */
	MHD_suspend_connection(sc->c);
	if (!sup_stream_arm(sc->r))
		MHD_resume_connection(sc->c);
	return 0;
}

static void stream_free(void *cls)
{
	struct stream_ctx *sc = cls;

	pthread_mutex_lock(&sc->api->st_lock);
	for (struct stream_ctx **pp = &sc->api->streams; *pp; pp = &(*pp)->next) {
		if (*pp == sc) {
			*pp = sc->next;
			break;
		}
	}
	pthread_mutex_unlock(&sc->api->st_lock);
	sup_stream_close(sc->r);
	free(sc);
}

/* Resume every parked stream (heartbeats, clients that left, stopping). */
static void streams_tick(struct api *a)
{
	pthread_mutex_lock(&a->st_lock);
	for (struct stream_ctx *sc = a->streams; sc; sc = sc->next)
		if (sup_stream_disarm(sc->r))
			MHD_resume_connection(sc->c);
	pthread_mutex_unlock(&a->st_lock);
}

static void *ticker_main(void *opaque)
{
	struct api *a = opaque;

	pthread_mutex_lock(&a->st_lock);
	while (!a->stopping) {
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += STREAM_TICK_S;
		pthread_cond_timedwait(&a->st_cond, &a->st_lock, &dl);
		if (a->stopping)
			break;
		pthread_mutex_unlock(&a->st_lock);
		streams_tick(a);
		pthread_mutex_lock(&a->st_lock);
	}
	pthread_mutex_unlock(&a->st_lock);
	return NULL;
}

enum MHD_Result api_reply_stream(struct api_request *req, struct sup_stream *r, bool events,
				 const char *type)
{
	struct MHD_Connection *c = req->c;
	struct stream_ctx *sc = calloc(1, sizeof(*sc));
	const union MHD_ConnectionInfo *ci;
	struct MHD_Response *resp;

	if (!sc) {
		sup_stream_close(r);
		return MHD_NO;
	}
	sc->r = r;
	sc->c = c;
	sc->api = req->api;
	sc->heartbeat = events;
	sc->last = mono_s();
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	sc->fd = ci ? ci->connect_fd : -1;
	sup_stream_set_wake(r, stream_wake, sc);
	pthread_mutex_lock(&sc->api->st_lock);
	sc->next = sc->api->streams;
	sc->api->streams = sc;
	pthread_mutex_unlock(&sc->api->st_lock);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_cb, sc,
						 stream_free);
	if (!resp) {
		stream_free(sc);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	return queue(c, 200, resp);
}

/* WebSockets: MHD sends the 101, then hands over the socket here (on its
 * event loop); the WebSocket loop takes it from there. */
static void upgraded(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
		     size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct api *a = cls;
	struct req *rq = con_cls;
	struct ws_pending *p = rq->ws;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
								    MHD_CONNECTION_INFO_CONNECTION_FD);
	int one = 1;

	/* MHD leaves Nagle on for an upgraded TCP connection: a console's
	 * keystrokes and echoes are small writes that would each wait for the
	 * client's delayed ACK (about 40 ms). Not TCP (Unix socket): no-op. */
	if (ci)
		(void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rq->ws = NULL;
	/* After ws_loop_stop (cellad stopping), the loop closes it at once. */
	ws_loop_adopt(a->ws, p, sock, urh, extra, extra_len);
}

enum MHD_Result api_reply_upgrade(struct api_request *r, const char *accept,
				  struct ws_pending *p)
{
	struct req *rq = container_of(r, struct req, ar);
	struct MHD_Response *resp = MHD_create_response_for_upgrade(upgraded, r->api);

	if (!resp) {
		ws_pending_free(p);
		return MHD_NO;
	}
	rq->ws = p; /* on_completed frees it if the upgrade never happens */
	MHD_add_response_header(resp, "Connection", "Upgrade");
	MHD_add_response_header(resp, "Upgrade", "websocket");
	MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
	return queue(r->c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
}

struct ws_loop *ws_api_loop(struct api *a)
{
	return a->ws;
}

/* Requests ----------------------------------------------------------- */

static enum MHD_Result reply_401(struct MHD_Connection *c)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *s = strdup("{\"error\":{\"field\":\"Authorization\",\"reason\":\"a valid bearer "
			 "token is required\",\"message\":\"Authorization: a valid bearer "
			 "token is required\"}}\n");

	if (!s)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"cellad\"");
	ret = MHD_queue_response(c, 401, r);
	MHD_destroy_response(r);
	return ret;
}

/* This host's IPv4 address on the connection (the address a peer reached
 * us at), or "" (Unix socket). */
static void local_address(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
								    MHD_CONNECTION_INFO_CONNECTION_FD);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	out[0] = 0;
	if (ci && getsockname(ci->connect_fd, (struct sockaddr *)&sin, &sl) == 0 &&
	    sin.sin_family == AF_INET)
		inet_ntop(AF_INET, &sin.sin_addr, out, (socklen_t)len);
}

/* The client's address ("" on the Unix socket): failed logins count
 * against it. */
static void client_address(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
								    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	out[0] = 0;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
}

/* One chunk of a streamed upload: into its file, never into memory. The
 * file is opened with the first chunk (after the token check). */
static void upload_chunk(struct listener *l, struct MHD_Connection *c, struct req *rq,
			 const char *url, const char *data, size_t n)
{
	if (rq->up_failed)
		return;
	if (!rq->up_opened) {
		struct api_request ar = { .c = c, .url = url, .method = "PUT", .sup = l->api->sup,
					  .upload_fd = -1 };

		rq->up_opened = true;
		if (api_upload_open(&ar, &rq->up_fd, &rq->up_max, &rq->up_err)) {
			rq->up_failed = true;
			return;
		}
	}
	if (rq->up_bytes + n > rq->up_max) {
		cerr_set(&rq->up_err, CERR_TOO_LARGE, "", "upload larger than the %llu bytes expected",
			 (unsigned long long)rq->up_max);
		rq->up_failed = true;
		return;
	}
	while (n) {
		ssize_t w = write(rq->up_fd, data, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			cerr_set(&rq->up_err, CERR_NO_SPACE, "", "cannot write the upload: %s",
				 strerror(w < 0 ? errno : ENOSPC));
			rq->up_failed = true;
			return;
		}
		data += w;
		n -= (size_t)w;
		rq->up_bytes += (uint64_t)w;
	}
}

/* Framing headers, counted (MHD keeps every header line). */
struct framing {
	unsigned cl, te;
	char cl_first[32];
	bool cl_differ;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (!strcasecmp(key, "Content-Length")) {
		if (!f->cl++)
			snprintf(f->cl_first, sizeof(f->cl_first), "%s", value ? value : "");
		else if (strcmp(f->cl_first, value ? value : ""))
			f->cl_differ = true;
	} else if (!strcasecmp(key, "Transfer-Encoding")) {
		f->te++;
	}
	return MHD_YES;
}

/* Why the request's framing or path is unsafe to act on, or NULL. */
static const char *bad_request(struct MHD_Connection *c, const char *url)
{
	struct framing f = { 0 };

	MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
	if (f.cl && f.te)
		return "Content-Length and Transfer-Encoding together (RFC 9112 6.3)";
	if (f.cl_differ)
		return "several different Content-Length values";
	if (f.te > 1)
		return "several Transfer-Encoding headers";
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return "control characters (or %00) in the path";
	return NULL;
}

/* Percent-decoding of the path and query (MHD's unescape callback): like
 * MHD's own, but %00 becomes 0x01 instead of ending the string early (the
 * path "a%00anything" must not name the VM "a"), and bad_request refuses
 * any control character that decoding produced. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *out = s;

	(void)cls;
	(void)c;
	for (const char *in = s; *in;) {
		if (in[0] == '%' && isxdigit((unsigned char)in[1]) &&
		    isxdigit((unsigned char)in[2])) {
			char hex[3] = { in[1], in[2], 0 };
			unsigned v = (unsigned)strtoul(hex, NULL, 16);

			*out++ = (char)(v ? v : 0x01);
			in += 3;
		} else {
			*out++ = *in++;
		}
	}
	*out = 0;
	return (size_t)(out - s);
}

/* A handler may wait (a worker's answer, a move): it runs on a thread of
 * its own while its connection is parked, so the event loop never blocks.
 * MHD lets a parked connection be given its response from any thread; the
 * resume then sends it. Idle connections and streams hold no thread. */
static void *handler_main(void *opaque)
{
	struct req *rq = opaque;
	struct MHD_Connection *c = rq->ar.c;
	struct api *a = rq->ar.api;

	rq->result = api_route(&rq->ar);
	MHD_resume_connection(c);
	pthread_mutex_lock(&a->st_lock);
	a->handlers--;
	pthread_cond_broadcast(&a->st_cond);
	pthread_mutex_unlock(&a->st_lock);
	return NULL;
}

static enum MHD_Result dispatch(struct api *a, struct req *rq)
{
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	/* A request that comes while the API stops is answered here: MHD must
	 * not stop with a connection parked (a pool create, join or leave
	 * restarts cellad while clients poll it). */
	pthread_mutex_lock(&a->st_lock);
	if (a->stopping) {
		pthread_mutex_unlock(&a->st_lock);
		return api_fail(rq->ar.c, 503, "", "cellad is stopping; try again");
	}
	a->handlers++;
	pthread_mutex_unlock(&a->st_lock);
	rq->dispatched = true;
	MHD_suspend_connection(rq->ar.c);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&t, &attr, handler_main, rq);
	pthread_attr_destroy(&attr);
	if (ret) {
		/* No thread: answer here, on the event loop. */
		log_warn("api: no thread for a request (%s); answering inline", strerror(ret));
		pthread_mutex_lock(&a->st_lock);
		a->handlers--;
		pthread_mutex_unlock(&a->st_lock);
		rq->result = api_route(&rq->ar);
		MHD_resume_connection(rq->ar.c);
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct listener *l = cls;
	struct req *rq = *con_cls;

	(void)version;
	if (!rq) {
		const char *bad = bad_request(c, url);

		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->up_fd = -1;
		rq->upload = api_is_upload(method, url);
		*con_cls = rq;
		/* Refused on the headers: no body is read, and MHD closes the
		 * connection after the answer (the body was not consumed). */
		if (bad) {
			rq->refused = true;
			return api_fail(c, 400, "", "%s", bad);
		}
		rq->role = api_identify(&l->api->conf, c, l->need_token, &rq->peer, rq->who,
					sizeof(rq->who));
		if (l->need_token) {
			enum role fr;
			int f = api_identify_forwarded(c, l->api->sup, &fr, rq->who,
						       sizeof(rq->who));

			if (f < 0) {
				rq->refused = true;
				return api_fail(c, 403, "certificate", "%s %.200s: a forwarded request "
						"needs a certificate of a host in this pool", method,
						url);
			}
			if (f > 0) {
				rq->role = fr;
				rq->forwarded = true;
			}
		}
		/* The web console: a session cookie where no bearer token was
		 * sent; what it authenticates must not be forged cross-site. */
		if (l->need_token && rq->role == ROLE_NONE && !rq->forwarded &&
		    !MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")) {
			int ck = api_session_identify(l->api->auth, c, rq->sid, &rq->session);

			if (ck < 0) {
				rq->refused = true;
				return api_fail(c, 400, "Cookie", "cella_session: expected %d "
						"base64url characters", AUTH_SID_LEN);
			}
			if (ck > 0) {
				rq->by_cookie = true;
				rq->role = rq->session.role;
				snprintf(rq->who, sizeof(rq->who), "session of %.64s",
					 rq->session.user);
			}
		}
		if (rq->by_cookie && api_method_changes(method) && !api_origin_ok(c, l->tls)) {
			rq->refused = true;
			return api_fail(c, 403, "Origin", "%s %.200s with a session cookie needs "
					"this server's own Origin (cross-site request refused)",
					method, url);
		}
		if (l->need_token && rq->role == ROLE_NONE && !api_route_public(method, url)) {
			rq->refused = true;
			return reply_401(c);
		}
		{
			enum role need = api_route_role(method, url);

			if (rq->role < need) {
				rq->refused = true;
				return api_fail(c, 403, "role", "%s %.200s needs the %s role; %s has %s",
						method, url, role_name(need), rq->who,
						role_name(rq->role));
			}
			if (l->need_token && !rq->peer && api_route_peer_only(method, url)) {
				rq->refused = true;
				return api_fail(c, 403, "certificate", "%s %.200s is for peer hosts: "
						"it needs a certificate of this pool's CA (mutual "
						"TLS)", method, url);
			}
		}
		return MHD_YES;
	}
	if (rq->refused) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->upload && *upload_size) {
		upload_chunk(l, c, rq, url, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->too_big && rq->len + *upload_size <= l->api->conf.max_body) {
			char *nb = realloc(rq->body, rq->len + *upload_size + 1);

			if (!nb)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->len, upload, *upload_size);
			rq->len += *upload_size;
			rq->body[rq->len] = 0;
		} else {
			rq->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->upload && rq->up_failed) {
		/* The partial file stays until the move commits or aborts. */
		if (rq->up_fd >= 0)
			api_upload_failed(l->api->sup, url, rq->up_fd, &rq->up_err);
		rq->up_fd = -1;
		return api_reply_error(c, &rq->up_err);
	}
	if (rq->too_big)
		return api_fail(c, 413, "", "request body larger than %zu bytes",
				l->api->conf.max_body);
	if (rq->dispatched) /* resumed without a response: the handler failed */
		return rq->result;
	rq->ar = (struct api_request){ .c = c, .role = rq->role, .url = url, .method = method,
				       .body = rq->body, .len = rq->len, .sup = l->api->sup,
				       .upload_fd = rq->up_fd, .upload_bytes = rq->up_bytes,
				       .ui_dirfd = l->api->ui_dirfd, .api = l->api };
	snprintf(rq->ar.who, sizeof(rq->ar.who), "%s", rq->who);
	rq->ar.forwarded = rq->forwarded;
	rq->ar.auth = l->api->auth;
	rq->ar.conf = &l->api->conf;
	rq->ar.tls = l->tls;
	rq->ar.by_cookie = rq->by_cookie;
	memcpy(rq->ar.sid, rq->sid, sizeof(rq->sid));
	rq->ar.session = rq->session;
	client_address(c, rq->ar.client_addr, sizeof(rq->ar.client_addr));
	rq->up_fd = -1; /* the handler closes it */
	local_address(c, rq->ar.local_addr, sizeof(rq->ar.local_addr));
	return dispatch(l->api, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *rq = *con_cls;
	struct listener *l = cls;

	(void)c;
	(void)toe;
	if (rq && rq->ar.restart && l->api->conf.on_restart)
		l->api->conf.on_restart();
	if (rq) {
		if (rq->up_fd >= 0) /* an upload cut short: nobody finished it */
			close(rq->up_fd);
		ws_pending_free(rq->ws); /* a 101 that was never sent */
		free(rq->body);
		free(rq);
	}
	*con_cls = NULL;
}

static int api_unix_listen(const struct api_conf *conf)
{
	int fd = unix_listen(conf->socket_path, 64, 0660);

	if (fd < 0) {
		log_err("socket %s: %s", conf->socket_path, strerror(-fd));
		return fd;
	}
	if (conf->socket_group && conf->socket_group[0]) {
		struct group *g = getgrnam(conf->socket_group);

		if (!g)
			log_warn("group '%s' does not exist: %s stays root-only", conf->socket_group,
				 conf->socket_path);
		else if (chown(conf->socket_path, (uid_t)-1, g->gr_gid) < 0)
			log_warn("chown %s: %s", conf->socket_path, strerror(errno));
	}
	return fd;
}


static struct MHD_Daemon *start_mhd(struct listener *l, int fd, const struct sockaddr_in *sin,
				    unsigned port)
{
	/* One event loop per listener; handlers get a thread each while they
	 * run (dispatch), streams none. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;

	if (fd >= 0)
		return MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
					MHD_OPTION_LISTEN_SOCKET, fd,
					MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
					MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
					MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
	if (!l->tls) /* the loopback listener: plain HTTP, tokens or cookies */
		return MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, l,
					MHD_OPTION_SOCK_ADDR, sin, MHD_OPTION_NOTIFY_COMPLETED,
					on_completed, l, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
					MHD_OPTION_CONNECTION_LIMIT, 1000u,
					MHD_OPTION_CONNECTION_TIMEOUT, l->api->conf.tcp_idle_timeout_s,
					MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->api->conf.tcp_per_client,
					MHD_OPTION_END);
	/* TCP: HTTPS with TLS 1.3 only. The CA is trusted for client
	 * certificates: MHD then asks for one, and identity.c verifies it
	 * (peer hosts present theirs; other clients have none). */
	return MHD_start_daemon(flags | MHD_USE_TLS, (uint16_t)port, NULL, NULL, on_request, l,
				MHD_OPTION_HTTPS_MEM_CERT, l->api->cert_pem,
				MHD_OPTION_HTTPS_MEM_KEY, l->api->key_pem,
				MHD_OPTION_HTTPS_MEM_TRUST, l->api->ca_pem,
				MHD_OPTION_HTTPS_PRIORITIES, "NORMAL:-VERS-ALL:+VERS-TLS1.3",
				MHD_OPTION_SOCK_ADDR, sin, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
				l, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
				MHD_OPTION_CONNECTION_LIMIT, 1000u,
				/* A silent connection (a half-sent header too) is
				 * closed; one address holds only so many. */
				MHD_OPTION_CONNECTION_TIMEOUT, l->api->conf.tcp_idle_timeout_s,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->api->conf.tcp_per_client,
				MHD_OPTION_END);
}

/* A PEM file's text (malloc'd), or NULL. */
static char *read_pem(const char *path)
{
	FILE *f = path ? fopen(path, "re") : NULL;
	char *buf = NULL;
	size_t len = 0, n;

	if (!f)
		return NULL;
	for (;;) {
		char *nb = realloc(buf, len + 4097);

		if (!nb || len > (1u << 20)) {
			free(nb ? nb : buf);
			fclose(f);
			return NULL;
		}
		buf = nb;
		n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

int api_start(struct api **out, const struct api_conf *conf, struct sup *s)
{
	struct api *a = calloc(1, sizeof(*a));
	int fd;

	if (!a)
		return -ENOMEM;
	a->conf = *conf;
	a->sup = s;
	a->ui_dirfd = -1;
	pthread_mutex_init(&a->st_lock, NULL);
	pthread_cond_init(&a->st_cond, NULL);
	if (pthread_create(&a->ticker, NULL, ticker_main, a) == 0)
		a->ticker_started = true;
	if (ws_loop_start(&a->ws, s))
		log_warn("api: no WebSocket loop: console WebSockets are refused (503)");
	if (conf->ui_dir) {
		a->ui_dirfd = open(conf->ui_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (a->ui_dirfd < 0) {
			log_err("ui_dir %s: %s", conf->ui_dir, strerror(errno));
			ws_loop_stop(a->ws);
			ws_loop_free(a->ws);
			free(a);
			return -EINVAL;
		}
	}
	a->unix_l.api = a->tcp_l.api = a->http_l.api = a;
	{
		struct auth_conf ac = { .users_db = conf->users_db,
					.session_ttl_s = conf->session_ttl_s,
					.login_per_minute = conf->login_per_minute };
		char err[256];
		int ret = auth_open(&a->auth, &ac, err, sizeof(err));

		if (ret) {
			log_err("web console users: %s", err);
			ws_loop_stop(a->ws);
			ws_loop_free(a->ws);
			free(a);
			return ret;
		}
	}
	fd = api_unix_listen(conf);
	if (fd < 0) {
		ws_loop_stop(a->ws);
		ws_loop_free(a->ws);
		auth_close(a->auth);
		free(a);
		return fd;
	}
	a->unix_l.d = start_mhd(&a->unix_l, fd, NULL, 0);
	if (!a->unix_l.d) {
		log_err("cannot start the HTTP server on %s", conf->socket_path);
		close(fd);
		ws_loop_stop(a->ws);
		ws_loop_free(a->ws);
		auth_close(a->auth);
		free(a);
		return -EIO;
	}
	if (conf->tcp_address) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)conf->tcp_port) };

		if (!conf->token || strlen(conf->token) < 16) {
			log_err("TCP listener needs a bearer token of at least 16 characters");
			api_stop(a);
			return -EINVAL;
		}
		if (inet_pton(AF_INET, conf->tcp_address, &sin.sin_addr) != 1) {
			log_err("tcp_address: '%s' is not an IPv4 address", conf->tcp_address);
			api_stop(a);
			return -EINVAL;
		}
		a->tcp_l.need_token = a->tcp_l.tls = true;
		a->cert_pem = read_pem(conf->tls_cert);
		a->key_pem = read_pem(conf->tls_key);
		a->ca_pem = read_pem(conf->tls_ca);
		if (!a->cert_pem || !a->key_pem || !a->ca_pem) {
			log_err("the TCP API needs TLS: cannot read %s, %s or %s",
				conf->tls_cert ?: "(no certificate)", conf->tls_key ?: "(no key)",
				conf->tls_ca ?: "(no CA)");
			api_stop(a);
			return -EINVAL;
		}
		a->tcp_l.d = start_mhd(&a->tcp_l, -1, &sin, conf->tcp_port);
		if (!a->tcp_l.d) {
			log_err("cannot listen on %s:%u", conf->tcp_address, conf->tcp_port);
			api_stop(a);
			return -EIO;
		}
	}
	if (conf->http_loopback_port) {
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_port = htons((uint16_t)conf->http_loopback_port),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		if (!conf->token || strlen(conf->token) < 16) {
			log_err("http_loopback_port needs the TCP bearer token (tcp.token_file)");
			api_stop(a);
			return -EINVAL;
		}
		a->http_l.need_token = true;
		a->http_l.d = start_mhd(&a->http_l, -1, &sin, conf->http_loopback_port);
		if (!a->http_l.d) {
			log_err("cannot listen on 127.0.0.1:%u", conf->http_loopback_port);
			api_stop(a);
			return -EIO;
		}
	}
	*out = a;
	return 0;
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	/* MHD must not stop with parked connections: let running handlers
	 * finish (they resume theirs), end the streams (the core is quiescing:
	 * a resumed stream reads its end). */
	pthread_mutex_lock(&a->st_lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->st_cond);
	while (a->handlers)
		pthread_cond_wait(&a->st_cond, &a->st_lock);
	pthread_mutex_unlock(&a->st_lock);
	if (a->ticker_started)
		pthread_join(a->ticker, NULL);
	streams_tick(a);
	/* WebSockets are closed (1001) before MHD stops: it must not find
	 * upgraded connections still open. */
	ws_loop_stop(a->ws);
	if (a->http_l.d)
		MHD_stop_daemon(a->http_l.d);
	if (a->tcp_l.d)
		MHD_stop_daemon(a->tcp_l.d);
	if (a->unix_l.d)
		MHD_stop_daemon(a->unix_l.d);
	ws_loop_free(a->ws);
	unlink(a->conf.socket_path);
	if (a->ui_dirfd >= 0)
		close(a->ui_dirfd);
	free(a->cert_pem);
	if (a->key_pem)
		explicit_bzero(a->key_pem, strlen(a->key_pem));
	free(a->key_pem);
	free(a->ca_pem);
	auth_close(a->auth);
	free(a);
}
