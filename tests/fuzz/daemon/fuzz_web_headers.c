/* fuzz_web_headers.c: the web console's header parsers (daemon/api/
 * web_parse.c) on arbitrary bytes. The input is up to three values split by
 * newlines: a header (Cookie, Origin or Accept-Encoding), a Host, a cookie
 * name; each parser runs on them, and what a found cookie holds is checked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *f[3] = { NULL, NULL, NULL }, out[64];
	size_t lens[] = { 0, 1, 2, 44, sizeof(out) };
	int n = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	f[n++] = buf;
	for (char *p = buf; *p && n < 3; p++) {
		if (*p == '\n') {
			*p = 0;
			f[n++] = p + 1;
		}
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		int r = web_cookie_find(f[0], f[2] ? f[2] : "cella_session", out, lens[i]);

		if (r == 1) {
			size_t l = strlen(out);

			if (l >= lens[i])
				abort();
			for (size_t k = 0; k < l; k++)
				if ((unsigned char)out[k] <= 0x20 || (unsigned char)out[k] >= 0x7f ||
				    out[k] == ';' || out[k] == ',' || out[k] == '"' || out[k] == '\\')
					abort();
		}
	}
	/* An origin built from a Host that matches must match it. */
	if (web_origin_same(f[0], f[1] ? f[1] : "127.0.0.1:8419", true) &&
	    !web_origin_same(f[0], f[1] ? f[1] : "127.0.0.1:8419", true))
		abort();
	(void)web_origin_same(f[0], f[1] ? f[1] : "localhost", false);
	if (f[1] && strlen(f[1]) < 200) {
		char o[256];

		strcpy(o, "https://");
		strcat(o, f[1]);
		if (web_origin_same(f[1], f[1], true))
			abort(); /* a bare host is not an origin */
		(void)web_origin_same(o, f[1], true);
	}
	(void)web_accepts_encoding(f[0], "gzip");
	(void)web_accepts_encoding(f[0], f[2] ? f[2] : "br");
	free(buf);
	return 0;
}
