/* peer.h: cellad's client for another host's cellad (moves): JSON requests
 * and streamed file uploads over its HTTPS API: mutual TLS 1.3 (this host's
 * certificate, the peers' CA, the peer's name checked), and its bearer
 * token (libcurl; curl_global_init runs in main before any thread). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* The connection and TLS options every peer request uses (a CURL *: the
 * connect timeout, HTTPS only, TLS 1.3, p's certificate, key and CA, the
 * peer's certificate and name checked, no redirects). */
void peer_setopt_tls(void *curl, const struct peer *p);

/* A request whose answer may stream (a console forwarded to its owner,
 * docs/pool.md): the transfer runs on a thread of its own into a bounded
 * buffer (64 KiB) that the reader drains; while it is full the transfer
 * waits (the peer's TCP window closes), and once the reader closes it the
 * transfer ends (at once, or within a second while the peer is silent). */
struct peer_stream;
struct peer_stream_req {
	const char *method, *path;
	const void *body;         /* sent as is (NULL: none) */
	size_t len;
	const char *content_type; /* of body */
	bool stream;              /* a 200 answer streams (else it is collected as JSON) */
	long answer_timeout_s;    /* the most to wait for the status (and a non-streamed answer) */
	/* Called exactly once when the transfer is over (its thread ends, or
	 * it never started); may be NULL. */
	void (*on_end)(void *arg);
	void *on_end_arg;
};
/* 0 once the peer answered: *status, and either *out (a 200 with
 * req->stream: read it, then peer_stream_close) or *reply (its JSON, or
 * NULL). -1 when it could not be reached or did not answer in time (err). */
int peer_stream_open(const struct peer *p, const struct peer_stream_req *req, long *status,
		     json_t **reply, struct peer_stream **out, char *err, size_t errlen) __must_check;
/* Up to max bytes: the count; 0 when nothing came within timeout_ms; -1 at
 * the end of the answer; -2 when the transfer broke (the peer went away). */
ssize_t peer_stream_read(struct peer_stream *ps, char *buf, size_t max, int timeout_ms);
/* For an event loop: fn(arg) once per successful arm, when there may be
 * more to read; arm returns false when there is something now; disarm
 * returns whether it was armed (then the caller owes the wake itself). */
void peer_stream_set_wake(struct peer_stream *ps, void (*fn)(void *arg), void *arg);
bool peer_stream_arm(struct peer_stream *ps);
bool peer_stream_disarm(struct peer_stream *ps);
/* The reader is done: the transfer ends, the stream is freed when its
 * thread is. */
void peer_stream_close(struct peer_stream *ps);
