/* bodybuf.c: response bodies collected in memory. */
#include "bodybuf.h"

#include <stdlib.h>
#include <string.h>

size_t bodybuf_collect(char *data, size_t size, size_t n, void *opaque)
{
	struct bodybuf *b = opaque;
	size_t len = size * n;
	char *np;

	if (b->max && b->len + len > b->max)
		return 0;
	np = realloc(b->p, b->len + len + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = 0;
	return len;
}
