/* decoder.c: capstone, loaded on demand. The decoder is needed only after an
 * emulation failure, which hardware-virtualized hosts never have; linking it
 * would cost every worker ~5 MiB of relocated pages and start-up time. So it
 * is dlopen()ed on first use, or up front (emul_ctx_preload) where the host
 * is known to need it, before the worker's sandbox hides the file system.
 *
 * What is loaded, first found wins: $CELLA_DECODER_MODULE (a path), the
 * x86-only module cella-capstone.so next to the executable (the build
 * tree) or in CELLA_DECODER_MODULE_DIR (installed), then the system's
 * shared libcapstone. The module is the same capstone with the other
 * architectures left out (capstone_x86.c): 48 KiB of private pages in the
 * worker instead of the shared library's 1.33 MiB. */
#include "arch/x86/emul/emul.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DECODER_MODULE_NAME "cella-capstone.so"

/* The x86-only module, or NULL (why filled when one exists but fails). */
static void *decoder_module_open(char *why, size_t whylen)
{
	const char *env = getenv("CELLA_DECODER_MODULE");
	char path[PATH_MAX + sizeof(DECODER_MODULE_NAME) + 1];
	void *lib;
	ssize_t n;
	char *slash;

	if (env && *env) {
		lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
		if (!lib)
			snprintf(why, whylen, "%s", dlerror());
		return lib;
	}
	n = readlink("/proc/self/exe", path, PATH_MAX - 1);
	if (n > 0) {
		path[n] = 0;
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, DECODER_MODULE_NAME);
			if (!access(path, R_OK))
				return dlopen(path, RTLD_NOW | RTLD_LOCAL);
		}
	}
#ifdef CELLA_DECODER_MODULE_DIR
	if (!access(CELLA_DECODER_MODULE_DIR "/" DECODER_MODULE_NAME, R_OK))
		return dlopen(CELLA_DECODER_MODULE_DIR "/" DECODER_MODULE_NAME,
			      RTLD_NOW | RTLD_LOCAL);
#endif
	return NULL;
}

int emul_decoder_load(struct emul_decoder *d, char *why, size_t whylen)
{
	static const char *const names[] = { "libcapstone.so.4", "libcapstone.so.5",
					     "libcapstone.so" };
	char modwhy[160] = "";
	void *lib;

	if (d->lib)
		return 0;
	lib = decoder_module_open(modwhy, sizeof(modwhy));
	if (!lib && modwhy[0]) {
		/* Asked for by name: no quiet fallback. */
		snprintf(why, whylen, "cannot load the decoder module: %s", modwhy);
		return -ENOENT;
	}
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
