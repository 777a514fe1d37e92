/* errors.c: the one map from the core's typed errors to HTTP statuses. */
#include "api_priv.h"

unsigned api_http_status(enum cerr_kind kind)
{
	static const unsigned status[CERR_KIND_COUNT] = {
		[CERR_NONE] = 500,       [CERR_INVALID] = 400,     [CERR_NOT_FOUND] = 404,
		[CERR_EXISTS] = 409,     [CERR_STATE] = 409,       [CERR_CONFLICT] = 409,
		[CERR_TOO_LARGE] = 413,  [CERR_PEER] = 502,        [CERR_UNAVAILABLE] = 503,
		[CERR_NO_SPACE] = 507,   [CERR_INTERNAL] = 500,    [CERR_CAPACITY] = 409,
		[CERR_FORBIDDEN] = 403,
	};

	return (unsigned)kind < CERR_KIND_COUNT ? status[kind] : 500;
}
