/* vm_acpi.c: the ACPI part of vm_setup: the tables describe the vCPUs and
 * every virtio-mmio device (arch/x86/acpi.c), and a Linux guest that reads
 * them needs no virtio_mmio.device= on its command line (docs/guests.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "devtype.h"
#include "log.h"
#include "virtio/mmio.h"
#include "vm.h"

int vm_setup_acpi(struct vm *vm)
{
	struct acpi_mmio_dev mmio[ACPI_MAX_MMIO];
	struct acpi_config cfg = { .nr_cpus = vm->cfg->cpus,
				   .max_cpus = config_cpus_possible(vm->cfg), .mmio = mmio };

	for (struct device *d = vm->devices; d; d = d->next) {
		const struct device_type *t = devtype_of(d);
		struct virtio_dev *vd;

		if (!t || t->transport != DEVTYPE_VIRTIO_MMIO)
			continue;
		if (cfg.nr_mmio == ACPI_MAX_MMIO)
			return -ENOSPC;
		vd = virtio_dev_of(d);
		mmio[cfg.nr_mmio++] = (struct acpi_mmio_dev){ vd->base, VIRTIO_MMIO_SIZE, vd->gsi };
	}
	return x86_setup_acpi(&vm->mem, &cfg);
}

static bool has_word(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strstr(s, word); p; p = strstr(p + 1, word))
		if ((p == s || p[-1] == ' ') && (p[n] == 0 || p[n] == ' '))
			return true;
	return false;
}

char *vm_cmdline_devices(const struct vm *vm, const char *user, bool is_linux)
{
	const char *extra = vm->cmdline_extra ? vm->cmdline_extra : "";
	const char *p = extra;
	char *out, *o;

	if (!is_linux || has_word(user, "acpi=off"))
		return strdup(extra);
	out = malloc(strlen(extra) + 1);
	if (!out)
		return NULL;
	o = out;
	/* Keep every " word" but the virtio_mmio.device= ones. */
	while (*p) {
		const char *end;

		while (*p == ' ')
			p++;
		end = strchr(p, ' ');
		if (!end)
			end = p + strlen(p);
		if (end > p && strncmp(p, "virtio_mmio.device=", 19)) {
			*o++ = ' ';
			memcpy(o, p, (size_t)(end - p));
			o += end - p;
		}
		p = end;
	}
	*o = 0;
	return out;
}
