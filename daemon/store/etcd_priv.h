/* etcd_priv.h: what etcd.c (unary calls) and etcd_watch.c (watch threads)
 * share: the client's state and the HTTP helpers. store/ only. */
#pragma once
#include <pthread.h>

#include <curl/curl.h>

#include "etcd.h"

struct etcd {
	char *endpoints[ETCD_MAX_ENDPOINTS];
	unsigned nr_endpoints;
	char *ca, *cert, *key;
	unsigned timeout_ms;
	pthread_mutex_t lock; /* h, cur */
	CURL *h;              /* unary calls: one connection, kept alive */
	unsigned cur;         /* the member that answered last */
	struct etcd_stats *stats; /* the caller's, or NULL */
};

/* A reply body, grown as it comes, up to limit. */
struct etcd_body {
	char *data;
	size_t len, cap;
	size_t limit;
};

/* libcurl write callback appending to a struct etcd_body. */
size_t etcd_body_write(char *p, size_t size, size_t n, void *opaque);
/* The client's CA, certificate and key, protocols, no signals. */
void etcd_curl_tls(struct etcd *e, CURL *h);
/* A transfer's failure as -errno (etcd.h's list). */
int etcd_curl_errno(CURLcode rc);
/* {"key", "range_end"} in base64 (range_end may be NULL). */
json_t *etcd_range_req(const char *key, const char *range_end);
/* int64s go as strings, as the gateway writes them. */
json_t *etcd_int64_json(int64_t n);
