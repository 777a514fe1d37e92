/* peer_stream.c: a request to a peer cellad whose answer may stream (a
 * console forwarded to its owner): the libcurl transfer runs on a thread of
 * its own and writes into a bounded ring that the reader drains, waiting
 * while the ring is full (backpressure: the peer's TCP window closes). The
 * reader waits in peer_stream_read or, in an event loop, arms a wake, as
 * core streams do (worker/stream.c). */
#include "peer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "bodybuf.h"
#include "deadline.h"

#define PS_RING (64u * 1024)
#define PS_REPLY_MAX (1u << 20) /* a non-streamed answer is small JSON */

struct peer_stream {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* headers, data, room, the end, the reader closing */
	CURL *h;
	struct curl_slist *hdrs;
	char *body; /* the request body's copy */
	bool want_stream;
	void (*on_end)(void *arg);
	void *on_end_arg;
	/* (lock) */
	bool headers_done, streaming, done, closed;
	long status;
	CURLcode rc;
	char cerr[CURL_ERROR_SIZE];
	char *ring;
	size_t r_head, r_len;
	struct bodybuf reply;
	void (*wake)(void *arg);
	void *wake_arg;
	atomic_bool armed;
	unsigned refs; /* the thread's and the reader's */
};

static void ps_unref(struct peer_stream *ps)
{
	bool last;

	pthread_mutex_lock(&ps->lock);
	last = --ps->refs == 0;
	pthread_mutex_unlock(&ps->lock);
	if (!last)
		return;
	curl_slist_free_all(ps->hdrs);
	if (ps->h)
		curl_easy_cleanup(ps->h);
	free(ps->body);
	free(ps->ring);
	free(ps->reply.p);
	pthread_cond_destroy(&ps->cond);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
}

/* The reader may want to know (lock held, as the core's streams wake
 * theirs under their VM's lock: close takes the lock, so the wake's
 * argument is alive here). */
static void ps_wake(struct peer_stream *ps)
{
	pthread_cond_broadcast(&ps->cond);
	if (ps->wake && atomic_exchange(&ps->armed, false))
		ps->wake(ps->wake_arg);
}

static size_t on_header(char *b, size_t size, size_t n, void *opaque)
{
	struct peer_stream *ps = opaque;
	size_t len = size * n;
	long st = 0;

	/* The blank line ends a header block; 1xx blocks come before the real one. */
	if (len > 2 || (len && b[0] != '\r' && b[0] != '\n'))
		return len;
	curl_easy_getinfo(ps->h, CURLINFO_RESPONSE_CODE, &st);
	if (st < 200)
		return len;
	pthread_mutex_lock(&ps->lock);
	ps->headers_done = true;
	ps->status = st;
	ps->streaming = ps->want_stream && st == 200;
	ps_wake(ps);
	pthread_mutex_unlock(&ps->lock);
	return len;
}

static size_t on_data(char *b, size_t size, size_t n, void *opaque)
{
	struct peer_stream *ps = opaque;
	size_t len = size * n, off = 0;

	pthread_mutex_lock(&ps->lock);
	if (!ps->streaming) {
		size_t ret = ps->closed ? 0 : bodybuf_collect(b, size, n, &ps->reply);

		pthread_mutex_unlock(&ps->lock);
		return ret;
	}
	while (off < len) {
		size_t room, at, k;

		while (!ps->closed && ps->r_len == PS_RING)
			pthread_cond_wait(&ps->cond, &ps->lock);
		if (ps->closed) {
			pthread_mutex_unlock(&ps->lock);
			return 0; /* the reader left: end the transfer */
		}
		room = PS_RING - ps->r_len;
		at = (ps->r_head + ps->r_len) % PS_RING;
		k = len - off < room ? len - off : room;
		if (k > PS_RING - at)
			k = PS_RING - at;
		memcpy(ps->ring + at, b + off, k);
		ps->r_len += k;
		off += k;
		ps_wake(ps);
	}
	pthread_mutex_unlock(&ps->lock);
	return len;
}

/* Called about once a second while the peer is silent too. */
static int on_progress(void *opaque, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct peer_stream *ps = opaque;
	bool closed;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	pthread_mutex_lock(&ps->lock);
	closed = ps->closed;
	pthread_mutex_unlock(&ps->lock);
	return closed;
}

static void *ps_main(void *opaque)
{
	struct peer_stream *ps = opaque;
	CURLcode rc = curl_easy_perform(ps->h);

	pthread_mutex_lock(&ps->lock);
	ps->done = true;
	ps->rc = rc;
	ps_wake(ps);
	pthread_mutex_unlock(&ps->lock);
	if (ps->on_end)
		ps->on_end(ps->on_end_arg);
	ps_unref(ps);
	return NULL;
}

static int ps_setup(struct peer_stream *ps, const struct peer *p, const struct peer_stream_req *req)
{
	char url[1024], auth[600];

	ps->h = curl_easy_init();
	ps->ring = req->stream ? malloc(PS_RING) : NULL;
	if (!ps->h || (req->stream && !ps->ring))
		return -1;
	snprintf(url, sizeof(url), "%s%s", p->url, req->path);
	if (p->token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p->token);
		ps->hdrs = curl_slist_append(ps->hdrs, auth);
	}
	for (const char *const *h = p->headers; h && *h; h++)
		ps->hdrs = curl_slist_append(ps->hdrs, *h);
	ps->hdrs = curl_slist_append(ps->hdrs, "Expect:");
	if (req->body) {
		char ct[128];

		ps->body = malloc(req->len ? req->len : 1);
		if (!ps->body)
			return -1;
		memcpy(ps->body, req->body, req->len);
		snprintf(ct, sizeof(ct), "Content-Type: %s",
			 req->content_type ? req->content_type : "application/octet-stream");
		ps->hdrs = curl_slist_append(ps->hdrs, ct);
		curl_easy_setopt(ps->h, CURLOPT_POSTFIELDS, ps->body);
		curl_easy_setopt(ps->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
	}
	curl_easy_setopt(ps->h, CURLOPT_URL, url);
	curl_easy_setopt(ps->h, CURLOPT_CUSTOMREQUEST, req->method);
	curl_easy_setopt(ps->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(ps->h, CURLOPT_HTTPHEADER, ps->hdrs);
	curl_easy_setopt(ps->h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(ps->h, CURLOPT_HEADERDATA, ps);
	curl_easy_setopt(ps->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(ps->h, CURLOPT_WRITEDATA, ps);
	curl_easy_setopt(ps->h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(ps->h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(ps->h, CURLOPT_XFERINFODATA, ps);
	curl_easy_setopt(ps->h, CURLOPT_ERRORBUFFER, ps->cerr);
	/* No total timeout: a followed console lasts as long as its reader.
	 * A peer that vanished without closing is found by keepalives. */
	curl_easy_setopt(ps->h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(ps->h, CURLOPT_TCP_KEEPIDLE, 10L);
	curl_easy_setopt(ps->h, CURLOPT_TCP_KEEPINTVL, 5L);
	peer_setopt_tls(ps->h, p);
	return 0;
}

int peer_stream_open(const struct peer *p, const struct peer_stream_req *req, long *status,
		     json_t **reply, struct peer_stream **out, char *err, size_t errlen)
{
	struct peer_stream *ps = calloc(1, sizeof(*ps));
	struct timespec dl = deadline_after_ms(req->answer_timeout_s * 1000);
	pthread_attr_t attr;
	pthread_t t;
	bool timed_out = false;
	int ret = 0;

	*status = 0;
	*reply = NULL;
	*out = NULL;
	if (!ps || ps_setup(ps, p, req)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ps->want_stream = req->stream;
	ps->reply.max = PS_REPLY_MAX;
	ps->on_end = req->on_end;
	ps->on_end_arg = req->on_end_arg;
	ps->refs = 2;
	pthread_mutex_init(&ps->lock, NULL);
	pthread_cond_init(&ps->cond, NULL); /* deadline.h: CLOCK_REALTIME */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&t, &attr, ps_main, ps);
	pthread_attr_destroy(&attr);
	if (!ret)
		pthread_setname_np(t, "peer-stream"); /* seen in ps -L, counted by tests */
	if (ret) {
		snprintf(err, errlen, "no thread for the transfer: %s", strerror(ret));
		pthread_cond_destroy(&ps->cond);
		pthread_mutex_destroy(&ps->lock);
		goto fail;
	}
	/* The status; a streamed answer is handed over at once, another is
	 * waited for whole. */
	pthread_mutex_lock(&ps->lock);
	while (!timed_out && !ps->done && !(ps->headers_done && ps->streaming))
		timed_out = pthread_cond_timedwait(&ps->cond, &ps->lock, &dl) == ETIMEDOUT;
	if (ps->headers_done && (ps->streaming || (ps->done && ps->rc == CURLE_OK))) {
		*status = ps->status;
		if (ps->streaming) {
			*out = ps;
		} else if (ps->reply.len) {
			*reply = json_loadb(ps->reply.p, ps->reply.len, 0, NULL);
		}
		ret = 0;
	} else {
		if (!ps->done)
			snprintf(err, errlen, "cannot reach host %s at %s: no answer within %ld s",
				 p->name, p->url, req->answer_timeout_s);
		else
			snprintf(err, errlen, "cannot reach host %s at %s: %s", p->name, p->url,
				 ps->cerr[0] ? ps->cerr : curl_easy_strerror(ps->rc));
		ret = -1;
	}
	pthread_mutex_unlock(&ps->lock);
	if (!*out)
		peer_stream_close(ps);
	return ret;
fail:
	if (ps) {
		curl_slist_free_all(ps->hdrs);
		if (ps->h)
			curl_easy_cleanup(ps->h);
		free(ps->body);
		free(ps->ring);
		free(ps);
	}
	if (req->on_end)
		req->on_end(req->on_end_arg);
	return -1;
}

static size_t ps_take(struct peer_stream *ps, char *buf, size_t max)
{
	size_t n = 0;

	while (n < max && ps->r_len) {
		size_t k = max - n;

		if (k > ps->r_len)
			k = ps->r_len;
		if (k > PS_RING - ps->r_head)
			k = PS_RING - ps->r_head;
		memcpy(buf + n, ps->ring + ps->r_head, k);
		ps->r_head = (ps->r_head + k) % PS_RING;
		ps->r_len -= k;
		n += k;
	}
	if (n)
		pthread_cond_broadcast(&ps->cond); /* room for the transfer */
	return n;
}

ssize_t peer_stream_read(struct peer_stream *ps, char *buf, size_t max, int timeout_ms)
{
	struct timespec dl = deadline_after_ms(timeout_ms);
	ssize_t ret;
	size_t n;

	pthread_mutex_lock(&ps->lock);
	for (;;) {
		n = ps_take(ps, buf, max);
		if (n || ps->done || timeout_ms <= 0)
			break;
		if (pthread_cond_timedwait(&ps->cond, &ps->lock, &dl) == ETIMEDOUT) {
			n = ps_take(ps, buf, max);
			break;
		}
	}
	if (n)
		ret = (ssize_t)n;
	else if (ps->done)
		ret = ps->rc == CURLE_OK ? -1 : -2;
	else
		ret = 0;
	pthread_mutex_unlock(&ps->lock);
	return ret;
}

void peer_stream_set_wake(struct peer_stream *ps, void (*fn)(void *arg), void *arg)
{
	pthread_mutex_lock(&ps->lock);
	ps->wake = fn;
	ps->wake_arg = arg;
	pthread_mutex_unlock(&ps->lock);
}

bool peer_stream_arm(struct peer_stream *ps)
{
	bool ready;

	pthread_mutex_lock(&ps->lock);
	ready = ps->r_len || ps->done;
	if (!ready)
		atomic_store(&ps->armed, true);
	pthread_mutex_unlock(&ps->lock);
	return !ready;
}

bool peer_stream_disarm(struct peer_stream *ps)
{
	return atomic_exchange(&ps->armed, false);
}

void peer_stream_close(struct peer_stream *ps)
{
	if (!ps)
		return;
	pthread_mutex_lock(&ps->lock);
	ps->closed = true;
	ps->wake = NULL;
	atomic_store(&ps->armed, false);
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	ps_unref(ps);
}
