/* replicas.c: handlers of replication (docs/replica.md): a VM's replication
 * from this host (/v1/vms/{name}/replica), and the replicas this host keeps
 * for others (/v1/replicas: made and fed by the source host, failed over
 * and deleted by operators here). */
#include <stdio.h>
#include <string.h>

#include "api_priv.h"
#include "compiler.h"

/* GET, POST (enable) and DELETE (disable) /v1/vms/{name}/replica. */
enum MHD_Result h_replica(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	if (arg == REP_ENABLE) {
		if (api_parse_body(r, true, &body, &res))
			return res;
		ret = sup_replica_enable(r->sup, name, body, &out, &e);
		json_decref(body);
		return api_reply(r, ret, &e, 201, out);
	}
	if (arg == REP_DISABLE)
		return api_reply(r, sup_replica_disable(r->sup, name, &e), &e, 204, NULL);
	ret = sup_replica_status(r->sup, name, &out, &e);
	return api_reply(r, ret, &e, 200, out);
}

/* /v1/replicas and /v1/replicas/{name}[/failover]. */
enum MHD_Result h_replicas(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	switch (arg) {
	case REPS_LIST:
		return api_reply_json(r->c, 200, json_pack("{s:o}", "replicas",
							   sup_replica_in_list(r->sup)));
	case REPS_CREATE:
		if (api_parse_body(r, true, &body, &res))
			return res;
		ret = sup_replica_in_create(r->sup, body, &out, &e);
		json_decref(body);
		return api_reply(r, ret, &e, 200, out);
	case REPS_GET:
		ret = sup_replica_in_get(r->sup, name, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	case REPS_DELETE:
		return api_reply(r, sup_replica_in_delete(r->sup, name, &e), &e, 204, NULL);
	case REPS_UPLOAD_STATE:
		ret = sup_replica_in_upload_state(r->sup, name, r->sub, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	case REPS_TEST_STOP:
		return api_reply(r, sup_replica_in_test_stop(r->sup, name, &e), &e, 204, NULL);
	default: /* REPS_FAILOVER */
		if (api_parse_body(r, false, &body, &res))
			return res;
		if (!body && !(body = json_object()))
			return api_fail(r->c, 500, "", "out of memory");
		ret = sup_replica_in_failover(r->sup, name, body, &out, &e);
		json_decref(body);
		return api_reply(r, ret, &e, 201, out);
	}
}
