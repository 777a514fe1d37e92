/* web_parse.c: Cookie, Origin and Accept-Encoding (web_parse.h). */
#include "web_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 6265 cookie-octet: no controls, space, '"', ',', ';' or '\\'. */
static bool cookie_octet(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\';
}

int web_cookie_find(const char *h, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);

	if (!h || !len)
		return 0;
	while (*h) {
		const char *end = strchr(h, ';'), *eq;
		size_t pl;

		while (is_ws(*h))
			h++;
		pl = end ? (size_t)(end - h) : strlen(h);
		eq = memchr(h, '=', pl);
		if (eq && (size_t)(eq - h) == nl && !memcmp(h, name, nl)) {
			const char *v = eq + 1;
			size_t vl = pl - (size_t)(v - h);

			while (vl && is_ws(v[vl - 1]))
				vl--;
			if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
				v++;
				vl -= 2;
			}
			if (vl >= len)
				return -1;
			for (size_t i = 0; i < vl; i++)
				if (!cookie_octet((unsigned char)v[i]))
					return -1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return 1;
		}
		if (!end)
			break;
		h = end + 1;
	}
	return 0;
}

/* Split "host[:port]" (host may be "[v6]") into host and port; the port
 * defaults to def. false when malformed. */
static bool split_authority(const char *s, size_t n, char *host, size_t hlen, unsigned *port,
			    unsigned def)
{
	const char *colon = NULL;
	size_t hl;

	if (n == 0)
		return false;
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (!rb)
			return false;
		hl = (size_t)(rb - s) + 1;
		if (hl < n) {
			if (s[hl] != ':')
				return false;
			colon = s + hl;
		}
	} else {
		colon = memchr(s, ':', n);
		hl = colon ? (size_t)(colon - s) : n;
	}
	if (hl == 0 || hl >= hlen)
		return false;
	for (size_t i = 0; i < hl; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#' ||
		    c == '\\')
			return false;
	}
	memcpy(host, s, hl);
	host[hl] = 0;
	*port = def;
	if (colon) {
		const char *p = colon + 1, *e = s + n;
		unsigned v = 0;

		if (p == e || e - p > 5)
			return false;
		for (; p < e; p++) {
			if (*p < '0' || *p > '9')
				return false;
			v = v * 10 + (unsigned)(*p - '0');
		}
		if (v == 0 || v > 65535)
			return false;
		*port = v;
	}
	return true;
}

bool web_origin_same(const char *origin, const char *host, bool tls)
{
	const char *scheme = tls ? "https://" : "http://";
	size_t sl = strlen(scheme);
	char oh[256], hh[256];
	unsigned op, hp, def = tls ? 443 : 80;

	if (!origin || !host || strncasecmp(origin, scheme, sl))
		return false;
	origin += sl;
	if (!split_authority(origin, strlen(origin), oh, sizeof(oh), &op, def) ||
	    !split_authority(host, strlen(host), hh, sizeof(hh), &hp, def))
		return false;
	return op == hp && !strcasecmp(oh, hh);
}

bool web_accepts_encoding(const char *h, const char *coding)
{
	size_t cl = strlen(coding);

	if (!h)
		return false;
	while (*h) {
		const char *end = strchr(h, ','), *semi;
		size_t tl, nl;

		while (is_ws(*h))
			h++;
		tl = end ? (size_t)(end - h) : strlen(h);
		semi = memchr(h, ';', tl);
		nl = semi ? (size_t)(semi - h) : tl;
		while (nl && is_ws(h[nl - 1]))
			nl--;
		if (nl == cl && !strncasecmp(h, coding, cl)) {
			/* q=0 (0.0, 0.00, 0.000) refuses it. */
			const char *q = semi;
			bool zero = false;

			while (q && q < h + tl) {
				q++;
				while (is_ws(*q))
					q++;
				if ((q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
					const char *v = q + 2;

					zero = v[0] == '0';
					for (v++; zero && v < h + tl && *v != ';' && !is_ws(*v); v++)
						zero = *v == '.' || *v == '0';
				}
				q = memchr(q, ';', (size_t)(h + tl - q));
			}
			return !zero;
		}
		if (!end)
			break;
		h = end + 1;
	}
	return false;
}
