/* test_web_auth.c: the web console's logins without HTTP: the Cookie,
 * Origin and Accept-Encoding parsers (daemon/api/web_parse.c), and
 * core/auth.c's sessions (random distinct ids, expiry, ending), failed-login
 * limits, and users (Argon2id hashes, wrong passwords, deletion ending
 * sessions) on a temporary SQLite file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "web_parse.h"

/* core/storage.c's, which this test does not link. */
const char *role_name(enum role r)
{
	static const char *const names[] = { "none", "viewer", "operator", "admin" };

	return (unsigned)r < 4 ? names[r] : "?";
}

static void test_cookie(void **st)
{
	char v[44];

	(void)st;
	assert_int_equal(web_cookie_find("a=1; cella_session=abc; b=2", "cella_session", v,
					 sizeof(v)), 1);
	assert_string_equal(v, "abc");
	assert_int_equal(web_cookie_find("cella_session=\"q\"", "cella_session", v, sizeof(v)), 1);
	assert_string_equal(v, "q");
	assert_int_equal(web_cookie_find("xcella_session=1; cella_sessionx=2", "cella_session", v,
					 sizeof(v)), 0);
	assert_int_equal(web_cookie_find("cella_session", "cella_session", v, sizeof(v)), 0);
	assert_int_equal(web_cookie_find(NULL, "cella_session", v, sizeof(v)), 0);
	assert_int_equal(web_cookie_find(";;;=;", "cella_session", v, sizeof(v)), 0);
	assert_int_equal(web_cookie_find("cella_session=a b", "cella_session", v, sizeof(v)), -1);
	assert_int_equal(web_cookie_find("cella_session=a\\b", "cella_session", v, sizeof(v)), -1);
	assert_int_equal(web_cookie_find("cella_session=0123456789", "cella_session", v, 10), -1);
	assert_int_equal(web_cookie_find("cella_session=012345678", "cella_session", v, 10), 1);
	assert_int_equal(web_cookie_find("cella_session=", "cella_session", v, sizeof(v)), 1);
	assert_string_equal(v, "");
}

static void test_origin(void **st)
{
	(void)st;
	assert_true(web_origin_same("https://h.example:8419", "h.example:8419", true));
	assert_true(web_origin_same("HTTPS://H.Example:8419", "h.example:8419", true));
	assert_true(web_origin_same("https://h.example", "h.example:443", true));
	assert_true(web_origin_same("https://h.example:443", "h.example", true));
	assert_true(web_origin_same("http://127.0.0.1:8420", "127.0.0.1:8420", false));
	assert_true(web_origin_same("https://[::1]:8419", "[::1]:8419", true));
	assert_false(web_origin_same("http://h.example:8419", "h.example:8419", true));
	assert_false(web_origin_same("https://h.example:8419", "h.example:8419", false));
	assert_false(web_origin_same("https://h.example:8420", "h.example:8419", true));
	assert_false(web_origin_same("https://h.example", "h.example:8419", true));
	assert_false(web_origin_same("https://h.example.evil:8419", "h.example:8419", true));
	assert_false(web_origin_same("https://h.example:8419/", "h.example:8419", true));
	assert_false(web_origin_same("https://u@h.example:8419", "h.example:8419", true));
	assert_false(web_origin_same("null", "h.example", true));
	assert_false(web_origin_same("", "h.example", true));
	assert_false(web_origin_same(NULL, "h.example", true));
	assert_false(web_origin_same("https://h.example", NULL, true));
	assert_false(web_origin_same("https://h.example:0", "h.example:0", true));
	assert_false(web_origin_same("https://h.example:99999", "h.example:99999", true));
	assert_false(web_origin_same("https://h.example:", "h.example:", true));
	assert_false(web_origin_same("https://[::1", "[::1", true));
}

static void test_accept_encoding(void **st)
{
	(void)st;
	assert_true(web_accepts_encoding("gzip, deflate, br", "br"));
	assert_true(web_accepts_encoding("gzip, deflate, br", "gzip"));
	assert_true(web_accepts_encoding("GZIP;q=0.5", "gzip"));
	assert_false(web_accepts_encoding("gzip;q=0", "gzip"));
	assert_false(web_accepts_encoding("gzip; q=0.000, br", "gzip"));
	assert_true(web_accepts_encoding("gzip; q=0.001", "gzip"));
	assert_false(web_accepts_encoding("x-gzip", "gzip"));
	assert_false(web_accepts_encoding("", "gzip"));
	assert_false(web_accepts_encoding(NULL, "gzip"));
	assert_false(web_accepts_encoding("identity", "br"));
}

struct fix {
	char dir[64];
	char db[96];
	struct auth *a;
};

static int setup(void **st)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct auth_conf c = { .session_ttl_s = 3600, .login_per_minute = 3 };
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/cella-auth-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/users.db", f->dir);
	c.users_db = f->db;
	if (auth_open(&f->a, &c, err, sizeof(err)))
		return -1;
	*st = f;
	return 0;
}

static int teardown(void **st)
{
	struct fix *f = *st;
	char p[128];

	auth_close(f->a);
	for (const char *s = ""; s; s = !*s ? "-wal" : !strcmp(s, "-wal") ? "-shm" : NULL) {
		snprintf(p, sizeof(p), "%s%s", f->db, s);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_sessions(void **st)
{
	struct fix *f = *st;
	char a[AUTH_SID_LEN + 1], b[AUTH_SID_LEN + 1];
	struct auth_session s, g;

	assert_int_equal(auth_session_new(f->a, "alice", ROLE_OPERATOR, a, &s), 0);
	assert_int_equal(strlen(a), AUTH_SID_LEN);
	assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789-_"), AUTH_SID_LEN);
	assert_int_equal(auth_session_new(f->a, "alice", ROLE_OPERATOR, b, &s), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(auth_session_get(f->a, a, &g), 0);
	assert_string_equal(g.user, "alice");
	assert_int_equal(g.role, ROLE_OPERATOR);
	assert_int_equal(auth_session_end(f->a, a), 0);
	assert_int_equal(auth_session_get(f->a, a, &g), -ENOENT);
	assert_int_equal(auth_session_end(f->a, a), -ENOENT);
	assert_int_equal(auth_session_get(f->a, b, &g), 0);
	b[5] ^= 1;
	assert_int_equal(auth_session_get(f->a, b, &g), -ENOENT);
	assert_int_equal(auth_session_get(f->a, "short", &g), -ENOENT);
	assert_int_equal(auth_session_get(f->a, "", &g), -ENOENT);
}

static void test_table_full(void **st)
{
	struct fix *f = *st;
	char first[AUTH_SID_LEN + 1], sid[AUTH_SID_LEN + 1];
	struct auth_session s;

	assert_int_equal(auth_session_new(f->a, "u", ROLE_VIEWER, first, &s), 0);
	for (int i = 0; i < AUTH_MAX_SESSIONS + 10; i++)
		assert_int_equal(auth_session_new(f->a, "u", ROLE_VIEWER, sid, &s), 0);
	/* The newest lives; the table never grows past its size. */
	assert_int_equal(auth_session_get(f->a, sid, &s), 0);
}

static void test_login_limit(void **st)
{
	struct fix *f = *st;
	unsigned retry = 0;

	for (int i = 0; i < 3; i++) {
		assert_true(auth_login_allowed(f->a, "10.0.0.1", &retry));
		auth_login_failed(f->a, "10.0.0.1");
	}
	assert_false(auth_login_allowed(f->a, "10.0.0.1", &retry));
	assert_true(retry >= 1 && retry <= 21);
	assert_true(auth_login_allowed(f->a, "10.0.0.2", &retry));
}

static void test_users(void **st)
{
	struct fix *f = *st;
	char sid[AUTH_SID_LEN + 1];
	struct auth_session s;
	struct cerr e = { 0 };
	enum role role = ROLE_NONE;
	json_t *l;

	assert_int_equal(auth_user_add(f->a, "alice", ROLE_OPERATOR, "correct horse", &e), 0);
	assert_int_not_equal(auth_user_add(f->a, "bad name", ROLE_VIEWER, "password1", &e), 0);
	assert_string_equal(e.field, "name");
	assert_int_not_equal(auth_user_add(f->a, "bob", ROLE_NONE, "password1", &e), 0);
	assert_string_equal(e.field, "role");
	assert_int_not_equal(auth_user_add(f->a, "bob", ROLE_VIEWER, "short", &e), 0);
	assert_string_equal(e.field, "password");
	assert_int_equal(auth_user_check(f->a, "alice", "correct horse", &role), 0);
	assert_int_equal(role, ROLE_OPERATOR);
	assert_int_equal(auth_user_check(f->a, "alice", "correct horsf", &role), -EACCES);
	assert_int_equal(auth_user_check(f->a, "nobody", "correct horse", &role), -EACCES);
	assert_int_equal(auth_user_check(f->a, "../x", "correct horse", &role), -EACCES);
	l = auth_user_list(f->a, &e);
	assert_non_null(l);
	assert_int_equal(json_array_size(l), 1);
	assert_null(json_object_get(json_array_get(l, 0), "hash"));
	json_decref(l);
	assert_int_equal(auth_session_new(f->a, "alice", ROLE_OPERATOR, sid, &s), 0);
	assert_int_equal(auth_user_delete(f->a, "alice", &e), 0);
	assert_int_equal(auth_session_get(f->a, sid, &s), -ENOENT);
	assert_int_not_equal(auth_user_delete(f->a, "alice", &e), 0);
	assert_int_equal(e.kind, CERR_NOT_FOUND);
	assert_int_equal(auth_user_check(f->a, "alice", "correct horse", &role), -EACCES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cookie),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_accept_encoding),
		cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
