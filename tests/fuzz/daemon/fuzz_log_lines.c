/* fuzz_log_lines.c: a worker log's bytes as the JSON lines of
 * GET /v1/vms/{name}/log (daemon/worker/log_lines.c). The first byte picks
 * how many lines are asked for and whether the bytes start the file; the
 * rest is the log. Checks: an answer always (strings jansson accepted, so
 * valid UTF-8), never more lines than asked for, and for a whole file of
 * valid UTF-8 without NULs, all its lines joined give the file back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log_tail.h"

static bool plain_utf8(const uint8_t *p, size_t n)
{
	json_t *s;

	if (memchr(p, 0, n))
		return false;
	s = json_stringn((const char *)p, n);
	json_decref(s);
	return s != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned wants[] = { 1, 2, 3, 7, LOG_TAIL_MAX_LINES };
	unsigned want;
	bool whole, more;
	json_t *lines;

	if (size < 1)
		return 0;
	want = wants[data[0] % 5];
	whole = data[0] & 0x80;
	data++;
	size--;
	lines = log_tail_lines((const char *)data, size, want, whole, &more);
	if (!lines || json_array_size(lines) > want)
		abort();
	if (whole && want == LOG_TAIL_MAX_LINES && !more && plain_utf8(data, size)) {
		size_t n = size, off = 0, i;
		json_t *l;

		if (n && data[n - 1] == '\n')
			n--;
		json_array_foreach(lines, i, l)
		{
			size_t len = json_string_length(l);

			if (i)
				off++; /* the newline between lines */
			if (off + len > n || memcmp(data + off, json_string_value(l), len))
				abort();
			off += len;
		}
		if (off != n && !(n == 0 && json_array_size(lines) == 0))
			abort();
	}
	json_decref(lines);
	return 0;
}
