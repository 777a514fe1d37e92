/* client.c: libcurl requests to cellad, error reporting and exit statuses. */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bodybuf.h"

static CURL *client_handle(struct client *c, const char *method, const char *path,
                           struct curl_slist **hdrs)
{
	CURL *h = curl_easy_init();
	char url[2048], auth[512];

	if (!h)
		return NULL;
	if (c->url) {
		snprintf(url, sizeof(url), "%s%s", c->url, path);
		/* cellad's TCP API is HTTPS (TLS 1.3) only; the token never
		 * travels in clear, nor to a redirect. */
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		if (c->ca)
			curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
	} else {
		snprintf(url, sizeof(url), "http://localhost%s", path);
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (c->token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
		*hdrs = curl_slist_append(*hdrs, auth);
	}
	*hdrs = curl_slist_append(*hdrs, "Expect:");
	return h;
}

static int status_exit(long status)
{
	if (status >= 200 && status < 300)
		return EXIT_OK;
	if (status == 404)
		return EXIT_NOT_FOUND;
	if (status == 409)
		return EXIT_STATE;
	return EXIT_API;
}

/* Print an API error from its JSON body. */
static void print_error(struct client *c, long status, const char *body)
{
	json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");

	if (c->json && j)
		fprintf(stderr, "%s\n", body);
	else if (e)
		fprintf(stderr, "cella: %s%s%s%s (HTTP %ld)\n",
		        json_string_value(json_object_get(e, "message")) ?: "error",
		        json_object_get(e, "state") ? " [state: " : "",
		        json_string_value(json_object_get(e, "state")) ?: "",
		        json_object_get(e, "state") ? "]" : "", status);
	else
		fprintf(stderr, "cella: HTTP %ld\n", status);
	json_decref(j);
}

static int perform(struct client *c, CURL *h, struct bodybuf *b, long *status)
{
	char err[CURL_ERROR_SIZE] = "";
	CURLcode rc;

	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "cella: cannot reach cellad at %s: %s\n",
		        c->url ? c->url : c->socket, err[0] ? err : curl_easy_strerror(rc));
		return EXIT_UNREACHABLE;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if (*status < 200 || *status >= 300) {
		print_error(c, *status, b ? b->p : NULL);
		return status_exit(*status);
	}
	return EXIT_OK;
}

int client_call(struct client *c, const char *method, const char *path, json_t *body, json_t **out)
{
	struct curl_slist *hdrs = NULL;
	struct bodybuf b = {0};
	char *payload = NULL;
	long status = 0;
	CURL *h;
	int ret;

	if (out)
		*out = NULL;
	h = client_handle(c, method, path, &hdrs);
	if (!h)
		return EXIT_API;
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	ret = perform(c, h, &b, &status);
	if (ret == EXIT_OK && out && b.len)
		*out = json_loads(b.p, 0, NULL);
	free(b.p);
	free(payload);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}

int client_send(struct client *c, const char *method, const char *path, json_t *body, json_t **out)
{
	int ret = client_call(c, method, path, body, out);

	json_decref(body);
	return ret;
}

int client_post_raw(struct client *c, const char *path, const void *data, size_t len)
{
	struct curl_slist *hdrs = NULL;
	struct bodybuf b = {0};
	long status = 0;
	CURL *h = client_handle(c, "POST", path, &hdrs);
	int ret;

	if (!h)
		return EXIT_API;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	ret = perform(c, h, &b, &status);
	free(b.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}

struct stream {
	bool (*fn)(void *, const char *, size_t);
	void *opaque;
	volatile bool *stop;
	long status;
	CURL *h;
	struct bodybuf err; /* the body when the reply is an error */
};

static size_t stream_write(char *data, size_t size, size_t n, void *opaque)
{
	struct stream *s = opaque;

	if (!s->status)
		curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status < 200 || s->status >= 300)
		return bodybuf_collect(data, size, n, &s->err);
	if ((s->stop && *s->stop) || !s->fn(s->opaque, data, size * n))
		return 0;
	return size * n;
}

static int stream_progress(void *opaque, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct stream *s = opaque;

	(void)a, (void)b, (void)c, (void)d;
	return s->stop && *s->stop;
}

int client_stream(struct client *c, const char *path, bool (*fn)(void *, const char *, size_t),
                  void *opaque, volatile bool *stop)
{
	struct curl_slist *hdrs = NULL;
	struct stream s = {.fn = fn, .opaque = opaque, .stop = stop};
	char err[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	int ret = EXIT_OK;

	s.h = client_handle(c, "GET", path, &hdrs);
	if (!s.h)
		return EXIT_API;
	curl_easy_setopt(s.h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, stream_write);
	curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(s.h, CURLOPT_XFERINFOFUNCTION, stream_progress);
	curl_easy_setopt(s.h, CURLOPT_XFERINFODATA, &s);
	curl_easy_setopt(s.h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(s.h, CURLOPT_ERRORBUFFER, err);
	rc = curl_easy_perform(s.h);
	curl_easy_getinfo(s.h, CURLINFO_RESPONSE_CODE, &s.status);
	if (rc == CURLE_COULDNT_CONNECT || (rc != CURLE_OK && !s.status)) {
		fprintf(stderr, "cella: cannot reach cellad at %s: %s\n",
		        c->url ? c->url : c->socket, err[0] ? err : curl_easy_strerror(rc));
		ret = EXIT_UNREACHABLE;
	} else if (s.status < 200 || s.status >= 300) {
		print_error(c, s.status, s.err.p);
		ret = status_exit(s.status);
	}
	free(s.err.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(s.h);
	return ret;
}

int client_get_text(struct client *c, const char *path)
{
	struct curl_slist *hdrs = NULL;
	struct bodybuf b = {0};
	long status = 0;
	CURL *h = client_handle(c, "GET", path, &hdrs);
	int ret;

	if (!h)
		return EXIT_API;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	ret = perform(c, h, &b, &status);
	if (ret == EXIT_OK && b.p)
		fputs(b.p, stdout);
	free(b.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}
