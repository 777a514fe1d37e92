/* etcd_cache.c: the local cache's format (etcd_cache.h): parsing, without
 * I/O, and the text written; the store's use of it is in
 * etcd_store_cache.c. */
#include "etcd_cache.h"

#include <errno.h>
#include <string.h>

#include "etcd_records.h"
#include "vmdef.h"

static bool uuid_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 40 && !strchr(s, '/');
}

/* One entry, checked as the store's records are. */
static json_t *entry_checked(const char *uuid, json_t *e)
{
	json_t *vm = json_object_get(e, "vm"), *rt = json_object_get(e, "runtime");
	struct store_runtime r = { .exit_status = -1 };
	struct vmdef d;
	bool ok;

	if (!uuid_ok(uuid) || !json_is_object(e) || !json_is_object(vm) ||
	    (rt && !json_is_null(rt) && !json_is_object(rt)))
		return NULL;
	ok = !etcd_rec_vmdef(vm, &d) && !strcmp(d.uuid, uuid);
	vmdef_free(&d);
	if (!ok || (json_is_object(rt) && etcd_rec_runtime(rt, &r)))
		return NULL;
	return json_pack("{s:O, s:O}", "vm", vm, "runtime", json_is_object(rt) ? rt : json_null());
}

int etcd_cache_parse(const char *buf, size_t len, const char *prefix, const char *host,
		     json_t **vms, unsigned *skipped)
{
	json_t *j, *all, *e, *out;
	const char *uuid;

	*vms = NULL;
	*skipped = 0;
	if (len > ETCD_CACHE_MAX)
		return -EINVAL;
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	all = json_object_get(j, "vms");
	if (!json_is_object(j) || !json_is_integer(json_object_get(j, "cella_pool_cache")) ||
	    json_integer_value(json_object_get(j, "cella_pool_cache")) != ETCD_CACHE_VERSION ||
	    !json_is_string(json_object_get(j, "prefix")) ||
	    strcmp(json_string_value(json_object_get(j, "prefix")), prefix) ||
	    !json_is_string(json_object_get(j, "host")) ||
	    strcmp(json_string_value(json_object_get(j, "host")), host) || !json_is_object(all)) {
		json_decref(j);
		return -EINVAL;
	}
	out = json_object();
	json_object_foreach(all, uuid, e) {
		json_t *ok = entry_checked(uuid, e);

		if (ok && out)
			json_object_set_new(out, uuid, ok);
		else
			++*skipped;
	}
	json_decref(j);
	if (!out)
		return -ENOMEM;
	*vms = out;
	return 0;
}

char *etcd_cache_dump(const char *prefix, const char *host, json_t *vms)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:O}", "cella_pool_cache", ETCD_CACHE_VERSION,
			      "prefix", prefix, "host", host, "vms", vms);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	return s;
}
