/* api.h: cellad's HTTP/1.1 + JSON API (libmicrohttpd) on a Unix socket,
 * and optionally on TCP where every request needs the bearer token. The
 * contract is docs/api/openapi.json. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"
#include "role.h"

struct sup;
struct api;


/* A user or group (by name or numeric id) given a role on the Unix socket. */
struct api_principal {
	const char *name;
	bool group;
	enum role role;
};

/* A bearer token accepted on TCP, with the role it gives. */
struct api_token {
	const char *token;
	enum role role;
};

#define API_MAX_PRINCIPALS 64
#define API_MAX_TOKENS 16

struct api_conf {
	const char *socket_path;   /* Unix socket (created, mode 0660) */
	const char *socket_group;  /* group owning the socket; NULL/"" to leave it */
	const char *tcp_address;   /* NULL: no TCP listener */
	unsigned tcp_port;
	const char *token;         /* required for TCP (role admin) */
	struct api_token tokens[API_MAX_TOKENS]; /* more TCP tokens, with their roles */
	unsigned nr_tokens;
	struct api_principal principals[API_MAX_PRINCIPALS]; /* Unix socket roles */
	unsigned nr_principals;
	/* TCP is HTTPS only (TLS 1.3): this host's certificate and key, and
	 * the CA whose certificates identify peer hosts (PEM files). */
	const char *tls_cert, *tls_key, *tls_ca;
	unsigned tcp_idle_timeout_s;  /* TCP: a silent connection is closed after this */
	unsigned tcp_per_client;      /* TCP: connections one address may hold */
	size_t max_body;           /* bytes */
	const char *ui_dir;        /* the web console's files, served at /ui (NULL: none) */
	/* The web console's logins (docs/web.md): the users' SQLite file, a
	 * session's life, failed logins allowed per client address and minute,
	 * and a plain-HTTP listener on 127.0.0.1 for a local try (0: none). */
	const char *users_db;
	unsigned session_ttl_s;
	unsigned login_per_minute;
	unsigned http_loopback_port;
	/* Called once a response whose handler asked cellad to start again
	 * (pool create, join, leave) is sent. */
	void (*on_restart)(void);
};

int api_start(struct api **out, const struct api_conf *conf, struct sup *s) __must_check;
void api_stop(struct api *a);
