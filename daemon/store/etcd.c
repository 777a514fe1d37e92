/* etcd.c: the etcd v3 client's HTTP side (libcurl): unary calls with
 * failover across members, leases, transactions and the watch threads.
 * The JSON of requests is built here; replies are read by etcd_json.c. */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

struct etcd {
	char *endpoints[ETCD_MAX_ENDPOINTS];
	unsigned nr_endpoints;
	char *ca, *cert, *key;
	unsigned timeout_ms;
	pthread_mutex_t lock; /* h, cur */
	CURL *h;              /* unary calls: one connection, kept alive */
	unsigned cur;         /* the member that answered last */
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int etcd_open(struct etcd **out, const struct etcd_conf *conf, char *err, size_t errlen)
{
	struct etcd *e;

	*out = NULL;
	if (!conf->nr_endpoints || conf->nr_endpoints > ETCD_MAX_ENDPOINTS) {
		snprintf(err, errlen, "etcd: expected 1 to %d endpoints", ETCD_MAX_ENDPOINTS);
		return -EINVAL;
	}
	if (!conf->cert != !conf->key) {
		snprintf(err, errlen, "etcd: a client certificate and its key go together");
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (unsigned i = 0; i < conf->nr_endpoints; i++) {
		const char *ep = conf->endpoints[i];

		if (!ep || (strncmp(ep, "https://", 8) && strncmp(ep, "http://", 7))) {
			snprintf(err, errlen, "etcd: endpoint %s: expected https://HOST:PORT",
				 ep ? ep : "(null)");
			etcd_close(e);
			return -EINVAL;
		}
		e->endpoints[e->nr_endpoints++] = strdup(ep);
	}
	e->ca = dup_or_null(conf->ca);
	e->cert = dup_or_null(conf->cert);
	e->key = dup_or_null(conf->key);
	e->timeout_ms = conf->timeout_ms ? conf->timeout_ms : 3000;
	pthread_mutex_init(&e->lock, NULL);
	e->h = curl_easy_init();
	if (!e->h) {
		snprintf(err, errlen, "etcd: cannot set up libcurl");
		etcd_close(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

void etcd_close(struct etcd *e)
{
	if (!e)
		return;
	if (e->h)
		curl_easy_cleanup(e->h);
	for (unsigned i = 0; i < e->nr_endpoints; i++)
		free(e->endpoints[i]);
	free(e->ca);
	free(e->cert);
	free(e->key);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

void etcd_prefix_end(const char *prefix, char *dst)
{
	size_t n = strlen(prefix);

	memcpy(dst, prefix, n + 1);
	/* Our prefixes are printable ASCII: the last byte never overflows. */
	if (n)
		dst[n - 1] = (char)(dst[n - 1] + 1);
}

/* Transport ---------------------------------------------------------------- */

struct body {
	char *data;
	size_t len, cap;
	size_t limit;
};

static size_t body_write(char *p, size_t size, size_t n, void *opaque)
{
	struct body *b = opaque;
	size_t len = size * n;

	if (b->len + len + 1 > b->limit)
		return 0; /* CURLE_WRITE_ERROR */
	if (b->len + len + 1 > b->cap) {
		size_t cap = (b->len + len + 1) * 2;
		char *d = realloc(b->data, cap);

		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = 0;
	return len;
}

static void etcd_curl_tls(struct etcd *e, CURL *h)
{
	if (e->ca)
		curl_easy_setopt(h, CURLOPT_CAINFO, e->ca);
	if (e->cert) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, e->key);
	}
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
		return -EPROTO;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

/* gRPC status codes in the gateway's error replies. */
enum { GRPC_INVALID_ARGUMENT = 3, GRPC_DEADLINE = 4, GRPC_NOT_FOUND = 5,
       GRPC_UNAVAILABLE = 14 };

/* One request to one member: 0 (reply set), or -errno; *next: whether
 * another member may do better. */
static int etcd_call_one(struct etcd *e, const char *ep, const char *path, const char *req,
			 json_t **reply, bool *next)
{
	char url[512];
	struct body b = { .limit = 64u << 20 };
	long status = 0;
	CURLcode rc;
	json_t *j;
	int ret;

	*next = true;
	snprintf(url, sizeof(url), "%s%s", ep, path);
	curl_easy_reset(e->h);
	etcd_curl_tls(e, e->h);
	curl_easy_setopt(e->h, CURLOPT_URL, url);
	curl_easy_setopt(e->h, CURLOPT_POSTFIELDS, req);
	curl_easy_setopt(e->h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(e->h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e->h, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(e->h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
	rc = curl_easy_perform(e->h);
	if (rc != CURLE_OK) {
		ret = curl_errno(rc);
		log_debug("etcd %s%s: %s", ep, path, curl_easy_strerror(rc));
		free(b.data);
		return ret;
	}
	curl_easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &status);
	j = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
	free(b.data);
	if (status == 200 && json_is_object(j)) {
		*reply = j;
		*next = false;
		return 0;
	}
	{
		json_t *code = json_object_get(j, "code");
		const char *msg = json_string_value(json_object_get(j, "error"));

		log_debug("etcd %s%s: HTTP %ld: %s", ep, path, status, msg ? msg : "?");
		ret = -EIO;
		if (json_is_integer(code)) {
			switch (json_integer_value(code)) {
			case GRPC_UNAVAILABLE: ret = -ECONNREFUSED; break; /* no leader */
			case GRPC_DEADLINE: ret = -ETIMEDOUT; break;
			case GRPC_NOT_FOUND: ret = -ENOENT; *next = false; break;
			case GRPC_INVALID_ARGUMENT: ret = -EINVAL; *next = false; break;
			default: *next = false; break;
			}
		}
	}
	json_decref(j);
	return ret;
}

/* POST req to path on the member that answered last, then on the others. A
 * write that timed out may have been applied: puts and deletes are
 * idempotent, and a transaction's compares make a repeat fail. */
static int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **reply)
{
	char *s = json_dumps(req, JSON_COMPACT);
	int ret = -ECONNREFUSED;

	*reply = NULL;
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&e->lock);
	for (unsigned i = 0; i < e->nr_endpoints; i++) {
		unsigned ep = (e->cur + i) % e->nr_endpoints;
		bool next;

		ret = etcd_call_one(e, e->endpoints[ep], path, s, reply, &next);
		if (!ret || !next) {
			if (!ret && ep != e->cur)
				log_info("etcd: now using %s", e->endpoints[ep]);
			if (!ret)
				e->cur = ep;
			break;
		}
	}
	pthread_mutex_unlock(&e->lock);
	free(s);
	return ret;
}

/* Requests ------------------------------------------------------------------ */

static json_t *b64_json(const void *data, size_t len)
{
	char *s = etcd_b64_encode(data, len);
	json_t *j = s ? json_string(s) : NULL;

	free(s);
	return j;
}

static json_t *key_json(const char *key)
{
	return b64_json(key, strlen(key));
}

static json_t *int64_json(int64_t n)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, n);
	return json_string(s);
}

static json_t *range_req(const char *key, const char *range_end)
{
	json_t *r = json_object();

	json_object_set_new(r, "key", key_json(key));
	if (range_end)
		json_object_set_new(r, "range_end", key_json(range_end));
	return r;
}

int etcd_range(struct etcd *e, const char *key, const char *range_end, struct etcd_kvs *out)
{
	json_t *req = range_req(key, range_end), *reply;
	int ret = etcd_call(e, "/v3/kv/range", req, &reply);

	memset(out, 0, sizeof(*out));
	json_decref(req);
	if (ret)
		return ret;
	ret = etcd_json_range(reply, out);
	json_decref(reply);
	return ret ? -EIO : 0;
}

int etcd_get(struct etcd *e, const char *key, struct etcd_kv *kv)
{
	struct etcd_kvs kvs;
	int ret = etcd_range(e, key, NULL, &kvs);

	memset(kv, 0, sizeof(*kv));
	if (ret)
		return ret;
	if (!kvs.n) {
		etcd_kvs_free(&kvs);
		return -ENOENT;
	}
	*kv = kvs.kv[0];
	memset(&kvs.kv[0], 0, sizeof(kvs.kv[0]));
	etcd_kvs_free(&kvs);
	return 0;
}

static json_t *put_req(const char *key, const void *value, size_t len, int64_t lease)
{
	json_t *r = json_object();

	json_object_set_new(r, "key", key_json(key));
	json_object_set_new(r, "value", b64_json(value, len));
	if (lease)
		json_object_set_new(r, "lease", int64_json(lease));
	return r;
}

static int etcd_write(struct etcd *e, const char *path, json_t *req, int64_t *rev,
		      int64_t *deleted)
{
	json_t *reply;
	int64_t r = 0;
	int ret = etcd_call(e, path, req, &reply);

	json_decref(req);
	if (ret)
		return ret;
	if (etcd_json_revision(reply, &r) ||
	    (deleted && etcd_json_int64(reply, "deleted", deleted)))
		ret = -EIO;
	if (rev)
		*rev = r;
	json_decref(reply);
	return ret;
}

int etcd_put(struct etcd *e, const char *key, const void *value, size_t len, int64_t lease,
	     int64_t *rev)
{
	return etcd_write(e, "/v3/kv/put", put_req(key, value, len, lease), rev, NULL);
}

int etcd_delete(struct etcd *e, const char *key, const char *range_end, int64_t *deleted,
		int64_t *rev)
{
	int64_t n = 0;
	int ret = etcd_write(e, "/v3/kv/deleterange", range_req(key, range_end), rev, &n);

	if (deleted)
		*deleted = n;
	return ret;
}

/* Transactions -------------------------------------------------------------- */

void etcd_txn_init(struct etcd_txn *t)
{
	t->compare = json_array();
	t->success = json_array();
}

void etcd_txn_free(struct etcd_txn *t)
{
	json_decref(t->compare);
	json_decref(t->success);
	t->compare = t->success = NULL;
}

int etcd_txn_compare(struct etcd_txn *t, const char *key, enum etcd_cmp_target target,
		     enum etcd_cmp_result result, int64_t n, const char *value)
{
	static const char *const targets[] = { "VERSION", "CREATE", "MOD", "VALUE" };
	static const char *const fields[] = { "version", "create_revision", "mod_revision",
					      "value" };
	json_t *c = json_object();

	json_object_set_new(c, "key", key_json(key));
	json_object_set_new(c, "target", json_string(targets[target]));
	json_object_set_new(c, "result", json_string(result == ETCD_CMP_EQUAL ? "EQUAL"
									       : "NOT_EQUAL"));
	json_object_set_new(c, fields[target], target == ETCD_CMP_VALUE
						      ? b64_json(value, strlen(value))
						      : int64_json(n));
	return json_array_append_new(t->compare, c) ? -ENOMEM : 0;
}

int etcd_txn_put(struct etcd_txn *t, const char *key, const void *value, size_t len,
		 int64_t lease)
{
	return json_array_append_new(t->success,
				     json_pack("{s:o}", "request_put",
					       put_req(key, value, len, lease))) ? -ENOMEM : 0;
}

int etcd_txn_delete(struct etcd_txn *t, const char *key, const char *range_end)
{
	return json_array_append_new(t->success,
				     json_pack("{s:o}", "request_delete_range",
					       range_req(key, range_end))) ? -ENOMEM : 0;
}

size_t etcd_txn_ops(const struct etcd_txn *t)
{
	return json_array_size(t->success);
}

int etcd_txn_commit(struct etcd *e, const struct etcd_txn *t, bool *succeeded, int64_t *rev)
{
	json_t *req = json_pack("{s:O, s:O}", "compare", t->compare, "success", t->success);
	json_t *reply;
	int64_t r = 0;
	int ret;

	*succeeded = false;
	if (!req)
		return -ENOMEM;
	ret = etcd_call(e, "/v3/kv/txn", req, &reply);
	json_decref(req);
	if (ret)
		return ret;
	if (etcd_json_txn(reply, succeeded, &r))
		ret = -EIO;
	if (rev)
		*rev = r;
	json_decref(reply);
	return ret;
}

int etcd_compact(struct etcd *e, int64_t rev)
{
	return etcd_write(e, "/v3/kv/compaction",
			  json_pack("{s:o, s:b}", "revision", int64_json(rev), "physical", 1), NULL,
			  NULL);
}

/* Leases -------------------------------------------------------------------- */

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted)
{
	json_t *req = json_pack("{s:o}", "TTL", int64_json(ttl_s)), *reply;
	int ret = etcd_call(e, "/v3/lease/grant", req, &reply);

	json_decref(req);
	if (ret)
		return ret;
	if (etcd_json_int64(reply, "ID", id) || etcd_json_int64(reply, "TTL", granted) || !*id)
		ret = -EIO;
	json_decref(reply);
	return ret;
}

/* The gateway's keepalive is a stream: one request body gives one reply
 * ({"result": {ID, TTL}}; no TTL: the lease is gone). */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl)
{
	json_t *req = json_pack("{s:o}", "ID", int64_json(id)), *reply;
	int ret = etcd_call(e, "/v3/lease/keepalive", req, &reply);

	json_decref(req);
	*ttl = 0;
	if (ret)
		return ret;
	if (!json_is_object(json_object_get(reply, "result")) ||
	    etcd_json_int64(json_object_get(reply, "result"), "TTL", ttl))
		ret = -EIO;
	else if (*ttl <= 0)
		ret = -ENOENT;
	json_decref(reply);
	return ret;
}

int etcd_lease_revoke(struct etcd *e, int64_t id)
{
	return etcd_write(e, "/v3/lease/revoke", json_pack("{s:o}", "ID", int64_json(id)), NULL,
			  NULL);
}

/* Watches ------------------------------------------------------------------- */

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
	struct body line;     /* the stream, up to its next newline */
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
	if (atomic_load(&w->stop) || body_write(p, 1, len, &w->line) != len)
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
	json_t *req = range_req(w->prefix, w->end);
	char url[512], *s;
	struct body b = { .limit = 1 << 20 };
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
	curl_easy_setopt(w->probe, CURLOPT_WRITEFUNCTION, body_write);
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
		json_t *cr = range_req(w->prefix, w->end);
		char url[512], *req;
		CURLcode rc;
		int err;

		if (w->next_rev)
			json_object_set_new(cr, "start_revision", int64_json(w->next_rev));
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
		err = w->broken ? -EIO : rc == CURLE_OK ? -ECONNRESET : curl_errno(rc);
		if (w->connected) {
			log_warn("etcd watch on %s: %s", w->e->endpoints[ep],
				 w->broken ? "the member ended the watch"
				 : rc == CURLE_OK ? "the stream ended" : curl_easy_strerror(rc));
			w->connected = false;
			backoff = 100;
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
