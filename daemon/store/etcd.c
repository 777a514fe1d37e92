/* etcd.c: the etcd v3 client's HTTP side (libcurl): unary calls with
 * failover across members, transactions and leases. The JSON of requests
 * is built here; replies are read by etcd_json.c; watches are in
 * etcd_watch.c. */
#include "etcd_priv.h"
#include "etcd_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"


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
	e->stats = conf->stats;
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

size_t etcd_body_write(char *p, size_t size, size_t n, void *opaque)
{
	struct etcd_body *b = opaque;
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

void etcd_curl_tls(struct etcd *e, CURL *h)
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

int etcd_curl_errno(CURLcode rc)
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
	struct etcd_body b = { .limit = 64u << 20 };
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
	curl_easy_setopt(e->h, CURLOPT_WRITEFUNCTION, etcd_body_write);
	curl_easy_setopt(e->h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e->h, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(e->h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
	rc = curl_easy_perform(e->h);
	if (rc != CURLE_OK) {
		ret = etcd_curl_errno(rc);
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
	/* -ENOENT (a lease gone) and -EINVAL are answers: etcd was there. */
	etcd_stats_count(e->stats, path, ret,
			 ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -ECONNRESET);
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

json_t *etcd_int64_json(int64_t n)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, n);
	return json_string(s);
}

json_t *etcd_range_req(const char *key, const char *range_end)
{
	json_t *r = json_object();

	json_object_set_new(r, "key", key_json(key));
	if (range_end)
		json_object_set_new(r, "range_end", key_json(range_end));
	return r;
}

int etcd_range(struct etcd *e, const char *key, const char *range_end, struct etcd_kvs *out)
{
	json_t *req = etcd_range_req(key, range_end), *reply;
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
		json_object_set_new(r, "lease", etcd_int64_json(lease));
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
	int ret = etcd_write(e, "/v3/kv/deleterange", etcd_range_req(key, range_end), rev, &n);

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
						      : etcd_int64_json(n));
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
					       etcd_range_req(key, range_end))) ? -ENOMEM : 0;
}

int etcd_txn_get(struct etcd_txn *t, const char *key)
{
	return json_array_append_new(t->success,
				     json_pack("{s:o}", "request_range",
					       etcd_range_req(key, NULL))) ? -ENOMEM : 0;
}

size_t etcd_txn_ops(const struct etcd_txn *t)
{
	return json_array_size(t->success);
}

int etcd_txn_commit(struct etcd *e, const struct etcd_txn *t, bool *succeeded, int64_t *rev)
{
	return etcd_txn_commit_read(e, t, succeeded, rev, NULL, 0);
}

int etcd_txn_commit_read(struct etcd *e, const struct etcd_txn *t, bool *succeeded,
			 int64_t *rev, struct etcd_kv *got, size_t n)
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
	if (etcd_json_txn(reply, succeeded, &r) ||
	    (n && *succeeded && etcd_json_txn_reads(reply, got, n)))
		ret = -EIO;
	if (rev)
		*rev = r;
	json_decref(reply);
	return ret;
}

int etcd_compact(struct etcd *e, int64_t rev)
{
	return etcd_write(e, "/v3/kv/compaction",
			  json_pack("{s:o, s:b}", "revision", etcd_int64_json(rev), "physical", 1), NULL,
			  NULL);
}

/* Leases -------------------------------------------------------------------- */

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted)
{
	json_t *req = json_pack("{s:o}", "TTL", etcd_int64_json(ttl_s)), *reply;
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
	json_t *req = json_pack("{s:o}", "ID", etcd_int64_json(id)), *reply;
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
	return etcd_write(e, "/v3/lease/revoke", json_pack("{s:o}", "ID", etcd_int64_json(id)), NULL,
			  NULL);
}
