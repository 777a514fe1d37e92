/* vmdef_cpus.c: the "cpus_max" field of a VM definition: the most vCPUs a
 * running VM may be given (cella vm set NAME --cpus N: ACPI vCPU hot-plug,
 * features/cpuhp.c; docs/guests.md, "vCPU hot-plug"). 0 (or null): none.
 * A VM with room for more vCPUs gets the ACPI tables, which hot-plug goes
 * through, so its command line must not turn ACPI off. */
#include "vmdef.h"

#include <string.h>

int vmdef_cpus_max_parse(struct vmdef *d, json_t *v, struct cerr *e)
{
	if (json_is_null(v)) {
		d->cpus_max = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > VMDEF_MAX_CPUS)
		return cerr_set(e, CERR_INVALID, "cpus_max",
				"expected 0 (no vCPU hot-plug) or an integer from cpus to %d",
				VMDEF_MAX_CPUS);
	d->cpus_max = (unsigned)json_integer_value(v);
	return 0;
}

static bool has_word(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = s ? strstr(s, word) : NULL; p; p = strstr(p + 1, word))
		if ((p == s || p[-1] == ' ') && (p[n] == 0 || p[n] == ' '))
			return true;
	return false;
}

int vmdef_cpus_check(const struct vmdef *d, struct cerr *e)
{
	if (d->cpus_max && d->cpus_max < d->cpus)
		return cerr_set(e, CERR_INVALID, "cpus_max",
				"%u is below cpus (%u): expected 0 (no vCPU hot-plug) or from cpus "
				"to %d", d->cpus_max, d->cpus, VMDEF_MAX_CPUS);
	if (d->cpus_max > d->cpus && has_word(d->cmdline, "acpi=off"))
		return cerr_set(e, CERR_INVALID, "cpus_max",
				"vCPU hot-plug goes through ACPI, and the command line says acpi=off");
	return 0;
}

bool vmdef_cpus_hotplug(const struct vmdef *d)
{
	return d->cpus_max > d->cpus;
}

void vmdef_cpus_worker(const struct vmdef *d, json_t *cfg)
{
	if (!vmdef_cpus_hotplug(d))
		return;
	json_object_set_new(cfg, "cpus_max", json_integer(d->cpus_max));
	json_object_set_new(cfg, "acpi", json_true());
}
