/* maint.c: handlers of maintenance mode and balance (docs/pool.md): a
 * host's maintenance (sent on to that host when it is another one), the
 * pool's balance, and the load of a VM handed over to this host. */
#include <stdio.h>
#include <string.h>

#include "api_priv.h"

enum MHD_Result h_pool_maint(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	(void)name;
	if (arg == MAINT_LOAD) {
		ret = sup_pool_load(r->sup, r->sub, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	}
	if (arg == MAINT_HOST && !r->forwarded) {
		char addr[256];

		if (sup_pool_host_target(r->sup, r->sub, addr, sizeof(addr))) {
			long status = 0;

			if (sup_pool_forward(r->sup, r->sub, addr, r->method, r->url, r->body, r->role,
					     r->who, &status, &out, &e))
				return api_reply_error(r->c, &e);
			return api_reply_json(r->c, status >= 200 && status <= 599 ? (unsigned)status
										    : 502, out);
		}
	}
	if (api_parse_body(r, arg == MAINT_HOST, &body, &res))
		return res;
	if (!body)
		body = json_object();
	ret = arg == MAINT_HOST ? sup_maintenance(r->sup, r->sub, body, &out, &e)
				: sup_balance(r->sup, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 200, out);
}
