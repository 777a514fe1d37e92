/* images_parse.c: the images API's request bodies, checked field by field
 * before anything is opened (images.h). No file, no state: fuzz-images
 * feeds it arbitrary JSON. */
#include "images.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "conf/schema.h"

bool img_name_valid(const char *s)
{
	size_t n = strlen(s);

	return conf_name_valid(s, IMG_NAME_MAX) && !(n >= 4 && !strcmp(s + n - 4, ".cbt"));
}

int img_parse_size(json_t *v, const char *field, uint64_t *out, struct cerr *e)
{
	unsigned long long n;
	const char *s;
	char *end;
	unsigned shift = 0;

	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return cerr_set(e, CERR_INVALID, field, "must be positive");
		n = (unsigned long long)json_integer_value(v);
	} else if (json_is_string(v)) {
		s = json_string_value(v);
		if (*s < '0' || *s > '9')
			return cerr_set(e, CERR_INVALID, field, "expected a number of bytes, or one "
					"with K, M, G or T (e.g. \"10G\")");
		errno = 0;
		n = strtoull(s, &end, 10);
		switch (*end) {
		case 'K': case 'k': shift = 10; end++; break;
		case 'M': case 'm': shift = 20; end++; break;
		case 'G': case 'g': shift = 30; end++; break;
		case 'T': case 't': shift = 40; end++; break;
		default: break;
		}
		if (*end == 'i' && shift)
			end++;
		if (*end == 'B' && shift)
			end++;
		if (errno || *end)
			return cerr_set(e, CERR_INVALID, field, "expected a number of bytes, or one "
					"with K, M, G or T (e.g. \"10G\")");
		if (n > (IMG_SIZE_MAX >> shift))
			return cerr_set(e, CERR_INVALID, field, "larger than the %llu TiB accepted",
					IMG_SIZE_MAX >> 40);
		n <<= shift;
	} else {
		return cerr_set(e, CERR_INVALID, field, "expected a number of bytes or a string "
				"such as \"10G\"");
	}
	if (n == 0)
		return cerr_set(e, CERR_INVALID, field, "must be positive");
	if (n > IMG_SIZE_MAX)
		return cerr_set(e, CERR_INVALID, field, "larger than the %llu TiB accepted",
				IMG_SIZE_MAX >> 40);
	if (n % 512)
		return cerr_set(e, CERR_INVALID, field, "must be a multiple of 512 bytes");
	*out = n;
	return 0;
}

static int get_name(json_t *v, const char *field, char *out, size_t len, struct cerr *e)
{
	if (!json_is_string(v) || !img_name_valid(json_string_value(v)))
		return cerr_set(e, CERR_INVALID, field, "expected a file name: 1-%d of A-Z a-z 0-9 "
				". _ -, starting with a letter or digit (no path, not *.cbt)",
				IMG_NAME_MAX);
	snprintf(out, len, "%s", json_string_value(v));
	return 0;
}

static int get_location(json_t *v, char *out, size_t len, struct cerr *e)
{
	if (!json_is_string(v) || !conf_name_valid(json_string_value(v), IMG_NAME_MAX))
		return cerr_set(e, CERR_INVALID, "location", "expected a storage location's name");
	snprintf(out, len, "%s", json_string_value(v));
	return 0;
}

static int get_format(json_t *v, int *fmt, struct cerr *e)
{
	const char *s = json_string_value(v);

	if (s && !strcmp(s, "raw"))
		*fmt = DISK_FMT_RAW;
	else if (s && !strcmp(s, "qcow2"))
		*fmt = DISK_FMT_QCOW2;
	else
		return cerr_set(e, CERR_INVALID, "format", "expected \"raw\" or \"qcow2\"");
	return 0;
}

static int get_cluster(json_t *v, unsigned *bits, struct cerr *e)
{
	json_int_t n = json_integer_value(v);

	for (unsigned b = 9; b <= 21; b++) {
		if (json_is_integer(v) && n == (json_int_t)1 << b) {
			*bits = b;
			return 0;
		}
	}
	return cerr_set(e, CERR_INVALID, "cluster_size", "expected a power of two from 512 to "
			"2097152 bytes");
}

static int get_point(json_t *v, const char *field, char *out, size_t len, struct cerr *e)
{
	if (!json_is_string(v) || !conf_name_valid(json_string_value(v), IMG_POINT_MAX))
		return cerr_set(e, CERR_INVALID, field, "expected a point name: 1-%d of A-Z a-z "
				"0-9 . _ -, starting with a letter or digit", IMG_POINT_MAX);
	snprintf(out, len, "%s", json_string_value(v));
	return 0;
}

/* The fields each request takes. */
static bool field_allowed(enum img_op op, const char *k)
{
	static const char *const create[] = {"location", "name", "format", "size", "backing",
					      "cluster_size", NULL};
	static const char *const resize[] = {"size", NULL};
	static const char *const convert[] = {"location", "target", "format", "cluster_size", NULL};
	static const char *const backup[] = {"location", "target", "format", "cluster_size",
					      "point", "since", NULL};
	const char *const *set = op == IMG_CREATE ? create : op == IMG_RESIZE ? resize
				 : op == IMG_CONVERT ? convert : backup;

	for (; *set; set++)
		if (!strcmp(*set, k))
			return true;
	return false;
}

int img_parse(enum img_op op, json_t *body, struct img_req *rq, struct cerr *e)
{
	const char *k;
	json_t *v;

	memset(rq, 0, sizeof(*rq));
	rq->fmt = -1;
	if (!json_is_object(body))
		return cerr_set(e, CERR_INVALID, "", "expected a JSON object");
	json_object_foreach(body, k, v) {
		int ret = 0;

		if (!field_allowed(op, k))
			return cerr_set(e, CERR_INVALID, k, "unknown field");
		if (!strcmp(k, "location"))
			ret = get_location(v, rq->location, sizeof(rq->location), e);
		else if (!strcmp(k, "name") || !strcmp(k, "target"))
			ret = get_name(v, k, rq->name, sizeof(rq->name), e);
		else if (!strcmp(k, "format"))
			ret = get_format(v, &rq->fmt, e);
		else if (!strcmp(k, "size"))
			ret = img_parse_size(v, "size", &rq->size, e);
		else if (!strcmp(k, "backing"))
			ret = get_name(v, "backing", rq->backing, sizeof(rq->backing), e);
		else if (!strcmp(k, "cluster_size"))
			ret = get_cluster(v, &rq->cluster_bits, e);
		else if (!strcmp(k, "point"))
			ret = get_point(v, "point", rq->point, sizeof(rq->point), e);
		else if (!strcmp(k, "since"))
			ret = get_point(v, "since", rq->since, sizeof(rq->since), e);
		if (ret)
			return ret;
	}
	switch (op) {
	case IMG_CREATE:
		if (!rq->location[0])
			return cerr_set(e, CERR_INVALID, "location", "required: the storage location "
					"to create it in");
		if (!rq->name[0])
			return cerr_set(e, CERR_INVALID, "name", "required");
		if (rq->fmt < 0)
			rq->fmt = DISK_FMT_QCOW2;
		if (rq->backing[0] && rq->fmt != DISK_FMT_QCOW2)
			return cerr_set(e, CERR_INVALID, "backing", "only a qcow2 image has a backing "
					"file");
		if (!rq->size && !rq->backing[0])
			return cerr_set(e, CERR_INVALID, "size", "required (without a backing image)");
		break;
	case IMG_RESIZE:
		if (!rq->size)
			return cerr_set(e, CERR_INVALID, "size", "required: the new virtual size");
		break;
	case IMG_CONVERT:
	case IMG_BACKUP:
		if (!rq->name[0])
			return cerr_set(e, CERR_INVALID, "target", "required: the new image's name");
		if (rq->since[0] && !rq->point[0])
			return cerr_set(e, CERR_INVALID, "point", "required with since: the point the "
					"backup starts");
		if (rq->point[0] && rq->fmt == DISK_FMT_QCOW2)
			return cerr_set(e, CERR_INVALID, "format", "a backup with a point is raw (full) "
					"or an incremental file");
		if (rq->point[0] && rq->cluster_bits)
			return cerr_set(e, CERR_INVALID, "cluster_size", "a backup with a point is not "
					"qcow2");
		if (rq->since[0] && rq->fmt >= 0)
			return cerr_set(e, CERR_INVALID, "format", "an incremental backup has its own "
					"format (CELLAINC)");
		if (rq->fmt < 0 && !rq->point[0])
			rq->fmt = op == IMG_CONVERT ? -1 : DISK_FMT_QCOW2;
		if (op == IMG_CONVERT && rq->fmt < 0)
			return cerr_set(e, CERR_INVALID, "format", "required: \"raw\" or \"qcow2\"");
		break;
	}
	if (rq->cluster_bits && rq->fmt == DISK_FMT_RAW)
		return cerr_set(e, CERR_INVALID, "cluster_size", "only a qcow2 image has clusters");
	return 0;
}
