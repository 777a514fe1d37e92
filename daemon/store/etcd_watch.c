/* etcd_watch.c: watches: a thread per watch streams /v3/watch from one
 * member, resumes on the next after the last revision it delivered, and
 * probes a member that stays silent (etcd.h). */
#include "etcd_priv.h"
#include "etcd_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct etcd_watch {
	struct etcd *e;
	char *prefix, *end;
	const struct etcd_watch_ops *ops;
	void *opaque;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock; /* stop_cond's */
	pthread_cond_t stop_cond;
	CURLM *multi;         /* the stream runs here: curl_multi_wakeup stops it at once */
	CURL *probe;          /* the liveness probe's connection */
	struct timespec last_data; /* when the stream last said something */
	struct curl_slist *headers;
	/* The thread's own: */
	int64_t next_rev;     /* the first revision not delivered yet (0: from now) */
	bool connected;
	bool restart;         /* resubscribe on the same member (compaction) */
	bool broken;          /* the member ended the watch: try the next one */
	struct etcd_body line;     /* the stream, up to its next newline */
};

static void watch_message(struct etcd_watch *w, const char *s, size_t len)
{
	struct etcd_watch_msg m;
	int64_t from = w->next_rev, last = 0;

	if (etcd_json_watch_msg(s, len, &m)) {
		log_warn("etcd watch: a message we cannot read: %.*s", (int)(len > 200 ? 200 : len), s);
		w->broken = true;
		return;
	}
	if (m.compact_revision > 0) {
		/* The oldest revision etcd still has: what came before it is
		 * lost, so the caller reads everything again, and the watch goes
		 * on from there (a change may then be reported twice, never
		 * missed). */
		log_warn("etcd watch: revisions before %" PRId64 " were compacted: reading all again",
			 m.compact_revision);
		w->next_rev = m.compact_revision;
		w->restart = true;
		w->ops->state(w->opaque, ETCD_WATCH_RESYNC, 0);
		etcd_watch_msg_free(&m);
		return;
	}
	if (m.canceled) {
		/* No leader there (require-leader), or the member is going away. */
		w->broken = true;
		etcd_watch_msg_free(&m);
		return;
	}
	if (m.created) {
		if (!w->next_rev)
			w->next_rev = m.revision + 1;
		if (!w->connected) {
			w->connected = true;
			w->ops->state(w->opaque, ETCD_WATCH_CONNECTED, 0);
		}
	}
	for (size_t i = 0; i < m.nr_events; i++) {
		/* After a reconnection etcd starts again at next_rev: what came
		 * before was delivered already. */
		if (m.events[i].kv.mod_rev < from)
			continue;
		w->ops->event(w->opaque, &m.events[i]);
		if (m.events[i].kv.mod_rev > last)
			last = m.events[i].kv.mod_rev;
	}
	if (last >= w->next_rev)
		w->next_rev = last + 1;
	etcd_watch_msg_free(&m);
}

static size_t watch_write(char *p, size_t size, size_t n, void *opaque)
{
	struct etcd_watch *w = opaque;
	size_t len = size * n;
	char *nl;

	clock_gettime(CLOCK_MONOTONIC, &w->last_data);
	if (atomic_load(&w->stop) || etcd_body_write(p, 1, len, &w->line) != len)
		return 0;
	while (w->line.len && (nl = memchr(w->line.data, '\n', w->line.len))) {
		size_t one = (size_t)(nl - w->line.data);

		watch_message(w, w->line.data, one);
		memmove(w->line.data, nl + 1, w->line.len - one - 1);
		w->line.len -= one + 1;
		if (w->restart || w->broken)
			return 0;
	}
	return len;
}

static int64_t ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* A silent stream may be a quiet prefix, or a member that hangs (stopped,
 * or cut off from the others: it serves the watch but has no new events to
 * send). A linearizable read on the same member needs its leader and a
 * quorum: if it fails, the watch moves to another member. */
static bool watch_probe(struct etcd_watch *w, const char *ep)
{
	json_t *req = etcd_range_req(w->prefix, w->end);
	char url[512], *s;
	struct etcd_body b = { .limit = 1 << 20 };
	long status = 0;
	CURLcode rc;

	json_object_set_new(req, "limit", json_integer(1));
	json_object_set_new(req, "keys_only", json_true());
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s)
		return true; /* no memory: not the member's fault */
	snprintf(url, sizeof(url), "%s/v3/kv/range", ep);
	curl_easy_reset(w->probe);
	etcd_curl_tls(w->e, w->probe);
	curl_easy_setopt(w->probe, CURLOPT_URL, url);
	curl_easy_setopt(w->probe, CURLOPT_POSTFIELDS, s);
	curl_easy_setopt(w->probe, CURLOPT_WRITEFUNCTION, etcd_body_write);
	curl_easy_setopt(w->probe, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(w->probe, CURLOPT_TIMEOUT_MS, (long)w->e->timeout_ms);
	curl_easy_setopt(w->probe, CURLOPT_CONNECTTIMEOUT_MS, (long)w->e->timeout_ms);
	rc = curl_easy_perform(w->probe);
	if (rc == CURLE_OK)
		curl_easy_getinfo(w->probe, CURLINFO_RESPONSE_CODE, &status);
	free(s);
	free(b.data);
	if (rc != CURLE_OK || status != 200)
		log_warn("etcd watch on %s: the member does not answer a read (%s): moving on", ep,
			 rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP error");
	return rc == CURLE_OK && status == 200;
}

/* One stream on h until it ends, fails or the watch is stopped. */
static CURLcode watch_perform(struct etcd_watch *w, CURL *h, const char *ep)
{
	/* Silence longer than this is probed (timeout_ms, 1 to 10 s). */
	int64_t quiet_ms = w->e->timeout_ms < 1000 ? 1000 : w->e->timeout_ms > 10000 ? 10000
											     : w->e->timeout_ms;
	CURLcode rc = CURLE_OK;
	CURLMcode mc;
	CURLMsg *msg;
	int running = 1, left;

	if (curl_multi_add_handle(w->multi, h) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	clock_gettime(CLOCK_MONOTONIC, &w->last_data);
	while (running && !atomic_load(&w->stop)) {
		mc = curl_multi_perform(w->multi, &running);
		if (mc == CURLM_OK && running)
			mc = curl_multi_poll(w->multi, NULL, 0, 500, NULL);
		if (mc != CURLM_OK) {
			rc = CURLE_RECV_ERROR;
			break;
		}
		if (running && ms_since(&w->last_data) >= quiet_ms) {
			if (!watch_probe(w, ep)) {
				curl_multi_remove_handle(w->multi, h);
				return CURLE_OPERATION_TIMEDOUT;
			}
			clock_gettime(CLOCK_MONOTONIC, &w->last_data);
		}
	}
	while ((msg = curl_multi_info_read(w->multi, &left)))
		if (msg->msg == CURLMSG_DONE)
			rc = msg->data.result;
	curl_multi_remove_handle(w->multi, h);
	return rc;
}

/* Sleep ms unless stopped first; returns whether it was stopped. */
static bool watch_sleep(struct etcd_watch *w, unsigned ms)
{
	struct timespec ts;
	bool stopped;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (!(stopped = atomic_load(&w->stop)) &&
	       pthread_cond_timedwait(&w->stop_cond, &w->lock, &ts) == 0)
		;
	stopped = atomic_load(&w->stop);
	pthread_mutex_unlock(&w->lock);
	return stopped;
}

static void *watch_thread(void *opaque)
{
	struct etcd_watch *w = opaque;
	CURL *h = curl_easy_init();
	unsigned ep, backoff = 100;

	pthread_mutex_lock(&w->e->lock);
	ep = w->e->cur;
	pthread_mutex_unlock(&w->e->lock);
	while (h && !atomic_load(&w->stop)) {
		json_t *cr = etcd_range_req(w->prefix, w->end);
		char url[512], *req;
		CURLcode rc;
		int err;

		if (w->next_rev)
			json_object_set_new(cr, "start_revision", etcd_int64_json(w->next_rev));
		cr = json_pack("{s:o}", "create_request", cr);
		req = cr ? json_dumps(cr, JSON_COMPACT) : NULL;
		json_decref(cr);
		if (!req)
			break;
		snprintf(url, sizeof(url), "%s/v3/watch", w->e->endpoints[ep]);
		curl_easy_reset(h);
		etcd_curl_tls(w->e, h);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)w->e->timeout_ms);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 2L);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 1L);
		/* gRPC metadata through the gateway: a member that loses its
		 * leader ends the stream (etcd's "require leader"). */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, w->headers);
		w->line.len = 0;
		w->restart = w->broken = false;
		rc = watch_perform(w, h, w->e->endpoints[ep]);
		free(req);
		if (atomic_load(&w->stop))
			break;
		if (w->restart) {
			backoff = 100;
			if (watch_sleep(w, 50)) /* never a hot loop */
				break;
			continue;
		}
		err = w->broken ? -EIO : rc == CURLE_OK ? -ECONNRESET : etcd_curl_errno(rc);
		if (w->connected) {
			log_warn("etcd watch on %s: %s", w->e->endpoints[ep],
				 w->broken ? "the member ended the watch"
				 : rc == CURLE_OK ? "the stream ended" : curl_easy_strerror(rc));
			w->connected = false;
			backoff = 100;
			if (w->e->stats)
				atomic_fetch_add(&w->e->stats->watch_restarts, 1);
			w->ops->state(w->opaque, ETCD_WATCH_LOST, err);
		}
		ep = (ep + 1) % w->e->nr_endpoints;
		if (watch_sleep(w, backoff))
			break;
		if (backoff < 2000)
			backoff *= 2;
	}
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

int etcd_watch_start(struct etcd *e, const char *prefix, int64_t from_rev,
		     const struct etcd_watch_ops *ops, void *opaque, struct etcd_watch **out)
{
	struct etcd_watch *w = calloc(1, sizeof(*w));
	int ret;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->e = e;
	w->prefix = strdup(prefix);
	w->end = malloc(strlen(prefix) + 1);
	if (!w->prefix || !w->end) {
		free(w->prefix);
		free(w->end);
		free(w);
		return -ENOMEM;
	}
	etcd_prefix_end(prefix, w->end);
	w->ops = ops;
	w->opaque = opaque;
	w->next_rev = from_rev;
	w->line.limit = 64u << 20;
	atomic_init(&w->stop, false);
	w->multi = curl_multi_init();
	w->probe = curl_easy_init();
	w->headers = curl_slist_append(NULL, "Grpc-Metadata-hasleader: true");
	if (!w->multi || !w->probe || !w->headers) {
		if (w->multi)
			curl_multi_cleanup(w->multi);
		if (w->probe)
			curl_easy_cleanup(w->probe);
		curl_slist_free_all(w->headers);
		free(w->prefix);
		free(w->end);
		free(w);
		return -ENOMEM;
	}
	pthread_mutex_init(&w->lock, NULL);
	{
		pthread_condattr_t a;

		pthread_condattr_init(&a);
		pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
		pthread_cond_init(&w->stop_cond, &a);
		pthread_condattr_destroy(&a);
	}
	ret = -pthread_create(&w->thread, NULL, watch_thread, w);
	if (ret) {
		curl_multi_cleanup(w->multi);
		curl_easy_cleanup(w->probe);
		curl_slist_free_all(w->headers);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->stop_cond);
		free(w->prefix);
		free(w->end);
		free(w);
		return ret;
	}
	*out = w;
	return 0;
}

void etcd_watch_stop(struct etcd_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->stop, true);
	pthread_cond_broadcast(&w->stop_cond);
	pthread_mutex_unlock(&w->lock);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	curl_multi_cleanup(w->multi);
	curl_easy_cleanup(w->probe);
	curl_slist_free_all(w->headers);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->stop_cond);
	free(w->line.data);
	free(w->prefix);
	free(w->end);
	free(w);
}
