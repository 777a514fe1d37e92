/* switches.c: the switches of this host (docs/networking.md) and a switch
 * NIC's port policy: GET/POST /v1/switches, GET/DELETE /v1/switches/{switch},
 * PATCH /v1/vms/{name}/nics/{nic}. */
#include <stdlib.h>

#include "api_priv.h"

enum MHD_Result h_switches(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	(void)name;
	switch (arg) {
	case SW_LIST:
		return api_reply_json(r->c, 200,
		                      json_pack("{s:o}", "switches", sup_switch_list(r->sup)));
	case SW_GET:
		ret = sup_switch_get(r->sup, r->sub, &out, &e);
		return api_reply(r, ret, &e, 200, out);
	case SW_DELETE:
		return api_reply(r, sup_switch_delete(r->sup, r->sub, &e), &e, 204, NULL);
	default:
		if (api_parse_body(r, true, &body, &res))
			return res;
		ret = sup_switch_create(r->sup, body, &out, &e);
		json_decref(body);
		return api_reply(r, ret, &e, 201, out);
	}
}

enum MHD_Result h_nic(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	char *end;
	long nic = strtol(r->sub, &end, 10);
	int ret;

	(void)arg;
	if (*end || end == r->sub || nic < 0 || nic > 64)
		return api_fail(r->c, 400, "nic", "expected a NIC index (0, 1, ...)");
	if (api_parse_body(r, true, &body, &res))
		return res;
	ret = sup_nic_set(r->sup, name, (unsigned)nic, body, &out, &e);
	json_decref(body);
	return api_reply(r, ret, &e, 200, out);
}
