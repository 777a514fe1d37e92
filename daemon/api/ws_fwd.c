/* ws_fwd.c: forwarded console input of the WebSocket loop (ws_fwd.h). The
 * owner's POST blocks (a round trip over mutual TLS, an owner that is gone
 * up to the peer's timeouts), so it runs here, never on the loop: one
 * worker, one queue in arrival order, bounded. */
#include "ws_fwd.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "sup.h"
#include "vmdef.h"

#define WS_FWD_POST_MAX (64u << 10) /* one POST carries at most this */
#define WS_FWD_ERRS_MAX 64          /* failures waiting for the loop */

struct fwd_item {
	struct fwd_item *next;
	uint64_t conn;
	enum role role;
	char host[64], address[256], vm[VMDEF_NAME_MAX + 1], who[96];
	size_t len;
	unsigned char data[];
};

struct fwd_err {
	struct fwd_err *next;
	uint64_t conn;
	char msg[440];
};

struct ws_fwd {
	struct sup *sup;
	void (*kick)(void *arg);
	void *kick_arg;
	pthread_mutex_t lock;
	pthread_cond_t more;
	pthread_t thread;
	bool started, stopping;              /* (lock) */
	struct fwd_item *head, **tail;       /* (lock) */
	unsigned msgs;                       /* (lock) */
	size_t bytes;                        /* (lock) */
	struct fwd_err *errs, **errs_tail;   /* (lock) */
	unsigned nerrs;                      /* (lock) */
};

static void err_push(struct ws_fwd *f, uint64_t conn, const char *msg)
{
	struct fwd_err *e;

	pthread_mutex_lock(&f->lock);
	if (f->nerrs >= WS_FWD_ERRS_MAX || !(e = calloc(1, sizeof(*e)))) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	e->conn = conn;
	snprintf(e->msg, sizeof(e->msg), "%s", msg);
	*f->errs_tail = e;
	f->errs_tail = &e->next;
	f->nerrs++;
	pthread_mutex_unlock(&f->lock);
	f->kick(f->kick_arg);
}

/* Post one run of a connection's input to the owner. */
static void post(struct ws_fwd *f, const struct fwd_item *it, const void *data, size_t len)
{
	char path[64 + VMDEF_NAME_MAX], msg[440];
	struct sup_fwd_req req = { .method = "POST", .path = path, .body = data, .len = len,
				   .role = it->role, .who = it->who };
	struct sup_stream *st = NULL;
	json_t *reply = NULL;
	struct cerr e = { 0 };
	long status = 0;

	snprintf(path, sizeof(path), "/v1/vms/%s/console", it->vm);
	if (sup_pool_forward_raw(f->sup, it->host, it->address, &req, &status, &reply, &st, &e)) {
		snprintf(msg, sizeof(msg), "%zu bytes of input not delivered to host %.60s: %.300s", len,
			 it->host, e.reason);
	} else if (status < 200 || status > 299) {
		const char *why = json_string_value(
			json_object_get(json_object_get(reply, "error"), "message"));

		snprintf(msg, sizeof(msg), "%zu bytes of input refused by host %.60s (%ld): %.300s", len,
			 it->host, status, why ? why : "no reason given");
	} else {
		msg[0] = 0;
	}
	if (st)
		sup_stream_close(st); /* not asked for: never for a POST */
	json_decref(reply);
	if (msg[0]) {
		log_warn("%s: forwarded console input: %s", it->vm, msg);
		err_push(f, it->conn, msg);
	}
}

static void *worker(void *arg)
{
	struct ws_fwd *f = arg;
	unsigned char *buf = malloc(WS_FWD_POST_MAX);

	pthread_setname_np(pthread_self(), "ws-fwd-input");
	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct fwd_item *it, *n;
		size_t len;

		while (!f->head && !f->stopping)
			pthread_cond_wait(&f->more, &f->lock);
		if (f->stopping)
			break;
		it = f->head;
		/* The same connection's messages next in line go in one POST. */
		len = it->len;
		n = it->next;
		if (buf) {
			memcpy(buf, it->data, it->len);
			while (n && n->conn == it->conn && len + n->len <= WS_FWD_POST_MAX) {
				memcpy(buf + len, n->data, n->len);
				len += n->len;
				n = n->next;
			}
		}
		/* Take it..n off the queue; it stays for its names. */
		f->head = n;
		if (!n)
			f->tail = &f->head;
		for (struct fwd_item *x = it; x != n; x = x->next) {
			f->msgs--;
			f->bytes -= x->len;
		}
		pthread_mutex_unlock(&f->lock);
		post(f, it, buf ? buf : it->data, buf ? len : it->len);
		while (it != n) {
			struct fwd_item *next = it->next;

			free(it);
			it = next;
		}
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	free(buf);
	return NULL;
}

struct ws_fwd *ws_fwd_new(struct sup *s, void (*kick)(void *arg), void *arg)
{
	struct ws_fwd *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->sup = s;
	f->kick = kick;
	f->kick_arg = arg;
	f->tail = &f->head;
	f->errs_tail = &f->errs;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->more, NULL);
	return f;
}

void ws_fwd_free(struct ws_fwd *f)
{
	bool started;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	started = f->started;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->lock);
	if (started)
		pthread_join(f->thread, NULL);
	while (f->head) {
		struct fwd_item *it = f->head;

		f->head = it->next;
		free(it);
	}
	while (f->errs) {
		struct fwd_err *e = f->errs;

		f->errs = e->next;
		free(e);
	}
	pthread_cond_destroy(&f->more);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int ws_fwd_submit(struct ws_fwd *f, uint64_t conn, const char *host, const char *address,
		  const char *vm, enum role role, const char *who, const void *data, size_t len)
{
	struct fwd_item *it;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	if (f->msgs >= WS_FWD_QUEUE_MSGS || f->bytes + len > WS_FWD_QUEUE_BYTES) {
		pthread_mutex_unlock(&f->lock);
		return -ENOSPC;
	}
	pthread_mutex_unlock(&f->lock);
	it = malloc(sizeof(*it) + len);
	if (!it)
		return -ENOMEM;
	memset(it, 0, sizeof(*it));
	it->conn = conn;
	it->role = role;
	snprintf(it->host, sizeof(it->host), "%s", host);
	snprintf(it->address, sizeof(it->address), "%s", address);
	snprintf(it->vm, sizeof(it->vm), "%s", vm);
	snprintf(it->who, sizeof(it->who), "%s", who);
	it->len = len;
	memcpy(it->data, data, len);
	pthread_mutex_lock(&f->lock);
	if (!f->started && !f->stopping) {
		int err = pthread_create(&f->thread, NULL, worker, f);

		if (err) {
			log_warn("console input forwarding: no worker thread: %s", strerror(err));
			ret = -EAGAIN;
		} else {
			f->started = true;
		}
	}
	if (f->stopping)
		ret = -EAGAIN;
	if (!ret) {
		*f->tail = it;
		f->tail = &it->next;
		f->msgs++;
		f->bytes += len;
		pthread_cond_signal(&f->more);
	}
	pthread_mutex_unlock(&f->lock);
	if (ret)
		free(it);
	return ret;
}

void ws_fwd_take_errors(struct ws_fwd *f, void (*fn)(void *arg, uint64_t conn, const char *msg),
			void *arg)
{
	struct fwd_err *e;

	pthread_mutex_lock(&f->lock);
	e = f->errs;
	f->errs = NULL;
	f->errs_tail = &f->errs;
	f->nerrs = 0;
	pthread_mutex_unlock(&f->lock);
	while (e) {
		struct fwd_err *next = e->next;

		fn(arg, e->conn, e->msg);
		free(e);
		e = next;
	}
}
