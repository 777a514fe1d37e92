/* api_routes.c: the API's resources (docs/api/openapi.json): route table,
 * query and body validation, and the handlers that call the supervisor. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

typedef enum MHD_Result (*route_fn)(struct api_request *r, const char *name, int arg);

struct route {
	const char *method;
	const char *path; /* segments; "{name}" matches a VM name, another
	                   * "{...}" (a disk id, a checkpoint) goes to r->sub */
	route_fn fn;
	int arg;
	const char *const *query; /* allowed query parameters, NULL-terminated */
};

static const char *const no_query[] = {NULL};
static const char *const console_query[] = {"history", "follow", NULL};
static const char *const events_query[] = {"since", "vm", "follow", NULL};

/* Body ------------------------------------------------------------------ */

/* Parse the request body as a JSON object. Returns 0 (with *out NULL for
 * an empty optional body) or queues the error and returns -1. */
static int parse_body(struct api_request *r, bool required, json_t **out, enum MHD_Result *res)
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

static int query_int(struct api_request *r, const char *key, long long min, long long max,
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

static int query_bool(struct api_request *r, const char *key, bool *v, enum MHD_Result *res)
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

/* Handlers -------------------------------------------------------------- */

/* Reply with the outcome of a supervisor call: e when ret is nonzero,
 * otherwise status with out (consumed either way). */
static enum MHD_Result reply(struct api_request *r, int ret, const struct cerr *e, unsigned status,
                             json_t *out)
{
	if (ret) {
		json_decref(out);
		return api_reply_error(r->c, e);
	}
	return api_reply_json(r->c, status, out);
}

static enum MHD_Result h_host(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	return api_reply_json(r->c, 200, sup_host(r->sup));
}

static enum MHD_Result h_list(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	return api_reply_json(r->c, 200, json_pack("{s:o}", "vms", sup_list(r->sup)));
}

static enum MHD_Result h_create(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	(void)name;
	(void)arg;
	if (parse_body(r, true, &body, &res))
		return res;
	ret = sup_define(r->sup, body, &out, &e);
	json_decref(body);
	return reply(r, ret, &e, 201, out);
}

static enum MHD_Result h_get(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};
	json_t *out = NULL;
	int ret;

	(void)arg;
	ret = sup_get(r->sup, name, &out, &e);
	return reply(r, ret, &e, 200, out);
}

/* A supervisor call on VM name with the request's (required) body. */
typedef int (*sup_body_fn)(struct sup *s, const char *name, json_t *body, json_t **out,
                           struct cerr *e);

static enum MHD_Result call_with_body(struct api_request *r, const char *name, sup_body_fn fn)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	if (parse_body(r, true, &body, &res))
		return res;
	ret = fn(r->sup, name, body, &out, &e);
	json_decref(body);
	return reply(r, ret, &e, 200, out);
}

static enum MHD_Result h_patch(struct api_request *r, const char *name, int arg)
{
	(void)arg;
	return call_with_body(r, name, sup_change);
}

static enum MHD_Result h_delete(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};

	(void)arg;
	return reply(r, sup_delete(r->sup, name, &e), &e, 204, NULL);
}

static enum MHD_Result h_action(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	bool pending = false;
	int ret;

	if (parse_body(r, false, &body, &res))
		return res;
	ret = sup_action(r->sup, name, (enum sup_action)arg, body, &out, &pending, &e);
	json_decref(body);
	return reply(r, ret, &e, pending ? 202 : 200, out);
}

static enum MHD_Result h_metrics(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};
	json_t *out = NULL;
	int ret;

	(void)arg;
	ret = sup_metrics(r->sup, name, &out, &e);
	return reply(r, ret, &e, 200, out);
}

static enum MHD_Result h_console(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct sup_stream *st;
	struct cerr e = {0};
	long long history = 65536;
	bool follow = true;

	(void)arg;
	if (query_int(r, "history", 0, 1 << 30, &history, &res) ||
	    query_bool(r, "follow", &follow, &res))
		return res;
	if (sup_console_open(r->sup, name, (size_t)history, follow, &st, &e))
		return api_reply_error(r->c, &e);
	return api_reply_stream(r->c, st, false, "application/octet-stream");
}

static enum MHD_Result h_console_input(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};

	(void)arg;
	if (r->len == 0)
		return api_fail(r->c, 400, "", "a body with the bytes to send is required");
	if (sup_console_input(r->sup, name, r->body, r->len, &e))
		return api_reply_error(r->c, &e);
	return api_reply_json(r->c, 204, NULL);
}

static enum MHD_Result h_events(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	const char *vm = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "vm");
	struct sup_stream *st;
	long long since = -1;
	bool follow = true;

	(void)name;
	(void)arg;
	if (query_int(r, "since", 0, (long long)1 << 62, &since, &res) ||
	    query_bool(r, "follow", &follow, &res))
		return res;
	if (vm && !vmdef_name_valid(vm))
		return api_fail(r->c, 400, "vm", "not a valid VM name");
	if (sup_events_open(r->sup, since, vm, follow, &st))
		return api_fail(r->c, 500, "", "out of memory");
	return api_reply_stream(r->c, st, true, "application/x-ndjson");
}

static enum MHD_Result h_prometheus(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	return api_reply_text(r->c, 200, sup_prometheus(r->sup),
	                      "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result h_disk(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	(void)arg;
	if (parse_body(r, true, &body, &res))
		return res;
	ret = sup_disk_change(r->sup, name, r->sub, body, &out, &e);
	json_decref(body);
	return reply(r, ret, &e, 200, out);
}

enum { CP_LIST, CP_CREATE, CP_APPLY, CP_DELETE };

static enum MHD_Result h_checkpoint(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret, status = 200;

	if (parse_body(r, arg == CP_CREATE, &body, &res))
		return res;
	if (arg != CP_CREATE && body && json_object_size(body)) {
		json_decref(body);
		return api_fail(r->c, 400, json_object_iter_key(json_object_iter(body)),
		                "unknown field");
	}
	switch (arg) {
	case CP_LIST:
		ret = sup_cp_list(r->sup, name, &out, &e);
		break;
	case CP_CREATE:
		ret = sup_cp_create(r->sup, name, body, &out, &e);
		status = 201;
		break;
	case CP_APPLY:
		ret = sup_cp_apply(r->sup, name, r->sub, &out, &e);
		break;
	default:
		ret = sup_cp_delete(r->sup, name, r->sub, &e);
		status = 204;
		break;
	}
	json_decref(body);
	return reply(r, ret, &e, (unsigned)status, out);
}

/* Hosts and moves -------------------------------------------------------- */

static enum MHD_Result h_hosts(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	(void)name;
	if (arg == 0)
		return api_reply_json(r->c, 200,
		                      json_pack("{s:o}", "hosts", sup_hosts_list(r->sup)));
	if (arg == 2)
		return reply(r, sup_host_remove(r->sup, r->sub, &e), &e, 204, NULL);
	if (parse_body(r, true, &body, &res))
		return res;
	ret = sup_host_add(r->sup, body, &out, &e);
	json_decref(body);
	return reply(r, ret, &e, 201, out);
}

static enum MHD_Result h_move(struct api_request *r, const char *name, int arg)
{
	(void)arg;
	return call_with_body(r, name, sup_move);
}

enum { IN_PREPARE, IN_COMMIT, IN_ABORT };

static enum MHD_Result h_incoming(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	if (parse_body(r, arg == IN_PREPARE, &body, &res))
		return res;
	if (arg != IN_PREPARE && body && json_object_size(body)) {
		json_decref(body);
		return api_fail(r->c, 400, json_object_iter_key(json_object_iter(body)),
		                "unknown field");
	}
	if (arg == IN_PREPARE)
		ret = sup_incoming_prepare(r->sup, body, r->local_addr, &out, &e);
	else if (arg == IN_COMMIT)
		ret = sup_incoming_commit(r->sup, name, &out, &e);
	else
		ret = sup_incoming_abort(r->sup, name, &e);
	json_decref(body);
	return reply(r, ret, &e, arg == IN_PREPARE ? 201 : arg == IN_COMMIT ? 200 : 204, out);
}

/* The end of a streamed upload (api.c wrote the body into r->upload_fd). */
static enum MHD_Result h_upload(struct api_request *r, const char *name, int arg)
{
	const char *disk = arg ? r->sub : NULL;
	struct cerr e = {0};

	if (r->upload_fd < 0)
		return api_fail(r->c, 400, "", "the file's bytes are required as the body");
	if (sup_incoming_upload_done(r->sup, name, disk, r->upload_fd, r->upload_bytes, true, &e))
		return api_reply_error(r->c, &e);
	return api_reply_json(r->c, 200, json_pack("{s:I}", "bytes", (json_int_t)r->upload_bytes));
}

static const struct route routes[] = {
    {"GET", "/v1/host", h_host, 0, no_query},
    {"GET", "/v1/vms", h_list, 0, no_query},
    {"POST", "/v1/vms", h_create, 0, no_query},
    {"GET", "/v1/vms/{name}", h_get, 0, no_query},
    {"PATCH", "/v1/vms/{name}", h_patch, 0, no_query},
    {"DELETE", "/v1/vms/{name}", h_delete, 0, no_query},
    {"POST", "/v1/vms/{name}/start", h_action, SUP_START, no_query},
    {"POST", "/v1/vms/{name}/stop", h_action, SUP_STOP, no_query},
    {"POST", "/v1/vms/{name}/kill", h_action, SUP_KILL, no_query},
    {"POST", "/v1/vms/{name}/reset", h_action, SUP_RESET, no_query},
    {"POST", "/v1/vms/{name}/pause", h_action, SUP_PAUSE, no_query},
    {"POST", "/v1/vms/{name}/resume", h_action, SUP_RESUME, no_query},
    {"POST", "/v1/vms/{name}/save", h_action, SUP_SAVE, no_query},
    {"DELETE", "/v1/vms/{name}/state", h_action, SUP_DELETE_STATE, no_query},
    {"PATCH", "/v1/vms/{name}/disks/{disk}", h_disk, 0, no_query},
    {"GET", "/v1/vms/{name}/checkpoints", h_checkpoint, CP_LIST, no_query},
    {"POST", "/v1/vms/{name}/checkpoints", h_checkpoint, CP_CREATE, no_query},
    {"POST", "/v1/vms/{name}/checkpoints/{checkpoint}/apply", h_checkpoint, CP_APPLY, no_query},
    {"DELETE", "/v1/vms/{name}/checkpoints/{checkpoint}", h_checkpoint, CP_DELETE, no_query},
    {"GET", "/v1/vms/{name}/console", h_console, 0, console_query},
    {"POST", "/v1/vms/{name}/console", h_console_input, 0, no_query},
    {"GET", "/v1/vms/{name}/metrics", h_metrics, 0, no_query},
    {"GET", "/v1/events", h_events, 0, events_query},
    {"GET", "/metrics", h_prometheus, 0, no_query},
    {"GET", "/v1/hosts", h_hosts, 0, no_query},
    {"POST", "/v1/hosts", h_hosts, 1, no_query},
    {"DELETE", "/v1/hosts/{host}", h_hosts, 2, no_query},
    {"POST", "/v1/vms/{name}/move", h_move, 0, no_query},
    {"POST", "/v1/incoming", h_incoming, IN_PREPARE, no_query},
    {"POST", "/v1/incoming/{name}/commit", h_incoming, IN_COMMIT, no_query},
    {"DELETE", "/v1/incoming/{name}", h_incoming, IN_ABORT, no_query},
    {"PUT", "/v1/incoming/{name}/state", h_upload, 0, no_query},
    {"PUT", "/v1/incoming/{name}/disks/{disk}", h_upload, 1, no_query},
};

/* Match url against a route path; the {name} segment goes to name, any
 * other {...} segment to sub (both len bytes). */
static bool path_match(const char *pattern, const char *url, char *name, char *sub, size_t len)
{
	while (*pattern && *url) {
		if (*pattern == '{') {
			size_t n = strcspn(url, "/"), pl = strcspn(pattern, "}") + 1;
			char *dst = !strncmp(pattern, "{name}", 6) ? name : sub;

			if (n == 0 || n >= len)
				return false;
			memcpy(dst, url, n);
			dst[n] = 0;
			url += n;
			pattern += pl;
			continue;
		}
		if (*pattern++ != *url++)
			return false;
	}
	return !*pattern && !*url;
}

static const char *sub_field(const char *path)
{
	return strstr(path, "{disk}") ? "disk" : strstr(path, "{host}") ? "host" : "checkpoint";
}

struct query_check {
	const char *const *allowed;
	const char *bad;
};

static enum MHD_Result check_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct query_check *qc = cls;

	(void)kind;
	(void)value;
	for (const char *const *a = qc->allowed; *a; a++)
		if (!strcmp(*a, key))
			return MHD_YES;
	qc->bad = key;
	return MHD_NO;
}

enum MHD_Result api_route(struct api_request *r)
{
	char name[256], sub[256] = "", allow[128] = "";
	const struct route *hit = NULL;
	bool path_hit = false;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!path_match(routes[i].path, r->url, name, sub, sizeof(name)))
			continue;
		path_hit = true;
		snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
		         allow[0] ? ", " : "", routes[i].method);
		if (!strcmp(routes[i].method, r->method))
			hit = &routes[i];
	}
	if (!path_hit)
		return api_fail(r->c, 404, "path", "no such resource: %.200s", r->url);
	if (!hit) {
		struct MHD_Response *resp;
		enum MHD_Result ret;
		json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "error", "field", "method", "reason",
		                      "not allowed here", "message", "method: not allowed here");
		char *s = json_dumps(o, JSON_COMPACT);

		json_decref(o);
		if (!s)
			return MHD_NO;
		resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, "Allow", allow);
		MHD_add_response_header(resp, "Content-Type", "application/json");
		ret = MHD_queue_response(r->c, 405, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	sub[0] = 0; /* from the matched route only */
	path_match(hit->path, r->url, name, sub, sizeof(name));
	{
		struct query_check qc = {.allowed = hit->query};

		MHD_get_connection_values(r->c, MHD_GET_ARGUMENT_KIND, check_query, &qc);
		if (qc.bad)
			return api_fail(r->c, 400, qc.bad, "unknown query parameter");
	}
	if (strstr(hit->path, "{name}") && !vmdef_name_valid(name))
		return api_fail(r->c, 400, "name", "not a valid VM name");
	if (sub[0] && !vmdef_name_valid(sub))
		return api_fail(r->c, 400, sub_field(hit->path), "not a valid name");
	r->sub = sub;
	if (hit->fn != h_upload && r->upload_fd >= 0) { /* cannot happen: api_is_upload */
		close(r->upload_fd);
		r->upload_fd = -1;
	}
	return hit->fn(r, name, hit->arg);
}

bool api_is_upload(const char *method, const char *url)
{
	char name[256], sub[256];

	if (strcmp(method, "PUT"))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (routes[i].fn == h_upload &&
		    path_match(routes[i].path, url, name, sub, sizeof(name)))
			return true;
	return false;
}

int api_upload_open(struct api_request *r, int *fd, uint64_t *max, struct cerr *e)
{
	char name[256], sub[256] = "";

	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (routes[i].fn != h_upload ||
		    !path_match(routes[i].path, r->url, name, sub, sizeof(name)))
			continue;
		if (!vmdef_name_valid(name))
			return cerr_set(e, CERR_INVALID, "name", "not a valid VM name");
		if (routes[i].arg && !vmdef_name_valid(sub))
			return cerr_set(e, CERR_INVALID, "disk", "not a valid name");
		return sup_incoming_upload_open(r->sup, name, routes[i].arg ? sub : NULL, fd, max,
		                                e);
	}
	return cerr_set(e, CERR_NOT_FOUND, "path", "no such resource");
}
