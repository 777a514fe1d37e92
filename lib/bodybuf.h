/* bodybuf.h: a growing, NUL-terminated buffer for response bodies, with a
 * libcurl-style write callback (no libcurl dependency here). */
#pragma once
#include <stddef.h>

struct bodybuf {
	char *p;      /* malloc'd, NUL-terminated; NULL while empty */
	size_t len;
	size_t max;   /* most bytes accepted (0: no limit) */
};

/* CURLOPT_WRITEFUNCTION: append; returns 0 (abort) past max or out of
 * memory. */
size_t bodybuf_collect(char *data, size_t size, size_t n, void *opaque);
