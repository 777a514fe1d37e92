/* peer.c: requests to a peer cellad over HTTPS with mutual TLS (libcurl). */
#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bodybuf.h"

#define PEER_REPLY_MAX (1u << 20)
#define PEER_CONNECT_TIMEOUT_S 10L

struct upload {
	int fd;
	uint64_t off, size;
};

static size_t read_file(char *buf, size_t size, size_t n, void *opaque)
{
	struct upload *u = opaque;
	size_t want = size * n;
	ssize_t got;

	if (u->off >= u->size)
		return 0;
	if (want > u->size - u->off)
		want = (size_t)(u->size - u->off);
	do
		got = pread(u->fd, buf, want, (off_t)u->off);
	while (got < 0 && errno == EINTR);
	if (got <= 0)
		return CURL_READFUNC_ABORT; /* the file shrank or failed: the upload fails */
	u->off += (uint64_t)got;
	return (size_t)got;
}

void peer_setopt_tls(void *curl, const struct peer *p)
{
	CURL *h = curl;

	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, PEER_CONNECT_TIMEOUT_S);
	/* HTTPS only, TLS 1.3, both sides' certificates from the pool's CA;
	 * never follow a redirect elsewhere with the token. */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
	curl_easy_setopt(h, CURLOPT_CAINFO, p->ca);
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(h, CURLOPT_SSLCERT, p->cert);
	curl_easy_setopt(h, CURLOPT_SSLKEY, p->key);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
}

static int perform(const struct peer *p, const char *method, const char *path, long timeout_s,
		   CURL *h, struct curl_slist *hdrs, long *status, json_t **reply, char *err,
		   size_t errlen)
{
	char url[1024], auth[600], cerr[CURL_ERROR_SIZE] = "";
	struct bodybuf b = { .max = PEER_REPLY_MAX }; /* a peer's answer is small JSON */
	CURLcode rc;

	*reply = NULL;
	*status = 0;
	snprintf(url, sizeof(url), "%s%s", p->url, path);
	if (p->token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	for (const char *const *h = p->headers; h && *h; h++)
		hdrs = curl_slist_append(hdrs, *h);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
	peer_setopt_tls(h, p);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		if (b.len)
			*reply = json_loadb(b.p, b.len, 0, NULL);
	} else {
		snprintf(err, errlen, "cannot reach host %s at %s: %s", p->name, p->url,
			 cerr[0] ? cerr : curl_easy_strerror(rc));
	}
	free(b.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return rc == CURLE_OK ? 0 : -1;
}

int peer_call(const struct peer *p, const char *method, const char *path, json_t *body,
	      long timeout_s, long *status, json_t **reply, char *err, size_t errlen)
{
	struct curl_slist *hdrs = NULL;
	char *payload = NULL;
	CURL *h = curl_easy_init();
	int ret;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		if (!payload) {
			curl_easy_cleanup(h);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
	}
	ret = perform(p, method, path, timeout_s, h, hdrs, status, reply, err, errlen);
	if (payload) /* may hold a definition: nothing secret, but no need to keep it */
		free(payload);
	return ret;
}

int peer_upload(const struct peer *p, const char *path, int fd, uint64_t size, long timeout_s,
		long *status, json_t **reply, char *err, size_t errlen)
{
	struct peer_upload_opts o = { .len = size, .timeout_s = timeout_s };

	return peer_upload_range(p, path, fd, &o, status, reply, err, errlen);
}

int peer_upload_range(const struct peer *p, const char *path, int fd,
		      struct peer_upload_opts *o, long *status, json_t **reply, char *err,
		      size_t errlen)
{
	struct upload u = { .fd = fd, .off = o->off, .size = o->off + o->len };
	struct curl_slist *hdrs = NULL;
	CURL *h = curl_easy_init();
	int ret;

	o->sent = 0;
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_file);
	curl_easy_setopt(h, CURLOPT_READDATA, &u);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)o->len);
	if (o->max_bps)
		curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)o->max_bps);
	if (o->stall_s) { /* a link that went quiet: given up on after stall_s */
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->stall_s);
	}
	ret = perform(p, "PUT", path, o->timeout_s, h, hdrs, status, reply, err, errlen);
	o->sent = u.off - o->off;
	return ret;
}

void peer_error_text(const struct peer *p, long status, json_t *reply, char *err, size_t len)
{
	json_t *e = json_object_get(reply, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));

	snprintf(err, len, "host %s: %s (HTTP %ld)", p->name, msg ? msg : "no error message",
		 status);
}
