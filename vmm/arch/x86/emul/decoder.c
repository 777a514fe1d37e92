/* decoder.c: capstone, loaded on demand. The decoder is needed only after an
 * emulation failure, which hardware-virtualized hosts never have; linking it
 * would cost every worker ~5 MiB of relocated pages and start-up time. So it
 * is dlopen()ed on first use, or up front (emul_ctx_preload) where the host
 * is known to need it, before the worker's sandbox hides the file system. */
#include "arch/x86/emul/emul.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int emul_decoder_load(struct emul_decoder *d, char *why, size_t whylen)
{
	static const char *const names[] = { "libcapstone.so.4", "libcapstone.so.5",
					     "libcapstone.so" };
	void *lib = NULL;

	if (d->lib)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(names) && !lib; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(why, whylen, "cannot load the capstone decoder: %s", dlerror());
		return -ENOENT;
	}
	*(void **)&d->open = dlsym(lib, "cs_open");
	*(void **)&d->option = dlsym(lib, "cs_option");
	*(void **)&d->close = dlsym(lib, "cs_close");
	*(void **)&d->malloc = dlsym(lib, "cs_malloc");
	*(void **)&d->disasm_iter = dlsym(lib, "cs_disasm_iter");
	*(void **)&d->free = dlsym(lib, "cs_free");
	if (!d->open || !d->option || !d->close || !d->malloc || !d->disasm_iter || !d->free) {
		snprintf(why, whylen, "the capstone library lacks a needed function");
		dlclose(lib);
		memset(d, 0, sizeof(*d));
		return -ENOENT;
	}
	d->lib = lib;
	return 0;
}

void emul_decoder_unload(struct emul_decoder *d)
{
	if (d->lib)
		dlclose(d->lib);
	memset(d, 0, sizeof(*d));
}
