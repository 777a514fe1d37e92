/* client.h: the cella CLI's HTTP client for cellad (libcurl over the Unix
 * socket, or TCP with a bearer token) and its exit statuses. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "compiler.h"

/* Exit statuses scripts can rely on (docs/cellad.md). */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_API = 1,         /* cellad refused or failed the request */
	EXIT_USAGE = 2,       /* bad command line */
	EXIT_UNREACHABLE = 3, /* cannot reach cellad */
	EXIT_NOT_FOUND = 4,   /* no such VM (HTTP 404) */
	EXIT_STATE = 5,       /* refused in the VM's current state (HTTP 409) */
};

struct client {
	const char *socket; /* Unix socket path (default) */
	const char *url;    /* base URL for TCP, e.g. https://host:8419 */
	const char *token;
	const char *ca;     /* CA file that signed cellad's certificate (TCP) */
	bool json; /* print raw JSON */
};

/* One request. body (not consumed) may be NULL. On a 2xx reply *out gets
 * the parsed JSON (or NULL for an empty body) and EXIT_OK is returned;
 * otherwise the error is printed and the exit status returned. */
int client_call(struct client *c, const char *method, const char *path, json_t *body,
                json_t **out) __must_check;
/* client_call that consumes body (json_decref, also on failure). */
int client_send(struct client *c, const char *method, const char *path, json_t *body,
                json_t **out) __must_check;
/* POST raw bytes (console input). */
int client_post_raw(struct client *c, const char *path, const void *data, size_t len) __must_check;
/* GET a streamed resource, passing each chunk to fn until the stream ends,
 * fn returns false, or *stop becomes true. */
int client_stream(struct client *c, const char *path, bool (*fn)(void *, const char *, size_t),
                  void *opaque, volatile bool *stop) __must_check;
/* GET text (Prometheus) and print it. */
int client_get_text(struct client *c, const char *path) __must_check;
