/* jobs.c: handlers the web console reads while it waits: the running and
 * recent jobs with their phases (GET /v1/jobs) and a VM's worker log
 * (GET /v1/vms/{name}/log). */
#include "api_priv.h"
#include "log_tail.h"

enum MHD_Result h_jobs(struct api_request *r, const char *name, int arg)
{
	const char *vm = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "vm");

	(void)name;
	(void)arg;
	return api_reply_json(r->c, 200, sup_jobs_list(r->sup, vm && *vm ? vm : NULL));
}

enum MHD_Result h_vm_log(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	long long tail = 200;
	json_t *out = NULL;
	int ret;

	(void)arg;
	if (api_query_int(r, "tail", 1, LOG_TAIL_MAX_LINES, &tail, &res))
		return res;
	ret = sup_vm_log(r->sup, name, (unsigned)tail, &out, &e);
	return api_reply(r, ret, &e, 200, out);
}
