/* vmdef_replica.c: the "replica" field of a VM definition: the mark of a
 * replica kept here for another host's VM (docs/replica.md, "The replica as
 * a VM definition"). */
#include <stdio.h>
#include <string.h>

#include "vmdef.h"
#include "vmdef_priv.h"

int vmdef_replica_parse(struct vmdef *d, json_t *v, struct cerr *e)
{
	json_t *src = json_object_get(v, "source"), *pt = json_object_get(v, "last_point"), *x;
	const char *key;

	memset(&d->replica, 0, sizeof(d->replica));
	if (json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return cerr_set(e, CERR_INVALID, "replica", "expected {source, last_point}");
	json_object_foreach(v, key, x)
		if (strcmp(key, "source") && strcmp(key, "last_point") && strcmp(key, "state"))
			return cerr_set(e, CERR_INVALID, "replica", "unknown field '%.32s'", key);
	if ((src && !json_is_null(src) && (!json_is_string(src) ||
					   json_string_length(src) >= sizeof(d->replica.source))) ||
	    (pt && !json_is_null(pt) && (!json_is_string(pt) ||
					 json_string_length(pt) >= sizeof(d->replica.last_point))))
		return cerr_set(e, CERR_INVALID, "replica", "source: a host name, last_point: a "
				"point name (or null)");
	d->replica.on = true;
	snprintf(d->replica.source, sizeof(d->replica.source), "%s", json_string_value(src) ?: "");
	snprintf(d->replica.last_point, sizeof(d->replica.last_point), "%s",
		 json_string_value(pt) ?: "");
	return 0;
}

json_t *vmdef_replica_json(const struct vmdef *d)
{
	const struct vmdef_replica *r = &d->replica;

	if (!r->on)
		return NULL;
	return json_pack("{s:o, s:s, s:o}", "source", r->source[0] ? json_string(r->source)
			 : json_null(), "state", "replicating", "last_point", r->last_point[0]
			 ? json_string(r->last_point) : json_null());
}
