/* peer.h: cellad's client for another host's cellad (moves): JSON requests
 * and streamed file uploads over its HTTPS API: mutual TLS 1.3 (this host's
 * certificate, the peers' CA, the peer's name checked), and its bearer
 * token (libcurl; curl_global_init runs in main before any thread). */
#pragma once
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"

struct peer {
	const char *name;   /* for messages */
	const char *url;    /* https://ADDR:PORT */
	const char *token;  /* NULL: no bearer token (a pool host: its certificate says who) */
	/* This host's certificate and key, and the CA peers are checked against. */
	const char *cert, *key, *ca;
	const char *const *headers; /* more request headers ("Name: value"), NULL-terminated */
};

/* features/move.c: the peer host called name (cella host add) as a peer to
 * call, with this host's TLS material: its entry (which keeps p's strings;
 * json_decref it after), or NULL with e (no such host, no TLS material). */
struct sup;
struct cerr;
json_t *peer_find(struct sup *s, const char *name, struct peer *p, struct cerr *e);

/* One request; body (not consumed) may be NULL. Returns 0 once an answer
 * came (*status is its HTTP status, *reply its JSON or NULL), or -1 when
 * the peer could not be reached or did not answer within timeout_s (err
 * says why). */
int peer_call(const struct peer *p, const char *method, const char *path, json_t *body,
	      long timeout_s, long *status, json_t **reply, char *err, size_t errlen) __must_check;
/* PUT size bytes of fd (from offset 0) to path; same results. */
int peer_upload(const struct peer *p, const char *path, int fd, uint64_t size, long timeout_s,
		long *status, json_t **reply, char *err, size_t errlen) __must_check;
/* PUT len bytes of fd from offset off to path, at most max_bps bytes/s
 * (0: no cap), given up on when nothing moved for stall_s seconds (0: only
 * timeout_s); sent: the bytes handed to the connection (set either way).
 * Same results as peer_upload. */
struct peer_upload_opts {
	uint64_t off, len, max_bps;
	long stall_s, timeout_s;
	uint64_t sent; /* out */
};
int peer_upload_range(const struct peer *p, const char *path, int fd,
		      struct peer_upload_opts *o, long *status, json_t **reply, char *err,
		      size_t errlen) __must_check;
/* "HOST: <the peer's error message> (HTTP N)" from a failed answer. */
void peer_error_text(const struct peer *p, long status, json_t *reply, char *err, size_t len);
