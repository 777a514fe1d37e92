/* incoming.c: handlers of moves towards this host (peer cellads call them):
 * prepare, commit, abort and the uploads of a quick move. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_priv.h"
#include "compiler.h"
#include "vmdef.h"

enum MHD_Result h_incoming(struct api_request *r, const char *name, int arg)
{
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	int ret;

	if (api_parse_body(r, arg == IN_PREPARE, &body, &res))
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
	return api_reply(r, ret, &e, arg == IN_PREPARE ? 201 : arg == IN_COMMIT ? 200 : 204, out);
}

/* The end of a streamed upload (api.c wrote the body into r->upload_fd). */
enum MHD_Result h_upload(struct api_request *r, const char *name, int arg)
{
	const char *disk = arg != UP_STATE ? r->sub : NULL;
	struct cerr e = {0};

	if (r->upload_fd < 0)
		return api_fail(r->c, 400, "", "the file's bytes are required as the body");
	if (arg == UP_REPLICA_SET && MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "id")) {
		json_t *out = NULL;
		int ret = sup_replica_in_part_done(
		    r->sup, name, disk, r->upload_fd,
		    MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "id"), &out, &e);

		return api_reply(r, ret, &e, 201, out);
	}
	if (arg == UP_REPLICA_SET) {
		json_t *out = NULL;
		int ret = sup_replica_in_upload_done(r->sup, name, disk, r->upload_fd,
						     r->upload_bytes, true, &out, &e);

		return api_reply(r, ret, &e, 201, out);
	}
	if (sup_incoming_upload_done(r->sup, name, disk, r->upload_fd, r->upload_bytes, true, &e))
		return api_reply_error(r->c, &e);
	return api_reply_json(r->c, 200, json_pack("{s:I}", "bytes", (json_int_t)r->upload_bytes));
}
