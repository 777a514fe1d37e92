/* join_parse.c: join tokens and join requests, as they come from the
 * network (join_parse.h). */
#include "join_parse.h"

#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "vmdef.h"

static bool hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int pool_token_parse(const char *s, struct pool_token *t, struct cerr *e)
{
	const size_t a = POOL_TOKEN_ID_HEX, b = POOL_TOKEN_SECRET_HEX, c = POOL_CA_HASH_HEX;

	if (!s || strlen(s) != POOL_TOKEN_LEN || s[a] != '.' || s[a + 1 + b] != '.' ||
	    !hex_run(s, a) || !hex_run(s + a + 1, b) || !hex_run(s + a + 1 + b + 1, c))
		return cerr_set(e, CERR_INVALID, "token", "not a join token (ID.SECRET.CAHASH: "
				"%zu, %zu and %zu lowercase hex digits)", a, b, c);
	memcpy(t->id, s, a);
	t->id[a] = 0;
	memcpy(t->secret, s + a + 1, b);
	t->secret[b] = 0;
	memcpy(t->ca_hash, s + a + 1 + b + 1, c);
	t->ca_hash[c] = 0;
	return 0;
}

int pool_token_secret_hash(const char *secret, char *hex)
{
	unsigned char h[32];

	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), h) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return 0;
}

bool pool_hex_eq(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	unsigned diff = n != m;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned)(a[i] ^ (i < m ? b[i] : 0));
	return diff == 0;
}

int pool_url_host(const char *url, const char *field, char *host, size_t len,
		  struct cerr *e)
{
	const char *h, *end;
	size_t n;

	if (!url || strncmp(url, "https://", 8) || strlen(url) > 255)
		return cerr_set(e, CERR_INVALID, field, "expected https://HOST:PORT");
	h = url + 8;
	if (*h == '[') { /* [IPv6]:port */
		end = strchr(h, ']');
		if (!end)
			return cerr_set(e, CERR_INVALID, field, "expected https://HOST:PORT");
		h++;
		n = (size_t)(end - h);
		end++;
	} else {
		n = strcspn(h, ":/");
		end = h + n;
	}
	if (!n || n >= len || *end != ':' || !end[1] || strspn(end + 1, "0123456789") < 1)
		return cerr_set(e, CERR_INVALID, field, "expected https://HOST:PORT");
	{
		const char *p = end + 1 + strspn(end + 1, "0123456789");

		if (*p && strcmp(p, "/"))
			return cerr_set(e, CERR_INVALID, field, "expected https://HOST:PORT");
	}
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:",
			    h[i]))
			return cerr_set(e, CERR_INVALID, field, "not a host name or address");
	memcpy(host, h, n);
	host[n] = 0;
	return 0;
}

int pool_join_req_parse(json_t *body, struct pool_join_req *req, struct cerr *e)
{
	static const char *const keys[] = { "token", "name", "csr", "address", "memory_mib",
					    "cpus" };
	const char *key;
	json_t *v, *mem, *cpus;
	char host[256];

	memset(req, 0, sizeof(*req));
	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach(body, key, v) {
		bool ok = false;

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			ok |= !strcmp(key, keys[i]);
		if (!ok)
			return cerr_set(e, CERR_INVALID, key, "unknown field");
	}
	if (pool_token_parse(json_string_value(json_object_get(body, "token")), &req->token, e))
		return -1;
	req->name = json_string_value(json_object_get(body, "name"));
	if (!req->name || !vmdef_name_valid(req->name))
		return cerr_set(e, CERR_INVALID, "name", "expected a host name (letters, digits, "
				"'.', '_', '-'; at most 63)");
	req->address = json_string_value(json_object_get(body, "address"));
	if (json_object_get(body, "address") &&
	    (!req->address || pool_url_host(req->address, "address", host, sizeof(host), e)))
		return req->address ? -1 : cerr_set(e, CERR_INVALID, "address", "expected a string");
	mem = json_object_get(body, "memory_mib");
	cpus = json_object_get(body, "cpus");
	if (!json_is_integer(mem) || json_integer_value(mem) < 0 ||
	    json_integer_value(mem) > (1LL << 40))
		return cerr_set(e, CERR_INVALID, "memory_mib", "expected an integer from 0 to 2^40");
	if (!json_is_integer(cpus) || json_integer_value(cpus) < 1 ||
	    json_integer_value(cpus) > 65536)
		return cerr_set(e, CERR_INVALID, "cpus", "expected an integer from 1 to 65536");
	req->memory_mib = (uint64_t)json_integer_value(mem);
	req->cpus = (unsigned)json_integer_value(cpus);
	req->csr = json_string_value(json_object_get(body, "csr"));
	if (!req->csr)
		return cerr_set(e, CERR_INVALID, "csr", "expected a PEM certificate request");
	return pool_ca_check_csr(req->csr, strlen(req->csr), req->name, e);
}
