/* cerr.c: the typed error of core operations. */
#include "cerr.h"

#include <stdarg.h>
#include <stdio.h>

int cerr_set(struct cerr *e, enum cerr_kind kind, const char *field, const char *fmt, ...)
{
	va_list ap;

	e->kind = kind;
	snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
	va_end(ap);
	return -1;
}

const char *cerr_kind_name(enum cerr_kind kind)
{
	static const char *const names[CERR_KIND_COUNT] = {
		[CERR_NONE] = "none",           [CERR_INVALID] = "invalid",
		[CERR_NOT_FOUND] = "not found", [CERR_EXISTS] = "exists",
		[CERR_STATE] = "state conflict", [CERR_CONFLICT] = "conflict",
		[CERR_TOO_LARGE] = "too large", [CERR_PEER] = "peer failure",
		[CERR_UNAVAILABLE] = "unavailable", [CERR_NO_SPACE] = "no space",
		[CERR_INTERNAL] = "internal",   [CERR_CAPACITY] = "no capacity",
		[CERR_FORBIDDEN] = "forbidden",
	};

	return (unsigned)kind < CERR_KIND_COUNT ? names[kind] : "unknown";
}
