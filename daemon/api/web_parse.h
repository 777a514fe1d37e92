/* web_parse.h: the few browser headers the web console depends on, parsed
 * without HTTP machinery (fuzzed alone: tests/fuzz/daemon/web_headers.c):
 * Cookie (RFC 6265 5.4), Origin (RFC 6454) against this server's own, and
 * Accept-Encoding (RFC 9110 12.5.3). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* The value of cookie name in a Cookie header. 1: found (out, NUL-ended),
 * 0: absent, -1: present but longer than len - 1 bytes or with bytes a
 * cookie value may not hold. Other cookies, however shaped, are skipped. */
int web_cookie_find(const char *header, const char *name, char *out, size_t len);
/* Whether origin (an Origin header) is this server's: scheme https when tls
 * (else http) and the host (and port) the Host header names. Default ports
 * (443, 80) may be left out on either side; case-insensitive. "null", a
 * path, user info or a malformed value never match. */
bool web_origin_same(const char *origin, const char *host, bool tls);
/* Whether an Accept-Encoding header accepts coding (q above 0). */
bool web_accepts_encoding(const char *header, const char *coding);
