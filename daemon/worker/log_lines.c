/* log_lines.c: the last lines of a log's bytes as JSON strings (bytes that
 * are not UTF-8 become U+FFFD: a worker's log holds what it printed,
 * guest-influenced text among it). No I/O: fuzzed alone
 * (tests/fuzz/daemon/fuzz_log_lines.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log_tail.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates, past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* One line as a JSON string: invalid bytes replaced, NULs too (jansson's
 * json_stringn takes them, but a log line with NULs is garbage). */
static json_t *line_json(const char *p, size_t n)
{
	char *out = malloc(n * 3 + 1);
	size_t o = 0;
	json_t *j;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq((const unsigned char *)p + i, n - i);

		if (l == 0 || p[i] == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD */
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	j = json_stringn(out, o);
	free(out);
	return j;
}

json_t *log_tail_lines(const char *buf, size_t n, unsigned max_lines, bool whole, bool *more)
{
	json_t *arr = json_array();
	size_t start = 0, end = n, first, b;
	unsigned count = 0;

	*more = false;
	if (!arr)
		return NULL;
	if (!whole) {
		/* The read window cut the first line: leave it out. */
		const char *nl = memchr(buf, '\n', n);

		start = nl ? (size_t)(nl - buf) + 1 : n;
		*more = true;
	}
	if (end > start && buf[end - 1] == '\n')
		end--;
	if (start >= end || max_lines == 0)
		return arr;
	/* [start, end) holds whole lines: find where the last max_lines begin. */
	for (b = end;;) {
		size_t k = b;

		while (k > start && buf[k - 1] != '\n')
			k--;
		if (++count == max_lines || k == start) {
			first = k;
			if (k > start)
				*more = true;
			break;
		}
		b = k - 1;
	}
	for (size_t p = first;;) {
		const char *nl = memchr(buf + p, '\n', end - p);
		size_t len = nl ? (size_t)(nl - (buf + p)) : end - p;
		json_t *l = line_json(buf + p, len);

		if (!l || json_array_append_new(arr, l)) {
			json_decref(arr);
			return NULL;
		}
		if (!nl)
			break;
		p += len + 1;
	}
	return arr;
}

