/* auth.c: users, sessions and failed-login limits (auth.h). Sessions live
 * in memory only: an id is worthless after cellad restarts or after its
 * expiry, and ending one removes it here at once. */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <argon2.h>

#include "user_store.h"

/* Argon2id at RFC 9106's second recommended option's scale, sized for a
 * host that serves VMs: 19 MiB, 2 passes, 1 lane (OWASP's minimum). */
#define KDF_T_COST 2
#define KDF_M_COST (19 * 1024)
#define KDF_LANES  1
#define KDF_SALT   16
#define KDF_HASH   32
#define HASH_MAX   160

#define LIMIT_SLOTS 256

struct session {
	char sid[AUTH_SID_LEN + 1];
	struct auth_session s;
};

struct limit {
	char addr[64];
	double tokens;     /* failures still allowed */
	int64_t last_ms;   /* when tokens was computed */
};

struct auth {
	struct auth_conf conf;
	struct user_store *users;
	pthread_mutex_t lock;
	struct session *sessions; /* AUTH_MAX_SESSIONS slots; sid[0] == 0: free */
	struct limit limits[LIMIT_SLOTS];
	char dummy_hash[HASH_MAX]; /* checked for unknown users: the same work */
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int random_bytes(void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom((char *)buf + got, n - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		got += (size_t)r;
	}
	return 0;
}

static void base64url(const unsigned char *in, size_t n, char *out)
{
	static const char al[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned bits = 0, acc = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			*out++ = al[(acc >> (bits - 6)) & 63];
			bits -= 6;
		}
	}
	if (bits)
		*out++ = al[(acc << (6 - bits)) & 63];
	*out = 0;
}

static int hash_password(const char *password, char *out, size_t len)
{
	unsigned char salt[KDF_SALT];

	if (random_bytes(salt, sizeof(salt)))
		return -EIO;
	return argon2id_hash_encoded(KDF_T_COST, KDF_M_COST, KDF_LANES, password,
				     strlen(password), salt, sizeof(salt), KDF_HASH, out,
				     len) == ARGON2_OK ? 0 : -EIO;
}

int auth_open(struct auth **out, const struct auth_conf *conf, char *err, size_t errlen)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (!a || !(a->sessions = calloc(AUTH_MAX_SESSIONS, sizeof(*a->sessions)))) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->conf = *conf;
	if (!a->conf.session_ttl_s)
		a->conf.session_ttl_s = 8 * 3600;
	if (!a->conf.login_per_minute)
		a->conf.login_per_minute = 10;
	if (conf->users_db) {
		int ret = user_store_open(&a->users, conf->users_db, err, errlen);

		if (ret) {
			free(a->sessions);
			free(a);
			return ret;
		}
	}
	if (hash_password("not-a-password-of-anyone", a->dummy_hash, sizeof(a->dummy_hash))) {
		snprintf(err, errlen, "Argon2id hashing failed");
		user_store_close(a->users);
		free(a->sessions);
		free(a);
		return -EIO;
	}
	pthread_mutex_init(&a->lock, NULL);
	*out = a;
	return 0;
}

void auth_close(struct auth *a)
{
	if (!a)
		return;
	user_store_close(a->users);
	explicit_bzero(a->sessions, AUTH_MAX_SESSIONS * sizeof(*a->sessions));
	free(a->sessions);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* Constant time over the length of an id. */
static bool sid_eq(const char *a, const char *b)
{
	unsigned diff = 0;

	for (size_t i = 0; i < AUTH_SID_LEN; i++)
		diff |= (unsigned)(a[i] ^ b[i]);
	return diff == 0;
}

int auth_session_new(struct auth *a, const char *user, enum role role, char *sid,
		     struct auth_session *out)
{
	unsigned char raw[32];
	struct session *slot = NULL;
	int64_t now = now_s();

	if (random_bytes(raw, sizeof(raw)))
		return -EIO;
	base64url(raw, sizeof(raw), sid);
	explicit_bzero(raw, sizeof(raw));
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < AUTH_MAX_SESSIONS; i++) {
		struct session *s = &a->sessions[i];

		if (!s->sid[0] || s->s.expires <= now) {
			slot = s;
			break;
		}
		if (!slot || s->s.expires < slot->s.expires)
			slot = s;
	}
	memset(slot, 0, sizeof(*slot));
	memcpy(slot->sid, sid, AUTH_SID_LEN + 1);
	snprintf(slot->s.user, sizeof(slot->s.user), "%s", user);
	slot->s.role = role;
	slot->s.expires = now + a->conf.session_ttl_s;
	*out = slot->s;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

static struct session *session_find(struct auth *a, const char *sid)
{
	if (strlen(sid) != AUTH_SID_LEN)
		return NULL;
	for (size_t i = 0; i < AUTH_MAX_SESSIONS; i++)
		if (a->sessions[i].sid[0] && sid_eq(a->sessions[i].sid, sid))
			return &a->sessions[i];
	return NULL;
}

int auth_session_get(struct auth *a, const char *sid, struct auth_session *out)
{
	struct session *s;
	int ret = -ENOENT;

	pthread_mutex_lock(&a->lock);
	s = session_find(a, sid);
	if (s && s->s.expires > now_s()) {
		*out = s->s;
		ret = 0;
	} else if (s) {
		memset(s, 0, sizeof(*s));
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

int auth_session_end(struct auth *a, const char *sid)
{
	struct session *s;

	pthread_mutex_lock(&a->lock);
	s = session_find(a, sid);
	if (s)
		explicit_bzero(s, sizeof(*s));
	pthread_mutex_unlock(&a->lock);
	return s ? 0 : -ENOENT;
}

/* The limit slot of addr (lock held): a token bucket of failures that
 * refills login_per_minute per minute; a new address takes the slot
 * that refilled longest ago. */
static struct limit *limit_of(struct auth *a, const char *addr)
{
	struct limit *free_slot = NULL;
	int64_t now = mono_ms();
	double cap = a->conf.login_per_minute;

	for (size_t i = 0; i < LIMIT_SLOTS; i++) {
		struct limit *l = &a->limits[i];

		if (l->addr[0] && !strcmp(l->addr, addr)) {
			l->tokens += (double)(now - l->last_ms) * cap / 60000.0;
			if (l->tokens > cap)
				l->tokens = cap;
			l->last_ms = now;
			return l;
		}
		if (!free_slot || !l->addr[0] || (free_slot->addr[0] && l->last_ms < free_slot->last_ms))
			free_slot = l;
	}
	snprintf(free_slot->addr, sizeof(free_slot->addr), "%s", addr);
	free_slot->tokens = cap;
	free_slot->last_ms = now;
	return free_slot;
}

bool auth_login_allowed(struct auth *a, const char *addr, unsigned *retry_s)
{
	struct limit *l;
	bool ok;

	pthread_mutex_lock(&a->lock);
	l = limit_of(a, addr);
	ok = l->tokens >= 1.0;
	if (!ok)
		*retry_s = (unsigned)((1.0 - l->tokens) * 60.0 / a->conf.login_per_minute) + 1;
	pthread_mutex_unlock(&a->lock);
	return ok;
}

void auth_login_failed(struct auth *a, const char *addr)
{
	pthread_mutex_lock(&a->lock);
	limit_of(a, addr)->tokens -= 1.0;
	pthread_mutex_unlock(&a->lock);
}

static bool user_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
				  (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static enum role role_parse(const char *s)
{
	return !strcmp(s, "admin") ? ROLE_ADMIN : !strcmp(s, "operator") ? ROLE_OPERATOR
	       : !strcmp(s, "viewer") ? ROLE_VIEWER : ROLE_NONE;
}

static void sessions_end_user(struct auth *a, const char *name)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < AUTH_MAX_SESSIONS; i++)
		if (a->sessions[i].sid[0] && !strcmp(a->sessions[i].s.user, name))
			explicit_bzero(&a->sessions[i], sizeof(a->sessions[i]));
	pthread_mutex_unlock(&a->lock);
}

int auth_user_add(struct auth *a, const char *name, enum role role, const char *password,
		  struct cerr *e)
{
	char hash[HASH_MAX];
	size_t pl = strlen(password);
	int ret;

	if (!a->users)
		return cerr_set(e, CERR_UNAVAILABLE, "", "no user store");
	if (!user_name_ok(name))
		return cerr_set(e, CERR_INVALID, "name", "expected 1-63 of A-Z a-z 0-9 . _ -, "
				"starting with a letter or digit");
	if (role == ROLE_NONE)
		return cerr_set(e, CERR_INVALID, "role", "expected viewer, operator or admin");
	if (pl < 8 || pl > 1024)
		return cerr_set(e, CERR_INVALID, "password", "expected 8 to 1024 bytes");
	if (hash_password(password, hash, sizeof(hash)))
		return cerr_set(e, CERR_INTERNAL, "password", "hashing failed");
	ret = user_store_put(a->users, name, role_name(role), hash);
	explicit_bzero(hash, sizeof(hash));
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot store the user");
	/* A new password or role: the user's sessions end. */
	sessions_end_user(a, name);
	return 0;
}

int auth_user_check(struct auth *a, const char *name, const char *password, enum role *role)
{
	char r[16] = "", hash[HASH_MAX] = "";
	int ret = a->users && user_name_ok(name)
			  ? user_store_get(a->users, name, r, sizeof(r), hash, sizeof(hash))
			  : -ENOENT;
	bool ok;

	if (ret == -EIO)
		return -EIO;
	/* An unknown user costs the same as a known one. */
	ok = argon2id_verify(ret ? a->dummy_hash : hash, password, strlen(password)) == ARGON2_OK;
	explicit_bzero(hash, sizeof(hash));
	if (ret || !ok || role_parse(r) == ROLE_NONE)
		return -EACCES;
	*role = role_parse(r);
	return 0;
}

int auth_user_delete(struct auth *a, const char *name, struct cerr *e)
{
	int ret;

	if (!a->users)
		return cerr_set(e, CERR_NOT_FOUND, "name", "no such user");
	if (!user_name_ok(name))
		return cerr_set(e, CERR_INVALID, "name", "not a valid user name");
	ret = user_store_delete(a->users, name);
	if (ret == -ENOENT)
		return cerr_set(e, CERR_NOT_FOUND, "name", "no such user");
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot delete the user");
	sessions_end_user(a, name); /* their sessions end with them */
	return 0;
}

json_t *auth_user_list(struct auth *a, struct cerr *e)
{
	json_t *l = a->users ? user_store_list(a->users) : json_array();

	if (!l)
		cerr_set(e, CERR_INTERNAL, "", "cannot read the users");
	return l;
}
