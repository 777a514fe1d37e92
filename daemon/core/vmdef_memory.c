/* vmdef_memory.c: the "memory" field of a VM definition: how its guest RAM
 * is backed (merge, hugepages, prealloc, thp; conf/memory.h, docs/memory.md).
 * The worker gets the same object. */
#include <stdio.h>
#include <string.h>

#include "conf/memory.h"
#include "vmdef.h"
#include "vmdef_priv.h"

int vmdef_memory_parse(struct vmdef *d, json_t *v, struct cerr *e)
{
	struct mem_backing_config next = d->memory;
	struct conf_err ce;
	char why[200];

	if (json_is_null(v)) { /* back to the defaults */
		memset(&d->memory, 0, sizeof(d->memory));
		return 0;
	}
	if (conf_from_json(&conf_memory_schema, &next, v, "memory", &conf_api_dialect, &ce))
		return vmdef_conf_error(&ce, e);
	if (!conf_memory_valid(&next, why, sizeof(why)))
		return cerr_set(e, CERR_INVALID, next.merge && !d->memory.merge ? "memory.merge"
				: next.thp && !d->memory.thp ? "memory.thp" : "memory.hugepages",
				"%s", why);
	d->memory = next;
	return 0;
}

json_t *vmdef_memory_json(const struct vmdef *d)
{
	return conf_to_json(&conf_memory_schema, &d->memory);
}

bool vmdef_memory_default(const struct vmdef *d)
{
	return !d->memory.merge && !d->memory.hugepages && !d->memory.prealloc && !d->memory.thp;
}
