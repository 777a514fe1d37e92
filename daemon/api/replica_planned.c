/* replica_planned.c: handlers of planned failover and reverse replication
 * (docs/replica.md): POST /v1/vms/{name}/replica/failover (the source),
 * /v1/vms/{name}/replica/reverse (where the VM was failed over to) and
 * /v1/replicas/{name}/adopt (the old primary, called by that host). */
#include "api_priv.h"
#include "compiler.h"

enum MHD_Result h_replica_plan(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	if (api_parse_body(r, arg == REPP_ADOPT, &body, &res))
		return res;
	if (!body)
		body = json_object();
	if (arg == REPP_FAILOVER)
		ret = sup_replica_planned_failover(r->sup, name, body, &out, &e);
	else if (arg == REPP_REVERSE)
		ret = sup_replica_reverse(r->sup, name, body, &out, &e);
	else
		ret = sup_replica_adopt(r->sup, name, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, arg == REPP_ADOPT ? 200 : 201, out);
}
