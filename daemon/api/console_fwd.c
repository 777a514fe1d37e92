/* console_fwd.c: the console of a VM another pool host owns (docs/pool.md):
 * GET streams the owner's answer through as it comes, POST sends the input
 * bytes on as they are; the owner's errors are the answer, an owner that
 * cannot be reached a 502. */
#include <stdio.h>
#include <string.h>

#include "api_priv.h"

enum MHD_Result api_console_forward(struct api_request *r, const char *host, const char *addr,
				    bool output)
{
	enum MHD_Result res = MHD_NO;
	struct sup_fwd_req req = { .method = r->method, .path = r->url, .role = r->role,
				   .who = r->who };
	struct sup_stream *st = NULL;
	json_t *reply = NULL;
	struct cerr e = {0};
	char path[600];
	long status = 0;

	if (output) {
		long long history = 65536;
		bool follow = true;

		/* Checked here as the owner would (a 400 never travels), and
		 * sent in one spelling. */
		if (api_query_int(r, "history", 0, 1 << 30, &history, &res) ||
		    api_query_bool(r, "follow", &follow, &res))
			return res;
		snprintf(path, sizeof(path), "%s?history=%lld&follow=%s", r->url, history,
			 follow ? "true" : "false");
		req.path = path;
		req.stream = true;
	} else {
		if (r->len == 0)
			return api_fail(r->c, 400, "", "a body with the bytes to send is required");
		req.body = r->body;
		req.len = r->len;
	}
	if (sup_pool_forward_raw(r->sup, host, addr, &req, &status, &reply, &st, &e))
		return api_reply_error(r->c, &e);
	if (st)
		return api_reply_stream(r, st, false, "application/octet-stream");
	if (status < 200 || status > 599)
		status = 502;
	return api_reply_json(r->c, (unsigned)status, reply);
}
