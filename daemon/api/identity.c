/* identity.c: who calls the API, and with which role (api_priv.h). */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "api_priv.h"

/* name is a user (or group) name, or its number. */
static bool names_id(const char *name, unsigned id, bool group)
{
	char num[16];

	snprintf(num, sizeof(num), "%u", id);
	if (!strcmp(name, num))
		return true;
	if (group) {
		struct group gr, *g = NULL;
		char buf[4096];

		return !getgrgid_r((gid_t)id, &gr, buf, sizeof(buf), &g) && g &&
		       !strcmp(g->gr_name, name);
	} else {
		struct passwd pw, *p = NULL;
		char buf[4096];

		return !getpwuid_r((uid_t)id, &pw, buf, sizeof(buf), &p) && p &&
		       !strcmp(p->pw_name, name);
	}
}

static enum role unix_role(const struct api_conf *conf, uid_t uid, gid_t gid)
{
	enum role role = uid == 0 ? ROLE_ADMIN : ROLE_NONE;
	gid_t groups[256];
	int ng = 0;

	{
		struct passwd pw, *p = NULL;
		char buf[4096];

		if (!getpwuid_r(uid, &pw, buf, sizeof(buf), &p) && p) {
			ng = (int)(sizeof(groups) / sizeof(groups[0]));
			if (getgrouplist(p->pw_name, gid, groups, &ng) < 0)
				ng = 0;
		}
	}
	if (!ng) {
		groups[0] = gid;
		ng = 1;
	}
	for (unsigned i = 0; i < conf->nr_principals; i++) {
		const struct api_principal *pr = &conf->principals[i];
		bool hit = false;

		if (pr->role <= role)
			continue;
		if (!pr->group)
			hit = names_id(pr->name, uid, false);
		for (int g = 0; pr->group && g < ng && !hit; g++)
			hit = names_id(pr->name, groups[g], true);
		if (hit)
			role = pr->role;
	}
	return role;
}

/* Constant time over the expected token's length. */
static bool token_eq(const char *want, const char *got)
{
	size_t n = strlen(want), gl = strlen(got);
	unsigned diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned)(want[i] ^ (i < gl ? got[i] : 0));
	return diff == 0 && gl == n;
}

/* The client's certificate, if it sent one: 1 verified by the CA (its
 * subject in name), 0 none, -1 one that does not verify. */
static int client_cert(struct MHD_Connection *c, char *name, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	gnutls_session_t sess = ci ? (gnutls_session_t)ci->tls_session : NULL;
	const gnutls_datum_t *certs;
	unsigned n = 0, status = 0;
	gnutls_x509_crt_t crt;
	size_t sz = len;

	if (!sess || !(certs = gnutls_certificate_get_peers(sess, &n)) || !n)
		return 0;
	if (gnutls_certificate_verify_peers2(sess, &status) < 0 || status)
		return -1;
	name[0] = 0;
	if (gnutls_x509_crt_init(&crt) == 0) {
		if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_get_dn(crt, name, &sz) < 0)
			name[0] = 0;
		gnutls_x509_crt_deinit(crt);
	}
	return 1;
}

/* The subject CN of a client certificate that verified, or -1. */
static int client_cn(struct MHD_Connection *c, char *cn, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	gnutls_session_t sess = ci ? (gnutls_session_t)ci->tls_session : NULL;
	const gnutls_datum_t *certs;
	unsigned n = 0, status = 0;
	gnutls_x509_crt_t crt;
	size_t sz = len;
	int ret = -1;

	if (!sess || !(certs = gnutls_certificate_get_peers(sess, &n)) || !n ||
	    gnutls_certificate_verify_peers2(sess, &status) < 0 || status)
		return -1;
	if (gnutls_x509_crt_init(&crt) < 0)
		return -1;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &sz) >= 0 &&
	    strlen(cn) == sz)
		ret = 0;
	gnutls_x509_crt_deinit(crt);
	return ret;
}

int api_identify_forwarded(struct MHD_Connection *c, struct sup *s, enum role *role, char *who,
			   size_t len)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Cella-Forwarded-Role");
	const char *by = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Cella-Forwarded-For");
	char cn[128];

	if (!h)
		return 0;
	if (client_cn(c, cn, sizeof(cn)) || !sup_pool_host_known(s, cn)) {
		snprintf(who, len, "a client forwarding without a pool host's certificate");
		return -1;
	}
	*role = !strcmp(h, "admin") ? ROLE_ADMIN : !strcmp(h, "operator") ? ROLE_OPERATOR
		: !strcmp(h, "viewer") ? ROLE_VIEWER : ROLE_NONE;
	snprintf(who, len, "host %.40s for %.40s", cn, by ? by : "?");
	for (char *p = who; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	return 1;
}

enum role api_token_role(const struct api_conf *conf, const char *token)
{
	enum role role = ROLE_NONE;

	if (conf->token && token_eq(conf->token, token))
		role = ROLE_ADMIN;
	for (unsigned i = 0; i < conf->nr_tokens; i++)
		if (token_eq(conf->tokens[i].token, token) && conf->tokens[i].role > role)
			role = conf->tokens[i].role;
	return role;
}

enum role api_identify(const struct api_conf *conf, struct MHD_Connection *c, bool tcp,
			   bool *peer, char *who, size_t len)
{
	*peer = false;
	if (tcp) {
		const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
		enum role role = ROLE_NONE;
		char dn[256];
		int cert = client_cert(c, dn, sizeof(dn));

		if (cert < 0) {
			snprintf(who, len, "a TCP client whose certificate does not verify");
			return ROLE_NONE;
		}
		*peer = cert > 0;
		snprintf(who, len, "a TCP client without a valid token");
		if (!h || strncmp(h, "Bearer ", 7))
			return ROLE_NONE;
		role = api_token_role(conf, h + 7);
		if (role)
			snprintf(who, len, "a TCP client with a %s token%s%.120s", role_name(role),
				 *peer ? ", peer " : "", *peer ? dn : "");
		return role;
	}
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		enum role role;

		if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
			snprintf(who, len, "an unknown local client");
			return ROLE_NONE;
		}
		role = unix_role(conf, cred.uid, cred.gid);
		snprintf(who, len, "uid %u", (unsigned)cred.uid);
		return role;
	}
}
