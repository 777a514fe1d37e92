/* fuzz_images.c: the images API's request bodies (daemon/core/images_parse.c)
 * on arbitrary bytes: each request kind parses them, a size parses each
 * member, and what is accepted holds the promises images.h makes (names
 * that are one file name, sizes in range and of whole sectors). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "images.h"

static void name_ok(const char *s)
{
	if (s[0] && (strchr(s, '/') || !strcmp(s, "..") || s[0] == '.' || !img_name_valid(s)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL), *v;
	const char *k;

	if (!body)
		return 0;
	for (int op = IMG_CREATE; op <= IMG_BACKUP; op++) {
		struct img_req rq;
		struct cerr e = { 0 };

		if (img_parse((enum img_op)op, body, &rq, &e)) {
			if (e.kind != CERR_INVALID || !e.reason[0])
				abort();
			continue;
		}
		name_ok(rq.name);
		name_ok(rq.backing);
		if (rq.size % 512 || rq.size > IMG_SIZE_MAX)
			abort();
		if (op == IMG_CREATE && (!rq.name[0] || !rq.location[0] || (!rq.size && !rq.backing[0])))
			abort();
		if (op == IMG_RESIZE && !rq.size)
			abort();
		if ((op == IMG_CONVERT || op == IMG_BACKUP) && !rq.name[0])
			abort();
	}
	if (json_is_object(body))
		json_object_foreach(body, k, v) {
			uint64_t n = 0;
			struct cerr e = { 0 };

			if (img_parse_size(v, k, &n, &e) == 0 && (!n || n % 512 || n > IMG_SIZE_MAX))
				abort();
		}
	json_decref(body);
	return 0;
}
