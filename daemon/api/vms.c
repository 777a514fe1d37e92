/* vms.c: handlers of the VM resources: the list, definitions, lifecycle
 * actions, live disk settings, metrics, the console and moves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

enum MHD_Result h_list(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	/* In a pool: every VM of the pool, each with its host. */
	return api_reply_json(r->c, 200, json_pack("{s:o}", "vms", sup_pool_list(r->sup)));
}

enum MHD_Result h_create(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	(void)name;
	(void)arg;
	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = sup_define(r->sup, body, r->role, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 201, out);
}

enum MHD_Result h_get(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};
	json_t *out = NULL;
	int ret;

	(void)arg;
	ret = sup_get(r->sup, name, &out, &e);
	return api_reply(r, ret, &e, 200, out);
}

enum MHD_Result h_patch(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	(void)arg;
	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = sup_change(r->sup, name, body, r->role, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 200, out);
}

enum MHD_Result h_delete(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};

	(void)arg;
	return api_reply(r, sup_delete(r->sup, name, &e), &e, 204, NULL);
}

enum MHD_Result h_action(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	bool pending = false;
	int ret;

	if (api_parse_body(r, false, &body, &res))
		return res;
	if (arg == SUP_START) { /* in a pool: placement (core/sup_place.c) */
		long status = 200;

		ret = sup_place_start(r->sup, name, body, r->role, r->who, &status, &out, &pending,
				      &e);
		json_decref(body);
		if (!ret && status != 200)
			return api_reply_json(r->c, (unsigned)status, out);
		return api_reply(r, ret, &e, pending ? 202 : 200, out);
	}
	ret = sup_action(r->sup, name, (enum sup_action)arg, body, &out, &pending, &e);
	json_decref(body);
	return api_reply(r, ret, &e, pending ? 202 : 200, out);
}

enum MHD_Result h_metrics(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};
	json_t *out = NULL;
	int ret;

	(void)arg;
	ret = sup_metrics(r->sup, name, &out, &e);
	return api_reply(r, ret, &e, 200, out);
}

enum MHD_Result h_disk(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body, *out = NULL;
	int ret;

	(void)arg;
	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = sup_disk_change(r->sup, name, r->sub, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 200, out);
}

enum MHD_Result h_balloon(struct api_request *r, const char *name, int arg)
{
	(void)arg;
	return api_call_with_body(r, name, sup_balloon_set);
}

enum MHD_Result h_move(struct api_request *r, const char *name, int arg)
{
	(void)arg;
	return api_call_with_body(r, name, sup_move);
}

enum MHD_Result h_console(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct sup_stream *st;
	struct cerr e = {0};
	long long history = 65536;
	bool follow = true;

	(void)arg;
	if (api_query_int(r, "history", 0, 1 << 30, &history, &res) ||
	    api_query_bool(r, "follow", &follow, &res))
		return res;
	if (sup_console_open(r->sup, name, (size_t)history, follow, &st, &e))
		return api_reply_error(r->c, &e);
	return api_reply_stream(r, st, false, "application/octet-stream");
}

enum MHD_Result h_console_input(struct api_request *r, const char *name, int arg)
{
	struct cerr e = {0};

	(void)arg;
	if (r->len == 0)
		return api_fail(r->c, 400, "", "a body with the bytes to send is required");
	if (sup_console_input(r->sup, name, r->body, r->len, &e))
		return api_reply_error(r->c, &e);
	return api_reply_json(r->c, 204, NULL);
}
