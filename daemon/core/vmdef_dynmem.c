/* vmdef_dynmem.c: the "dynamic_memory" field of a VM definition (Hyper-V's
 * dynamic memory: startup = memory_mib, minimum, maximum, buffer, weight;
 * docs/memory.md, "Dynamic memory"). Parsed member by member; the rules
 * that tie it to the rest of the definition are in vmdef_dynmem_check. */
#include <stdio.h>
#include <string.h>

#include "vmdef.h"
#include "vmdef_priv.h"

#define DEFAULT_BUFFER_PCT 20
#define DEFAULT_WEIGHT     5000
#define DEFAULT_MIN_MIB    512 /* Hyper-V's default minimum (capped at the startup memory) */

/* Growth above the startup memory needs virtio-mem: the ceiling is the
 * definition's memory_max_mib when it has one. */
uint64_t vmdef_dynmem_ceiling(const struct vmdef *d)
{
	if (d->memory_max_mib > d->memory_mib)
		return d->memory_max_mib;
	return d->memory_mib;
}

uint64_t vmdef_dynmem_min(const struct vmdef *d)
{
	if (d->dynmem.minimum_mib)
		return d->dynmem.minimum_mib;
	return d->memory_mib < DEFAULT_MIN_MIB ? d->memory_mib : DEFAULT_MIN_MIB;
}

uint64_t vmdef_dynmem_max(const struct vmdef *d)
{
	return d->dynmem.maximum_mib ? d->dynmem.maximum_mib : vmdef_dynmem_ceiling(d);
}

int vmdef_dynmem_parse(struct vmdef *d, json_t *v, struct cerr *e)
{
	struct vmdef_dynmem next = d->dynmem;
	const char *key;
	json_t *m;
	uint64_t n;

	if (json_is_null(v)) {
		memset(&d->dynmem, 0, sizeof(d->dynmem));
		d->dynmem.buffer_pct = DEFAULT_BUFFER_PCT;
		d->dynmem.weight = DEFAULT_WEIGHT;
		return 0;
	}
	if (!json_is_object(v))
		return cerr_set(e, CERR_INVALID, "dynamic_memory",
				"expected an object {enabled, minimum_mib, maximum_mib, buffer_pct, "
				"weight} or null");
	json_object_foreach(v, key, m) {
		char field[64];

		snprintf(field, sizeof(field), "dynamic_memory.%.30s", key);
		if (!strcmp(key, "enabled")) {
			if (vmdef_get_bool(m, field, &next.enabled, e))
				return -1;
		} else if (!strcmp(key, "minimum_mib") || !strcmp(key, "maximum_mib")) {
			if (json_is_null(m)) { /* back to the default */
				n = 0;
			} else if (vmdef_get_uint(m, field, VMDEF_MIN_MEM, VMDEF_MAX_MEM, &n, e)) {
				return -1;
			}
			*(key[1] == 'i' ? &next.minimum_mib : &next.maximum_mib) = n;
		} else if (!strcmp(key, "buffer_pct")) {
			if (vmdef_get_uint(m, field, VMDEF_DYNMEM_BUFFER_MIN, VMDEF_DYNMEM_BUFFER_MAX, &n,
					   e))
				return -1;
			next.buffer_pct = (unsigned)n;
		} else if (!strcmp(key, "weight")) {
			if (vmdef_get_uint(m, field, 1, VMDEF_DYNMEM_WEIGHT_MAX, &n, e))
				return -1;
			next.weight = (unsigned)n;
		} else {
			return cerr_set(e, CERR_INVALID, field, "unknown field (enabled, minimum_mib, "
					"maximum_mib, buffer_pct, weight)");
		}
	}
	if (!next.buffer_pct)
		next.buffer_pct = DEFAULT_BUFFER_PCT;
	if (!next.weight)
		next.weight = DEFAULT_WEIGHT;
	d->dynmem = next;
	return 0;
}

int vmdef_dynmem_check(const struct vmdef *d, struct cerr *e)
{
	uint64_t min = vmdef_dynmem_min(d), max = vmdef_dynmem_max(d), ceil = vmdef_dynmem_ceiling(d);

	if (!d->dynmem.enabled)
		return 0;
	if (!d->balloon)
		return cerr_set(e, CERR_INVALID, "dynamic_memory.enabled",
				"dynamic memory needs the balloon (\"balloon\": true, set while the "
				"VM is stopped)");
	if (min > d->memory_mib)
		return cerr_set(e, CERR_INVALID, "dynamic_memory.minimum_mib",
				"%llu MiB is more than the startup memory (memory_mib %llu MiB): "
				"minimum <= startup <= maximum", (unsigned long long)min,
				(unsigned long long)d->memory_mib);
	if (max < d->memory_mib)
		return cerr_set(e, CERR_INVALID, "dynamic_memory.maximum_mib",
				"%llu MiB is less than the startup memory (memory_mib %llu MiB): "
				"minimum <= startup <= maximum", (unsigned long long)max,
				(unsigned long long)d->memory_mib);
	if (max > ceil)
		return cerr_set(e, CERR_INVALID, "dynamic_memory.maximum_mib",
				"%llu MiB is more than the VM can reach (%llu MiB): growing above the "
				"startup memory needs virtio-mem (memory_max_mib)",
				(unsigned long long)max, (unsigned long long)ceil);
	return 0;
}

json_t *vmdef_dynmem_json(const struct vmdef *d)
{
	return json_pack("{s:b, s:I, s:I, s:i, s:i}", "enabled", d->dynmem.enabled, "minimum_mib",
			 (json_int_t)vmdef_dynmem_min(d), "maximum_mib",
			 (json_int_t)vmdef_dynmem_max(d), "buffer_pct",
			 (int)(d->dynmem.buffer_pct ? d->dynmem.buffer_pct : DEFAULT_BUFFER_PCT),
			 "weight", (int)(d->dynmem.weight ? d->dynmem.weight : DEFAULT_WEIGHT));
}

json_t *vmdef_dynmem_record(const struct vmdef *d)
{
	json_t *o = vmdef_dynmem_json(d);

	/* Defaults stay defaults (they follow memory_mib). */
	if (!d->dynmem.minimum_mib)
		json_object_set_new(o, "minimum_mib", json_null());
	if (!d->dynmem.maximum_mib)
		json_object_set_new(o, "maximum_mib", json_null());
	return o;
}

bool vmdef_dynmem_default(const struct vmdef *d)
{
	return !d->dynmem.enabled && !d->dynmem.minimum_mib && !d->dynmem.maximum_mib &&
	       (!d->dynmem.buffer_pct || d->dynmem.buffer_pct == DEFAULT_BUFFER_PCT) &&
	       (!d->dynmem.weight || d->dynmem.weight == DEFAULT_WEIGHT);
}
