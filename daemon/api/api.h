/* api.h: cellad's HTTP/1.1 + JSON API (libmicrohttpd) on a Unix socket,
 * and optionally on TCP where every request needs the bearer token. The
 * contract is docs/api/openapi.json. */
#pragma once
#include <stddef.h>

#include "compiler.h"

struct sup;
struct api;

struct api_conf {
	const char *socket_path;   /* Unix socket (created, mode 0660) */
	const char *socket_group;  /* group owning the socket; NULL/"" to leave it */
	const char *tcp_address;   /* NULL: no TCP listener */
	unsigned tcp_port;
	const char *token;         /* required for TCP */
	unsigned tcp_idle_timeout_s;  /* TCP: a silent connection is closed after this */
	unsigned tcp_per_client;      /* TCP: connections one address may hold */
	size_t max_body;           /* bytes */
};

int api_start(struct api **out, const struct api_conf *conf, struct sup *s) __must_check;
void api_stop(struct api *a);
