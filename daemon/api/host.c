/* host.c: handlers of the host: its facts, the event stream, the
 * Prometheus metrics and the peer hosts VMs move to. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

enum MHD_Result h_host(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	return api_reply_json(r->c, 200, sup_host(r->sup));
}

enum MHD_Result h_prometheus(struct api_request *r, const char *name, int arg)
{
	(void)name;
	(void)arg;
	return api_reply_text(r->c, 200, sup_prometheus(r->sup),
	                      "text/plain; version=0.0.4; charset=utf-8");
}

enum MHD_Result h_hosts(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	(void)name;
	if (arg == HOSTS_LIST)
		return api_reply_json(r->c, 200,
		                      json_pack("{s:o}", "hosts", sup_hosts_list(r->sup)));
	if (arg == HOSTS_REMOVE)
		return api_reply(r, sup_host_remove(r->sup, r->sub, &e), &e, 204, NULL);
	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = sup_host_add(r->sup, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 201, out);
}

/* The pool (docs/pool.md): its status, creating or joining one, tokens,
 * the admitting side of a join, the CA, leaving. */
enum MHD_Result h_pool(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *out = NULL, *body = NULL;
	bool restart = false;
	int ret;

	(void)name;
	switch (arg) {
	case POOL_STATUS:
		ret = sup_pool_status(r->sup, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	case POOL_CA:
		ret = sup_pool_ca(r->sup, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	case POOL_LEAVE:
		ret = sup_pool_leave(r->sup, &restart, &e);
		r->restart = !ret && restart;
		return api_reply(r, ret, &e, 204, NULL);
	default:
		break;
	}
	if (api_parse_body(r, arg != POOL_TOKEN, &body, &res))
		return res;
	if (arg == POOL_CREATE)
		ret = sup_pool_create(r->sup, body, &out, &restart, &e);
	else if (arg == POOL_JOIN)
		ret = sup_pool_join(r->sup, body, &out, &restart, &e);
	else if (arg == POOL_TOKEN)
		ret = sup_pool_token(r->sup, body, &out, &e);
	else
		ret = sup_pool_admit(r->sup, body, &out, &e);
	json_decref(body);
	r->restart = !ret && restart;
	return api_reply(r, ret, &e, 201, out);
}

enum MHD_Result h_events(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	const char *vm = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "vm");
	struct sup_stream *st;
	long long since = -1;
	bool follow = true;

	(void)name;
	(void)arg;
	if (api_query_int(r, "since", 0, (long long)1 << 62, &since, &res) ||
	    api_query_bool(r, "follow", &follow, &res))
		return res;
	if (vm && !vmdef_name_valid(vm))
		return api_fail(r->c, 400, "vm", "not a valid VM name");
	if (sup_events_open(r->sup, since, vm, follow, &st))
		return api_fail(r->c, 500, "", "out of memory");
	return api_reply_stream(r, st, true, "application/x-ndjson");
}
