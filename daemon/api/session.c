/* session.c: the web console's logins (docs/web.md, docs/security.md):
 * POST/GET/DELETE /v1/session with the session cookie, the users' routes,
 * and the cookie and Origin checks server.c applies to every request. The
 * users and sessions themselves are core/auth.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_priv.h"
#include "web_parse.h"

#define COOKIE "cella_session"

bool api_method_changes(const char *method)
{
	return !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH") ||
	       !strcmp(method, "DELETE");
}

bool api_origin_ok(struct MHD_Connection *c, bool tls)
{
	return web_origin_same(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"),
			       MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"), tls);
}

static bool sid_chars_ok(const char *s)
{
	if (strlen(s) != AUTH_SID_LEN)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

int api_session_identify(struct auth *a, struct MHD_Connection *c, char *sid,
			 struct auth_session *s)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
	char v[AUTH_SID_LEN + 1];
	int ret = web_cookie_find(h, COOKIE, v, sizeof(v));

	if (ret == 0)
		return 0;
	if (ret < 0 || !sid_chars_ok(v))
		return -1;
	if (!a || auth_session_get(a, v, s))
		return 0;
	memcpy(sid, v, sizeof(v));
	return 1;
}

/* A JSON reply with a Set-Cookie header (cookie NULL: none). */
static enum MHD_Result reply_cookie(struct MHD_Connection *c, unsigned status, json_t *body,
				    const char *cookie)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(body);
	if (s) { /* one line, like every JSON answer */
		size_t n = strlen(s);
		char *t = realloc(s, n + 2);

		if (!t) {
			free(s);
			return MHD_NO;
		}
		s = t;
		s[n] = '\n';
		s[n + 1] = 0;
	}
	r = s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE)
	      : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(s);
		return MHD_NO;
	}
	if (s)
		MHD_add_response_header(r, "Content-Type", "application/json");
	if (cookie)
		MHD_add_response_header(r, "Set-Cookie", cookie);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Server", "cellad/0.1.0");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static json_t *session_json(const struct auth_session *s)
{
	return json_pack("{s:s, s:s, s:I}", "user", s->user, "role", role_name(s->role), "expires",
			 (json_int_t)s->expires);
}

static enum MHD_Result login_failed(struct api_request *r, const char *field)
{
	auth_login_failed(r->auth, r->client_addr);
	return api_fail(r->c, 401, field, "wrong credentials");
}

static enum MHD_Result session_new(struct api_request *r)
{
	const char *token, *user, *password, *origin;
	enum MHD_Result res = MHD_NO;
	struct auth_session s;
	enum role role = ROLE_NONE;
	char sid[AUTH_SID_LEN + 1], cookie[256], who[AUTH_USER_MAX + 16];
	unsigned retry = 0;
	json_t *body;

	/* Login CSRF: a browser says where the form was; it must be here. */
	origin = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Origin");
	if (origin && !api_origin_ok(r->c, r->tls))
		return api_fail(r->c, 403, "Origin", "a login from another site is refused");
	if (!auth_login_allowed(r->auth, r->client_addr, &retry)) {
		struct MHD_Response *resp;
		char *s, ra[16];

		s = strdup("{\"error\":{\"field\":\"\",\"reason\":\"too many failed logins from "
			   "this address; try again later\",\"message\":\"too many failed logins "
			   "from this address; try again later\"}}\n");
		resp = s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE)
			 : NULL;
		if (!resp) {
			free(s);
			return MHD_NO;
		}
		snprintf(ra, sizeof(ra), "%u", retry);
		MHD_add_response_header(resp, "Content-Type", "application/json");
		MHD_add_response_header(resp, "Retry-After", ra);
		res = MHD_queue_response(r->c, 429, resp);
		MHD_destroy_response(resp);
		return res;
	}
	if (api_parse_body(r, true, &body, &res))
		return res;
	token = json_string_value(json_object_get(body, "token"));
	user = json_string_value(json_object_get(body, "user"));
	password = json_string_value(json_object_get(body, "password"));
	{
		const char *key;
		json_t *v;

		json_object_foreach(body, key, v) {
			if (strcmp(key, "token") && strcmp(key, "user") && strcmp(key, "password")) {
				res = api_fail(r->c, 400, key, "unknown field (expected token, or "
					       "user and password)");
				json_decref(body);
				return res;
			}
			if (!json_is_string(v) || json_string_length(v) > 1024) {
				res = api_fail(r->c, 400, key, "expected a string of at most 1024 "
					       "bytes");
				json_decref(body);
				return res;
			}
		}
	}
	if (token && !user && !password) {
		role = r->conf ? api_token_role(r->conf, token) : ROLE_NONE;
		if (role == ROLE_NONE) {
			json_decref(body);
			return login_failed(r, "token");
		}
		snprintf(who, sizeof(who), "(token)");
	} else if (user && password && !token) {
		int ret = auth_user_check(r->auth, user, password, &role);

		if (ret == -EIO) {
			json_decref(body);
			return api_fail(r->c, 500, "", "cannot read the users");
		}
		if (ret) {
			json_decref(body);
			return login_failed(r, "password");
		}
		snprintf(who, sizeof(who), "%s", user);
	} else {
		json_decref(body);
		return api_fail(r->c, 400, "", "expected {\"token\"} or {\"user\", \"password\"}");
	}
	json_decref(body);
	if (auth_session_new(r->auth, who, role, sid, &s))
		return api_fail(r->c, 500, "", "cannot make a session id");
	snprintf(cookie, sizeof(cookie), COOKIE "=%s; Path=/; HttpOnly; Secure; SameSite=Strict; "
		 "Max-Age=%lld", sid, (long long)(s.expires - (int64_t)time(NULL)));
	explicit_bzero(sid, sizeof(sid));
	res = reply_cookie(r->c, 200, session_json(&s), cookie);
	explicit_bzero(cookie, sizeof(cookie));
	return res;
}

API_HANDLER(h_session)
{
	(void)name;
	if (!r->auth || !r->conf || !r->conf->token)
		return api_fail(r->c, 404, "path", "no web console logins here (no TCP listener)");
	switch (arg) {
	case SESSION_NEW:
		return session_new(r);
	case SESSION_GET:
		if (!r->by_cookie)
			return api_fail(r->c, 401, "Cookie", "no valid session");
		return reply_cookie(r->c, 200, session_json(&r->session), NULL);
	default:
		if (!r->by_cookie)
			return api_fail(r->c, 401, "Cookie", "no valid session");
		auth_session_end(r->auth, r->sid);
		return reply_cookie(r->c, 204, NULL, COOKIE "=; Path=/; HttpOnly; Secure; "
				    "SameSite=Strict; Max-Age=0");
	}
}

static enum role role_arg(const char *s)
{
	return !s ? ROLE_NONE : !strcmp(s, "admin") ? ROLE_ADMIN
	       : !strcmp(s, "operator") ? ROLE_OPERATOR : !strcmp(s, "viewer") ? ROLE_VIEWER
	       : ROLE_NONE;
}

API_HANDLER(h_users)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = { 0 };
	json_t *body, *out;
	int ret;

	(void)name;
	if (arg == USERS_LIST) {
		out = auth_user_list(r->auth, &e);
		return out ? api_reply_json(r->c, 200, json_pack("{s:o}", "users", out))
			   : api_reply_error(r->c, &e);
	}
	if (arg == USERS_DELETE) {
		ret = auth_user_delete(r->auth, r->sub, &e);
		return ret ? api_reply_error(r->c, &e) : api_reply_json(r->c, 204, NULL);
	}
	if (api_parse_body(r, true, &body, &res))
		return res;
	{
		const char *key;
		json_t *v;

		json_object_foreach(body, key, v) {
			if (strcmp(key, "name") && strcmp(key, "role") && strcmp(key, "password"))
				ret = cerr_set(&e, CERR_INVALID, key, "unknown field");
			else if (!json_is_string(v))
				ret = cerr_set(&e, CERR_INVALID, key, "expected a string");
			else
				continue;
			json_decref(body);
			return api_reply_error(r->c, &e);
		}
	}
	if (!json_object_get(body, "name") || !json_object_get(body, "password")) {
		json_decref(body);
		return api_fail(r->c, 400, json_object_get(body, "name") ? "password" : "name",
				"required");
	}
	ret = auth_user_add(r->auth, json_string_value(json_object_get(body, "name")),
			    role_arg(json_string_value(json_object_get(body, "role"))),
			    json_string_value(json_object_get(body, "password")), &e);
	if (ret) {
		json_decref(body);
		return api_reply_error(r->c, &e);
	}
	out = json_pack("{s:O, s:O}", "name", json_object_get(body, "name"), "role",
			json_object_get(body, "role") ?: json_null());
	json_decref(body);
	return api_reply_json(r->c, 201, out);
}
