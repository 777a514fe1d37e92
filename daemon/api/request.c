/* request.c: what every handler needs: the JSON body, query parameters,
 * and the reply for a core call's outcome. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

/* Body ------------------------------------------------------------------ */

/* Parse the request body as a JSON object. Returns 0 (with *out NULL for
 * an empty optional body) or queues the error and returns -1. */
int api_parse_body(struct api_request *r, bool required, json_t **out, enum MHD_Result *res)
{
	const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Content-Type");
	json_error_t jerr;
	json_t *j;

	*out = NULL;
	if (r->len == 0) {
		if (!required)
			return 0;
		*res = api_fail(r->c, 400, "", "a JSON object body is required");
		return -1;
	}
	if (ct && strncmp(ct, "application/json", 16)) {
		*res = api_fail(r->c, 415, "Content-Type", "expected application/json, got '%.64s'",
		                ct);
		return -1;
	}
	j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		*res = api_fail(r->c, 400, "", "malformed JSON: %s (line %d, column %d)", jerr.text,
		                jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*res = api_fail(r->c, 400, "", "expected a JSON object");
		return -1;
	}
	*out = j;
	return 0;
}

int api_query_int(struct api_request *r, const char *key, long long min, long long max,
                     long long *v, enum MHD_Result *res)
{
	const char *s = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, key);
	char *end;

	if (!s)
		return 0;
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (!*s || *end || errno || *v < min || *v > max) {
		*res = api_fail(r->c, 400, key, "expected an integer from %lld to %lld", min, max);
		return -1;
	}
	return 0;
}

int api_query_bool(struct api_request *r, const char *key, bool *v, enum MHD_Result *res)
{
	const char *s = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, key);

	if (!s)
		return 0;
	if (!strcmp(s, "true") || !strcmp(s, "1")) {
		*v = true;
	} else if (!strcmp(s, "false") || !strcmp(s, "0")) {
		*v = false;
	} else {
		*res = api_fail(r->c, 400, key, "expected true or false");
		return -1;
	}
	return 0;
}

/* Reply with the outcome of a supervisor call: e when ret is nonzero,
 * otherwise status with out (consumed either way). */
enum MHD_Result api_reply(struct api_request *r, int ret, const struct cerr *e, unsigned status,
                             json_t *out)
{
	if (ret) {
		json_decref(out);
		return api_reply_error(r->c, e);
	}
	return api_reply_json(r->c, status, out);
}

/* A supervisor call on VM name with the request's (required) body. */
enum MHD_Result api_call_with_body(struct api_request *r, const char *name, sup_body_fn fn)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = fn(r->sup, name, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 200, out);
}
