/* auth.h: the web console's logins, without HTTP (docs/security.md):
 * users with Argon2id password hashes (kept by store/user_store.c),
 * sessions held here with an expiry (random 256-bit ids, base64url; a
 * restart of cellad ends them all), and a limit on failed logins per client
 * address. Thread-safe; one struct auth per API. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cerr.h"
#include "compiler.h"
#include "role.h"

#define AUTH_SID_LEN   43 /* 32 random bytes in unpadded base64url */
#define AUTH_USER_MAX  64
#define AUTH_MAX_SESSIONS 4096

struct auth;

struct auth_conf {
	const char *users_db;        /* SQLite file of the users (NULL: no password logins) */
	unsigned session_ttl_s;      /* a session's life from its login */
	unsigned login_per_minute;   /* failed logins an address may make per minute */
};

struct auth_session {
	char user[AUTH_USER_MAX + 16];
	enum role role;
	int64_t expires;             /* wall clock, seconds */
};

int auth_open(struct auth **out, const struct auth_conf *conf, char *err,
	      size_t errlen) __must_check;
void auth_close(struct auth *a);

/* A new session for user with role: its id in sid (AUTH_SID_LEN + 1
 * bytes). When the table is full the session closest to its end goes. */
int auth_session_new(struct auth *a, const char *user, enum role role, char *sid,
		     struct auth_session *out) __must_check;
/* The live session sid names: 0, or -ENOENT (none, or expired). */
int auth_session_get(struct auth *a, const char *sid, struct auth_session *out) __must_check;
/* End it at once: 0 or -ENOENT. */
int auth_session_end(struct auth *a, const char *sid);

/* Whether addr may try to log in now (else *retry_s: seconds to wait). */
bool auth_login_allowed(struct auth *a, const char *addr, unsigned *retry_s);
/* A failed login from addr: counted against it. */
void auth_login_failed(struct auth *a, const char *addr);

/* Users. Names: 1-63 of A-Z a-z 0-9 . _ - (starting alphanumerically);
 * passwords 8-1024 bytes. */
int auth_user_add(struct auth *a, const char *name, enum role role, const char *password,
		  struct cerr *e) __must_check;
/* The user's role when password is theirs: 0, or -EACCES (no such user or a
 * wrong password: the same answer, after the same work) or -EIO. */
int auth_user_check(struct auth *a, const char *name, const char *password,
		    enum role *role) __must_check;
int auth_user_delete(struct auth *a, const char *name, struct cerr *e) __must_check;
json_t *auth_user_list(struct auth *a, struct cerr *e);
