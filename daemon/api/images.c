/* images.c: the images of the storage locations (core/images*.c):
 * GET /v1/images, POST /v1/images, GET and DELETE /v1/images/{file},
 * POST /v1/images/{file}/resize, /convert and /backup. {file} is an
 * image's name; ?location= says which storage location when several have
 * one by that name. */
#include <stdio.h>
#include <string.h>

#include "api_priv.h"

enum MHD_Result h_images(struct api_request *r, const char *name, int arg)
{
	const char *loc = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "location");
	enum MHD_Result res = MHD_NO;
	struct cerr e = {0};
	json_t *body = NULL, *out = NULL;
	unsigned status = 200;
	int ret;

	(void)name;
	if (api_parse_body(r, arg == IMGS_CREATE || arg == IMGS_RESIZE || arg == IMGS_CONVERT ||
			   arg == IMGS_BACKUP, &body, &res))
		return res;
	if ((arg == IMGS_LIST || arg == IMGS_GET || arg == IMGS_DELETE) && body &&
	    json_object_size(body)) {
		json_decref(body);
		return api_fail(r->c, 400, json_object_iter_key(json_object_iter(body)),
				"unknown field");
	}
	switch (arg) {
	case IMGS_LIST:
		out = sup_images_list(r->sup, r->role, loc, &e);
		ret = out ? 0 : -1;
		break;
	case IMGS_CREATE:
		ret = sup_image_create(r->sup, r->role, body, &out, &e);
		status = 201;
		break;
	case IMGS_GET:
		ret = sup_image_get(r->sup, r->role, loc ? loc : "", r->sub, &out, &e);
		break;
	case IMGS_DELETE:
		ret = sup_image_delete(r->sup, r->role, loc ? loc : "", r->sub, &e);
		status = 204;
		break;
	case IMGS_RESIZE:
		ret = sup_image_resize(r->sup, r->role, loc ? loc : "", r->sub, body, &out, &e);
		break;
	case IMGS_CONVERT:
		ret = sup_image_convert(r->sup, r->role, loc ? loc : "", r->sub, body, &out, &e);
		status = 202;
		break;
	default:
		ret = sup_image_backup(r->sup, r->role, loc ? loc : "", r->sub, body, &out, &e);
		status = 202;
		break;
	}
	json_decref(body);
	return api_reply(r, ret, &e, status, out);
}
