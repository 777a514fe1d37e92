/* ws_loop.c: the one thread that serves every WebSocket of this cellad
 * (ws.h). Each connection is an upgraded socket in an epoll set, a
 * ws_session for its protocol, and the VM's console stream, read when its
 * wake (sup_stream_set_wake) says there is more: the wake, run on the
 * core's threads, only flags the connection and writes an eventfd.
 *
 * Backpressure: console output is taken from the VM's stream only while
 * less than WS_OUT_HIGH bytes wait for the client. A slow client leaves
 * the rest in the VM's console ring (console_history_kib), which keeps the
 * newest bytes: one that falls further behind than the ring skips the
 * oldest output, as GET .../console?follow does; memory never grows. */
#include "ws.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "log.h"
#include "sup.h"
#include "vmdef.h"
#include "ws_fwd.h"
#include "ws_session.h"

#define WS_OUT_HIGH    (64u << 10) /* queued output past which the stream is not read */
#define WS_READ_CHUNK  16384       /* one binary message of console output at most */
#define WS_PING_MS     30000       /* a client silent this long is pinged */
#define WS_IDLE_MS     90000       /* and dropped (1001) when silent this long */
#define WS_CLOSE_MS    5000        /* a close not answered in this time: dropped */
#define WS_EVENT_MAX   65536       /* an event line longer than this is skipped */

struct ws_pending {
	struct sup_stream *st;
	bool events;
	enum role role;
	char name[VMDEF_NAME_MAX + 1];
	char who[96];
	/* A VM another pool host runs: st is the owner's console, forwarded;
	 * input goes there through the loop's ws_fwd. */
	char fwd_host[64], fwd_addr[256];
};

struct ws_conn {
	struct ws_loop *loop;
	struct ws_pending p;
	uint64_t id;               /* for ws_fwd's failures: the conn may be gone */
	int fd;
	struct MHD_UpgradeResponseHandle *urh;
	struct ws_session *ws;
	char *extra;               /* bytes MHD read past the headers, served first */
	size_t extra_len, extra_off;
	atomic_bool woken;         /* set by the stream's wake (core threads) */
	bool armed;                /* a wake is armed: nothing to read until it comes */
	bool ended;                /* the stream ended: the close is queued */
	bool in_epoll;
	uint32_t ep_events;
	uint64_t last_rx, close_by; /* monotonic ms */
	bool pinged;
	/* A close waiting for the output queued before it: wslay sends control
	 * frames ahead of data, and nothing after a close. */
	uint16_t close_code;
	char close_reason[124];
	/* Events: the line being gathered (one JSON event per text message). */
	char *line;
	size_t line_len;
	bool line_skip; /* past WS_EVENT_MAX: dropped up to its newline */
	struct ws_conn *next;
};

struct ws_loop {
	struct sup *sup;
	int epfd, evfd;
	pthread_t thread;
	pthread_mutex_t lock;
	struct ws_conn *incoming; /* (lock) handed over, not yet served */
	bool stopping;            /* (lock) */
	unsigned count;           /* (lock) connections held */
	struct ws_conn *conns;    /* served: the loop thread's own */
	uint64_t next_id;         /* the loop thread's own */
	struct ws_fwd *fwd;       /* forwarded input (ws_fwd.h) */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void kick(struct ws_loop *l)
{
	uint64_t one = 1;

	/* Fails only when the counter is full: the loop is awake then. */
	(void)!write(l->evfd, &one, sizeof(one));
}

static void loop_kick(void *arg)
{
	kick(arg);
}

/* The stream's wake: on the core's threads with their locks held. */
static void conn_wake(void *arg)
{
	struct ws_conn *c = arg;

	atomic_store(&c->woken, true);
	kick(c->loop);
}

/* The session's I/O and messages -------------------------------------- */

static ssize_t conn_recv(void *owner, void *buf, size_t len)
{
	struct ws_conn *c = owner;
	ssize_t n;

	if (c->extra_off < c->extra_len) {
		n = (ssize_t)MIN(len, c->extra_len - c->extra_off);
		memcpy(buf, c->extra + c->extra_off, (size_t)n);
		c->extra_off += (size_t)n;
	} else {
		n = recv(c->fd, buf, len, MSG_DONTWAIT);
	}
	if (n > 0) {
		c->last_rx = mono_ms();
		c->pinged = false;
	}
	return n;
}

static ssize_t conn_send(void *owner, const void *buf, size_t len)
{
	struct ws_conn *c = owner;

	return send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* An error for the client, as a text message with the API's error JSON;
 * the connection stays. */
static void conn_error(struct ws_conn *c, const char *field, const char *reason)
{
	char msg[512];
	json_t *o;
	char *s;

	if (ws_session_queued(c->ws) >= WS_OUT_HIGH)
		return; /* a client that does not read gets no more of these */
	snprintf(msg, sizeof(msg), "%s%s%s", field, field[0] ? ": " : "", reason);
	o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", field, "reason", reason, "message",
		      msg);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		(void)ws_session_send(c->ws, true, s, strlen(s));
	free(s);
	json_decref(o);
}

static void conn_input(void *owner, const void *data, size_t len)
{
	struct ws_conn *c = owner;
	struct cerr e = { 0 };
	char why[192];

	if (c->p.events) {
		conn_error(c, "", "the event WebSocket takes no input");
		return;
	}
	if (c->p.role < ROLE_OPERATOR) {
		/* Read-only: the input is dropped, the console stays open. */
		snprintf(why, sizeof(why), "console input needs the operator role; %.96s has %s",
			 c->p.who, role_name(c->p.role));
		conn_error(c, "role", why);
		return;
	}
	if (!len)
		return;
	if (c->p.fwd_host[0]) {
		/* To the owner, off this thread; the role was checked above. */
		int ret = ws_fwd_submit(c->loop->fwd, c->id, c->p.fwd_host, c->p.fwd_addr,
					c->p.name, c->p.role, c->p.who, data, len);

		if (ret) {
			snprintf(why, sizeof(why), "%zu bytes of input dropped: %s", len,
				 ret == -ENOSPC ? "too much input waits to be sent to the VM's "
				 "host already" : "cannot forward input now");
			conn_error(c, "", why);
		}
		return;
	}
	if (sup_console_input(c->loop->sup, c->p.name, data, len, &e))
		conn_error(c, e.field, e.reason);
}

static void conn_resize(void *owner, unsigned cols, unsigned rows)
{
	struct ws_conn *c = owner;

	/* A serial console has no size to set: accepted, nothing to do. */
	log_debug("%s: console resize %ux%u (serial: no-op)", c->p.name, cols, rows);
}

static void conn_bad(void *owner, const char *why)
{
	conn_error(owner, "resize", why);
}

static const struct ws_session_ops conn_ops = {
	.recv = conn_recv,
	.send = conn_send,
	.input = conn_input,
	.resize = conn_resize,
	.bad = conn_bad,
};

/* Connections ---------------------------------------------------------- */

static void conn_free(struct ws_conn *c)
{
	if (c->p.st)
		sup_stream_close(c->p.st); /* no wake runs after this */
	ws_session_free(c->ws);
	if (c->urh)
		MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
	free(c->extra);
	free(c->line);
	free(c);
}

static void conn_drop(struct ws_loop *l, struct ws_conn *c)
{
	if (c->in_epoll)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	for (struct ws_conn **pp = &l->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	conn_free(c);
	pthread_mutex_lock(&l->lock);
	l->count--;
	pthread_mutex_unlock(&l->lock);
}

static void conn_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	if (!c->ended && !ws_session_closing(c->ws))
		log_info("%s: %s WebSocket of %s closed: %u %s", c->p.name,
			 c->p.events ? "event" : "console", c->p.who, code, reason);
	c->ended = true;
	if (!c->close_by)
		c->close_by = mono_ms() + WS_CLOSE_MS;
	if (ws_session_want_write(c->ws) && code != WS_CLOSE_GOING_AWAY) {
		/* After the output already queued (conn_service sends it). */
		c->close_code = code;
		snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
		return;
	}
	ws_session_close(c->ws, code, reason);
}

/* The stream ended (n: sup_stream_read's -1 or -2): say why in the close. */
static void conn_ended(struct ws_conn *c, ssize_t n)
{
	struct cerr e = { 0 };
	json_t *vm = NULL;
	char why[120];
	const char *state;

	if (c->p.fwd_host[0]) {
		/* The owner's stream: it ends whole when the VM stops there (or
		 * its cellad stops); it breaks off when the owner is gone. */
		snprintf(why, sizeof(why), n == -2 ? "host %.60s, the VM's host, went away" :
			 "the VM's console on host %.60s ended (the VM stopped)", c->p.fwd_host);
		conn_close(c, n == -2 ? WS_CLOSE_ERROR : WS_CLOSE_NORMAL, why);
		return;
	}
	if (n == -2) {
		conn_close(c, WS_CLOSE_ERROR, "the console's source broke off");
		return;
	}
	if (c->p.events) { /* the event stream ends only with cellad */
		conn_close(c, WS_CLOSE_GOING_AWAY, "cellad is stopping");
		return;
	}
	if (sup_get(c->loop->sup, c->p.name, &vm, &e)) {
		conn_close(c, WS_CLOSE_NORMAL, "the VM was deleted");
		return;
	}
	state = json_string_value(json_object_get(vm, "state"));
	state = state ? state : "gone";
	if (!strcmp(state, "running") || !strcmp(state, "paused") || !strcmp(state, "stopping")) {
		conn_close(c, WS_CLOSE_GOING_AWAY, "cellad is stopping");
	} else {
		snprintf(why, sizeof(why), "the VM is %s", state);
		conn_close(c, WS_CLOSE_NORMAL, why);
	}
	json_decref(vm);
}

/* Events: whole lines become text messages (without their newline). */
static void conn_event_bytes(struct ws_conn *c, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;

		if (!c->line_skip && c->line_len + take <= WS_EVENT_MAX) {
			memcpy(c->line + c->line_len, p, take);
			c->line_len += take;
		} else if (!c->line_skip) {
			log_warn("events WebSocket: an event over %d bytes skipped", WS_EVENT_MAX);
			c->line_skip = true;
		}
		if (!nl)
			return;
		if (!c->line_skip && c->line_len &&
		    ws_session_send(c->ws, true, c->line, c->line_len))
			c->ended = true;
		c->line_len = 0;
		c->line_skip = false;
		p = nl + 1;
		n -= take + 1;
	}
}

/* Move output into the session while the client keeps up. */
static void conn_pump(struct ws_conn *c)
{
	char buf[WS_READ_CHUNK];

	while (!c->armed && !c->ended && ws_session_queued(c->ws) < WS_OUT_HIGH) {
		ssize_t n = sup_stream_read(c->p.st, buf, sizeof(buf), 0);

		if (n > 0 && c->p.events) {
			conn_event_bytes(c, buf, (size_t)n);
		} else if (n > 0) {
			if (ws_session_send(c->ws, false, buf, (size_t)n))
				c->ended = true; /* closing: no more output */
		} else if (n == 0) {
			/* Nothing now: wait for the wake (unless more came meanwhile). */
			if (sup_stream_arm(c->p.st))
				c->armed = true;
		} else {
			conn_ended(c, n);
		}
	}
}

/* Send, pump more while the socket takes it, and watch for what is next.
 * Returns false when the connection is gone. */
static bool conn_service(struct ws_loop *l, struct ws_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };

	for (;;) {
		conn_pump(c);
		if (ws_session_write(c->ws)) {
			conn_drop(l, c);
			return false;
		}
		if (c->close_code && !ws_session_want_write(c->ws)) {
			ws_session_close(c->ws, c->close_code, c->close_reason);
			c->close_code = 0;
			continue;
		}
		/* All sent and the stream may have more (the pump stopped at
		 * WS_OUT_HIGH): go on; else wait for a wake or EPOLLOUT. */
		if (c->armed || c->ended || ws_session_want_write(c->ws) ||
		    !ws_session_want_read(c->ws))
			break;
	}
	if (ws_session_done(c->ws)) {
		conn_drop(l, c);
		return false;
	}
	ev.events = (ws_session_want_read(c->ws) && !ws_session_backlogged(c->ws) ? EPOLLIN : 0) |
		    (ws_session_want_write(c->ws) ? EPOLLOUT : 0);
	if (ev.events != c->ep_events) {
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev)) {
			conn_drop(l, c);
			return false;
		}
		c->ep_events = ev.events;
	}
	return true;
}

static void conn_start(struct ws_loop *l, struct ws_conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	int fl = fcntl(c->fd, F_GETFL);

	c->next = l->conns;
	l->conns = c;
	c->id = ++l->next_id;
	if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) ||
	    epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &ev)) {
		log_warn("%s: console WebSocket: %s", c->p.name, strerror(errno));
		conn_drop(l, c);
		return;
	}
	c->in_epoll = true;
	c->ep_events = EPOLLIN;
	c->last_rx = mono_ms();
	sup_stream_set_wake(c->p.st, conn_wake, c);
	log_info("%s: %s WebSocket of %s (%s) open", c->p.name, c->p.events ? "event" : "console",
		 c->p.who, role_name(c->p.role));
	/* A client may have sent frames with its handshake (extra). */
	if (c->extra_len && ws_session_read(c->ws)) {
		conn_drop(l, c);
		return;
	}
	conn_service(l, c);
}

/* Pings, silent clients, unanswered closes. */
static void conns_tick(struct ws_loop *l, uint64_t now)
{
	struct ws_conn *c = l->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->close_by && now >= c->close_by) {
			conn_drop(l, c);
			continue;
		}
		if (c->ended)
			continue;
		if (now - c->last_rx >= WS_IDLE_MS) {
			conn_close(c, WS_CLOSE_GOING_AWAY, "no answer to pings");
		} else if (now - c->last_rx >= WS_PING_MS && !c->pinged) {
			ws_session_ping(c->ws);
			c->pinged = true;
		} else {
			continue;
		}
		conn_service(l, c);
	}
}

/* A forwarded input's failure, for its connection if it is still here. */
static void conn_fwd_error(void *arg, uint64_t id, const char *msg)
{
	struct ws_loop *l = arg;

	for (struct ws_conn *c = l->conns; c; c = c->next) {
		if (c->id == id && !c->ended) {
			conn_error(c, "", msg);
			conn_service(l, c);
			return;
		}
	}
}

static void loop_stop_conns(struct ws_loop *l)
{
	struct ws_conn *inc;

	while (l->conns) {
		struct ws_conn *c = l->conns;

		conn_close(c, WS_CLOSE_GOING_AWAY, "cellad is stopping");
		if (ws_session_write(c->ws)) /* best effort: the socket goes now */
			log_debug("%s: the close did not go out", c->p.name);
		conn_drop(l, c);
	}
	pthread_mutex_lock(&l->lock);
	inc = l->incoming;
	l->incoming = NULL;
	pthread_mutex_unlock(&l->lock);
	while (inc) {
		struct ws_conn *c = inc;

		inc = c->next;
		conn_free(c);
		pthread_mutex_lock(&l->lock);
		l->count--;
		pthread_mutex_unlock(&l->lock);
	}
}

static void *loop_main(void *arg)
{
	struct ws_loop *l = arg;
	struct epoll_event evs[64];

	for (;;) {
		int n = epoll_wait(l->epfd, evs, ARRAY_SIZE(evs), l->conns ? 1000 : -1);
		struct ws_conn *inc;
		bool stopping;

		for (int i = 0; i < n; i++) {
			struct ws_conn *c = evs[i].data.ptr;

			if (!c) { /* the eventfd: wakes, new connections, stop */
				uint64_t v;

				(void)!read(l->evfd, &v, sizeof(v));
				continue;
			}
			/* A connection dropped earlier in this batch never
			 * reaches here: its events went with EPOLL_CTL_DEL only
			 * for later waits, so check it is still served. */
			bool live = false;

			for (struct ws_conn *x = l->conns; x; x = x->next)
				live |= x == c;
			if (!live)
				continue;
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    ws_session_want_read(c->ws) && ws_session_read(c->ws)) {
				conn_drop(l, c);
				continue;
			}
			if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && !ws_session_want_read(c->ws)) {
				conn_drop(l, c);
				continue;
			}
			conn_service(l, c);
		}
		pthread_mutex_lock(&l->lock);
		stopping = l->stopping;
		inc = l->incoming;
		l->incoming = NULL;
		pthread_mutex_unlock(&l->lock);
		while (inc) {
			struct ws_conn *c = inc;

			inc = c->next;
			conn_start(l, c);
		}
		if (stopping)
			break;
		ws_fwd_take_errors(l->fwd, conn_fwd_error, l);
		for (struct ws_conn *c = l->conns, *next; c; c = next) {
			next = c->next;
			if (atomic_exchange(&c->woken, false)) {
				c->armed = false;
				conn_service(l, c);
			}
		}
		conns_tick(l, mono_ms());
	}
	loop_stop_conns(l);
	return NULL;
}

/* Public ----------------------------------------------------------------- */

int ws_loop_start(struct ws_loop **out, struct sup *s)
{
	struct ws_loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int ret;

	if (!l)
		return -ENOMEM;
	l->sup = s;
	l->fwd = ws_fwd_new(s, loop_kick, l);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!l->fwd) {
		ret = -ENOMEM;
		goto fail;
	}
	if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev)) {
		ret = -errno;
		goto fail;
	}
	pthread_mutex_init(&l->lock, NULL);
	ret = -pthread_create(&l->thread, NULL, loop_main, l);
	if (ret)
		goto fail;
	*out = l;
	return 0;
fail:
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->evfd >= 0)
		close(l->evfd);
	ws_fwd_free(l->fwd);
	free(l);
	return ret ? ret : -EIO;
}

void ws_loop_stop(struct ws_loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (l->stopping) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	l->stopping = true;
	pthread_mutex_unlock(&l->lock);
	kick(l);
	pthread_join(l->thread, NULL);
}

void ws_loop_free(struct ws_loop *l)
{
	if (!l)
		return;
	ws_loop_stop(l);
	ws_fwd_free(l->fwd); /* after the loop: nothing submits any more */
	close(l->epfd);
	close(l->evfd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

bool ws_loop_full(struct ws_loop *l)
{
	bool full;

	pthread_mutex_lock(&l->lock);
	full = l->count >= WS_MAX_CONNS || l->stopping;
	pthread_mutex_unlock(&l->lock);
	return full;
}

struct ws_pending *ws_pending_new(struct sup_stream *st, const char *name, enum role role,
				  const char *who, bool events)
{
	struct ws_pending *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->st = st;
	p->events = events;
	p->role = role;
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->who, sizeof(p->who), "%s", who);
	return p;
}

void ws_pending_forward(struct ws_pending *p, const char *host, const char *address)
{
	snprintf(p->fwd_host, sizeof(p->fwd_host), "%s", host);
	snprintf(p->fwd_addr, sizeof(p->fwd_addr), "%s", address);
}

void ws_pending_free(struct ws_pending *p)
{
	if (!p)
		return;
	sup_stream_close(p->st);
	free(p);
}

void ws_loop_adopt(struct ws_loop *l, struct ws_pending *p, int fd,
		   struct MHD_UpgradeResponseHandle *urh, const char *extra, size_t extra_len)
{
	struct ws_conn *c = l ? calloc(1, sizeof(*c)) : NULL;
	bool stopping = true;

	if (c) {
		c->loop = l;
		c->fd = fd;
		c->urh = urh;
		c->p = *p;
		free(p);
		p = NULL;
		if (extra_len) {
			c->extra = malloc(extra_len);
			if (c->extra) {
				memcpy(c->extra, extra, extra_len);
				c->extra_len = extra_len;
			}
		}
		if (c->p.events)
			c->line = malloc(WS_EVENT_MAX);
		if (ws_session_new(&c->ws, &conn_ops, c) || (extra_len && !c->extra) ||
		    (c->p.events && !c->line)) {
			conn_free(c);
			return;
		}
	}
	if (c) {
		pthread_mutex_lock(&l->lock);
		stopping = l->stopping;
		if (!stopping) {
			c->next = l->incoming;
			l->incoming = c;
			l->count++;
		}
		pthread_mutex_unlock(&l->lock);
	}
	if (!c) {
		ws_pending_free(p);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	} else if (stopping) {
		conn_free(c);
	} else {
		kick(l);
	}
}
