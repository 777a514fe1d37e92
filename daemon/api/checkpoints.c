/* checkpoints.c: handlers of a VM's checkpoint tree. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

enum MHD_Result h_checkpoint(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret, status = 200;

	if (api_parse_body(r, arg == CP_CREATE, &body, &res))
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
	return api_reply(r, ret, &e, (unsigned)status, out);
}
